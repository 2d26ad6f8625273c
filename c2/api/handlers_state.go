package api

import (
	"context"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/c2/api/c2pb"
	"github.com/e4-iot/e4kit/e4"
)

// The handlers of the device-state calls: what C2 wants each device to
// hold against what the device acknowledged (c2.Service.ClientState and
// the calls beside it).

func (h *handlers) GetClientState(ctx context.Context, req *c2pb.GetClientStateRequest) (*c2pb.ClientState, error) {
	id, err := h.parseClient("client", req.Client)
	if err != nil {
		return nil, err
	}
	if err := checkText("after", req.After); err != nil {
		return nil, err
	}
	out, err := h.clientState(ctx, id)
	if err != nil {
		return nil, err
	}
	topics, err := h.svc.ClientTopicStates(ctx, id, req.After, limit(req.Limit))
	if err != nil {
		return nil, err
	}
	out.TopicStates = make([]*c2pb.TopicKeyState, len(topics))
	for i, t := range topics {
		out.TopicStates[i] = &c2pb.TopicKeyState{
			Topic: t.Topic, WantVersion: t.WantVersion, AckedVersion: t.AckedVersion,
			AckedAt: timestamp(t.AckedAt), Behind: t.Behind,
		}
	}
	return out, nil
}

// clientState returns the state of a client, with its name.
func (h *handlers) clientState(ctx context.Context, id e4.ID) (*c2pb.ClientState, error) {
	info, err := h.svc.GetClient(ctx, id)
	if err != nil {
		return nil, err
	}
	st, err := h.svc.ClientState(ctx, id)
	if err != nil {
		return nil, err
	}
	return &c2pb.ClientState{
		Id: st.ID.String(), Name: info.Name, AckMode: string(st.AckMode), Acknowledges: st.Acknowledges,
		LastSeen: timestamp(st.LastSeen), LastSync: timestamp(st.LastSync),
		Topics: st.Topics, TopicsBehind: st.TopicsBehind, PendingCommands: st.PendingCommands,
		KeyInUse: string(st.KeyInUse), KeyChangedAt: timestamp(st.KeyChangedAt),
		Stalled: st.Stalled, StalledReason: st.StalledReason, StalledAt: timestamp(st.StalledAt),
	}, nil
}

func (h *handlers) SetClientAcknowledges(ctx context.Context, req *c2pb.SetClientAcknowledgesRequest) (*c2pb.ClientState, error) {
	id, err := h.parseClient("client", req.Client)
	if err != nil {
		return nil, err
	}
	if req.Mode == "" {
		return nil, invalid("mode is empty: give auto, yes or no")
	}
	mode, err := c2.ParseAckMode(clip(req.Mode, 40))
	if err != nil {
		return nil, err
	}
	if err := h.svc.SetAcknowledges(ctx, id, mode); err != nil {
		return nil, err
	}
	return h.clientState(ctx, id)
}

func (h *handlers) GetTopicState(ctx context.Context, req *c2pb.TopicRequest) (*c2pb.TopicState, error) {
	if err := topicArg(req.Topic); err != nil {
		return nil, err
	}
	st, err := h.svc.TopicState(ctx, req.Topic)
	if err != nil {
		return nil, err
	}
	return topicStatePB(st), nil
}

func topicStatePB(st c2.TopicState) *c2pb.TopicState {
	return &c2pb.TopicState{
		Topic: st.Name, Version: st.Version, RotatedAt: timestamp(st.RotatedAt), Members: st.Members,
		Acknowledged: st.Acknowledged, Behind: st.Behind, BehindNotAcknowledging: st.BehindNotAcknowledging,
		Converged: st.Converged, Summary: st.String(),
	}
}

func (h *handlers) ListTopicBehind(ctx context.Context, req *c2pb.ListTopicBehindRequest) (*c2pb.ListTopicBehindResponse, error) {
	if err := topicArg(req.Topic); err != nil {
		return nil, err
	}
	after, err := parseAfterID(req.After)
	if err != nil {
		return nil, err
	}
	list, err := h.svc.TopicBehind(ctx, req.Topic, after, limit(req.Limit))
	if err != nil {
		return nil, err
	}
	st, err := h.svc.TopicState(ctx, req.Topic)
	if err != nil {
		return nil, err
	}
	out := &c2pb.ListTopicBehindResponse{Total: st.Behind, Clients: make([]*c2pb.BehindClient, len(list))}
	for i, b := range list {
		out.Clients[i] = &c2pb.BehindClient{
			Id: b.ID.String(), AckedVersion: b.AckedVersion, AckedAt: timestamp(b.AckedAt),
			Acknowledges: b.Acknowledges, LastSeen: timestamp(b.LastSeen),
		}
	}
	return out, nil
}

func (h *handlers) GetFleetState(ctx context.Context, _ *c2pb.Empty) (*c2pb.FleetState, error) {
	f, err := h.svc.FleetState(ctx)
	if err != nil {
		return nil, err
	}
	d := h.svc.Dispatcher().Stats()
	return &c2pb.FleetState{
		Clients: f.Clients, Acknowledging: f.Acknowledging, NotAcknowledging: f.NotAcknowledging,
		Unknown: max(0, f.Clients-f.Acknowledging-f.NotAcknowledging),
		Stalled: f.Stalled, KeyChangesPending: f.KeyChangesPending,
		MembershipsBehind: f.MembershipsBehind, ClientsBehind: f.ClientsBehind, PendingCommands: f.PendingCommands,
		CatchUp: &c2pb.CatchUpProgress{
			SyncReceived: d.CatchUp.Received, SyncQueued: int64(d.CatchUp.Queued), SyncAnswered: d.CatchUp.Handled,
			SyncRefused: d.CatchUp.Invalid, SyncDropped: d.CatchUp.Dropped, Commands: d.CatchUp.Commands,
			Repaired: d.Repaired, Resent: d.Resent,
		},
	}, nil
}

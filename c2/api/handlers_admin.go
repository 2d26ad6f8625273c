package api

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/c2/api/c2pb"
	"github.com/e4-iot/e4kit/c2/store"
)

func (h *handlers) GetCommand(ctx context.Context, req *c2pb.GetCommandRequest) (*c2pb.Command, error) {
	id, err := c2.ParseCommandID(req.Id)
	if err != nil {
		return nil, err
	}
	c, err := h.svc.Command(ctx, id)
	if err != nil {
		return nil, err
	}
	return commandPB(c), nil
}

func (h *handlers) ListCommands(ctx context.Context, req *c2pb.ListCommandsRequest) (*c2pb.ListCommandsResponse, error) {
	var f c2.CommandFilter
	if req.Client != "" {
		id, err := h.parseClient("client", req.Client)
		if err != nil {
			return nil, err
		}
		f.Client = &id
	}
	switch st := c2.CommandState(req.State); st {
	case "", c2.CommandPending, c2.CommandSent, c2.CommandFailed, c2.CommandSuperseded:
		f.State = st
	default:
		return nil, invalid("state must be pending, sent, failed or superseded, not %q", clip(req.State, 40))
	}
	if err := checkText("target", req.Target); err != nil {
		return nil, err
	}
	f.Target = req.Target
	list, err := h.svc.Commands(ctx, f, req.After, limit(req.Limit))
	if err != nil {
		return nil, err
	}
	total, err := h.svc.CountCommands(ctx, f)
	if err != nil {
		return nil, err
	}
	out := &c2pb.ListCommandsResponse{Total: total, Commands: make([]*c2pb.Command, len(list))}
	for i, c := range list {
		out.Commands[i] = commandPB(c)
	}
	return out, nil
}

// healthTimeout bounds each probe of GetHealth.
const healthTimeout = 5 * time.Second

func (h *handlers) GetHealth(ctx context.Context, _ *c2pb.Empty) (*c2pb.Health, error) {
	r := h.svc.Health(ctx, healthTimeout)
	out := &c2pb.Health{Ok: r.OK(), Mode: r.Mode, PendingCommands: r.Pending}
	if r.Database != nil {
		out.Database = r.Database.Error()
	}
	if r.Transport != nil {
		out.Transport = r.Transport.Error()
	}
	return out, nil
}

func (h *handlers) GetInfo(ctx context.Context, _ *c2pb.Empty) (*c2pb.Info, error) {
	clients, err := h.svc.CountClients(ctx)
	if err != nil {
		return nil, err
	}
	topics, err := h.svc.CountTopics(ctx)
	if err != nil {
		return nil, err
	}
	return &c2pb.Info{Mode: h.svc.Mode().String(), Clients: clients, Topics: topics, Version: h.version}, nil
}

// maxEventPage bounds ListEvents.
const maxEventPage = 1000

func (h *handlers) ListEvents(_ context.Context, req *c2pb.ListEventsRequest) (*c2pb.ListEventsResponse, error) {
	n := int(req.Limit)
	if n < 0 || n > maxEventPage {
		return nil, invalid("limit must be 0 to %d", maxEventPage)
	}
	if n == 0 {
		n = c2.DefaultLimit
	}
	list, err := h.hub.List(req.After, n)
	if err != nil {
		return nil, invalid("after: %v", err)
	}
	return &c2pb.ListEventsResponse{Events: list}, nil
}

func (h *handlers) WatchEvents(req *c2pb.WatchEventsRequest, stream grpc.ServerStreamingServer[c2pb.Event]) error {
	kinds := make(map[string]bool, len(req.Kinds))
	for _, k := range req.Kinds {
		kinds[k] = true
	}
	wanted := func(e *c2pb.Event) bool { return len(kinds) == 0 || kinds[e.Kind] || e.Kind == EventLost }
	backlog, sub, err := h.hub.Subscribe(req.After)
	if err != nil {
		return invalid("after: %v", err)
	}
	defer sub.Close()
	// Headers go out first, so a client sees the stream open before any
	// event (the first Send would send them, and SendHeader then fail).
	if err := stream.SendHeader(nil); err != nil {
		return err
	}
	for _, e := range backlog {
		if wanted(e) {
			if err := stream.Send(e); err != nil {
				return err
			}
		}
	}
	ctx := stream.Context()
	for {
		select {
		case <-ctx.Done():
			// A revoked or expired token ends the stream with the reason.
			if cause := context.Cause(ctx); status.Code(cause) == codes.Unauthenticated {
				return cause
			}
			return nil
		case <-h.stopping:
			return status.Error(codes.Unavailable, "C2 is shutting down; resume from the last event id received")
		case e, ok := <-sub.Events():
			if !ok {
				if sub.Overflowed() {
					return status.Error(codes.ResourceExhausted, "events came faster than this stream read them; resume from the last event id received")
				}
				return nil
			}
			if wanted(e) {
				if err := stream.Send(e); err != nil {
					return err
				}
			}
		}
	}
}

// maxAuditPage bounds ListAudit.
const maxAuditPage = 1000

func (h *handlers) ListAudit(ctx context.Context, req *c2pb.ListAuditRequest) (*c2pb.ListAuditResponse, error) {
	n := int(req.Limit)
	if n < 0 || n > maxAuditPage {
		return nil, invalid("limit must be 0 to %d", maxAuditPage)
	}
	if n == 0 {
		n = c2.DefaultLimit
	}
	f := store.AuditFilter{Actor: req.Actor, Action: req.Action, Target: req.Target, Outcome: req.Outcome}
	for field, v := range map[string]string{"actor": f.Actor, "action": f.Action, "target": f.Target, "outcome": f.Outcome} {
		if err := checkText(field, v); err != nil {
			return nil, err
		}
	}
	if req.Since != nil {
		if err := req.Since.CheckValid(); err != nil {
			return nil, invalid("since: %v", err)
		}
		f.Since = req.Since.AsTime()
	}
	if req.Until != nil {
		if err := req.Until.CheckValid(); err != nil {
			return nil, invalid("until: %v", err)
		}
		f.Until = req.Until.AsTime()
	}
	var list []store.AuditRecord
	err := h.st.View(ctx, func(tx store.Tx) error {
		a, ok := tx.(store.AccessTx)
		if !ok {
			return status.Errorf(codes.Unimplemented, "the store (%T) keeps no audit log", tx)
		}
		var err error
		list, err = a.ListAudit(f, req.After, n)
		return err
	})
	if err != nil {
		return nil, err
	}
	out := &c2pb.ListAuditResponse{Records: make([]*c2pb.AuditRecord, len(list))}
	for i, r := range list {
		out.Records[i] = &c2pb.AuditRecord{
			Id: r.ID, Time: timestamp(r.Time), Actor: r.Actor, Action: r.Action, Target: r.Target,
			Outcome: r.Outcome, Detail: r.Detail, Remote: r.Remote,
		}
	}
	return out, nil
}

// maxTokenTTL bounds ttl_seconds (about 100 years).
const maxTokenTTL = 100 * 366 * 24 * time.Hour

func (h *handlers) CreateToken(ctx context.Context, req *c2pb.CreateTokenRequest) (*c2pb.CreateTokenResponse, error) {
	if err := checkTokenName(req.Name); err != nil {
		return nil, invalid("%v", err)
	}
	scope, err := ParseScope(req.Scope)
	if err != nil {
		return nil, invalid("%v", err)
	}
	if req.TtlSeconds < 0 || req.TtlSeconds > int64(maxTokenTTL/time.Second) {
		return nil, invalid("ttl_seconds must be 0 (no expiry) to %d", int64(maxTokenTTL/time.Second))
	}
	n := NewToken{Name: req.Name, Scope: scope, TTL: time.Duration(req.TtlSeconds) * time.Second, CreatedBy: callerOf(ctx).actor}
	var (
		secret string
		tok    store.Token
	)
	err = h.st.Update(ctx, func(tx store.Tx) (err error) {
		if secret, tok, err = createToken(tx, n, h.now()); err != nil {
			return err
		}
		return auditInTx(ctx, tx)
	})
	if err != nil {
		return nil, err
	}
	return &c2pb.CreateTokenResponse{Token: tokenPB(tok), Secret: secret}, nil
}

func tokenPB(t store.Token) *c2pb.Token {
	return &c2pb.Token{Name: t.Name, Scope: t.Scope, CreatedAt: timestamp(t.CreatedAt), ExpiresAt: timestamp(t.ExpiresAt),
		RevokedAt: timestamp(t.RevokedAt), CreatedBy: t.CreatedBy}
}

// maxTokensListed bounds ListTokens.
const maxTokensListed = 10000

func (h *handlers) ListTokens(ctx context.Context, _ *c2pb.Empty) (*c2pb.ListTokensResponse, error) {
	var list []store.Token
	err := h.st.View(ctx, func(tx store.Tx) error {
		a, ok := tx.(store.AccessTx)
		if !ok {
			return status.Errorf(codes.Unimplemented, "the store (%T) keeps no tokens", tx)
		}
		var err error
		list, err = a.ListTokens("", maxTokensListed)
		return err
	})
	if err != nil {
		return nil, err
	}
	out := &c2pb.ListTokensResponse{Tokens: make([]*c2pb.Token, len(list))}
	for i, t := range list {
		out.Tokens[i] = tokenPB(t)
	}
	return out, nil
}

func (h *handlers) RevokeToken(ctx context.Context, req *c2pb.RevokeTokenRequest) (*c2pb.Empty, error) {
	if err := checkTokenName(req.Name); err != nil {
		return nil, invalid("%v", err)
	}
	err := h.st.Update(ctx, func(tx store.Tx) error {
		a, ok := tx.(store.AccessTx)
		if !ok {
			return status.Errorf(codes.Unimplemented, "the store (%T) keeps no tokens", tx)
		}
		if err := a.RevokeToken(req.Name, h.now().UTC()); err != nil {
			return err
		}
		return auditInTx(ctx, tx)
	})
	h.auth.forget()
	if err != nil {
		return nil, err
	}
	h.streams.endToken(req.Name, errRevoked)
	return &c2pb.Empty{}, nil
}

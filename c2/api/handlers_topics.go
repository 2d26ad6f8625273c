package api

import (
	"context"

	"github.com/e4-iot/e4kit/c2/api/c2pb"
	"github.com/e4-iot/e4kit/e4"
)

// topicArg checks a topic field: the service checks the topics it
// creates, but lookups go to the store as they are.
func topicArg(topic string) error {
	if topic == "" {
		return invalid("topic is empty")
	}
	if err := checkName(topic); err != nil {
		return invalid("topic: %v", err)
	}
	return nil
}

func (h *handlers) AddTopic(ctx context.Context, req *c2pb.AddTopicRequest) (*c2pb.Topic, error) {
	if err := topicArg(req.Topic); err != nil {
		return nil, err
	}
	t, err := h.svc.AddTopic(ctx, req.Topic)
	if err != nil {
		return nil, err
	}
	return topicPB(t), nil
}

func (h *handlers) GetTopic(ctx context.Context, req *c2pb.TopicRequest) (*c2pb.Topic, error) {
	if err := topicArg(req.Topic); err != nil {
		return nil, err
	}
	t, err := h.svc.GetTopic(ctx, req.Topic)
	if err != nil {
		return nil, err
	}
	members, err := h.svc.CountClientsOfTopic(ctx, req.Topic)
	if err != nil {
		return nil, err
	}
	out := topicPB(t)
	out.Members = members
	return out, nil
}

func (h *handlers) ListTopics(ctx context.Context, req *c2pb.ListTopicsRequest) (*c2pb.ListTopicsResponse, error) {
	if err := checkText("after", req.After); err != nil {
		return nil, err
	}
	list, err := h.svc.ListTopics(ctx, req.After, limit(req.Limit))
	if err != nil {
		return nil, err
	}
	total, err := h.svc.CountTopics(ctx)
	if err != nil {
		return nil, err
	}
	out := &c2pb.ListTopicsResponse{Total: total, Topics: make([]*c2pb.Topic, len(list))}
	for i, t := range list {
		out.Topics[i] = topicPB(t)
	}
	return out, nil
}

func (h *handlers) RemoveTopic(ctx context.Context, req *c2pb.TopicRequest) (*c2pb.Empty, error) {
	if err := topicArg(req.Topic); err != nil {
		return nil, err
	}
	return &c2pb.Empty{}, h.svc.RemoveTopic(ctx, req.Topic)
}

func (h *handlers) RotateTopic(ctx context.Context, req *c2pb.TopicRequest) (*c2pb.RotateResponse, error) {
	if err := topicArg(req.Topic); err != nil {
		return nil, err
	}
	n, err := h.svc.RotateTopic(ctx, req.Topic)
	if err != nil {
		return nil, err
	}
	return &c2pb.RotateResponse{Commands: int64(n)}, nil
}

// member parses the client and topic of a membership request.
func (h *handlers) member(req *c2pb.MemberRequest) (e4.ID, error) {
	id, err := h.parseClient("client", req.Client)
	if err != nil {
		return id, err
	}
	return id, topicArg(req.Topic)
}

func (h *handlers) AddMember(ctx context.Context, req *c2pb.MemberRequest) (*c2pb.Empty, error) {
	id, err := h.member(req)
	if err != nil {
		return nil, err
	}
	return &c2pb.Empty{}, h.svc.AddMember(ctx, req.Topic, id)
}

// maxBatchMembers bounds AddMembers; larger sets go in several calls.
const maxBatchMembers = 10000

func (h *handlers) AddMembers(ctx context.Context, req *c2pb.AddMembersRequest) (*c2pb.Empty, error) {
	if err := topicArg(req.Topic); err != nil {
		return nil, err
	}
	if len(req.Clients) == 0 || len(req.Clients) > maxBatchMembers {
		return nil, invalid("clients must list 1 to %d clients, not %d", maxBatchMembers, len(req.Clients))
	}
	ids := make([]e4.ID, len(req.Clients))
	for i, ref := range req.Clients {
		id, err := h.parseClient("clients", ref)
		if err != nil {
			return nil, err
		}
		ids[i] = id
	}
	return &c2pb.Empty{}, h.svc.AddMembers(ctx, req.Topic, ids)
}

func (h *handlers) RemoveMember(ctx context.Context, req *c2pb.MemberRequest) (*c2pb.Empty, error) {
	id, err := h.member(req)
	if err != nil {
		return nil, err
	}
	return &c2pb.Empty{}, h.svc.RemoveMember(ctx, req.Topic, id)
}

func (h *handlers) IsMember(ctx context.Context, req *c2pb.MemberRequest) (*c2pb.IsMemberResponse, error) {
	id, err := h.member(req)
	if err != nil {
		return nil, err
	}
	ok, err := h.svc.IsMember(ctx, req.Topic, id)
	if err != nil {
		return nil, err
	}
	return &c2pb.IsMemberResponse{Member: ok}, nil
}

func (h *handlers) ListTopicsOfClient(ctx context.Context, req *c2pb.ListTopicsOfClientRequest) (*c2pb.ListTopicsOfClientResponse, error) {
	id, err := h.parseClient("client", req.Client)
	if err != nil {
		return nil, err
	}
	if err := checkText("after", req.After); err != nil {
		return nil, err
	}
	topics, err := h.svc.TopicsOfClient(ctx, id, req.After, limit(req.Limit))
	if err != nil {
		return nil, err
	}
	total, err := h.svc.CountTopicsOfClient(ctx, id)
	if err != nil {
		return nil, err
	}
	return &c2pb.ListTopicsOfClientResponse{Topics: topics, Total: total}, nil
}

func (h *handlers) ListMembers(ctx context.Context, req *c2pb.ListMembersRequest) (*c2pb.ListMembersResponse, error) {
	if err := topicArg(req.Topic); err != nil {
		return nil, err
	}
	after, err := parseAfterID(req.After)
	if err != nil {
		return nil, err
	}
	ids, err := h.svc.ClientsOfTopic(ctx, req.Topic, after, limit(req.Limit))
	if err != nil {
		return nil, err
	}
	total, err := h.svc.CountClientsOfTopic(ctx, req.Topic)
	if err != nil {
		return nil, err
	}
	return &c2pb.ListMembersResponse{Clients: idStrings(ids), Total: total}, nil
}

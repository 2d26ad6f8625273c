package api

import (
	"context"
	"errors"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/c2/api/c2pb"
	"github.com/e4-iot/e4kit/e4"
)

// pair parses two client fields.
func (h *handlers) pair(firstField, first, secondField, second string) (e4.ID, e4.ID, error) {
	a, err := h.parseClient(firstField, first)
	if err != nil {
		return a, e4.ID{}, err
	}
	b, err := h.parseClient(secondField, second)
	return a, b, err
}

func (h *handlers) SendPubKey(ctx context.Context, req *c2pb.PubKeyRequest) (*c2pb.Empty, error) {
	target, source, err := h.pair("target", req.Target, "source", req.Source)
	if err != nil {
		return nil, err
	}
	return &c2pb.Empty{}, h.svc.SendPubKey(ctx, c2.Link{Source: source, Target: target})
}

func (h *handlers) RemovePubKey(ctx context.Context, req *c2pb.PubKeyRequest) (*c2pb.Empty, error) {
	target, source, err := h.pair("target", req.Target, "source", req.Source)
	if err != nil {
		return nil, err
	}
	return &c2pb.Empty{}, h.svc.RemovePubKey(ctx, c2.Link{Source: source, Target: target})
}

func (h *handlers) ResetPubKeys(ctx context.Context, req *c2pb.ClientRequest) (*c2pb.Empty, error) {
	id, err := h.parseClient("client", req.Client)
	if err != nil {
		return nil, err
	}
	return &c2pb.Empty{}, h.svc.ResetPubKeys(ctx, id)
}

func (h *handlers) LinkClients(ctx context.Context, req *c2pb.LinkRequest) (*c2pb.Empty, error) {
	source, target, err := h.pair("source", req.Source, "target", req.Target)
	if err != nil {
		return nil, err
	}
	if source == target {
		return nil, invalid("a client cannot be linked to itself")
	}
	return &c2pb.Empty{}, h.svc.LinkClients(ctx, c2.Link{Source: source, Target: target})
}

func (h *handlers) UnlinkClients(ctx context.Context, req *c2pb.LinkRequest) (*c2pb.Empty, error) {
	source, target, err := h.pair("source", req.Source, "target", req.Target)
	if err != nil {
		return nil, err
	}
	return &c2pb.Empty{}, h.svc.UnlinkClients(ctx, c2.Link{Source: source, Target: target})
}

func (h *handlers) ListLinks(ctx context.Context, req *c2pb.ListLinksRequest) (*c2pb.ListLinksResponse, error) {
	id, err := h.parseClient("client", req.Client)
	if err != nil {
		return nil, err
	}
	after, err := parseAfterID(req.After)
	if err != nil {
		return nil, err
	}
	ids, err := h.svc.LinkTargets(ctx, id, after, limit(req.Limit))
	if err != nil {
		return nil, err
	}
	return &c2pb.ListLinksResponse{Clients: idStrings(ids)}, nil
}

func (h *handlers) SendC2SignerKey(ctx context.Context, req *c2pb.ClientRequest) (*c2pb.Empty, error) {
	id, err := h.parseClient("client", req.Client)
	if err != nil {
		return nil, err
	}
	return &c2pb.Empty{}, h.svc.SendC2SignerKey(ctx, id)
}

func (h *handlers) GetC2Key(context.Context, *c2pb.Empty) (*c2pb.C2Key, error) {
	public, err := h.svc.C2PublicKey()
	if err != nil {
		return nil, err
	}
	signer, signerID, err := h.svc.C2SignerPublicKey()
	if err != nil {
		return nil, err
	}
	return &c2pb.C2Key{PublicKey: public, SignerPublicKey: signer, SignerId: signerID.String()}, nil
}

func (h *handlers) RotateC2Key(ctx context.Context, _ *c2pb.Empty) (*c2pb.RotateResponse, error) {
	n, err := h.svc.RotateC2Key(ctx)
	if err != nil {
		return nil, err
	}
	return &c2pb.RotateResponse{Commands: int64(n)}, nil
}

// maxMessage bounds the payload of ProtectMessage and UnprotectMessage.
const maxMessage = 1 << 20

func (h *handlers) ProtectMessage(ctx context.Context, req *c2pb.ProtectMessageRequest) (*c2pb.ProtectMessageResponse, error) {
	if err := topicArg(req.Topic); err != nil {
		return nil, err
	}
	if len(req.Payload) > maxMessage {
		return nil, invalid("payload is %d bytes, the limit is %d", len(req.Payload), maxMessage)
	}
	out, err := h.svc.ProtectMessage(ctx, req.Topic, req.Payload)
	if err != nil {
		return nil, err
	}
	return &c2pb.ProtectMessageResponse{Protected: out}, nil
}

func (h *handlers) UnprotectMessage(ctx context.Context, req *c2pb.UnprotectMessageRequest) (*c2pb.UnprotectMessageResponse, error) {
	if err := topicArg(req.Topic); err != nil {
		return nil, err
	}
	if len(req.Protected) > maxMessage+e4.PKOverhead {
		return nil, invalid("protected is %d bytes, the limit is %d", len(req.Protected), maxMessage+e4.PKOverhead)
	}
	out, err := h.svc.UnprotectMessage(ctx, req.Topic, req.Protected)
	if errors.Is(err, e4.ErrAuthentication) {
		return nil, invalid("the message does not authenticate under the topic's current key")
	}
	if err != nil {
		return nil, err
	}
	return &c2pb.UnprotectMessageResponse{Payload: out}, nil
}

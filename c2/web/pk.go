package web

import (
	"context"
	"fmt"
	"net/url"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/e4"
)

// pkPage shows C2's key pair (by fingerprint) and the links of a client
// (?source=) in public-key mode.
func (h *Handler) pkPage(req *request) {
	ctx := req.Context()
	data := map[string]any{"PK": h.cfg.Service.Mode() == e4.PubKey}
	if h.cfg.Service.Mode() != e4.PubKey {
		h.render(req, "pk", "Public keys", data)
		return
	}
	if pub, err := h.cfg.Service.C2PublicKey(); err == nil {
		data["C2Key"] = fingerprint(pub)
	}
	if signer, id, err := h.cfg.Service.C2SignerPublicKey(); err == nil {
		data["Signer"], data["SignerID"] = fingerprint(signer), id.String()
	}
	if src := req.URL.Query().Get("source"); src != "" {
		id, err := h.clientRef(src)
		if err != nil {
			h.failed(req, err)
			return
		}
		after, err := parseAfter(req.URL.Query().Get("after"))
		if err != nil {
			h.failed(req, err)
			return
		}
		targets, err := h.cfg.Service.LinkTargets(ctx, id, after, pageSize)
		if err != nil {
			h.failed(req, err)
			return
		}
		ids := make([]string, len(targets))
		for i, t := range targets {
			ids[i] = t.String()
		}
		data["Source"], data["SourceID"], data["Targets"] = src, id.String(), ids
		if len(ids) == pageSize {
			data["Next"] = Prefix + "pk?" + url.Values{"source": {src}, "after": {ids[len(ids)-1]}}.Encode()
		}
	}
	h.render(req, "pk", "Public keys", data)
}

// pkPair runs a change on the (source, target) link a form names.
func (h *Handler) pkPair(req *request, action, okMsg string, change func(ctx context.Context, l c2.Link) error) {
	source, err := h.clientRef(req.PostFormValue("source"))
	if err != nil {
		h.failed(req, err)
		return
	}
	target, err := h.clientRef(req.PostFormValue("target"))
	if err != nil {
		h.failed(req, err)
		return
	}
	err = req.audited(action, fmt.Sprintf("source=%s target=%s", source, target), func(ctx context.Context) error {
		return change(ctx, c2.Link{Source: source, Target: target})
	})
	if err != nil {
		h.failed(req, err)
		return
	}
	h.done(req, Prefix+"pk?source="+source.String(), okMsg)
}

func (h *Handler) pkLink(req *request) {
	h.pkPair(req, "LinkClients", "linked: the target receives the source's public key and its changes", h.cfg.Service.LinkClients)
}

func (h *Handler) pkUnlink(req *request) {
	h.pkPair(req, "UnlinkClients", "unlinked", h.cfg.Service.UnlinkClients)
}

func (h *Handler) pkSend(req *request) {
	h.pkPair(req, "SendPubKey", "public key sent", h.cfg.Service.SendPubKey)
}

func (h *Handler) pkRemove(req *request) {
	h.pkPair(req, "RemovePubKey", "public key removal sent", h.cfg.Service.RemovePubKey)
}

// pkTarget runs a change on the one client a form names as target.
func (h *Handler) pkTarget(req *request, action, okMsg string, change func(ctx context.Context, target e4.ID) error) {
	target, err := h.clientRef(req.PostFormValue("target"))
	if err == nil {
		err = req.audited(action, "target="+target.String(), func(ctx context.Context) error { return change(ctx, target) })
	}
	if err != nil {
		h.failed(req, err)
		return
	}
	h.done(req, Prefix+"pk", okMsg)
}

func (h *Handler) pkReset(req *request) {
	h.pkTarget(req, "ResetPubKeys", "ResetPubKeys sent", h.cfg.Service.ResetPubKeys)
}

func (h *Handler) pkSendSigner(req *request) {
	h.pkTarget(req, "SendC2SignerKey", "C2's signing key sent", h.cfg.Service.SendC2SignerKey)
}

// pkRotateC2 rotates C2's own key pair (admin).
func (h *Handler) pkRotateC2(req *request) {
	var n int
	err := req.audited("RotateC2Key", "", func(ctx context.Context) (err error) {
		n, err = h.cfg.Service.RotateC2Key(ctx)
		return err
	})
	if err != nil {
		h.failed(req, err)
		return
	}
	h.done(req, Prefix+"pk", fmt.Sprintf("C2's key pair rotated: SetC2Key queued for %d clients", n))
}

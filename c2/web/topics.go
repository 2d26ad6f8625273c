package web

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/e4"
)

// topicRow is a topic in the list, with its convergence.
type topicRow struct {
	Info  c2.TopicInfo
	State c2.TopicState
}

// topicList shows a page of topics by name after ?after=.
func (h *Handler) topicList(req *request) {
	ctx := req.Context()
	after := req.URL.Query().Get("after")
	list, err := h.cfg.Service.ListTopics(ctx, after, pageSize)
	if err != nil {
		h.failed(req, err)
		return
	}
	rows := make([]topicRow, len(list))
	for i, t := range list {
		rows[i].Info = t
		if rows[i].State, err = h.cfg.Service.TopicState(ctx, t.Name); err != nil && !errors.Is(err, c2.ErrNotFound) {
			h.failed(req, err)
			return
		}
	}
	data := map[string]any{"Rows": rows, "First": after == ""}
	if len(list) == pageSize {
		data["Next"] = Prefix + "topics?after=" + url.QueryEscape(list[len(list)-1].Name)
	}
	h.render(req, "topics", "Topics", data)
}

func topicURL(name string) string { return Prefix + "topic?name=" + url.QueryEscape(name) }

func (h *Handler) addTopic(req *request) {
	name := strings.TrimSpace(req.PostFormValue("name"))
	err := req.audited("AddTopic", "topic="+name, func(ctx context.Context) error {
		_, err := h.cfg.Service.AddTopic(ctx, name)
		return err
	})
	if err != nil {
		h.failed(req, err)
		return
	}
	h.done(req, topicURL(name), "topic added")
}

// memberRow is a member of a topic.
type memberRow struct{ ID, Name string }

// topicDetail shows a topic: its key version, convergence, members and
// the members behind its current key.
func (h *Handler) topicDetail(req *request) {
	ctx := req.Context()
	q := req.URL.Query()
	name := q.Get("name")
	info, err := h.cfg.Service.GetTopic(ctx, name)
	if err != nil {
		h.failed(req, err)
		return
	}
	st, err := h.cfg.Service.TopicState(ctx, name)
	if err != nil {
		h.failed(req, err)
		return
	}
	after, err := parseAfter(q.Get("after"))
	if err != nil {
		h.failed(req, err)
		return
	}
	ids, err := h.cfg.Service.ClientsOfTopic(ctx, name, after, pageSize)
	if err != nil {
		h.failed(req, err)
		return
	}
	members := make([]memberRow, len(ids))
	for i, id := range ids {
		members[i].ID = id.String()
		if c, err := h.cfg.Service.GetClient(ctx, id); err == nil {
			members[i].Name = c.Name
		}
	}
	behind, err := h.cfg.Service.TopicBehind(ctx, name, e4.ID{}, 20)
	if err != nil {
		h.failed(req, err)
		return
	}
	plan, covered, err := h.topicPolicy(ctx, name)
	if err != nil {
		h.failed(req, err)
		return
	}
	data := map[string]any{"Topic": info, "State": st, "Members": members, "Behind": behind, "Hash": hex.EncodeToString(info.Hash[:])}
	if covered || plan.MaxMessages > 0 {
		// A message budget not spent yet has no due time: its count shows.
		data["Plan"], data["Covered"] = plan, covered
	}
	if len(ids) == pageSize {
		data["Next"] = topicURL(name) + "&after=" + ids[len(ids)-1].String()
	}
	h.render(req, "topic", "Topic "+name, data)
}

func (h *Handler) rotateTopic(req *request) {
	name := req.PostFormValue("name")
	var n int
	err := req.audited("RotateTopic", "topic="+name, func(ctx context.Context) (err error) {
		n, err = h.cfg.Service.RotateTopic(ctx, name)
		return err
	})
	if err != nil {
		h.failed(req, err)
		return
	}
	h.done(req, topicURL(name), fmt.Sprintf("key rotated: %d SetTopicKey commands queued", n))
}

func (h *Handler) removeTopic(req *request) {
	name := req.PostFormValue("name")
	err := req.audited("RemoveTopic", "topic="+name, func(ctx context.Context) error {
		return h.cfg.Service.RemoveTopic(ctx, name)
	})
	if err != nil {
		h.failed(req, err)
		return
	}
	h.done(req, Prefix+"topics", "topic removed")
}

func (h *Handler) addMember(req *request) {
	name := req.PostFormValue("name")
	id, err := h.clientRef(req.PostFormValue("client"))
	if err == nil {
		err = req.audited("AddMember", "client="+id.String()+" topic="+name, func(ctx context.Context) error {
			return h.cfg.Service.AddMember(ctx, name, id)
		})
	}
	if err != nil {
		h.failed(req, err)
		return
	}
	h.done(req, topicURL(name), "member added: the topic key is on its way to it")
}

func (h *Handler) removeMember(req *request) {
	name := req.PostFormValue("name")
	id, ok := h.formClient(req)
	if !ok {
		return
	}
	err := req.audited("RemoveMember", "client="+id.String()+" topic="+name, func(ctx context.Context) error {
		return h.cfg.Service.RemoveMember(ctx, name, id)
	})
	if err != nil {
		h.failed(req, err)
		return
	}
	h.done(req, topicURL(name), "member removed")
}

// fingerprint names a public key without showing it: the first 16 hex
// digits of its SHA-256.
func fingerprint(pub []byte) string {
	sum := sha256.Sum256(pub)
	return "SHA256:" + hex.EncodeToString(sum[:8])
}

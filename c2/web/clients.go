package web

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/e4"
)

// pageSize is the rows of a list page.
const pageSize = 50

// clientRow is a client in a list.
type clientRow struct {
	ID, Name string
}

// clientList shows a page of clients by id, after ?after= (keyset
// pagination: a page costs the same at any fleet size). ?q= finds a
// client by exact name or id, or lists the ids starting with a hex
// prefix.
func (h *Handler) clientList(req *request) {
	ctx := req.Context()
	q := strings.TrimSpace(req.URL.Query().Get("q"))
	after, err := parseAfter(req.URL.Query().Get("after"))
	if err != nil {
		h.failed(req, err)
		return
	}
	var (
		rows []clientRow
		next string // the keyset cursor of the next page, if any
	)
	if q != "" {
		rows, next, err = h.searchClients(ctx, q, after)
	} else {
		rows, next, err = h.listClients(ctx, after, "")
	}
	if err != nil {
		h.failed(req, err)
		return
	}
	data := map[string]any{"Rows": rows, "Q": q, "PK": h.cfg.Service.Mode() == e4.PubKey, "First": after == (e4.ID{})}
	if next != "" {
		v := url.Values{"after": {next}}
		if q != "" {
			v.Set("q", q)
		}
		data["Next"] = Prefix + "clients?" + v.Encode()
	}
	h.render(req, "clients", "Clients", data)
}

// listClients lists a page of clients after after, keeping only the ids
// starting with prefix (hex) when it is set. next is the cursor of the
// following page ("" on the last one).
func (h *Handler) listClients(ctx context.Context, after e4.ID, prefix string) (rows []clientRow, next string, err error) {
	list, err := h.cfg.Service.ListClients(ctx, after, pageSize)
	if err != nil {
		return nil, "", err
	}
	rows = make([]clientRow, 0, len(list))
	for _, c := range list {
		id := c.ID.String()
		if !strings.HasPrefix(id, prefix) {
			return rows, "", nil // past the ids with the prefix
		}
		rows = append(rows, clientRow{ID: id, Name: c.Name})
	}
	if len(list) == pageSize {
		next = rows[len(rows)-1].ID
	}
	return rows, next, nil
}

// searchClients finds q as a name, a whole id, or a hex id prefix; next
// is the cursor of the prefix listing's next page.
func (h *Handler) searchClients(ctx context.Context, q string, after e4.ID) (rows []clientRow, next string, err error) {
	seen := map[string]bool{}
	if after == (e4.ID{}) {
		for _, id := range h.candidateIDs(q) {
			c, err := h.cfg.Service.GetClient(ctx, id)
			if errors.Is(err, c2.ErrNotFound) {
				continue
			} else if err != nil {
				return nil, "", err
			}
			if !seen[c.ID.String()] {
				seen[c.ID.String()] = true
				rows = append(rows, clientRow{ID: c.ID.String(), Name: c.Name})
			}
		}
	}
	prefix := strings.ToLower(q)
	if !isHex(prefix) || len(prefix) >= 2*e4.IDLen {
		return rows, "", nil
	}
	start := after
	if start == (e4.ID{}) {
		start = prefixStart(prefix)
	}
	more, next, err := h.listClients(ctx, start, prefix)
	for _, r := range more {
		if !seen[r.ID] {
			rows = append(rows, r)
		}
	}
	return rows, next, err
}

// candidateIDs are the ids q may name: the id of q as a name, and q as
// an id.
func (h *Handler) candidateIDs(q string) []e4.ID {
	ids := []e4.ID{h.cfg.Service.Suite().IDFromName(q)}
	if id, err := e4.ParseID(q); err == nil {
		ids = append(ids, id)
	}
	return ids
}

// prefixStart is the id just before the first id with that hex prefix
// (ListClients starts after it).
func prefixStart(prefix string) e4.ID {
	padded := prefix + strings.Repeat("0", 2*e4.IDLen-len(prefix))
	b, _ := hex.DecodeString(padded)
	var id e4.ID
	copy(id[:], b)
	for i := len(id) - 1; i >= 0; i-- { // id - 1, big-endian
		id[i]--
		if id[i] != 0xff {
			break
		}
	}
	if strings.Trim(prefix, "0") == "" {
		return e4.ID{}
	}
	return id
}

func isHex(s string) bool {
	for _, r := range s {
		if !strings.ContainsRune("0123456789abcdef", r) {
			return false
		}
	}
	return s != ""
}

// parseAfter parses the keyset cursor of a client page.
func parseAfter(s string) (e4.ID, error) {
	if s == "" {
		return e4.ID{}, nil
	}
	id, err := e4.ParseID(s)
	if err != nil {
		return id, fmt.Errorf("%w: after must be a client id (32 hex digits)", c2.ErrInvalidArgument)
	}
	return id, nil
}

// clientRef resolves a form's client field: 32 hex digits are an id,
// anything else a name.
func (h *Handler) clientRef(s string) (e4.ID, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return e4.ID{}, fmt.Errorf("%w: give a client name or id", c2.ErrInvalidArgument)
	}
	if len(s) == 2*e4.IDLen && isHex(strings.ToLower(s)) {
		return e4.ParseID(s)
	}
	return h.cfg.Service.Suite().IDFromName(s), nil
}

// oneTimeKey is the page that shows a key C2 generated, once.
type oneTimeKey struct {
	What, Client, ClientID, Key string
}

// addClient adds a client. In SK mode C2 generates its key (or derives
// it from a password) and shows it once, in this answer only.
func (h *Handler) addClient(req *request) {
	n := c2.NewClient{Name: strings.TrimSpace(req.PostFormValue("name")), Password: req.PostFormValue("password")}
	if idText := strings.TrimSpace(req.PostFormValue("id")); idText != "" {
		id, err := e4.ParseID(idText)
		if err != nil {
			h.failed(req, fmt.Errorf("%w: id must be 32 hex digits", c2.ErrInvalidArgument))
			return
		}
		n.ID = &id
	}
	if pub := strings.TrimSpace(req.PostFormValue("public_key")); pub != "" {
		b, err := hex.DecodeString(pub)
		if err != nil {
			h.failed(req, fmt.Errorf("%w: the public key must be hex", c2.ErrInvalidArgument))
			return
		}
		n.PublicKey = b
	}
	target := "name=" + n.Name
	if n.ID != nil {
		target += " id=" + n.ID.String()
	}
	var added c2.AddedClient
	err := req.audited("AddClient", target, func(ctx context.Context) (err error) {
		added, err = h.cfg.Service.AddClient(ctx, n)
		return err
	})
	if err != nil {
		h.failed(req, err)
		return
	}
	if added.Key == nil {
		h.done(req, clientURL(added.ID), "client added")
		return
	}
	h.render(req, "key", "Client key", oneTimeKey{What: "added", Client: added.Name, ClientID: added.ID.String(), Key: hex.EncodeToString(added.Key)})
	clear(added.Key)
}

func clientURL(id e4.ID) string { return Prefix + "client?id=" + id.String() }

// clientDetail shows a client: what C2 wants its device to hold against
// what the device acknowledged, and its commands.
func (h *Handler) clientDetail(req *request) {
	ctx := req.Context()
	id, err := e4.ParseID(req.URL.Query().Get("id"))
	if err != nil {
		h.failed(req, fmt.Errorf("%w: id must be 32 hex digits", c2.ErrInvalidArgument))
		return
	}
	info, err := h.cfg.Service.GetClient(ctx, id)
	if err != nil {
		h.failed(req, err)
		return
	}
	st, err := h.cfg.Service.ClientState(ctx, id)
	if err != nil {
		h.failed(req, err)
		return
	}
	topics, err := h.cfg.Service.ClientTopicStates(ctx, id, req.URL.Query().Get("topic_after"), pageSize)
	if err != nil {
		h.failed(req, err)
		return
	}
	var cmdAfter int64
	fmt.Sscan(req.URL.Query().Get("cmd_after"), &cmdAfter)
	cmds, err := h.cfg.Service.Commands(ctx, c2.CommandFilter{Client: &id}, cmdAfter, pageSize)
	if err != nil {
		h.failed(req, err)
		return
	}
	data := map[string]any{"Client": info, "ID": id.String(), "State": st, "Topics": topics, "Commands": cmds,
		"PK": h.cfg.Service.Mode() == e4.PubKey}
	if info.PublicKey != nil {
		data["KeyFingerprint"] = fingerprint(info.PublicKey)
	}
	if len(topics) == pageSize {
		data["TopicsNext"] = clientURL(id) + "&topic_after=" + url.QueryEscape(topics[len(topics)-1].Topic)
	}
	if len(cmds) == pageSize {
		data["CommandsNext"] = fmt.Sprintf("%s&cmd_after=%d", clientURL(id), cmds[len(cmds)-1].Seq)
	}
	h.render(req, "client", "Client "+info.Name, data)
}

// formClient is the client id a form names in its "id" field.
func (h *Handler) formClient(req *request) (e4.ID, bool) {
	id, err := e4.ParseID(req.PostFormValue("id"))
	if err != nil {
		h.failed(req, fmt.Errorf("%w: id must be 32 hex digits", c2.ErrInvalidArgument))
		return id, false
	}
	return id, true
}

// rekeyClient gives a client a new key: in SK mode one C2 generates,
// shown once; in PK mode the device's new public key from the form.
func (h *Handler) rekeyClient(req *request) {
	id, ok := h.formClient(req)
	if !ok {
		return
	}
	var given []byte
	if h.cfg.Service.Mode() == e4.PubKey {
		b, err := hex.DecodeString(strings.TrimSpace(req.PostFormValue("public_key")))
		if err != nil || len(b) == 0 {
			h.failed(req, fmt.Errorf("%w: give the device's new public key in hex", c2.ErrInvalidArgument))
			return
		}
		given = b
	}
	var key []byte
	err := req.audited("NewClientKey", "client="+id.String(), func(ctx context.Context) (err error) {
		key, err = h.cfg.Service.NewClientKey(ctx, id, given)
		return err
	})
	if err != nil {
		h.failed(req, err)
		return
	}
	if key == nil {
		h.done(req, clientURL(id), "the new public key was recorded and sent to the linked clients")
		return
	}
	h.render(req, "key", "Client key", oneTimeKey{What: "re-keyed", ClientID: id.String(), Key: hex.EncodeToString(key)})
	clear(key)
}

func (h *Handler) resetClient(req *request) {
	id, ok := h.formClient(req)
	if !ok {
		return
	}
	err := req.audited("ResetClient", "client="+id.String(), func(ctx context.Context) error {
		return h.cfg.Service.ResetClient(ctx, id)
	})
	if err != nil {
		h.failed(req, err)
		return
	}
	h.done(req, clientURL(id), "client reset: its topic keys are being cleared")
}

func (h *Handler) removeClient(req *request) {
	id, ok := h.formClient(req)
	if !ok {
		return
	}
	err := req.audited("RemoveClient", "client="+id.String(), func(ctx context.Context) error {
		return h.cfg.Service.RemoveClient(ctx, id)
	})
	if err != nil {
		h.failed(req, err)
		return
	}
	h.done(req, Prefix+"clients", "client "+id.String()+" removed")
}

func (h *Handler) setAcknowledges(req *request) {
	id, ok := h.formClient(req)
	if !ok {
		return
	}
	mode, err := c2.ParseAckMode(req.PostFormValue("mode"))
	if err == nil {
		err = req.audited("SetClientAcknowledges", "client="+id.String(), func(ctx context.Context) error {
			return h.cfg.Service.SetAcknowledges(ctx, id, mode)
		})
	}
	if err != nil {
		h.failed(req, err)
		return
	}
	h.done(req, clientURL(id), "acknowledgement mode set to "+string(mode))
}

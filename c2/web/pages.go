package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/c2/store"
)

// healthTimeout bounds the dashboard's health probes.
const healthTimeout = 3 * time.Second

// rotationRow is a recent rotation and where its topic stands now.
type rotationRow struct {
	Topic string
	At    time.Time
	State c2.TopicState
}

// dashboard shows the fleet's counts, health, outbox depth, the last
// rotations with their convergence, the monitor's counters and the live
// events.
func (h *Handler) dashboard(req *request) {
	ctx := req.Context()
	fleet, err := h.cfg.Service.FleetState(ctx)
	if err != nil {
		h.failed(req, err)
		return
	}
	topics, err := h.cfg.Service.CountTopics(ctx)
	if err != nil {
		h.failed(req, err)
		return
	}
	health := h.cfg.Service.Health(ctx, healthTimeout)
	data := map[string]any{"Fleet": fleet, "Topics": topics, "Health": health, "Rotations": h.recentRotations(ctx, 10),
		"Acked": fleet.Acknowledging, "Unknown": fleet.Clients - fleet.Acknowledging - fleet.NotAcknowledging}
	if health.Database != nil {
		data["DatabaseError"] = health.Database.Error()
	}
	if health.Transport != nil {
		data["TransportError"] = health.Transport.Error()
	}
	if sched, err := h.scheduledRotations(ctx); err == nil {
		data["Scheduled"] = sched
	} else {
		h.log.Warn("web: reading the scheduler's rotations", "err", err)
	}
	if stats, err := h.cfg.Service.MonitorStats(ctx); err == nil {
		data["Monitor"] = monitorSummary(stats)
	}
	h.render(req, "dashboard", "Dashboard", data)
}

// recentRotations are the last n topics rotated, from the buffered
// events, newest first.
func (h *Handler) recentRotations(ctx context.Context, n int) []rotationRow {
	events, err := h.cfg.Events.List("", 0)
	if err != nil {
		return nil
	}
	var rows []rotationRow
	seen := map[string]bool{}
	for _, e := range slices.Backward(events) {
		if e.Kind != string(c2.EventTopicRotated) || seen[e.Topic] {
			continue
		}
		seen[e.Topic] = true
		st, err := h.cfg.Service.TopicState(ctx, e.Topic)
		if err != nil {
			continue // removed since
		}
		rows = append(rows, rotationRow{Topic: e.Topic, At: e.Time.AsTime(), State: st})
		if len(rows) == n {
			break
		}
	}
	return rows
}

// counter is one monitor result and its count, for charts.
type counter struct {
	Name  string
	Count uint64
}

// monitorView is the monitor's counters ready to chart.
type monitorView struct {
	Since   time.Time
	Results []counter
	Max     uint64
	Total   uint64
	Ignored uint64
	Dropped uint64
	Topics  []string
}

func monitorSummary(s c2.MonitorStats) monitorView {
	v := monitorView{Since: s.Since, Ignored: s.Ignored, Dropped: s.Dropped, Topics: s.Topics}
	for name, n := range s.Results {
		v.Results = append(v.Results, counter{name, n})
		v.Total += n
		v.Max = max(v.Max, n)
	}
	slices.SortFunc(v.Results, func(a, b counter) int { return strings.Compare(a.Name, b.Name) })
	return v
}

// topView is a top list with the scale of its bars.
type topView struct {
	Title   string
	Entries []c2.MonitorTopEntry
	Max     uint64
}

// monitorPage shows the monitor's counters and its top lists.
func (h *Handler) monitorPage(req *request) {
	ctx := req.Context()
	stats, err := h.cfg.Service.MonitorStats(ctx)
	if errors.Is(err, c2.ErrNotEnabled) {
		h.render(req, "monitor", "Monitor", map[string]any{"Off": true})
		return
	} else if err != nil {
		h.failed(req, err)
		return
	}
	var tops []topView
	for _, by := range []string{"topic", "sender"} {
		for _, result := range []string{"anomalies", "all"} {
			list, err := h.cfg.Service.MonitorTop(ctx, by, result, 10)
			if err != nil {
				h.failed(req, err)
				return
			}
			v := topView{Title: fmt.Sprintf("By %s: %s", by, result), Entries: list}
			for _, e := range list {
				v.Max = max(v.Max, e.Count)
			}
			tops = append(tops, v)
		}
	}
	h.render(req, "monitor", "Monitor", map[string]any{"Stats": monitorSummary(stats), "Tops": tops})
}

// auditPage lists audit records matching the filters, by id after
// ?after=.
func (h *Handler) auditPage(req *request) {
	q := req.URL.Query()
	f := store.AuditFilter{Actor: q.Get("actor"), Action: q.Get("action"), Target: q.Get("target"), Outcome: q.Get("outcome")}
	after, _ := strconv.ParseInt(q.Get("after"), 10, 64)
	list, err := h.cfg.Access.AuditLog(req.Context(), f, after, pageSize)
	if err != nil {
		h.failed(req, err)
		return
	}
	data := map[string]any{"Records": list, "Filter": f}
	if len(list) == pageSize {
		v := q
		v.Set("after", strconv.FormatInt(list[len(list)-1].ID, 10))
		data["Next"] = Prefix + "audit?" + v.Encode()
	}
	h.render(req, "audit", "Audit log", data)
}

func (h *Handler) tokenList(req *request) {
	list, err := h.cfg.Access.Tokens(req.Context())
	if err != nil {
		h.failed(req, err)
		return
	}
	h.render(req, "tokens", "Tokens", map[string]any{"Tokens": list, "Now": h.now()})
}

// createToken creates a token and shows its secret once.
func (h *Handler) createToken(req *request) {
	hours, err := strconv.ParseFloat(strings.TrimSpace(req.PostFormValue("ttl_hours")), 64)
	if err != nil && strings.TrimSpace(req.PostFormValue("ttl_hours")) != "" {
		h.failed(req, fmt.Errorf("%w: the lifetime must be a number of hours", c2.ErrInvalidArgument))
		return
	}
	name := strings.TrimSpace(req.PostFormValue("name"))
	secret, tok, err := h.cfg.Access.CreateToken(req.Context(), req.caller(), req.remote(), name, req.PostFormValue("scope"),
		time.Duration(hours*float64(time.Hour)))
	if err != nil {
		h.failed(req, err)
		return
	}
	h.render(req, "token", "New token", map[string]any{"Token": tok, "Secret": secret})
}

func (h *Handler) revokeToken(req *request) {
	name := req.PostFormValue("name")
	if err := h.cfg.Access.RevokeToken(req.Context(), req.caller(), req.remote(), name); err != nil {
		h.failed(req, err)
		return
	}
	h.sessions.endToken(name)
	if name == req.caller().TokenName {
		http.Redirect(req.w, req.Request, Prefix+"signin", http.StatusSeeOther)
		return
	}
	h.done(req, Prefix+"tokens", "token "+name+" revoked: its sessions and streams are ended")
}

// tokenRecheck is how often a live event stream checks its session's
// token again (Handler.recheck).
const tokenRecheck = 5 * time.Second

// eventStream sends the hub's events as server-sent events while the
// session and its token hold. A browser resumes with Last-Event-ID.
func (h *Handler) eventStream(req *request) {
	flusher, ok := req.w.(http.Flusher)
	if !ok {
		http.Error(req.w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	backlog, sub, err := h.cfg.Events.Subscribe(req.Header.Get("Last-Event-ID"))
	if err != nil {
		backlog, sub, err = h.cfg.Events.Subscribe("")
	}
	if err != nil {
		http.Error(req.w, err.Error(), http.StatusBadRequest)
		return
	}
	defer sub.Close()
	req.w.Header().Set("Content-Type", "text/event-stream")
	req.w.Header().Set("X-Accel-Buffering", "no")
	req.w.WriteHeader(http.StatusOK)
	marshal := protojson.MarshalOptions{UseProtoNames: true}
	send := func(kind, id string, data []byte) {
		fmt.Fprintf(req.w, "id: %s\nevent: %s\ndata: %s\n\n", oneLine(id), oneLine(kind), oneLine(string(data)))
	}
	for _, e := range backlog {
		if b, err := marshal.Marshal(e); err == nil {
			send(e.Kind, e.Id, b)
		}
	}
	fmt.Fprint(req.w, ": open\n\n")
	flusher.Flush()
	tick := time.NewTicker(h.recheck)
	defer tick.Stop()
	for {
		select {
		case <-req.Context().Done():
			return
		case <-h.stopping:
			return
		case <-tick.C:
			if h.sessions.get(req.sess.id) == nil || h.cfg.Access.Recheck(req.Context(), req.sess.caller) != nil {
				fmt.Fprint(req.w, "event: signed_out\ndata: {}\n\n")
				flusher.Flush()
				return
			}
		case e, ok := <-sub.Events():
			if !ok {
				return // cut off for not keeping up: the browser reconnects and resumes
			}
			if b, err := marshal.Marshal(e); err == nil {
				send(e.Kind, e.Id, b)
				flusher.Flush()
			}
		}
	}
}

// oneLine keeps a value on one SSE line.
func oneLine(s string) string { return strings.NewReplacer("\r", " ", "\n", " ").Replace(s) }

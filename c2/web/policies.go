package web

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/internal/span"
)

// Automation: the rotation policies (list, add, pause, resume, remove),
// the preview of what rotates next and the record of what rotated.

// policyRow is a policy as the list shows it.
type policyRow struct {
	c2.Policy
	Selects string
	Trigger string
}

func policyView(p c2.Policy) policyRow {
	selects := string(p.Selector)
	if p.Pattern != "" {
		selects += " " + p.Pattern
	}
	var trigger string
	switch {
	case p.Period > 0:
		trigger = "every " + span.Format(p.Period)
	case p.MaxAge > 0:
		trigger = "key older than " + span.Format(p.MaxAge)
	case p.MaxMessages > 0:
		trigger = fmt.Sprintf("after %d messages under the key", p.MaxMessages)
	default:
		trigger = fmt.Sprintf("%d× %s", p.Threshold, p.OnEvent)
		if p.Window > 0 {
			trigger += " within " + span.Format(p.Window)
		}
	}
	return policyRow{Policy: p, Selects: selects, Trigger: trigger}
}

// parseSpan reads a duration field (see package span); empty is zero.
func parseSpan(field, s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	d, err := span.Parse(s)
	if err != nil {
		return 0, fmt.Errorf("%w: %s %q: want a duration such as 90m, 36h, 7d or 1w", c2.ErrInvalidArgument, field, s)
	}
	return d, nil
}

// parseCount reads a count field; empty is zero.
func parseCount(field, s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%w: %s %q: want a whole number, 0 or more", c2.ErrInvalidArgument, field, s)
	}
	return n, nil
}

// policyForm is the add form's fields, kept to show them again with an
// error.
type policyForm struct {
	Name, Kind, Selector, Pattern, Trigger, Span, Jitter string
	OnEvent, Threshold, Window, Ramp, PauseBehind        string
	MaxMessages                                          string
}

func readPolicyForm(req *request) policyForm {
	v := func(k string) string { return strings.TrimSpace(req.PostFormValue(k)) }
	return policyForm{Name: v("name"), Kind: v("kind"), Selector: v("selector"), Pattern: v("pattern"), Trigger: v("trigger"),
		Span: v("span"), Jitter: v("jitter"), OnEvent: v("on_event"), Threshold: v("threshold"), Window: v("window"),
		Ramp: v("ramp"), PauseBehind: v("pause_behind"), MaxMessages: v("max_messages")}
}

// policy turns the form into a policy; the service checks the rest
// (selector against kind, jitter against period, and so on).
func (f policyForm) policy() (c2.Policy, error) {
	p := c2.Policy{Name: f.Name, Kind: c2.TargetKind(f.Kind), Selector: c2.Selector(f.Selector), Pattern: f.Pattern}
	if p.Selector == c2.SelectAll {
		p.Pattern = ""
	}
	var errs []error
	for _, field := range []struct{ name, value string }{{"pattern", f.Pattern}, {"event", f.OnEvent}, {"kind", f.Kind}, {"selector", f.Selector}} {
		errs = append(errs, checkText(field.name, field.value))
	}
	duration := func(field, s string) time.Duration {
		d, err := parseSpan(field, s)
		errs = append(errs, err)
		return d
	}
	count := func(field, s string) int64 {
		n, err := parseCount(field, s)
		errs = append(errs, err)
		return n
	}
	switch f.Trigger {
	case "period":
		p.Period = duration("period", f.Span)
	case "max_age":
		p.MaxAge = duration("maximum age", f.Span)
	case "messages":
		p.MaxMessages = count("message budget", f.MaxMessages)
	case "event":
		p.OnEvent = f.OnEvent
		p.Threshold = count("threshold", f.Threshold)
		p.Window = duration("window", f.Window)
		if p.Threshold == 0 {
			p.Threshold = 1
		}
	default:
		errs = append(errs, fmt.Errorf("%w: trigger %q: choose a period, a maximum key age, an event or a message budget", c2.ErrInvalidArgument, f.Trigger))
	}
	p.Jitter = duration("jitter", f.Jitter)
	p.Ramp = count("ramp", f.Ramp)
	p.PauseBehind = count("pause behind", f.PauseBehind)
	return p, errors.Join(errs...)
}

// policiesPage lists the policies by name after ?after=, with the add
// form for admins.
func (h *Handler) policiesPage(req *request) {
	h.showPolicies(req, http.StatusOK, policyForm{Kind: "topic", Selector: "exact", Trigger: "period"}, "")
}

// showPolicies renders the policy list with the add form holding form
// and, after a refused add, its error.
func (h *Handler) showPolicies(req *request, status int, form policyForm, formErr string) {
	after := req.URL.Query().Get("after")
	list, err := h.cfg.Service.ListPolicies(req.Context(), after, pageSize)
	if err != nil {
		h.failed(req, err)
		return
	}
	rows := make([]policyRow, len(list))
	for i, p := range list {
		rows[i] = policyView(p)
	}
	data := map[string]any{"Policies": rows, "Form": form, "FormError": formErr, "Admin": req.caller().Scope >= admin,
		"Kinds": h.policyKinds(), "Selectors": []string{"exact", "prefix", "filter", "all"}}
	if len(list) == pageSize {
		data["Next"] = Prefix + "policies?after=" + url.QueryEscape(list[len(list)-1].Name)
	}
	h.renderStatus(req, status, "policies", "Policies", data)
}

// policyKinds are the kinds of keys a policy may rotate in this mode:
// client keys in symmetric-key mode, C2's key pair in public-key mode.
func (h *Handler) policyKinds() []string {
	if h.cfg.Service.Mode() == e4.PubKey {
		return []string{"topic", "c2"}
	}
	return []string{"topic", "client"}
}

// policyTarget is a policy change's audit target, as the API writes it
// (the request's name field, clipped).
func policyTarget(name string) string {
	if len(name) > 300 {
		name = name[:300] + "..."
	}
	return "name=" + name
}

// addPolicy adds a policy; a refused one shows the form again with the
// reason above it.
func (h *Handler) addPolicy(req *request) {
	form := readPolicyForm(req)
	p, err := form.policy()
	if err == nil {
		p.CreatedBy = req.caller().Actor
		err = req.audited("AddPolicy", policyTarget(p.Name), func(ctx context.Context) error {
			_, err := h.cfg.Service.AddPolicy(ctx, p)
			return err
		})
	}
	if err != nil {
		h.showPolicies(req, http.StatusBadRequest, form, policyErrorText(err))
		return
	}
	h.done(req, Prefix+"policies", "policy "+p.Name+" added")
}

// policyErrorText is the message of a refused policy, one line per
// reason.
func policyErrorText(err error) string {
	var lines []string
	for line := range strings.SplitSeq(errorText(err), "\n") {
		lines = append(lines, strings.TrimPrefix(line, c2.ErrInvalidArgument.Error()+": "))
	}
	return strings.Join(lines, "; ")
}

// maxReasonLen bounds a pause's reason.
const maxReasonLen = 500

// checkText refuses a field the API would refuse too: invalid UTF-8 or a
// control character (which would break the log and the audit lines).
func checkText(field, s string) error {
	if !utf8.ValidString(s) || strings.IndexFunc(s, unicode.IsControl) >= 0 {
		return fmt.Errorf("%w: %s must be valid UTF-8 without control characters", c2.ErrInvalidArgument, field)
	}
	return nil
}

func (h *Handler) pausePolicy(req *request) {
	name, reason := req.PostFormValue("name"), strings.TrimSpace(req.PostFormValue("reason"))
	if reason == "" {
		reason = "paused by " + req.caller().Actor // as the API
	}
	err := checkText("reason", reason)
	if err == nil && len(reason) > maxReasonLen {
		err = fmt.Errorf("%w: the reason is %d bytes, the limit is %d", c2.ErrInvalidArgument, len(reason), maxReasonLen)
	}
	if err != nil {
		h.failed(req, err)
		return
	}
	err = req.audited("PausePolicy", policyTarget(name), func(ctx context.Context) error {
		return h.cfg.Service.PausePolicy(ctx, name, reason)
	})
	if err != nil {
		h.failed(req, err)
		return
	}
	h.done(req, Prefix+"policies", "policy "+name+" paused")
}

func (h *Handler) resumePolicy(req *request) {
	name := req.PostFormValue("name")
	err := req.audited("ResumePolicy", policyTarget(name), func(ctx context.Context) error {
		return h.cfg.Service.ResumePolicy(ctx, name)
	})
	if err != nil {
		h.failed(req, err)
		return
	}
	h.done(req, Prefix+"policies", "policy "+name+" resumed: overdue keys rotate once, ramping up")
}

func (h *Handler) removePolicy(req *request) {
	name := req.PostFormValue("name")
	err := req.audited("RemovePolicy", policyTarget(name), func(ctx context.Context) error {
		return h.cfg.Service.RemovePolicy(ctx, name)
	})
	if err != nil {
		h.failed(req, err)
		return
	}
	h.done(req, Prefix+"policies", "policy "+name+" removed")
}

// previewWindows are the spans the rotations page previews.
var previewWindows = []struct{ Key, Label string }{{"1d", "next day"}, {"1w", "next week"}}

// previewLimit bounds the preview's rows.
const previewLimit = 200

// rotationStates are the states a recorded rotation can be in.
var rotationStates = []c2.RotationState{c2.RotationStarted, c2.RotationConverged, c2.RotationStuck,
	c2.RotationSuperseded, c2.RotationFailed}

// rotationsPage shows what rotates within ?within= (1d or 1w), earliest
// first, and the rotations the scheduler fired, filtered by ?policy=,
// ?state= and ?target=, by id after ?after=.
func (h *Handler) rotationsPage(req *request) {
	ctx := req.Context()
	q := req.URL.Query()
	within := q.Get("within")
	if within != "1w" {
		within = "1d"
	}
	ahead, _ := parseSpan("within", within)
	now := h.cfg.Service.Now()
	preview, err := h.cfg.Service.PreviewRotations(ctx, now.Add(ahead), previewLimit)
	if err != nil {
		h.failed(req, err)
		return
	}
	f := c2.RotationFilter{Policy: q.Get("policy"), Target: q.Get("target"), State: c2.RotationState(q.Get("state"))}
	if f.State != "" && !slices.Contains(rotationStates, f.State) {
		h.failed(req, fmt.Errorf("%w: state %q: want one of started, converged, stuck, superseded, failed", c2.ErrInvalidArgument, f.State))
		return
	}
	after, err := strconv.ParseInt(q.Get("after"), 10, 64)
	if err != nil && q.Get("after") != "" || after < 0 {
		h.failed(req, fmt.Errorf("%w: after %q is not a rotation id", c2.ErrInvalidArgument, q.Get("after")))
		return
	}
	list, err := h.cfg.Service.ListRotations(ctx, f, after, pageSize)
	if err != nil {
		h.failed(req, err)
		return
	}
	data := map[string]any{"Preview": preview, "PreviewFull": len(preview) == previewLimit, "Within": within,
		"Windows": previewWindows, "Rotations": list, "Filter": f, "States": rotationStates, "Now": now}
	if len(list) == pageSize {
		v := url.Values{}
		for k, val := range map[string]string{"policy": f.Policy, "target": f.Target, "state": string(f.State), "within": within} {
			if val != "" {
				v.Set(k, val)
			}
		}
		v.Set("after", strconv.FormatInt(list[len(list)-1].ID, 10))
		data["Next"] = Prefix + "rotations?" + v.Encode()
	}
	h.render(req, "rotations", "Rotations", data)
}

// recentScheduled is the dashboard's view of the scheduler's rotations
// of the last day: how many ended in each state, and the newest few.
type recentScheduled struct {
	Counts []stateCount
	Latest []c2.Rotation
	Total  int
	// More is set when the day held more rotations than were read.
	More bool
}

type stateCount struct {
	State c2.RotationState
	N     int
}

// Bounds of the dashboard's read of the day's rotations.
const (
	dashboardRotationPage  = 1000
	dashboardRotationPages = 2 // per state
	dashboardLatest        = 10
)

// scheduledRotations reads the last day's rotations one state at a time:
// the store's index by state and time finds them without reading the
// older history (which a filter on time alone would scan, by id). Each
// state is read up to a bound; the newest few are kept.
func (h *Handler) scheduledRotations(ctx context.Context) (recentScheduled, error) {
	var out recentScheduled
	since := h.cfg.Service.Now().Add(-24 * time.Hour)
	for _, state := range rotationStates {
		n, latest, more, err := h.rotationsInState(ctx, c2.RotationFilter{State: state, FiredSince: since})
		if err != nil {
			return out, err
		}
		if n > 0 {
			out.Counts = append(out.Counts, stateCount{state, n})
		}
		out.Total += n
		out.More = out.More || more
		out.Latest = append(out.Latest, latest...)
	}
	slices.SortFunc(out.Latest, func(a, b c2.Rotation) int { return cmp.Compare(b.ID, a.ID) })
	out.Latest = out.Latest[:min(len(out.Latest), dashboardLatest)]
	return out, nil
}

// rotationsInState counts the rotations f matches, up to the dashboard's
// bound (more says it was reached), and returns the newest few.
func (h *Handler) rotationsInState(ctx context.Context, f c2.RotationFilter) (n int, latest []c2.Rotation, more bool, err error) {
	var after int64
	for range dashboardRotationPages {
		list, err := h.cfg.Service.ListRotations(ctx, f, after, dashboardRotationPage)
		if err != nil {
			return 0, nil, false, err
		}
		n += len(list)
		latest = append(latest, list[max(0, len(list)-dashboardLatest):]...)
		latest = latest[max(0, len(latest)-dashboardLatest):]
		if len(list) < dashboardRotationPage {
			return n, latest, false, nil
		}
		after = list[len(list)-1].ID
	}
	return n, latest, true, nil
}

// topicPolicy is the topic page's "Rotation policy" row: the policy that
// makes the topic due next, and when.
func (h *Handler) topicPolicy(ctx context.Context, topic string) (c2.PlannedRotation, bool, error) {
	return h.cfg.Service.NextRotation(ctx, c2.TargetTopic, topic)
}

package web

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/e4"
)

// weeklyForm is the add form of a weekly policy on one topic.
func weeklyForm(name, topic string) url.Values {
	return url.Values{"name": {name}, "kind": {"topic"}, "selector": {"exact"}, "pattern": {topic}, "trigger": {"period"},
		"span": {"1w"}, "jitter": {"1h"}, "ramp": {"5"}, "pause_behind": {"20"}}
}

// TestPoliciesPage: an admin adds, pauses, resumes and removes a policy
// through the pages, each change audited; a refused policy shows why with
// the form kept; a policy named like a script is shown as text; a reader
// sees policies but is offered no change.
func TestPoliciesPage(t *testing.T) {
	c := startC2(t, e4.SymKey)
	ctx := context.Background()
	topic := "plant/" + xss
	if _, err := c.svc.AddTopic(ctx, topic); err != nil {
		t.Fatal(err)
	}
	admin, reader := c.signedIn(c.admin), c.signedIn(c.reader)
	name := "weekly-" + xss

	// Refused forms: the page says why and keeps what was typed.
	for _, bad := range []struct {
		edit func(url.Values)
		want string
	}{
		{func(v url.Values) { v.Set("jitter", "4d") }, "the jitter at most half"},
		{func(v url.Values) { v.Set("span", "soon") }, `period &#34;soon&#34;: want a duration`},
		{func(v url.Values) { v.Set("ramp", "-1") }, `ramp &#34;-1&#34;: want a whole number`},
		{func(v url.Values) { v.Set("trigger", "") }, "choose a period, a maximum key age, an event or a message budget"},
		{func(v url.Values) { v.Set("selector", "filter"); v.Set("pattern", "plant/#/x") }, "filter"},
		{func(v url.Values) { v.Set("kind", "c2"); v.Set("selector", "all") }, "public-key mode"},
		{func(v url.Values) { v.Set("selector", "prefix"); v.Set("pattern", "plant/\x00") }, "pattern must be valid UTF-8 without control characters"},
	} {
		form := weeklyForm(name, topic)
		bad.edit(form)
		st, page := admin.post("/ui/policies", form)
		if st != http.StatusBadRequest || !strings.Contains(page, `id="policy-error"`) || !strings.Contains(page, bad.want) {
			t.Errorf("refused policy (%v): %d, want 400 saying %q: %s", form, st, bad.want, between(page, `id="policy-error"`, "</p>"))
		}
		if !strings.Contains(page, `value="weekly-&lt;script&gt;`) {
			t.Errorf("the refused form lost the name typed")
		}
	}
	if list, _ := c.svc.ListPolicies(ctx, "", 10); len(list) != 0 {
		t.Fatalf("refused forms added %d policies", len(list))
	}

	if st, page := admin.post("/ui/policies", weeklyForm(name, topic)); st != http.StatusSeeOther {
		t.Fatalf("add policy: %d %s", st, between(page, `id="policy-error"`, "</p>"))
	}
	p, err := c.svc.GetPolicy(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if p.Period.Hours() != 7*24 || p.Jitter.Hours() != 1 || p.Ramp != 5 || p.PauseBehind != 20 || p.Pattern != topic || p.CreatedBy != "token:admin" {
		t.Fatalf("policy stored: %+v", p)
	}
	_, page := reader.get("/ui/policies")
	row := between(page, `<tr class="policy"`, "</tr>")
	for _, want := range []string{"weekly-&lt;script&gt;alert(1)&lt;/script&gt;", "every 1w", "±1h", "5 in the first minute", "20 devices", "running"} {
		if !strings.Contains(row, want) {
			t.Errorf("the policy row lacks %q: %s", want, row)
		}
	}
	if strings.Contains(page, "<script>alert") {
		t.Error("the policies page shows a name unescaped")
	}
	if strings.Contains(page, `id="add-policy"`) || strings.Contains(page, "/ui/policy/pause") {
		t.Error("a read session is offered policy changes")
	}

	// The preview, and the topic page, show when the topic is next due.
	_, page = reader.get("/ui/rotations?within=1w")
	if prev := between(page, `id="preview"`, "</table>"); !strings.Contains(prev, "plant/&lt;script&gt;") || !strings.Contains(prev, "period") {
		t.Errorf("the week's preview lacks the topic: %s", prev)
	}
	plan, ok, err := c.svc.NextRotation(ctx, c2.TargetTopic, topic)
	if err != nil || !ok {
		t.Fatalf("next rotation: %v %v", ok, err)
	}
	_, page = reader.get("/ui/topic?name=" + url.QueryEscape(topic))
	if cell := between(page, `id="rotation-policy"`, "</td>"); !strings.Contains(cell, "weekly-&lt;script&gt;") ||
		!strings.Contains(cell, plan.DueAt.UTC().Format("2006-01-02 15:04:05Z")) {
		t.Errorf("topic page's policy row: %s, want the policy and %s", cell, plan.DueAt)
	}

	// Changing policies needs admin, as the API's policy calls: an
	// operator may not, even with the right CSRF token.
	operator := c.signedIn(c.operator)
	for _, path := range []string{"/ui/policies", "/ui/policy/pause", "/ui/policy/resume", "/ui/policy/remove"} {
		form := weeklyForm("ops-"+name, topic)
		form.Set("name", name)
		if st, page := operator.post(path, form); st != http.StatusForbidden || !strings.Contains(page, "needs the admin role") {
			t.Errorf("POST %s by an operator: %d, want 403 for the admin role", path, st)
		}
	}
	if p, _ := c.svc.GetPolicy(ctx, name); p.PausedReason != "" {
		t.Errorf("an operator paused the policy: %q", p.PausedReason)
	}

	// Pause with a reason, resume, remove.
	if st, _ := admin.post("/ui/policy/pause", url.Values{"name": {name}, "reason": {"firmware <b>freeze</b>"}}); st != http.StatusSeeOther {
		t.Fatalf("pause: %d", st)
	}
	_, page = admin.get("/ui/policies")
	if state := between(page, `<td class="state">`, "</td>"); !strings.Contains(state, "paused") || !strings.Contains(state, "firmware &lt;b&gt;freeze&lt;/b&gt;") {
		t.Errorf("paused policy's state: %s", state)
	}
	if !strings.Contains(page, "/ui/policy/resume") {
		t.Error("a paused policy offers no resume")
	}
	if _, ok, _ := c.svc.NextRotation(ctx, c2.TargetTopic, topic); ok {
		t.Error("a paused policy still schedules the topic")
	}
	// A reason with a control character or too long is refused, and an
	// empty one says who paused, as the API does.
	for _, reason := range []string{"line\nbreak", strings.Repeat("r", 501)} {
		if st, _ := admin.post("/ui/policy/pause", url.Values{"name": {name}, "reason": {reason}}); st != http.StatusBadRequest {
			t.Errorf("pause reason %.20q: %d, want 400", reason, st)
		}
	}
	if p, _ := c.svc.GetPolicy(ctx, name); p.PausedReason != "firmware <b>freeze</b>" {
		t.Errorf("a refused pause changed the reason to %q", p.PausedReason)
	}
	if st, _ := admin.post("/ui/policy/resume", url.Values{"name": {name}}); st != http.StatusSeeOther {
		t.Fatalf("resume: %d", st)
	}
	if st, _ := admin.post("/ui/policy/pause", url.Values{"name": {name}}); st != http.StatusSeeOther {
		t.Fatalf("pause without a reason: %d", st)
	}
	if p, _ := c.svc.GetPolicy(ctx, name); p.PausedReason != "paused by token:admin" {
		t.Errorf("pause without a reason: %q", p.PausedReason)
	}
	if st, _ := admin.post("/ui/policy/resume", url.Values{"name": {name}}); st != http.StatusSeeOther {
		t.Fatalf("resume: %d", st)
	}
	if p, _ := c.svc.GetPolicy(ctx, name); p.PausedReason != "" {
		t.Errorf("resumed policy still paused: %q", p.PausedReason)
	}
	if st, _ := admin.post("/ui/policy/remove", url.Values{"name": {name}}); st != http.StatusSeeOther {
		t.Fatalf("remove: %d", st)
	}
	if st, page := admin.post("/ui/policy/remove", url.Values{"name": {name}}); st != http.StatusBadRequest || !strings.Contains(page, "not found") {
		t.Errorf("removing it again: %d %s", st, between(page, `id="error"`, "</p>"))
	}
	_, page = admin.get("/ui/policies")
	if strings.Contains(page, "weekly-") {
		t.Error("a removed policy is still listed")
	}

	// The other triggers and kinds the service accepts in SK mode.
	for _, form := range []url.Values{
		{"name": {"keys-age"}, "kind": {"client"}, "selector": {"all"}, "trigger": {"max_age"}, "span": {"90d"}},
		{"name": {"forged"}, "kind": {"topic"}, "selector": {"filter"}, "pattern": {"plant/#"}, "trigger": {"event"},
			"on_event": {"anomaly:forged"}, "threshold": {"3"}, "window": {"1m"}},
	} {
		if st, page := admin.post("/ui/policies", form); st != http.StatusSeeOther {
			t.Errorf("add %s: %d %s", form.Get("name"), st, between(page, `id="policy-error"`, "</p>"))
		}
	}
	_, page = admin.get("/ui/policies")
	for _, want := range []string{"key older than 90d", "3× anomaly:forged within 1m", "<code>filter plant/#</code>", "<code>all</code>"} {
		if !strings.Contains(between(page, `id="policies"`, "</table>"), want) {
			t.Errorf("the policy list lacks %q", want)
		}
	}

	// Every change is audited under the admin's token, the refusals too.
	recs, err := c.srv.Access().AuditLog(ctx, store.AuditFilter{Target: "name=" + name}, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range recs {
		got = append(got, r.Action+":"+r.Outcome)
		if r.Actor != "token:admin" {
			t.Errorf("audit actor %q", r.Actor)
		}
	}
	want := "AddPolicy:InvalidArgument AddPolicy:InvalidArgument AddPolicy:InvalidArgument AddPolicy:ok PausePolicy:ok ResumePolicy:ok PausePolicy:ok ResumePolicy:ok RemovePolicy:ok RemovePolicy:NotFound"
	if strings.Join(got, " ") != want {
		t.Errorf("audit records:\n %s\nwant\n %s", strings.Join(got, " "), want)
	}
}

var rotationIDRE = regexp.MustCompile(`<tr><td>(\d+)</td>`)

// TestRotationsPage: the rotations a policy fires are listed with their
// outcome, filtered by policy and state, by id after ?after=; the
// dashboard counts the day's.
func TestRotationsPage(t *testing.T) {
	c := startC2(t, e4.SymKey)
	ctx := context.Background()
	for _, topic := range []string{"fast/a", "fast/b"} {
		if _, err := c.svc.AddTopic(ctx, topic); err != nil {
			t.Fatal(err)
		}
	}
	admin := c.signedIn(c.admin)
	form := url.Values{"name": {"fast"}, "kind": {"topic"}, "selector": {"prefix"}, "pattern": {"fast/"}, "trigger": {"period"}, "span": {"1s"}}
	if st, page := admin.post("/ui/policies", form); st != http.StatusSeeOther {
		t.Fatalf("add: %d %s", st, between(page, `id="policy-error"`, "</p>"))
	}
	var list []c2.Rotation
	for range 1500 {
		list, _ = c.svc.ListRotations(ctx, c2.RotationFilter{Policy: "fast"}, 0, 100)
		if len(list) >= 3 {
			break
		}
		waitABit()
	}
	if len(list) < 3 {
		t.Fatalf("the scheduler fired %d rotations", len(list))
	}
	// Stop it so the record holds still.
	if st, _ := admin.post("/ui/policy/pause", url.Values{"name": {"fast"}}); st != http.StatusSeeOther {
		t.Fatal("pause")
	}
	_, page := admin.get("/ui/rotations?policy=fast")
	table := between(page, `id="rotations"`, "</table>")
	ids := rotationIDRE.FindAllStringSubmatch(table, -1)
	if len(ids) < 3 || ids[0][1] != "1" {
		t.Fatalf("rotations listed: %s", table)
	}
	if !strings.Contains(table, "fast/a") || !strings.Contains(table, "fast/b") || !strings.Contains(table, "converged") {
		t.Errorf("the rotations lack their targets or outcome: %s", table)
	}
	// Keyset: after the first id, the first is gone and the second leads.
	_, page = admin.get("/ui/rotations?policy=fast&after=" + ids[0][1])
	next := rotationIDRE.FindAllStringSubmatch(between(page, `id="rotations"`, "</table>"), -1)
	if len(next) == 0 || next[0][1] != ids[1][1] {
		t.Errorf("after %s: %v, want %s first", ids[0][1], next, ids[1][1])
	}
	for _, empty := range []string{"/ui/rotations?policy=other", "/ui/rotations?policy=fast&state=stuck"} {
		_, page = admin.get(empty)
		if !strings.Contains(between(page, `id="rotations"`, "</table>"), "matching the filter") {
			t.Errorf("%s lists rotations", empty)
		}
	}
	if st, page := admin.get("/ui/rotations?state=lost"); st != http.StatusBadRequest || !strings.Contains(page, "want one of") {
		t.Errorf("unknown state: %d", st)
	}
	if st, _ := admin.get("/ui/rotations?after=x"); st != http.StatusBadRequest {
		t.Errorf("after=x: %d", st)
	}
	_, page = admin.get("/ui/")
	if counts := between(page, `id="scheduled-counts"`, "</p>"); !strings.Contains(counts, "fired") || !strings.Contains(counts, "converged") {
		t.Errorf("dashboard's scheduled rotations: %s", counts)
	}

	b := newTab(t, c.base)
	b.signIn(c.admin)
	b.shot("dashboard-scheduled")
	b.open("/ui/rotations?policy=fast")
	b.shot("rotations-recorded")
}

// TestRotationOutcomes: each state of a recorded rotation reads as what
// it means, a stuck one with the devices behind.
func TestRotationOutcomes(t *testing.T) {
	pages, err := parsePages()
	if err != nil {
		t.Fatal(err)
	}
	settled := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, c := range []struct {
		r    c2.Rotation
		want string
	}{
		{c2.Rotation{State: c2.RotationStarted}, `<span class="warn">started</span>, converging`},
		{c2.Rotation{State: c2.RotationConverged, SettledAt: settled}, `<span class="ok">converged</span> <span class="muted">at 2026-01-02 03:04:05Z</span>`},
		{c2.Rotation{State: c2.RotationStuck, Behind: 7, SettledAt: settled}, `<span class="bad">stuck</span>: 7 devices behind`},
		{c2.Rotation{State: c2.RotationSuperseded}, `<span class="muted">superseded</span>`},
		{c2.Rotation{State: c2.RotationFailed, Detail: "<broker down>"}, `<span class="bad">failed</span> <span class="muted">&lt;broker down&gt;</span>`},
	} {
		var sb strings.Builder
		if err := pages["rotations"].ExecuteTemplate(&sb, "outcome", c.r); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(sb.String(), c.want) {
			t.Errorf("%s: %s, want %s", c.r.State, sb.String(), c.want)
		}
	}
}

// between is the text of s from the first from to the next to after it.
func between(s, from, to string) string {
	i := strings.Index(s, from)
	if i < 0 {
		return ""
	}
	s = s[i:]
	if j := strings.Index(s, to); j >= 0 {
		return s[:j]
	}
	return s
}

// TestPoliciesPublicKey: in PK mode the form offers C2's key pair, not
// client keys, and a policy rotating it is added and listed.
func TestPoliciesPublicKey(t *testing.T) {
	c := startC2(t, e4.PubKey)
	admin := c.signedIn(c.admin)
	_, page := admin.get("/ui/policies")
	kinds := between(page, `<select name="kind">`, "</select>")
	if !strings.Contains(kinds, `value="c2"`) || strings.Contains(kinds, `value="client"`) {
		t.Errorf("kinds offered in PK mode: %s", kinds)
	}
	form := url.Values{"name": {"c2-yearly"}, "kind": {"c2"}, "selector": {"all"}, "trigger": {"period"}, "span": {"52w"}, "jitter": {"1d"}}
	if st, page := admin.post("/ui/policies", form); st != http.StatusSeeOther {
		t.Fatalf("add: %d %s", st, between(page, `id="policy-error"`, "</p>"))
	}
	_, page = admin.get("/ui/policies")
	if row := between(page, `<tr class="policy"`, "</tr>"); !strings.Contains(row, "<td>c2</td>") || !strings.Contains(row, "every 52w") || !strings.Contains(row, "±1d") {
		t.Errorf("C2 key policy listed: %s", row)
	}
}

// TestPoliciesPaginate: the policy list pages by name, 50 a page, with a
// link to the next.
func TestPoliciesPaginate(t *testing.T) {
	c := startC2(t, e4.SymKey)
	ctx := context.Background()
	for i := range pageSize + 1 {
		p := c2.Policy{Name: fmt.Sprintf("p%03d", i), Kind: c2.TargetTopic, Selector: c2.SelectPrefix, Pattern: "x/", Period: time.Hour}
		if _, err := c.svc.AddPolicy(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	reader := c.signedIn(c.reader)
	_, page := reader.get("/ui/policies")
	if n := strings.Count(page, `<tr class="policy"`); n != pageSize || !strings.Contains(page, `href="/ui/policies?after=p049"`) {
		t.Fatalf("first page: %d rows, next link %q", n, between(page, `class="pager"`, "</p>"))
	}
	_, page = reader.get("/ui/policies?after=p049")
	if n := strings.Count(page, `<tr class="policy"`); n != 1 || !strings.Contains(page, `data-name="p050"`) || strings.Contains(page, `class="pager"`) {
		t.Fatalf("second page: %d rows", n)
	}
}

// TestMessageBudgetPolicyPage: an admin adds a message-budget policy
// through the form; the list shows its budget, and the topic page the
// messages counted under the current key against it.
func TestMessageBudgetPolicyPage(t *testing.T) {
	c := startC2(t, e4.SymKey)
	ctx := context.Background()
	const topic = "meters/7"
	info, err := c.svc.AddTopic(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	admin := c.signedIn(c.admin)
	form := url.Values{"name": {"gcm"}, "kind": {"topic"}, "selector": {"filter"}, "pattern": {"meters/#"},
		"trigger": {"messages"}, "max_messages": {"-3"}}
	if st, page := admin.post("/ui/policies", form); st != http.StatusBadRequest || !strings.Contains(page, "message budget &#34;-3&#34;") {
		t.Fatalf("negative budget: %d %s", st, between(page, `id="policy-error"`, "</p>"))
	}
	form.Set("max_messages", "1000")
	if st, page := admin.post("/ui/policies", form); st != http.StatusSeeOther {
		t.Fatalf("add policy: %d %s", st, between(page, `id="policy-error"`, "</p>"))
	}
	if p, err := c.svc.GetPolicy(ctx, "gcm"); err != nil || p.MaxMessages != 1000 {
		t.Fatalf("policy stored: %+v, %v", p, err)
	}
	if err := c.svc.CountMessages(ctx, []c2.MessageCount{{Topic: topic, Version: info.KeyVersion, Messages: 37}}); err != nil {
		t.Fatal(err)
	}
	_, page := admin.get("/ui/policies")
	if row := between(page, `<tr class="policy"`, "</tr>"); !strings.Contains(row, "after 1000 messages under the key") {
		t.Errorf("the policy row lacks its budget: %s", row)
	}
	_, page = admin.get("/ui/topic?name=" + url.QueryEscape(topic))
	if got := between(page, `id="rotation-policy"`, "</td>"); !strings.Contains(got, "37 of 1000 messages") || !strings.Contains(got, "gcm") {
		t.Errorf("the topic page's rotation policy: %s", got)
	}
}

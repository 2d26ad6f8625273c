package api_test

import (
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/e4-iot/e4kit/c2/api/c2pb"
)

// TestPolicyAPI: an admin adds, pauses, resumes and removes rotation
// policies over gRPC and HTTP/JSON, each change audited; an operate token
// may read them but not change them; the preview says when a topic is due.
func TestPolicyAPI(t *testing.T) {
	c := newTestC2(t, options{})
	cl := c.client()
	admin := as(c.admin)
	if _, err := cl.AddTopic(admin, &c2pb.AddTopicRequest{Topic: "fleet/firmware"}); err != nil {
		t.Fatal(err)
	}
	weekly := &c2pb.RotationPolicy{Name: "firmware-weekly", Kind: "topic", Selector: "exact", Pattern: "fleet/firmware",
		PeriodSeconds: 7 * 24 * 3600, JitterSeconds: 3600}
	got, err := cl.AddPolicy(admin, weekly)
	if err != nil {
		t.Fatal(err)
	}
	if got.CreatedBy != "token:admin" || got.CreatedAt == nil || got.PeriodSeconds != weekly.PeriodSeconds {
		t.Fatalf("AddPolicy: %+v", got)
	}
	_, err = cl.AddPolicy(admin, weekly)
	wantCode(t, "duplicate policy", err, codes.AlreadyExists)
	_, err = cl.AddPolicy(admin, &c2pb.RotationPolicy{Name: "bad", Kind: "topic", Selector: "all"})
	wantCode(t, "policy without trigger", err, codes.InvalidArgument)
	_, err = cl.AddPolicy(admin, &c2pb.RotationPolicy{Name: "neg", Kind: "topic", Selector: "all", PeriodSeconds: -5})
	wantCode(t, "negative period", err, codes.InvalidArgument)

	operator := as(c.token("ops", "operate"))
	_, err = cl.AddPolicy(operator, &c2pb.RotationPolicy{Name: "ops", Kind: "topic", Selector: "all", PeriodSeconds: 3600})
	wantCode(t, "operate token adding a policy", err, codes.PermissionDenied)
	list, err := cl.ListPolicies(operator, &c2pb.ListPoliciesRequest{})
	if err != nil || len(list.Policies) != 1 {
		t.Fatalf("ListPolicies: %v %v", list, err)
	}

	preview, err := cl.PreviewRotations(operator, &c2pb.PreviewRotationsRequest{Kind: "topic", Target: "fleet/firmware"})
	if err != nil || len(preview.Rotations) != 1 || preview.Rotations[0].Policy != "firmware-weekly" {
		t.Fatalf("next rotation of fleet/firmware: %v %v", preview, err)
	}

	// Over HTTP/JSON.
	r := c.do(http.MethodPost, "/v1/policies", c.admin, map[string]any{
		"name": "analytics-weekly", "kind": "topic", "selector": "filter", "pattern": "analytics/#", "period_seconds": 604800,
	})
	wantStatus(t, "POST /v1/policies", r, http.StatusOK)
	r = c.do(http.MethodPost, "/v1/policies/analytics-weekly/pause", c.admin, map[string]any{"reason": "maintenance"})
	wantStatus(t, "pause", r, http.StatusOK)
	if !strings.Contains(string(r.body), "maintenance") {
		t.Fatalf("paused policy: %s", r.body)
	}
	r = c.do(http.MethodPost, "/v1/policies/analytics-weekly/resume", c.admin, map[string]any{})
	wantStatus(t, "resume", r, http.StatusOK)
	r = c.do(http.MethodGet, "/v1/rotations/preview?within_seconds=1209600", c.admin, nil)
	wantStatus(t, "preview", r, http.StatusOK)
	if !strings.Contains(string(r.body), "fleet/firmware") {
		t.Fatalf("two weeks' preview lacks the weekly topic: %s", r.body)
	}
	r = c.do(http.MethodDelete, "/v1/policies/analytics-weekly", c.admin, nil)
	wantStatus(t, "DELETE", r, http.StatusOK)
	r = c.do(http.MethodGet, "/v1/policies/analytics-weekly", c.admin, nil)
	wantStatus(t, "GET removed", r, http.StatusNotFound)
	r = c.do(http.MethodGet, "/v1/rotations", c.admin, nil)
	wantStatus(t, "rotations", r, http.StatusOK)

	audited := map[string]int{}
	for _, rec := range c.auditRecords() {
		if strings.Contains(rec.Action, "Policy") {
			audited[rec.Action+" "+rec.Outcome]++
		}
	}
	for _, want := range []string{"AddPolicy ok", "PausePolicy ok", "ResumePolicy ok", "RemovePolicy ok"} {
		if audited[want] == 0 {
			t.Fatalf("no audit record %q in %v", want, audited)
		}
	}
}

// TestMessageBudgetAPI: a message-budget policy over HTTP/JSON and gRPC:
// max_messages round trips, a negative one is refused, and the preview of
// a topic under it gives the count and the budget, with no due time.
func TestMessageBudgetAPI(t *testing.T) {
	c := newTestC2(t, options{})
	cl := c.client()
	admin := as(c.admin)
	if _, err := cl.AddTopic(admin, &c2pb.AddTopicRequest{Topic: "meters/1"}); err != nil {
		t.Fatal(err)
	}
	_, err := cl.AddPolicy(admin, &c2pb.RotationPolicy{Name: "neg", Kind: "topic", Selector: "all", MaxMessages: -1})
	wantCode(t, "negative message budget", err, codes.InvalidArgument)
	r := c.do(http.MethodPost, "/v1/policies", c.admin, map[string]any{
		"name": "gcm", "kind": "topic", "selector": "filter", "pattern": "meters/#", "max_messages": 1000,
	})
	wantStatus(t, "POST /v1/policies", r, http.StatusOK)
	got, err := cl.GetPolicy(admin, &c2pb.PolicyRequest{Name: "gcm"})
	if err != nil || got.MaxMessages != 1000 {
		t.Fatalf("GetPolicy: %+v, %v", got, err)
	}
	preview, err := cl.PreviewRotations(admin, &c2pb.PreviewRotationsRequest{Kind: "topic", Target: "meters/1"})
	if err != nil || len(preview.Rotations) != 1 {
		t.Fatalf("preview of a topic under a message budget: %v, %v", preview, err)
	}
	if p := preview.Rotations[0]; p.MaxMessages != 1000 || p.Messages != 0 || p.Policy != "gcm" || p.Reason != "messages" || p.DueAt != nil {
		t.Fatalf("preview of a topic under a message budget: %+v", p)
	}
}

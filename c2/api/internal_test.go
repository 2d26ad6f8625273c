package api

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/c2/api/c2pb"
	"github.com/e4-iot/e4kit/e4"
)

// TestToStatus: each service error, wrapped as the service wraps it,
// gets its code; an unknown error is Internal without its text.
func TestToStatus(t *testing.T) {
	cases := map[error]codes.Code{
		c2.ErrInvalidArgument:            codes.InvalidArgument,
		c2.ErrNotFound:                   codes.NotFound,
		c2.ErrExists:                     codes.AlreadyExists,
		c2.ErrWrongMode:                  codes.FailedPrecondition,
		c2.ErrUnavailable:                codes.Unavailable,
		e4.ErrTimestampTooOld:            codes.InvalidArgument,
		e4.ErrPubKeyNotFound:             codes.NotFound,
		e4.ErrUnsupportedOperation:       codes.FailedPrecondition,
		status.Error(codes.Aborted, "x"): codes.Aborted,
	}
	log := slog.New(slog.DiscardHandler)
	for err, want := range cases {
		wrapped := fmt.Errorf("client 00: %w", err)
		if got := status.Code(toStatus(log, "/m", wrapped)); got != want {
			t.Errorf("%v: %v, want %v", err, got, want)
		}
	}
	got := toStatus(log, "/m", errors.New("disk on fire at /var/lib/secret"))
	if status.Code(got) != codes.Internal || strings.Contains(got.Error(), "secret") {
		t.Errorf("unknown error: %v", got)
	}
	if toStatus(log, "/m", nil) != nil {
		t.Error("nil error mapped to an error")
	}
}

// TestEveryMethodHasARule: a method added to the .proto without a rule
// would be refused to everyone; this catches it at once.
func TestEveryMethodHasARule(t *testing.T) {
	for _, m := range c2pb.C2_ServiceDesc.Methods {
		if _, ok := rules["/"+c2pb.C2_ServiceDesc.ServiceName+"/"+m.MethodName]; !ok {
			t.Errorf("no scope rule for %s", m.MethodName)
		}
	}
	for _, s := range c2pb.C2_ServiceDesc.Streams {
		if _, ok := rules["/"+c2pb.C2_ServiceDesc.ServiceName+"/"+s.StreamName]; !ok {
			t.Errorf("no scope rule for %s", s.StreamName)
		}
	}
}

// TestEventHubRing: the hub keeps the last events, numbers them in
// order, resumes after any kept id and reports lost ones.
func TestEventHubRing(t *testing.T) {
	h := NewEventHub(3)
	for i := range 5 {
		h.Publish(c2.Event{Kind: c2.EventTopicAdded, Topic: fmt.Sprint(i)})
	}
	all, err := h.List("", 0)
	if err != nil || len(all) != 3 || all[0].Topic != "2" || all[2].Topic != "4" {
		t.Fatalf("kept events: %v %v", all, err)
	}
	after, err := h.List(all[0].Id, 0)
	if err != nil || len(after) != 2 || after[0].Topic != "3" {
		t.Fatalf("after %s: %v %v", all[0].Id, after, err)
	}
	evicted := h.run + "-1"
	lost, err := h.List(evicted, 0)
	if err != nil || len(lost) != 4 || lost[0].Kind != EventLost || lost[1].Topic != "2" {
		t.Fatalf("after an evicted id: %v %v", lost, err)
	}
	if _, err := h.List(h.run+"-99", 0); err == nil {
		t.Fatal("an id ahead of the last event was accepted")
	}
	for _, bad := range []string{"x", "-", "abc-", "abc-x", "abc-1-2"} {
		if _, err := h.List(bad, 0); err == nil {
			t.Errorf("malformed id %q accepted", bad)
		}
	}
	last, err := h.List(all[2].Id, 0)
	if err != nil || len(last) != 0 {
		t.Fatalf("after the last id: %v %v", last, err)
	}
}

// TestEventHubSlowSubscriber: a subscriber that does not read is cut off
// (and told so) instead of blocking the service.
func TestEventHubSlowSubscriber(t *testing.T) {
	h := NewEventHub(10)
	_, slow, err := h.Subscribe("")
	if err != nil {
		t.Fatal(err)
	}
	_, fast, _ := h.Subscribe("")
	defer fast.Close()
	for range subscriberQueue + 1 {
		h.Publish(c2.Event{Kind: c2.EventClientAdded})
		<-fast.Events()
	}
	n := 0
	for range slow.Events() {
		n++
	}
	if n != subscriberQueue || !slow.Overflowed() {
		t.Fatalf("slow subscriber got %d events, overflowed %v", n, slow.Overflowed())
	}
	slow.Close() // after the hub closed it: no panic
}

// TestResolveClient: 32 hex digits are an id, other strings names.
func TestResolveClient(t *testing.T) {
	id := e4.IDFromName("x")
	for ref, want := range map[string]e4.ID{id.String(): id, strings.ToUpper(id.String()): id, "x": id, "pump": e4.IDFromName("pump")} {
		if got, err := ResolveClient(ref); err != nil || got != want {
			t.Errorf("ResolveClient(%q) = %v, %v", ref, got, err)
		}
	}
	for _, bad := range []string{"a\x00b", "tab\there", strings.Repeat("n", c2.MaxNameLen+1), "\xff"} {
		if _, err := ResolveClient(bad); err == nil {
			t.Errorf("ResolveClient(%q) accepted", bad)
		}
	}
}

// TestBearer: the authorization header forms accepted and refused.
func TestBearer(t *testing.T) {
	for _, ok := range [][]string{nil, {"Bearer abc"}, {"bearer abc"}, {"BEARER  abc "}} {
		if _, err := bearer(ok); err != nil {
			t.Errorf("bearer(%q): %v", ok, err)
		}
	}
	for _, bad := range [][]string{{"abc"}, {"Basic abc"}, {"Bearer "}, {"Bearer a", "Bearer b"}} {
		if _, err := bearer(bad); err == nil {
			t.Errorf("bearer(%q) accepted", bad)
		}
	}
}

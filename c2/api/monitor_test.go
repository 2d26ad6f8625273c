package api_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/e4-iot/e4kit/c2/api/c2pb"
	"github.com/e4-iot/e4kit/c2/monitor"
	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/transport/loopback"
)

// TestMonitorCalls: the monitor's counters and top lists over gRPC and
// HTTP, for a read token; FailedPrecondition while the monitor is off.
func TestMonitorCalls(t *testing.T) {
	c := newTestC2(t, options{noBroker: true})
	reader := c.token("reader", "read")
	cl := c.client()
	_, err := cl.GetMonitorStats(as(reader), &c2pb.Empty{})
	wantCode(t, "stats with the monitor off", err, codes.FailedPrecondition)
	wantStatus(t, "HTTP top with the monitor off", c.do("GET", "/v1/monitor/top", reader, nil), http.StatusBadRequest)

	ctx := context.Background()
	if _, err := c.svc.AddTopic(ctx, "plant/a"); err != nil {
		t.Fatal(err)
	}
	m, err := monitor.New(monitor.Config{Service: c.svc, Transport: loopback.NewBroker().Connect()})
	if err != nil {
		t.Fatal(err)
	}
	c.svc.SetMonitor(m)
	keys, err := c.svc.MonitorTopicKeys(ctx, "plant/a")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := e4.ProtectSymKey(nil, []byte("21.5"), keys.Current, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	m.Check("plant/a", msg)
	m.Check("plant/a", msg)
	m.Check("plant/a", []byte("plaintext"))

	st, err := cl.GetMonitorStats(as(reader), &c2pb.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Results["valid"] != 1 || st.Results["replay"] != 1 || st.Results["not_e4"] != 1 || len(st.Results) != 8 {
		t.Errorf("stats: %v, want 1 valid, 1 replay, 1 not_e4 among 8 results", st.Results)
	}
	top, err := cl.ListMonitorTop(as(reader), &c2pb.ListMonitorTopRequest{By: "topic", Result: "anomalies"})
	if err != nil {
		t.Fatal(err)
	}
	if len(top.Entries) != 1 || top.Entries[0].Key != "plant/a" || top.Entries[0].Count != 2 || top.Entries[0].ByResult["replay"] != 1 {
		t.Errorf("top topics by anomalies: %v, want plant/a with 2", top.Entries)
	}
	_, err = cl.ListMonitorTop(as(reader), &c2pb.ListMonitorTopRequest{By: "device"})
	wantCode(t, "top by device", err, codes.InvalidArgument)
	_, err = cl.ListMonitorTop(as(reader), &c2pb.ListMonitorTopRequest{Result: "forged"})
	wantCode(t, "top of an unknown result", err, codes.InvalidArgument)

	r := c.do("GET", "/v1/monitor/top?by=topic&result=all&limit=5", reader, nil)
	wantStatus(t, "HTTP top", r, http.StatusOK)
	entries, _ := r.json["entries"].([]any)
	if len(entries) != 1 {
		t.Errorf("HTTP top: %s, want one entry", r.body)
	}
	wantStatus(t, "HTTP stats", c.do("GET", "/v1/monitor/stats", reader, nil), http.StatusOK)
	wantStatus(t, "HTTP stats without a token", c.do("GET", "/v1/monitor/stats", "", nil), http.StatusUnauthorized)
}

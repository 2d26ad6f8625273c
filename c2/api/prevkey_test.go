package api_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/e4-iot/e4kit/c2/api/c2pb"
	"github.com/e4-iot/e4kit/c2/monitor"
	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/transport/loopback"
)

// TestPreviousTopicKeyNotExposed: after a rotation, with C2 keeping the
// replaced key for the monitor and a message under it counted, no topic,
// state, command, event or monitor answer of the API (HTTP or gRPC), and
// no log line, holds the previous key in any encoding.
func TestPreviousTopicKeyNotExposed(t *testing.T) {
	c := newTestC2(t, options{noBroker: true})
	reader := c.token("reader", "read")
	ctx := context.Background()
	if _, err := c.svc.AddTopic(ctx, "plant/a"); err != nil {
		t.Fatal(err)
	}
	before, err := c.svc.MonitorTopicKeys(ctx, "plant/a")
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, "rotation", c.do("POST", "/v1/rotations", c.admin, map[string]any{"topic": "plant/a"}), http.StatusOK)
	keys, err := c.svc.MonitorTopicKeys(ctx, "plant/a")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(keys.Previous, before.Current) {
		t.Fatal("C2 does not keep the replaced key for the monitor")
	}
	m, err := monitor.New(monitor.Config{Service: c.svc, Transport: loopback.NewBroker().Connect()})
	if err != nil {
		t.Fatal(err)
	}
	c.svc.SetMonitor(m)
	msg, err := e4.ProtectSymKey(nil, []byte("21.5"), keys.Previous, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := m.Check("plant/a", msg); r != monitor.PreviousKey {
		t.Fatalf("message under the previous key: %v, want previous_key", r)
	}

	secret := keys.Previous
	encodings := []string{hex.EncodeToString(secret), strings.ToUpper(hex.EncodeToString(secret)),
		base64.StdEncoding.EncodeToString(secret), base64.URLEncoding.EncodeToString(secret),
		base64.RawStdEncoding.EncodeToString(secret), base64.RawURLEncoding.EncodeToString(secret)}
	leaks := func(what string, body []byte) {
		t.Helper()
		if bytes.Contains(body, secret) {
			t.Errorf("%s holds the previous key in raw bytes", what)
		}
		for _, enc := range encodings {
			if bytes.Contains(body, []byte(enc)) {
				t.Errorf("%s holds the previous key: %s", what, body)
			}
		}
	}
	for _, path := range []string{"/v1/topics", "/v1/topics/plant/a", "/v1/state/topics/plant/a", "/v1/state/behind/plant/a",
		"/v1/commands", "/v1/events", "/v1/audit", "/v1/monitor/stats", "/v1/monitor/top?result=all"} {
		r := c.do("GET", path, reader, nil)
		if path == "/v1/audit" {
			r = c.do("GET", path, c.admin, nil)
		}
		wantStatus(t, "GET "+path, r, http.StatusOK)
		leaks("GET "+path, r.body)
	}

	cl := c.client()
	var answers []proto.Message
	add := func(msg proto.Message, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		answers = append(answers, msg)
	}
	add(cl.GetTopic(as(reader), &c2pb.TopicRequest{Topic: "plant/a"}))
	add(cl.ListTopics(as(reader), &c2pb.ListTopicsRequest{}))
	add(cl.GetTopicState(as(reader), &c2pb.TopicRequest{Topic: "plant/a"}))
	add(cl.ListEvents(as(reader), &c2pb.ListEventsRequest{}))
	add(cl.ListMonitorTop(as(reader), &c2pb.ListMonitorTopRequest{Result: "all"}))
	for _, a := range answers {
		b, err := proto.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		leaks("gRPC "+string(proto.MessageName(a)), b)
	}
	leaks("the logs", []byte(c.logs.String()))
}

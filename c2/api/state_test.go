package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/c2/api/c2pb"
	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/internal/testdevice"
	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/mqtt"
)

// sendSyncRequest publishes, as device name with client key key, a sync
// request that says it holds no key.
func sendSyncRequest(t *testing.T, brokerURL, name string, key []byte) {
	t.Helper()
	dev, err := e4.NewSymKeyClient(e4.IDFromName(name), key, nil)
	if err != nil {
		t.Fatal(err)
	}
	req, err := dev.SyncRequest()
	if err != nil {
		t.Fatal(err)
	}
	tr, err := mqtt.Dial(t.Context(), mqtt.Config{Brokers: []string{brokerURL}})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if err := tr.Publish(t.Context(), e4.SyncTopic(dev.ID()), req, transport.WithQoS(transport.AtLeastOnce)); err != nil {
		t.Fatal(err)
	}
}

// stateEnv is a C2 whose dispatcher scans the device state often, on a
// clock the test can move forward, with an operate and a read token.
type stateEnv struct {
	*testC2
	// ahead moves the service's clock forward (nanoseconds).
	ahead       atomic.Int64
	cl          c2pb.C2Client
	ops, reader context.Context
	opsToken    string
	readerToken string
}

// behindAfter is the DispatchConfig.BehindAfter of stateEnv.
const behindAfter = time.Hour

func newStateEnv(t *testing.T, postgres bool) *stateEnv {
	e := &stateEnv{}
	e.testC2 = newTestC2(t, options{postgres: postgres, service: func(cfg *c2.Config) {
		cfg.Now = func() time.Time { return time.Now().Add(time.Duration(e.ahead.Load())) }
		cfg.Dispatch.RepairInterval = 20 * time.Millisecond
		cfg.Dispatch.BehindAfter = behindAfter
	}})
	e.cl, e.opsToken, e.readerToken = e.client(), e.token("ops", "operate"), e.token("reader", "read")
	e.ops, e.reader = as(e.opsToken), as(e.readerToken)
	return e
}

// addClient adds a client and returns its key.
func (e *stateEnv) addClient(name string) []byte {
	e.t.Helper()
	res, err := e.cl.AddClient(e.ops, &c2pb.AddClientRequest{Name: name})
	if err != nil {
		e.t.Fatal(err)
	}
	return res.Key
}

func (e *stateEnv) addMembers(topic string, clients ...string) {
	e.t.Helper()
	if _, err := e.cl.AddTopic(e.ops, &c2pb.AddTopicRequest{Topic: topic}); err != nil {
		e.t.Fatal(err)
	}
	if len(clients) == 0 {
		return
	}
	if _, err := e.cl.AddMembers(e.ops, &c2pb.AddMembersRequest{Topic: topic, Clients: clients}); err != nil {
		e.t.Fatal(err)
	}
}

// watch opens an event stream of kinds.
func (e *stateEnv) watch(kinds ...string) grpc.ServerStreamingClient[c2pb.Event] {
	e.t.Helper()
	ctx, cancel := context.WithCancel(e.reader)
	e.t.Cleanup(cancel)
	stream, err := e.cl.WatchEvents(ctx, &c2pb.WatchEventsRequest{Kinds: kinds})
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := stream.Header(); err != nil {
		e.t.Fatal(err)
	}
	return stream
}

// TestDeviceStateGRPC: a device that acknowledges and two reference
// devices that cannot share a topic; each state call answers what C2
// learned from the acknowledgements, the converged and devices-behind
// events come through the event stream, and only an operate token may
// declare whether a device acknowledges (audited). On SQLite and
// PostgreSQL.
func TestDeviceStateGRPC(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testDeviceStateGRPC(t, false) })
	t.Run("postgres", func(t *testing.T) { testDeviceStateGRPC(t, true) })
}

func testDeviceStateGRPC(t *testing.T, postgres bool) {
	e := newStateEnv(t, postgres)
	acked := e.watch("command_acked")
	reports := e.watch("topic_converged", "devices_behind")

	ackerKey := e.addClient("acker")
	ref1Key := e.addClient("reference-1")
	e.addClient("reference-2")
	testdevice.StartAcking(t, e.brokerURL, "acker", ackerKey)
	e.addMembers("plant/line-1", "acker", "reference-1", "reference-2")
	e.addMembers("plant/solo", "acker")
	for range 2 {
		if ev := nextEvent(t, acked); ev.ClientId != e4.IDFromName("acker").String() || ev.Detail != "SetTopicKey" {
			t.Fatalf("acknowledgement event: %v", ev)
		}
	}
	converged := nextEvent(t, reports)
	if converged.Kind != "topic_converged" || converged.Topic != "plant/solo" || converged.Detail != "version 1, 1 members" {
		t.Fatalf("first report: %v, want plant/solo converged", converged)
	}

	ts, err := e.cl.GetTopicState(e.reader, &c2pb.TopicRequest{Topic: "plant/line-1"})
	if err != nil {
		t.Fatal(err)
	}
	if ts.Version != 1 || ts.Members != 3 || ts.Acknowledged != 1 || ts.Behind != 2 || ts.BehindNotAcknowledging != 2 ||
		ts.Converged || ts.Summary != "version 1: 1 of 3 members acknowledged; 2 behind" {
		t.Fatalf("GetTopicState plant/line-1: %v", ts)
	}
	if solo, err := e.cl.GetTopicState(e.reader, &c2pb.TopicRequest{Topic: "plant/solo"}); err != nil || !solo.Converged || solo.Acknowledged != 1 {
		t.Fatalf("GetTopicState plant/solo: %v %v", solo, err)
	}
	first, err := e.cl.ListTopicBehind(e.reader, &c2pb.ListTopicBehindRequest{Topic: "plant/line-1", Limit: 1})
	if err != nil || first.Total != 2 || len(first.Clients) != 1 {
		t.Fatalf("ListTopicBehind page 1: %v %v", first, err)
	}
	second, err := e.cl.ListTopicBehind(e.reader, &c2pb.ListTopicBehindRequest{Topic: "plant/line-1", After: first.Clients[0].Id, Limit: 1})
	if err != nil || len(second.Clients) != 1 {
		t.Fatalf("ListTopicBehind page 2: %v %v", second, err)
	}
	behind := map[string]bool{first.Clients[0].Id: true, second.Clients[0].Id: true}
	if !behind[e4.IDFromName("reference-1").String()] || !behind[e4.IDFromName("reference-2").String()] ||
		first.Clients[0].Acknowledges || first.Clients[0].AckedVersion != 0 || first.Clients[0].LastSeen != nil {
		t.Fatalf("members behind: %v %v", first, second)
	}
	if last, err := e.cl.ListTopicBehind(e.reader, &c2pb.ListTopicBehindRequest{Topic: "plant/line-1", After: second.Clients[0].Id}); err != nil || len(last.Clients) != 0 {
		t.Fatalf("ListTopicBehind past the end: %v %v", last, err)
	}

	cs, err := e.cl.GetClientState(e.reader, &c2pb.GetClientStateRequest{Client: "acker"})
	if err != nil {
		t.Fatal(err)
	}
	if cs.Name != "acker" || cs.Id != e4.IDFromName("acker").String() || cs.AckMode != "auto" || !cs.Acknowledges ||
		cs.LastSeen == nil || cs.Topics != 2 || cs.TopicsBehind != 0 || cs.KeyInUse != "current" || cs.Stalled || len(cs.TopicStates) != 2 {
		t.Fatalf("GetClientState acker: %v", cs)
	}
	if ks := cs.TopicStates[0]; ks.Topic != "plant/line-1" || ks.WantVersion != 1 || ks.AckedVersion != 1 || ks.Behind || ks.AckedAt == nil {
		t.Fatalf("acker's first topic: %v", ks)
	}
	page, err := e.cl.GetClientState(e.reader, &c2pb.GetClientStateRequest{Client: "acker", After: "plant/line-1", Limit: 1})
	if err != nil || len(page.TopicStates) != 1 || page.TopicStates[0].Topic != "plant/solo" {
		t.Fatalf("GetClientState second topic page: %v %v", page, err)
	}
	ref, err := e.cl.GetClientState(e.reader, &c2pb.GetClientStateRequest{Client: e4.IDFromName("reference-1").String()})
	if err != nil || ref.Acknowledges || ref.LastSeen != nil || ref.TopicsBehind != 1 || len(ref.TopicStates) != 1 || !ref.TopicStates[0].Behind {
		t.Fatalf("GetClientState reference-1: %v %v", ref, err)
	}
	fleet, err := e.cl.GetFleetState(e.reader, &c2pb.Empty{})
	if err != nil || fleet.Clients != 3 || fleet.Acknowledging != 1 || fleet.NotAcknowledging != 0 || fleet.Unknown != 2 ||
		fleet.MembershipsBehind != 2 || fleet.ClientsBehind != 2 || fleet.Stalled != 0 || fleet.CatchUp.GetSyncReceived() != 0 {
		t.Fatalf("GetFleetState: %v %v", fleet, err)
	}
	// reference-1 turns out to be an E4kit device after all: it asks for
	// its keys, and the catch-up shows in the fleet's progress.
	sendSyncRequest(t, e.brokerURL, "reference-1", ref1Key)
	deadline := time.Now().Add(20 * time.Second)
	for fleet.CatchUp.GetSyncAnswered() != 1 || fleet.CatchUp.GetCommands() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("catch-up progress after a sync request: %v", fleet.CatchUp)
		}
		time.Sleep(20 * time.Millisecond)
		if fleet, err = e.cl.GetFleetState(e.reader, &c2pb.Empty{}); err != nil {
			t.Fatal(err)
		}
	}
	if c := fleet.CatchUp; c.SyncReceived != 1 || c.SyncQueued != 0 || c.SyncRefused != 0 || c.SyncDropped != 0 {
		t.Fatalf("catch-up progress: %v", c)
	}

	_, err = e.cl.SetClientAcknowledges(e.reader, &c2pb.SetClientAcknowledgesRequest{Client: "reference-1", Mode: "no"})
	wantCode(t, "SetClientAcknowledges with a read token", err, codes.PermissionDenied)
	set, err := e.cl.SetClientAcknowledges(e.ops, &c2pb.SetClientAcknowledgesRequest{Client: "reference-1", Mode: "no"})
	if err != nil || set.AckMode != "no" || set.Acknowledges || set.Name != "reference-1" || set.TopicStates != nil {
		t.Fatalf("SetClientAcknowledges no: %v %v", set, err)
	}
	if set, err = e.cl.SetClientAcknowledges(e.ops, &c2pb.SetClientAcknowledgesRequest{Client: "reference-2", Mode: "yes"}); err != nil || !set.Acknowledges {
		t.Fatalf("SetClientAcknowledges yes: %v %v", set, err)
	}
	fleet, err = e.cl.GetFleetState(e.reader, &c2pb.Empty{})
	if err != nil || fleet.Acknowledging != 2 || fleet.NotAcknowledging != 1 || fleet.Unknown != 0 {
		t.Fatalf("GetFleetState after the declarations: %v %v", fleet, err)
	}
	if ts, err = e.cl.GetTopicState(e.reader, &c2pb.TopicRequest{Topic: "plant/line-1"}); err != nil || ts.BehindNotAcknowledging != 1 {
		t.Fatalf("GetTopicState after the declarations: %v %v", ts, err)
	}
	_, err = e.cl.SetClientAcknowledges(e.ops, &c2pb.SetClientAcknowledgesRequest{Client: "reference-1", Mode: "maybe"})
	wantCode(t, "mode maybe", err, codes.InvalidArgument)
	_, err = e.cl.SetClientAcknowledges(e.ops, &c2pb.SetClientAcknowledgesRequest{Client: "reference-1"})
	wantCode(t, "no mode", err, codes.InvalidArgument)
	_, err = e.cl.SetClientAcknowledges(e.ops, &c2pb.SetClientAcknowledgesRequest{Client: "nobody", Mode: "no"})
	wantCode(t, "unknown client", err, codes.NotFound)

	// A rotation the reference devices cannot acknowledge is reported
	// behind once BehindAfter has passed (on the service's clock, moved
	// forward once the acknowledging device answered).
	if _, err := e.cl.RotateTopic(e.ops, &c2pb.TopicRequest{Topic: "plant/line-1"}); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, acked); ev.Topic != "plant/line-1" {
		t.Fatalf("acknowledgement of the rotation: %v", ev)
	}
	e.ahead.Store(int64(behindAfter + time.Minute))
	report := nextEvent(t, reports)
	if report.Kind != "devices_behind" || report.Topic != "plant/line-1" ||
		report.Detail != "version 2: 1 of 3 members acknowledged; 2 behind, of which 1 do not acknowledge" {
		t.Fatalf("report after the rotation: %v", report)
	}

	var setRecords []string
	for _, r := range findAudit(e.auditRecords(), "SetClientAcknowledges") {
		setRecords = append(setRecords, r.Actor+" "+r.Outcome)
		if r.Outcome == "ok" {
			setRecords[len(setRecords)-1] += " " + r.Target
		}
	}
	want := []string{
		"token:reader PermissionDenied", "token:ops ok client=reference-1", "token:ops ok client=reference-2",
		"token:ops InvalidArgument", "token:ops InvalidArgument", "token:ops NotFound",
	}
	if strings.Join(setRecords, "\n") != strings.Join(want, "\n") {
		t.Fatalf("SetClientAcknowledges audit records:\n%s\nwant:\n%s", strings.Join(setRecords, "\n"), strings.Join(want, "\n"))
	}
	if n := len(findAudit(e.auditRecords(), "GetClientState")); n != 0 {
		t.Fatalf("%d audit records of GetClientState, a read", n)
	}
	list, err := e.cl.ListEvents(e.reader, &c2pb.ListEventsRequest{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var modes []string
	for _, ev := range list.Events {
		if ev.Kind == "ack_mode_set" {
			modes = append(modes, ev.Detail)
		}
	}
	if strings.Join(modes, ",") != "no,yes" {
		t.Fatalf("ack_mode_set events: %v", modes)
	}
}

// TestDeviceStateErrors: lookups of what does not exist and malformed
// arguments get NotFound and InvalidArgument, never Internal.
func TestDeviceStateErrors(t *testing.T) {
	e := newStateEnv(t, false)
	e.addClient("alone")
	_, err := e.cl.GetClientState(e.reader, &c2pb.GetClientStateRequest{Client: "nobody"})
	wantCode(t, "GetClientState of an unknown client", err, codes.NotFound)
	_, err = e.cl.GetClientState(e.reader, &c2pb.GetClientStateRequest{})
	wantCode(t, "GetClientState without a client", err, codes.InvalidArgument)
	_, err = e.cl.GetClientState(e.reader, &c2pb.GetClientStateRequest{Client: "alone", Limit: -1})
	wantCode(t, "GetClientState with a negative page", err, codes.InvalidArgument)
	_, err = e.cl.GetClientState(e.reader, &c2pb.GetClientStateRequest{Client: "alone", After: "a\x00b"})
	wantCode(t, "GetClientState with a control character", err, codes.InvalidArgument)
	_, err = e.cl.GetTopicState(e.reader, &c2pb.TopicRequest{Topic: "no/such/topic"})
	wantCode(t, "GetTopicState of an unknown topic", err, codes.NotFound)
	_, err = e.cl.GetTopicState(e.reader, &c2pb.TopicRequest{})
	wantCode(t, "GetTopicState without a topic", err, codes.InvalidArgument)
	_, err = e.cl.ListTopicBehind(e.reader, &c2pb.ListTopicBehindRequest{Topic: "no/such/topic"})
	wantCode(t, "ListTopicBehind of an unknown topic", err, codes.NotFound)
	e.addMembers("empty/topic")
	_, err = e.cl.ListTopicBehind(e.reader, &c2pb.ListTopicBehindRequest{Topic: "empty/topic", After: "xyz"})
	wantCode(t, "ListTopicBehind after a non-id", err, codes.InvalidArgument)
	_, err = e.cl.ListTopicBehind(e.reader, &c2pb.ListTopicBehindRequest{Topic: "empty/topic", Limit: 100001})
	wantCode(t, "ListTopicBehind with an oversized page", err, codes.InvalidArgument)
	ts, err := e.cl.GetTopicState(e.reader, &c2pb.TopicRequest{Topic: "empty/topic"})
	if err != nil || ts.Members != 0 || ts.Converged || ts.Summary != "version 1: 0 of 0 members acknowledged; 0 behind" {
		t.Fatalf("GetTopicState of a topic without members: %v %v", ts, err)
	}
	_, err = e.cl.GetFleetState(context.Background(), &c2pb.Empty{})
	wantCode(t, "GetFleetState without a token", err, codes.Unauthenticated)
}

// TestDeviceStateHTTP: the same calls as REST routes, topics with slashes
// in paths, the scope of SetClientAcknowledges, and malformed requests
// refused with a 4xx.
func TestDeviceStateHTTP(t *testing.T) {
	e := newStateEnv(t, false)
	acked := e.watch("command_acked")
	key := e.addClient("pump-7")
	e.addClient("old-meter")
	testdevice.StartAcking(t, e.brokerURL, "pump-7", key)
	e.addMembers("site/a/temp", "pump-7", "old-meter")
	nextEvent(t, acked)

	r := e.do("GET", "/v1/state/topics/site/a/temp", e.readerToken, nil)
	wantStatus(t, "topic state", r, http.StatusOK)
	if r.json["summary"] != "version 1: 1 of 2 members acknowledged; 1 behind" || r.json["topic"] != "site/a/temp" || r.json["members"] != json.Number("2") {
		t.Fatalf("topic state: %s", r.body)
	}
	r = e.do("GET", "/v1/state/behind/site/a/temp?limit=10", e.readerToken, nil)
	wantStatus(t, "members behind", r, http.StatusOK)
	if r.json["total"] != json.Number("1") || !strings.Contains(string(r.body), e4.IDFromName("old-meter").String()) {
		t.Fatalf("members behind: %s", r.body)
	}
	r = e.do("GET", "/v1/clients/pump-7/state?limit=5", e.readerToken, nil)
	wantStatus(t, "client state", r, http.StatusOK)
	states, _ := r.json["topic_states"].([]any)
	if r.json["acknowledges"] != true || r.json["key_in_use"] != "current" || len(states) != 1 {
		t.Fatalf("client state: %s", r.body)
	}
	r = e.do("GET", "/v1/state/fleet", e.readerToken, nil)
	wantStatus(t, "fleet state", r, http.StatusOK)
	if r.json["clients"] != json.Number("2") || r.json["acknowledging"] != json.Number("1") || r.json["memberships_behind"] != json.Number("1") {
		t.Fatalf("fleet state: %s", r.body)
	}
	wantStatus(t, "acknowledges with a read token",
		e.do("POST", "/v1/clients/old-meter/acknowledges", e.readerToken, map[string]any{"mode": "no"}), http.StatusForbidden)
	r = e.do("POST", "/v1/clients/old-meter/acknowledges", e.opsToken, map[string]any{"mode": "no"})
	wantStatus(t, "acknowledges no", r, http.StatusOK)
	if r.json["ack_mode"] != "no" || r.json["acknowledges"] != false {
		t.Fatalf("acknowledges no: %s", r.body)
	}
	if r = e.do("GET", "/v1/state/fleet", e.readerToken, nil); r.json["not_acknowledging"] != json.Number("1") {
		t.Fatalf("fleet state after acknowledges no: %s", r.body)
	}
	wantStatus(t, "unknown topic", e.do("GET", "/v1/state/topics/no/such", e.readerToken, nil), http.StatusNotFound)
	wantStatus(t, "unknown client", e.do("GET", "/v1/clients/nobody/state", e.readerToken, nil), http.StatusNotFound)

	if doc := e.do("GET", "/openapi.json", "", nil); !strings.Contains(string(doc.body), `"/v1/state/behind/{topic}"`) {
		t.Fatalf("the OpenAPI document lacks the state routes")
	}

	base := "https://" + e.srv.HTTPAddr()
	client := e.httpClient()
	stateRoutes := []route{
		{"GET", "/v1/clients/pump-7/state", ""}, {"POST", "/v1/clients/pump-7/acknowledges", `{"mode":"auto"}`},
		{"GET", "/v1/state/topics/site/a/temp", ""}, {"GET", "/v1/state/behind/site/a/temp", ""}, {"GET", "/v1/state/fleet", ""},
	}
	for _, r := range stateRoutes {
		if got := sendRaw(t, client, base, "", r); got != http.StatusUnauthorized {
			t.Errorf("%s %s without a token: HTTP %d, want 401", r.method, r.path, got)
		}
	}
	malformed := []route{
		{"GET", "/v1/clients/pump-7/state?limit=-1", ""}, {"GET", "/v1/clients/pump-7/state?limit=many", ""},
		{"GET", "/v1/state/behind/site/a/temp?after=xyz", ""}, {"GET", "/v1/state/behind/site/a/temp?limit=99999999999", ""},
		{"POST", "/v1/clients/pump-7/acknowledges", `{"mode":"sometimes"}`}, {"POST", "/v1/clients/pump-7/acknowledges", `{}`},
		{"GET", "/v1/state/topics/%00", ""}, {"GET", "/v1/clients/" + strings.Repeat("a", 5000) + "/state", ""},
	}
	for _, b := range malformedBodies {
		malformed = append(malformed, route{"POST", "/v1/clients/pump-7/acknowledges", b})
	}
	for _, r := range malformed {
		if got := sendRaw(t, client, base, e.admin, r); got < 400 || got >= 500 {
			t.Errorf("%s %s %q: HTTP %d, want a 4xx", r.method, r.path, clipBody(r.body), got)
		}
	}
}

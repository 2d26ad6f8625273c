package c2

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/e4/command"
	"github.com/e4-iot/e4kit/transport/loopback"
)

func TestCommandsWaitForTheTransportAndKeepTheirOrder(t *testing.T) {
	ctx := context.Background()
	broker := loopback.NewBroker()
	env := newTestService(t, e4.SymKey, nil) // no transport: everything stays queued
	dev := must[AddedClient](t)(env.svc.AddClient(ctx, NewClient{Name: "dev"}))
	const topics = 20
	for i := range topics {
		name := "topic/" + string(rune('a'+i))
		must[TopicInfo](t)(env.svc.AddTopic(ctx, name))
		if err := env.svc.AddMember(ctx, name, dev.ID); err != nil {
			t.Fatal(err)
		}
	}
	if err := env.svc.RemoveMember(ctx, "topic/c", dev.ID); err != nil {
		t.Fatal(err)
	}
	// The SetTopicKey of topic/c, not sent yet, is superseded by the
	// RemoveTopic: it is never sent.
	pending := must[int64](t)(env.svc.CountCommands(ctx, pendingFilter))
	if pending != topics {
		t.Fatalf("%d pending, want %d", pending, topics)
	}
	listed := must[[]CommandStatus](t)(env.svc.Commands(ctx, CommandFilter{Client: &dev.ID}, 0, 100))
	if len(listed) != topics+1 || listed[0].Kind != "SetTopicKey" || listed[topics].Kind != "RemoveTopic" || listed[topics].Target != "topic/c" {
		t.Fatalf("listed %+v", listed)
	}
	if listed[2].Target != "topic/c" || listed[2].State != CommandSuperseded {
		t.Fatalf("the SetTopicKey of the topic left is %+v, want superseded", listed[2])
	}

	// C2 restarts with a transport: the queue drains in order.
	env.stop()
	d := newSKDevice(t, broker.Connect(), "dev", dev.Key)
	env.start(t, e4.SymKey, broker.Connect())
	cmds := d.waitCommands(topics)
	if cmds[topics-1] != command.RemoveTopic {
		t.Fatalf("last command %v, want RemoveTopic (order lost)", cmds[topics-1])
	}
	if d.client.HasTopicKey("topic/c") || !d.client.HasTopicKey("topic/d") {
		t.Fatal("device keys do not match the commands in order")
	}
	env.waitIdle(t)
	st := must[CommandStatus](t)(env.svc.Command(ctx, mustCommandID(t, listed[0].ID)))
	if st.State != CommandSent || st.SentAt == 0 {
		t.Fatalf("first command status %+v", st)
	}
}

func TestRetriesUntilTheBrokerTakesIt(t *testing.T) {
	ctx := context.Background()
	broker := loopback.NewBroker()
	flaky := &flakyTransport{Transport: broker.Connect(), failures: 3, err: errors.New("broker unreachable")}
	env := newTestService(t, e4.SymKey, flaky)
	dev := must[AddedClient](t)(env.svc.AddClient(ctx, NewClient{Name: "dev"}))
	d := newSKDevice(t, broker.Connect(), "dev", dev.Key)
	must[TopicInfo](t)(env.svc.AddTopic(ctx, "t"))
	if err := env.svc.AddMember(ctx, "t", dev.ID); err != nil {
		t.Fatal(err)
	}
	d.waitCommands(1)
	env.waitIdle(t)
	list := must[[]CommandStatus](t)(env.svc.Commands(ctx, CommandFilter{}, 0, 10))
	if len(list) != 1 || list[0].Attempts != 3 || !strings.Contains(list[0].LastError, "broker unreachable") || list[0].State != CommandSent {
		t.Fatalf("status %+v, want sent after 3 failed attempts", list[0])
	}
	// The counters move just after the store is updated, and the device's
	// acknowledgement may settle the command in the store before the
	// dispatcher marks it sent: wait for the dispatcher to count it.
	deadline := time.Now().Add(10 * time.Second)
	for s := env.svc.Dispatcher().Stats(); s.Sent != 1; s = env.svc.Dispatcher().Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v, want the command counted sent", s)
		}
		time.Sleep(5 * time.Millisecond)
	}
	env.stop()
	if s := env.svc.Dispatcher().Stats(); s.Retried != 3 || s.Sent != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestCommandFailsAfterMaxAttempts(t *testing.T) {
	ctx := context.Background()
	broker := loopback.NewBroker()
	flaky := &flakyTransport{Transport: broker.Connect(), failures: 1000, err: errors.New("refused")}
	var failed []Event
	env := newTestService(t, e4.SymKey, flaky, func(c *Config) {
		c.Dispatch.MaxAttempts = 2
		c.OnEvent = func(e Event) {
			if e.Kind == EventCommandFailed {
				failed = append(failed, e)
			}
		}
	})
	dev := must[AddedClient](t)(env.svc.AddClient(ctx, NewClient{Name: "dev"}))
	must[TopicInfo](t)(env.svc.AddTopic(ctx, "t"))
	if err := env.svc.AddMember(ctx, "t", dev.ID); err != nil {
		t.Fatal(err)
	}
	env.waitIdle(t)
	list := must[[]CommandStatus](t)(env.svc.Commands(ctx, CommandFilter{State: CommandFailed}, 0, 10))
	if len(list) != 1 || list[0].LastError != "refused" {
		t.Fatalf("failed commands %+v", list)
	}
	env.stop()
	if len(failed) != 1 || failed[0].Topic != "t" || *failed[0].Client != dev.ID {
		t.Fatalf("failure events %+v", failed)
	}
}

func TestNewClientKeySwitchesTheCommandKey(t *testing.T) {
	ctx := context.Background()
	broker := loopback.NewBroker()
	env := newTestService(t, e4.SymKey, broker.Connect())
	dev := must[AddedClient](t)(env.svc.AddClient(ctx, NewClient{Name: "dev"}))
	d := newSKDevice(t, broker.Connect(), "dev", dev.Key)
	fresh := must[[]byte](t)(env.svc.NewClientKey(ctx, dev.ID, nil))
	if bytes.Equal(fresh, dev.Key) || len(fresh) != e4.KeyLen {
		t.Fatal("NewClientKey did not return a new key")
	}
	must[TopicInfo](t)(env.svc.AddTopic(ctx, "t"))
	if err := env.svc.AddMember(ctx, "t", dev.ID); err != nil {
		t.Fatal(err)
	}
	// SetIDKey went under the old key, SetTopicKey under the new one: the
	// device applies both only if C2 switched keys at the right point.
	if cmds := d.waitCommands(2); cmds[0] != command.SetIDKey || cmds[1] != command.SetTopicKey {
		t.Fatalf("commands %v", cmds)
	}
}

func TestImportClients(t *testing.T) {
	ctx := context.Background()
	env := newTestService(t, e4.SymKey, nil)
	key := strings.Repeat("ab", 32)
	csv := "name,key\nd1," + key + "\nd2,\nd3,\n"
	var progress []int
	res, err := env.svc.ImportClients(ctx, strings.NewReader(csv), ImportCSV, func(n int) { progress = append(progress, n) })
	if err != nil {
		t.Fatal(err)
	}
	if res.Imported != 3 || len(res.Generated) != 2 || res.Generated[e4.IDFromName("d1")] != nil || len(progress) == 0 || progress[len(progress)-1] != 3 {
		t.Fatalf("result %+v, progress %v", res, progress)
	}
	json := `[{"name":"j1"},{"id":"` + e4.IDFromName("j2").String() + `","key":"` + key + `"}]`
	if res, err := env.svc.ImportClients(ctx, strings.NewReader(json), ImportJSON, nil); err != nil || res.Imported != 2 {
		t.Fatalf("JSON array import: %+v, %v", res, err)
	}
	lines := "{\"name\":\"l1\"}\n{\"name\":\"l2\"}\n"
	if res, err := env.svc.ImportClients(ctx, strings.NewReader(lines), ImportJSON, nil); err != nil || res.Imported != 2 {
		t.Fatalf("JSON lines import: %+v, %v", res, err)
	}
	bad := "name,key\nb1,\nb2,zz\n"
	_, err = env.svc.ImportClients(ctx, strings.NewReader(bad), ImportCSV, nil)
	if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "record 2") {
		t.Fatalf("bad key: %v", err)
	}
	if _, err := env.svc.ImportClients(ctx, strings.NewReader("name,colour\nx,red\n"), ImportCSV, nil); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("unknown column: %v", err)
	}
	if n := must[int64](t)(env.svc.CountClients(ctx)); n != 7 {
		t.Fatalf("%d clients, want 7 (the bad file imported nothing)", n)
	}
}

func mustCommandID(t *testing.T, s string) CommandID {
	t.Helper()
	id, err := ParseCommandID(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

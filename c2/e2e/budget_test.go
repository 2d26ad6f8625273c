package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/c2/monitor"
	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/transport"
)

// TestMessageBudgetOverMosquitto: a meter publishes to a collector over
// real Mosquitto under a topic whose policy allows 100 messages per key.
// C2 runs its scheduler and its monitor, which counts the messages it sees
// on the broker: after 99 messages nothing rotates; the 100th makes the
// scheduler rotate the topic once, while the meter keeps publishing; the
// collector receives every message, before, during and after the
// rotation, and the next 100 messages under the new key rotate it again.
func TestMessageBudgetOverMosquitto(t *testing.T) {
	const (
		topic  = "meters/power"
		budget = 100
	)
	ctx := context.Background()
	net := mosquittoNetwork(t)
	var (
		monMu sync.Mutex
		mon   *monitor.Monitor
	)
	node := startC2(t, dbPath(t), newMaster(t), e4.SymKey, net.dial(t), func(c *c2.Config) {
		c.Automation = c2.AutomationConfig{Tick: 50 * time.Millisecond, Owner: "e2e"}
		c.OnEvent = func(e c2.Event) { // the monitor reads a rotated topic's keys at once
			monMu.Lock()
			m := mon
			monMu.Unlock()
			if m != nil {
				m.Notify(e)
			}
		}
	})
	svc := node.svc
	_, err := svc.AddTopic(ctx, topic)
	mustDo(t, err)
	meter, collector := newDevice(t, net, svc, "meter"), newDevice(t, net, svc, "collector")
	for _, d := range []*device{meter, collector} {
		mustDo(t, svc.AddMember(ctx, topic, e4.IDFromName(d.name)))
	}
	for _, d := range []*device{meter, collector} {
		eventually(t, 20*time.Second, d.name+" receives the key", func() bool { return holdsCurrentKey(svc, d, topic) })
	}
	_, err = svc.AddPolicy(ctx, c2.Policy{Name: "gcm", Kind: c2.TargetTopic, Selector: c2.SelectFilter,
		Pattern: "meters/#", MaxMessages: budget})
	mustDo(t, err)

	m, err := monitor.New(monitor.Config{Service: svc, Transport: net.dial(t), Filters: []string{"meters/#"},
		CountEvery: 50 * time.Millisecond})
	mustDo(t, err)
	monMu.Lock()
	mon = m
	monMu.Unlock()
	monCtx, stopMonitor := context.WithCancel(ctx)
	monDone := make(chan error, 1)
	go func() { monDone <- m.Run(monCtx) }()
	t.Cleanup(func() {
		stopMonitor()
		if err := <-monDone; err != nil {
			t.Errorf("monitor: %v", err)
		}
	})
	<-m.Ready()

	sub, err := collector.tr.Subscribe(ctx, topic)
	mustDo(t, err)
	collector.sub = sub
	received := countDistinct(t, collector)
	sent := 0
	publish := func(n int, pause time.Duration) {
		for range n {
			payload, _ := json.Marshal(map[string]string{"id": fmt.Sprint("reading-", sent)})
			mustDo(t, meter.tr.Publish(ctx, topic, payload, transport.WithQoS(transport.AtLeastOnce)))
			sent++
			time.Sleep(pause)
		}
	}
	plan := func() c2.PlannedRotation {
		p, _, err := svc.NextRotation(ctx, c2.TargetTopic, topic)
		mustDo(t, err)
		return p
	}
	version := func() uint64 {
		info, err := svc.GetTopic(ctx, topic)
		mustDo(t, err)
		return info.KeyVersion
	}
	rotationsOf := func() []c2.Rotation {
		list, err := svc.ListRotations(ctx, c2.RotationFilter{Policy: "gcm"}, 0, 100)
		mustDo(t, err)
		return list
	}

	// 99 messages: counted, nothing rotates.
	publish(budget-1, 0)
	eventually(t, 30*time.Second, "the collector receives 99 messages", func() bool { return received.Load() == budget-1 })
	eventually(t, 30*time.Second, "C2 counts 99 messages", func() bool { return plan().Messages == budget-1 })
	for range 3 { // ticks beside the running scheduler's: none fires
		_, err := svc.SchedulerTick(ctx)
		mustDo(t, err)
	}
	if v, list := version(), rotationsOf(); v != 1 || len(list) != 0 {
		t.Fatalf("after 99 of 100 messages: key version %d, rotations %+v", v, list)
	}

	// The 100th and 100 more while the rotation goes out: one rotation,
	// no message lost.
	publish(budget+1, 5*time.Millisecond)
	eventually(t, 30*time.Second, "the collector receives every message", func() bool { return received.Load() == int64(sent) })
	eventually(t, 30*time.Second, "the topic rotates", func() bool { return version() == 2 })
	for _, d := range []*device{meter, collector} {
		eventually(t, 30*time.Second, d.name+" holds the new key", func() bool { return holdsCurrentKey(svc, d, topic) })
	}
	list := rotationsOf()
	if len(list) != 1 || list[0].Reason != "messages" || list[0].Version != 2 {
		t.Fatalf("rotations after %d messages: %+v; want one to version 2, reason messages", sent, list)
	}
	// Every message was seen once by the monitor: valid under one key or
	// the other, none refused.
	eventually(t, 30*time.Second, "the monitor checks every message", func() bool {
		r := m.Counters()
		return r[monitor.Valid]+r[monitor.PreviousKey] == uint64(sent)
	})
	if r := m.Counters(); r[monitor.AuthFailed]+r[monitor.Replay]+r[monitor.NotE4] != 0 {
		t.Fatalf("monitor results: %v", r)
	}
	underNew := plan().Messages
	if valid := int64(m.Counters()[monitor.Valid]); underNew >= budget || underNew > valid-budget {
		t.Fatalf("%d messages counted under the new key, %d valid in all; want fewer than the budget and at most all but the first key's %d", underNew, valid, budget)
	}

	// The new key's budget: rotated again, and messages still flow.
	publish(budget, 2*time.Millisecond)
	eventually(t, 30*time.Second, "the topic rotates again", func() bool { return version() == 3 })
	eventually(t, 30*time.Second, "the collector receives every message", func() bool { return received.Load() == int64(sent) })
	if list := rotationsOf(); len(list) != 2 || list[1].Version != 3 || list[1].Reason != "messages" {
		t.Fatalf("rotations: %+v; want two, reason messages", list)
	}
	if n := collector.drops(); n != 0 {
		t.Fatalf("the collector dropped %d messages", n)
	}
}

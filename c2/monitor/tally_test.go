package monitor_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/c2/monitor"
	"github.com/e4-iot/e4kit/e4"
)

// budgetCount returns the messages the service counted under a topic's
// current key (read through the preview of a budget policy).
func budgetCount(t *testing.T, e *env, topic string) int64 {
	t.Helper()
	plan, _, err := e.svc.NextRotation(context.Background(), c2.TargetTopic, topic)
	if err != nil {
		t.Fatal(err)
	}
	if plan.MaxMessages == 0 {
		t.Fatalf("topic %s has no message budget: %+v", topic, plan)
	}
	return plan.Messages
}

func reportCounts(t *testing.T, m *monitor.Monitor) {
	t.Helper()
	if err := m.ReportCounts(context.Background()); err != nil {
		t.Fatalf("ReportCounts: %v", err)
	}
}

// TestMonitorCountsValidMessages: the monitor reports to the service the
// valid messages of each topic under its current key, once each: not
// replays, forgeries or messages under the previous key; a report after a
// rotation counts for the new key only, and a count for the replaced key
// is dropped.
func TestMonitorCountsValidMessages(t *testing.T) {
	e := newEnv(t, e4.SymKey)
	const topic = "sensors/budget"
	e.addTopic(topic)
	if _, err := e.svc.AddPolicy(context.Background(), c2.Policy{Name: "gcm", Kind: c2.TargetTopic,
		Selector: c2.SelectExact, Pattern: topic, MaxMessages: 1 << 30}); err != nil {
		t.Fatal(err)
	}
	m := newCheckMonitor(t, e, nil)
	old := e.topicKeys(topic).Current
	var first []byte
	for i := range 5 {
		msg := protectSK(t, old, fmt.Sprint("reading ", i), e.clock.Now())
		check(t, m, topic, msg, monitor.Valid)
		first = msg
	}
	check(t, m, topic, first, monitor.Replay)
	check(t, m, topic, protectSK(t, randomKey(t), "forged", e.clock.Now()), monitor.AuthFailed)
	reportCounts(t, m)
	reportCounts(t, m) // nothing new: nothing added
	if n := budgetCount(t, e, topic); n != 5 {
		t.Fatalf("count after 5 valid messages, a replay and a forgery: %d", n)
	}

	check(t, m, topic, protectSK(t, old, "before the rotation", e.clock.Now()), monitor.Valid) // not reported yet
	if _, err := e.svc.RotateTopic(context.Background(), topic); err != nil {
		t.Fatal(err)
	}
	reportCounts(t, m) // under version 1: dropped
	if n := budgetCount(t, e, topic); n != 0 {
		t.Fatalf("count after the rotation: %d, want 0", n)
	}
	current := e.topicKeys(topic).Current
	for i := range 3 {
		check(t, m, topic, protectSK(t, current, fmt.Sprint("new ", i), e.clock.Now()), monitor.Valid)
	}
	check(t, m, topic, protectSK(t, old, "lagging", e.clock.Now()), monitor.PreviousKey)
	reportCounts(t, m)
	if n := budgetCount(t, e, topic); n != 3 {
		t.Fatalf("count after 3 valid messages under the new key and one under the old: %d", n)
	}
}

// TestMonitorCountsConcurrently: workers checking at once lose no count.
func TestMonitorCountsConcurrently(t *testing.T) {
	e := newEnv(t, e4.SymKey)
	const topic = "sensors/busy"
	e.addTopic(topic)
	if _, err := e.svc.AddPolicy(context.Background(), c2.Policy{Name: "gcm", Kind: c2.TargetTopic,
		Selector: c2.SelectAll, MaxMessages: 1 << 30}); err != nil {
		t.Fatal(err)
	}
	m := newCheckMonitor(t, e, nil)
	key := e.topicKeys(topic).Current
	const workers, each = 4, 250
	msgs := make([][]byte, workers*each)
	for i := range msgs {
		msgs[i] = protectSK(t, key, fmt.Sprint("m", i), e.clock.Now())
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	reports := make(chan error, 1)
	go func() { // reports while the workers count
		for {
			select {
			case <-stop:
				reports <- nil
				return
			case <-time.After(time.Millisecond):
				if err := m.ReportCounts(context.Background()); err != nil {
					reports <- err
					return
				}
			}
		}
	}()
	for w := range workers {
		wg.Go(func() {
			for _, msg := range msgs[w*each : (w+1)*each] {
				if r, _ := m.Check(topic, msg); r != monitor.Valid {
					t.Errorf("Check: %v", r)
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	if err := <-reports; err != nil {
		t.Fatal(err)
	}
	reportCounts(t, m)
	if n := budgetCount(t, e, topic); n != workers*each {
		t.Fatalf("count: %d, want %d", n, workers*each)
	}
}

// TestMonitorCountsBounded: a monitor used through Check alone (no Run,
// so no report) over a topic rotated again and again holds at most
// 3*MaxTopics states and counts.
func TestMonitorCountsBounded(t *testing.T) {
	e := newEnv(t, e4.SymKey)
	const topic = "sensors/rotating"
	e.addTopic(topic)
	m := newCheckMonitor(t, e, func(c *monitor.Config) { c.MaxTopics = 4 })
	for i := range 50 {
		check(t, m, topic, protectSK(t, e.topicKeys(topic).Current, fmt.Sprint("m", i), e.clock.Now()), monitor.Valid)
		if _, err := e.svc.RotateTopic(context.Background(), topic); err != nil {
			t.Fatal(err)
		}
		if n := m.TallyHeld(); n > 3*4 {
			t.Fatalf("after %d rotations the counting holds %d entries, want at most 12", i+1, n)
		}
	}
	reportCounts(t, m)
	if n := m.TallyHeld(); n != 0 {
		t.Fatalf("after a report the counting holds %d entries", n)
	}
}

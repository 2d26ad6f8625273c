package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/transport"
)

// jumpClock is real time plus an offset the test moves forward: timers,
// backoffs and leases run in real time, and weeks pass in a jump. C2 and
// every device share it, so their timestamp checks agree.
type jumpClock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *jumpClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

// JumpTo moves the clock forward to t (never back).
func (c *jumpClock) JumpTo(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d := time.Until(t) - c.offset; d > 0 {
		c.offset += d
	}
}

// TestWeeklyRotationOverMosquitto is the product's two-key example over
// real Mosquitto: an update server publishes firmware and configuration
// updates to the fleet under one key, the devices publish analytics data
// to a back-end under another, and C2's scheduler rotates both keys every
// week (the clock jumps from week to week) while messages flow: over ten
// weeks every device follows every rotation and no message is lost.
func TestWeeklyRotationOverMosquitto(t *testing.T) {
	const (
		weeks    = 10
		messages = 20 // per topic per week
		firmware = "fleet/firmware"
		data     = "analytics/data"
	)
	ctx := context.Background()
	clock := &jumpClock{}
	net := mosquittoNetwork(t)
	node := startC2(t, dbPath(t), newMaster(t), e4.SymKey, net.dial(t), func(c *c2.Config) {
		c.Now = clock.Now
		c.Automation = c2.AutomationConfig{Disabled: true, Owner: "e2e"}
	})
	svc := node.svc
	for _, topic := range []string{firmware, data} {
		_, err := svc.AddTopic(ctx, topic)
		mustDo(t, err)
	}
	deviceOf := func(name string, topics ...string) *device {
		added, err := svc.AddClient(ctx, c2.NewClient{Name: name})
		mustDo(t, err)
		client, err := e4.NewSymKeyClient(e4.IDFromName(name), added.Key, &e4.Config{Now: clock.Now})
		mustDo(t, err)
		d := connectDevice(t, net, name, client)
		for _, topic := range topics {
			mustDo(t, svc.AddMember(ctx, topic, client.ID()))
		}
		for _, topic := range topics {
			eventually(t, 20*time.Second, name+" receives the key of "+topic, func() bool { return holdsCurrentKey(svc, d, topic) })
		}
		return d
	}
	updates := deviceOf("update-server", firmware)
	backend := deviceOf("analytics-backend", data)
	var fleet []*device
	for i := range 3 {
		fleet = append(fleet, deviceOf(fmt.Sprintf("sensor-%d", i), firmware, data))
	}
	for _, p := range []c2.Policy{
		{Name: "firmware-weekly", Kind: c2.TargetTopic, Selector: c2.SelectExact, Pattern: firmware, Period: 7 * 24 * time.Hour, Jitter: time.Hour},
		{Name: "analytics-weekly", Kind: c2.TargetTopic, Selector: c2.SelectExact, Pattern: data, Period: 7 * 24 * time.Hour, Jitter: time.Hour},
	} {
		_, err := svc.AddPolicy(ctx, p)
		mustDo(t, err)
	}

	// Readers: every sensor reads the firmware topic, the back-end reads
	// the data topic.
	readers := map[*device]string{backend: data}
	for _, d := range fleet {
		readers[d] = firmware
	}
	counts := map[*device]*atomic.Int64{}
	for d, topic := range readers {
		sub, err := d.tr.Subscribe(ctx, topic)
		mustDo(t, err)
		d.sub = sub
		counts[d] = countDistinct(t, d)
	}

	sent := 0
	for week := 1; week <= weeks; week++ {
		// Jump to just past both topics' next due time.
		var next time.Time
		for _, topic := range []string{firmware, data} {
			plan, ok, err := svc.NextRotation(ctx, c2.TargetTopic, topic)
			mustDo(t, err)
			if !ok {
				t.Fatalf("week %d: %s is not scheduled", week, topic)
			}
			next = later(next, plan.DueAt)
		}
		clock.JumpTo(next.Add(time.Second))

		// Messages flow on both topics while the scheduler rotates both.
		var wg sync.WaitGroup
		publish := func(from *device, topic string, seq int) {
			payload, _ := json.Marshal(map[string]string{"id": fmt.Sprintf("w%d-%s-%d", week, from.name, seq)})
			mustDo(t, from.tr.Publish(ctx, topic, payload, transport.WithQoS(transport.AtLeastOnce)))
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := range messages {
				publish(updates, firmware, seq)
				for _, d := range fleet {
					publish(d, data, seq)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}()
		time.Sleep(30 * time.Millisecond)
		r, err := svc.SchedulerTick(ctx)
		mustDo(t, err)
		wg.Wait()
		if r.Rotated != 2 {
			t.Fatalf("week %d: the tick rotated %d topics, want both: %+v", week, r.Rotated, r)
		}
		sent++
		for d, topic := range readers {
			want := int64(sent * messages)
			if topic == data {
				want *= int64(len(fleet))
			}
			eventually(t, 30*time.Second, fmt.Sprintf("week %d: %s receives all %d messages on %s", week, d.name, want, topic),
				func() bool { return counts[d].Load() == want })
		}
		for _, d := range append(fleet, updates, backend) {
			for topic := range memberTopics(d, updates, backend, firmware, data) {
				eventually(t, 30*time.Second, fmt.Sprintf("week %d: %s holds the new key of %s", week, d.name, topic),
					func() bool { return holdsCurrentKey(svc, d, topic) })
			}
		}
	}
	for _, topic := range []string{firmware, data} {
		info, err := svc.GetTopic(ctx, topic)
		mustDo(t, err)
		if info.KeyVersion != weeks+1 {
			t.Fatalf("%s: key version %d after %d weeks, want one rotation a week", topic, info.KeyVersion, weeks)
		}
	}
	for d := range readers {
		if n := d.drops(); n != 0 {
			t.Fatalf("%s dropped %d messages", d.name, n)
		}
	}
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// memberTopics is the set of topics a device of the two-key example is in.
func memberTopics(d, updates, backend *device, firmware, data string) map[string]bool {
	switch d {
	case updates:
		return map[string]bool{firmware: true}
	case backend:
		return map[string]bool{data: true}
	}
	return map[string]bool{firmware: true, data: true}
}

// countDistinct counts the distinct message ids d receives.
func countDistinct(t *testing.T, d *device) *atomic.Int64 {
	n := new(atomic.Int64)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		seen := map[string]bool{}
		for {
			m, err := d.sub.Receive(ctx)
			if err != nil {
				return
			}
			var v struct{ ID string }
			if json.Unmarshal(m.Payload, &v) == nil && v.ID != "" && !seen[v.ID] {
				seen[v.ID] = true
				n.Add(1)
			}
		}
	}()
	return n
}

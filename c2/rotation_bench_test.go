package c2

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/transport/loopback"
)

// BenchmarkRotationDispatch rotates a topic of 2,000 members over the
// loopback transport and waits until the dispatcher sent every command:
// the cost of C2's side of a rotation (store, sealing, dating, dispatch)
// without a network.
func BenchmarkRotationDispatch(b *testing.B) {
	const members = 2000
	ctx := context.Background()
	broker := loopback.NewBroker()
	env := newTestService(b, e4.SymKey, broker.Connect())
	var csv strings.Builder
	csv.WriteString("name\n")
	for i := range members {
		fmt.Fprintf(&csv, "dev-%d\n", i)
	}
	if _, err := env.svc.ImportClients(ctx, strings.NewReader(csv.String()), ImportCSV, nil); err != nil {
		b.Fatal(err)
	}
	ids := make([]e4.ID, members)
	for i := range ids {
		ids[i] = e4.IDFromName(fmt.Sprintf("dev-%d", i))
	}
	if _, err := env.svc.AddTopic(ctx, "fleet"); err != nil {
		b.Fatal(err)
	}
	if err := env.svc.AddMembers(ctx, "fleet", ids); err != nil {
		b.Fatal(err)
	}
	env.waitIdle(b)
	b.ResetTimer()
	for b.Loop() {
		if _, err := env.svc.RotateTopic(ctx, "fleet"); err != nil {
			b.Fatal(err)
		}
		env.waitIdle(b)
	}
	b.ReportMetric(float64(members*b.N)/b.Elapsed().Seconds(), "commands/s")
}

// BenchmarkRotationAcknowledged is BenchmarkRotationDispatch with 2,000
// devices that acknowledge (one loopback subscriber plays them all),
// until every member's acknowledgement is recorded: the ratio of the two
// is the cost of learning the devices' state.
func BenchmarkRotationAcknowledged(b *testing.B) {
	const members = 2000
	ctx := context.Background()
	broker := loopback.NewBroker()
	env := newTestService(b, e4.SymKey, broker.Connect())
	var csv strings.Builder
	csv.WriteString("name\n")
	for i := range members {
		fmt.Fprintf(&csv, "dev-%d\n", i)
	}
	res, err := env.svc.ImportClients(ctx, strings.NewReader(csv.String()), ImportCSV, nil)
	if err != nil {
		b.Fatal(err)
	}
	devices := make(map[string]*e4.Client, members)
	ids := make([]e4.ID, 0, members)
	for id, key := range res.Generated {
		c, err := e4.NewSymKeyClient(id, key, nil)
		if err != nil {
			b.Fatal(err)
		}
		devices[e4.ControlTopic(id)] = c
		ids = append(ids, id)
	}
	conn := broker.Connect()
	sub, err := conn.Subscribe(ctx, e4.ControlTopicPrefix+"+")
	if err != nil {
		b.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		for {
			m, err := sub.Receive(runCtx)
			if err != nil {
				return
			}
			c := devices[m.Topic]
			if _, ack, _ := c.HandleCommandAck(m.Payload); ack != nil {
				_ = conn.Publish(runCtx, e4.AckTopic(c.ID()), ack)
			}
		}
	}()
	if _, err := env.svc.AddTopic(ctx, "fleet"); err != nil {
		b.Fatal(err)
	}
	if err := env.svc.AddMembers(ctx, "fleet", ids); err != nil {
		b.Fatal(err)
	}
	waitConverged := func() {
		for {
			st, err := env.svc.TopicState(ctx, "fleet")
			if err != nil {
				b.Fatal(err)
			}
			if st.Converged {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitConverged()
	b.ResetTimer()
	for b.Loop() {
		if _, err := env.svc.RotateTopic(ctx, "fleet"); err != nil {
			b.Fatal(err)
		}
		waitConverged()
	}
	b.ReportMetric(float64(members*b.N)/b.Elapsed().Seconds(), "commands/s")
}

// BenchmarkRotateTopicRecorded measures what recording a manual rotation
// (one insert in its transaction) adds to RotateTopic: it alternates
// RotateTopic with the same rotation unrecorded on a topic of 100
// members (SQLite, no transport) and reports the ratio of their times.
func BenchmarkRotateTopicRecorded(b *testing.B) {
	const members = 100
	ctx := context.Background()
	env := newTestService(b, e4.SymKey, nil)
	ids := make([]e4.ID, members)
	for i := range ids {
		added, err := env.svc.AddClient(ctx, NewClient{Name: fmt.Sprintf("dev-%d", i)})
		if err != nil {
			b.Fatal(err)
		}
		ids[i] = added.ID
	}
	if _, err := env.svc.AddTopic(ctx, "fleet"); err != nil {
		b.Fatal(err)
	}
	if err := env.svc.AddMembers(ctx, "fleet", ids); err != nil {
		b.Fatal(err)
	}
	unrecorded := func() error {
		return env.svc.update(ctx, func(tx store.Tx, ev *events) error {
			_, err := env.svc.rotateTopic(tx, ev, "fleet", false)
			return err
		})
	}
	recordedOnce := func() error {
		_, err := env.svc.RotateTopic(ctx, "fleet")
		return err
	}
	timed := func(fn func() error) time.Duration {
		t0 := time.Now()
		if err := fn(); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0)
	}
	// Each goes first every other round, so that neither gains from the
	// other's leftovers (pages in cache, superseded commands).
	var plain, recorded time.Duration
	for i := 0; b.Loop(); i++ {
		if i%2 == 0 {
			plain += timed(unrecorded)
			recorded += timed(recordedOnce)
		} else {
			recorded += timed(recordedOnce)
			plain += timed(unrecorded)
		}
	}
	b.ReportMetric(float64(recorded)/float64(plain), "recorded/unrecorded")
}

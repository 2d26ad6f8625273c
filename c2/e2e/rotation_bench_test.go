package e2e

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/c2/seal"
	"github.com/e4-iot/e4kit/c2/store/sqlite"
	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/e4/command"
	"github.com/e4-iot/e4kit/internal/testbroker"
	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/mqtt"
)

// members is the size of the rotated topic in the rotation benchmarks.
const members = 10000

// benchTopic is the rotated topic; its name sets the command size.
const benchTopic = "fleet/all/telemetry"

// rotationRig is C2 over Mosquitto with one topic of many members, and a
// subscriber on every control topic standing in for the devices.
type rotationRig struct {
	svc      *c2.Service
	received atomic.Int64
	dial     func() transport.Transport
}

func newRotationRig(b *testing.B, n int) *rotationRig {
	b.Helper()
	ctx := context.Background()
	m := testbroker.StartMosquitto(b, &testbroker.MosquittoOptions{LargeQueues: true})
	rig := &rotationRig{}
	b.Cleanup(func() {
		if b.Failed() || os.Getenv("E4KIT_BENCH_BROKER_LOG") != "" {
			b.Logf("mosquitto output:\n%s", m.Output())
		}
	})
	rig.dial = func() transport.Transport {
		tr, err := mqtt.Dial(ctx, mqtt.Config{Brokers: []string{m.URL()}, QueueSize: 4 * n})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { tr.Close() })
		return tr
	}
	st, err := sqlite.Open(ctx, b.TempDir()+"/c2.db")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	master, err := seal.GenerateKey()
	if err != nil {
		b.Fatal(err)
	}
	keys, err := seal.NewKeyring(master)
	if err != nil {
		b.Fatal(err)
	}
	rig.svc, err = c2.New(ctx, c2.Config{Mode: e4.SymKey, Store: st, Keyring: keys, Transport: rig.dial()})
	if err != nil {
		b.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- rig.svc.Run(runCtx) }()
	b.Cleanup(func() { cancel(); <-done })
	rig.countControlMessages(b)

	var csv strings.Builder
	csv.WriteString("name\n")
	ids := make([]e4.ID, n)
	for i := range n {
		name := fmt.Sprintf("device-%06d", i)
		csv.WriteString(name + "\n")
		ids[i] = e4.IDFromName(name)
	}
	if _, err := rig.svc.ImportClients(ctx, strings.NewReader(csv.String()), c2.ImportCSV, nil); err != nil {
		b.Fatal(err)
	}
	if _, err := rig.svc.AddTopic(ctx, benchTopic); err != nil {
		b.Fatal(err)
	}
	if err := rig.svc.AddMembers(ctx, benchTopic, ids); err != nil {
		b.Fatal(err)
	}
	rig.waitDrained(b)
	return rig
}

func (rig *rotationRig) countControlMessages(b *testing.B) {
	sub, err := rig.dial().Subscribe(context.Background(), e4.ControlTopicPrefix+"+")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			if _, err := sub.Receive(ctx); err != nil {
				return
			}
			rig.received.Add(1)
		}
	}()
	b.Cleanup(func() { cancel(); wg.Wait() })
}

// waitDrained waits until the outbox is empty: every command was
// acknowledged by the broker.
func (rig *rotationRig) waitDrained(b *testing.B) {
	b.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(time.Minute)
	for {
		n, err := rig.svc.CountCommands(ctx, pendingCommands)
		if err != nil {
			b.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d commands pending after a minute", n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// reportDelivery reports what share of the commands the stand-in
// subscriber received, once deliveries stop for 2 s. It subscribes with
// QoS 2 and Mosquitto runs with LargeQueues (one client standing in for
// thousands of devices), so anything short of 100% is a loss to explain.
func reportDelivery(b *testing.B, received *atomic.Int64, want int64) {
	last := int64(-1)
	for received.Load() != last && received.Load() < want {
		last = received.Load()
		time.Sleep(2 * time.Second)
	}
	b.ReportMetric(100*float64(received.Load())/float64(want), "%delivered")
}

// BenchmarkRotateTopic10k rotates a topic of 10,000 members over
// Mosquitto: each iteration is one rotation, from the call until the broker
// acknowledged every command (QoS 2). A subscriber on every control topic
// stands in for the devices.
func BenchmarkRotateTopic10k(b *testing.B) {
	rig := newRotationRig(b, members)
	ctx := context.Background()
	reportDelivery(b, &rig.received, members) // the initial SetTopicKey commands
	rig.received.Store(0)
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		n, err := rig.svc.RotateTopic(ctx, benchTopic)
		if err != nil || n != members {
			b.Fatalf("RotateTopic = %d, %v", n, err)
		}
		rig.waitDrained(b)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N*members)/elapsed.Seconds(), "cmds/s")
	reportDelivery(b, &rig.received, int64(b.N*members))
}

// BenchmarkBarePublish10k publishes 10,000 messages of a SetTopicKey
// command's size over the same broker, QoS 2, 256 in flight, the way the
// dispatcher does, but with no database, sealing or E4: the baseline the
// rotation is compared to.
func BenchmarkBarePublish10k(b *testing.B) {
	ctx := context.Background()
	m := testbroker.StartMosquitto(b, &testbroker.MosquittoOptions{LargeQueues: true})
	dial := func() transport.Transport {
		tr, err := mqtt.Dial(ctx, mqtt.Config{Brokers: []string{m.URL()}, QueueSize: 4 * members})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { tr.Close() })
		return tr
	}
	pub, subTr := dial(), dial()
	sub, err := subTr.Subscribe(ctx, e4.ControlTopicPrefix+"+")
	if err != nil {
		b.Fatal(err)
	}
	var received atomic.Int64
	recvCtx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		for {
			if _, err := sub.Receive(recvCtx); err != nil {
				return
			}
			received.Add(1)
		}
	}()
	payload := protectedSetTopicKey(b)
	topics := make([]string, members)
	for i := range topics {
		topics[i] = e4.ControlTopic(e4.IDFromName(fmt.Sprintf("device-%06d", i)))
	}
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		publishAll(b, pub, topics, payload)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N*members)/elapsed.Seconds(), "msgs/s")
	reportDelivery(b, &received, int64(b.N*members))
}

func publishAll(b *testing.B, tr transport.Transport, topics []string, payload []byte) {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 256)
	for range 256 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < int64(len(topics)); i = next.Add(1) - 1 {
				if err := tr.Publish(context.Background(), topics[i], payload, transport.WithQoS(transport.ExactlyOnce)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
}

// protectedSetTopicKey returns a SetTopicKey command for benchTopic as C2
// publishes it: a random topic key, protected under a random client key.
// Its size is that of every command of a rotation, which is what makes the
// bare publishing rate comparable.
func protectedSetTopicKey(b *testing.B) []byte {
	b.Helper()
	topicKey, clientKey := make([]byte, e4.KeyLen), make([]byte, e4.KeyLen)
	rand.Read(topicKey)
	rand.Read(clientKey)
	cmd, err := command.NewSetTopicKey(topicKey, e4.HashTopic(benchTopic))
	if err != nil {
		b.Fatal(err)
	}
	payload, err := e4.ProtectCommand(cmd, clientKey, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	const want = e4.TimestampLen + 16 + 1 + e4.KeyLen + e4.TopicHashLen
	if len(payload) != want {
		b.Fatalf("a SetTopicKey command is %d bytes, want %d", len(payload), want)
	}
	return payload
}

package amqp_test

import (
	"fmt"
	"testing"

	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/transporttest"
)

// benchInFlight is the number of goroutines publishing at once in the
// throughput benchmark; each waits for its publisher confirm, so it is
// also the number of unconfirmed messages in flight.
const benchInFlight = 32

// benchPair opens a publisher and a subscriber on topic against the
// package's RabbitMQ node, bare or each protected by its own E4 client
// sharing the topic key.
func benchPair(b *testing.B, topic string, withE4 bool) (transport.Transport, transport.Subscription) {
	b.Helper()
	r := broker(b)
	var pub, sub transport.Transport = dial(b, testConfig(r)), dial(b, testConfig(r))
	if withE4 {
		key := e4Key(b)
		pub = protect(b, pub, e4Client(b, "bench-pub", topic, key))
		sub = protect(b, sub, e4Client(b, "bench-sub", topic, key))
	}
	s, err := sub.Subscribe(testContext(b), topic)
	if err != nil {
		b.Fatal(err)
	}
	return pub, s
}

// BenchmarkThroughput publishes b.N messages bare and b.N through E4,
// taking turns (transporttest.CompareThroughput), from benchInFlight
// goroutines (AtLeastOnce: persistent, each waiting for its confirm), and
// receives them on one subscription of another connection.
func BenchmarkThroughput(b *testing.B) {
	for _, size := range []int{64, 1024} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			bare, protected := throughputPair(b, false), throughputPair(b, true)
			transporttest.CompareThroughput(b, bare, protected, transporttest.ThroughputConfig{Size: size, Publishers: benchInFlight})
		})
	}
}

func throughputPair(b *testing.B, withE4 bool) transporttest.ThroughputPair {
	topic := uniqueTopic(b, "throughput")
	pub, sub := benchPair(b, topic, withE4)
	return transporttest.ThroughputPair{Pub: pub, Sub: sub, Topic: topic}
}

// BenchmarkLatency measures one message at a time, from the call to
// Publish (which waits for the confirm) to the return of Receive on
// another connection, bare and through E4 in turns.
func BenchmarkLatency(b *testing.B) {
	b.Run("64B", func(b *testing.B) {
		transporttest.CompareLatency(b, throughputPair(b, false), throughputPair(b, true), transporttest.LatencyConfig{Size: 64})
	})
}

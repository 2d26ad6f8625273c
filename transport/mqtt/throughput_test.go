package mqtt_test

import (
	"crypto/rand"
	"fmt"
	"testing"

	"github.com/e4-iot/e4kit/internal/testbroker"
	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/e4transport"
	"github.com/e4-iot/e4kit/transport/transporttest"
)

// Run against a Mosquitto started by the benchmark:
//
//	go test -run '^$' -bench 'Throughput|Latency' -benchtime 100000x ./transport/mqtt/
//
// Throughput sends b.N messages bare and b.N through E4, taking turns
// (transporttest.CompareThroughput), with up to 1000 messages between
// publisher and subscriber (two connections); latency sends one message
// at a time.

// benchPair is a publisher and a subscription on one topic, bare or
// protected by E4 clients sharing the topic key.
type benchPair struct {
	pub   transport.Transport
	sub   transport.Subscription
	topic string
}

// e4Sides says which ends of a benchPair go through E4.
type e4Sides int

const (
	noE4          e4Sides = iota
	bothE4                // publisher and subscriber
	publisherOnly         // the subscriber receives the protected bytes
)

func newBenchPair(b *testing.B, url string, sides e4Sides) benchPair {
	b.Helper()
	topic := uniqueTopic(b, "bench")
	pub, subConn := transport.Transport(dial(b, dialConfig(url))), transport.Transport(dial(b, dialConfig(url)))
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	if sides != noE4 {
		pub = protectBench(b, pub, key, topic)
	}
	if sides == bothE4 {
		subConn = protectBench(b, subConn, key, topic)
	}
	return benchPair{pub: pub, sub: subscribe(b, subConn, topic), topic: topic}
}

func (p benchPair) throughput() transporttest.ThroughputPair {
	return transporttest.ThroughputPair{Pub: p.pub, Sub: p.sub, Topic: p.topic}
}

func protectBench(b *testing.B, t transport.Transport, key []byte, topic string) transport.Transport {
	b.Helper()
	c := newE4ClientTB(b, key, topic)
	p, err := e4transport.Protect(opContext(b), t, c, nil)
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// BenchmarkThroughput: messages per second through Mosquitto, for each
// payload size and QoS 0 and 1, bare and through E4 in the same run.
func BenchmarkThroughput(b *testing.B) {
	m := testbroker.StartMosquitto(b, nil)
	for _, size := range []int{64, 1024} {
		for _, qos := range []transport.QoS{transport.AtMostOnce, transport.AtLeastOnce} {
			b.Run(fmt.Sprintf("%dB/qos%d", size, qos), func(b *testing.B) {
				bare, protected := newBenchPair(b, m.URL(), noE4), newBenchPair(b, m.URL(), bothE4)
				transporttest.CompareThroughput(b, bare.throughput(), protected.throughput(), transporttest.ThroughputConfig{
					Size: size, Options: []transport.PublishOption{transport.WithQoS(qos)}})
			})
		}
	}
}

// BenchmarkThroughputE4PublisherOnly is BenchmarkThroughput at 1 KiB and
// QoS 0 with E4 on the publisher only. One publisher sends one message at
// a time and waits for each write, so protecting adds straight to every
// message's time; set beside the 1024B/qos0 case of BenchmarkThroughput,
// it shows how much of E4's cost there lies on that path.
func BenchmarkThroughputE4PublisherOnly(b *testing.B) {
	m := testbroker.StartMosquitto(b, nil)
	bare, protected := newBenchPair(b, m.URL(), noE4), newBenchPair(b, m.URL(), publisherOnly)
	transporttest.CompareThroughput(b, bare.throughput(), protected.throughput(), transporttest.ThroughputConfig{
		Size: 1024, Options: []transport.PublishOption{transport.WithQoS(transport.AtMostOnce)}})
}

// BenchmarkLatency: time from Publish to Receive of one message at a
// time, 64 bytes, QoS 1, bare and through E4 in turns.
func BenchmarkLatency(b *testing.B) {
	m := testbroker.StartMosquitto(b, nil)
	b.Run("64B/qos1", func(b *testing.B) {
		bare, protected := newBenchPair(b, m.URL(), noE4), newBenchPair(b, m.URL(), bothE4)
		transporttest.CompareLatency(b, bare.throughput(), protected.throughput(), transporttest.LatencyConfig{
			Size: 64, Options: []transport.PublishOption{transport.WithQoS(transport.AtLeastOnce)}})
	})
}

package coap_test

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/e4transport"
	"github.com/e4-iot/e4kit/transport/transporttest"
)

// Throughput and latency through our broker (in-process, loopback):
//
//	go test -run '^$' -bench . -benchtime 2000x ./transport/coap/
//
// Throughput: one publisher publishes b.N messages back to back (each
// Publish waits for the broker's 2.04) bare and b.N through E4, taking
// turns (transporttest.CompareThroughput); one observer receives them.
// Latency: one message at a time, from Publish to Receive; p50-µs is the
// median.

var benchSizes = []int{64, 1024}

// benchPair returns a publisher and a subscription of topic, bare or
// protected by E4 clients sharing the topic key.
func benchPair(b *testing.B, addr string, withE4 bool, topic string) (transport.Transport, transport.Subscription) {
	b.Helper()
	var pub, sub transport.Transport = dial(b, testConfig(addr)), dial(b, testConfig(addr))
	if withE4 {
		key := make([]byte, e4.KeyLen)
		_, _ = rand.Read(key)
		pub, sub = protectBench(b, pub, topic, key), protectBench(b, sub, topic, key)
	}
	return pub, subscribe(b, sub, topic)
}

func protectBench(b *testing.B, tr transport.Transport, topic string, key []byte) transport.Transport {
	b.Helper()
	var id e4.ID
	_, _ = rand.Read(id[:])
	clientKey := make([]byte, e4.KeyLen)
	_, _ = rand.Read(clientKey)
	c, err := e4.NewSymKeyClient(id, clientKey, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := c.SetTopicKey(key, topic); err != nil {
		b.Fatal(err)
	}
	p, err := e4transport.Protect(context.Background(), tr, c, nil)
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// comparedPairs starts a broker and opens a bare pair and an E4 pair on
// it, on topics under prefix.
func comparedPairs(b *testing.B, prefix string) (bare, protected transporttest.ThroughputPair) {
	addr := startBroker(b, nil).addr
	pair := func(withE4 bool, topic string) transporttest.ThroughputPair {
		pub, sub := benchPair(b, addr, withE4, topic)
		return transporttest.ThroughputPair{Pub: pub, Sub: sub, Topic: topic}
	}
	return pair(false, prefix+"/bare"), pair(true, prefix+"/e4")
}

func BenchmarkThroughput(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			bare, protected := comparedPairs(b, "bench")
			transporttest.CompareThroughput(b, bare, protected, transporttest.ThroughputConfig{Size: size})
		})
	}
}

// BenchmarkLatency measures one message at a time, from the call to
// Publish (which waits for the broker's 2.04) to the return of Receive on
// another connection, bare and through E4 in turns.
func BenchmarkLatency(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			bare, protected := comparedPairs(b, "bench/latency")
			transporttest.CompareLatency(b, bare, protected, transporttest.LatencyConfig{Size: size})
		})
	}
}

// BenchmarkSustained publishes b.N messages on one connection, one after
// the other, and reports the rate of the first and of the last 2,000:
// go-coap's server looks through the responses it cached in the last
// 247 s on every datagram of a connection (plgd-dev/go-coap#586), so the
// rate falls as a connection keeps publishing.
//
//	go test -run '^$' -bench Sustained -benchtime 40000x ./transport/coap/
func BenchmarkSustained(b *testing.B) {
	const window = 2000
	pub, sub := benchPair(b, startBroker(b, nil).addr, false, "bench/sustained")
	payload := make([]byte, 64)
	received := make(chan error, 1)
	go func() {
		for range b.N {
			if _, err := sub.Receive(context.Background()); err != nil {
				received <- err
				return
			}
		}
		received <- nil
	}()
	rate := func(n int, since time.Time) float64 { return float64(n) / time.Since(since).Seconds() }
	b.ResetTimer()
	start, lastStart := time.Now(), time.Now()
	for i := range b.N {
		if i == window {
			b.ReportMetric(rate(window, start), "first-2k-msg/s")
		}
		if i == b.N-window {
			lastStart = time.Now()
		}
		binary.BigEndian.PutUint64(payload, uint64(i))
		if err := pub.Publish(context.Background(), "bench/sustained", payload); err != nil {
			b.Fatal(err)
		}
	}
	if b.N >= 2*window {
		b.ReportMetric(rate(window, lastStart), "last-2k-msg/s")
	}
	if err := <-received; err != nil {
		b.Fatal(err)
	}
}

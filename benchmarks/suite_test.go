package benchmarks

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/e4"
)

// Fast mode (e4.Fast: 10-round AES-256 in SIV, 10-round SHA3-256) against
// the default suite. FastSKProtect and FastSKUnprotect mirror SKProtect and
// SKUnprotect, so that make bench and the per-architecture tables show
// both modes side by side; FastVsDefault alternates the two modes in one
// loop and reports their time ratio, the steadiest comparison on a shared
// machine.

// fastSizes are the payloads of the fast-mode benchmarks: a sensor
// reading and a typical message.
var fastSizes = []int{64, 1024}

func suiteClient(b *testing.B, suite *e4.Suite) *e4.Client {
	c, err := e4.NewSymKeyClient(suite.IDFromName("bench"), clientKey, &e4.Config{Suite: suite})
	if err != nil {
		b.Fatal(err)
	}
	if err := c.SetTopicKey(topicKey, topic); err != nil {
		b.Fatal(err)
	}
	return c
}

func BenchmarkFastSKProtect(b *testing.B) {
	for _, size := range fastSizes {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			c := suiteClient(b, e4.Fast)
			payload := repeat(1, size)
			dst := make([]byte, 0, size+e4.SKOverhead)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Protect(dst[:0], payload, topic); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkFastSKUnprotect(b *testing.B) {
	for _, size := range fastSizes {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			msgs := distinctMessages(b, poolSize(size), size, func(p []byte) ([]byte, error) {
				return e4.Fast.ProtectSymKey(nil, p, topicKey, time.Now())
			})
			benchUnprotect(b, size, msgs, func() *e4.Client { return suiteClient(b, e4.Fast) })
		})
	}
}

// BenchmarkFastHashTopic is the topic hash of each suite (SHA3-256 of 24
// and of 10 rounds), run when a client first meets a topic name.
func BenchmarkFastHashTopic(b *testing.B) {
	for _, s := range []*e4.Suite{e4.V1, e4.Fast} {
		b.Run(s.Name(), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s.HashTopic(topic)
			}
		})
	}
}

// suiteWork runs a block of one operation of one suite and returns its
// time, setup excluded.
type suiteWork struct {
	run func(n int) time.Duration
}

const pairedBlock = 64 // operations timed together, so the clock reads are negligible

func protectWork(b *testing.B, suite *e4.Suite, size int) suiteWork {
	c := suiteClient(b, suite)
	payload := repeat(1, size)
	dst := make([]byte, 0, size+e4.SKOverhead)
	return suiteWork{run: func(n int) time.Duration {
		t0 := time.Now()
		for range n {
			if _, err := c.Protect(dst[:0], payload, topic); err != nil {
				b.Fatal(err)
			}
		}
		return time.Since(t0)
	}}
}

func unprotectWork(b *testing.B, suite *e4.Suite, size int) suiteWork {
	// 512 messages: both suites' pools stay in cache together, as a
	// receiver's recent traffic would.
	msgs := distinctMessages(b, 8*pairedBlock, size, func(p []byte) ([]byte, error) {
		return suite.ProtectSymKey(nil, p, topicKey, time.Now())
	})
	c, next := suiteClient(b, suite), 0
	dst := make([]byte, 0, size)
	return suiteWork{run: func(n int) time.Duration {
		if next+n > len(msgs) {
			c, next = suiteClient(b, suite), 0 // untimed: a fresh replay cache
		}
		t0 := time.Now()
		for _, m := range msgs[next : next+n] {
			if _, err := c.Unprotect(dst[:0], m, topic); err != nil {
				b.Fatal(err)
			}
		}
		next += n
		return time.Since(t0)
	}}
}

// BenchmarkFastVsDefault alternates blocks of the default and the fast
// suite's SK protect or unprotect and reports the ratio of their median
// block times (default / fast) as "speedup", and each suite's median ns per
// operation. Medians of short blocks, not totals: on a shared machine a
// block during which the process was descheduled is an outlier, and would
// otherwise land on one suite only. An op of the benchmark is one block of
// each suite.
func BenchmarkFastVsDefault(b *testing.B) {
	for _, op := range []struct {
		name string
		work func(*testing.B, *e4.Suite, int) suiteWork
	}{{"Protect", protectWork}, {"Unprotect", unprotectWork}} {
		for _, size := range fastSizes {
			b.Run(fmt.Sprintf("%s/%d", op.name, size), func(b *testing.B) {
				def, fast := op.work(b, e4.V1, size), op.work(b, e4.Fast, size)
				var tDef, tFast []time.Duration
				for b.Loop() {
					// Alternate which suite goes first, so that neither
					// always runs on a cache the other warmed.
					if len(tDef)%2 == 0 {
						tDef = append(tDef, def.run(pairedBlock))
						tFast = append(tFast, fast.run(pairedBlock))
					} else {
						tFast = append(tFast, fast.run(pairedBlock))
						tDef = append(tDef, def.run(pairedBlock))
					}
				}
				mDef, mFast := medianDuration(tDef), medianDuration(tFast)
				b.ReportMetric(float64(mDef)/float64(mFast), "speedup")
				b.ReportMetric(float64(mDef)/pairedBlock, "default-ns/op")
				b.ReportMetric(float64(mFast)/pairedBlock, "fast-ns/op")
			})
		}
	}
}

func medianDuration(d []time.Duration) time.Duration {
	slices.Sort(d)
	return d[len(d)/2]
}

package benchmarks

import (
	"fmt"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/e4"
)

// batchSize is how many messages a batch benchmark hands to the client at
// once: one run of UnprotectBatch's interleaved chains.
const batchSize = 16

// skMessagePool returns distinct SK messages of size bytes on topic.
func skMessagePool(b *testing.B, size int) [][]byte {
	n := poolSize(size) &^ (batchSize - 1)
	return distinctMessages(b, n, size, func(p []byte) ([]byte, error) {
		return e4.ProtectSymKey(nil, p, topicKey, time.Now())
	})
}

// batchReceiver feeds a receiver batches of distinct messages, replacing it
// (untimed, through pause) when the pool is used up.
type batchReceiver struct {
	b     *testing.B
	msgs  [][]byte
	next  int
	c     *e4.Client
	batch []e4.BatchMessage
	out   [][]byte
}

func newBatchReceiver(b *testing.B, msgs [][]byte, size int) *batchReceiver {
	r := &batchReceiver{b: b, msgs: msgs, c: skClient(b), batch: make([]e4.BatchMessage, batchSize)}
	for range batchSize {
		r.out = append(r.out, make([]byte, 0, size))
	}
	return r
}

// fill prepares the next batchSize messages, renewing the receiver when
// the pool is exhausted; pause and resume bracket that renewal.
func (r *batchReceiver) fill(pause, resume func()) {
	if r.next+batchSize > len(r.msgs) {
		pause()
		r.c, r.next = skClient(r.b), 0
		resume()
	}
	for i := range r.batch {
		r.batch[i] = e4.BatchMessage{Topic: topic, In: r.msgs[r.next+i], Dst: r.out[i][:0]}
	}
	r.next += batchSize
}

func (r *batchReceiver) check() {
	for _, m := range r.batch {
		if m.Err != nil {
			r.b.Fatal(m.Err)
		}
	}
}

// BenchmarkSKUnprotectBatch is SK unprotect through UnprotectBatch, sixteen
// messages a call; ns/op is per message, to set against SKUnprotect.
func BenchmarkSKUnprotectBatch(b *testing.B) {
	for _, size := range payloadSizes {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			r := newBatchReceiver(b, skMessagePool(b, size), size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += batchSize {
				r.fill(b.StopTimer, b.StartTimer)
				r.c.UnprotectBatch(r.batch)
				r.check()
			}
		})
	}
}

// BenchmarkSKProtectBatch is SK protect through ProtectBatch, sixteen
// messages a call; ns/op is per message, to set against SKProtect.
func BenchmarkSKProtectBatch(b *testing.B) {
	for _, size := range payloadSizes {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			c := skClient(b)
			payload := repeat(1, size)
			batch := make([]e4.BatchMessage, batchSize)
			dsts := make([][]byte, batchSize)
			for i := range dsts {
				dsts[i] = make([]byte, 0, size+e4.SKOverhead)
			}
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += batchSize {
				for j := range batch {
					batch[j] = e4.BatchMessage{Topic: topic, In: payload, Dst: dsts[j]}
				}
				c.ProtectBatch(batch)
				if batch[0].Err != nil {
					b.Fatal(batch[0].Err)
				}
			}
		})
	}
}

// BenchmarkUnprotectBatchVsSingle1K alternates, in one loop, sixteen 1 KiB
// messages through Unprotect one at a time and sixteen through one
// UnprotectBatch call (distinct messages, separate receivers, replay
// checks on), and reports single time / batch time as speedup: the batch
// path's throughput gain per core, both measured under the same load.
func BenchmarkUnprotectBatchVsSingle1K(b *testing.B) {
	const size = 1024
	msgs := skMessagePool(b, size)
	single := newBatchReceiver(b, msgs, size)
	batched := newBatchReceiver(b, msgs, size)
	var tSingle, tBatch time.Duration
	var paused time.Time
	var pausedFor time.Duration
	pause := func() { paused = time.Now() }
	resume := func() { pausedFor += time.Since(paused) }
	b.ReportAllocs()
	for b.Loop() {
		pausedFor = 0
		t0 := time.Now()
		single.fill(pause, resume)
		for i := range single.batch {
			m := &single.batch[i]
			m.Out, m.Err = single.c.Unprotect(m.Dst, m.In, m.Topic)
		}
		t1 := time.Now()
		tSingle += t1.Sub(t0) - pausedFor
		single.check()
		pausedFor = 0
		t2 := time.Now()
		batched.fill(pause, resume)
		batched.c.UnprotectBatch(batched.batch)
		tBatch += time.Since(t2) - pausedFor
		batched.check()
	}
	b.ReportMetric(float64(tSingle)/float64(tBatch), "speedup")
}

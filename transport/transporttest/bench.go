package transporttest

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/transport"
)

// ThroughputPair is what a throughput benchmark drives: a publisher and a
// subscription to Topic opened on another connection.
type ThroughputPair struct {
	Pub   transport.Transport
	Sub   transport.Subscription
	Topic string
}

// ThroughputConfig shapes CompareThroughput.
type ThroughputConfig struct {
	// Size is the payload length in bytes, at least 8: each payload starts
	// with a sequence number, since E4 refuses a repeated message as a
	// replay.
	Size int
	// Publishers is the number of goroutines publishing at once; 1 if
	// zero. Each waits for its Publish to return before the next.
	Publishers int
	// Window bounds the messages published but not yet received, so that
	// neither broker nor subscription buffer ever has to drop one at
	// QoS 0; 1000 if zero.
	Window int
	// Round is the number of messages each pair sends before the other
	// takes its turn; 2000 if zero.
	Round int
	// Options are passed to every Publish (a QoS, for example).
	Options []transport.PublishOption
}

func (c *ThroughputConfig) defaults() {
	if c.Publishers == 0 {
		c.Publishers = 1
	}
	if c.Window == 0 {
		c.Window = 1000
	}
	if c.Round == 0 {
		c.Round = 2000
	}
}

// CompareThroughput sends b.N messages through bare and b.N through
// protected (normally the same kind of connection wrapped by
// e4transport.Protect), and reports messages per second of each and their
// ratio as the metrics "bare-msg/s", "e4-msg/s" and "e4/bare". It also
// reports "e4/bare-median", the median over turns of the ratio between the
// two rounds of a turn: one stalled round moves the ratio of totals but
// not this, so when the two disagree the run was disturbed.
//
// The two pairs take turns in rounds of cfg.Round messages, alternating
// which goes first, so that both see the same state of a shared machine:
// measured one after the other, a background load that comes and goes
// moves their ratio by more than E4 costs.
func CompareThroughput(b *testing.B, bare, protected ThroughputPair, cfg ThroughputConfig) {
	b.Helper()
	cfg.defaults()
	if cfg.Size < 8 {
		b.Fatalf("CompareThroughput: payloads of %d bytes cannot hold a sequence number", cfg.Size)
	}
	ctx, cancel := context.WithTimeout(b.Context(), 10*time.Minute)
	defer cancel()
	runners := [2]*throughputRunner{{pair: bare, cfg: cfg}, {pair: protected, cfg: cfg}}
	var elapsed [2]time.Duration
	var turnRatios []float64
	b.ResetTimer()
	for done, turn := 0, 0; done < b.N; turn++ {
		n := min(cfg.Round, b.N-done)
		var took [2]time.Duration
		for k := range 2 {
			which := (turn + k) % 2
			d, err := runners[which].round(ctx, n)
			if err != nil {
				b.Fatalf("%s: %v", [2]string{"bare", "e4"}[which], err)
			}
			took[which] = d
		}
		elapsed[0] += took[0]
		elapsed[1] += took[1]
		// Equal message counts, so the rate ratio is the time ratio.
		turnRatios = append(turnRatios, took[0].Seconds()/took[1].Seconds())
		done += n
	}
	b.StopTimer()
	bareRate := float64(b.N) / elapsed[0].Seconds()
	e4Rate := float64(b.N) / elapsed[1].Seconds()
	b.ReportMetric(bareRate, "bare-msg/s")
	b.ReportMetric(e4Rate, "e4-msg/s")
	b.ReportMetric(e4Rate/bareRate, "e4/bare")
	b.ReportMetric(median(turnRatios), "e4/bare-median")
}

// median returns the middle of xs (the mean of the two middle values for
// an even count); xs is reordered.
func median(xs []float64) float64 {
	slices.Sort(xs)
	mid := len(xs) / 2
	if len(xs)%2 == 1 {
		return xs[mid]
	}
	return (xs[mid-1] + xs[mid]) / 2
}

// Throughput sends n messages through pair as one round of
// CompareThroughput (cfg.Window in flight, cfg.Publishers publishers) and
// returns the time until the last was received. Each call numbers its
// messages from 1, so a pair through E4 takes one call only: its
// receiver's replay cache would refuse the numbers again.
func Throughput(ctx context.Context, pair ThroughputPair, cfg ThroughputConfig, n int) (time.Duration, error) {
	cfg.defaults()
	if cfg.Size < 8 {
		return 0, fmt.Errorf("transporttest: payloads of %d bytes cannot hold a sequence number", cfg.Size)
	}
	r := &throughputRunner{pair: pair, cfg: cfg}
	return r.round(ctx, n)
}

// throughputRunner sends rounds of messages through one pair, numbering
// them across rounds.
type throughputRunner struct {
	pair ThroughputPair
	cfg  ThroughputConfig
	seq  atomic.Uint64
}

// round publishes n messages and returns the time until the last was
// received.
func (r *throughputRunner) round(ctx context.Context, n int) (time.Duration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	credit := make(chan struct{}, r.cfg.Window)
	for range min(r.cfg.Window, n) {
		credit <- struct{}{}
	}
	start := time.Now()
	received := make(chan error, 1)
	go func() { received <- r.receive(ctx, n, credit) }()
	if err := r.publish(ctx, n, credit); err != nil {
		cancel() // ends the receiver, which may wait for messages never sent
		<-received
		return 0, err
	}
	if err := <-received; err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// publish sends n messages from cfg.Publishers goroutines, each taking a
// credit first; it returns the first error.
func (r *throughputRunner) publish(ctx context.Context, n int, credit <-chan struct{}) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, r.cfg.Publishers)
	for range r.cfg.Publishers {
		wg.Go(func() {
			payload := make([]byte, r.cfg.Size)
			for next.Add(1) <= int64(n) {
				select {
				case <-credit:
				case <-ctx.Done():
					errs <- ctx.Err()
					return
				}
				binary.BigEndian.PutUint64(payload, r.seq.Add(1))
				if err := r.pair.Pub.Publish(ctx, r.pair.Topic, payload, r.cfg.Options...); err != nil {
					errs <- fmt.Errorf("publishing: %w", err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs // nil once closed and empty
}

// receive takes n messages, returning a credit for each.
func (r *throughputRunner) receive(ctx context.Context, n int, credit chan<- struct{}) error {
	for i := range n {
		if _, err := r.pair.Sub.Receive(ctx); err != nil {
			return fmt.Errorf("received %d of %d: %w", i, n, err)
		}
		select {
		case credit <- struct{}{}:
		default: // the publishers are done with credits
		}
	}
	return nil
}

// LatencyConfig shapes CompareLatency.
type LatencyConfig struct {
	// Size is the payload length in bytes, at least 8 (a sequence number
	// leads each payload, as in ThroughputConfig).
	Size int
	// Options are passed to every Publish.
	Options []transport.PublishOption
}

// CompareLatency sends b.N messages through bare and b.N through
// protected, one message in flight at a time, taking turns message by
// message so that both see the same machine. Each is timed from the call
// to Publish to the return of Receive on the other connection. It reports
// the median and 99th percentile of each, in microseconds, as the metrics
// "bare-p50-µs", "e4-p50-µs", "bare-p99-µs" and "e4-p99-µs".
func CompareLatency(b *testing.B, bare, protected ThroughputPair, cfg LatencyConfig) {
	b.Helper()
	if cfg.Size < 8 {
		b.Fatalf("CompareLatency: payloads of %d bytes cannot hold a sequence number", cfg.Size)
	}
	ctx, cancel := context.WithTimeout(b.Context(), 10*time.Minute)
	defer cancel()
	pairs := [2]ThroughputPair{bare, protected}
	samples := [2][]time.Duration{make([]time.Duration, 0, b.N), make([]time.Duration, 0, b.N)}
	payload := make([]byte, cfg.Size)
	b.ResetTimer()
	for i := range b.N {
		for k := range 2 {
			which := (i + k) % 2
			binary.BigEndian.PutUint64(payload, uint64(i))
			d, err := timeOneMessage(ctx, pairs[which], payload, cfg.Options)
			if err != nil {
				b.Fatalf("%s, message %d: %v", [2]string{"bare", "e4"}[which], i, err)
			}
			samples[which] = append(samples[which], d)
		}
	}
	b.StopTimer()
	for which, name := range [2]string{"bare", "e4"} {
		slices.Sort(samples[which])
		b.ReportMetric(microseconds(percentile(samples[which], 50)), name+"-p50-µs")
		b.ReportMetric(microseconds(percentile(samples[which], 99)), name+"-p99-µs")
	}
}

// timeOneMessage publishes payload and waits for it on the pair's
// subscription, checking that what arrives is that message.
func timeOneMessage(ctx context.Context, p ThroughputPair, payload []byte, opts []transport.PublishOption) (time.Duration, error) {
	start := time.Now()
	if err := p.Pub.Publish(ctx, p.Topic, payload, opts...); err != nil {
		return 0, fmt.Errorf("publishing: %w", err)
	}
	m, err := p.Sub.Receive(ctx)
	if err != nil {
		return 0, fmt.Errorf("receiving: %w", err)
	}
	took := time.Since(start)
	if len(m.Payload) < 8 || binary.BigEndian.Uint64(m.Payload) != binary.BigEndian.Uint64(payload) {
		return 0, fmt.Errorf("received a message other than the one just published (%d bytes)", len(m.Payload))
	}
	return took, nil
}

// percentile returns the p-th percentile of sorted, which is not empty.
func percentile(sorted []time.Duration, p int) time.Duration {
	return sorted[min(len(sorted)*p/100, len(sorted)-1)]
}

func microseconds(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

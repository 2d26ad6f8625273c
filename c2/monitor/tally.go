package monitor

import (
	"context"
	"sync"
	"time"

	"github.com/e4-iot/e4kit/c2"
)

// The monitor counts the valid messages of each topic under its current
// key and reports them to the service every CountEvery, which keeps the
// count per topic and key version in the database for the policies that
// rotate a topic after a message budget. A valid message costs one atomic
// addition on its topic's state; the lock is taken once per topic and
// report interval, when the topic's first message of the interval marks
// it.

// reportTimeout bounds one report to the service.
const reportTimeout = 10 * time.Second

// tally holds the topic states with valid messages not reported yet, and
// the counts a failed report left, to try again.
type tally struct {
	mu    sync.Mutex
	dirty []*topicState
	carry map[countKey]int64 // at most max keys
	max   int
}

type countKey struct {
	topic   string
	version uint64
}

func newTally(max int) *tally { return &tally{carry: make(map[countKey]int64), max: max} }

// add counts one valid message under st's keys.
func (t *tally) add(st *topicState) {
	// Only the first message since the last report marks the state: the
	// report takes the count with Swap, so a message counted after it
	// marks the state again.
	if st.valid.Add(1) == 1 {
		t.mu.Lock()
		t.dirty = append(t.dirty, st)
		if len(t.dirty) >= 2*t.max {
			t.compactLocked()
		}
		t.mu.Unlock()
	}
}

// compactLocked folds the marked states into carry, when no report took
// them for long (a monitor used through Check without Run): the states a
// reload replaced are not kept. The caller holds mu.
func (t *tally) compactLocked() {
	for _, st := range t.dirty {
		if n := st.valid.Swap(0); n > 0 {
			t.carryLocked(c2.MessageCount{Topic: st.name, Version: st.version, Messages: n})
		}
	}
	t.dirty = t.dirty[:0]
}

// carryLocked adds a count to carry unless carry is full (it returns
// false then). The caller holds mu.
func (t *tally) carryLocked(c c2.MessageCount) bool {
	k := countKey{c.Topic, c.Version}
	if _, ok := t.carry[k]; !ok && len(t.carry) >= t.max {
		return false
	}
	t.carry[k] += c.Messages
	return true
}

// take returns the counts to report and resets them.
func (t *tally) take() []c2.MessageCount {
	t.mu.Lock()
	dirty := t.dirty
	t.dirty = nil
	sum := t.carry
	t.carry = make(map[countKey]int64)
	t.mu.Unlock()
	for _, st := range dirty {
		if n := st.valid.Swap(0); n > 0 {
			sum[countKey{st.name, st.version}] += n
		}
	}
	out := make([]c2.MessageCount, 0, len(sum))
	for k, n := range sum {
		out = append(out, c2.MessageCount{Topic: k.topic, Version: k.version, Messages: n})
	}
	return out
}

// keep puts back counts a report could not deliver; beyond max keys the
// rest are dropped, and their number returned.
func (t *tally) keep(counts []c2.MessageCount) (dropped int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range counts {
		if !t.carryLocked(c) {
			dropped += c.Messages
		}
	}
	return dropped
}

// reportCounts reports the counts every CountEvery until ctx ends.
func (m *Monitor) reportCounts(ctx context.Context) {
	every(ctx, m.cfg.CountEvery, func() { _ = m.ReportCounts(ctx) })
}

// finalCounts reports what is left when Run ends.
func (m *Monitor) finalCounts() {
	ctx, cancel := context.WithTimeout(context.Background(), reportTimeout)
	defer cancel()
	_ = m.ReportCounts(ctx)
}

// ReportCounts reports the valid messages counted since the last report
// to the service (Run does it every CountEvery and when it ends). Counts
// the service could not take are kept for the next report.
func (m *Monitor) ReportCounts(ctx context.Context) error {
	counts := m.tally.take()
	for len(counts) > 0 {
		n := min(len(counts), c2.MaxMessageCounts)
		rctx, cancel := context.WithTimeout(ctx, reportTimeout)
		err := m.svc.CountMessages(rctx, counts[:n])
		cancel()
		if err != nil {
			dropped := m.tally.keep(counts)
			m.cfg.Logger.Warn("monitor: cannot report message counts; kept for the next report", "topics", len(counts), "dropped_messages", dropped, "err", err)
			return err
		}
		counts = counts[n:]
	}
	return nil
}

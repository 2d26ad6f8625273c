package monitor

import (
	"fmt"
	"sync"
	"time"

	"github.com/e4-iot/e4kit/e4"
)

// reporter turns anomalies into events on the service's event stream,
// coalesced so that a flood gives a bounded number of events: per (result,
// topic, sender) it reports the first anomaly at once, then at most one
// event per interval saying how many more there were. It tracks at most
// maxKeys such keys; beyond that, anomalies are coalesced per result over
// every topic ("other topics"), so at most maxKeys+numResults events go out
// per interval however many topics and senders a flood uses.
type reporter struct {
	emit     func(client *e4.ID, topic, kind, detail string)
	interval time.Duration
	maxKeys  int

	mu      sync.Mutex
	pending map[reportKey]*pendingReport
}

type reportKey struct {
	result    Result
	topic     string
	sender    e4.ID
	hasSender bool
}

type pendingReport struct {
	last       time.Time // when the last event for the key went out
	suppressed uint64    // anomalies since, not reported yet
	detail     string    // of the latest anomaly
}

type report struct {
	key    reportKey
	detail string
}

func newReporter(emit func(*e4.ID, string, string, string), interval time.Duration, maxKeys int) *reporter {
	return &reporter{emit: emit, interval: interval, maxKeys: maxKeys, pending: make(map[reportKey]*pendingReport)}
}

// add reports one anomaly, or counts it for a later event.
func (r *reporter) add(key reportKey, detail string, now time.Time) {
	r.mu.Lock()
	p := r.pending[key]
	if p == nil && len(r.pending) >= r.maxKeys {
		key = reportKey{result: key.result, topic: ""}
		detail = "on other topics too: " + detail
		p = r.pending[key]
	}
	if p == nil {
		p = &pendingReport{}
		r.pending[key] = p
	}
	p.detail = detail
	if !p.last.IsZero() && now.Sub(p.last) < r.interval {
		p.suppressed++
		r.mu.Unlock()
		return
	}
	p.last = now
	r.mu.Unlock()
	r.send(report{key: key, detail: detail})
}

// flush reports the anomalies counted and not reported for an interval,
// and forgets the keys quiet for two intervals.
func (r *reporter) flush(now time.Time) {
	var out []report
	r.mu.Lock()
	for key, p := range r.pending {
		if now.Sub(p.last) < r.interval {
			continue
		}
		if p.suppressed > 0 {
			out = append(out, report{key: key, detail: fmt.Sprintf("%d more since %s, the latest: %s",
				p.suppressed, p.last.UTC().Format(time.RFC3339), p.detail)})
			p.suppressed, p.last = 0, now
			continue
		}
		if now.Sub(p.last) >= 2*r.interval {
			delete(r.pending, key)
		}
	}
	r.mu.Unlock()
	for _, rep := range out {
		r.send(rep)
	}
}

func (r *reporter) send(rep report) {
	var client *e4.ID
	if rep.key.hasSender {
		id := rep.key.sender
		client = &id
	}
	r.emit(client, rep.key.topic, rep.key.result.String(), rep.detail)
}

package monitor

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/e4-iot/e4kit/c2"
)

// Counters returns how many messages got each result since the monitor
// started.
func (m *Monitor) Counters() map[Result]uint64 {
	out := make(map[Result]uint64, numResults)
	for r := range numResults {
		out[r] = m.counts[r].Load()
	}
	return out
}

// Ignored returns how many messages were not checked: on control topics,
// on topics C2 does not manage, or while their keys could not be read.
func (m *Monitor) Ignored() uint64 { return m.ignored.Load() }

// Dropped returns how many messages the transport dropped before the
// monitor read them, for transports that count them (the MQTT adapter's
// subscriptions do, when their queue is full).
func (m *Monitor) Dropped() uint64 {
	m.subsMu.Lock()
	defer m.subsMu.Unlock()
	var n uint64
	for _, s := range m.subs {
		if d, ok := s.(interface{ Dropped() uint64 }); ok {
			n += d.Dropped()
		}
	}
	return n
}

// MonitorStats returns the counters (c2.MonitorSource).
func (m *Monitor) MonitorStats() c2.MonitorStats {
	results := make(map[string]uint64, numResults)
	for r, n := range m.Counters() {
		results[r.String()] = n
	}
	return c2.MonitorStats{Since: m.start, Results: results, Ignored: m.Ignored(), Dropped: m.Dropped(),
		Topics: append([]string(nil), m.cfg.Filters...)}
}

// MonitorTop returns a top list (c2.MonitorSource): by "topic" or
// "sender"; result "" or "anomalies" (every result but valid), "all", or
// one result's name.
func (m *Monitor) MonitorTop(by, result string, limit int) ([]c2.MonitorTopEntry, error) {
	dim := byTopic
	switch by {
	case "", "topic":
	case "sender":
		dim = bySender
	default:
		return nil, fmt.Errorf("%w: top by %q: want topic or sender", c2.ErrInvalidArgument, by)
	}
	list := listAnomalies
	switch result {
	case "", "anomalies":
	case "all":
		list = listAll
	default:
		r, ok := ParseResult(result)
		if !ok {
			return nil, fmt.Errorf("%w: result %q: want anomalies, all or one of %v", c2.ErrInvalidArgument, result, resultNames)
		}
		list = int(r)
	}
	if limit <= 0 || limit > m.cfg.TopK {
		limit = m.cfg.TopK
	}
	entries := m.top.top(dim, list, limit)
	out := make([]c2.MonitorTopEntry, len(entries))
	for i, e := range entries {
		by := make(map[string]uint64)
		for r, n := range e.byResult {
			if n > 0 {
				by[Result(r).String()] = n
			}
		}
		out[i] = c2.MonitorTopEntry{Key: e.key, Count: e.count, Error: e.err, ByResult: by}
	}
	return out, nil
}

var (
	messagesDesc = prometheus.NewDesc("e4_monitor_messages_total",
		"Messages seen by the C2 monitor on the topics C2 manages, by result.", []string{"result"}, nil)
	ignoredDesc = prometheus.NewDesc("e4_monitor_ignored_total",
		"Messages the monitor did not check (control topics, topics C2 does not manage).", nil, nil)
	droppedDesc = prometheus.NewDesc("e4_monitor_dropped_total",
		"Messages the transport dropped before the monitor read them (full subscription queue).", nil, nil)
)

// collector exposes the monitor's counters to Prometheus.
type collector struct{ m *Monitor }

// Collector returns the monitor's Prometheus metrics: the counter
// e4_monitor_messages_total{result}, with a series for every result from
// the start, the histogram e4_monitor_clock_skew_seconds, and the
// counters e4_monitor_ignored_total and e4_monitor_dropped_total.
func (m *Monitor) Collector() prometheus.Collector { return collector{m} }

// Describe implements prometheus.Collector.
func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- messagesDesc
	ch <- ignoredDesc
	ch <- droppedDesc
	c.m.skew.Describe(ch)
}

// Collect implements prometheus.Collector.
func (c collector) Collect(ch chan<- prometheus.Metric) {
	for r := range numResults {
		ch <- prometheus.MustNewConstMetric(messagesDesc, prometheus.CounterValue, float64(c.m.counts[r].Load()), r.String())
	}
	ch <- prometheus.MustNewConstMetric(ignoredDesc, prometheus.CounterValue, float64(c.m.Ignored()))
	ch <- prometheus.MustNewConstMetric(droppedDesc, prometheus.CounterValue, float64(c.m.Dropped()))
	c.m.skew.Collect(ch)
}

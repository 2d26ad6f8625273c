package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/e4-iot/e4kit/c2"
)

// knownEvents are the event kinds counted under their own label value;
// any other counts as "other", so the label set stays bounded.
var knownEvents = []c2.EventKind{
	c2.EventClientAdded, c2.EventClientRemoved, c2.EventTopicAdded, c2.EventTopicRemoved,
	c2.EventMemberAdded, c2.EventMemberRemoved, c2.EventTopicRotated, c2.EventClientKeyNew,
	c2.EventC2KeyRotated, c2.EventPubKeyChanged, c2.EventCommandSent, c2.EventCommandFailed,
	c2.EventClientsImported, c2.EventCommandAcked, c2.EventClientStalled, c2.EventClientKeyConfirmed,
	c2.EventTopicConverged, c2.EventDevicesBehind, c2.EventDeviceSynced, c2.EventAckModeSet, c2.EventAnomaly,
}

// maxRotationsWatched bounds the rotations remembered until their topic
// converges (a topic that never converges is forgotten when the table is
// full, oldest first is not tracked: the table is simply cleared).
const maxRotationsWatched = 1 << 14

// Events counts the service's events by kind and measures how long a
// topic takes to converge after its key rotation. Observe is its
// c2.Config.OnEvent (chained with the event hub's).
type Events struct {
	total       *prometheus.CounterVec
	convergence prometheus.Histogram

	mu      sync.Mutex
	rotated map[string]time.Time // topic -> time of its last rotation
}

// NewEvents returns the event metrics; register them with Registry.Register.
func NewEvents() *Events {
	e := &Events{
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "c2", Name: "events_total",
			Help: "Events the C2 service emitted, by kind (the kinds of the event stream; other for any new kind).",
		}, []string{"kind"}),
		convergence: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: Namespace, Subsystem: "c2", Name: "topic_convergence_seconds",
			Help:    "Time from a topic key rotation by this C2 to every member acknowledging the new key.",
			Buckets: []float64{0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600},
		}),
		rotated: make(map[string]time.Time),
	}
	for _, k := range knownEvents {
		e.total.WithLabelValues(string(k)) // every kind shows from the start, at 0
	}
	return e
}

// Describe implements prometheus.Collector.
func (e *Events) Describe(ch chan<- *prometheus.Desc) {
	e.total.Describe(ch)
	e.convergence.Describe(ch)
}

// Collect implements prometheus.Collector.
func (e *Events) Collect(ch chan<- prometheus.Metric) {
	e.total.Collect(ch)
	e.convergence.Collect(ch)
}

// Observe records one event. It does not block.
func (e *Events) Observe(ev c2.Event) {
	e.total.WithLabelValues(eventLabel(ev.Kind)).Inc()
	switch ev.Kind {
	case c2.EventTopicRotated:
		e.mu.Lock()
		if len(e.rotated) >= maxRotationsWatched {
			clear(e.rotated)
		}
		e.rotated[ev.Topic] = ev.Time
		e.mu.Unlock()
	case c2.EventTopicConverged, c2.EventTopicRemoved:
		e.mu.Lock()
		at, ok := e.rotated[ev.Topic]
		delete(e.rotated, ev.Topic)
		e.mu.Unlock()
		if ok && ev.Kind == c2.EventTopicConverged && !ev.Time.Before(at) {
			e.convergence.Observe(ev.Time.Sub(at).Seconds())
		}
	}
}

func eventLabel(k c2.EventKind) string {
	for _, known := range knownEvents {
		if k == known {
			return string(k)
		}
	}
	return "other"
}

package metrics

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/transport"
)

// Broker measures C2's broker connection: publish latency and errors by
// kind of topic (command, health, other), the connection state, and its
// losses.
type Broker struct {
	duration  *prometheus.HistogramVec
	errors    *prometheus.CounterVec
	connected prometheus.Gauge
	losses    prometheus.Counter

	// instrumented is set once a transport is: without one (no broker)
	// there is no connection state to report, rather than a 0 that would
	// read as a lost connection.
	instrumented atomic.Bool

	mu        sync.Mutex
	listeners []func(transport.ConnectionEvent)
}

// NewBroker returns the broker metrics; register them with
// Registry.Register and wrap the transport with Instrument.
func NewBroker() *Broker {
	return &Broker{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Subsystem: "c2", Name: "publish_duration_seconds",
			Help:    "Time for the broker to acknowledge one of C2's publishes, by kind of topic: command (to a device), health (probe), other.",
			Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
		}, []string{"kind"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "c2", Name: "publish_errors_total",
			Help: "C2's publishes that failed (timeout, refusal, connection lost), by kind of topic.",
		}, []string{"kind"}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Subsystem: "c2", Name: "broker_connected",
			Help: "1 while C2 is connected to its broker, 0 while it is not (absent without a broker).",
		}),
		losses: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "c2", Name: "broker_connection_losses_total",
			Help: "Times C2 lost (or failed to make) its broker connection.",
		}),
	}
}

// Describe implements prometheus.Collector.
func (b *Broker) Describe(ch chan<- *prometheus.Desc) {
	b.duration.Describe(ch)
	b.errors.Describe(ch)
	b.connected.Describe(ch)
	b.losses.Describe(ch)
}

// Collect implements prometheus.Collector.
func (b *Broker) Collect(ch chan<- prometheus.Metric) {
	b.duration.Collect(ch)
	b.errors.Collect(ch)
	if b.instrumented.Load() {
		b.connected.Collect(ch)
	}
	b.losses.Collect(ch)
}

// OnConnection registers f to hear the connection events of the
// transports b instruments (after b recorded them). f follows the
// transport.ConnectionNotifier contract: it must return quickly.
func (b *Broker) OnConnection(f func(transport.ConnectionEvent)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.listeners = append(b.listeners, f)
}

// connectionChanged records ev and passes it on.
func (b *Broker) connectionChanged(ev transport.ConnectionEvent) {
	if ev.State == transport.Connected {
		b.connected.Set(1)
	} else {
		b.connected.Set(0)
		b.losses.Inc()
	}
	b.mu.Lock()
	listeners := b.listeners
	b.mu.Unlock()
	for _, f := range listeners {
		f(ev)
	}
}

// Instrument returns tr timed by b, and starts following its connection
// events when it reports them. The result is a ConnectionNotifier passing
// on tr's events (none if tr reports none).
func (b *Broker) Instrument(tr transport.Transport) transport.Transport {
	t := &timedTransport{Transport: tr, m: b}
	b.instrumented.Store(true)
	if n, ok := tr.(transport.ConnectionNotifier); ok {
		t.stop = n.NotifyConnection(b.connectionChanged)
	}
	return t
}

// publishKind is the label of a topic: C2 publishes commands on control
// topics and health probes on c2.HealthTopic.
func publishKind(topic string) string {
	switch {
	case topic == c2.HealthTopic:
		return "health"
	case strings.HasPrefix(topic, e4.ControlTopicPrefix):
		return "command"
	}
	return "other"
}

// timedTransport times the publishes of a transport.
type timedTransport struct {
	transport.Transport
	m    *Broker
	stop func()
}

func (t *timedTransport) Publish(ctx context.Context, topic string, payload []byte, opts ...transport.PublishOption) error {
	kind := publishKind(topic)
	start := time.Now()
	err := t.Transport.Publish(ctx, topic, payload, opts...)
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			t.m.errors.WithLabelValues(kind).Inc()
		}
		return err
	}
	t.m.duration.WithLabelValues(kind).Observe(time.Since(start).Seconds())
	return nil
}

// NotifyConnection implements transport.ConnectionNotifier.
func (t *timedTransport) NotifyConnection(f func(transport.ConnectionEvent)) (stop func()) {
	if n, ok := t.Transport.(transport.ConnectionNotifier); ok {
		return n.NotifyConnection(f)
	}
	return func() {}
}

// Close stops following the connection and closes the transport.
func (t *timedTransport) Close() error {
	if t.stop != nil {
		t.stop()
	}
	return t.Transport.Close()
}

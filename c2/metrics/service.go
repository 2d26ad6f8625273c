package metrics

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/e4-iot/e4kit/c2"
)

// ServiceCollector reads, at each scrape, what a C2 service already
// keeps: its dispatcher's counters, the outbox depth and the fleet's
// convergence counts from the database (counts over indexes).
type ServiceCollector struct {
	svc     *c2.Service
	timeout time.Duration

	outbox, inFlight, syncQueued                   *prometheus.Desc
	dispatched, repairs, acks, syncs, syncCommands *prometheus.Desc
	clients, acknowledging, stalled, keyChanges    *prometheus.Desc
	membershipsBehind, clientsBehind, stateUp      *prometheus.Desc
	stateDuration                                  *prometheus.Desc

	// mu serializes the database reads of concurrent scrapes, and last
	// is reused for stateReuse: a flood of scrapes (the metrics listener
	// needs no credentials) costs the database one read a second.
	mu   sync.Mutex
	last stateReading
}

// stateReuse is how long one reading of the database counts is reused.
const stateReuse = time.Second

// stateReading is one reading of the outbox and fleet counts.
type stateReading struct {
	at       time.Time
	fleet    c2.FleetState
	failed   int64
	err      error
	duration time.Duration
}

// NewServiceCollector returns a collector of svc; each scrape's database
// reads are bounded by timeout (5 s when zero).
func NewServiceCollector(svc *c2.Service, timeout time.Duration) *ServiceCollector {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "c2", name), help, labels, nil)
	}
	return &ServiceCollector{
		svc: svc, timeout: timeout,
		outbox:            d("outbox_commands", "Commands in the outbox by state: pending (waiting or being sent) and failed (given up).", "state"),
		inFlight:          d("dispatch_in_flight", "Commands being published now."),
		syncQueued:        d("sync_requests_queued", "Sync requests waiting to be answered."),
		dispatched:        d("dispatch_commands_total", "Publishes of outbox commands by result: sent (the broker acknowledged), retried (failed, tried again later), failed (given up), held (postponed: timestamp too far ahead).", "result"),
		repairs:           d("repair_commands_total", "SetTopicKey commands queued from the device state: repair (an acknowledging device still behind after await_ack), resend (resend_every schedule).", "reason"),
		acks:              d("acks_total", "Device acknowledgements by result: matched (to a command sent), unmatched (late, duplicate or forged).", "result"),
		syncs:             d("sync_requests_total", "Sync requests by result: received, dropped (queue full), handled, invalid (no key of the client opens it).", "result"),
		syncCommands:      d("sync_commands_total", "Commands queued in answer to sync requests."),
		clients:           d("clients", "Clients in the database."),
		acknowledging:     d("clients_acknowledging", "Clients by acknowledgement: yes (known or declared to acknowledge), no (declared not to), unknown (never heard from).", "acknowledges"),
		stalled:           d("clients_stalled", "Clients whose command queue is stuck (a command failed stall_after times in a row, or for good)."),
		keyChanges:        d("key_changes_pending", "Client-key changes the device has not confirmed yet."),
		membershipsBehind: d("memberships_behind", "Memberships whose device has not acknowledged the topic's current key version (devices that never acknowledge always count)."),
		clientsBehind:     d("clients_behind", "Clients behind on at least one topic key."),
		stateUp:           d("state_query_up", "1 when the last scrape read the outbox and fleet counts from the database, 0 when it failed."),
		stateDuration:     d("state_query_duration_seconds", "How long the last scrape's database reads took."),
	}
}

// Describe implements prometheus.Collector.
func (c *ServiceCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.outbox, c.inFlight, c.syncQueued, c.dispatched, c.repairs, c.acks, c.syncs,
		c.syncCommands, c.clients, c.acknowledging, c.stalled, c.keyChanges, c.membershipsBehind, c.clientsBehind,
		c.stateUp, c.stateDuration} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *ServiceCollector) Collect(ch chan<- prometheus.Metric) {
	c.collectDispatcher(ch)
	c.collectState(ch)
}

func (c *ServiceCollector) collectDispatcher(ch chan<- prometheus.Metric) {
	s := c.svc.Dispatcher().Stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(c.dispatched, s.Sent, "sent")
	counter(c.dispatched, s.Retried, "retried")
	counter(c.dispatched, s.Failed, "failed")
	counter(c.dispatched, s.Held, "held")
	counter(c.repairs, s.Repaired, "repair")
	counter(c.repairs, s.Resent, "resend")
	counter(c.acks, s.Acked, "matched")
	counter(c.acks, s.UnmatchedAcks, "unmatched")
	counter(c.syncs, s.CatchUp.Received, "received")
	counter(c.syncs, s.CatchUp.Dropped, "dropped")
	counter(c.syncs, s.CatchUp.Handled, "handled")
	counter(c.syncs, s.CatchUp.Invalid, "invalid")
	counter(c.syncCommands, s.CatchUp.Commands)
	ch <- prometheus.MustNewConstMetric(c.inFlight, prometheus.GaugeValue, float64(s.InFlight))
	ch <- prometheus.MustNewConstMetric(c.syncQueued, prometheus.GaugeValue, float64(s.CatchUp.Queued))
}

// collectState reports the outbox depth and fleet counts; on a database
// error it reports state_query_up 0 and leaves those gauges out rather
// than report stale or zero values.
func (c *ServiceCollector) collectState(ch chan<- prometheus.Metric) {
	r := c.reading()
	ch <- prometheus.MustNewConstMetric(c.stateDuration, prometheus.GaugeValue, r.duration.Seconds())
	if r.err != nil {
		ch <- prometheus.MustNewConstMetric(c.stateUp, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.stateUp, prometheus.GaugeValue, 1)
	gauge := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	fleet := r.fleet
	gauge(c.outbox, fleet.PendingCommands, string(c2.CommandPending))
	gauge(c.outbox, r.failed, string(c2.CommandFailed))
	gauge(c.clients, fleet.Clients)
	gauge(c.acknowledging, fleet.Acknowledging, "yes")
	gauge(c.acknowledging, fleet.NotAcknowledging, "no")
	gauge(c.acknowledging, fleet.Clients-fleet.Acknowledging-fleet.NotAcknowledging, "unknown")
	gauge(c.stalled, fleet.Stalled)
	gauge(c.keyChanges, fleet.KeyChangesPending)
	gauge(c.membershipsBehind, fleet.MembershipsBehind)
	gauge(c.clientsBehind, fleet.ClientsBehind)
}

// reading returns the counts read within stateReuse, or reads them.
func (c *ServiceCollector) reading() stateReading {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.last.at.IsZero() && time.Since(c.last.at) < stateReuse {
		return c.last
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	start := time.Now()
	r := stateReading{}
	r.fleet, r.err = c.svc.FleetState(ctx)
	if r.err == nil {
		r.failed, r.err = c.svc.CountCommands(ctx, c2.CommandFilter{State: c2.CommandFailed})
	}
	r.duration = time.Since(start)
	r.at = time.Now()
	c.last = r
	return r
}

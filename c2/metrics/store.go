package metrics

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/e4"
)

// Database measures the calls C2 makes to its store: latency and errors
// by operation (update, view, claim, mark_sent, ...).
type Database struct {
	duration *prometheus.HistogramVec
	errors   *prometheus.CounterVec
}

// NewDatabase returns the database metrics; register them with
// Registry.Register and wrap the store with Instrument.
func NewDatabase() *Database {
	return &Database{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Subsystem: "c2", Name: "db_operation_duration_seconds",
			Help:    "Latency of C2's database calls by operation (update and view are whole transactions).",
			Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5},
		}, []string{"op"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "c2", Name: "db_errors_total",
			Help: "C2's database calls that failed for another reason than the caller's (not found, lease lost, a cancelled context), by operation.",
		}, []string{"op"}),
	}
}

// Describe implements prometheus.Collector.
func (d *Database) Describe(ch chan<- *prometheus.Desc) {
	d.duration.Describe(ch)
	d.errors.Describe(ch)
}

// Collect implements prometheus.Collector.
func (d *Database) Collect(ch chan<- prometheus.Metric) {
	d.duration.Collect(ch)
	d.errors.Collect(ch)
}

// Instrument returns st timed by d. The result keeps the optional
// integrity check of st (SQLite) that C2's health uses.
func (d *Database) Instrument(st store.Store) store.Store {
	return &timedStore{Store: st, m: d}
}

// time records one call of op that started at start and returned err.
func (d *Database) time(op string, start time.Time, err error) {
	d.duration.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if err != nil && !expected(err) {
		d.errors.WithLabelValues(op).Inc()
	}
}

// expected reports errors that say nothing about the database's health.
func expected(err error) bool {
	return errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrLeaseLost) ||
		errors.Is(err, context.Canceled) || errors.Is(err, store.ErrExists)
}

// timedStore times the calls of a store.Store. Transactions are timed
// whole; the calls inside them are not.
type timedStore struct {
	store.Store
	m *Database
}

func (s *timedStore) Update(ctx context.Context, fn func(tx store.Tx) error) (err error) {
	defer func(start time.Time) { s.m.time("update", start, err) }(time.Now())
	return s.Store.Update(ctx, fn)
}

func (s *timedStore) View(ctx context.Context, fn func(tx store.Tx) error) (err error) {
	defer func(start time.Time) { s.m.time("view", start, err) }(time.Now())
	return s.Store.View(ctx, fn)
}

func (s *timedStore) ClaimCommands(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int) (cmds []store.Command, err error) {
	defer func(start time.Time) { s.m.time("claim", start, err) }(time.Now())
	return s.Store.ClaimCommands(ctx, owner, now, lease, limit)
}

func (s *timedStore) MarkSent(ctx context.Context, owner string, ids []store.CommandID, sentAt time.Time) (err error) {
	defer func(start time.Time) { s.m.time("mark_sent", start, err) }(time.Now())
	return s.Store.MarkSent(ctx, owner, ids, sentAt)
}

func (s *timedStore) Retry(ctx context.Context, owner string, id store.CommandID, next time.Time, reason string) (err error) {
	defer func(start time.Time) { s.m.time("retry", start, err) }(time.Now())
	return s.Store.Retry(ctx, owner, id, next, reason)
}

func (s *timedStore) Fail(ctx context.Context, owner string, id store.CommandID, reason string) (err error) {
	defer func(start time.Time) { s.m.time("fail", start, err) }(time.Now())
	return s.Store.Fail(ctx, owner, id, reason)
}

func (s *timedStore) Acknowledge(ctx context.Context, id store.CommandID, at time.Time, refusal string) (err error) {
	defer func(start time.Time) { s.m.time("acknowledge", start, err) }(time.Now())
	return s.Store.Acknowledge(ctx, id, at, refusal)
}

func (s *timedStore) ReserveTimestamps(ctx context.Context, clients []e4.ID, now time.Time, maxAhead time.Duration) (ts []int64, err error) {
	defer func(start time.Time) { s.m.time("reserve_timestamps", start, err) }(time.Now())
	return s.Store.ReserveTimestamps(ctx, clients, now, maxAhead)
}

func (s *timedStore) Postpone(ctx context.Context, owner string, id store.CommandID, next time.Time) (err error) {
	defer func(start time.Time) { s.m.time("postpone", start, err) }(time.Now())
	return s.Store.Postpone(ctx, owner, id, next)
}

func (s *timedStore) ClearStalled(ctx context.Context, clients []e4.ID) (err error) {
	defer func(start time.Time) { s.m.time("clear_stalled", start, err) }(time.Now())
	return s.Store.ClearStalled(ctx, clients)
}

func (s *timedStore) Ping(ctx context.Context) (err error) {
	defer func(start time.Time) { s.m.time("ping", start, err) }(time.Now())
	return s.Store.Ping(ctx)
}

// CheckIntegrity forwards the store's integrity check, if it has one.
func (s *timedStore) CheckIntegrity(ctx context.Context) (err error) {
	ic, ok := s.Store.(interface{ CheckIntegrity(context.Context) error })
	if !ok {
		return nil
	}
	defer func(start time.Time) { s.m.time("integrity_check", start, err) }(time.Now())
	return ic.CheckIntegrity(ctx)
}

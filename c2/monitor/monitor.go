// Package monitor watches the topics C2 manages and classifies every
// message seen on them: valid under the topic's current key, valid only
// under the key the last rotation replaced (a lagging device), a failed
// authentication, a replay, too old, dated in the future, not E4 at all, or
// signed by an unknown sender (public-key mode).
//
// The monitor subscribes through a transport.Transport, gets the topic keys
// and sender keys from the C2 service (c2.Service.MonitorTopicKeys and
// MonitorSigner), and keeps only counters: per result, per topic and per
// sender as bounded top-k lists, and a histogram of the senders' clock
// skew. It never stores a payload; a plaintext exists only in a reused
// buffer during the check, cleared after it. Anomalies go to the service's
// event stream (c2.Service.ReportAnomaly), coalesced so that a flood gives
// a bounded number of events.
//
// For the policies that rotate a topic after a message budget, the valid
// messages of each topic are counted per key version and reported to the
// service every second (c2.Service.CountMessages), which keeps the counts
// in the database.
package monitor

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/transport"
)

// Service is what the monitor needs of the C2 service; *c2.Service has it.
type Service interface {
	Mode() e4.Mode
	Suite() *e4.Suite
	MonitorTopicKeys(ctx context.Context, topic string) (c2.MonitorKeys, error)
	MonitorSigner(ctx context.Context, sender e4.ID) (ed25519.PublicKey, error)
	ReportAnomaly(client *e4.ID, topic, kind, detail string)
	// CountMessages adds the valid messages counted per topic and key
	// version (rotation by message budget).
	CountMessages(ctx context.Context, counts []c2.MessageCount) error
}

// Defaults of Config.
const (
	DefaultPlausibleSkew  = 30 * 24 * time.Hour
	DefaultReplayCapacity = 1 << 18
	DefaultTopK           = 100
	DefaultRefreshEvery   = 30 * time.Second
	DefaultEventInterval  = 10 * time.Second
	DefaultMaxEventKeys   = 256
	DefaultMaxTopics      = 1 << 16
	DefaultCountEvery     = time.Second
)

// Config configures a Monitor. Service and Transport are required.
type Config struct {
	Service   Service
	Transport transport.Transport
	// Filters are the subscription filters; nil means "#" (every topic).
	// Messages on topics C2 does not manage, and on the control topics
	// ("e4/..."), are counted as ignored and not checked.
	Filters []string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// MaxAge is the validity window (default e4.DefaultMaxAge, 10 minutes).
	MaxAge time.Duration
	// MaxFutureSkew is how far ahead of now a message may be dated and
	// still count as valid (default 0, as E4 v1 devices).
	MaxFutureSkew time.Duration
	// KeyTransition is how long after a rotation a message under the
	// replaced key counts as previous_key rather than auth_failed (default
	// e4.DefaultKeyTransition, 60 minutes, as devices).
	KeyTransition time.Duration
	// PlausibleSkew: a message that no key opens and whose timestamp is
	// further than this from now is counted as not_e4 rather than
	// auth_failed (default 30 days): plaintext and random bytes read as
	// timestamps centuries away.
	PlausibleSkew time.Duration
	// ReplayCapacity bounds the messages remembered for replay detection
	// (default 262144, about 10 MiB).
	ReplayCapacity int
	// TopK is the number of entries of each top list (default 100).
	TopK int
	// RefreshEvery is how long a topic's keys, or a sender's public key,
	// are used before they are read again (default 30 s). Notify makes it
	// immediate for the changes the service reports.
	RefreshEvery time.Duration
	// EventInterval is the least time between two anomaly events of the
	// same kind, topic and sender (default 10 s).
	EventInterval time.Duration
	// MaxEventKeys bounds the (kind, topic, sender) keys the event
	// coalescing tracks (default 256).
	MaxEventKeys int
	// MaxTopics bounds the topics (managed or not) whose state is cached
	// (default 65536).
	MaxTopics int
	// CountEvery is how often Run reports the valid messages counted per
	// topic and key version to the service (default 1 s), for the
	// policies that rotate a topic after a message budget.
	CountEvery time.Duration
	// Workers is the number of goroutines receiving from each subscription
	// (default GOMAXPROCS).
	Workers int
	// Logger receives the monitor's logs (never a key or a payload); nil
	// discards them.
	Logger *slog.Logger
}

func (cfg *Config) setDefaults() {
	if cfg.Filters == nil {
		cfg.Filters = []string{"#"}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.MaxAge, e4.DefaultMaxAge)
	def(&cfg.KeyTransition, e4.DefaultKeyTransition)
	def(&cfg.PlausibleSkew, DefaultPlausibleSkew)
	def(&cfg.RefreshEvery, DefaultRefreshEvery)
	def(&cfg.EventInterval, DefaultEventInterval)
	def(&cfg.CountEvery, DefaultCountEvery)
	defInt := func(n *int, v int) {
		if *n <= 0 {
			*n = v
		}
	}
	defInt(&cfg.ReplayCapacity, DefaultReplayCapacity)
	defInt(&cfg.TopK, DefaultTopK)
	defInt(&cfg.MaxEventKeys, DefaultMaxEventKeys)
	defInt(&cfg.MaxTopics, DefaultMaxTopics)
	defInt(&cfg.Workers, runtime.GOMAXPROCS(0))
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
}

// Monitor checks the messages on C2's topics. Its methods are safe for
// concurrent use.
type Monitor struct {
	cfg   Config
	svc   Service
	mode  e4.Mode
	suite *e4.Suite
	start time.Time

	keys    *keyCache
	signers *signerCache
	replay  *replaySet
	top     *topLists
	events  *reporter
	tally   *tally
	skew    prometheus.Histogram

	counts  [numResults]atomic.Uint64
	ignored atomic.Uint64

	subsMu sync.Mutex
	subs   []transport.Subscription
	ready  chan struct{}

	scratch sync.Pool // *scratch for Check

	afterCheck func(topic string, r Result, ignored bool) // tests only
}

// New returns a monitor; Run starts it.
func New(cfg Config) (*Monitor, error) {
	if cfg.Service == nil || cfg.Transport == nil {
		return nil, errors.New("monitor: Config.Service and Config.Transport are required")
	}
	cfg.setDefaults()
	for _, f := range cfg.Filters {
		if err := transport.ValidateFilter(f); err != nil {
			return nil, fmt.Errorf("monitor: %w", err)
		}
	}
	m := &Monitor{
		cfg: cfg, svc: cfg.Service, mode: cfg.Service.Mode(), suite: cfg.Service.Suite(),
		start:  cfg.Now(),
		replay: newReplaySet(cfg.ReplayCapacity),
		top:    newTopLists(cfg.TopK),
		events: newReporter(cfg.Service.ReportAnomaly, cfg.EventInterval, cfg.MaxEventKeys),
		tally:  newTally(cfg.MaxTopics),
		skew: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "e4_monitor_clock_skew_seconds",
			Help:    "Timestamp of each authentic message minus the monitor's clock, in seconds (positive: the sender's clock runs ahead; includes the transit time).",
			Buckets: []float64{-600, -300, -120, -60, -30, -10, -5, -2, -1, 0, 1, 2, 5, 10, 30, 60, 120, 300, 600},
		}),
		ready: make(chan struct{}),
	}
	var err error
	if m.keys, err = newKeyCache(m); err != nil {
		return nil, err
	}
	m.signers = newSignerCache(cfg.MaxTopics)
	m.scratch.New = func() any { return new(scratch) }
	return m, nil
}

// Ready is closed once every subscription of Run is live at the broker.
func (m *Monitor) Ready() <-chan struct{} { return m.ready }

// Run subscribes to the filters and checks every message until ctx ends;
// it returns nil then, or the first error of a subscription.
func (m *Monitor) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	subs := make([]transport.Subscription, 0, len(m.cfg.Filters))
	for _, f := range m.cfg.Filters {
		sub, err := m.cfg.Transport.Subscribe(ctx, f)
		if err != nil {
			unsubscribe(subs)
			return fmt.Errorf("monitor: subscribe %q: %w", f, err)
		}
		subs = append(subs, sub)
	}
	m.subsMu.Lock()
	m.subs = subs
	m.subsMu.Unlock()
	m.cfg.Logger.Info("monitor watching", "filters", strings.Join(m.cfg.Filters, ","))
	close(m.ready)

	errs := make(chan error, len(subs)*m.cfg.Workers+1)
	var wg sync.WaitGroup
	for _, sub := range subs {
		for range m.cfg.Workers {
			wg.Go(func() { errs <- m.receive(ctx, sub) })
		}
	}
	wg.Go(func() { m.flushEvents(ctx) })
	wg.Go(func() { m.reportCounts(ctx) })
	var first error
	select {
	case <-ctx.Done():
	case first = <-errs:
	}
	cancel()
	wg.Wait()
	unsubscribe(subs)
	m.finalCounts()
	if first != nil && ctx.Err() != nil && errors.Is(first, context.Canceled) {
		first = nil
	}
	return first
}

// unsubscribeTimeout bounds the unsubscription when the monitor stops, so
// that a broker that does not answer cannot hold the stop up.
const unsubscribeTimeout = 5 * time.Second

func unsubscribe(subs []transport.Subscription) {
	ctx, cancel := context.WithTimeout(context.Background(), unsubscribeTimeout)
	defer cancel()
	for _, s := range subs {
		_ = s.Unsubscribe(ctx)
	}
}

// receive checks the messages of one subscription until ctx ends.
func (m *Monitor) receive(ctx context.Context, sub transport.Subscription) error {
	sc := new(scratch)
	for {
		msg, err := sub.Receive(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		r, ignored := m.check(sc, msg.Topic, msg.Payload)
		clear(msg.Payload) // it may be a plaintext sent in clear
		if m.afterCheck != nil {
			m.afterCheck(msg.Topic, r, ignored)
		}
	}
}

// flushEvents reports the coalesced anomalies every interval.
func (m *Monitor) flushEvents(ctx context.Context) {
	every(ctx, m.cfg.EventInterval, func() { m.events.flush(m.cfg.Now()) })
}

// every calls fn every interval until ctx ends.
func every(ctx context.Context, interval time.Duration, fn func()) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			fn()
		}
	}
}

// Notify tells the monitor about a change the service made, so that it
// reads the keys of a rotated topic or a changed sender at once rather
// than after RefreshEvery: give it every c2.Event (for instance from
// c2.Config.OnEvent). It returns at once.
func (m *Monitor) Notify(e c2.Event) {
	switch e.Kind {
	case c2.EventTopicRotated, c2.EventTopicRemoved, c2.EventTopicAdded:
		m.keys.markStale(e.Topic)
	case c2.EventClientAdded, c2.EventClientRemoved, c2.EventPubKeyChanged, c2.EventClientKeyNew, c2.EventC2KeyRotated:
		if e.Client != nil {
			m.signers.forget(*e.Client)
		}
	}
}

// Check classifies one message received on topic, counts it and reports
// it if it is an anomaly, as Run does for every message. A message on a
// control topic or on a topic C2 does not manage is only counted as
// ignored: Check returns Valid and ignored true.
func (m *Monitor) Check(topic string, payload []byte) (r Result, ignored bool) {
	sc := m.scratch.Get().(*scratch)
	defer m.scratch.Put(sc)
	return m.check(sc, topic, payload)
}

// scratch holds the buffers of one worker: the plaintext goes into out and
// is cleared after every check.
type scratch struct {
	out []byte
	sk  []byte // a PK message rewritten in the SK layout
}

// verdict is the outcome of a check before it is counted.
type verdict struct {
	result Result
	sender *e4.ID // the sender id the message names (PK), if any
	detail string
	under  *topicState // a valid message: the keys it was counted under
}

func (m *Monitor) check(sc *scratch, topic string, payload []byte) (Result, bool) {
	if strings.HasPrefix(topic, "e4/") {
		m.ignored.Add(1)
		return Valid, true
	}
	now := m.cfg.Now()
	st := m.keys.lookup(topic, now)
	if st == nil {
		m.ignored.Add(1)
		return Valid, true
	}
	var v verdict
	if m.mode == e4.PubKey {
		v = m.checkPK(sc, st, payload, now)
	} else {
		v = m.checkSK(sc, st, payload, now)
	}
	m.count(topic, v, now)
	return v.result, false
}

// count records a verdict in the counters, the top lists and the events.
func (m *Monitor) count(topic string, v verdict, now time.Time) {
	m.counts[v.result].Add(1)
	sender := ""
	if v.sender != nil {
		sender = v.sender.String()
	}
	m.top.add(topic, sender, v.result)
	if v.result == Valid {
		if v.under != nil {
			m.tally.add(v.under)
		}
		return
	}
	key := reportKey{result: v.result, topic: topic}
	if v.sender != nil {
		key.sender, key.hasSender = *v.sender, true
	}
	m.events.add(key, v.detail, now)
}

// keyUsed says under which key of the topic a message opened.
type keyUsed int

const (
	keyNone keyUsed = iota
	keyCurrent
	keyPrevious
)

// checkSK classifies a symmetric-key message: timestamp (8) | SIV (16) |
// ciphertext.
func (m *Monitor) checkSK(sc *scratch, st *topicState, msg []byte, now time.Time) verdict {
	if len(msg) < e4.SKOverhead {
		return verdict{result: NotE4, detail: fmt.Sprintf("%d bytes, shorter than an E4 message", len(msg))}
	}
	used, st := m.open(sc, st, msg)
	if used == keyNone {
		return m.unauthentic(readTimestamp(msg), now, "no key of the topic opens it")
	}
	var noSender e4.ID
	return m.classifyAuthentic(st, used, readTimestamp(msg), &noSender, msg[e4.TimestampLen:e4.SKOverhead], now, nil)
}

// checkPK classifies a public-key message: timestamp (8) | sender id (16)
// | SIV (16) | ciphertext | signature (64).
func (m *Monitor) checkPK(sc *scratch, st *topicState, msg []byte, now time.Time) verdict {
	if len(msg) < e4.PKOverhead {
		return verdict{result: NotE4, detail: fmt.Sprintf("%d bytes, shorter than an E4 public-key message", len(msg))}
	}
	ts := readTimestamp(msg)
	sender := e4.ID(msg[e4.TimestampLen : e4.TimestampLen+e4.IDLen])
	pub, known := m.signers.lookup(m, sender)
	if !known {
		if !m.plausible(ts, now) {
			return verdict{result: NotE4, detail: "not an E4 message (implausible timestamp, unknown sender id)"}
		}
		return verdict{result: UnknownSigner, sender: &sender, detail: "sender " + sender.String() + " is no client C2 knows"}
	}
	signed := msg[:len(msg)-e4.SignatureLen]
	if !ed25519.Verify(pub, signed, msg[len(signed):]) {
		return verdict{result: AuthFailed, sender: &sender, detail: "bad signature of sender " + sender.String() + " (forged or altered)"}
	}
	// The SIV part in the SK layout, so the e4 client opens it.
	sc.sk = append(append(sc.sk[:0], msg[:e4.TimestampLen]...), signed[e4.TimestampLen+e4.IDLen:]...)
	used, st := m.open(sc, st, sc.sk)
	clear(sc.sk)
	if used == keyNone {
		return verdict{result: AuthFailed, sender: &sender, detail: "signed by " + sender.String() + " but under no key of the topic"}
	}
	siv := signed[e4.TimestampLen+e4.IDLen : e4.TimestampLen+e4.IDLen+e4.TagLen]
	return m.classifyAuthentic(st, used, ts, &sender, siv, now, &sender)
}

// open decrypts an SK-layout message under the topic's keys into the
// scratch buffer, clears the plaintext, and says which key opened it. When
// neither does and the keys were read more than a second ago, it reads
// them again (a rotation the monitor did not hear of) and tries once more.
func (m *Monitor) open(sc *scratch, st *topicState, msg []byte) (keyUsed, *topicState) {
	used := m.openWith(sc, st, msg)
	if used == keyNone {
		if fresh := m.keys.reloadAfterFailure(st); fresh != nil {
			return m.openWith(sc, fresh, msg), fresh
		}
	}
	return used, st
}

func (m *Monitor) openWith(sc *scratch, st *topicState, msg []byte) keyUsed {
	out, err := st.clients.current.Unprotect(sc.out[:0], msg, st.name)
	if err == nil {
		sc.out = out[:0]
		clear(out)
		return keyCurrent
	}
	if !st.hasPrevious || !errors.Is(err, e4.ErrAuthentication) {
		return keyNone
	}
	out, err = st.clients.previous.Unprotect(sc.out[:0], msg, st.name)
	if err != nil {
		return keyNone
	}
	sc.out = out[:0]
	clear(out)
	return keyPrevious
}

// unauthentic classifies a message no key opens: not E4 when its
// timestamp is implausible, a failed authentication otherwise.
func (m *Monitor) unauthentic(ts uint64, now time.Time, why string) verdict {
	if !m.plausible(ts, now) {
		return verdict{result: NotE4, detail: "not an E4 message (implausible timestamp, " + why + ")"}
	}
	return verdict{result: AuthFailed, detail: why}
}

// plausible reports whether ts is within PlausibleSkew of now.
func (m *Monitor) plausible(ts uint64, now time.Time) bool {
	if ts > math.MaxInt64 {
		return false
	}
	d := time.Duration(absDiff(int64(ts), now.Unix())) * time.Second
	return d <= m.cfg.PlausibleSkew && d >= 0
}

func absDiff(a, b int64) int64 {
	if a > b {
		return min(a-b, math.MaxInt64/int64(time.Second))
	}
	return min(b-a, math.MaxInt64/int64(time.Second))
}

// classifyAuthentic classifies a message that opened under one of the
// topic's keys, in the order a device checks: timestamp, key, replay.
func (m *Monitor) classifyAuthentic(st *topicState, used keyUsed, ts uint64, sender *e4.ID, siv []byte, now time.Time, attributed *e4.ID) verdict {
	nowSec := now.Unix()
	if ts > math.MaxInt64 {
		return verdict{result: TooOld, sender: attributed, detail: "timestamp with its top bit set"}
	}
	skew := int64(ts) - nowSec
	m.skew.Observe(float64(skew))
	if skew > int64(m.cfg.MaxFutureSkew/time.Second) {
		return verdict{result: Future, sender: attributed, detail: fmt.Sprintf("dated %ds ahead of C2's clock", skew)}
	}
	age := time.Duration(-skew)*time.Second + time.Duration(now.Nanosecond())
	if skew < 0 && age > m.cfg.MaxAge {
		return verdict{result: TooOld, sender: attributed, detail: fmt.Sprintf("dated %s ago", (time.Duration(-skew) * time.Second).String())}
	}
	result := Valid
	if used == keyPrevious {
		if !now.Before(st.rotatedAt.Add(m.cfg.KeyTransition)) {
			return verdict{result: AuthFailed, sender: attributed, detail: "under the previous key, after its transition window"}
		}
		result = PreviousKey
	}
	oldest := uint64(max(nowSec-int64(m.cfg.MaxAge/time.Second), 0))
	if m.replay.seenBefore(fingerprint(&st.hash, sender, siv), ts, oldest) {
		return verdict{result: Replay, sender: attributed, detail: "seen before"}
	}
	detail := ""
	if result == PreviousKey {
		detail = fmt.Sprintf("under key version %d, replaced at %s", st.version-1, st.rotatedAt.UTC().Format(time.RFC3339))
	}
	if result == Valid {
		return verdict{result: result, sender: attributed, under: st}
	}
	return verdict{result: result, sender: attributed, detail: detail}
}

func readTimestamp(b []byte) uint64 {
	_ = b[7]
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}

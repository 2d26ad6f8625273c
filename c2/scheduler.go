package c2

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/e4/command"
)

// AutomationConfig tunes the rotation scheduler that Run starts next to
// the dispatcher. Zero fields take the defaults given.
type AutomationConfig struct {
	// Disabled keeps Run from starting the scheduler (SchedulerTick still
	// works).
	Disabled bool
	// Tick is how often the scheduler looks for due keys (1s).
	Tick time.Duration
	// Budget is how many commands per second the automatic rotations of
	// every replica together may queue (1000). A rotation of a topic with
	// M members costs M commands (2M after a leave); one larger than a
	// second's budget waits for a full bucket and goes alone.
	Budget float64
	// Owner names this replica in leases and rotation records (random).
	Owner string
	// Lease is how long a replica holds a schedule row it claimed (1m).
	Lease time.Duration
	// Batch is how many schedule rows a tick claims at most (1000).
	Batch int
	// StuckAfter is how long after a rotation the devices behind it make
	// it stuck (1h).
	StuckAfter time.Duration
	// RetryAfter is the first delay before a failed rotation is tried
	// again (1m); it doubles with each failure up to 64 times.
	RetryAfter time.Duration
	// Rescan is how often the scheduler looks for clients added without a
	// schedule row while a client policy selecting by prefix or all exists
	// (1h).
	Rescan time.Duration
	// CoalesceLeaves, when set, delays the rotation that follows a
	// member's removal by up to this long, so that the removals within it
	// give one rotation; the removal and the pending rotation commit
	// together, so a crash loses neither. Zero rotates in the removal's
	// own transaction.
	CoalesceLeaves time.Duration
	// IdleAfter, when set, makes the scheduler report EventDeviceIdle for
	// the devices not heard from for this long (checked every Rescan; one
	// replica reports each device once per silence). Zero reports none.
	IdleAfter time.Duration
}

func (c AutomationConfig) withDefaults() AutomationConfig {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.Tick, time.Second)
	def(&c.Lease, time.Minute)
	def(&c.StuckAfter, time.Hour)
	def(&c.RetryAfter, time.Minute)
	def(&c.Rescan, time.Hour)
	if c.Budget <= 0 {
		c.Budget = 1000
	}
	if c.Batch <= 0 {
		c.Batch = 1000
	}
	if c.Owner == "" {
		var b [6]byte
		_, _ = rand.Read(b[:])
		c.Owner = "c2-" + hex.EncodeToString(b[:])
	}
	return c
}

// TickReport says what one scheduler tick did.
type TickReport struct {
	Claimed   int   // schedule rows leased
	Checked   int   // rows found not due, rescheduled from their key's age
	Rotated   int   // rotations fired
	Commands  int64 // commands they queued
	Deferred  int   // due rotations left for a later tick (budget, ramp)
	Failed    int   // rotations that failed (retried later)
	Settled   int   // earlier rotations found converged, stuck or superseded
	Paused    int   // policies paused for too many devices behind
	Triggered int   // event-rule and leave rotations scheduled
	Dropped   int   // rows dropped (target gone, no policy left)
}

// scheduler is the in-memory part of the automation: event-rule counters
// and cursors. Everything that decides a rotation is in the database.
type scheduler struct {
	cfg AutomationConfig

	mu        sync.Mutex
	rules     []store.Policy // event rules
	rulesAt   time.Time      // when rules was loaded; zero: reload
	counts    map[ruleHit][]time.Time
	triggers  map[string]trigger // topic -> rotation asked, to schedule
	lastScan  time.Time
	settleCur int64
	idleScan  time.Time // last look for idle devices
	idleMore  bool      // it found a full page: look again next tick
	c2Counted time.Time // last count of the devices behind C2's key
}

type ruleHit struct{ rule, topic string }

// trigger is a rotation an event rule asked for: its event ("rule:NAME")
// and the time of the first event it counted.
type trigger struct {
	event string
	since time.Time
}

func newScheduler(cfg AutomationConfig) *scheduler {
	return &scheduler{cfg: cfg.withDefaults(), counts: map[ruleHit][]time.Time{}, triggers: map[string]trigger{}}
}

// rulesChanged makes the next tick reload the event rules.
func (sc *scheduler) rulesChanged() {
	sc.mu.Lock()
	sc.rulesAt = time.Time{}
	sc.mu.Unlock()
}

// errors that end or skip a rotation without failing it.
var (
	errNoBudget = errors.New("c2: the rotation budget is spent")
	errRamp     = errors.New("c2: the policy's ramp allows no more rotations yet")
	errSkip     = errors.New("c2: the schedule row is no longer ours or no longer due")
	errNoPolicy = errors.New("c2: no running policy covers the target")
)

// settingBudget is the token bucket of the rotation budget every replica
// shares: "tokens unixmicro".
const settingBudget = "rotation-budget"

// RunScheduler runs the rotation scheduler until ctx ends.
func (s *Service) RunScheduler(ctx context.Context) error {
	t := time.NewTicker(s.sched.cfg.Tick)
	defer t.Stop()
	for {
		if _, err := s.SchedulerTick(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("rotation scheduler tick failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// SchedulerTick runs one round of the scheduler at the service's clock:
// it schedules the rotations event rules and leaves asked for, claims due
// schedule rows, fires the rotations that are due within the budget,
// reschedules the rest from their keys' ages, and settles the outcome of
// earlier rotations. Run calls it every AutomationConfig.Tick; tests call
// it with an injected clock.
func (s *Service) SchedulerTick(ctx context.Context) (TickReport, error) {
	var r TickReport
	now := s.now().UTC()
	if err := s.loadRules(ctx, now); err != nil {
		return r, err
	}
	if err := s.scanIdle(ctx, now); err != nil {
		return r, err
	}
	if err := s.flushTriggers(ctx, now, &r); err != nil {
		return r, err
	}
	if err := s.rescan(ctx, now); err != nil {
		return r, err
	}
	if idle, err := s.nothingDue(ctx, now); err != nil || idle {
		return r, errors.Join(err, s.settle(ctx, now, &r))
	}
	var claimed []store.Due
	err := s.st.Update(ctx, func(tx store.Tx) error {
		ptx, err := policyTx(tx)
		if err != nil {
			return err
		}
		claimed, err = ptx.ClaimDue(s.sched.cfg.Owner, now, s.sched.cfg.Lease, s.sched.cfg.Batch)
		return err
	})
	if err != nil {
		return r, err
	}
	r.Claimed = len(claimed)
	due, err := s.checkClaimed(ctx, claimed, now, &r)
	if err != nil {
		return r, err
	}
	if err := s.fireAll(ctx, due, now, &r); err != nil {
		return r, err
	}
	return r, s.settle(ctx, now, &r)
}

// nothingDue reports, in a read-only transaction, that no schedule row is
// due: the tick then takes no write lock.
func (s *Service) nothingDue(ctx context.Context, now time.Time) (bool, error) {
	var idle bool
	err := s.st.View(ctx, func(tx store.Tx) error {
		ptx, err := policyTx(tx)
		if err != nil {
			return err
		}
		rows, err := ptx.ListDue(now.Add(time.Microsecond), store.Due{}, 1)
		idle = len(rows) == 0
		return err
	})
	return idle, err
}

// firing is a claimed row found due, with why.
type firing struct {
	row    store.Due
	dueAt  time.Time
	policy string
	reason string
}

// checkClaimed reschedules, in one transaction, the claimed rows whose
// target is not due yet, drops those no policy covers any more, and
// returns the due ones.
func (s *Service) checkClaimed(ctx context.Context, claimed []store.Due, now time.Time, r *TickReport) ([]firing, error) {
	var due []firing
	var checked, dropped int
	err := s.st.Update(ctx, func(tx store.Tx) error {
		due, checked, dropped = nil, 0, 0
		ptx, err := policyTx(tx)
		if err != nil {
			return err
		}
		for _, row := range claimed {
			f, err := s.dueNow(tx, ptx, row, now)
			switch {
			case err == nil:
				due = append(due, f)
			case errors.Is(err, errSkip):
				checked++
			case errors.Is(err, errNoPolicy):
				dropped++
			default:
				return err
			}
		}
		return nil
	})
	r.Checked += checked
	r.Dropped += dropped
	return due, err
}

// dueNow decides a claimed row in tx: it returns the firing when its
// target is due at now, or reschedules the row (errSkip) or drops it
// (errNoPolicy). It runs again in the rotation's own transaction, so a
// rotation fires only when the key it replaces is still due: a target
// rotated in between (by another replica, an operator, a leave) is not
// rotated twice.
func (s *Service) dueNow(tx store.Tx, ptx store.PolicyTx, row store.Due, now time.Time) (firing, error) {
	cur, err := ptx.GetDue(row.Kind, row.Target)
	if errors.Is(err, store.ErrNotFound) {
		return firing{}, errSkip
	} else if err != nil {
		return firing{}, err
	}
	if cur.LeaseOwner != s.sched.cfg.Owner || !cur.LeaseUntil.After(now) {
		return firing{}, errSkip // another replica holds it now
	}
	st, err := s.targetState(tx, ptx, cur.Kind, cur.Target)
	if err != nil {
		return firing{}, err
	}
	if !st.exists {
		return firing{}, dropRow(ptx, cur)
	}
	if cur.Kind == store.TargetTopic && (cur.Event == "" || isBudgetEvent(cur.Event)) {
		if name, spent := budgetSpent(st.policies, cur.Target, st.messages); spent {
			return firing{row: cur, dueAt: cur.DueAt, policy: name, reason: reasonMessages}, nil
		}
	}
	if isBudgetEvent(cur.Event) {
		// Not spent any more: the topic rotated since (its count started
		// again), or the policy was removed or paused.
		cur.Event = ""
	}
	at, policy, reason, ok := nextDue(st.policies, cur.Target, st.name, st.keyTime)
	if cur.Event != "" {
		// A pending event (a leave) and a due period are served by one
		// rotation, made the event's way (after a leave the members drop
		// the old key at once).
		if !cur.DueAt.After(now) || (ok && !at.After(now)) {
			return firing{row: cur, dueAt: cur.DueAt, policy: eventPolicy(cur.Event), reason: cur.Event}, nil
		}
		if !ok || cur.DueAt.Before(at) {
			at, ok = cur.DueAt, true
		}
	}
	if !ok {
		return firing{}, dropRow(ptx, cur)
	}
	if at.After(now) {
		cur.DueAt, cur.LeaseOwner, cur.LeaseUntil, cur.Attempts, cur.LastError = at, "", time.Time{}, 0, ""
		if err := ptx.PutDue(cur); err != nil {
			return firing{}, err
		}
		return firing{}, errSkip
	}
	return firing{row: cur, dueAt: at, policy: policy, reason: reason}, nil
}

// dropRow deletes the schedule row of a target gone or no longer covered.
func dropRow(ptx store.PolicyTx, row store.Due) error {
	if err := ptx.DeleteDue(row.Kind, row.Target); err != nil {
		return err
	}
	return errNoPolicy
}

// eventPolicy is the policy an event names ("rule:NAME"), or "" for a
// leave.
func eventPolicy(event string) string {
	name, ok := strings.CutPrefix(event, "rule:")
	if !ok {
		return ""
	}
	return name
}

// fireAll fires the due rotations in order until the budget is spent;
// those left are released for a later tick.
func (s *Service) fireAll(ctx context.Context, due []firing, now time.Time, r *TickReport) error {
	var left []store.Due
	for i, f := range due {
		n, err := s.fire(ctx, f, now)
		switch {
		case err == nil:
			r.Rotated++
			r.Commands += n
		case errors.Is(err, errSkip):
			r.Checked++
		case errors.Is(err, errRamp):
			r.Deferred++
			left = append(left, f.row)
		case errors.Is(err, errNoBudget):
			r.Deferred += len(due) - i
			for _, g := range due[i:] {
				left = append(left, g.row)
			}
			return s.release(ctx, left)
		case ctx.Err() != nil:
			return ctx.Err()
		default:
			r.Failed++
			if err := s.recordFailure(ctx, f, now, err); err != nil {
				return err
			}
		}
	}
	return s.release(ctx, left)
}

// release gives back the leases of rows left for later, keeping their due
// times, so that any replica takes them at the next tick.
func (s *Service) release(ctx context.Context, rows []store.Due) error {
	if len(rows) == 0 {
		return nil
	}
	return s.st.Update(ctx, func(tx store.Tx) error {
		ptx, err := policyTx(tx)
		if err != nil {
			return err
		}
		for _, row := range rows {
			cur, err := ptx.GetDue(row.Kind, row.Target)
			if errors.Is(err, store.ErrNotFound) {
				continue
			} else if err != nil {
				return err
			}
			if cur.LeaseOwner != s.sched.cfg.Owner {
				continue
			}
			cur.LeaseOwner, cur.LeaseUntil = "", time.Time{}
			if err := ptx.PutDue(cur); err != nil {
				return err
			}
		}
		return nil
	})
}

// fire rotates one target in one transaction with its bookkeeping: the
// due-ness check again, the ramp and the budget, the rotation, its record,
// and the target's next due time. It returns the commands queued.
func (s *Service) fire(ctx context.Context, f firing, now time.Time) (int64, error) {
	if f.row.Kind == store.TargetC2 {
		return s.fireC2(ctx, f, now)
	}
	var n int64
	err := s.update(ctx, func(tx store.Tx, ev *events) error {
		ptx, err := policyTx(tx)
		if err != nil {
			return err
		}
		g, err := s.dueNow(tx, ptx, f.row, now)
		if err != nil {
			return err
		}
		cost, err := s.rotationCost(tx, g)
		if err != nil {
			return err
		}
		if err := s.admit(tx, ptx, g, cost, now); err != nil {
			return err
		}
		var version uint64
		switch g.row.Kind {
		case store.TargetTopic:
			var queued int
			queued, err = s.rotateTopic(tx, ev, g.row.Target, g.reason == eventLeave)
			n = int64(queued)
			version, err = topicVersion(tx, g.row.Target, err)
		case store.TargetClient:
			n, err = 1, s.rotateClientKey(tx, ev, g.row.Target)
		}
		if err != nil {
			return err
		}
		return s.recordRotation(tx, ptx, g, now, version, n)
	})
	return n, err
}

func topicVersion(tx store.Tx, name string, err error) (uint64, error) {
	if err != nil {
		return 0, err
	}
	t, err := tx.GetTopic(name)
	return t.KeyVersion, err
}

// fireC2 rotates C2's key pair: RotateC2Key holds the key pair's lock
// around its transaction, so the checks run inside it as a guard.
func (s *Service) fireC2(ctx context.Context, f firing, now time.Time) (int64, error) {
	var n int64
	_, err := s.rotateC2Key(ctx, func(tx store.Tx) error {
		ptx, err := policyTx(tx)
		if err != nil {
			return err
		}
		g, err := s.dueNow(tx, ptx, f.row, now)
		if err != nil {
			return err
		}
		if n, err = tx.CountClients(); err != nil {
			return err
		}
		if err := s.admit(tx, ptx, g, n, now); err != nil {
			return err
		}
		return s.recordRotation(tx, ptx, g, s.now().UTC(), 0, n)
	})
	return n, err
}

// rotationCost is how many commands a rotation will queue.
func (s *Service) rotationCost(tx store.Tx, f firing) (int64, error) {
	if f.row.Kind != store.TargetTopic {
		return 1, nil
	}
	n, err := tx.CountClientsOfTopic(f.row.Target)
	if f.reason == eventLeave {
		n *= 2
	}
	return n, err
}

// admit applies the policy's ramp and takes cost from the global budget.
func (s *Service) admit(tx store.Tx, ptx store.PolicyTx, f firing, cost int64, now time.Time) error {
	if f.policy != "" {
		p, err := ptx.GetPolicy(f.policy)
		if err == nil && p.Ramp > 0 {
			if err := rampAllows(ptx, p, now); err != nil {
				return err
			}
		} else if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	return s.takeBudget(tx, float64(cost), now)
}

// rampAllows lets a policy fire Ramp rotations in its first minute after
// StartedAt, twice as many each minute after.
func rampAllows(ptx store.PolicyTx, p store.Policy, now time.Time) error {
	minutes := int(now.Sub(p.StartedAt) / time.Minute)
	if minutes >= 40 {
		return nil
	}
	allowed := p.Ramp << minutes
	n, err := ptx.CountRotations(store.RotationFilter{Policy: p.Name, FiredSince: now.Add(-time.Minute)})
	if err != nil {
		return err
	}
	if n >= allowed {
		return errRamp
	}
	return nil
}

// takeBudget takes cost commands from the token bucket every replica
// shares (a setting, so its transaction orders the replicas). A rotation
// larger than the bucket goes when the bucket is full, leaving it
// negative: the rate over time stays within the budget.
func (s *Service) takeBudget(tx store.Tx, cost float64, now time.Time) error {
	rate := s.sched.cfg.Budget
	capacity := max(rate, 1)
	tokens, last := capacity, now
	if v, err := tx.GetSetting(settingBudget); err == nil {
		tokens, last = parseBucket(string(v), capacity, now)
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if now.After(last) {
		tokens = min(capacity, tokens+rate*now.Sub(last).Seconds())
		last = now
	}
	if tokens < cost && tokens < capacity {
		return errNoBudget
	}
	tokens -= cost
	return tx.PutSetting(settingBudget, []byte(strconv.FormatFloat(tokens, 'g', -1, 64)+" "+strconv.FormatInt(last.UnixMicro(), 10)))
}

// parseBucket reads "tokens unixmicro"; damage gives a full bucket.
func parseBucket(v string, capacity float64, now time.Time) (float64, time.Time) {
	a, b, ok := strings.Cut(v, " ")
	tokens, err1 := strconv.ParseFloat(a, 64)
	micros, err2 := strconv.ParseInt(b, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		return capacity, now
	}
	return min(tokens, capacity), time.UnixMicro(micros).UTC()
}

// recordRotation records a fired rotation and the target's next due time.
func (s *Service) recordRotation(tx store.Tx, ptx store.PolicyTx, f firing, now time.Time, version uint64, n int64) error {
	_, err := ptx.InsertRotation(store.Rotation{
		Kind: f.row.Kind, Target: f.row.Target, Policy: f.policy, Reason: f.reason,
		DueAt: f.dueAt, FiredAt: now, Version: version, Commands: n,
		State: store.RotationStarted, Owner: s.sched.cfg.Owner,
	})
	if err != nil {
		return err
	}
	st, err := s.targetState(tx, ptx, f.row.Kind, f.row.Target)
	if err != nil {
		return err
	}
	keyTime := s.now().UTC()
	if f.row.Kind == store.TargetTopic {
		keyTime = st.keyTime
	}
	next, _, _, ok := nextDue(st.policies, f.row.Target, st.name, keyTime)
	if !ok {
		return ptx.DeleteDue(f.row.Kind, f.row.Target)
	}
	return ptx.PutDue(store.Due{Kind: f.row.Kind, Target: f.row.Target, DueAt: next})
}

// recordFailure records a failed rotation and makes its row due again
// after a delay that doubles with each failure.
func (s *Service) recordFailure(ctx context.Context, f firing, now time.Time, cause error) error {
	s.log.Warn("automatic rotation failed", "kind", f.row.Kind, "target", f.row.Target, "err", cause)
	return s.st.Update(ctx, func(tx store.Tx) error {
		ptx, err := policyTx(tx)
		if err != nil {
			return err
		}
		cur, err := ptx.GetDue(f.row.Kind, f.row.Target)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		} else if err != nil {
			return err
		}
		if cur.LeaseOwner != s.sched.cfg.Owner {
			return nil
		}
		cur.Attempts++
		cur.DueAt = now.Add(s.sched.cfg.RetryAfter << min(cur.Attempts-1, 6))
		cur.LastError, cur.LeaseOwner, cur.LeaseUntil = cause.Error(), "", time.Time{}
		if err := ptx.PutDue(cur); err != nil {
			return err
		}
		_, err = ptx.InsertRotation(store.Rotation{
			Kind: f.row.Kind, Target: f.row.Target, Policy: f.policy, Reason: f.reason,
			DueAt: f.dueAt, FiredAt: now, State: store.RotationFailed, Detail: cause.Error(),
			SettledAt: now, Owner: s.sched.cfg.Owner,
		})
		return err
	})
}

// rotateClientKey gives a client a new key by policy (SK mode), like
// NewClientKey.
func (s *Service) rotateClientKey(tx store.Tx, ev *events, target string) error {
	id, err := parseHexID(target)
	if err != nil {
		return err
	}
	key, err := newSymmetricKey()
	if err != nil {
		return err
	}
	cmd, err := command.NewSetIDKey(key)
	if err != nil {
		return err
	}
	return s.newClientKeyTx(tx, ev, id, key, cmd)
}

// rescan schedules the clients without a schedule row (added or imported
// after a client policy), every Rescan, when a client policy exists.
// Topics need none: a topic added while a topic policy exists is scheduled
// in the transaction that adds it, and one added earlier by the policy.
func (s *Service) rescan(ctx context.Context, now time.Time) error {
	s.sched.mu.Lock()
	due := s.sched.lastScan.IsZero() || now.Sub(s.sched.lastScan) >= s.sched.cfg.Rescan
	s.sched.mu.Unlock()
	if !due {
		return nil
	}
	// Exact client policies scheduled their client when added; without a
	// prefix or all one, the rescan takes no write lock.
	var needed bool
	err := s.st.View(ctx, func(tx store.Tx) error {
		ptx, err := policyTx(tx)
		if err != nil {
			return err
		}
		list, err := ptx.PoliciesFor(store.TargetClient, "")
		needed = len(list) > 0
		return err
	})
	if err == nil && needed {
		err = s.st.Update(ctx, func(tx store.Tx) error {
			ptx, err := policyTx(tx)
			if err != nil {
				return err
			}
			_, err = ptx.ScheduleClients(now, true)
			return err
		})
	}
	if err == nil {
		s.sched.mu.Lock()
		s.sched.lastScan = now
		s.sched.mu.Unlock()
	}
	return err
}

// scheduleNewTopic makes a new topic due for a check when a topic policy
// exists, in the transaction that adds it.
func scheduleNewTopic(tx store.Tx, name string, now time.Time) error {
	ptx, ok := tx.(store.PolicyTx)
	if !ok {
		return nil
	}
	has, err := ptx.HasPolicies(store.TargetTopic)
	if err != nil || !has {
		return err
	}
	return ptx.PutDue(store.Due{Kind: store.TargetTopic, Target: name, DueAt: now})
}

// deferLeaveRotation records, in the removal's transaction, the rotation
// a leave calls for, coalesced with the other leaves of the window.
func (s *Service) deferLeaveRotation(tx store.Tx, topic string) error {
	ptx, err := policyTx(tx)
	if err != nil {
		return err
	}
	return ptx.MergeEvent(store.TargetTopic, topic, eventLeave, s.now().UTC().Add(s.cfg.Automation.CoalesceLeaves))
}

// settle looks at started rotations: converged when every acknowledging
// member holds the new key, superseded when a newer key replaced it, stuck
// with the devices behind after StuckAfter. A policy whose stuck rotations
// leave PauseBehind devices behind is paused.
func (s *Service) settle(ctx context.Context, now time.Time, r *TickReport) error {
	const page = 200
	s.sched.mu.Lock()
	after := s.sched.settleCur
	s.sched.mu.Unlock()
	var list []store.Rotation
	err := s.st.View(ctx, func(tx store.Tx) error {
		ptx, err := policyTx(tx)
		if err != nil {
			return err
		}
		list, err = ptx.ListRotations(store.RotationFilter{State: store.RotationStarted}, after, page)
		return err
	})
	if err != nil {
		return err
	}
	next := int64(0)
	if len(list) == page {
		next = list[len(list)-1].ID
	}
	s.sched.mu.Lock()
	s.sched.settleCur = next
	s.sched.mu.Unlock()
	stuckPolicies := map[string]bool{}
	for _, rec := range list {
		state, behind, detail, err := s.outcome(ctx, rec, now)
		if err != nil {
			return err
		}
		if state == store.RotationStarted {
			continue
		}
		err = s.st.Update(ctx, func(tx store.Tx) error {
			ptx, err := policyTx(tx)
			if err != nil {
				return err
			}
			return ptx.SettleRotation(rec.ID, state, behind, detail, now)
		})
		if errors.Is(err, store.ErrNotFound) {
			continue // another replica settled it (and reported it)
		} else if err != nil {
			return err
		}
		r.Settled++
		if state != store.RotationStuck {
			continue
		}
		s.emit(Event{Kind: EventRotationStuck, Topic: rotationTopic(rec), Detail: detail})
		if rec.Policy != "" {
			stuckPolicies[rec.Policy] = true
		}
	}
	for name := range stuckPolicies {
		paused, err := s.pauseIfBehind(ctx, name)
		if err != nil {
			return err
		}
		if paused {
			r.Paused++
		}
	}
	return nil
}

func rotationTopic(rec store.Rotation) string {
	if rec.Kind == store.TargetTopic {
		return rec.Target
	}
	return ""
}

// outcome says where a started rotation is now.
func (s *Service) outcome(ctx context.Context, rec store.Rotation, now time.Time) (state store.RotationState, behind int64, detail string, err error) {
	late := now.Sub(rec.FiredAt) >= s.sched.cfg.StuckAfter
	state = store.RotationStarted
	err = s.st.View(ctx, func(tx store.Tx) error {
		switch rec.Kind {
		case store.TargetTopic:
			t, err := tx.GetTopic(rec.Target)
			if errors.Is(err, store.ErrNotFound) {
				state, detail = store.RotationSuperseded, "topic removed"
				return nil
			} else if err != nil {
				return err
			}
			if t.KeyVersion != rec.Version {
				state, detail = store.RotationSuperseded, fmt.Sprintf("version %d replaced it", t.KeyVersion)
				return nil
			}
			c, err := tx.TopicCounts(rec.Target)
			if err != nil {
				return err
			}
			unknown := c.Members - c.Current - c.BehindAcknowledging
			detail = fmt.Sprintf("%d of %d members acknowledged; %d behind; %d do not acknowledge", c.Current, c.Members, c.BehindAcknowledging, unknown)
			switch {
			case c.BehindAcknowledging == 0:
				state = store.RotationConverged
			case late:
				state, behind = store.RotationStuck, c.BehindAcknowledging
			}
		case store.TargetClient:
			id, err := parseHexID(rec.Target)
			if err != nil {
				return err
			}
			ds, err := tx.GetDeviceState(id)
			if errors.Is(err, store.ErrNotFound) {
				state, detail = store.RotationSuperseded, "client removed"
				return nil
			} else if err != nil {
				return err
			}
			switch {
			case ds.PrevSealedKey == nil:
				state, detail = store.RotationConverged, "the device holds its new key"
			case late:
				state, behind, detail = store.RotationStuck, 1, "the device has not confirmed its new key"
			}
		case store.TargetC2:
			var err error
			state, behind, detail, err = s.c2Outcome(tx, rec, now, late)
			return err
		}
		return nil
	})
	return state, behind, detail, err
}

// c2Outcome says where a rotation of C2's key pair is: superseded by a
// later one, else counted against the public key stored now (the one it
// made) over the clients that existed when it fired, like a topic's
// members against its key.
func (s *Service) c2Outcome(tx store.Tx, rec store.Rotation, now time.Time, late bool) (store.RotationState, int64, string, error) {
	ptx, err := policyTx(tx)
	if err != nil {
		return "", 0, "", err
	}
	newer, err := newerC2Rotation(ptx, rec.ID)
	if err != nil || newer {
		return store.RotationSuperseded, 0, "a newer C2 key pair replaced it", err
	}
	// The count reads every client: at most once per c2SettleEvery, and
	// when the rotation is late.
	sc := s.sched
	sc.mu.Lock()
	recent := !late && !sc.c2Counted.IsZero() && now.Sub(sc.c2Counted) < c2SettleEvery && !now.Before(sc.c2Counted)
	if !recent {
		sc.c2Counted = now
	}
	sc.mu.Unlock()
	if recent {
		return store.RotationStarted, 0, "", nil
	}
	private, err := s.openSetting(tx, settingC2Key)
	if err != nil {
		return "", 0, "", err
	}
	public, err := x25519Public(private)
	if err != nil {
		return "", 0, "", err
	}
	c, err := ptx.C2KeyCounts(public, rec.FiredAt)
	if err != nil {
		return "", 0, "", err
	}
	unknown := c.Clients - c.Current - c.BehindAcknowledging
	detail := fmt.Sprintf("%d of %d clients acknowledged C2's public key; %d behind; %d do not acknowledge", c.Current, c.Clients, c.BehindAcknowledging, unknown)
	switch {
	case c.BehindAcknowledging == 0:
		return store.RotationConverged, 0, detail, nil
	case late:
		return store.RotationStuck, c.BehindAcknowledging, detail, nil
	}
	return store.RotationStarted, 0, detail, nil
}

// c2SettleEvery bounds how often a replica counts the devices behind a
// started C2 key pair rotation.
const c2SettleEvery = time.Minute

// newerC2Rotation reports whether a rotation of C2's key pair recorded
// after the one of id made a key (one that failed did not).
func newerC2Rotation(ptx store.PolicyTx, id int64) (bool, error) {
	for {
		list, err := ptx.ListRotations(store.RotationFilter{Kind: store.TargetC2}, id, MaxLimit)
		if err != nil {
			return false, err
		}
		for _, r := range list {
			if r.State != store.RotationFailed {
				return true, nil
			}
		}
		if len(list) < MaxLimit {
			return false, nil
		}
		id = list[len(list)-1].ID
	}
}

// pauseIfBehind pauses a policy whose stuck rotations since it started
// leave at least PauseBehind devices behind.
func (s *Service) pauseIfBehind(ctx context.Context, name string) (bool, error) {
	var paused bool
	err := s.update(ctx, func(tx store.Tx, ev *events) error {
		paused = false
		ptx, err := policyTx(tx)
		if err != nil {
			return err
		}
		p, err := ptx.GetPolicy(name)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		} else if err != nil {
			return err
		}
		if p.PauseBehind <= 0 || p.PausedReason != "" {
			return nil
		}
		sum, err := ptx.SumBehind(store.RotationFilter{Policy: name, State: store.RotationStuck, FiredSince: p.StartedAt})
		if err != nil || sum < p.PauseBehind {
			return err
		}
		p.PausedReason = fmt.Sprintf("paused by the scheduler: %d devices behind its rotations (limit %d)", sum, p.PauseBehind)
		ev.add(EventPolicyPaused, nil, "", name+": "+p.PausedReason)
		paused = true
		return ptx.PutPolicy(p)
	})
	if paused {
		s.sched.rulesChanged()
	}
	return paused, err
}

package c2

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/transport"
)

// c2Target is the schedule key of C2's key pair.
const c2ScheduleTarget = "c2"

// eventLeave is the schedule event of a coalesced membership leave: the
// rotation also makes the members drop the old key at once.
const eventLeave = string(EventMemberRemoved)

// policyTx returns tx's automation part.
func policyTx(tx store.Tx) (store.PolicyTx, error) {
	p, ok := tx.(store.PolicyTx)
	if !ok {
		return nil, fmt.Errorf("c2: the store (%T) does not keep rotation policies", tx)
	}
	return p, nil
}

// checkPolicy refuses a policy the scheduler could not follow.
func (s *Service) checkPolicy(p Policy) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: policy %q: %s", ErrInvalidArgument, p.Name, fmt.Sprintf(format, args...))
	}
	if err := checkName("policy name", p.Name); err != nil {
		return err
	}
	triggers := 0
	for _, set := range []bool{p.Period > 0, p.MaxAge > 0, p.OnEvent != "", p.MaxMessages > 0} {
		if set {
			triggers++
		}
	}
	if p.Period < 0 || p.MaxAge < 0 || p.Jitter < 0 || p.Window < 0 || p.Threshold < 0 || p.Ramp < 0 || p.PauseBehind < 0 || p.MaxMessages < 0 {
		return bad("durations and counts cannot be negative")
	}
	if triggers != 1 {
		return bad("give exactly one of a period, a maximum key age, an event or a message budget")
	}
	if p.MaxMessages > 0 && (p.Kind != TargetTopic || p.Jitter != 0) {
		return bad("a message budget rotates topic keys (the monitor counts the messages on topics) and takes no jitter")
	}
	if span := max(p.Period, p.MaxAge); span > 0 && (span < time.Second || p.Jitter*2 > span) {
		return bad("the period or age must be at least 1s and the jitter at most half of it")
	}
	if p.OnEvent != "" && (p.Threshold < 1 || (p.Threshold > 1 && p.Window <= 0)) {
		return bad("an event rule needs a threshold of at least 1 and, above 1, a window")
	}
	switch p.Kind {
	case TargetTopic:
		return checkTopicSelector(p, bad)
	case TargetClient:
		if s.cfg.Mode != e4.SymKey {
			return bad("client keys rotate by policy in symmetric-key mode only (in public-key mode the device makes its key pair)")
		}
		if p.OnEvent != "" || p.Selector == SelectFilter {
			return bad("client policies select by all, exact name or id, or name prefix, and run on time")
		}
	case TargetC2:
		if s.cfg.Mode != e4.PubKey {
			return bad("C2 has a key pair only in public-key mode")
		}
		if p.OnEvent != "" || p.Selector != SelectAll {
			return bad("the C2 key pair policy selects all and runs on time")
		}
	default:
		return bad("unknown kind %q (topic, client or c2)", p.Kind)
	}
	return nil
}

func checkTopicSelector(p Policy, bad func(string, ...any) error) error {
	switch p.Selector {
	case SelectAll:
		return nil
	case SelectExact:
		if err := checkTopic(p.Pattern); err != nil {
			return err
		}
	case SelectPrefix:
		if p.Pattern == "" {
			return bad("an empty prefix: use the selector all")
		}
	case SelectFilter:
		if err := transport.ValidateFilter(p.Pattern); err != nil {
			return bad("%v", err)
		}
	default:
		return bad("unknown selector %q (all, exact, prefix, filter)", p.Selector)
	}
	return nil
}

// AddPolicy records a new rotation policy and schedules the keys it
// covers. Its first rotations spread over one period (or maximum age)
// after now, at each target's phase: an old key does not make every
// target due at once.
func (s *Service) AddPolicy(ctx context.Context, p Policy) (Policy, error) {
	if err := s.checkPolicy(p); err != nil {
		return Policy{}, err
	}
	now := s.now().UTC()
	p.CreatedAt, p.StartedAt, p.PausedReason = now, now, ""
	sp := p.toStore()
	err := s.update(ctx, func(tx store.Tx, _ *events) error {
		ptx, err := policyTx(tx)
		if err != nil {
			return err
		}
		if _, err := ptx.GetPolicy(p.Name); err == nil {
			return fmt.Errorf("%w: policy %q", ErrExists, p.Name)
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if err := ptx.PutPolicy(sp); err != nil {
			return err
		}
		return schedulePolicy(tx, ptx, sp, now)
	})
	if err == nil {
		s.sched.rulesChanged()
		if p.MaxMessages > 0 {
			if _, err := s.monitorSource(); err != nil {
				s.log.Warn("a message-budget policy was added but this C2 runs no monitor (e4 c2 serve --monitor): it counts no message",
					"policy", p.Name)
			}
		}
	}
	return p, err
}

// schedulePolicy makes every target p may select due for a check at now
// (the check computes its real due time).
func schedulePolicy(tx store.Tx, ptx store.PolicyTx, p store.Policy, now time.Time) error {
	if p.OnEvent != "" {
		return nil // its events schedule its rotations
	}
	// A budget policy's rotations are scheduled by the monitor's counts;
	// its topics are checked here too, so that a count already over the
	// budget (reached while the policy was paused, or under another
	// budget policy's count) fires now instead of at the next count.
	switch p.Kind {
	case store.TargetTopic:
		switch p.Selector {
		case store.SelectExact:
			if _, err := tx.GetTopic(p.Pattern); errors.Is(err, store.ErrNotFound) {
				return nil // scheduled when it is added
			} else if err != nil {
				return err
			}
			return ptx.PutDue(store.Due{Kind: store.TargetTopic, Target: p.Pattern, DueAt: now})
		case store.SelectPrefix:
			_, err := ptx.ScheduleTopics(p.Pattern, now, false)
			return err
		case store.SelectFilter:
			_, err := ptx.ScheduleTopics(filterPrefix(p.Pattern), now, false)
			return err
		}
		_, err := ptx.ScheduleTopics("", now, false)
		return err
	case store.TargetClient:
		if p.Selector == store.SelectExact {
			return scheduleExactClient(tx, ptx, p.Pattern, now)
		}
		_, err := ptx.ScheduleClients(now, false)
		return err
	}
	return ptx.PutDue(store.Due{Kind: store.TargetC2, Target: c2ScheduleTarget, DueAt: now})
}

// scheduleExactClient schedules the client an exact policy names (its id
// in hex, or its name).
func scheduleExactClient(tx store.Tx, ptx store.PolicyTx, pattern string, now time.Time) error {
	id, err := parseHexID(pattern)
	if err != nil {
		id = e4.IDFromName(pattern)
	}
	if _, err := tx.GetClient(id); errors.Is(err, store.ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	return ptx.PutDue(store.Due{Kind: store.TargetClient, Target: hex.EncodeToString(id[:]), DueAt: now})
}

// GetPolicy returns a policy.
func (s *Service) GetPolicy(ctx context.Context, name string) (p Policy, err error) {
	err = s.view(ctx, func(tx store.Tx) error {
		ptx, err := policyTx(tx)
		if err != nil {
			return err
		}
		sp, err := ptx.GetPolicy(name)
		p = policyFromStore(sp)
		return err
	})
	return p, err
}

// ListPolicies lists policies by name after after.
func (s *Service) ListPolicies(ctx context.Context, after string, limit int) ([]Policy, error) {
	limit, err := checkLimit(limit)
	if err != nil {
		return nil, err
	}
	var list []Policy
	err = s.view(ctx, func(tx store.Tx) error {
		ptx, err := policyTx(tx)
		if err != nil {
			return err
		}
		page, err := ptx.ListPolicies(after, limit)
		list = convertAll(page, policyFromStore)
		return err
	})
	return list, err
}

// RemovePolicy deletes a policy. Its targets' schedule rows go when the
// scheduler finds no other policy for them.
func (s *Service) RemovePolicy(ctx context.Context, name string) error {
	err := s.update(ctx, func(tx store.Tx, _ *events) error {
		ptx, err := policyTx(tx)
		if err != nil {
			return err
		}
		return ptx.DeletePolicy(name)
	})
	if err == nil {
		s.sched.rulesChanged()
	}
	return err
}

// PausePolicy stops a policy's rotations (reason says why); ResumePolicy
// starts them again, ramping up anew.
func (s *Service) PausePolicy(ctx context.Context, name, reason string) error {
	if reason == "" {
		reason = "paused by the operator"
	}
	return s.setPaused(ctx, name, reason)
}

// ResumePolicy resumes a paused policy: its targets are due again at the
// times their keys' age says, and its ramp starts over.
func (s *Service) ResumePolicy(ctx context.Context, name string) error {
	return s.setPaused(ctx, name, "")
}

func (s *Service) setPaused(ctx context.Context, name, reason string) error {
	now := s.now().UTC()
	err := s.update(ctx, func(tx store.Tx, ev *events) error {
		ptx, err := policyTx(tx)
		if err != nil {
			return err
		}
		p, err := ptx.GetPolicy(name)
		if err != nil {
			return err
		}
		p.PausedReason = reason
		if reason == "" {
			p.StartedAt = now
			ev.add(EventPolicyResumed, nil, "", name)
		} else {
			ev.add(EventPolicyPaused, nil, "", name+": "+reason)
		}
		if err := ptx.PutPolicy(p); err != nil {
			return err
		}
		if reason != "" {
			return nil
		}
		return schedulePolicy(tx, ptx, p, now)
	})
	if err == nil {
		s.sched.rulesChanged()
	}
	return err
}

// PlannedRotation is a rotation the scheduler will fire if nothing
// changes: the target, when, and which policy or event wants it.
type PlannedRotation struct {
	Kind   TargetKind
	Target string
	DueAt  time.Time
	Policy string
	Reason string // "period", "age", "messages", or the event
	// MaxMessages, for a topic under a message budget (the smallest of
	// its running budget policies), is the budget and Messages the
	// messages counted under its current key so far.
	MaxMessages int64
	Messages    int64
}

// PreviewRotations lists up to limit rotations due before until, earliest
// first. Due times are computed from the keys' ages, as the scheduler
// does.
func (s *Service) PreviewRotations(ctx context.Context, until time.Time, limit int) ([]PlannedRotation, error) {
	limit, err := checkLimit(limit)
	if err != nil {
		return nil, err
	}
	var out []PlannedRotation
	err = s.view(ctx, func(tx store.Tx) error {
		ptx, err := policyTx(tx)
		if err != nil {
			return err
		}
		// The rows' due times are lower bounds: a page may give fewer
		// planned rotations than rows.
		var cursor store.Due
		for len(out) < limit {
			rows, err := ptx.ListDue(until, cursor, limit)
			if err != nil {
				return err
			}
			for _, row := range rows {
				plan, ok, err := s.planFor(tx, ptx, row)
				if err != nil {
					return err
				}
				if ok && plan.DueAt.Before(until) && len(out) < limit {
					out = append(out, plan)
				}
			}
			if len(rows) < limit {
				break
			}
			cursor = rows[len(rows)-1]
		}
		return nil
	})
	slices.SortFunc(out, func(a, b PlannedRotation) int { return a.DueAt.Compare(b.DueAt) })
	return out, err
}

// NextRotation returns when a target (a topic name, a client's hex id or
// "c2") is next due; ok is false when no running policy covers it. A
// topic under a message budget not spent yet has no due time: ok is true
// when another policy gives it one, and plan has the budget and the count
// either way.
func (s *Service) NextRotation(ctx context.Context, kind TargetKind, target string) (plan PlannedRotation, ok bool, err error) {
	err = s.view(ctx, func(tx store.Tx) error {
		ptx, err := policyTx(tx)
		if err != nil {
			return err
		}
		row, err := ptx.GetDue(store.TargetKind(kind), target)
		if errors.Is(err, store.ErrNotFound) {
			row = store.Due{Kind: store.TargetKind(kind), Target: target}
		} else if err != nil {
			return err
		}
		plan, ok, err = s.planFor(tx, ptx, row)
		return err
	})
	return plan, ok, err
}

// planFor computes a schedule row's real due time from its target's state.
func (s *Service) planFor(tx store.Tx, ptx store.PolicyTx, row store.Due) (PlannedRotation, bool, error) {
	st, err := s.targetState(tx, ptx, row.Kind, row.Target)
	if err != nil || !st.exists {
		return PlannedRotation{}, false, err
	}
	plan := PlannedRotation{Kind: TargetKind(row.Kind), Target: row.Target, Messages: st.messages}
	budgetPolicy, budget, budgeted := smallestBudget(st.policies, row.Target)
	if budgeted && row.Kind == store.TargetTopic {
		plan.MaxMessages = budget
		if st.messages >= budget && (row.Event == "" || isBudgetEvent(row.Event)) {
			plan.DueAt, plan.Policy, plan.Reason = row.DueAt, budgetPolicy, reasonMessages
			return plan, true, nil
		}
	}
	if row.Event != "" && !isBudgetEvent(row.Event) {
		plan.DueAt, plan.Reason = row.DueAt, row.Event
		return plan, true, nil
	}
	due, policy, reason, ok := nextDue(st.policies, row.Target, st.name, st.keyTime)
	plan.DueAt, plan.Policy, plan.Reason = due, policy, reason
	if !ok && plan.MaxMessages > 0 {
		// No due time yet: the budget policy, the count says how far.
		plan.Policy, plan.Reason = budgetPolicy, reasonMessages
	}
	return plan, ok, nil
}

// targetState is what due-ness is computed from.
type targetState struct {
	exists   bool
	name     string // what selectors see
	keyTime  time.Time
	version  uint64
	policies []store.Policy
	messages int64 // counted under the topic's key version (budget policies only)
}

// targetState reads a target's key time and the policies that may select
// it.
func (s *Service) targetState(tx store.Tx, ptx store.PolicyTx, kind store.TargetKind, target string) (targetState, error) {
	st := targetState{name: target}
	switch kind {
	case store.TargetTopic:
		t, err := tx.GetTopic(target)
		if errors.Is(err, store.ErrNotFound) {
			return st, nil
		} else if err != nil {
			return st, err
		}
		st.keyTime, st.version = t.RotatedAt, t.KeyVersion
	case store.TargetClient:
		id, err := parseHexID(target)
		if err != nil {
			return st, nil // a row no client can have
		}
		c, err := tx.GetClient(id)
		if errors.Is(err, store.ErrNotFound) {
			return st, nil
		} else if err != nil {
			return st, err
		}
		if c.Name != "" {
			st.name = c.Name
		}
		if st.keyTime, err = ptx.ClientKeyCreatedAt(id); err != nil {
			return st, err
		}
	case store.TargetC2:
		at, err := c2KeyTime(tx)
		if err != nil {
			return st, err
		}
		st.keyTime = at
	default:
		return st, nil
	}
	st.exists = true
	list, err := ptx.PoliciesFor(kind, target)
	if err != nil {
		return st, err
	}
	if st.name != target {
		more, err := ptx.PoliciesFor(kind, st.name)
		if err != nil {
			return st, err
		}
		list = mergePolicies(list, more)
	}
	st.policies = list
	if kind == store.TargetTopic {
		return st, topicMessages(ptx, &st, target)
	}
	return st, nil
}

func mergePolicies(a, b []store.Policy) []store.Policy {
	seen := make(map[string]bool, len(a))
	for _, p := range a {
		seen[p.Name] = true
	}
	for _, p := range b {
		if !seen[p.Name] {
			a = append(a, p)
		}
	}
	return a
}

// c2KeyTime is when C2's key pair was last rotated; zero when it never
// was (the policy's creation then counts).
func c2KeyTime(tx store.Tx) (time.Time, error) {
	v, err := tx.GetSetting(settingC2KeyRotated)
	if errors.Is(err, store.ErrNotFound) {
		return time.Time{}, nil
	} else if err != nil {
		return time.Time{}, err
	}
	var sec int64
	if _, err := fmt.Sscan(string(v), &sec); err != nil {
		return time.Time{}, fmt.Errorf("c2: setting %s: %w", settingC2KeyRotated, err)
	}
	return time.Unix(sec, 0).UTC(), nil
}

func parseHexID(s string) (e4.ID, error) {
	var id e4.ID
	b, err := hex.DecodeString(strings.ToLower(s))
	if err != nil || len(b) != len(id) {
		return id, fmt.Errorf("%w: %q is not a client id in hex", ErrInvalidArgument, s)
	}
	return e4.ID(b), nil
}

// ListRotations lists the rotations, those the scheduler fired and the
// others (Policy empty, Reason "manual", "member_removed" or
// "member_added"), with their outcome, by id after afterID.
func (s *Service) ListRotations(ctx context.Context, f RotationFilter, afterID int64, limit int) ([]Rotation, error) {
	limit, err := checkLimit(limit)
	if err != nil {
		return nil, err
	}
	var list []Rotation
	err = s.view(ctx, func(tx store.Tx) error {
		ptx, err := policyTx(tx)
		if err != nil {
			return err
		}
		page, err := ptx.ListRotations(f.toStore(), afterID, limit)
		list = convertAll(page, rotationFromStore)
		return err
	})
	return list, err
}

// Now returns the service's current time (its injectable clock).
func (s *Service) Now() time.Time { return s.now().UTC() }

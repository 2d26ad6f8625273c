package c2

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/e4-iot/e4kit/c2/store"
)

// Event rules: a policy with OnEvent rotates a topic it selects once
// Threshold matching events about that topic happened within Window. The
// counting is in memory (each replica counts the events it emits, such as
// the anomalies its monitor reports); the rotation it triggers goes to the
// database schedule, coalesced with any other pending one, and fires like
// a scheduled one (once, within the budget, recorded).

// rulesRefresh bounds how stale a replica's copy of the event rules is
// (policies changed through another replica).
const rulesRefresh = 10 * time.Second

// loadRules reloads the event rules when they changed here or are stale.
func (s *Service) loadRules(ctx context.Context, now time.Time) error {
	sc := s.sched
	sc.mu.Lock()
	fresh := !sc.rulesAt.IsZero() && now.Sub(sc.rulesAt) < rulesRefresh && !now.Before(sc.rulesAt)
	sc.mu.Unlock()
	if fresh {
		return nil
	}
	var rules []store.Policy
	err := s.st.View(ctx, func(tx store.Tx) error {
		ptx, err := policyTx(tx)
		if err != nil {
			return err
		}
		after := ""
		for {
			page, err := ptx.EventPolicies(after, MaxLimit)
			if err != nil {
				return err
			}
			for _, p := range page {
				if p.PausedReason == "" {
					rules = append(rules, p)
				}
			}
			if len(page) < MaxLimit {
				return nil
			}
			after = page[len(page)-1].Name
		}
	})
	if err != nil {
		return err
	}
	sc.mu.Lock()
	sc.rules, sc.rulesAt = rules, now
	sc.mu.Unlock()
	return nil
}

// ruleMatches reports whether an event is what a rule counts: OnEvent is
// an event kind, optionally followed by ":" and the start of its detail
// (such as "anomaly:auth_failed").
func ruleMatches(p store.Policy, e Event) bool {
	if e.Topic == "" {
		return false
	}
	kind, detail, _ := strings.Cut(p.OnEvent, ":")
	return string(e.Kind) == kind && strings.HasPrefix(e.Detail, detail) && selects(p, e.Topic, e.Topic)
}

// observe counts an emitted event against the event rules; a rule that
// reaches its threshold asks for a rotation of the event's topic.
func (s *Service) observe(e Event, now time.Time) {
	sc := s.sched
	sc.mu.Lock()
	defer sc.mu.Unlock()
	for _, p := range sc.rules {
		if !ruleMatches(p, e) {
			continue
		}
		key := ruleHit{rule: p.Name, topic: e.Topic}
		hits := append(recent(sc.counts[key], now, p.Window), now)
		if int64(len(hits)) < p.Threshold {
			sc.counts[key] = hits
			continue
		}
		delete(sc.counts, key)
		if _, pending := sc.triggers[e.Topic]; !pending {
			sc.triggers[e.Topic] = trigger{event: "rule:" + p.Name, since: hits[0]}
		}
	}
}

// recent keeps the hits within window before now.
func recent(hits []time.Time, now time.Time, window time.Duration) []time.Time {
	i := 0
	for i < len(hits) && now.Sub(hits[i]) >= window {
		i++
	}
	return hits[i:]
}

// flushTriggers writes the rotations event rules asked for to the
// schedule, and forgets counters whose window passed.
func (s *Service) flushTriggers(ctx context.Context, now time.Time, r *TickReport) error {
	sc := s.sched
	sc.mu.Lock()
	triggers := sc.triggers
	sc.triggers = map[string]trigger{}
	windows := make(map[string]time.Duration, len(sc.rules))
	for _, p := range sc.rules {
		windows[p.Name] = p.Window
	}
	for key, hits := range sc.counts {
		if rest := recent(hits, now, windows[key.rule]); len(rest) > 0 {
			sc.counts[key] = rest
		} else {
			delete(sc.counts, key)
		}
	}
	sc.mu.Unlock()
	if len(triggers) == 0 {
		return nil
	}
	err := s.st.Update(ctx, func(tx store.Tx) error {
		ptx, err := policyTx(tx)
		if err != nil {
			return err
		}
		for topic, tr := range triggers {
			if err := mergeTrigger(tx, ptx, topic, tr, now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		// Keep them for the next tick.
		sc.mu.Lock()
		for topic, tr := range triggers {
			if _, ok := sc.triggers[topic]; !ok {
				sc.triggers[topic] = tr
			}
		}
		sc.mu.Unlock()
		return err
	}
	r.Triggered += len(triggers)
	return nil
}

// mergeTrigger schedules the rotation a rule asked for, unless the topic
// is gone or its key was made since the first event the rule counted:
// another replica, whose monitor saw the same events, or an operator
// already rotated it, and the events are about the key it replaced.
func mergeTrigger(tx store.Tx, ptx store.PolicyTx, topic string, tr trigger, now time.Time) error {
	t, err := tx.GetTopic(topic)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	if t.RotatedAt.After(tr.since) {
		return nil
	}
	return ptx.MergeEvent(store.TargetTopic, topic, tr.event, now)
}

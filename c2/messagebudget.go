package c2

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/e4-iot/e4kit/c2/store"
)

// Rotation by message budget: a policy with MaxMessages rotates a topic
// once the messages counted under its current key reach the budget (such
// as FIPS mode's limit on the messages one AES-GCM key may protect). Only
// the monitor sees the messages devices send each other through the
// broker; it reports them with CountMessages, and the count lives in the
// database, per topic and key version, so that restarts keep it and
// replicas add to it. A rotation sets it back to 0.

// MessageCount is how many messages the monitor found authentic under a
// topic's key of one version.
type MessageCount struct {
	Topic    string
	Version  uint64
	Messages int64
}

// MaxMessageCounts bounds the counts one CountMessages call takes.
const MaxMessageCounts = 10000

// messageCountsPerTx bounds the counts written in one transaction.
const messageCountsPerTx = 1000

// reasonMessages is the reason of a rotation fired by a message budget.
const reasonMessages = "messages"

// eventBudget prefixes the schedule event that a spent budget records:
// "messages:POLICY".
const eventBudget = "messages:"

// CountMessages adds the monitor's counts to the message counts of the
// topics a budget policy selects (the others are not counted: no write for
// them), each under the key version it was counted for: a count for a
// version the topic no longer has (it rotated since) is dropped, as is one
// for a topic gone. A topic whose count reaches the budget of a running
// policy selecting it gets its rotation scheduled in the same transaction;
// the scheduler fires it like any other (once across replicas, within the
// rotation budget, recorded with reason "messages").
func (s *Service) CountMessages(ctx context.Context, counts []MessageCount) error {
	if len(counts) > MaxMessageCounts {
		return fmt.Errorf("%w: %d message counts in one call (at most %d)", ErrInvalidArgument, len(counts), MaxMessageCounts)
	}
	for _, c := range counts {
		if err := checkTopic(c.Topic); err != nil {
			return err
		}
		if c.Messages < 0 || c.Version == 0 {
			return fmt.Errorf("%w: %d messages under key version %d of topic %q", ErrInvalidArgument, c.Messages, c.Version, c.Topic)
		}
	}
	// Without a budget policy there is nothing to count, and no write lock
	// to take.
	if has, err := s.HasMessageBudgets(ctx); err != nil || !has {
		return err
	}
	for len(counts) > 0 {
		n := min(len(counts), messageCountsPerTx)
		if err := s.countMessages(ctx, counts[:n]); err != nil {
			return err
		}
		counts = counts[n:]
	}
	return nil
}

func (s *Service) countMessages(ctx context.Context, counts []MessageCount) error {
	now := s.now().UTC()
	return s.st.Update(ctx, func(tx store.Tx) error {
		ptx, err := policyTx(tx)
		if err != nil {
			return err
		}
		for _, c := range counts {
			if c.Messages == 0 {
				continue
			}
			list, err := ptx.PoliciesFor(store.TargetTopic, c.Topic)
			if err != nil {
				return err
			}
			if !budgetSelects(list, c.Topic) {
				continue
			}
			total, counted, err := ptx.AddTopicMessages(c.Topic, c.Version, c.Messages)
			if err != nil {
				return err
			}
			if !counted {
				continue
			}
			if name, spent := budgetSpent(list, c.Topic, total); spent {
				// A pending event keeps its own; any one rotation resets the
				// count.
				if err := ptx.MergeEvent(store.TargetTopic, c.Topic, eventBudget+name, now); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// budgetSpent returns the running budget policy selecting topic whose
// budget count reaches (the smallest budget when several do).
func budgetSpent(list []store.Policy, topic string, count int64) (string, bool) {
	name, budget, ok := smallestBudget(list, topic)
	return name, ok && count >= budget
}

// smallestBudget returns the running budget policy selecting topic with
// the smallest budget.
func smallestBudget(list []store.Policy, topic string) (name string, budget int64, ok bool) {
	for _, p := range list {
		if p.MaxMessages <= 0 || p.PausedReason != "" || p.Kind != store.TargetTopic || !selects(p, topic, topic) {
			continue
		}
		if !ok || p.MaxMessages < budget {
			name, budget, ok = p.Name, p.MaxMessages, true
		}
	}
	return name, budget, ok
}

// budgetSelects reports whether a budget policy, running or paused (so
// that a resumed one finds the count), selects topic.
func budgetSelects(list []store.Policy, topic string) bool {
	for _, p := range list {
		if p.MaxMessages > 0 && p.Kind == store.TargetTopic && selects(p, topic, topic) {
			return true
		}
	}
	return false
}

// hasBudget reports whether a list of policies has a message budget.
func hasBudget(list []store.Policy) bool {
	for _, p := range list {
		if p.MaxMessages > 0 {
			return true
		}
	}
	return false
}

// isBudgetEvent reports whether a schedule event was recorded by a spent
// message budget.
func isBudgetEvent(event string) bool { return strings.HasPrefix(event, eventBudget) }

// topicMessages reads a topic's message count into st when one of its
// policies has a budget.
func topicMessages(ptx store.PolicyTx, st *targetState, topic string) error {
	if !hasBudget(st.policies) {
		return nil
	}
	version, n, err := ptx.TopicMessages(topic)
	if errors.Is(err, store.ErrNotFound) {
		st.exists = false
		return nil
	}
	if version == st.version {
		st.messages = n
	}
	return err
}

// HasMessageBudgets reports whether a policy has a message budget: such a
// policy needs the monitor, which counts the messages (e4 c2 serve
// --monitor).
func (s *Service) HasMessageBudgets(ctx context.Context) (bool, error) {
	var has bool
	err := s.view(ctx, func(tx store.Tx) error {
		ptx, err := policyTx(tx)
		if err != nil {
			return err
		}
		has, err = ptx.HasBudgetPolicies()
		return err
	})
	return has, err
}

package c2

import (
	"encoding/binary"
	"hash/fnv"
	"strings"
	"time"

	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/transport"
)

// This file computes when a key is due from state alone: the time its key
// was made, the policy's settings and the target's name. No timer is
// involved, so a C2 that was stopped finds on restart exactly the targets
// whose due time passed, each once, and replicas agree on every due time.

// spread returns a deterministic duration in [0, span) for target and
// slot: the same on every replica and after every restart, and spread
// evenly over the span across targets.
func spread(target string, slot int64, span time.Duration) time.Duration {
	if span <= 0 {
		return 0
	}
	h := fnv.New64a()
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(slot))
	h.Write(b[:])
	h.Write([]byte(target))
	return time.Duration(mix64(h.Sum64()) % uint64(span))
}

// mix64 is SplitMix64's finalizer: FNV alone leaves names that differ in
// their last bytes close together modulo a period.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// phaseSlot is the slot number spread uses for a target's phase; the
// jitter of period k uses k.
const phaseSlot = -1 << 62

// boundary returns the start of crypto period k for target: the period's
// multiple, shifted by the target's phase, plus the bounded jitter of
// period k. Jitter is below half the period, so boundaries only grow.
func boundary(p store.Policy, target string, k int64) time.Time {
	ns := k*int64(p.Period) + int64(spread(target, phaseSlot, p.Period)) + int64(spread(target, k, p.Jitter))
	// Whole microseconds, as the store keeps them.
	return time.Unix(0, ns).UTC().Truncate(time.Microsecond)
}

// periodDue returns the first period boundary of target after keyTime:
// the key made in one period is replaced at the start of the next.
func periodDue(p store.Policy, target string, keyTime time.Time) time.Time {
	k := floorDiv(keyTime.UnixNano(), int64(p.Period)) - 1
	for {
		if b := boundary(p, target, k); b.After(keyTime) {
			return b
		}
		k++
	}
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// ageDue returns when a key made at keyTime reaches the policy's maximum
// age (plus jitter). A key already older than that when the policy was
// created is due at the target's phase within one MaxAge after the
// creation, so a new policy does not rotate every old key at once.
func ageDue(p store.Policy, target string, keyTime time.Time) time.Time {
	due := keyTime.Add(p.MaxAge + spread(target, keyTime.Unix(), p.Jitter))
	if first := p.CreatedAt.Add(spread(target, phaseSlot, p.MaxAge)); keyTime.Before(p.CreatedAt) && due.Before(first) {
		due = first
	}
	return due.UTC().Truncate(time.Microsecond)
}

// policyDue returns when a scheduled policy wants target rotated, given
// when its key was made. A key older than the policy counts as made when
// the policy was created, so a new policy's first rotations spread over
// its period instead of firing together.
func policyDue(p store.Policy, target string, keyTime time.Time) (time.Time, string) {
	if p.Period > 0 {
		if keyTime.Before(p.CreatedAt) {
			keyTime = p.CreatedAt
		}
		return periodDue(p, target, keyTime), "period"
	}
	return ageDue(p, target, keyTime), "age"
}

// scheduled reports whether a policy rotates on time (not on events) and
// runs.
func scheduled(p store.Policy) bool {
	return p.PausedReason == "" && p.OnEvent == "" && (p.Period > 0 || p.MaxAge > 0)
}

// selects reports whether a policy's selector picks a target. name is the
// target's name (a topic, a client's name); id the target's schedule key
// (the topic again, a client's hex id).
func selects(p store.Policy, name, id string) bool {
	switch p.Selector {
	case store.SelectAll:
		return true
	case store.SelectExact:
		return p.Pattern == name || (id != "" && p.Pattern == id)
	case store.SelectPrefix:
		return strings.HasPrefix(name, p.Pattern)
	case store.SelectFilter:
		return transport.Match(p.Pattern, name)
	}
	return false
}

// nextDue is the earliest due time of target (its schedule key, which
// sets its phase; name is what selectors see) among the running scheduled
// policies that select it, with the policy and the reason; ok is false
// when none does.
func nextDue(list []store.Policy, target, name string, keyTime time.Time) (due time.Time, policy, reason string, ok bool) {
	for _, p := range list {
		if !scheduled(p) || !selects(p, name, target) {
			continue
		}
		d, r := policyDue(p, target, keyTime)
		if !ok || d.Before(due) {
			due, policy, reason, ok = d, p.Name, r, true
		}
	}
	return due, policy, reason, ok
}

// filterPrefix is the literal part of an MQTT filter before its first
// wildcard level: every topic it matches starts with it.
func filterPrefix(filter string) string {
	// "a/#" also matches "a": the prefix stops before the separator.
	if i := strings.IndexAny(filter, "+#"); i >= 0 {
		filter = filter[:i]
	}
	return strings.TrimSuffix(filter, "/")
}

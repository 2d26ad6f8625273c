package c2

import (
	"fmt"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/c2/store"
)

// TestPeriodDue: the due time is the first boundary after the key was
// made, at most a period and the jitter later; consecutive keys of one
// target get boundaries about a period apart; phases spread targets over
// the period.
func TestPeriodDue(t *testing.T) {
	p := store.Policy{Name: "w", Period: week, Jitter: time.Hour}
	key := time.Date(2027, 3, 3, 13, 0, 0, 0, time.UTC)
	hours := map[int]int{}
	for i := range 2000 {
		target := fmt.Sprintf("topic/%d", i)
		due := periodDue(p, target, key)
		if !due.After(key) || due.After(key.Add(week+time.Hour)) {
			t.Fatalf("%s: key made at %v is due at %v", target, key, due)
		}
		if again := periodDue(p, target, key); !again.Equal(due) {
			t.Fatalf("%s: due at %v, then %v", target, due, again)
		}
		next := periodDue(p, target, due)
		if gap := next.Sub(due); gap < week-time.Hour || gap > week+time.Hour {
			t.Fatalf("%s: boundaries %v apart", target, gap)
		}
		hours[int(due.Sub(key)/time.Hour)]++
	}
	// 2000 targets over 169 hourly buckets: about 12 each; none empty
	// and none above 40 unless the phases clump.
	for h := 0; h < 168; h++ {
		if n := hours[h]; n == 0 || n > 40 {
			t.Fatalf("%d targets due in hour %d of the week: phases are not spread", n, h)
		}
	}
}

// TestAgeDue: a key is due at its age plus jitter; a key older than the
// policy is due at its phase within one age after the policy's creation.
func TestAgeDue(t *testing.T) {
	created := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	p := store.Policy{Name: "a", MaxAge: 30 * 24 * time.Hour, Jitter: time.Hour, CreatedAt: created}
	fresh := created.Add(10 * 24 * time.Hour)
	if due := ageDue(p, "t", fresh); due.Before(fresh.Add(p.MaxAge)) || due.After(fresh.Add(p.MaxAge+time.Hour)) {
		t.Fatalf("a fresh key is due at %v", due)
	}
	old := created.Add(-365 * 24 * time.Hour)
	if due := ageDue(p, "t", old); due.Before(created) || due.After(created.Add(p.MaxAge)) {
		t.Fatalf("a year-old key under a new policy is due at %v", due)
	}
}

func TestFloorDiv(t *testing.T) {
	for _, c := range []struct{ a, b, want int64 }{{7, 2, 3}, {-7, 2, -4}, {-8, 2, -4}, {0, 5, 0}} {
		if got := floorDiv(c.a, c.b); got != c.want {
			t.Fatalf("floorDiv(%d, %d) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}

// TestSelects: the selectors, MQTT filters included; a filter's prefix
// covers every topic it matches.
func TestSelects(t *testing.T) {
	for _, c := range []struct {
		sel     store.Selector
		pattern string
		topic   string
		want    bool
	}{
		{store.SelectAll, "", "x", true},
		{store.SelectExact, "a/b", "a/b", true},
		{store.SelectExact, "a/b", "a/bc", false},
		{store.SelectPrefix, "a/", "a/b/c", true},
		{store.SelectPrefix, "a/", "b/a/", false},
		{store.SelectFilter, "a/+/c", "a/b/c", true},
		{store.SelectFilter, "a/#", "a", true},
		{store.SelectFilter, "a/#", "ab", false},
	} {
		p := store.Policy{Selector: c.sel, Pattern: c.pattern}
		if got := selects(p, c.topic, c.topic); got != c.want {
			t.Errorf("%s %q selects %q: %v", c.sel, c.pattern, c.topic, got)
		}
		if c.sel == store.SelectFilter && c.want && len(c.topic) < len(filterPrefix(c.pattern)) {
			t.Errorf("filter %q: prefix %q misses %q", c.pattern, filterPrefix(c.pattern), c.topic)
		}
	}
}

package mqtt

import (
	"slices"
	"strings"
	"testing"

	"github.com/e4-iot/e4kit/transport"
)

// smallTopics returns every topic of 1 to 4 levels over the level names
// "x", "y" and "" (empty levels are legal in MQTT).
func smallTopics() []string {
	levels := []string{"x", "y", ""}
	topics := []string{}
	current := []string{""}
	for depth := 1; depth <= 4; depth++ {
		var next []string
		for _, prefix := range current {
			for _, l := range levels {
				t := l
				if depth > 1 {
					t = prefix + "/" + l
				}
				next = append(next, t)
			}
		}
		topics = append(topics, next...)
		current = next
	}
	return topics
}

// smallFilters returns every filter of 1 to 3 levels over "x", "y", "+"
// and a final "#".
func smallFilters() []string {
	var filters []string
	var build func(prefix []string)
	build = func(prefix []string) {
		if len(prefix) > 0 {
			filters = append(filters, strings.Join(prefix, "/"))
			filters = append(filters, strings.Join(append(slices.Clone(prefix), "#"), "/"))
		}
		if len(prefix) == 3 {
			return
		}
		for _, l := range []string{"x", "y", "+"} {
			build(append(slices.Clone(prefix), l))
		}
	}
	build(nil)
	return append(filters, "#")
}

// TestOverlapAndJoinExhaustive checks overlap and join against
// transport.Match on every small filter pair and topic: overlap is true
// exactly when some topic matches both, and the join matches every topic
// either filter matches.
func TestOverlapAndJoinExhaustive(t *testing.T) {
	topics, filters := smallTopics(), smallFilters()
	for _, a := range filters {
		for _, b := range filters {
			shared := false
			for _, topic := range topics {
				ma, mb := transport.Match(a, topic), transport.Match(b, topic)
				shared = shared || (ma && mb)
				if (ma || mb) && overlap(a, b) && !transport.Match(join(a, b), topic) {
					t.Fatalf("join(%q, %q) = %q does not match %q", a, b, join(a, b), topic)
				}
			}
			if got := overlap(a, b); got != shared {
				t.Fatalf("overlap(%q, %q) = %v, want %v", a, b, got, shared)
			}
		}
	}
}

func TestJoin(t *testing.T) {
	for _, c := range []struct{ a, b, want string }{
		{"a/b", "a/b", "a/b"},
		{"a/#", "a/b", "a/#"},
		{"a/+", "+/b", "+/+"},
		{"a", "a/#", "a/#"},
		{"a/b", "a/b/c", "a/b/#"},
		{"a/#", "+/b", "+/#"},
		{"#", "x/y", "#"},
	} {
		if got := join(c.a, c.b); got != c.want {
			t.Errorf("join(%q, %q) = %q, want %q", c.a, c.b, got, c.want)
		}
	}
}

func TestOverlapSystemTopics(t *testing.T) {
	// A wildcard first level does not match "$SYS/...", so these never
	// share a message and must not be joined.
	for _, c := range []struct{ a, b string }{{"#", "$SYS/x"}, {"+/x", "$SYS/x"}, {"$SYS/#", "+/+"}} {
		if overlap(c.a, c.b) || overlap(c.b, c.a) {
			t.Errorf("overlap(%q, %q) = true, want false", c.a, c.b)
		}
	}
	if !overlap("$SYS/#", "$SYS/x") {
		t.Error(`overlap("$SYS/#", "$SYS/x") = false, want true`)
	}
}

func TestMergeFilters(t *testing.T) {
	for _, c := range []struct {
		in, want []string
	}{
		{[]string{"a/b", "a/b"}, []string{"a/b"}},
		{[]string{"a/b", "a/c"}, []string{"a/b", "a/c"}},
		{[]string{"a/b", "a/#"}, []string{"a/#"}},
		{[]string{"a/+/x", "a/b/+", "c"}, []string{"a/+/+", "c"}},
		// The join of the first two overlaps the third: all three merge.
		{[]string{"a/x/1", "a/+/1", "a/x/+"}, []string{"a/+/+"}},
		{[]string{"a/+", "b/c", "+/c"}, []string{"+/+"}},
	} {
		if got := mergeFilters(c.in); !slices.Equal(got, c.want) {
			t.Errorf("mergeFilters(%q) = %q, want %q", c.in, got, c.want)
		}
		// Whatever the order of arrival, the result covers every input
		// and has no overlapping pair.
		got := mergeFilters(c.in)
		for _, f := range c.in {
			if coverOf(got, f) == "" {
				t.Errorf("mergeFilters(%q) = %q leaves %q uncovered", c.in, got, f)
			}
		}
		for i := range got {
			for j := i + 1; j < len(got); j++ {
				if overlap(got[i], got[j]) {
					t.Errorf("mergeFilters(%q) = %q: %q and %q overlap", c.in, got, got[i], got[j])
				}
			}
		}
	}
}

package mqtt

import (
	"slices"
	"strings"
)

// The broker-side subscriptions of a Transport never overlap. MQTT 3.1.1
// does not say which subscription a PUBLISH is for, and brokers differ
// when two subscriptions of one connection match a topic: Mosquitto sends
// one copy per matching subscription, mochi-mqtt a single copy. With
// non-overlapping broker subscriptions every message arrives exactly once,
// whatever the broker, and the Transport fans it out to its local
// subscriptions itself.
//
// A filter that overlaps broker subscriptions is therefore joined with
// them into the narrowest filter that covers all of them ("a/b" under
// "a/#" adds nothing; "a/+" and "+/b" become "+/+"), and messages are
// filtered locally with transport.Match.

// overlap reports whether some topic matches both filters. A filter whose
// first level is a wildcard does not match topics starting with "$"
// (MQTT 3.1.1, 4.7.2), so it never overlaps a filter starting with "$".
func overlap(a, b string) bool {
	if (isSystem(a) && wildFirst(b)) || (isSystem(b) && wildFirst(a)) {
		return false
	}
	for {
		al, arest, amore := strings.Cut(a, "/")
		bl, brest, bmore := strings.Cut(b, "/")
		if al == "#" || bl == "#" {
			return true
		}
		if al != "+" && bl != "+" && al != bl {
			return false
		}
		switch {
		case amore && bmore:
			a, b = arest, brest
		case amore:
			return arest == "#" // "x/#" matches "x"
		case bmore:
			return brest == "#"
		default:
			return true
		}
	}
}

// isSystem reports whether a filter starts with "$" ($SYS topics).
func isSystem(filter string) bool { return strings.HasPrefix(filter, "$") }

// wildFirst reports whether the first level of a filter is a wildcard.
func wildFirst(filter string) bool {
	first, _, _ := strings.Cut(filter, "/")
	return first == "+" || first == "#"
}

// join returns the narrowest filter that matches every topic either of two
// overlapping filters matches: equal levels are kept, different ones become
// "+", and a "#" or a difference in depth ends the filter with "#".
func join(a, b string) string {
	al, bl := strings.Split(a, "/"), strings.Split(b, "/")
	out := make([]string, 0, max(len(al), len(bl)))
	for i := 0; ; i++ {
		aEnd, bEnd := i == len(al), i == len(bl)
		switch {
		case aEnd && bEnd:
			return strings.Join(out, "/")
		case aEnd || bEnd || al[i] == "#" || bl[i] == "#":
			return strings.Join(append(out, "#"), "/")
		case al[i] == bl[i]:
			out = append(out, al[i])
		default:
			out = append(out, "+")
		}
	}
}

// addFilter adds filter to a set of non-overlapping filters, joining it
// with every member it overlaps (repeatedly, since a join may overlap
// further members). It returns the new set and the filter now covering
// filter.
func addFilter(set []string, filter string) (result []string, cover string) {
	cover = filter
	rest := slices.Clone(set)
	for {
		i := slices.IndexFunc(rest, func(f string) bool { return overlap(f, cover) })
		if i < 0 {
			return append(rest, cover), cover
		}
		cover = join(cover, rest[i])
		rest = slices.Delete(rest, i, i+1)
	}
}

// mergeFilters returns the non-overlapping set covering filters, sorted.
func mergeFilters(filters []string) []string {
	var set []string
	for _, f := range filters {
		set, _ = addFilter(set, f)
	}
	slices.Sort(set)
	return slices.Compact(set)
}

// coverOf returns the member of a non-overlapping set that covers filter,
// or "" when none does.
func coverOf(set []string, filter string) string {
	for _, f := range set {
		if overlap(f, filter) {
			return f
		}
	}
	return ""
}

package monitor

import (
	"cmp"
	"slices"
	"sync"
)

// summary is a space-saving top-k summary (Metwally, Agrawal, El Abbadi,
// 2005): it keeps at most capacity keys; a new key, when full, takes the
// place of the least counted one and inherits its count as its error. Any
// key counted more than total/capacity times is in the summary, and each
// count overestimates the true one by at most its error.
type summary struct {
	entries []topEntry
	index   map[string]int
}

type topEntry struct {
	key      string
	count    uint64
	err      uint64
	byResult [numResults]uint64
}

func newSummary(capacity int) *summary {
	return &summary{entries: make([]topEntry, 0, capacity), index: make(map[string]int, capacity)}
}

func (s *summary) add(key string, r Result) {
	if i, ok := s.index[key]; ok {
		s.entries[i].count++
		s.entries[i].byResult[r]++
		return
	}
	if len(s.entries) < cap(s.entries) {
		s.index[key] = len(s.entries)
		e := topEntry{key: key, count: 1}
		e.byResult[r] = 1
		s.entries = append(s.entries, e)
		return
	}
	least := 0
	for i := range s.entries {
		if s.entries[i].count < s.entries[least].count {
			least = i
		}
	}
	old := &s.entries[least]
	delete(s.index, old.key)
	*old = topEntry{key: key, count: old.count + 1, err: old.count}
	old.byResult[r] = 1
	s.index[key] = least
}

// top returns up to limit entries, most counted first.
func (s *summary) top(limit int) []topEntry {
	out := slices.Clone(s.entries)
	slices.SortFunc(out, func(a, b topEntry) int {
		if c := cmp.Compare(b.count, a.count); c != 0 {
			return c
		}
		return cmp.Compare(a.key, b.key)
	})
	return out[:min(limit, len(out))]
}

// Dimensions of the top lists.
const (
	byTopic = iota
	bySender
	numDims
)

// The lists of a dimension: one per result, then anomalies (every result
// but Valid), then all messages.
const (
	listAnomalies = int(numResults)
	listAll       = int(numResults) + 1
	numLists      = int(numResults) + 2
)

// topLists holds the top-k summaries of every dimension and list under one
// mutex.
type topLists struct {
	mu    sync.Mutex
	lists [numDims][numLists]*summary
}

func newTopLists(capacity int) *topLists {
	t := &topLists{}
	for d := range t.lists {
		for l := range t.lists[d] {
			t.lists[d][l] = newSummary(capacity)
		}
	}
	return t
}

// add counts a message with result r on topic and, when known, from
// sender ("" otherwise).
func (t *topLists) add(topic, sender string, r Result) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.addKey(byTopic, topic, r)
	if sender != "" {
		t.addKey(bySender, sender, r)
	}
}

func (t *topLists) addKey(dim int, key string, r Result) {
	l := &t.lists[dim]
	l[listAll].add(key, r)
	l[r].add(key, r)
	if r != Valid {
		l[listAnomalies].add(key, r)
	}
}

func (t *topLists) top(dim, list, limit int) []topEntry {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lists[dim][list].top(limit)
}

package monitor

import (
	"encoding/binary"
	"math/bits"
	"sync"

	"github.com/e4-iot/e4kit/e4"
)

// replaySet remembers the authentic messages seen recently, as 128-bit
// fingerprints of (topic hash, sender id, SIV), to spot a message seen
// again. Memory is bounded: at most capacity entries, kept in arrival
// order in a ring; an entry is forgotten when its timestamp leaves the
// validity window or, when the ring is full, when it is the oldest. A
// replay of a forgotten message is then counted as valid (the device's own
// replay cache still refuses it); at a sustained rate r the set covers the
// last capacity/r seconds of traffic.
type replaySet struct {
	mu   sync.Mutex
	ring []replayEntry
	head int // oldest entry
	n    int // entries in use
	seen map[[2]uint64]struct{}
}

type replayEntry struct {
	fp [2]uint64
	ts uint64
}

func newReplaySet(capacity int) *replaySet {
	return &replaySet{ring: make([]replayEntry, capacity), seen: make(map[[2]uint64]struct{}, min(capacity, 1<<12))}
}

// fingerprint mixes the topic hash and the sender into the SIV, which is a
// PRF output under the topic key: distinct messages collide with
// negligible probability.
func fingerprint(topic *e4.TopicHash, sender *e4.ID, siv []byte) [2]uint64 {
	return [2]uint64{
		binary.LittleEndian.Uint64(siv[0:8]) ^ binary.LittleEndian.Uint64(topic[0:8]) ^ bits.RotateLeft64(binary.LittleEndian.Uint64(sender[0:8]), 1),
		binary.LittleEndian.Uint64(siv[8:16]) ^ binary.LittleEndian.Uint64(topic[8:16]) ^ bits.RotateLeft64(binary.LittleEndian.Uint64(sender[8:16]), 1),
	}
}

// seenBefore records fp (a message dated ts) and reports whether it was
// already there. Entries dated before oldest are forgotten first.
func (r *replaySet) seenBefore(fp [2]uint64, ts, oldest uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.seen[fp]; ok {
		return true
	}
	for r.n > 0 && (r.ring[r.head].ts < oldest || r.n == len(r.ring)) {
		delete(r.seen, r.ring[r.head].fp)
		r.head = (r.head + 1) % len(r.ring)
		r.n--
	}
	r.ring[(r.head+r.n)%len(r.ring)] = replayEntry{fp: fp, ts: ts}
	r.n++
	r.seen[fp] = struct{}{}
	return false
}

// len returns the number of messages remembered.
func (r *replaySet) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

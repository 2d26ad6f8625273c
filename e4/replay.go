package e4

import (
	"encoding/binary"
	"math/bits"
	"sync"
)

// DefaultReplayCacheSize is the most accepted messages the replay cache
// remembers by default. Each entry costs 40 bytes (24 in a FIFO ring and two
// 8-byte slots of the hash index). The cache starts at initialReplayCache
// entries and doubles only while the message rate needs it, so a device
// receiving a few messages a minute uses 160 KiB, and a back end receiving
// 1,700 messages a second or more uses the whole 40 MiB.
const DefaultReplayCacheSize = 1 << 20

// initialReplayCache is the size a replay cache starts at.
const initialReplayCache = 4096

// replayCache remembers recently accepted messages so that an identical one
// is refused while its timestamp is still inside the validity window.
//
// Memory is bounded: entries live in a ring in arrival order; entries whose
// timestamp left the validity window are forgotten; when the ring is full of
// live entries it doubles, up to its maximum size. At the maximum the oldest
// entry is evicted, and since forgetting an entry still inside the window
// would reopen the door to its replay, the cache raises a floor to that
// entry's timestamp and refuses every message not newer than it. Under a
// sustained rate above max/window, the oldest acceptable age therefore
// shrinks below the window instead of replays getting through.
//
// All operations take one mutex; only growth allocates.
type replayCache struct {
	mu    sync.Mutex
	max   int // most entries the ring may grow to
	ring  []replayEntry
	head  int    // oldest entry
	count int    // live entries in ring
	index []slot // open addressing (linear probing) into ring
	mask  uint64 // len(index)-1
	floor uint64 // messages with timestamp <= floor are refused
}

// slot is one cell of the hash index: the ring position of an entry plus 1
// (0 = empty) and 32 bits of its fingerprint, so that probing past other
// entries does not have to read the ring: a lookup costs one cache miss.
type slot struct {
	pos uint32
	tag uint32
}

// replayEntry is one remembered message: a 128-bit fingerprint of (topic,
// sender, SIV) and its timestamp.
type replayEntry struct {
	fp [2]uint64
	ts uint64
}

func newReplayCache(max int) *replayCache {
	rc := &replayCache{max: max}
	rc.resize(min(max, initialReplayCache))
	return rc
}

// resize moves the live entries into a ring of the given size (at least
// count) and rebuilds the index for it.
func (rc *replayCache) resize(size int) {
	ring := make([]replayEntry, size)
	for i := range rc.count {
		ring[i] = rc.ring[(rc.head+i)%len(rc.ring)]
	}
	slots := 1 << bits.Len(uint(2*size-1)) // power of two >= 2*size keeps probes short
	rc.ring, rc.head = ring, 0
	rc.index, rc.mask = make([]slot, slots), uint64(slots-1)
	for pos := range rc.count {
		at, _ := rc.find(ring[pos].fp)
		rc.index[at] = slot{pos: uint32(pos) + 1, tag: tagOf(ring[pos].fp)}
	}
}

// fingerprint combines the topic hash, the sender id (zero in SK mode) and
// the 16-byte SIV. The SIV is a PRF output under the topic key, so distinct
// accepted messages collide with negligible probability, and an attacker
// cannot choose it without the key.
func fingerprint(topic *TopicHash, sender *ID, tag []byte) [2]uint64 {
	return [2]uint64{
		binary.LittleEndian.Uint64(tag[0:8]) ^ binary.LittleEndian.Uint64(topic[0:8]) ^ bits.RotateLeft64(binary.LittleEndian.Uint64(sender[0:8]), 1),
		binary.LittleEndian.Uint64(tag[8:16]) ^ binary.LittleEndian.Uint64(topic[8:16]) ^ bits.RotateLeft64(binary.LittleEndian.Uint64(sender[8:16]), 1),
	}
}

// accept records the message and reports whether it is new. expiredBefore is
// the oldest timestamp still inside the validity window: entries older than
// that can be forgotten without risk (0 when there is no reliable clock).
func (rc *replayCache) accept(fp [2]uint64, ts, expiredBefore uint64) bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.acceptLocked(fp, ts, expiredBefore)
}

// acceptLocked is accept with rc.mu held, so that UnprotectBatch can check
// a run of messages under one lock.
func (rc *replayCache) acceptLocked(fp [2]uint64, ts, expiredBefore uint64) bool {
	if ts <= rc.floor && rc.floor != 0 {
		return false
	}
	at, found := rc.find(fp)
	if found {
		return false
	}
	for rc.count > 0 && rc.ring[rc.head].ts < expiredBefore {
		rc.evictOldest()
	}
	if rc.count == len(rc.ring) && len(rc.ring) < rc.max {
		rc.resize(min(2*len(rc.ring), rc.max))
		at, _ = rc.find(fp)
	}
	if rc.count == len(rc.ring) {
		rc.floor = max(rc.floor, rc.ring[rc.head].ts)
		rc.evictOldest()
		if ts <= rc.floor {
			return false
		}
		at, _ = rc.find(fp) // eviction may have moved entries
	}
	pos := (rc.head + rc.count) % len(rc.ring)
	rc.ring[pos] = replayEntry{fp: fp, ts: ts}
	rc.index[at] = slot{pos: uint32(pos) + 1, tag: tagOf(fp)}
	rc.count++
	return true
}

// tagOf is the part of a fingerprint kept in the index. The home slot comes
// from the low bits of fp[0], so the tag uses fp[1].
func tagOf(fp [2]uint64) uint32 { return uint32(fp[1]) }

// find returns the index slot holding fp, or the empty slot where it belongs.
func (rc *replayCache) find(fp [2]uint64) (at uint64, found bool) {
	tag := tagOf(fp)
	for at = fp[0] & rc.mask; ; at = (at + 1) & rc.mask {
		s := rc.index[at]
		if s.pos == 0 {
			return at, false
		}
		if s.tag == tag && rc.ring[s.pos-1].fp == fp {
			return at, true
		}
	}
}

// evictOldest removes the ring's head from the index with backward-shift
// deletion, which keeps every probe sequence unbroken without tombstones.
func (rc *replayCache) evictOldest() {
	hole, _ := rc.find(rc.ring[rc.head].fp)
	for next := (hole + 1) & rc.mask; ; next = (next + 1) & rc.mask {
		s := rc.index[next]
		if s.pos == 0 {
			break
		}
		home := rc.ring[s.pos-1].fp[0] & rc.mask
		// The entry may move back into the hole unless its home lies
		// cyclically in (hole, next].
		if (next-home)&rc.mask >= (next-hole)&rc.mask {
			rc.index[hole] = s
			hole = next
		}
	}
	rc.index[hole] = slot{}
	rc.head = (rc.head + 1) % len(rc.ring)
	rc.count--
}

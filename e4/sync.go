package e4

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"time"
)

// Sync requests are this project's extension to E4 v1, like
// acknowledgements (see ack.go): a device that starts, or reconnects after
// an outage, tells C2 which keys it holds, so that C2 sends only what is
// missing or outdated. The device publishes on SyncTopic(id) the SK-format
// protection, under its command key, of
//
//	SyncVersion (1) | flags (1, bit 0: fresh)
//	topic count (2, little-endian) | per topic, sorted by hash: topic hash (16) | key tag (8)
//	pubkey count (2, little-endian) | per public key, sorted by id: client id (16) | key tag (8)
//	C2 key tag (8), all zero in SK mode
//
// where the key tag of a key is the first 8 bytes of
// SHA-256("e4kit key tag v1" || key). The tags are inside the ciphertext,
// so the broker learns nothing about which keys a device holds. Decoding is
// strict: exact length, known version and flags, entries sorted with no
// duplicates, at most MaxSyncEntries of each kind.

// SyncTopicSuffix ends the topic sync requests are published on.
const SyncTopicSuffix = "/sync"

// SyncTopic returns the topic a client publishes its sync requests on: its
// control topic followed by "/sync".
func SyncTopic(id ID) string { return ControlTopic(id) + SyncTopicSuffix }

// SyncVersion is the version byte of sync requests.
const SyncVersion = 1

// KeyTagLen is the length of a key tag.
const KeyTagLen = 8

// MaxSyncEntries is the most topics, and the most public keys, one sync
// request may list.
const MaxSyncEntries = 4096

// syncFlagFresh marks a report from a client without saved state.
const syncFlagFresh = 1

// syncEntryLen is the size of one (hash, tag) entry.
const syncEntryLen = 16 + KeyTagLen

// keyTagDomain separates key tags from every other use of SHA-256 on keys.
const keyTagDomain = "e4kit key tag v1"

// KeyTag identifies a key without revealing it: see TagOfKey.
type KeyTag [KeyTagLen]byte

// TagOfKey returns the first 8 bytes of SHA-256("e4kit key tag v1" || key).
func TagOfKey(key []byte) KeyTag {
	h := sha256.New()
	h.Write([]byte(keyTagDomain))
	h.Write(key)
	var sum [sha256.Size]byte
	return KeyTag(h.Sum(sum[:0])[:KeyTagLen])
}

// HeldKey is one key a device reports: the topic hash (for a topic key) or
// the client id (for a public key) in Hash, and the tag of the key.
type HeldKey struct {
	Hash [16]byte
	Tag  KeyTag
}

// SyncReport is the content of a sync request: what a device holds.
type SyncReport struct {
	// Fresh is set by a client that started without saved state.
	Fresh bool
	// Topics lists the topics with a key, sorted by topic hash.
	Topics []HeldKey
	// PubKeys lists the known senders (PK mode), sorted by client id.
	PubKeys []HeldKey
	// C2Key is the tag of the C2 X25519 public key (PK mode); zero in SK mode.
	C2Key KeyTag
	// Time is when the device made the report (the timestamp it is
	// protected with), set by OpenSyncRequest; not part of the content.
	Time time.Time
}

// Fresh reports whether the client was created without saved state: it is
// new, or its Store was empty. SyncRequest sets the report's flag from it.
func (c *Client) Fresh() bool { return c.fresh }

// SyncRequest returns the protected report of what c holds, to publish on
// SyncTopic(c.ID()). It fails if c holds more than MaxSyncEntries topics or
// public keys.
func (c *Client) SyncRequest() ([]byte, error) {
	now := c.now()
	c.mu.RLock()
	report := c.syncReport()
	cipher := c.commandCipher
	c.mu.RUnlock()
	plain, err := report.encode()
	if err != nil {
		return nil, err
	}
	defer clear(plain)
	return sealSK(nil, cipher, plain, uint64(max(now.Unix(), 0))), nil
}

// syncReport lists what c holds; the caller holds mu.
func (c *Client) syncReport() *SyncReport {
	r := &SyncReport{Fresh: c.fresh}
	for h, t := range c.topics {
		if t.current != nil {
			r.Topics = append(r.Topics, HeldKey{Hash: h, Tag: TagOfKey(t.key[:])})
		}
	}
	for id, v := range c.signers {
		r.PubKeys = append(r.PubKeys, HeldKey{Hash: id, Tag: TagOfKey(v.public)})
	}
	if c.mode == PubKey {
		r.C2Key = TagOfKey(c.c2Public)
	}
	slices.SortFunc(r.Topics, compareHeld)
	slices.SortFunc(r.PubKeys, compareHeld)
	return r
}

func compareHeld(a, b HeldKey) int { return bytes.Compare(a.Hash[:], b.Hash[:]) }

// ProtectSyncReport protects a report under a device's command key at time
// now, as SyncRequest does; for tools and tests on the C2 side.
func ProtectSyncReport(r *SyncReport, commandKey []byte, now time.Time) ([]byte, error) {
	return V1.ProtectSyncReport(r, commandKey, now)
}

// OpenSyncRequest checks a sync request with the command key C2 holds for
// the device (cfg sets the time checks, nil for the defaults) and decodes it.
// A request that does not authenticate fails with ErrAuthentication (or a
// timestamp error); an authentic one with bad content with ErrInvalidCommand.
func OpenSyncRequest(msg, commandKey []byte, cfg *Config) (*SyncReport, error) {
	return V1.OpenSyncRequest(msg, commandKey, cfg)
}

// encode serializes a report, refusing one that could not be decoded.
func (r *SyncReport) encode() ([]byte, error) {
	if err := checkHeld("topic", r.Topics); err != nil {
		return nil, err
	}
	if err := checkHeld("public key", r.PubKeys); err != nil {
		return nil, err
	}
	out := make([]byte, 0, 2+2+syncEntryLen*len(r.Topics)+2+syncEntryLen*len(r.PubKeys)+KeyTagLen)
	var flags byte
	if r.Fresh {
		flags |= syncFlagFresh
	}
	out = append(out, SyncVersion, flags)
	out = appendHeld(out, r.Topics)
	out = appendHeld(out, r.PubKeys)
	return append(out, r.C2Key[:]...), nil
}

func appendHeld(out []byte, list []HeldKey) []byte {
	out = binary.LittleEndian.AppendUint16(out, uint16(len(list)))
	for _, k := range list {
		out = append(out, k.Hash[:]...)
		out = append(out, k.Tag[:]...)
	}
	return out
}

// checkHeld refuses a list that is too long, unsorted or has duplicates.
func checkHeld(what string, list []HeldKey) error {
	if len(list) > MaxSyncEntries {
		return fmt.Errorf("%w: sync request lists %d %ss, at most %d", ErrInvalidCommand, len(list), what, MaxSyncEntries)
	}
	for i := 1; i < len(list); i++ {
		if compareHeld(list[i-1], list[i]) >= 0 {
			return fmt.Errorf("%w: sync request %ss not sorted or duplicated at %d", ErrInvalidCommand, what, i)
		}
	}
	return nil
}

// decodeSyncReport parses the plaintext of a sync request strictly.
func decodeSyncReport(b []byte) (*SyncReport, error) {
	if len(b) < 2 || b[0] != SyncVersion {
		return nil, fmt.Errorf("%w: not a version %d sync request", ErrInvalidCommand, SyncVersion)
	}
	if b[1]&^syncFlagFresh != 0 {
		return nil, fmt.Errorf("%w: sync request has unknown flags %#02x", ErrInvalidCommand, b[1])
	}
	r := &SyncReport{Fresh: b[1]&syncFlagFresh != 0}
	rest, err := readHeld(b[2:], &r.Topics, "topic")
	if err != nil {
		return nil, err
	}
	if rest, err = readHeld(rest, &r.PubKeys, "public key"); err != nil {
		return nil, err
	}
	if len(rest) != KeyTagLen {
		return nil, fmt.Errorf("%w: sync request has %d bytes after its lists, want %d", ErrInvalidCommand, len(rest), KeyTagLen)
	}
	r.C2Key = KeyTag(rest)
	return r, nil
}

// readHeld reads a count and its entries into *list and returns what follows.
func readHeld(b []byte, list *[]HeldKey, what string) ([]byte, error) {
	if len(b) < 2 {
		return nil, fmt.Errorf("%w: sync request truncated before the %s count", ErrInvalidCommand, what)
	}
	n := int(binary.LittleEndian.Uint16(b))
	b = b[2:]
	if n > MaxSyncEntries {
		return nil, fmt.Errorf("%w: sync request lists %d %ss, at most %d", ErrInvalidCommand, n, what, MaxSyncEntries)
	}
	if len(b) < n*syncEntryLen {
		return nil, fmt.Errorf("%w: sync request truncated in its %ss", ErrInvalidCommand, what)
	}
	if n > 0 {
		*list = make([]HeldKey, n)
	}
	for i := range n {
		e := b[i*syncEntryLen:]
		(*list)[i] = HeldKey{Hash: [16]byte(e[:16]), Tag: KeyTag(e[16:syncEntryLen])}
	}
	if err := checkHeld(what, *list); err != nil {
		return nil, err
	}
	return b[n*syncEntryLen:], nil
}

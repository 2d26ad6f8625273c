package e4

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/e4/command"
)

var writeSyncVectors = flag.Bool("write-sync-vectors", false, "regenerate testdata/sync-vectors.json (only when the format changes on purpose)")

const syncVectorsPath = "testdata/sync-vectors.json"

// MarshalJSON writes lower-case hex, as the vector files read it.
func (h hexBytes) MarshalJSON() ([]byte, error) { return json.Marshal(hex.EncodeToString(h)) }

func TestSyncTopic(t *testing.T) {
	id := IDFromName("dev")
	if got, want := SyncTopic(id), "e4/"+id.String()+"/sync"; got != want {
		t.Fatalf("SyncTopic = %q, want %q", got, want)
	}
}

func TestTagOfKey(t *testing.T) {
	key := bytes.Repeat([]byte{7}, KeyLen)
	sum := sha256.Sum256(append([]byte("e4kit key tag v1"), key...))
	if got := TagOfKey(key); !bytes.Equal(got[:], sum[:KeyTagLen]) {
		t.Fatalf("TagOfKey = %x, want %x", got, sum[:KeyTagLen])
	}
	if TagOfKey(testKeyA) == TagOfKey(testKeyB) {
		t.Fatal("two keys share a tag")
	}
}

func TestSyncRequestSymKey(t *testing.T) {
	clk := newClock(1764000000)
	c := newSK(t, &Config{Now: clk.Now})
	if !c.Fresh() {
		t.Fatal("a new client without a store is not fresh")
	}
	mustSetTopicKey(t, c, testKeyA, "a")
	mustSetTopicKey(t, c, testKeyB, "b")
	mustSetTopicKey(t, c, testKeyB, "gone")
	if err := sendCommand(t, c, clk, command.NewRemoveTopic(HashTopic("gone"))); err != nil {
		t.Fatal(err)
	}
	msg, err := c.SyncRequest()
	if err != nil {
		t.Fatal(err)
	}
	r, err := OpenSyncRequest(msg, clientKey, &Config{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	want := &SyncReport{Fresh: true, Topics: sortedHeld(
		HeldKey{Hash: HashTopic("a"), Tag: TagOfKey(testKeyA)},
		HeldKey{Hash: HashTopic("b"), Tag: TagOfKey(testKeyB)},
	), Time: clk.Now().Truncate(time.Second)}
	if !reflect.DeepEqual(r, want) {
		t.Fatalf("report %+v, want %+v (a removed topic is not reported)", r, want)
	}
	if _, err := OpenSyncRequest(msg, testKeyA, &Config{Now: clk.Now}); !errors.Is(err, ErrAuthentication) {
		t.Fatalf("opened under another key: %v", err)
	}
}

func TestSyncRequestPubKey(t *testing.T) {
	clk := newClock(1764000000)
	seed := bytes.Repeat([]byte{5}, ed25519.SeedSize)
	c2Private := bytes.Repeat([]byte{6}, 32)
	c2Public, err := commandKeyPublic(c2Private)
	if err != nil {
		t.Fatal(err)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	c, err := NewPubKeyClient(IDFromName("pk"), priv, c2Public, &Config{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	mustSetTopicKey(t, c, testKeyA, "a")
	peer := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{8}, ed25519.SeedSize)).Public().(ed25519.PublicKey)
	if err := c.SetPubKey(IDFromName("peer"), peer); err != nil {
		t.Fatal(err)
	}
	msg, err := c.SyncRequest()
	if err != nil {
		t.Fatal(err)
	}
	commandKey, err := C2CommandKey(c2Private, priv.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	r, err := OpenSyncRequest(msg, commandKey, &Config{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	want := &SyncReport{
		Fresh:   true,
		Topics:  []HeldKey{{Hash: HashTopic("a"), Tag: TagOfKey(testKeyA)}},
		PubKeys: []HeldKey{{Hash: IDFromName("peer"), Tag: TagOfKey(peer)}},
		C2Key:   TagOfKey(c2Public),
		Time:    clk.Now().Truncate(time.Second),
	}
	if !reflect.DeepEqual(r, want) {
		t.Fatalf("report %+v, want %+v", r, want)
	}
}

func sortedHeld(list ...HeldKey) []HeldKey {
	slices.SortFunc(list, compareHeld)
	return list
}

// heldList returns n sorted entries with distinct hashes.
func heldList(n int) []HeldKey {
	list := make([]HeldKey, n)
	for i := range list {
		binary.BigEndian.PutUint32(list[i].Hash[12:], uint32(i))
		list[i].Tag[0] = byte(i)
	}
	return list
}

func TestSyncReportCaps(t *testing.T) {
	now := time.Unix(1764000000, 0)
	cfg := fixedClock(1764000000)
	full := &SyncReport{Topics: heldList(MaxSyncEntries), PubKeys: heldList(MaxSyncEntries), Time: now}
	msg, err := ProtectSyncReport(full, clientKey, now)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := OpenSyncRequest(msg, clientKey, cfg); err != nil || !reflect.DeepEqual(r, full) {
		t.Fatalf("full report does not round-trip: %v", err)
	}
	for _, over := range []*SyncReport{{Topics: heldList(MaxSyncEntries + 1)}, {PubKeys: heldList(MaxSyncEntries + 1)}} {
		if _, err := ProtectSyncReport(over, clientKey, now); !errors.Is(err, ErrInvalidCommand) {
			t.Fatalf("report over the cap built: %v", err)
		}
	}
	// A client holding more topics than a report can carry refuses to build one.
	c := newSK(t, cfg)
	for _, k := range heldList(MaxSyncEntries + 1) {
		c.topics[TopicHash(k.Hash)] = &topicKeys{hash: TopicHash(k.Hash), current: c.commandCipher, key: [KeyLen]byte(testKeyA)}
	}
	if _, err := c.SyncRequest(); !errors.Is(err, ErrInvalidCommand) {
		t.Fatalf("SyncRequest over the cap: %v", err)
	}
}

// syncPlain builds a plaintext from raw parts, for the refusal table.
func syncPlain(version, flags byte, topics []HeldKey, rawTopicCount int, pubs []HeldKey, tail []byte) []byte {
	b := []byte{version, flags}
	b = binary.LittleEndian.AppendUint16(b, uint16(rawTopicCount))
	for _, k := range topics {
		b = append(append(b, k.Hash[:]...), k.Tag[:]...)
	}
	b = appendHeld(b, pubs)
	return append(b, tail...)
}

func TestOpenSyncRequestRefusals(t *testing.T) {
	two := heldList(2)
	swapped := []HeldKey{two[1], two[0]}
	dup := []HeldKey{two[0], two[0]}
	tag := make([]byte, KeyTagLen)
	over := heldList(MaxSyncEntries + 1)
	cases := map[string][]byte{
		"empty":                {},
		"version only":         {SyncVersion},
		"version 0":            syncPlain(0, 0, nil, 0, nil, tag),
		"version 2":            syncPlain(2, 0, nil, 0, nil, tag),
		"unknown flag":         syncPlain(SyncVersion, 2, nil, 0, nil, tag),
		"high flag":            syncPlain(SyncVersion, 0x81, nil, 0, nil, tag),
		"no C2 tag":            syncPlain(SyncVersion, 0, nil, 0, nil, nil),
		"short C2 tag":         syncPlain(SyncVersion, 0, nil, 0, nil, tag[:7]),
		"trailing byte":        syncPlain(SyncVersion, 0, nil, 0, nil, append(tag, 0)),
		"count beyond data":    syncPlain(SyncVersion, 0, two, 3, nil, tag),
		"count short of data":  syncPlain(SyncVersion, 0, two, 1, nil, tag),
		"unsorted topics":      syncPlain(SyncVersion, 0, swapped, 2, nil, tag),
		"duplicate topics":     syncPlain(SyncVersion, 0, dup, 2, nil, tag),
		"unsorted pubkeys":     syncPlain(SyncVersion, 0, nil, 0, swapped, tag),
		"duplicate pubkeys":    syncPlain(SyncVersion, 0, nil, 0, dup, tag),
		"too many topics":      syncPlain(SyncVersion, 0, over, len(over), nil, tag),
		"too many pubkeys":     syncPlain(SyncVersion, 0, nil, 0, over, tag),
		"huge count, no data":  syncPlain(SyncVersion, 0, nil, 0xffff, nil, tag),
		"no pubkey count":      syncPlain(SyncVersion, 0, two, 2, nil, nil)[:2+2+2*syncEntryLen],
		"half a pubkey count":  syncPlain(SyncVersion, 0, two, 2, nil, nil)[:2+2+2*syncEntryLen+1],
		"half a topic count":   {SyncVersion, 0, 0},
		"an ack, not a report": {AckVersion, byte(AckApplied), 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
	}
	now := time.Unix(1764000000, 0)
	for name, plain := range cases {
		msg, err := ProtectSymKey(nil, plain, clientKey, now)
		if err != nil {
			t.Fatal(err)
		}
		if r, err := OpenSyncRequest(msg, clientKey, fixedClock(1764000000)); !errors.Is(err, ErrInvalidCommand) || r != nil {
			t.Errorf("%s: OpenSyncRequest = %+v, %v; want ErrInvalidCommand", name, r, err)
		}
	}
}

func TestSyncRequestTruncationAndBitFlips(t *testing.T) {
	r := &SyncReport{Fresh: true, Topics: heldList(3), PubKeys: heldList(2), C2Key: KeyTag{1, 2, 3}}
	now := time.Unix(1764000000, 0)
	cfg := fixedClock(1764000000)
	plain, err := r.encode()
	if err != nil {
		t.Fatal(err)
	}
	// Every strict prefix and every extension of the plaintext is refused
	// as content, even though it authenticates.
	for n := range len(plain) {
		msg, err := ProtectSymKey(nil, plain[:n], clientKey, now)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := OpenSyncRequest(msg, clientKey, cfg); !errors.Is(err, ErrInvalidCommand) {
			t.Fatalf("plaintext cut to %d bytes: %v", n, err)
		}
	}
	msg, err := ProtectSyncReport(r, clientKey, now)
	if err != nil {
		t.Fatal(err)
	}
	// Every truncation and every bit flip of the protected request fails.
	for n := range len(msg) {
		if _, err := OpenSyncRequest(msg[:n], clientKey, cfg); err == nil {
			t.Fatalf("request cut to %d bytes accepted", n)
		}
	}
	for i := range len(msg) * 8 {
		bad := bytes.Clone(msg)
		bad[i/8] ^= 1 << (i % 8)
		if _, err := OpenSyncRequest(bad, clientKey, cfg); err == nil {
			t.Fatalf("bit %d flipped accepted", i)
		}
	}
	// And the time checks apply: an old request is refused.
	if _, err := OpenSyncRequest(msg, clientKey, fixedClock(1764000000+3600)); !errors.Is(err, ErrTimestampTooOld) {
		t.Fatalf("hour-old request: %v", err)
	}
}

// syncVector is one known answer: a report built from named topics and keys,
// its plaintext, and its protection under Key at Timestamp.
type syncVector struct {
	Name      string        `json:"name"`
	Key       hexBytes      `json:"key"`
	Timestamp int64         `json:"timestamp"`
	Fresh     bool          `json:"fresh"`
	Topics    []syncVecKey  `json:"topics"`
	PubKeys   []syncVecPeer `json:"pubkeys"`
	C2Public  hexBytes      `json:"c2_public"`
	Plaintext hexBytes      `json:"plaintext"`
	Protected hexBytes      `json:"protected"`
}

type syncVecKey struct {
	Topic string   `json:"topic"`
	Key   hexBytes `json:"key"`
}

type syncVecPeer struct {
	ID        hexBytes `json:"id"`
	PublicKey hexBytes `json:"public_key"`
}

// report builds the SyncReport the vector describes.
func (v *syncVector) report() *SyncReport {
	r := &SyncReport{Fresh: v.Fresh}
	for _, k := range v.Topics {
		r.Topics = append(r.Topics, HeldKey{Hash: HashTopic(k.Topic), Tag: TagOfKey(k.Key)})
	}
	for _, p := range v.PubKeys {
		r.PubKeys = append(r.PubKeys, HeldKey{Hash: [16]byte(p.ID), Tag: TagOfKey(p.PublicKey)})
	}
	if len(v.C2Public) > 0 {
		r.C2Key = TagOfKey(v.C2Public)
	}
	slices.SortFunc(r.Topics, compareHeld)
	slices.SortFunc(r.PubKeys, compareHeld)
	return r
}

func syncVectorInputs() []syncVector {
	key := func(b byte) hexBytes { return bytes.Repeat([]byte{b}, KeyLen) }
	pub := func(b byte) hexBytes {
		return hexBytes(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{b}, ed25519.SeedSize)).Public().(ed25519.PublicKey))
	}
	id := func(name string) hexBytes { i := IDFromName(name); return i[:] }
	c2Public, _ := commandKeyPublic(bytes.Repeat([]byte{6}, 32))
	return []syncVector{
		{Name: "sk fresh, nothing held", Key: key(0xc3), Timestamp: 1764000000, Fresh: true},
		{Name: "sk two topics", Key: key(0xc3), Timestamp: 1764000001,
			Topics: []syncVecKey{{"sensors/temp", key(0xa1)}, {"actuators/valve", key(0xb2)}}},
		{Name: "pk topics, peers and C2 key", Key: key(0x42), Timestamp: 1764000002,
			Topics:   []syncVecKey{{"sensors/temp", key(0xa1)}},
			PubKeys:  []syncVecPeer{{id("peer-1"), pub(8)}, {id("peer-2"), pub(9)}},
			C2Public: c2Public},
	}
}

func TestSyncVectors(t *testing.T) {
	if *writeSyncVectors {
		vs := syncVectorInputs()
		for i := range vs {
			v := &vs[i]
			plain, err := v.report().encode()
			if err != nil {
				t.Fatal(err)
			}
			v.Plaintext = plain
			if v.Protected, err = ProtectSyncReport(v.report(), v.Key, time.Unix(v.Timestamp, 0)); err != nil {
				t.Fatal(err)
			}
		}
		out, err := json.MarshalIndent(vs, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(syncVectorsPath, append(out, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := os.ReadFile(syncVectorsPath)
	if err != nil {
		t.Fatal(err)
	}
	var vs []syncVector
	if err := json.Unmarshal(raw, &vs); err != nil {
		t.Fatal(err)
	}
	if len(vs) < 3 {
		t.Fatalf("%d sync vectors", len(vs))
	}
	for _, v := range vs {
		want := v.report()
		plain, err := want.encode()
		if err != nil || !bytes.Equal(plain, v.Plaintext) {
			t.Errorf("%s: plaintext %x, want %x (%v)", v.Name, plain, v.Plaintext, err)
		}
		msg, err := ProtectSyncReport(want, v.Key, time.Unix(v.Timestamp, 0))
		if err != nil || !bytes.Equal(msg, v.Protected) {
			t.Errorf("%s: protected %x, want %x (%v)", v.Name, msg, v.Protected, err)
		}
		got, err := OpenSyncRequest(v.Protected, v.Key, fixedClock(uint64(v.Timestamp)))
		want.Time = time.Unix(v.Timestamp, 0)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: opened %+v, want %+v (%v)", v.Name, got, want, err)
		}
	}
}

func FuzzOpenSyncRequest(f *testing.F) {
	raw, err := os.ReadFile(syncVectorsPath)
	if err != nil {
		f.Fatal(err)
	}
	var vs []syncVector
	if err := json.Unmarshal(raw, &vs); err != nil {
		f.Fatal(err)
	}
	for _, v := range vs {
		if bytes.Equal(v.Key, clientKey) {
			f.Add([]byte(v.Protected))
		}
	}
	full := must[[]byte](f)(ProtectSyncReport(&SyncReport{Topics: heldList(40), PubKeys: heldList(3), C2Key: KeyTag{9}}, clientKey, time.Unix(fuzzNow, 0)))
	f.Add(full)
	cfg := fuzzConfig()
	f.Fuzz(func(t *testing.T, msg []byte) {
		r, err := OpenSyncRequest(msg, clientKey, cfg)
		if err != nil {
			if r != nil || !isSentinel(err) {
				t.Fatalf("error %v with report %+v", err, r)
			}
			return
		}
		// Whatever is accepted is exactly what an honest device would send.
		again, err := ProtectSyncReport(r, clientKey, timeOf(msg))
		if err != nil || !bytes.Equal(again, msg) {
			t.Fatalf("accepted %x, but an honest device would send %x (%v)", msg, again, err)
		}
	})
}

// FuzzSyncReportContent reaches the decoder with authentic requests of any
// content: whatever it accepts must encode back to the same bytes.
func FuzzSyncReportContent(f *testing.F) {
	for _, r := range []*SyncReport{{}, {Fresh: true, Topics: heldList(2)}, {Topics: heldList(1), PubKeys: heldList(3), C2Key: KeyTag{1}}} {
		plain, _ := r.encode()
		f.Add(plain)
	}
	now := time.Unix(fuzzNow, 0)
	cfg := fuzzConfig()
	f.Fuzz(func(t *testing.T, plain []byte) {
		msg, err := ProtectSymKey(nil, plain, clientKey, now)
		if err != nil {
			t.Fatal(err)
		}
		r, err := OpenSyncRequest(msg, clientKey, cfg)
		if err != nil {
			if r != nil || !errors.Is(err, ErrInvalidCommand) {
				t.Fatalf("error %v with report %+v", err, r)
			}
			return
		}
		again, err := r.encode()
		if err != nil || !bytes.Equal(again, plain) {
			t.Fatalf("accepted %x, re-encoded %x (%v)", plain, again, err)
		}
	})
}

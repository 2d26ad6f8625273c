package e4

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/e4/command"
	"github.com/e4-iot/e4kit/e4/store"
)

// The regression tests of command ordering restart the client from its store
// between the original commands and the replay, as a device that rebooted:
// the replay cache is empty then, only the saved marks remain.

// orderRig is a device with a store, and the C2 side that commands it.
type orderRig struct {
	t          *testing.T
	clk        *clock
	st         *store.Memory
	c          *Client
	commandKey []byte
	pkSeed     []byte // PK mode: the client's seed
	c2Public   []byte
}

func newOrderRig(t *testing.T, mode Mode) *orderRig {
	r := &orderRig{t: t, clk: newClock(1764000000), st: store.NewMemory()}
	if mode == SymKey {
		r.commandKey = clientKey
	} else {
		r.pkSeed = bytes.Repeat([]byte{5}, ed25519.SeedSize)
		c2Private := bytes.Repeat([]byte{6}, 32)
		r.c2Public, _ = commandKeyPublic(c2Private)
		r.commandKey, _ = C2CommandKey(c2Private, ed25519.NewKeyFromSeed(r.pkSeed).Public().(ed25519.PublicKey))
	}
	r.boot()
	return r
}

// boot starts (or restarts) the device from its store.
func (r *orderRig) boot() {
	r.t.Helper()
	var err error
	cfg := &Config{Now: r.clk.Now, Store: r.st}
	if r.pkSeed == nil {
		r.c, err = NewSymKeyClient(IDFromName("ordered"), clientKey, cfg)
	} else {
		r.c, err = NewPubKeyClient(IDFromName("ordered"), ed25519.NewKeyFromSeed(r.pkSeed), r.c2Public, cfg)
	}
	if err != nil {
		r.t.Fatal(err)
	}
}

// protect dates cmd at the clock's time, as C2 would send it.
func (r *orderRig) protect(cmd []byte) []byte {
	r.t.Helper()
	p, err := ProtectCommand(cmd, r.commandKey, r.clk.Now())
	if err != nil {
		r.t.Fatal(err)
	}
	return p
}

// send protects cmd at the clock's time, applies it, then moves the clock a
// second on; it returns the protected command for replays.
func (r *orderRig) send(cmd []byte) []byte {
	r.t.Helper()
	p := r.protect(cmd)
	if _, err := r.c.HandleCommand(p); err != nil {
		r.t.Fatalf("%v: %v", command.Code(cmd[0]), err)
	}
	r.clk.advance(time.Second)
	return p
}

// topicKey returns the current key of a topic, nil if none.
func (r *orderRig) topicKey(topic string) []byte {
	r.c.mu.RLock()
	defer r.c.mu.RUnlock()
	if t := r.c.topics[HashTopic(topic)]; t != nil && t.current != nil {
		return bytes.Clone(t.key[:])
	}
	return nil
}

// replayRefused applies an old command and checks it is refused with want
// and changes nothing.
func (r *orderRig) replayRefused(old []byte, want error) {
	r.t.Helper()
	before := savedForm(r.t, r.c)
	if _, err := r.c.HandleCommand(old); !errors.Is(err, want) {
		r.t.Fatalf("replayed command: %v, want %v", err, want)
	}
	if !bytes.Equal(savedForm(r.t, r.c), before) {
		r.t.Fatal("the replayed command changed the state")
	}
}

// (a) A RemoveTopic replayed after a restart must not delete the key
// installed since.
func TestReplayedRemoveTopicAfterRestart(t *testing.T) {
	r := newOrderRig(t, SymKey)
	r.send(mustCmd(command.NewSetTopicKey(testKeyA, HashTopic(testTopic))))
	remove := r.send(command.NewRemoveTopic(HashTopic(testTopic)))
	r.send(mustCmd(command.NewSetTopicKey(testKeyB, HashTopic(testTopic))))
	r.boot()
	r.replayRefused(remove, ErrStaleCommand)
	if !bytes.Equal(r.topicKey(testTopic), testKeyB) {
		t.Fatal("the key installed after the RemoveTopic is gone")
	}
}

// (b) A ResetTopics replayed after a restart must not wipe the keys
// installed since. It is the last ResetTopics applied, so it is reported as
// a replay (and acknowledged as applied).
func TestReplayedResetTopicsAfterRestart(t *testing.T) {
	r := newOrderRig(t, SymKey)
	reset := r.send(command.NewResetTopics())
	r.send(mustCmd(command.NewSetTopicKey(testKeyA, HashTopic(testTopic))))
	r.boot()
	r.replayRefused(reset, ErrReplay)
	if !bytes.Equal(r.topicKey(testTopic), testKeyA) {
		t.Fatal("the key installed after the ResetTopics is gone")
	}
	_, ack, err := r.c.HandleCommandAck(reset)
	if !errors.Is(err, ErrReplay) || ack == nil {
		t.Fatalf("HandleCommandAck of the replay: %x, %v", ack, err)
	}
	if _, status, err := OpenAck(ack, r.commandKey, &Config{Now: r.clk.Now}); err != nil || status != AckApplied {
		t.Fatalf("a duplicate is acknowledged as %v (%v), want applied", status, err)
	}
}

// (c) Two SetTopicKey dated in the same second: the second is not newer
// than the first, so it is refused, and the first replayed after a restart
// changes nothing (on the old code, equal timestamps passed, and the replay
// brought the superseded key back).
func TestSameSecondSetTopicKeysAfterRestart(t *testing.T) {
	r := newOrderRig(t, SymKey)
	first := r.protect(mustCmd(command.NewSetTopicKey(testKeyA, HashTopic(testTopic))))
	second := r.protect(mustCmd(command.NewSetTopicKey(testKeyB, HashTopic(testTopic))))
	if _, err := r.c.HandleCommand(first); err != nil {
		t.Fatal(err)
	}
	_, err := r.c.HandleCommand(second)
	if err != nil && !errors.Is(err, ErrStaleCommand) {
		t.Fatal(err)
	}
	held := r.topicKey(testTopic)
	r.boot()
	if _, err := r.c.HandleCommand(first); err == nil {
		t.Fatal("the first SetTopicKey applied again after a restart")
	}
	if !bytes.Equal(r.topicKey(testTopic), held) {
		t.Fatal("a replayed SetTopicKey replaced the key the device held")
	}

	// C2 dates its commands strictly increasingly: then the second wins,
	// and the first is stale for good.
	r.clk.advance(time.Second)
	r.send(mustCmd(command.NewSetTopicKey(testKeyA, HashTopic("other"))))
	newer := r.send(mustCmd(command.NewSetTopicKey(testKeyB, HashTopic("other"))))
	r.boot()
	r.replayRefused(newer, ErrReplay)
	if !bytes.Equal(r.topicKey("other"), testKeyB) {
		t.Fatal("the newer key is not held")
	}
}

// (d) In PK mode a SetPubKey replayed after a restart must not make a
// revoked sender trusted again.
func TestReplayedSetPubKeyAfterRestart(t *testing.T) {
	r := newOrderRig(t, PubKey)
	peer := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{8}, ed25519.SeedSize)).Public().(ed25519.PublicKey)
	set := r.send(mustCmd(command.NewSetPubKey(peer, IDFromName("peer"))))
	r.send(command.NewRemovePubKey(IDFromName("peer")))
	r.boot()
	r.replayRefused(set, ErrStaleCommand)
	if r.c.signer(IDFromName("peer")) != nil {
		t.Fatal("a revoked sender is trusted again")
	}
}

// Every singleton item refuses a replay of an older command after a restart.
func TestSingletonMarksSurviveRestart(t *testing.T) {
	r := newOrderRig(t, PubKey)
	peer := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{8}, ed25519.SeedSize)).Public().(ed25519.PublicKey)
	resetPub := r.send(command.NewResetPubKeys())
	r.send(mustCmd(command.NewSetPubKey(peer, IDFromName("peer"))))
	r.boot()
	r.replayRefused(resetPub, ErrReplay)
	if r.c.signer(IDFromName("peer")) == nil {
		t.Fatal("a replayed ResetPubKeys removed a sender set since")
	}
	olderReset := r.protect(command.NewResetPubKeys())
	r.clk.advance(time.Second)

	c2Private := bytes.Repeat([]byte{7}, 32)
	c2Public, err := commandKeyPublic(c2Private)
	if err != nil {
		t.Fatal(err)
	}
	r.send(mustCmd(command.NewSetC2Key(c2Public)))
	r.c2Public = c2Public
	r.commandKey, _ = C2CommandKey(c2Private, ed25519.NewKeyFromSeed(r.pkSeed).Public().(ed25519.PublicKey))
	r.boot()
	r.replayRefused(olderReset, ErrAuthentication) // under the old command key
	// Under the current command key, older commands are stale.
	r.clk.advance(-4 * time.Second) // the time of the last ResetPubKeys
	r.replayRefused(r.protect(command.NewResetPubKeys()), ErrStaleCommand)
	r.replayRefused(r.protect(mustCmd(command.NewSetC2Key(c2Public))), ErrStaleCommand)

	s := newOrderRig(t, SymKey)
	newKey := bytes.Repeat([]byte{0x5e}, KeyLen)
	s.send(mustCmd(command.NewSetIDKey(newKey)))
	s.commandKey = newKey
	s.boot()
	s.clk.advance(-2 * time.Second)
	s.replayRefused(s.protect(mustCmd(command.NewSetIDKey(clientKey))), ErrStaleCommand)
}

// A ResetTopics older than a topic's last change keeps that topic: the
// reset happened before the key was installed.
func TestDelayedResetKeepsNewerTopics(t *testing.T) {
	r := newOrderRig(t, SymKey)
	reset := r.protect(command.NewResetTopics())
	r.clk.advance(time.Second)
	r.send(mustCmd(command.NewSetTopicKey(testKeyA, HashTopic(testTopic))))
	if _, err := r.c.HandleCommand(reset); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(r.topicKey(testTopic), testKeyA) {
		t.Fatal("a delayed ResetTopics removed a newer key")
	}
}

// RemoveTopic at t then SetTopicKey at t+1 leaves the new key and no previous
// key (C2's removal rotation relies on it).
func TestRemoveThenSetLeavesNoPreviousKey(t *testing.T) {
	r := newOrderRig(t, SymKey)
	r.send(mustCmd(command.NewSetTopicKey(testKeyA, HashTopic(testTopic))))
	r.send(command.NewRemoveTopic(HashTopic(testTopic)))
	r.send(mustCmd(command.NewSetTopicKey(testKeyB, HashTopic(testTopic))))
	for range 2 {
		r.c.mu.RLock()
		tk := r.c.topics[HashTopic(testTopic)]
		r.c.mu.RUnlock()
		if tk == nil || !bytes.Equal(tk.key[:], testKeyB) || tk.previous != nil || tk.hasPrevKey {
			t.Fatal("after RemoveTopic and SetTopicKey the device holds another key than the new one")
		}
		old, err := ProtectSymKey(nil, []byte("x"), testKeyA, r.clk.Now())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.c.Unprotect(nil, old, testTopic); !errors.Is(err, ErrAuthentication) {
			t.Fatalf("a message under the removed key: %v", err)
		}
		r.boot()
	}
}

// Commands may be dated up to CommandFutureSkew ahead; messages may not.
func TestCommandFutureSkew(t *testing.T) {
	clk := newClock(1764000000)
	c := newSK(t, &Config{Now: clk.Now})
	ahead := func(d time.Duration, cmd []byte) error {
		_, err := c.HandleCommand(must[[]byte](t)(ProtectCommand(cmd, clientKey, clk.Now().Add(d))))
		return err
	}
	if err := ahead(DefaultCommandFutureSkew, mustCmd(command.NewSetTopicKey(testKeyA, HashTopic(testTopic)))); err != nil {
		t.Fatalf("command 2 minutes ahead: %v", err)
	}
	if err := ahead(DefaultCommandFutureSkew+time.Second, command.NewRemoveTopic(HashTopic("x"))); !errors.Is(err, ErrTimestampInFuture) {
		t.Fatalf("command 2 minutes and 1 s ahead: %v", err)
	}
	msg := must[[]byte](t)(ProtectSymKey(nil, []byte("x"), testKeyA, clk.Now().Add(time.Second)))
	if _, err := c.Unprotect(nil, msg, testTopic); !errors.Is(err, ErrTimestampInFuture) {
		t.Fatalf("message 1 s ahead: %v", err)
	}
	strict := newSK(t, &Config{Now: clk.Now, CommandFutureSkew: -1})
	p := must[[]byte](t)(ProtectCommand(command.NewRemoveTopic(HashTopic("x")), clientKey, clk.Now().Add(time.Second)))
	if _, err := strict.HandleCommand(p); !errors.Is(err, ErrTimestampInFuture) {
		t.Fatalf("negative CommandFutureSkew: %v", err)
	}
}

// Tombstones older than the validity window are forgotten; without a clock
// they are kept.
func TestTombstonesAreBounded(t *testing.T) {
	for _, noClock := range []bool{false, true} {
		clk := newClock(1764000000)
		c := newSK(t, &Config{Now: clk.Now, NoClock: noClock})
		if err := sendCommand(t, c, clk, command.NewRemoveTopic(HashTopic("old"))); err != nil {
			t.Fatal(err)
		}
		clk.advance(DefaultMaxAge + 2*time.Second)
		if err := sendCommand(t, c, clk, command.NewRemoveTopic(HashTopic("new"))); err != nil {
			t.Fatal(err)
		}
		_, kept := c.topics[HashTopic("old")]
		if kept != noClock {
			t.Fatalf("NoClock %v: old tombstone kept: %v", noClock, kept)
		}
		if _, ok := c.topics[HashTopic("new")]; !ok {
			t.Fatal("the new tombstone is gone")
		}
	}
}

// A version-1 state (before command marks) still loads, with its reset
// and topic timestamps as marks.
func TestLoadsVersion1State(t *testing.T) {
	v1 := map[string]any{
		"version": 1, "mode": "sk", "id": idBytes("old"), "key": clientKey,
		"topics_reset_at": 1764000005,
		"topics": []map[string]any{
			{"hash": hashBytes(testTopic), "key": testKeyA, "changed_at": 1764000010},
			{"hash": hashBytes("removed"), "changed_at": 1764000011},
		},
	}
	blob, err := json.Marshal(v1)
	if err != nil {
		t.Fatal(err)
	}
	st := store.NewMemory()
	if err := st.Save(blob); err != nil {
		t.Fatal(err)
	}
	clk := newClock(1764000020)
	c, err := LoadClient(&Config{Now: clk.Now, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	if !c.HasTopicKey(testTopic) || c.resetTopics.at != 1764000005 {
		t.Fatal("version-1 state not restored")
	}
	stale, err := ProtectCommand(mustCmd(command.NewSetTopicKey(testKeyB, HashTopic("removed"))), clientKey, time.Unix(1764000011, 0))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.HandleCommand(stale); !errors.Is(err, ErrStaleCommand) {
		t.Fatalf("command not newer than a version-1 tombstone: %v", err)
	}
	if err := sendCommand(t, c, clk, mustCmd(command.NewSetTopicKey(testKeyB, HashTopic("new")))); err != nil {
		t.Fatal(err)
	}
	var saved savedState
	raw, err := st.Load()
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &saved); err != nil || saved.Version != stateVersion || saved.Marks == nil {
		t.Fatalf("saved again as version %d (%v)", saved.Version, err)
	}
}

func hashBytes(topic string) []byte { h := HashTopic(topic); return h[:] }
func idBytes(name string) []byte    { id := IDFromName(name); return id[:] }

// A refused command sent again is refused again, never acknowledged as
// applied: C2 matches acknowledgements to commands by digest.
func TestRefusedCommandSentAgainIsRefusedAgain(t *testing.T) {
	r := newOrderRig(t, SymKey)
	stale := r.protect(mustCmd(command.NewSetTopicKey(testKeyA, HashTopic(testTopic))))
	r.clk.advance(time.Second)
	r.send(command.NewRemoveTopic(HashTopic(testTopic)))
	for range 2 {
		_, ack, err := r.c.HandleCommandAck(stale)
		if !errors.Is(err, ErrStaleCommand) {
			t.Fatalf("stale command: %v", err)
		}
		if _, status, err := OpenAck(ack, r.commandKey, &Config{Now: r.clk.Now}); err != nil || status != AckRefused {
			t.Fatalf("acknowledged as %v (%v), want refused", status, err)
		}
	}
}

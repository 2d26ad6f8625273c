package e4

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/e4/command"
	"github.com/e4-iot/e4kit/e4/store"
)

// clock is a settable test clock.
type clock struct{ unix atomic.Int64 }

func newClock(unix int64) *clock {
	c := &clock{}
	c.unix.Store(unix)
	return c
}

func (c *clock) Now() time.Time          { return time.Unix(c.unix.Load(), 0) }
func (c *clock) advance(d time.Duration) { c.unix.Add(int64(d / time.Second)) }

const testTopic = "sensors/temp"

var (
	testKeyA  = bytes.Repeat([]byte{0xa1}, KeyLen)
	testKeyB  = bytes.Repeat([]byte{0xb2}, KeyLen)
	clientKey = bytes.Repeat([]byte{0xc3}, KeyLen)
)

func newSK(t testing.TB, cfg *Config) *Client {
	t.Helper()
	c, err := NewSymKeyClient(IDFromName("device"), clientKey, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// sendCommand protects cmd for an SK client under clientKey at the clock's time.
func sendCommand(t testing.TB, c *Client, clk *clock, cmd []byte) error {
	t.Helper()
	p, err := ProtectCommand(cmd, clientKey, clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Unprotect(nil, p, c.ControlTopic())
	return err
}

func TestEveryBitFlipAndTruncationFails(t *testing.T) {
	for _, mode := range []Mode{SymKey, PubKey} {
		clk := newClock(1764000000)
		c, sender := pairForMode(t, mode, clk)
		msg, err := sender.Protect(nil, []byte("hello, e4"), testTopic)
		if err != nil {
			t.Fatal(err)
		}
		for i := range msg {
			for bit := range 8 {
				bad := bytes.Clone(msg)
				bad[i] ^= 1 << bit
				if pt, err := c.Unprotect(nil, bad, testTopic); err == nil {
					t.Fatalf("%v: flip of byte %d bit %d accepted: %q", mode, i, bit, pt)
				}
			}
		}
		for n := range len(msg) {
			if _, err := c.Unprotect(nil, msg[:n], testTopic); err == nil {
				t.Fatalf("%v: truncation to %d bytes accepted", mode, n)
			}
		}
		if _, err := c.Unprotect(nil, msg, testTopic); err != nil {
			t.Fatalf("%v: intact message refused: %v", mode, err)
		}
	}
}

// pairForMode returns a receiver and a sender sharing testKeyA on testTopic.
func pairForMode(t testing.TB, mode Mode, clk *clock) (receiver, sender *Client) {
	t.Helper()
	if mode == SymKey {
		receiver, sender = newSK(t, &Config{Now: clk.Now}), newSK(t, &Config{Now: clk.Now})
	} else {
		c2 := bytes.Repeat([]byte{9}, 32)
		sPriv, sPub := mustKeyPair(t.(*testing.T))
		rPriv, _ := mustKeyPair(t.(*testing.T))
		var err error
		if sender, err = NewPubKeyClient(IDFromName("sender"), sPriv, c2, &Config{Now: clk.Now}); err != nil {
			t.Fatal(err)
		}
		if receiver, err = NewPubKeyClient(IDFromName("receiver"), rPriv, c2, &Config{Now: clk.Now}); err != nil {
			t.Fatal(err)
		}
		if err := receiver.SetPubKey(sender.ID(), sPub); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []*Client{receiver, sender} {
		if err := c.SetTopicKey(testKeyA, testTopic); err != nil {
			t.Fatal(err)
		}
	}
	return receiver, sender
}

func TestTimeWindow(t *testing.T) {
	clk := newClock(1764000000)
	c := newSK(t, &Config{Now: clk.Now, MaxFutureSkew: 30 * time.Second, MaxAge: time.Minute})
	mustSetTopicKey(t, c, testKeyA, testTopic)
	at := func(offset int64) []byte {
		p, err := ProtectSymKey(nil, []byte(fmt.Sprint(offset)), testKeyA, time.Unix(clk.unix.Load()+offset, 0))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		offset int64
		want   error
	}{{0, nil}, {30, nil}, {31, ErrTimestampInFuture}, {-60, nil}, {-61, ErrTimestampTooOld}}
	for _, tc := range cases {
		if _, err := c.Unprotect(nil, at(tc.offset), testTopic); !errors.Is(err, tc.want) {
			t.Errorf("offset %d: error %v, want %v", tc.offset, err, tc.want)
		}
	}
	noClock := newSK(t, &Config{Now: clk.Now, NoClock: true})
	mustSetTopicKey(t, noClock, testKeyA, testTopic)
	for _, offset := range []int64{-100000, 100000} {
		if _, err := noClock.Unprotect(nil, at(offset), testTopic); err != nil {
			t.Errorf("NoClock, offset %d: %v", offset, err)
		}
	}
	top := at(0)
	top[7] |= 0x80
	if _, err := noClock.Unprotect(nil, top, testTopic); !errors.Is(err, ErrTimestampTooOld) {
		t.Errorf("top bit set with NoClock: %v, want ErrTimestampTooOld", err)
	}
}

func TestReplayRefused(t *testing.T) {
	clk := newClock(1764000000)
	c, sender := pairForMode(t, SymKey, clk)
	msg, err := sender.Protect(nil, []byte("once"), testTopic)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Unprotect(nil, msg, testTopic); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Unprotect(nil, msg, testTopic); !errors.Is(err, ErrReplay) {
		t.Fatalf("replay: %v, want ErrReplay", err)
	}
	// The same bytes on another topic with the same key are a different message.
	mustSetTopicKey(t, c, testKeyA, "other")
	if _, err := c.Unprotect(nil, msg, "other"); err != nil {
		t.Fatalf("same bytes on another topic: %v", err)
	}
	off := newSK(t, &Config{Now: clk.Now, ReplayCacheSize: -1})
	mustSetTopicKey(t, off, testKeyA, testTopic)
	for range 2 {
		if _, err := off.Unprotect(nil, msg, testTopic); err != nil {
			t.Fatalf("replay protection off: %v", err)
		}
	}
}

func TestReplayCacheFullRaisesFloor(t *testing.T) {
	clk := newClock(1764000000)
	c := newSK(t, &Config{Now: clk.Now, ReplayCacheSize: 4})
	mustSetTopicKey(t, c, testKeyA, testTopic)
	var msgs [][]byte
	for i := range 6 {
		p, err := ProtectSymKey(nil, []byte{byte(i)}, testKeyA, time.Unix(clk.unix.Load()-10+int64(i), 0))
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, p)
		if _, err := c.Unprotect(nil, p, testTopic); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	// Messages 0 and 1 were evicted while still inside the window: their
	// replay must still be refused, via the floor.
	for i, p := range msgs {
		if _, err := c.Unprotect(nil, p, testTopic); !errors.Is(err, ErrReplay) {
			t.Errorf("replay of message %d: %v", i, err)
		}
	}
	// A message dated at or before the floor is refused even if new.
	old, err := ProtectSymKey(nil, []byte("late"), testKeyA, time.Unix(clk.unix.Load()-9, 0))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Unprotect(nil, old, testTopic); !errors.Is(err, ErrReplay) {
		t.Errorf("message older than the floor: %v", err)
	}
	fresh, err := ProtectSymKey(nil, []byte("fresh"), testKeyA, clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Unprotect(nil, fresh, testTopic); err != nil {
		t.Errorf("fresh message: %v", err)
	}
}

func TestReplayCacheForgetsExpired(t *testing.T) {
	rc := newReplayCache(3)
	fp := func(i uint64) [2]uint64 { return [2]uint64{i * 0x9e3779b97f4a7c15, i} }
	for i := uint64(1); i <= 3; i++ {
		if !rc.accept(fp(i), 100+i, 0) {
			t.Fatalf("entry %d refused", i)
		}
	}
	// Everything older than 200 has left the window: no floor is raised.
	for i := uint64(4); i <= 6; i++ {
		if !rc.accept(fp(i), 200+i, 200) {
			t.Fatalf("entry %d refused", i)
		}
	}
	if rc.floor != 0 {
		t.Errorf("floor %d, want 0: expired entries must be forgotten freely", rc.floor)
	}
	for i := uint64(4); i <= 6; i++ {
		if rc.accept(fp(i), 200+i, 200) {
			t.Errorf("entry %d accepted twice", i)
		}
	}
}

func TestReplayCacheGrowsBeforeRaisingTheFloor(t *testing.T) {
	rc := newReplayCache(3 * initialReplayCache)
	fp := func(i uint64) [2]uint64 { return [2]uint64{i * 0x9e3779b97f4a7c15, i} }
	// A burst inside one second, three times the initial size: the cache
	// must grow rather than refuse fresh messages.
	n := uint64(3 * initialReplayCache)
	for i := range n {
		if !rc.accept(fp(i), 1000, 900) {
			t.Fatalf("message %d of the burst refused (floor %d, size %d)", i, rc.floor, len(rc.ring))
		}
	}
	if rc.floor != 0 || len(rc.ring) != int(n) {
		t.Fatalf("floor %d, ring %d; want 0 and %d", rc.floor, len(rc.ring), n)
	}
	for i := range n {
		if rc.accept(fp(i), 1000, 900) {
			t.Fatalf("message %d accepted twice after growth", i)
		}
	}
	// At the maximum, the floor takes over.
	if rc.accept(fp(n), 1000, 900) {
		t.Fatal("message beyond the maximum, in the same second, accepted")
	}
	if !rc.accept(fp(n+1), 1001, 900) {
		t.Fatal("newer message refused")
	}
}

func TestReplayCacheManyEntries(t *testing.T) {
	// Exercise backward-shift deletion heavily (few home slots), and full
	// fingerprint comparison (equal index tags): lookups must stay exact.
	generators := map[string]func(i uint64) [2]uint64{
		"crowded home slots": func(i uint64) [2]uint64 { return [2]uint64{i * 0x9e3779b97f4a7c15 & 0xff, i} },
		"equal tags":         func(i uint64) [2]uint64 { return [2]uint64{i * 0x9e3779b97f4a7c15, 7} },
	}
	for name, fp := range generators {
		rc := newReplayCache(64)
		for i := uint64(0); i < 5000; i++ {
			if !rc.accept(fp(i), 1000+i, 1000+i-32) {
				t.Fatalf("%s: entry %d refused", name, i)
			}
			if rc.accept(fp(i), 1000+i, 1000+i-32) {
				t.Fatalf("%s: entry %d accepted twice", name, i)
			}
			if i >= 20 && rc.accept(fp(i-20), 1000+i-20, 1000+i-32) {
				t.Fatalf("%s: entry %d forgotten too early", name, i-20)
			}
		}
	}
}

func TestKeyTransition(t *testing.T) {
	clk := newClock(1764000000)
	c := newSK(t, &Config{Now: clk.Now})
	if err := sendCommand(t, c, clk, mustCmd(command.NewSetTopicKey(testKeyA, HashTopic(testTopic)))); err != nil {
		t.Fatal(err)
	}
	oldMsg := func() []byte {
		return must[[]byte](t)(ProtectSymKey(nil, []byte("old key"), testKeyA, clk.Now()))
	}
	clk.advance(time.Second)
	if err := sendCommand(t, c, clk, mustCmd(command.NewSetTopicKey(testKeyB, HashTopic(testTopic)))); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Unprotect(nil, oldMsg(), testTopic); err != nil {
		t.Fatalf("previous key inside the transition: %v", err)
	}
	// The same key again must not reset the transition (the old key stays).
	clk.advance(time.Second)
	if err := sendCommand(t, c, clk, mustCmd(command.NewSetTopicKey(testKeyB, HashTopic(testTopic)))); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Unprotect(nil, oldMsg(), testTopic); err != nil {
		t.Fatalf("previous key after same-key SetTopicKey: %v", err)
	}
	clk.advance(DefaultKeyTransition)
	if _, err := c.Unprotect(nil, oldMsg(), testTopic); !errors.Is(err, ErrAuthentication) {
		t.Fatalf("previous key after the transition: %v, want ErrAuthentication", err)
	}
	newMsg := must[[]byte](t)(c.Protect(nil, []byte("new"), testTopic))
	if pt, err := UnprotectSymKey(nil, newMsg, testKeyB, &Config{Now: clk.Now}); err != nil || string(pt) != "new" {
		t.Fatalf("Protect does not use the new key: %q, %v", pt, err)
	}
}

// must returns a function that returns v and fails the test on err, for
// building the inputs of a test in one expression: an input that failed to
// build must not pass for the refusal a negative test expects.
func must[T any](t testing.TB) func(v T, err error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func mustCmd(cmd []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return cmd
}

func TestStaleSetTopicKeyRefused(t *testing.T) {
	clk := newClock(1764000000)
	c := newSK(t, &Config{Now: clk.Now})
	older, err := ProtectCommand(mustCmd(command.NewSetTopicKey(testKeyA, HashTopic(testTopic))), clientKey, clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	clk.advance(5 * time.Second)
	if err := sendCommand(t, c, clk, mustCmd(command.NewSetTopicKey(testKeyB, HashTopic(testTopic)))); err != nil {
		t.Fatal(err)
	}
	if _, err := c.HandleCommand(older); !errors.Is(err, ErrStaleCommand) {
		t.Fatalf("delayed older SetTopicKey: %v, want ErrStaleCommand", err)
	}
	// Also after RemoveTopic and ResetTopics.
	olderStill, err := ProtectCommand(mustCmd(command.NewSetTopicKey(testKeyA, HashTopic("t2"))), clientKey, clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	clk.advance(time.Second)
	if err := sendCommand(t, c, clk, command.NewResetTopics()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.HandleCommand(olderStill); !errors.Is(err, ErrStaleCommand) {
		t.Fatalf("SetTopicKey older than ResetTopics: %v", err)
	}
	olderRm, err := ProtectCommand(mustCmd(command.NewSetTopicKey(testKeyA, HashTopic(testTopic))), clientKey, clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	clk.advance(time.Second)
	if err := sendCommand(t, c, clk, command.NewRemoveTopic(HashTopic(testTopic))); err != nil {
		t.Fatal(err)
	}
	if _, err := c.HandleCommand(olderRm); !errors.Is(err, ErrStaleCommand) {
		t.Fatalf("SetTopicKey older than RemoveTopic: %v", err)
	}
	if c.HasTopicKey(testTopic) {
		t.Fatal("removed topic came back")
	}
}

func TestCommandReplayRefused(t *testing.T) {
	clk := newClock(1764000000)
	c := newSK(t, &Config{Now: clk.Now})
	p, err := ProtectCommand(command.NewRemoveTopic(HashTopic(testTopic)), clientKey, clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.HandleCommand(p); err != nil {
		t.Fatal(err)
	}
	if _, err := c.HandleCommand(p); !errors.Is(err, ErrReplay) {
		t.Fatalf("replayed command: %v", err)
	}
}

func TestPublishWithoutKey(t *testing.T) {
	c := newSK(t, nil)
	if _, err := c.Protect(nil, []byte("x"), "no/key"); !errors.Is(err, ErrTopicKeyNotFound) {
		t.Fatalf("Protect without key: %v", err)
	}
	msg, err := ProtectSymKey(nil, []byte("x"), testKeyA, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Unprotect(nil, msg, "no/key"); !errors.Is(err, ErrTopicKeyNotFound) {
		t.Fatalf("Unprotect without key: %v", err)
	}
}

func TestBadKeysRefused(t *testing.T) {
	if _, err := NewSymKeyClient(ID{}, make([]byte, KeyLen), nil); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("zero key: %v", err)
	}
	if _, err := NewSymKeyClient(ID{}, make([]byte, 31), nil); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("short key: %v", err)
	}
	priv, _ := mustKeyPair(t)
	if _, err := NewPubKeyClient(ID{}, priv, make([]byte, 32), nil); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("all-zero C2 key: %v", err)
	}
	tampered := bytes.Clone(priv)
	tampered[40] ^= 1
	if _, err := NewPubKeyClient(ID{}, tampered, bytes.Repeat([]byte{9}, 32), nil); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("private key with a wrong public half: %v", err)
	}
	c := must[*Client](t)(NewPubKeyClient(ID{}, priv, bytes.Repeat([]byte{9}, 32), nil))
	if err := c.SetPubKey(ID{1}, make([]byte, 32)); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("SetPubKey with a zero key: %v", err)
	}
}

func TestPersistence(t *testing.T) {
	clk := newClock(1764000000)
	mem := store.NewMemory()
	priv, _ := mustKeyPair(t)
	c2 := bytes.Repeat([]byte{9}, 32)
	c := must[*Client](t)(NewPubKeyClient(IDFromName("persisted"), priv, c2, &Config{Now: clk.Now, Store: mem}))
	_, signerPub := mustKeyPair(t)
	mustSetTopicKey(t, c, testKeyA, testTopic)
	clk.advance(time.Second)
	mustSetTopicKey(t, c, testKeyB, testTopic) // testKeyA becomes the previous key
	if err := c.SetPubKey(IDFromName("signer"), signerPub); err != nil {
		t.Fatal(err)
	}
	loaded := must[*Client](t)(LoadClient(&Config{Now: clk.Now, Store: mem}))
	if loaded.ID() != c.ID() || loaded.Mode() != PubKey || !bytes.Equal(loaded.PublicKey(), c.PublicKey()) {
		t.Fatal("identity not restored")
	}
	if !bytes.Equal(savedForm(t, c), savedForm(t, loaded)) {
		t.Fatal("state differs after reload")
	}
	if _, err := LoadClient(&Config{Store: store.NewMemory()}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("empty store: %v", err)
	}
	for _, blob := range []string{`{"version":2}`, `not json`, `{"version":1,"mode":"sk","id":"AAAAAAAAAAAAAAAAAAAAAA==","key":"AA=="}`} {
		bad := store.NewMemory()
		_ = bad.Save([]byte(blob))
		_, err := LoadClient(&Config{Store: bad})
		if !errors.Is(err, store.ErrNewerVersion) && !errors.Is(err, store.ErrCorrupt) {
			t.Errorf("state %s: error %v", blob, err)
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	clk := newClock(1764000000)
	for _, mode := range []Mode{SymKey, PubKey} {
		c, sender := pairForMode(t, mode, clk)
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Add(3)
			go func() { // protect and unprotect
				defer wg.Done()
				for i := range 200 {
					msg, err := sender.Protect(nil, fmt.Appendf(nil, "g%d-%d", g, i), testTopic)
					if err != nil {
						t.Error(err)
						return
					}
					if _, err := c.Unprotect(nil, msg, testTopic); err != nil && !errors.Is(err, ErrAuthentication) {
						t.Error(err) // ErrAuthentication: the key may change under us
						return
					}
				}
			}()
			go func() { // local key changes
				defer wg.Done()
				for i := range 50 {
					key := bytes.Repeat([]byte{byte(i + 1)}, KeyLen)
					_ = c.SetTopicKey(key, fmt.Sprintf("t/%d", g))
				}
			}()
			go func() { // commands from C2 (SK) or local signer updates (PK)
				defer wg.Done()
				for i := range 50 {
					if mode == SymKey {
						cmd := mustCmd(command.NewSetTopicKey(testKeyA, HashTopic(fmt.Sprintf("c/%d/%d", g, i))))
						p, _ := ProtectCommand(cmd, clientKey, clk.Now())
						if _, err := c.HandleCommand(p); err != nil {
							t.Error(err)
						}
					} else {
						_, pub := mustKeyPair(t)
						_ = c.SetPubKey(IDFromName(fmt.Sprint(g, i)), pub)
					}
				}
			}()
		}
		wg.Wait()
	}
}

// TestProtectAllocations checks that SK Protect and Unprotect (replay check
// included) allocate nothing at 64 B and 1 KiB. It runs under -race too:
// the crypto core keeps its state on the stack and uses no sync.Pool.
func TestProtectAllocations(t *testing.T) {
	for _, size := range []int{64, 1024} {
		clk := newClock(1764000000)
		c, sender := pairForMode(t, SymKey, clk)
		payload := make([]byte, size)
		dst := make([]byte, 0, size+SKOverhead)
		if n := testing.AllocsPerRun(100, func() { _, _ = sender.Protect(dst[:0], payload, testTopic) }); n != 0 {
			t.Errorf("SK Protect of %d bytes: %v allocations, want 0", size, n)
		}
		// Each run needs a message the replay cache has not seen yet.
		i := int64(0)
		msgs := make([][]byte, 0, 200)
		for range 200 {
			p, _ := ProtectSymKey(nil, payload, testKeyA, time.Unix(clk.unix.Load()-i, 0))
			msgs = append(msgs, p)
			i++
		}
		next := 0
		out := make([]byte, 0, size)
		if n := testing.AllocsPerRun(100, func() {
			if _, err := c.Unprotect(out[:0], msgs[next], testTopic); err != nil {
				t.Fatal(err)
			}
			next++
		}); n != 0 {
			t.Errorf("SK Unprotect of %d bytes with replay check: %v allocations, want 0", size, n)
		}
	}
}

// Example shows a device in a few lines: a key, a topic, protect, unprotect.
func Example() {
	device, _ := NewSymKeyClient(IDFromName("thermostat-42"), bytes.Repeat([]byte{1}, KeyLen), nil)
	_ = device.SetTopicKey(bytes.Repeat([]byte{2}, KeyLen), "home/kitchen/temp")

	wire, _ := device.Protect(nil, []byte("21.5 C"), "home/kitchen/temp") // publish wire on the broker
	plain, err := device.Unprotect(nil, wire, "home/kitchen/temp")        // on every subscriber

	fmt.Println(len(wire)-len(plain), string(plain), err)
	// Output: 24 21.5 C <nil>
}

func TestNameCacheFollowsKeyChanges(t *testing.T) {
	clk := newClock(1764000000)
	c := newSK(t, &Config{Now: clk.Now})
	protectOK := func(want error) {
		t.Helper()
		if _, err := c.Protect(nil, []byte("x"), testTopic); !errors.Is(err, want) {
			t.Fatalf("Protect: %v, want %v", err, want)
		}
	}
	protectOK(ErrTopicKeyNotFound) // a miss is not cached
	mustSetTopicKey(t, c, testKeyA, testTopic)
	protectOK(nil) // now cached by name
	clk.advance(time.Second)
	if err := sendCommand(t, c, clk, command.NewRemoveTopic(HashTopic(testTopic))); err != nil {
		t.Fatal(err)
	}
	protectOK(ErrTopicKeyNotFound)
	clk.advance(time.Second)
	if err := sendCommand(t, c, clk, mustCmd(command.NewSetTopicKey(testKeyB, HashTopic(testTopic)))); err != nil {
		t.Fatal(err)
	}
	protectOK(nil)
	msg := must[[]byte](t)(c.Protect(nil, []byte("x"), testTopic))
	if _, err := UnprotectSymKey(nil, msg, testKeyB, &Config{Now: clk.Now}); err != nil {
		t.Fatalf("cached entry does not use the new key: %v", err)
	}
	clk.advance(time.Second)
	if err := sendCommand(t, c, clk, command.NewResetTopics()); err != nil {
		t.Fatal(err)
	}
	protectOK(ErrTopicKeyNotFound)
}

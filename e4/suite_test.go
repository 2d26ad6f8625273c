package e4

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/sha3"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/e4/command"
	"github.com/e4-iot/e4kit/e4/internal/keccak"
	"github.com/e4-iot/e4kit/e4/siv"
	"github.com/e4-iot/e4kit/e4/store"
)

func TestSuiteByName(t *testing.T) {
	for name, want := range map[string]*Suite{"": V1, "v1": V1, "fast": Fast} {
		got, err := SuiteByName(name)
		if err != nil || got != want {
			t.Errorf("SuiteByName(%q) = %v, %v", name, got, err)
		}
	}
	_, err := SuiteByName("turbo")
	if !errors.Is(err, ErrUnknownSuite) || !strings.Contains(err.Error(), "v1, fast") {
		t.Errorf("unknown suite: %v", err)
	}
	var nilSuite *Suite
	if nilSuite.Name() != "v1" || !nilSuite.FIPSApproved() || Fast.FIPSApproved() {
		t.Error("nil must be V1 (FIPS-approved), Fast must not be FIPS-approved")
	}
}

// TestV1IsThePackage checks that the package-level functions are V1 and
// that V1 is SHA3-256 and AES-256-SIV.
func TestV1IsThePackage(t *testing.T) {
	for _, s := range []*Suite{nil, V1} {
		sum := sha3.Sum256([]byte("a/topic"))
		if h := s.HashTopic("a/topic"); h != HashTopic("a/topic") || !bytes.Equal(h[:], sum[:16]) {
			t.Errorf("%v.HashTopic differs from SHA3-256", s)
		}
		if s.IDFromName("dev") != IDFromName("dev") {
			t.Errorf("%v.IDFromName differs", s)
		}
	}
	key := pattern(KeyLen, 9)
	now := time.Unix(fastVectorTime, 0)
	a, err := V1.ProtectSymKey(nil, []byte("x"), key, now)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ProtectSymKey(nil, []byte("x"), key, now)
	if err != nil {
		t.Fatal(err)
	}
	std, err := siv.New(append(append([]byte(nil), key...), key...))
	if err != nil {
		t.Fatal(err)
	}
	c := std.Seal(append([]byte(nil), a[:TimestampLen]...), []byte("x"), a[:TimestampLen])
	if !bytes.Equal(a, b) || !bytes.Equal(a, c) {
		t.Error("V1.ProtectSymKey is not the package's AES-256-SIV")
	}
}

// TestFastPrimitives pins what Fast is built from: SHA3-256 on 10 rounds
// and AES-256 with 10 rounds in SIV.
func TestFastPrimitives(t *testing.T) {
	sum := keccak.Sum256([]byte("a/topic"), 10)
	if h := Fast.HashTopic("a/topic"); !bytes.Equal(h[:], sum[:16]) || h == HashTopic("a/topic") {
		t.Error("Fast.HashTopic is not 10-round SHA3-256")
	}
	key := pattern(KeyLen, 9)
	now := time.Unix(fastVectorTime, 0)
	out, err := Fast.ProtectSymKey(nil, []byte("x"), key, now)
	if err != nil {
		t.Fatal(err)
	}
	ten, err := siv.NewRounds(append(append([]byte(nil), key...), key...), 10)
	if err != nil {
		t.Fatal(err)
	}
	want := ten.Seal(append([]byte(nil), out[:TimestampLen]...), []byte("x"), out[:TimestampLen])
	if !bytes.Equal(out, want) {
		t.Error("Fast.ProtectSymKey is not 10-round AES-256-SIV")
	}
	priv := ed25519.NewKeyFromSeed(pattern(32, 1))
	c2Priv := pattern(32, 2)
	fk, err := Fast.ClientCommandKey(priv, x25519Public(t, c2Priv))
	if err != nil {
		t.Fatal(err)
	}
	vk, err := ClientCommandKey(priv, x25519Public(t, c2Priv))
	if err != nil {
		t.Fatal(err)
	}
	xPriv, err := X25519PrivateFromEd25519(priv)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ecdh.X25519().NewPrivateKey(c2Priv)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ecdh.X25519().NewPublicKey(x25519Public(t, xPriv))
	if err != nil {
		t.Fatal(err)
	}
	shared, err := k.ECDH(pub)
	if err != nil {
		t.Fatal(err)
	}
	if want := keccak.Sum256(shared, 10); !bytes.Equal(fk, want[:]) || bytes.Equal(fk, vk) {
		t.Error("Fast's PK command key is not the 10-round SHA3-256 of the X25519 secret")
	}
}

// skClient is an SK device of suite s with a fixed key and clock.
func skClient(t *testing.T, s *Suite, diagnose bool, st Store) *Client {
	t.Helper()
	c, err := NewSymKeyClient(IDFromName("dev"), pattern(KeyLen, 5),
		&Config{Suite: s, DiagnoseSuite: diagnose, Store: st, Now: fixedNow(fastVectorTime)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestSuiteMismatchRefused: a client of one suite refuses the messages and
// commands of the other with ErrAuthentication, which names the client's
// suite unless it is V1 (whose clients return the sentinel itself); with
// DiagnoseSuite the error is ErrSuiteMismatch and names both. Each
// direction.
func TestSuiteMismatchRefused(t *testing.T) {
	now := time.Unix(fastVectorTime, 0)
	topicKey := pattern(KeyLen, 6)
	for _, pair := range [][2]*Suite{{V1, Fast}, {Fast, V1}} {
		mine, theirs := pair[0], pair[1]
		for _, diagnose := range []bool{false, true} {
			c := skClient(t, mine, diagnose, nil)
			if err := c.SetTopicKey(topicKey, "t"); err != nil {
				t.Fatal(err)
			}
			msg := must[[]byte](t)(theirs.ProtectSymKey(nil, []byte("hello"), topicKey, now))
			_, err := c.Unprotect(nil, msg, "t")
			checkMismatch(t, "message", err, mine, theirs, diagnose)

			cmd, err := command.NewSetTopicKey(pattern(KeyLen, 7), theirs.HashTopic("u"))
			if err != nil {
				t.Fatal(err)
			}
			protected, err := theirs.ProtectCommand(cmd, pattern(KeyLen, 5), now)
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Unprotect(nil, protected, c.ControlTopic())
			checkMismatch(t, "command", err, mine, theirs, diagnose)
			if c.HasTopicKey("u") {
				t.Error("a command of the other suite was applied")
			}

			// The same suite still works, and a wrong key is not a mismatch.
			own, err := mine.ProtectSymKey(nil, []byte("hello"), topicKey, now.Add(time.Second))
			if err != nil {
				t.Fatal(err)
			}
			c.cfg.Now = fixedNow(fastVectorTime + 1)
			if got, err := c.Unprotect(nil, own, "t"); err != nil || string(got) != "hello" {
				t.Errorf("%v client, own message: %q, %v", mine, got, err)
			}
			forged, err := theirs.ProtectSymKey(nil, []byte("hello"), pattern(KeyLen, 8), now)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Unprotect(nil, forged, "t"); errors.Is(err, ErrSuiteMismatch) || !errors.Is(err, ErrAuthentication) {
				t.Errorf("wrong key reported as %v", err)
			}
		}
	}
}

func checkMismatch(t *testing.T, what string, err error, mine, theirs *Suite, diagnose bool) {
	t.Helper()
	if !errors.Is(err, ErrAuthentication) {
		t.Fatalf("%v client, %v %s: %v, want ErrAuthentication", mine, theirs, what, err)
	}
	switch {
	case mine == V1 && !diagnose && err != ErrAuthentication:
		t.Errorf("V1 %s error is not the sentinel itself: %v", what, err)
	case mine != V1 && !strings.Contains(err.Error(), `"`+mine.Name()+`"`):
		t.Errorf("%s error does not name the client's suite %q: %v", what, mine, err)
	}
	if diagnose != errors.Is(err, ErrSuiteMismatch) || diagnose && !strings.Contains(err.Error(), `"`+theirs.Name()+`"`) {
		t.Errorf("DiagnoseSuite %v, %s error: %v", diagnose, what, err)
	}
}

// TestSuiteMismatchPK: a PK client diagnoses a command under the other
// suite's command key and a message under the other suite's cipher.
func TestSuiteMismatchPK(t *testing.T) {
	now := time.Unix(fastVectorTime, 0)
	priv := ed25519.NewKeyFromSeed(pattern(32, 1))
	c2Priv := pattern(32, 2)
	c, err := NewPubKeyClient(IDFromName("pk"), priv, x25519Public(t, c2Priv), &Config{Suite: Fast, DiagnoseSuite: true, Now: fixedNow(fastVectorTime)})
	if err != nil {
		t.Fatal(err)
	}
	key, err := V1.C2CommandKey(c2Priv, priv.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	protected, err := V1.ProtectCommand(command.NewResetTopics(), key, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.HandleCommand(protected); !errors.Is(err, ErrSuiteMismatch) {
		t.Errorf("V1 command to a fast PK client: %v", err)
	}
	sender := ed25519.NewKeyFromSeed(pattern(32, 3))
	if err := c.SetPubKey(ID{1}, sender.Public().(ed25519.PublicKey)); err != nil {
		t.Fatal(err)
	}
	if err := c.SetTopicKey(pattern(KeyLen, 4), "t"); err != nil {
		t.Fatal(err)
	}
	msg, err := V1.ProtectPubKey(nil, []byte("x"), pattern(KeyLen, 4), ID{1}, sender, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Unprotect(nil, msg, "t"); !errors.Is(err, ErrSuiteMismatch) {
		t.Errorf("V1 PK message to a fast client: %v", err)
	}
}

// TestStateKeepsSuite: a fast client's state names its suite, reloads
// under Fast with its topics (found by the fast hash), and is refused under
// V1 and left as it was; a V1 state stays version 2 without a suite.
func TestStateKeepsSuite(t *testing.T) {
	st := store.NewMemory()
	c := skClient(t, Fast, false, st)
	if err := c.SetTopicKey(pattern(KeyLen, 6), "t"); err != nil {
		t.Fatal(err)
	}
	saved, _ := st.Load()
	if !bytes.Contains(saved, []byte(`"suite":"fast"`)) || !bytes.Contains(saved, []byte(`"version":3`)) {
		t.Fatalf("fast state: %s", saved)
	}
	_, err := NewSymKeyClient(IDFromName("dev"), pattern(KeyLen, 5), &Config{Store: st})
	if !errors.Is(err, ErrSuiteMismatch) || !strings.Contains(err.Error(), `suite "fast", this one runs suite "v1"`) {
		t.Errorf("V1 client on a fast state: %v", err)
	}
	if after, _ := st.Load(); !bytes.Equal(after, saved) {
		t.Error("the refused state was changed")
	}
	again := skClient(t, Fast, false, st)
	if again.Fresh() || !again.HasTopicKey("t") {
		t.Error("fast state did not reload under Fast")
	}

	v1Store := store.NewMemory()
	skClient(t, nil, false, v1Store)
	blob, err := v1Store.Load()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(blob, []byte(`"suite"`)) || !bytes.Contains(blob, []byte(`"version":2`)) {
		t.Errorf("V1 state changed form: %s", blob)
	}
	if _, err := NewSymKeyClient(IDFromName("dev"), pattern(KeyLen, 5), &Config{Suite: Fast, Store: v1Store}); !errors.Is(err, ErrSuiteMismatch) {
		t.Errorf("fast client on a V1 state: %v", err)
	}
}

// TestFastBatchMatchesSingle: UnprotectBatch and ProtectBatch of a fast
// client give what Unprotect and Protect give, a V1 message included.
func TestFastBatchMatchesSingle(t *testing.T) {
	now := time.Unix(fastVectorTime, 0)
	key := pattern(KeyLen, 6)
	newClient := func() *Client {
		c := skClient(t, Fast, false, nil)
		if err := c.SetTopicKey(key, "t"); err != nil {
			t.Fatal(err)
		}
		return c
	}
	var msgs []BatchMessage
	for i := range 10 {
		s := Fast
		if i == 3 {
			s = V1
		}
		m := must[[]byte](t)(s.ProtectSymKey(nil, pattern(100*i, byte(i)), key, now.Add(-time.Duration(i)*time.Second)))
		msgs = append(msgs, BatchMessage{Topic: "t", In: m})
	}
	got := batchVsSingle(t, newClient, msgs)
	for i, m := range got {
		if (i == 3) != errors.Is(m.Err, ErrAuthentication) || !bytes.Equal(m.Out, pattern(100*i, byte(i))) && i != 3 {
			t.Errorf("message %d: %x, %v", i, m.Out, m.Err)
		}
	}
	sender := newClient()
	p := []BatchMessage{{Topic: "t", In: []byte("a")}, {Topic: "t", In: []byte("b")}}
	sender.ProtectBatch(p)
	for _, m := range p {
		if _, err := Fast.UnprotectSymKey(nil, m.Out, key, &Config{Now: fixedNow(fastVectorTime)}); err != nil {
			t.Errorf("ProtectBatch of a fast client does not open under Fast: %v", err)
		}
	}
}

// TestLoadClientTakesTheSavedSuite: LoadClient with no suite runs the
// saved one; with another suite it refuses.
func TestLoadClientTakesTheSavedSuite(t *testing.T) {
	st := store.NewMemory()
	skClient(t, Fast, false, st)
	c, err := LoadClient(&Config{Store: st})
	if err != nil || c.Suite() != Fast {
		t.Fatalf("LoadClient: %v, %v", c, err)
	}
	if _, err := LoadClient(&Config{Store: st, Suite: V1}); !errors.Is(err, ErrSuiteMismatch) {
		t.Fatalf("LoadClient under V1: %v", err)
	}
}

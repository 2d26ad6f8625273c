package e4

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"math/big"
	"slices"
	"testing"
	"time"

	"filippo.io/edwards25519"
	"github.com/e4-iot/e4kit/e4/command"
)

// order8Point is a point of order 8 (from libsodium's blocklist of
// small-order encodings); its multiples are the whole 8-torsion subgroup.
const order8Point = "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"

// smallOrderKeys returns the canonical encodings of the eight points of
// small order, computed as the multiples of a point of order 8.
func smallOrderKeys(t *testing.T) [][]byte {
	t.Helper()
	raw, err := hex.DecodeString(order8Point)
	if err != nil {
		t.Fatal(err)
	}
	p, err := new(edwards25519.Point).SetBytes(raw)
	if err != nil {
		t.Fatal(err)
	}
	identity := edwards25519.NewIdentityPoint()
	if new(edwards25519.Point).MultByCofactor(p).Equal(identity) != 1 {
		t.Fatal("the order-8 point is not of small order")
	}
	var keys [][]byte
	q := edwards25519.NewIdentityPoint()
	for range 8 {
		keys = append(keys, q.Bytes())
		q = new(edwards25519.Point).Add(q, p)
	}
	if q.Equal(identity) != 1 {
		t.Fatal("8 times the point is not the identity")
	}
	for i := range keys {
		for j := range i {
			if bytes.Equal(keys[i], keys[j]) {
				t.Fatal("the multiples repeat: the point is not of order 8")
			}
		}
	}
	if !bytes.Equal(keys[0], append([]byte{1}, make([]byte, 31)...)) {
		t.Fatalf("first multiple %x is not the identity", keys[0])
	}
	return keys
}

// nonCanonical returns y + p, encoded, for a y below 19 (the only values
// with a second encoding).
func nonCanonical(y int64) []byte {
	p := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(19))
	v := new(big.Int).Add(p, big.NewInt(y)).FillBytes(make([]byte, 32))
	slices.Reverse(v) // little-endian
	return v
}

func TestCheckPublicKey(t *testing.T) {
	good := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{8}, ed25519.SeedSize)).Public().(ed25519.PublicKey)
	if err := CheckPublicKey(good); err != nil {
		t.Fatalf("a real key refused: %v", err)
	}
	for i, k := range smallOrderKeys(t) {
		if err := CheckPublicKey(k); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("small-order point %d (%x) accepted: %v", i, k, err)
		}
	}
	// The identity's other encodings: y = p + 1, and x = -0.
	negZero := append([]byte{1}, make([]byte, 31)...)
	negZero[31] = 0x80
	for _, k := range [][]byte{nonCanonical(1), negZero} {
		if err := CheckPublicKey(k); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("non-canonical identity %x accepted: %v", k, err)
		}
	}
	// A point of large order with a small y, encoded with y + p.
	found := false
	for y := int64(2); y < 19; y++ {
		canonical := make([]byte, 32)
		canonical[0] = byte(y)
		p, err := new(edwards25519.Point).SetBytes(canonical)
		if err != nil || new(edwards25519.Point).MultByCofactor(p).Equal(edwards25519.NewIdentityPoint()) == 1 {
			continue
		}
		found = true
		if err := CheckPublicKey(canonical); err != nil {
			t.Fatalf("y = %d: canonical encoding refused: %v", y, err)
		}
		if err := CheckPublicKey(nonCanonical(y)); !errors.Is(err, ErrInvalidKey) {
			t.Fatalf("y = %d: non-canonical encoding %x accepted: %v", y, nonCanonical(y), err)
		}
	}
	if !found {
		t.Fatal("no point with y below 19")
	}
	for _, k := range [][]byte{nil, good[:31], append(bytes.Clone(good), 0)} {
		if err := CheckPublicKey(k); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("%d-byte key accepted", len(k))
		}
	}
}

func TestCheckSymKey(t *testing.T) {
	if err := CheckSymKey(testKeyA); err != nil {
		t.Fatal(err)
	}
	for _, k := range [][]byte{nil, make([]byte, KeyLen), testKeyA[:31], append(bytes.Clone(testKeyA), 1)} {
		if err := CheckSymKey(k); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("%d-byte key %x accepted", len(k), k)
		}
	}
}

// TestSmallOrderSenderRefused: neither SetPubKey nor the SetPubKey command
// makes a small-order key a trusted sender (with one, anyone holding the
// topic key could send as that client).
func TestSmallOrderSenderRefused(t *testing.T) {
	r := newOrderRig(t, PubKey)
	for i, k := range smallOrderKeys(t) {
		id := IDFromName("forged")
		if err := r.c.SetPubKey(id, k); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("SetPubKey with small-order point %d: %v", i, err)
		}
		// The command builder refuses it too; build the bytes by hand.
		if _, err := command.NewSetPubKey(k, id); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("command.NewSetPubKey with small-order point %d: %v", i, err)
		}
		cmd := append(append([]byte{byte(command.SetPubKey)}, k...), id[:]...)
		if _, err := r.c.HandleCommand(r.protect(cmd)); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("SetPubKey command with small-order point %d: %v", i, err)
		}
		if r.c.signer(id) != nil {
			t.Fatalf("small-order point %d is a trusted sender", i)
		}
		r.clk.advance(time.Second)
	}
}

// TestSavedSmallOrderSenderNotTrusted: a state saved by an older version
// that accepted a small-order sender loads, without that sender.
func TestSavedSmallOrderSenderNotTrusted(t *testing.T) {
	r := newOrderRig(t, PubKey)
	good := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{8}, ed25519.SeedSize)).Public().(ed25519.PublicKey)
	if err := r.c.SetPubKey(IDFromName("good"), good); err != nil {
		t.Fatal(err)
	}
	identity := smallOrderKeys(t)[0]
	r.c.mu.Lock()
	r.c.signers[IDFromName("forged")] = &verifier{public: identity}
	r.c.changed()
	r.c.mu.Unlock()
	if err := r.c.persist(); err != nil {
		t.Fatal(err)
	}
	c, err := LoadClient(&Config{Now: r.clk.Now, Store: r.st})
	if err != nil {
		t.Fatal(err)
	}
	if c.signer(IDFromName("forged")) != nil || c.signer(IDFromName("good")) == nil {
		t.Fatal("the saved small-order sender is trusted, or the good one lost")
	}
}

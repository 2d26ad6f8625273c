package e4

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/e4/command"
)

// Fuzz targets: no input from the network may panic, and whatever is
// accepted must be what an honest sender would produce. Seeds come from the
// known-answer vectors.

// fuzzNow is a clock inside the window of every vector.
const fuzzNow = 1764000100

func FuzzUnprotectSK(f *testing.F) {
	v := loadVectors(f)
	for _, m := range v.SKMessages {
		f.Add([]byte(m.Protected))
	}
	for _, m := range v.Negative {
		if m.Mode == "sk" {
			f.Add([]byte(m.Protected))
		}
	}
	key := v.SKMessages[3].Key
	f.Fuzz(func(t *testing.T, msg []byte) {
		c, err := NewSymKeyClient(IDFromName("fuzz"), clientKey, fuzzConfig())
		if err != nil {
			t.Fatal(err)
		}
		mustSetTopicKey(t, c, key, testTopic)
		pt, err := c.Unprotect(nil, msg, testTopic)
		if err != nil {
			if pt != nil {
				t.Fatalf("error %v with output %x", err, pt)
			}
			return
		}
		again, err := ProtectSymKey(nil, pt, key, timeOf(msg))
		if err != nil || !bytes.Equal(again, msg) {
			t.Fatalf("accepted %x, but an honest sender would send %x", msg, again)
		}
	})
}

func FuzzUnprotectPK(f *testing.F) {
	v := loadVectors(f)
	for _, m := range v.PKMessages {
		f.Add([]byte(m.Protected))
	}
	for _, m := range append(v.Negative, v.Quirks...) {
		if m.Mode == "pk" {
			f.Add([]byte(m.Protected))
		}
	}
	m := v.PKMessages[2]
	f.Fuzz(func(t *testing.T, msg []byte) {
		c, err := NewPubKeyClient(IDFromName("fuzz"), ed25519.NewKeyFromSeed(clientKey), bytes.Repeat([]byte{9}, 32), fuzzConfig())
		if err != nil {
			t.Fatal(err)
		}
		mustSetTopicKey(t, c, m.TopicKey, testTopic)
		if err := c.SetPubKey(ID(m.SignerID), ed25519.PublicKey(m.SignerPublic)); err != nil {
			t.Fatal(err)
		}
		pt, err := c.Unprotect(nil, msg, testTopic)
		if err != nil {
			if !isSentinel(err) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		again, err := ProtectPubKey(nil, pt, m.TopicKey, ID(m.SignerID), ed25519.PrivateKey(m.SignerPrivate), timeOf(msg))
		if err != nil || !bytes.Equal(again, msg) {
			t.Fatalf("accepted %x, but the signer would send %x", msg, again)
		}
	})
}

func FuzzHandleCommand(f *testing.F) {
	v := loadVectors(f)
	for _, m := range v.SKCommands {
		f.Add([]byte(m.Command))
	}
	for _, m := range v.NegativeCommands {
		f.Add([]byte(m.Command))
	}
	for _, m := range v.PKCommands {
		f.Add([]byte(m.Command))
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, cmd []byte) {
		// The command is protected properly, so the fuzzer explores the
		// parser behind authentication, in both modes.
		for _, mode := range []Mode{SymKey, PubKey} {
			c, cmdKey := commandTarget(t, mode)
			p, err := ProtectSymKey(nil, cmd, cmdKey, timeOfUnix(fuzzNow))
			if err != nil {
				t.Fatal(err)
			}
			code, ack, err := c.HandleCommandAck(p)
			if err != nil && !isSentinel(err) {
				t.Fatalf("%v: unexpected error %v", mode, err)
			}
			if err == nil && (len(cmd) == 0 || code != command.Code(cmd[0])) {
				t.Fatalf("%v: accepted %x as %v", mode, cmd, code)
			}
			// An authentic command is acknowledged under the key that
			// protected it, naming exactly this command.
			if ack != nil {
				digest, status, aerr := OpenAck(ack, cmdKey, fuzzConfig())
				if aerr != nil || digest != CommandDigest(p) || (err == nil) != (status == AckApplied) {
					t.Fatalf("%v: ack of %x: %v, status %v, command error %v", mode, cmd, aerr, status, err)
				}
			}
			// Garbage (the command itself, unprotected) must never pass.
			if _, err := c.HandleCommand(cmd); err == nil {
				t.Fatalf("%v: unprotected bytes %x accepted as a command", mode, cmd)
			}
		}
	})
}

// fuzzConfig switches the clock checks off, so that the fuzzer reaches the
// cipher with any timestamp, and keeps the replay cache small: a client is
// built per input.
func fuzzConfig() *Config {
	return &Config{NoClock: true, ReplayCacheSize: 16, Now: func() time.Time { return time.Unix(fuzzNow, 0) }}
}

func commandTarget(t *testing.T, mode Mode) (*Client, []byte) {
	cfg := fuzzConfig()
	if mode == SymKey {
		c, err := NewSymKeyClient(IDFromName("fuzz"), clientKey, cfg)
		if err != nil {
			t.Fatal(err)
		}
		return c, clientKey
	}
	seed := bytes.Repeat([]byte{5}, ed25519.SeedSize)
	c2Private := bytes.Repeat([]byte{6}, 32)
	priv := ed25519.NewKeyFromSeed(seed)
	c2Public, err := commandKeyPublic(c2Private)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewPubKeyClient(IDFromName("fuzz"), priv, c2Public, cfg)
	if err != nil {
		t.Fatal(err)
	}
	key, err := C2CommandKey(c2Private, priv.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

// isSentinel reports whether err wraps one of the package's sentinels.
func isSentinel(err error) bool {
	for _, s := range []error{ErrAuthentication, ErrInvalidLength, ErrTimestampTooOld, ErrTimestampInFuture,
		ErrReplay, ErrTopicKeyNotFound, ErrPubKeyNotFound, ErrInvalidCommand, ErrUnsupportedOperation,
		ErrInvalidKey, ErrStaleCommand, ErrStore} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

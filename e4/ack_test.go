package e4

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/e4/command"
)

func TestAckSymKey(t *testing.T) {
	key := bytes.Repeat([]byte{1}, KeyLen)
	c, err := NewSymKeyClient(IDFromName("dev"), key, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	cmd, err := command.NewSetTopicKey(bytes.Repeat([]byte{2}, KeyLen), HashTopic("t"))
	if err != nil {
		t.Fatal(err)
	}
	wire, err := ProtectCommand(cmd, key, now)
	if err != nil {
		t.Fatal(err)
	}
	kind, ack, err := c.HandleCommandAck(wire)
	if err != nil || kind != command.SetTopicKey || ack == nil {
		t.Fatalf("HandleCommandAck = %v, %x, %v", kind, ack, err)
	}
	digest, status, err := OpenAck(ack, key, nil)
	if err != nil || status != AckApplied || digest != CommandDigest(wire) {
		t.Fatalf("OpenAck = %x, %v, %v", digest, status, err)
	}
	// Any change to the acknowledgement is detected.
	for i := range ack {
		bad := bytes.Clone(ack)
		bad[i] ^= 0x80
		if _, _, err := OpenAck(bad, key, nil); err == nil {
			t.Fatalf("flipped byte %d accepted", i)
		}
	}

	// SetIDKey is acknowledged under the key that protected it.
	newKey := bytes.Repeat([]byte{3}, KeyLen)
	setID, err := command.NewSetIDKey(newKey)
	if err != nil {
		t.Fatal(err)
	}
	wire, err = ProtectCommand(setID, key, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, ack, err = c.HandleCommandAck(wire); err != nil {
		t.Fatal(err)
	}
	if _, _, err := OpenAck(ack, key, nil); err != nil {
		t.Fatalf("ack of SetIDKey under the old key: %v", err)
	}

	// An older SetTopicKey is refused, and the refusal acknowledged.
	stale, err := ProtectCommand(cmd, newKey, now.Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	_, ack, err = c.HandleCommandAck(stale)
	if !errors.Is(err, ErrStaleCommand) || ack == nil {
		t.Fatalf("stale command: ack %x, %v", ack, err)
	}
	if _, status, err := OpenAck(ack, newKey, nil); err != nil || status != AckRefused {
		t.Fatalf("stale ack status %v, %v", status, err)
	}

	// Nothing is acknowledged to a forger; a replay is acknowledged again.
	forged := must[[]byte](t)(ProtectCommand(cmd, key, now)) // the old key no longer opens commands
	if _, ack, err := c.HandleCommandAck(forged); ack != nil || !errors.Is(err, ErrAuthentication) {
		t.Fatalf("forged command: ack %x, %v", ack, err)
	}
	fresh, err := ProtectCommand(command.NewRemoveTopic(HashTopic("other")), newKey, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.HandleCommandAck(fresh); err != nil {
		t.Fatal(err)
	}
	_, ack, err = c.HandleCommandAck(fresh)
	if ack == nil || !errors.Is(err, ErrReplay) {
		t.Fatalf("replayed command: ack %x, %v", ack, err)
	}
	if d, status, err := OpenAck(ack, newKey, nil); err != nil || status != AckApplied || d != CommandDigest(fresh) {
		t.Fatalf("ack of a replay: %x, %v, %v", d, status, err)
	}
}

func TestAckPubKey(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	c2Priv := bytes.Repeat([]byte{9}, KeyLen)
	c2Pub, err := x25519PublicOf(c2Priv)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewPubKeyClient(IDFromName("pk"), priv, c2Pub, nil)
	if err != nil {
		t.Fatal(err)
	}
	key, err := C2CommandKey(c2Priv, pub)
	if err != nil {
		t.Fatal(err)
	}
	wire, err := ProtectCommand(command.NewResetTopics(), key, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	_, ack, err := c.HandleCommandAck(wire)
	if err != nil {
		t.Fatal(err)
	}
	if d, status, err := OpenAck(ack, key, nil); err != nil || status != AckApplied || d != CommandDigest(wire) {
		t.Fatalf("OpenAck = %x, %v, %v", d, status, err)
	}
	if AckTopic(c.ID()) != c.ControlTopic()+"/ack" {
		t.Fatalf("AckTopic = %s", AckTopic(c.ID()))
	}
}

func x25519PublicOf(private []byte) ([]byte, error) {
	k, err := ecdh.X25519().NewPrivateKey(private)
	if err != nil {
		return nil, err
	}
	return k.PublicKey().Bytes(), nil
}

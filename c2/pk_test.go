package c2

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/e4/command"
	"github.com/e4-iot/e4kit/transport/loopback"
)

func newEd25519(t *testing.T) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

func TestPKModeEndToEnd(t *testing.T) {
	ctx := context.Background()
	broker := loopback.NewBroker()
	env := newTestService(t, e4.PubKey, broker.Connect())
	svc := env.svc
	c2Pub := must[[]byte](t)(svc.C2PublicKey())

	pubA, privA := newEd25519(t)
	pubB, privB := newEd25519(t)
	a := must[AddedClient](t)(svc.AddClient(ctx, NewClient{Name: "a", PublicKey: pubA}))
	b := must[AddedClient](t)(svc.AddClient(ctx, NewClient{Name: "b", PublicKey: pubB}))
	if a.Key != nil {
		t.Fatal("PK mode returned a symmetric key")
	}
	devA := newPKDevice(t, broker.Connect(), "a", privA, c2Pub)
	devB := newPKDevice(t, broker.Connect(), "b", privB, c2Pub)

	must[TopicInfo](t)(svc.AddTopic(ctx, "pk/topic"))
	for _, c := range []AddedClient{a, b} {
		if err := svc.AddMember(ctx, "pk/topic", c.ID); err != nil {
			t.Fatal(err)
		}
	}
	if err := svc.LinkClients(ctx, Link{Source: a.ID, Target: b.ID}); err != nil {
		t.Fatal(err)
	}
	devA.waitCommands(1)
	devB.waitCommands(2)

	sub := subscribe(t, devB.tr, "pk/topic")
	if err := devA.tr.Publish(ctx, "pk/topic", []byte("signed")); err != nil {
		t.Fatal(err)
	}
	if m := receive(t, sub); string(m.Payload) != "signed" {
		t.Fatalf("b read %q", m.Payload)
	}

	// C2's key rotates; later commands use the new one and still apply.
	if n := must[int](t)(svc.RotateC2Key(ctx)); n != 2 {
		t.Fatalf("RotateC2Key queued %d, want 2", n)
	}
	if err := svc.RemoveMember(ctx, "pk/topic", b.ID); err != nil {
		t.Fatal(err)
	}
	cmds := devB.waitCommands(4)
	if cmds[2] != command.SetC2Key || cmds[3] != command.RemoveTopic {
		t.Fatalf("b got %v", cmds)
	}
	if devB.client.HasTopicKey("pk/topic") {
		t.Fatal("b still holds the topic key")
	}
	devA.waitCommands(4) // SetC2Key, then the rotation after b left: RemoveTopic, SetTopicKey

	// C2 signs in PK mode; a device accepts it once it has C2's signer key.
	if err := svc.SendC2SignerKey(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	devA.waitCommands(5)
	msg := must[[]byte](t)(svc.ProtectMessage(ctx, "pk/topic", []byte("from c2")))
	if got, err := devA.client.Unprotect(nil, msg, "pk/topic"); err != nil || string(got) != "from c2" {
		t.Fatalf("a read %q, %v", got, err)
	}
	mine, err := devA.client.Protect(nil, []byte("to c2"), "pk/topic")
	if err != nil {
		t.Fatal(err)
	}
	if got := must[[]byte](t)(svc.UnprotectMessage(ctx, "pk/topic", mine)); string(got) != "to c2" {
		t.Fatalf("C2 read %q", got)
	}

	// A new public key for a propagates to b through the link.
	pubA2, _ := newEd25519(t)
	if _, err := svc.NewClientKey(ctx, a.ID, pubA2); err != nil {
		t.Fatal(err)
	}
	if cmds := devB.waitCommands(5); cmds[4] != command.SetPubKey {
		t.Fatalf("b got %v", cmds)
	}
	if _, err := svc.AddClient(ctx, NewClient{Name: "bad", PublicKey: make([]byte, 32)}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("all-zero public key: %v, want ErrInvalidArgument", err)
	}
}

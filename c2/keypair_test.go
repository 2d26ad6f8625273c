package c2

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/e4/command"
	"github.com/e4-iot/e4kit/transport/loopback"
)

// TestNewClientKeyPairIsOffByDefault: without the opt-in C2 never makes a
// device's private key, and the client keeps its key.
func TestNewClientKeyPairIsOffByDefault(t *testing.T) {
	ctx := context.Background()
	env := newTestService(t, e4.PubKey, nil)
	pub, _ := newEd25519(t)
	dev := must[AddedClient](t)(env.svc.AddClient(ctx, NewClient{Name: "sensor", PublicKey: pub}))
	if _, err := env.svc.NewClientKeyPair(ctx, dev.ID); !errors.Is(err, ErrNotEnabled) {
		t.Fatalf("NewClientKeyPair without the opt-in: %v", err)
	}
	if got := must[ClientInfo](t)(env.svc.GetClient(ctx, dev.ID)); !bytes.Equal(got.PublicKey, pub) {
		t.Fatal("the refused call changed the client's key")
	}
	if n := must[int64](t)(env.svc.CountCommands(ctx, CommandFilter{})); n != 0 {
		t.Fatalf("%d commands queued by a refused call", n)
	}
	sk := newTestService(t, e4.SymKey, nil, func(c *Config) { c.AllowGeneratedKeyPairs = true })
	if _, err := sk.svc.NewClientKeyPair(ctx, e4.IDFromName("x")); !errors.Is(err, ErrWrongMode) {
		t.Fatalf("NewClientKeyPair in SK mode: %v", err)
	}
}

// TestNewClientKeyPairRekeysTheDevice: with the opt-in, the device gets a
// private key C2 generated (SetIDKey), switches to it, and still applies
// the commands C2 sends afterwards (protected for the new key); a linked
// client gets the new public key; and once SetIDKey is settled the private
// key is gone from the outbox.
func TestNewClientKeyPairRekeysTheDevice(t *testing.T) {
	ctx := context.Background()
	broker := loopback.NewBroker()
	env := newTestService(t, e4.PubKey, broker.Connect(), func(c *Config) { c.AllowGeneratedKeyPairs = true })
	svc := env.svc
	c2Pub := must[[]byte](t)(svc.C2PublicKey())
	pubA, privA := newEd25519(t)
	pubB, privB := newEd25519(t)
	a := must[AddedClient](t)(svc.AddClient(ctx, NewClient{Name: "a", PublicKey: pubA}))
	b := must[AddedClient](t)(svc.AddClient(ctx, NewClient{Name: "b", PublicKey: pubB}))
	devA := newPKDevice(t, broker.Connect(), "a", privA, c2Pub)
	devB := newPKDevice(t, broker.Connect(), "b", privB, c2Pub)
	if err := svc.LinkClients(ctx, Link{Source: a.ID, Target: b.ID}); err != nil {
		t.Fatal(err)
	}
	devB.waitCommands(1)

	newPub, err := svc.NewClientKeyPair(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if cmds := devA.waitCommands(1); cmds[0] != command.SetIDKey {
		t.Fatalf("device a applied %v", cmds)
	}
	if !bytes.Equal(devA.client.PublicKey(), newPub) || bytes.Equal(newPub, pubA) {
		t.Fatal("device a did not switch to the generated key pair")
	}
	if got := must[ClientInfo](t)(svc.GetClient(ctx, a.ID)); !bytes.Equal(got.PublicKey, newPub) {
		t.Fatal("C2 did not record the new public key")
	}
	must[TopicInfo](t)(svc.AddTopic(ctx, "after/rekey"))
	if err := svc.AddMember(ctx, "after/rekey", a.ID); err != nil {
		t.Fatal(err)
	}
	if cmds := devA.waitCommands(2); cmds[1] != command.SetTopicKey || !devA.client.HasTopicKey("after/rekey") {
		t.Fatalf("device a after the rekey applied %v", cmds)
	}
	if cmds := devB.waitCommands(2); cmds[1] != command.SetPubKey {
		t.Fatalf("linked device b applied %v", cmds)
	}
	env.waitIdle(t)

	// The discard follows the command's settling (on its event), so the
	// outbox may be idle a moment before it: wait for it, up to 10 s.
	checkDiscarded := func() {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			var held int
			err := env.st.View(ctx, func(tx store.Tx) error {
				cmds, err := tx.ListCommands(store.CommandFilter{Target: targetGeneratedKeyPair}, 0, 10)
				if err != nil || len(cmds) != 1 || cmds[0].State != store.CommandSent {
					t.Fatalf("generated-key commands %+v, %v", cmds, err)
				}
				plain, err := svc.keys.Open(cmds[0].SealedPayload, commandBinding(cmds[0].ID, cmds[0].ClientID))
				if err != nil {
					t.Fatal(err)
				}
				held = len(plain)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if held == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the sent SetIDKey still holds %d bytes", held)
			}
		}
	}
	checkDiscarded()

	// A stop between sending and discarding: New discards it.
	err = env.st.Update(ctx, func(tx store.Tx) error {
		cmds, err := tx.ListCommands(store.CommandFilter{Target: targetGeneratedKeyPair}, 0, 10)
		if err != nil {
			return err
		}
		sealed, err := svc.keys.Seal(append(make([]byte, e4.KeyLen), 1), commandBinding(cmds[0].ID, cmds[0].ClientID))
		if err != nil {
			return err
		}
		return tx.UpdateCommandPayload(cmds[0].ID, sealed)
	})
	if err != nil {
		t.Fatal(err)
	}
	env.stop()
	env.start(t, e4.PubKey, nil)
	checkDiscarded()
}

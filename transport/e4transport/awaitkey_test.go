package e4transport_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/transport/e4transport"
	"github.com/e4-iot/e4kit/transport/loopback"
)

// TestAwaitKeyForgeryDoesNotDelayTheNextMessage is the regression test of
// security item 9: with AwaitKey, a forged message with a fresh timestamp
// used to hold delivery of the subscription for the whole AwaitKey, again
// after every command. In a synctest bubble time only moves when every
// goroutine waits, so a legitimate message that arrives at the same fake
// instant as it was published was not held behind the forgery.
func TestAwaitKeyForgeryDoesNotDelayTheNextMessage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const awaitKey = 20 * time.Second
		ctx := context.Background()
		b := loopback.NewBroker()
		c2 := b.Connect()
		defer c2.Close()
		raw := b.Connect()
		defer raw.Close()
		var dropped drops
		reader := protect(t, b, newDevice(t, "reader"), &e4transport.Options{AwaitKey: awaitKey, OnDrop: dropped.record})
		sender := newDevice(t, "sender")
		forger := newDevice(t, "forger")
		_ = sender.SetTopicKey(topicKey, "room/temp")
		_ = reader.Client().SetTopicKey(topicKey, "room/temp")
		_ = forger.SetTopicKey(bytes.Repeat([]byte{0x33}, e4.KeyLen), "room/temp")
		sub, err := reader.Subscribe(ctx, "room/#")
		if err != nil {
			t.Fatal(err)
		}
		publish := func(c *e4.Client, text string) {
			wire, _ := c.Protect(nil, []byte(text), "room/temp")
			if err := raw.Publish(ctx, "room/temp", wire); err != nil {
				t.Fatal(err)
			}
		}
		for round := range 3 {
			start := time.Now()
			// Texts differ per round: time stands still in the bubble, and
			// a repeated text would be a replay.
			legitimate := fmt.Sprintf("legitimate %d", round)
			publish(forger, fmt.Sprintf("forged %d", round))
			publish(sender, legitimate)
			if m := receive(t, sub); string(m.Payload) != legitimate {
				t.Fatalf("round %d: got %q", round, m.Payload)
			}
			if waited := time.Since(start); waited != 0 {
				t.Fatalf("round %d: the forgery held the next message for %v", round, waited)
			}
			// A command (what used to re-arm the wait) is applied; the
			// held forgery is tried again and still held.
			sendSetTopicKey(t, c2, reader.Client(), topicKey, "room/other")
			synctest.Wait()
		}
		// The forgeries are dropped once their time is up, and reported as
		// forgeries.
		short, cancel := context.WithTimeout(ctx, awaitKey+time.Second)
		defer cancel()
		if m, err := sub.Receive(short); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Receive after the forgeries: %v, %v", m, err)
		}
		errs := dropped.snapshot()
		if len(errs) != 3 {
			t.Fatalf("%d drops, want the 3 forgeries", len(errs))
		}
		for _, err := range errs {
			if !errors.Is(err, e4.ErrAuthentication) {
				t.Fatalf("drop reason %v", err)
			}
		}
	})
}

// TestAwaitKeyHoldsBounded: messages beyond AwaitKeyMaxHeld are dropped at
// once with ErrAwaitKeyFull, and the held ones are still delivered once
// their key arrives.
func TestAwaitKeyHoldsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		b := loopback.NewBroker()
		c2 := b.Connect()
		defer c2.Close()
		raw := b.Connect()
		defer raw.Close()
		var dropped drops
		reader := protect(t, b, newDevice(t, "reader"), &e4transport.Options{
			AwaitKey: time.Minute, AwaitKeyMaxHeld: 2, OnDrop: dropped.record,
		})
		sender := newDevice(t, "sender")
		_ = sender.SetTopicKey(topicKey, "t")
		sub, err := reader.Subscribe(ctx, "t")
		if err != nil {
			t.Fatal(err)
		}
		for _, text := range []string{"one", "two", "three"} {
			wire, err := sender.Protect(nil, []byte(text), "t")
			if err != nil {
				t.Fatal(err)
			}
			if err := raw.Publish(ctx, "t", wire); err != nil {
				t.Fatal(err)
			}
		}
		short, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		if _, err := sub.Receive(short); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Receive without the key: %v", err)
		}
		if errs := dropped.snapshot(); len(errs) != 1 || !errors.Is(errs[0], e4transport.ErrAwaitKeyFull) || !errors.Is(errs[0], e4.ErrTopicKeyNotFound) {
			t.Fatalf("drops %v, want the third message for want of room", errs)
		}
		sendSetTopicKey(t, c2, reader.Client(), topicKey, "t")
		for _, want := range []string{"one", "two"} {
			if m := receive(t, sub); string(m.Payload) != want {
				t.Fatalf("got %q, want %q", m.Payload, want)
			}
		}
	})
}

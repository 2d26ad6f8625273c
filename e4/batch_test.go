package e4

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/e4/command"
)

// batchVsSingle runs msgs through UnprotectBatch on one client and through
// Unprotect, one at a time, on a twin built the same way, and requires
// identical Out and Err for every message. It returns the batch results.
func batchVsSingle(t *testing.T, newClient func() *Client, msgs []BatchMessage) []BatchMessage {
	t.Helper()
	batch, single := newClient(), newClient()
	got := make([]BatchMessage, len(msgs))
	copy(got, msgs)
	batch.UnprotectBatch(got)
	for i, m := range msgs {
		out, err := single.Unprotect(m.Dst, m.In, m.Topic)
		if !bytes.Equal(got[i].Out, out) || !sameError(got[i].Err, err) {
			t.Errorf("message %d on %q: batch %x, %v; one at a time %x, %v", i, m.Topic, got[i].Out, got[i].Err, out, err)
		}
	}
	return got
}

// TestUnprotectBatchVectors runs every SK message vector and every SK
// negative vector through UnprotectBatch and ProtectBatch, next to copies,
// forgeries and truncations of itself, on both AES implementations.
func TestUnprotectBatchVectors(t *testing.T) { forEachAES(t, testUnprotectBatchVectors) }

func testUnprotectBatchVectors(t *testing.T) {
	f := loadVectors(t)
	for _, v := range f.SKMessages {
		newClient := func() *Client { return newReceiverSK(t, v.Timestamp, v.Topic, v.Key) }
		forged := bytes.Clone(v.Protected)
		forged[len(forged)-1] ^= 0x40
		msgs := []BatchMessage{
			{Topic: v.Topic, In: forged},
			{Topic: v.Topic, In: v.Protected, Dst: []byte("prefix")},
			{Topic: v.Topic, In: v.Protected}, // a replay
			{Topic: v.Topic, In: v.Protected[:SKOverhead-1]},
			{Topic: "no/key/here", In: v.Protected},
		}
		got := batchVsSingle(t, newClient, msgs)
		if got[1].Err != nil || !bytes.Equal(got[1].Out, append([]byte("prefix"), v.Plaintext...)) {
			t.Errorf("%d bytes: batch Unprotect = %x, %v", len(v.Plaintext), got[1].Out, got[1].Err)
		}
		wantErrs := []error{ErrAuthentication, nil, ErrReplay, ErrInvalidLength, ErrTopicKeyNotFound}
		for i, want := range wantErrs {
			if got[i].Err != want {
				t.Errorf("%d bytes, message %d: error %v, want %v", len(v.Plaintext), i, got[i].Err, want)
			}
		}
		sender := newClient()
		p := []BatchMessage{{Topic: v.Topic, In: v.Plaintext}, {Topic: "no/key/here", In: v.Plaintext, Dst: []byte("x")}}
		sender.ProtectBatch(p)
		if p[0].Err != nil || !bytes.Equal(p[0].Out, v.Protected) {
			t.Errorf("%d bytes: ProtectBatch = %x, %v; want %x", len(v.Plaintext), p[0].Out, p[0].Err, v.Protected)
		}
		if p[1].Err != ErrTopicKeyNotFound || string(p[1].Out) != "x" {
			t.Errorf("ProtectBatch without a key: %q, %v", p[1].Out, p[1].Err)
		}
	}
	ran := 0
	for _, v := range f.Negative {
		if v.Mode != "sk" {
			continue
		}
		ran++
		newClient := func() *Client { return newReceiverSK(t, v.TimestampNow, v.Topic, v.Key) }
		batchVsSingle(t, newClient, []BatchMessage{{Topic: v.Topic, In: v.Protected}, {Topic: v.Topic, In: v.Protected}})
	}
	if ran == 0 {
		t.Fatal("no SK negative vectors")
	}
}

// TestUnprotectBatchOneBadMessage puts one forged message among twenty
// good ones (across runs of sixteen) and checks that it alone fails.
func TestUnprotectBatchOneBadMessage(t *testing.T) {
	clk := newClock(1764000000)
	receiver, sender := pairForMode(t, SymKey, clk)
	var msgs []BatchMessage
	var payloads [][]byte
	for i := range 21 {
		payload := bytes.Repeat([]byte{byte(i)}, 1000+i)
		p, err := sender.Protect(nil, payload, testTopic)
		if err != nil {
			t.Fatal(err)
		}
		if i == 10 {
			p[SKOverhead+5] ^= 1
		}
		msgs = append(msgs, BatchMessage{Topic: testTopic, In: p, Dst: make([]byte, 0, len(payload))})
		payloads = append(payloads, payload)
	}
	receiver.UnprotectBatch(msgs)
	for i, m := range msgs {
		if i == 10 {
			if m.Err != ErrAuthentication || len(m.Out) != 0 {
				t.Errorf("forged message: %x, %v", m.Out, m.Err)
			}
			if spare := m.Dst[:cap(m.Dst)]; !bytes.Equal(spare, make([]byte, len(spare))) {
				t.Error("forged message left plaintext in its Dst")
			}
			continue
		}
		if m.Err != nil || !bytes.Equal(m.Out, payloads[i]) {
			t.Errorf("message %d: %v", i, m.Err)
		}
	}
}

// TestUnprotectBatchFollowsCommands mixes commands to the control topic
// into a batch: a key change in the middle must apply to the messages
// after it (the previous key still opening during the transition), as it
// does one message at a time; a second topic and a replayed command ride
// along.
func TestUnprotectBatchFollowsCommands(t *testing.T) {
	forEachAES(t, testUnprotectBatchFollowsCommands)
}

func testUnprotectBatchFollowsCommands(t *testing.T) {
	clk := newClock(1764000000)
	const other = "sensors/humidity"
	newClient := func() *Client {
		c := newSK(t, &Config{Now: clk.Now})
		mustSetTopicKey(t, c, testKeyA, testTopic)
		mustSetTopicKey(t, c, testKeyB, other)
		return c
	}
	at := func(key []byte, payload string, offset int64) []byte {
		p, err := ProtectSymKey(nil, []byte(payload), key, time.Unix(clk.unix.Load()+offset, 0))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	rotate, err := ProtectCommand(mustCmd(command.NewSetTopicKey(testKeyB, HashTopic(testTopic))), clientKey, clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	control := newClient().ControlTopic()
	var msgs []BatchMessage
	for i := range 5 {
		msgs = append(msgs, BatchMessage{Topic: testTopic, In: at(testKeyA, fmt.Sprint("a", i), -int64(i))})
	}
	msgs = append(msgs,
		BatchMessage{Topic: other, In: at(testKeyB, "other", 0)},
		BatchMessage{Topic: control, In: rotate},
		BatchMessage{Topic: testTopic, In: at(testKeyB, "new key", -1)},
		BatchMessage{Topic: testTopic, In: at(testKeyA, "old key", -7)},
		BatchMessage{Topic: testTopic, In: at(testKeyB, "too old", -int64(time.Hour/time.Second))},
		BatchMessage{Topic: control, In: rotate}, // a replayed command
		BatchMessage{Topic: testTopic, In: at(testKeyB, "after", -2)},
	)
	for i := range 10 {
		msgs = append(msgs, BatchMessage{Topic: testTopic, In: at(testKeyB, fmt.Sprint("b", i), -int64(10+i))})
	}
	got := batchVsSingle(t, newClient, msgs)
	for i, m := range got {
		if m.Topic != control && i != 9 && m.Err != nil {
			t.Errorf("message %d: %v", i, m.Err)
		}
	}
	if got[7].Err != nil || string(got[7].Out) != "new key" || string(got[8].Out) != "old key" {
		t.Errorf("around the key change: %q %v, %q %v", got[7].Out, got[7].Err, got[8].Out, got[8].Err)
	}
}

// TestProtectBatchMatchesSingle compares ProtectBatch with Protect at the
// same clock reading, over more than one run of sixteen.
func TestProtectBatchMatchesSingle(t *testing.T) {
	clk := newClock(1764000000)
	_, a := pairForMode(t, SymKey, clk)
	_, b := pairForMode(t, SymKey, clk)
	var msgs []BatchMessage
	for i := range 19 {
		topic := testTopic
		if i%7 == 3 {
			topic = "unknown/topic"
		}
		msgs = append(msgs, BatchMessage{Topic: topic, In: bytes.Repeat([]byte{byte(i)}, 37*i), Dst: []byte{byte(i)}})
	}
	a.ProtectBatch(msgs)
	for i, m := range msgs {
		out, err := b.Protect([]byte{byte(i)}, m.In, m.Topic)
		if !bytes.Equal(m.Out, out) || !errors.Is(m.Err, err) || (err == nil) != (m.Err == nil) {
			t.Errorf("message %d: batch %x, %v; Protect %x, %v", i, m.Out, m.Err, out, err)
		}
	}
}

// TestBatchPubKeyMode checks that the batch functions of a PK client give
// Protect's and Unprotect's results.
func TestBatchPubKeyMode(t *testing.T) {
	clk := newClock(1764000000)
	receiver, sender := pairForMode(t, PubKey, clk)
	msgs := []BatchMessage{{Topic: testTopic, In: []byte("one")}, {Topic: testTopic, In: []byte("two")}}
	sender.ProtectBatch(msgs)
	in := []BatchMessage{{Topic: testTopic, In: msgs[0].Out}, {Topic: testTopic, In: msgs[1].Out}, {Topic: testTopic, In: msgs[1].Out}}
	receiver.UnprotectBatch(in)
	if string(in[0].Out) != "one" || string(in[1].Out) != "two" || in[0].Err != nil || in[1].Err != nil || in[2].Err != ErrReplay {
		t.Errorf("PK batch: %q %v, %q %v, %v", in[0].Out, in[0].Err, in[1].Out, in[1].Err, in[2].Err)
	}
}

// sameError reports whether two errors say the same: errors such as
// ErrReplay come wrapped with detail in a new value each time.
func sameError(a, b error) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Error() == b.Error()
}

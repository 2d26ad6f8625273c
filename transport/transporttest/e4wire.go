package transporttest

import (
	"bytes"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/e4/command"
	"github.com/e4-iot/e4kit/transport/e4transport"
)

// RunE4WireTests checks, with a bare (not WithE4) harness, what the
// conformance suite run through WithE4 cannot see: that E4 really is on the
// wire. Bare transports stand for the broker's view and for C2:
//
//   - CiphertextOnWire: a bare subscriber receives, from a protected
//     publisher, bytes that differ from the plaintext, e4.SKOverhead bytes
//     longer, that e4.UnprotectSymKey opens with the topic key;
//   - ForgeriesDropped: a protected subscriber drops plaintext and messages
//     under a wrong key, reporting them to OnDrop, and still delivers the
//     genuine message that follows;
//   - ControlCommand: a SetTopicKey command that C2 publishes on the
//     client's control topic reaches the client and is applied.
//
// Call it next to RunConformanceTests:
//
//	transporttest.RunE4WireTests(t, newHarness)
func RunE4WireTests(t *testing.T, newHarness HarnessMaker) {
	t.Run("CiphertextOnWire", func(t *testing.T) { testCiphertextOnWire(newEnv(t, newHarness)) })
	t.Run("ForgeriesDropped", func(t *testing.T) { testForgeriesDropped(newEnv(t, newHarness)) })
	t.Run("ControlCommand", func(t *testing.T) { testControlCommand(newEnv(t, newHarness)) })
}

// protected opens a transport protected by a new client with the given
// topic keys; it returns the client key too.
func (e *env) protected(keys map[string][]byte, opts *e4transport.Options) (*e4transport.Protected, []byte) {
	e.t.Helper()
	client, clientKey, err := newE4Client()
	if err != nil {
		e.t.Fatal(err)
	}
	for topic, key := range keys {
		if err := client.SetTopicKey(key, topic); err != nil {
			e.t.Fatalf("installing the key of %q: %v", topic, err)
		}
	}
	e.prepare(client.ControlTopic())
	p, err := protect(e.opContext(), e.transport(), client, opts)
	if err != nil {
		e.t.Fatalf("protecting a transport: %v", err)
	}
	e.t.Cleanup(func() { _ = p.Close() }) // the bare transport's cleanup reports errors
	return p, clientKey
}

func testCiphertextOnWire(e *env) {
	topic := e.topic("wire")
	e.prepare(topic)
	key := randomKey()
	wire := e.subscribe(e.transport(), topic)
	pub, _ := e.protected(map[string][]byte{topic: key}, nil)

	plain := []byte("secret reading: 21.5 C")
	e.publish(pub, topic, plain)
	m := e.receive(wire, "bare subscriber")
	if m.Topic != topic {
		e.t.Errorf("ciphertext arrived on %q, want %q", m.Topic, topic)
	}
	if len(m.Payload) != len(plain)+e4.SKOverhead {
		e.t.Errorf("wire payload is %d bytes, want %d (plaintext + %d)", len(m.Payload), len(plain)+e4.SKOverhead, e4.SKOverhead)
	}
	if bytes.Contains(m.Payload, plain) {
		e.t.Errorf("the plaintext is visible on the wire: %s", describe(m.Payload))
	}
	opened, err := e4.UnprotectSymKey(nil, m.Payload, key, nil)
	if err != nil {
		e.t.Fatalf("opening the wire payload with the topic key: %v", err)
	}
	if !bytes.Equal(opened, plain) {
		e.t.Errorf("the wire payload opens to %s, want %s", describe(opened), describe(plain))
	}
}

func testForgeriesDropped(e *env) {
	topic := e.topic("forgeries")
	e.prepare(topic)
	key := randomKey()
	drops := make(chan error, 8)
	onDrop := func(_ string, err error) { report(drops, err) }
	device, _ := e.protected(map[string][]byte{topic: key}, &e4transport.Options{OnDrop: onDrop})
	sub := e.subscribe(device, topic)
	bare := e.transport()
	pub, _ := e.protected(map[string][]byte{topic: key}, nil)

	wrongKey, err := e4.ProtectSymKey(nil, []byte("forged"), randomKey(), time.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	e.publish(bare, topic, []byte("plaintext, not protected at all"))
	e.publish(bare, topic, wrongKey)
	e.publish(pub, topic, []byte("genuine"))
	e.expectMessages(sub, "protected subscriber", topic, [][]byte{[]byte("genuine")}, true)
	e.expectQuiet("protected subscriber", sub)
	for i := range 2 {
		select {
		case err := <-drops:
			if err == nil {
				e.t.Errorf("drop %d reported no error", i+1)
			}
		case <-time.After(opTimeout):
			e.t.Fatalf("%d of 2 forged messages reported to OnDrop", i)
		}
	}
}

// report hands err to the test without ever blocking the callback, which
// runs on the transport's own goroutine.
func report(to chan<- error, err error) {
	select {
	case to <- err:
	default:
	}
}

func testControlCommand(e *env) {
	topic := e.topic("commanded")
	e.prepare(topic)
	commands := make(chan error, 1)
	onCommand := func(cmd command.Code, err error) {
		if cmd == command.SetTopicKey {
			report(commands, err)
		}
	}
	device, clientKey := e.protected(nil, &e4transport.Options{OnCommand: onCommand})
	sub := e.subscribe(device, topic)
	c2 := e.transport()

	key := randomKey()
	cmd, err := command.NewSetTopicKey(key, e4.HashTopic(topic))
	if err != nil {
		e.t.Fatal(err)
	}
	protectedCmd, err := e4.ProtectCommand(cmd, clientKey, time.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	e.publish(c2, device.Client().ControlTopic(), protectedCmd)
	select {
	case err := <-commands:
		if err != nil {
			e.t.Fatalf("the device refused SetTopicKey: %v", err)
		}
	case <-time.After(opTimeout):
		e.t.Fatalf("the SetTopicKey command sent to %s never reached the device", device.Client().ControlTopic())
	}

	msg, err := e4.ProtectSymKey(nil, []byte("keyed by C2"), key, time.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	e.publish(c2, topic, msg)
	e.expectMessages(sub, "device", topic, [][]byte{[]byte("keyed by C2")}, true)
}

// RunAll runs everything an adapter must pass, as subtests: the suite on
// the bare adapter ("Bare"), the suite through the E4 decorator ("E4"), and
// the E4 wire tests ("E4Wire").
func RunAll(t *testing.T, newHarness HarnessMaker) {
	t.Run("Bare", func(t *testing.T) { RunConformanceTests(t, newHarness) })
	t.Run("E4", func(t *testing.T) { RunConformanceTests(t, WithE4(newHarness)) })
	t.Run("E4Wire", func(t *testing.T) { RunE4WireTests(t, newHarness) })
}

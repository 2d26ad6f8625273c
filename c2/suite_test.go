package c2

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/c2/seal"
	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/loopback"
)

func withSuite(s *e4.Suite) func(*Config) { return func(c *Config) { c.Suite = s } }

// suiteDevice attaches a device of the given suite and id to tr.
func suiteDevice(t *testing.T, tr transport.Transport, id e4.ID, key []byte, cfg *e4.Config) *device {
	t.Helper()
	c, err := e4.NewSymKeyClient(id, key, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return attachDevice(t, tr, c)
}

// TestFastC2AndDevicesTalk: a fast-mode C2 names clients and topics with
// the fast hash and keys fast devices, SK and PK, which then talk to each
// other and to C2.
func TestFastC2AndDevicesTalk(t *testing.T) {
	ctx := context.Background()
	broker := loopback.NewBroker()
	env := newTestService(t, e4.SymKey, broker.Connect(), withSuite(e4.Fast))
	svc := env.svc
	if svc.Suite() != e4.Fast {
		t.Fatalf("suite %v", svc.Suite())
	}
	alice := must[AddedClient](t)(svc.AddClient(ctx, NewClient{Name: "alice"}))
	bob := must[AddedClient](t)(svc.AddClient(ctx, NewClient{Name: "bob"}))
	if alice.ID != e4.Fast.IDFromName("alice") {
		t.Fatalf("fast C2 gave alice id %v, not the fast id from name", alice.ID)
	}
	topic := must[TopicInfo](t)(svc.AddTopic(ctx, "sensors/temp"))
	if topic.Hash != e4.Fast.HashTopic("sensors/temp") {
		t.Fatalf("topic hash %v is not the fast one", topic.Hash)
	}
	cfg := &e4.Config{Suite: e4.Fast}
	devA := suiteDevice(t, broker.Connect(), alice.ID, alice.Key, cfg)
	devB := suiteDevice(t, broker.Connect(), bob.ID, bob.Key, cfg)
	for _, c := range []AddedClient{alice, bob} {
		if err := svc.AddMember(ctx, "sensors/temp", c.ID); err != nil {
			t.Fatal(err)
		}
	}
	devA.waitCommands(1)
	devB.waitCommands(1)
	sub := subscribe(t, devB.tr, "sensors/temp")
	if err := devA.tr.Publish(ctx, "sensors/temp", []byte("21.5")); err != nil {
		t.Fatal(err)
	}
	if m := receive(t, sub); string(m.Payload) != "21.5" {
		t.Fatalf("bob read %q", m.Payload)
	}
	mine := must[[]byte](t)(devA.client.Protect(nil, []byte("to c2"), "sensors/temp"))
	if got := must[[]byte](t)(svc.UnprotectMessage(ctx, "sensors/temp", mine)); string(got) != "to c2" {
		t.Fatalf("C2 read %q", got)
	}
}

func TestFastC2PKMode(t *testing.T) {
	ctx := context.Background()
	broker := loopback.NewBroker()
	env := newTestService(t, e4.PubKey, broker.Connect(), withSuite(e4.Fast))
	svc := env.svc
	c2Pub := must[[]byte](t)(svc.C2PublicKey())
	pubA, privA := newEd25519(t)
	a := must[AddedClient](t)(svc.AddClient(ctx, NewClient{Name: "a", PublicKey: pubA}))
	c, err := e4.NewPubKeyClient(a.ID, privA, c2Pub, &e4.Config{Suite: e4.Fast})
	if err != nil {
		t.Fatal(err)
	}
	dev := attachDevice(t, broker.Connect(), c)
	must[TopicInfo](t)(svc.AddTopic(ctx, "pk/topic"))
	if err := svc.AddMember(ctx, "pk/topic", a.ID); err != nil {
		t.Fatal(err)
	}
	if err := svc.SendC2SignerKey(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	dev.waitCommands(2)
	if !c.HasTopicKey("pk/topic") {
		t.Fatal("the fast PK device has no key after C2's command")
	}
	signed := must[[]byte](t)(svc.ProtectMessage(ctx, "pk/topic", []byte("from c2")))
	if got := must[[]byte](t)(c.Unprotect(nil, signed, "pk/topic")); string(got) != "from c2" {
		t.Fatalf("device read %q", got)
	}
}

// TestSuiteMismatchC2AndDevice: a fast device under a default C2, and a
// default device under a fast C2, refuse every command with
// ErrAuthentication; the fast device's error names its suite, and with
// DiagnoseSuite each names the other side's suite (ErrSuiteMismatch).
func TestSuiteMismatchC2AndDevice(t *testing.T) {
	for _, tc := range []struct {
		c2, device *e4.Suite
		diagnose   bool
		want       string
	}{
		{e4.V1, e4.Fast, false, `suite "fast"`},
		{e4.V1, e4.Fast, true, `authenticates under suite "v1", this client runs suite "fast"`},
		{e4.Fast, e4.V1, true, `authenticates under suite "fast", this client runs suite "v1"`},
	} {
		t.Run(tc.c2.Name()+"-c2/"+tc.device.Name()+"-device", func(t *testing.T) {
			ctx := context.Background()
			broker := loopback.NewBroker()
			svc := newTestService(t, e4.SymKey, broker.Connect(), withSuite(tc.c2)).svc
			added := must[AddedClient](t)(svc.AddClient(ctx, NewClient{Name: "dev"}))
			dev := suiteDevice(t, broker.Connect(), added.ID, added.Key, &e4.Config{Suite: tc.device, DiagnoseSuite: tc.diagnose})
			must[TopicInfo](t)(svc.AddTopic(ctx, "t"))
			if err := svc.AddMember(ctx, "t", added.ID); err != nil {
				t.Fatal(err)
			}
			err := dev.waitCommandError()
			if !errors.Is(err, e4.ErrAuthentication) || tc.diagnose != errors.Is(err, e4.ErrSuiteMismatch) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("device refused the command with %v; want ErrAuthentication naming %s", err, tc.want)
			}
			if dev.client.HasTopicKey("t") {
				t.Fatal("the command of the other suite was applied")
			}
		})
	}
}

// waitCommandError waits for the first command the device refused.
func (d *device) waitCommandError() error {
	d.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		d.mu.Lock()
		for _, err := range append(d.cmdErrs, d.lastUnauthentic) {
			if err != nil {
				d.mu.Unlock()
				return err
			}
		}
		d.mu.Unlock()
		if !d.awaitChange(deadline) {
			break
		}
	}
	d.t.Fatal("the device refused no command")
	return nil
}

func TestReopenChecksSuite(t *testing.T) {
	ctx := context.Background()
	env := newTestService(t, e4.SymKey, nil, withSuite(e4.Fast))
	must[AddedClient](t)(env.svc.AddClient(ctx, NewClient{Name: "dev"}))
	env.stop()

	st, err := sqliteOpen(env.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	keys, err := seal.NewKeyring(env.master)
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(ctx, Config{Mode: e4.SymKey, Store: st, Keyring: keys})
	if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), `created with suite "fast", not "v1"`) {
		t.Fatalf("reopen with the default suite: %v", err)
	}
	svc, err := New(ctx, Config{Mode: e4.SymKey, Suite: e4.Fast, Store: st, Keyring: keys})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.GetClient(ctx, e4.Fast.IDFromName("dev")); err != nil {
		t.Fatalf("the fast client after reopen: %v", err)
	}
}

// TestDefaultDatabaseStaysV1: a database created without a suite setting
// (before suites existed, or by the default) refuses fast mode.
func TestDefaultDatabaseStaysV1(t *testing.T) {
	ctx := context.Background()
	env := newTestService(t, e4.SymKey, nil)
	env.stop()
	st, err := sqliteOpen(env.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	keys, err := seal.NewKeyring(env.master)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(ctx, Config{Mode: e4.SymKey, Suite: e4.Fast, Store: st, Keyring: keys}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("fast C2 on a default database: %v", err)
	}
}

package c2

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/e4-iot/e4kit/c2/seal"
	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/e4/command"
	"github.com/e4-iot/e4kit/transport/loopback"
)

func TestSKDevicesGetKeysAndTalk(t *testing.T) {
	ctx := context.Background()
	broker := loopback.NewBroker()
	env := newTestService(t, e4.SymKey, broker.Connect())
	svc := env.svc

	alice := must[AddedClient](t)(svc.AddClient(ctx, NewClient{Name: "alice"}))
	bob := must[AddedClient](t)(svc.AddClient(ctx, NewClient{Name: "bob"}))
	if len(alice.Key) != e4.KeyLen || bytes.Equal(alice.Key, bob.Key) {
		t.Fatalf("generated keys: %x %x", alice.Key, bob.Key)
	}
	devA := newSKDevice(t, broker.Connect(), "alice", alice.Key)
	devB := newSKDevice(t, broker.Connect(), "bob", bob.Key)

	must[TopicInfo](t)(svc.AddTopic(ctx, "sensors/temp"))
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

	// What C2 protects, a device reads, and the other way round.
	protected := must[[]byte](t)(svc.ProtectMessage(ctx, "sensors/temp", []byte("from c2")))
	raw := broker.Connect()
	if err := raw.Publish(ctx, "sensors/temp", protected); err != nil {
		t.Fatal(err)
	}
	if m := receive(t, sub); string(m.Payload) != "from c2" {
		t.Fatalf("bob read %q", m.Payload)
	}
	mine, err := devA.client.Protect(nil, []byte("to c2"), "sensors/temp")
	if err != nil {
		t.Fatal(err)
	}
	if got := must[[]byte](t)(svc.UnprotectMessage(ctx, "sensors/temp", mine)); string(got) != "to c2" {
		t.Fatalf("C2 read %q", got)
	}
}

func TestRotationAndRemovalSecrecy(t *testing.T) {
	ctx := context.Background()
	broker := loopback.NewBroker()
	env := newTestService(t, e4.SymKey, broker.Connect())
	svc := env.svc
	var devs []*device
	for _, name := range []string{"a", "b", "c"} {
		c := must[AddedClient](t)(svc.AddClient(ctx, NewClient{Name: name}))
		devs = append(devs, newSKDevice(t, broker.Connect(), name, c.Key))
	}
	must[TopicInfo](t)(svc.AddTopic(ctx, "t"))
	for _, d := range devs {
		if err := svc.AddMember(ctx, "t", d.client.ID()); err != nil {
			t.Fatal(err)
		}
		d.waitCommands(1) // else the rotation supersedes it
	}
	n := must[int](t)(svc.RotateTopic(ctx, "t"))
	if n != 3 {
		t.Fatalf("rotation queued %d commands, want 3", n)
	}
	for _, d := range devs {
		cmds := d.waitCommands(2)
		if cmds[0] != command.SetTopicKey || cmds[1] != command.SetTopicKey {
			t.Fatalf("commands %v", cmds)
		}
	}
	if info := must[TopicInfo](t)(svc.GetTopic(ctx, "t")); info.KeyVersion != 2 {
		t.Fatalf("key version %d after one rotation, want 2", info.KeyVersion)
	}

	// What c could still write with the key it holds, once removed.
	underOldKey := must[[]byte](t)(svc.ProtectMessage(ctx, "t", []byte("from the removed device")))

	// Removing c sends it RemoveTopic and rotates for a and b.
	if err := svc.RemoveMember(ctx, "t", devs[2].client.ID()); err != nil {
		t.Fatal(err)
	}
	if cmds := devs[2].waitCommands(3); cmds[2] != command.RemoveTopic {
		t.Fatalf("removed device got %v", cmds)
	}
	// The others get RemoveTopic then the new key.
	for _, d := range devs[:2] {
		if cmds := d.waitCommands(4); cmds[2] != command.RemoveTopic || cmds[3] != command.SetTopicKey {
			t.Fatalf("remaining member got %v", cmds)
		}
	}
	msg := must[[]byte](t)(svc.ProtectMessage(ctx, "t", []byte("after removal")))
	if got, err := devs[1].client.Unprotect(nil, msg, "t"); err != nil || string(got) != "after removal" {
		t.Fatalf("remaining member: %q, %v", got, err)
	}
	// The remaining members hold no previous key: the removed device's
	// key is refused at once, not for the whole key-transition period.
	for _, d := range devs[:2] {
		if got, err := d.client.Unprotect(nil, underOldKey, "t"); err == nil {
			t.Fatalf("a remaining member read %q under the removed device's key", got)
		}
	}
	// Even a removed device that ignored RemoveTopic cannot read: give it
	// back the key it had and try.
	if _, err := devs[2].client.Unprotect(nil, msg, "t"); err == nil {
		t.Fatal("removed device read a message protected after its removal")
	}
	members := must[int64](t)(svc.CountClientsOfTopic(ctx, "t"))
	if members != 2 {
		t.Fatalf("%d members, want 2", members)
	}
}

func TestKeysAreSealedInTheDatabase(t *testing.T) {
	ctx := context.Background()
	env := newTestService(t, e4.SymKey, nil)
	known := bytes.Repeat([]byte{0x5A, 0xC3, 0x17, 0x88}, 8)
	must[AddedClient](t)(env.svc.AddClient(ctx, NewClient{Name: "dev", Key: known}))
	must[TopicInfo](t)(env.svc.AddTopic(ctx, "x"))
	if err := env.svc.AddMember(ctx, "x", e4.IDFromName("dev")); err != nil {
		t.Fatal(err)
	}
	env.stop()
	found := false
	files, _ := filepath.Glob(env.dbPath + "*") // the database and its WAL
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		found = found || len(data) > 0
		if bytes.Contains(data, known) || bytes.Contains(data, known[:16]) || bytes.Contains(data, known[16:]) {
			t.Fatalf("%s holds the client key in clear", f)
		}
	}
	if !found {
		t.Fatal("no database file found")
	}
}

func TestReopenChecksModeAndMasterKey(t *testing.T) {
	ctx := context.Background()
	env := newTestService(t, e4.SymKey, nil)
	must[AddedClient](t)(env.svc.AddClient(ctx, NewClient{Name: "dev"}))
	env.stop()

	st, err := sqliteOpen(env.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	keys := must[*seal.Keyring](t)(seal.NewKeyring(env.master))
	if _, err := New(ctx, Config{Mode: e4.PubKey, Store: st, Keyring: keys}); !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "mode") {
		t.Fatalf("reopen in the other mode: %v", err)
	}
	wrong := must[*seal.Keyring](t)(seal.NewKeyring(must[[]byte](t)(seal.GenerateKey())))
	if _, err := New(ctx, Config{Mode: e4.SymKey, Store: st, Keyring: wrong}); !errors.Is(err, seal.ErrUnknownKey) {
		t.Fatalf("reopen with another master key: %v", err)
	}
	svc, err := New(ctx, Config{Mode: e4.SymKey, Store: st, Keyring: keys})
	if err != nil {
		t.Fatal(err)
	}
	if n := must[int64](t)(svc.CountClients(ctx)); n != 1 {
		t.Fatalf("%d clients after reopen", n)
	}
}

func TestInvalidArguments(t *testing.T) {
	ctx := context.Background()
	env := newTestService(t, e4.SymKey, nil)
	svc := env.svc
	cases := map[string]error{}
	_, cases["empty name"] = svc.AddClient(ctx, NewClient{})
	_, cases["short key"] = svc.AddClient(ctx, NewClient{Name: "x", Key: make([]byte, 31)})
	_, cases["key and password"] = svc.AddClient(ctx, NewClient{Name: "x", Key: make([]byte, 32), Password: "long enough password"})
	_, cases["control char"] = svc.AddClient(ctx, NewClient{Name: "a\x00b"})
	_, cases["wildcard topic"] = svc.AddTopic(ctx, "a/+/b")
	_, cases["hash topic"] = svc.AddTopic(ctx, "a/#")
	_, cases["empty topic"] = svc.AddTopic(ctx, "")
	_, cases["huge page"] = svc.ListClients(ctx, e4.ID{}, MaxLimit+1)
	mismatch := e4.IDFromName("other")
	_, cases["id not of name"] = svc.AddClient(ctx, NewClient{Name: "x", ID: &mismatch})
	for name, err := range cases {
		if !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%s: %v, want ErrInvalidArgument", name, err)
		}
	}
	if _, err := svc.AddClient(ctx, NewClient{Name: "x", PublicKey: make([]byte, 32)}); !errors.Is(err, ErrWrongMode) {
		t.Errorf("public key in SK mode: %v", err)
	}
	if err := svc.SendPubKey(ctx, Link{Source: e4.ID{}, Target: e4.ID{}}); !errors.Is(err, ErrWrongMode) {
		t.Errorf("SendPubKey in SK mode: %v", err)
	}
	if _, err := svc.RotateC2Key(ctx); !errors.Is(err, ErrWrongMode) {
		t.Errorf("RotateC2Key in SK mode: %v", err)
	}
	if err := svc.AddMember(ctx, "t", e4.IDFromName("nobody")); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown client: %v", err)
	}
	must[AddedClient](t)(svc.AddClient(ctx, NewClient{Name: "dup"}))
	if _, err := svc.AddClient(ctx, NewClient{Name: "dup"}); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate client: %v", err)
	}
	// Nothing of the failures above was written.
	if n := must[int64](t)(svc.CountClients(ctx)); n != 1 {
		t.Errorf("%d clients, want 1", n)
	}
}

func TestPaginationCoversEveryClientOnce(t *testing.T) {
	ctx := context.Background()
	env := newTestService(t, e4.SymKey, nil)
	const total = 57
	for i := range total {
		must[AddedClient](t)(env.svc.AddClient(ctx, NewClient{Name: "dev-" + string(rune('A'+i))}))
	}
	seen := map[e4.ID]bool{}
	var after e4.ID
	for {
		page := must[[]ClientInfo](t)(env.svc.ListClients(ctx, after, 10))
		for _, c := range page {
			if seen[c.ID] {
				t.Fatalf("client %s listed twice", c.ID)
			}
			seen[c.ID] = true
		}
		if len(page) < 10 {
			break
		}
		after = page[len(page)-1].ID
	}
	if len(seen) != total {
		t.Fatalf("listed %d clients, want %d", len(seen), total)
	}
}

func sqliteOpen(path string) (store.Store, error) {
	return sqliteOpenCtx(context.Background(), path)
}

package c2

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/c2/seal"
	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/c2/store/postgres"
	"github.com/e4-iot/e4kit/c2/store/sqlite"
	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/internal/testbroker"
)

// fillDeployment gives a service clients (imported, SK mode), topics and
// memberships whose commands wait in the outbox (no transport).
func fillDeployment(t *testing.T, svc *Service, clients int) {
	t.Helper()
	ctx := context.Background()
	var csv strings.Builder
	csv.WriteString("name,public_key\n")
	for i := range clients {
		pub := ""
		if svc.Mode() == e4.PubKey {
			p, _, _ := ed25519.GenerateKey(rand.Reader)
			pub = hex.EncodeToString(p)
		}
		fmt.Fprintf(&csv, "dev-%d,%s\n", i, pub)
	}
	if _, err := svc.ImportClients(ctx, strings.NewReader(csv.String()), ImportCSV, nil); err != nil {
		t.Fatal(err)
	}
	for _, topic := range []string{"plant/a", "plant/b"} {
		must[TopicInfo](t)(svc.AddTopic(ctx, topic))
		for i := range 5 {
			if err := svc.AddMember(ctx, topic, e4.IDFromName(fmt.Sprintf("dev-%d", i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := svc.RotateTopic(ctx, "plant/a"); err != nil {
		t.Fatal(err)
	}
	if svc.Mode() == e4.SymKey {
		// A client-key change the device has not confirmed: C2 keeps the
		// previous key, sealed, until it does.
		if _, err := svc.NewClientKey(ctx, e4.IDFromName("dev-0"), nil); err != nil {
			t.Fatal(err)
		}
	}
}

// sealedValues opens every sealed value of st with keys and counts them.
func sealedValues(t *testing.T, st store.Store, keys *seal.Keyring) (n int, err error) {
	t.Helper()
	open := func(v []byte, binding string) error {
		n++
		_, err := keys.Open(v, binding)
		return err
	}
	err = st.View(context.Background(), func(tx store.Tx) error {
		cs, err := tx.ListClients(e4.ID{}, 100000)
		if err != nil {
			return err
		}
		for _, c := range cs {
			if len(c.SealedKey) > 0 {
				if err := open(c.SealedKey, clientKeyBinding(c.ID)); err != nil {
					return err
				}
			}
		}
		ts, err := tx.ListTopics("", 1000)
		if err != nil {
			return err
		}
		for _, tp := range ts {
			if err := open(tp.SealedKey, topicKeyBinding(tp.Name, tp.KeyVersion)); err != nil {
				return err
			}
			if tp.PrevSealedKey != nil {
				// The key a rotation replaced, kept for the monitor.
				if err := open(tp.PrevSealedKey, topicKeyBinding(tp.Name, tp.KeyVersion-1)); err != nil {
					return err
				}
			}
		}
		cmds, err := tx.ListCommands(store.CommandFilter{}, 0, 100000)
		if err != nil {
			return err
		}
		for _, c := range cmds {
			if err := open(c.SealedPayload, commandBinding(c.ID, c.ClientID)); err != nil {
				return err
			}
		}
		changes, err := tx.ListKeyChanges(e4.ID{}, 100000)
		if err != nil {
			return err
		}
		for _, ds := range changes {
			if err := open(ds.PrevSealedKey, clientKeyBinding(ds.ClientID)); err != nil {
				return err
			}
		}
		for _, name := range append(sealedSettings, settingSealCheck) {
			v, err := tx.GetSetting(name)
			if isNotFound(err) {
				continue
			} else if err != nil {
				return err
			}
			if err := open(v, "setting/"+name); err != nil {
				return err
			}
		}
		return nil
	})
	return n, err
}

func keyringOf(t *testing.T, key []byte) *seal.Keyring {
	t.Helper()
	k, err := seal.NewKeyring(key)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// checkRekeyed: every value opens under the new key alone, New accepts the
// new key and refuses the old one, and a second run has nothing to do.
func checkRekeyed(t *testing.T, st store.Store, mode e4.Mode, oldKey, newKey []byte, values int) {
	t.Helper()
	ctx := context.Background()
	n, err := sealedValues(t, st, keyringOf(t, newKey))
	if err != nil || n != values {
		t.Fatalf("%d of %d values opened under the new key: %v", n, values, err)
	}
	if _, err := New(ctx, Config{Mode: mode, Store: st, Keyring: keyringOf(t, oldKey)}); !errors.Is(err, seal.ErrUnknownKey) {
		t.Fatalf("New with the old key after the rekey: %v", err)
	}
	svc, err := New(ctx, Config{Mode: mode, Store: st, Keyring: keyringOf(t, newKey)})
	if err != nil {
		t.Fatalf("New with the new key: %v", err)
	}
	if _, err := svc.ProtectMessage(ctx, "plant/a", []byte("still works")); err != nil && !errors.Is(err, ErrWrongMode) {
		t.Fatalf("the rekeyed topic key does not work: %v", err)
	}
	again, err := Rekey(ctx, st, oldKey, newKey, nil)
	if err != nil || again.Resealed != 0 {
		t.Fatalf("second run: %+v, %v", again, err)
	}
}

// TestRekeyReSealsEverything: on SQLite (both modes) and PostgreSQL, a
// rekey re-seals client keys, topic keys, the C2 key pair and every outbox
// payload under the new master key; afterwards only the new key opens the
// database.
func TestRekeyReSealsEverything(t *testing.T) {
	ctx := context.Background()
	run := func(t *testing.T, st store.Store, mode e4.Mode) {
		oldKey, _ := seal.GenerateKey()
		newKey, _ := seal.GenerateKey()
		svc, err := New(ctx, Config{Mode: mode, Store: st, Keyring: keyringOf(t, oldKey)})
		if err != nil {
			t.Fatal(err)
		}
		fillDeployment(t, svc, 1200)
		var c2Public []byte
		if mode == e4.PubKey {
			c2Public = must[[]byte](t)(svc.C2PublicKey())
		}
		values, err := sealedValues(t, st, keyringOf(t, oldKey))
		if err != nil {
			t.Fatal(err)
		}
		var reports int
		res, err := Rekey(ctx, st, oldKey, newKey, func(RekeyProgress) { reports++ })
		if err != nil {
			t.Fatal(err)
		}
		if res.Resealed != values || res.AlreadyNew != 0 || reports < 3 {
			t.Fatalf("re-sealed %+v in %d steps, want %d values", res, reports, values)
		}
		checkRekeyed(t, st, mode, oldKey, newKey, values)
		if mode == e4.PubKey {
			svc := must[*Service](t)(New(ctx, Config{Mode: mode, Store: st, Keyring: keyringOf(t, newKey)}))
			if got := must[[]byte](t)(svc.C2PublicKey()); string(got) != string(c2Public) {
				t.Fatal("the C2 key pair changed with the rekey")
			}
		}
	}
	sqliteStore := func(t *testing.T) store.Store {
		st, err := sqlite.Open(ctx, t.TempDir()+"/c2.db")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	t.Run("SQLite/SK", func(t *testing.T) { run(t, sqliteStore(t), e4.SymKey) })
	t.Run("SQLite/PK", func(t *testing.T) { run(t, sqliteStore(t), e4.PubKey) })
	t.Run("PostgreSQL/SK", func(t *testing.T) {
		st, err := postgres.Open(ctx, testbroker.StartPostgres(t, nil).NewDatabase(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		run(t, st, e4.SymKey)
	})
}

// TestRekeyRefusals: the same key, a wrong old key, another new key while
// a rekey is in progress, and a database never started are refused.
func TestRekeyRefusals(t *testing.T) {
	ctx := context.Background()
	env := newTestService(t, e4.SymKey, nil)
	fillDeployment(t, env.svc, 10)
	env.stop()
	st := must[store.Store](t)(sqlite.Open(ctx, env.dbPath))
	defer st.Close()
	other, err := seal.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	third, err := seal.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Rekey(ctx, st, env.master, env.master, nil); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("same key: %v", err)
	}
	if _, err := Rekey(ctx, st, other, third, nil); err == nil || !strings.Contains(err.Error(), "old master key does not open") {
		t.Fatalf("wrong old key: %v", err)
	}
	// An interrupted rekey to other (its marker) refuses a rekey to third.
	if err := st.Update(ctx, func(tx store.Tx) error {
		return tx.PutSetting(settingRekey, []byte(seal.IDOf(other).String()))
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := Rekey(ctx, st, env.master, third, nil); err == nil || !strings.Contains(err.Error(), "in progress") {
		t.Fatalf("another new key during a rekey: %v", err)
	}
	if _, err := New(ctx, Config{Mode: e4.SymKey, Store: st, Keyring: keyringOf(t, env.master)}); err == nil || !strings.Contains(err.Error(), "rekey") {
		t.Fatalf("New during a rekey: %v", err)
	}
	empty := must[store.Store](t)(sqlite.Open(ctx, t.TempDir()+"/empty.db"))
	defer empty.Close()
	if _, err := Rekey(ctx, empty, env.master, other, nil); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("empty database: %v", err)
	}
}

// Environment of the child process of TestRekeyResumesAfterSIGKILL.
const (
	rekeyChildDB  = "E4KIT_TEST_REKEY_DB"
	rekeyChildOld = "E4KIT_TEST_REKEY_OLD"
	rekeyChildNew = "E4KIT_TEST_REKEY_NEW"
)

// TestRekeyResumesAfterSIGKILL: a rekey killed with SIGKILL inside one of
// its transactions (the child process below, after some pages committed)
// leaves a database that C2 refuses to open with either key; running the
// rekey again finishes it and everything opens under the new key.
func TestRekeyResumesAfterSIGKILL(t *testing.T) {
	ctx := context.Background()
	env := newTestService(t, e4.SymKey, nil)
	fillDeployment(t, env.svc, 3*rekeyPage)
	env.stop()
	newKey, err := seal.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	values := func() int {
		st := must[store.Store](t)(sqlite.Open(ctx, env.dbPath))
		defer st.Close()
		return must[int](t)(sealedValues(t, st, keyringOf(t, env.master)))
	}()

	child := exec.Command(os.Args[0], "-test.run", "^TestRekeyCrashChild$", "-test.count=1")
	child.Env = append(os.Environ(), rekeyChildDB+"="+env.dbPath,
		rekeyChildOld+"="+hex.EncodeToString(env.master), rekeyChildNew+"="+hex.EncodeToString(newKey))
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "inside transaction 3\n" {
		_ = child.Process.Kill()
		t.Fatalf("child said %q (%v)", line, err)
	}
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := child.Wait(); err == nil {
		t.Fatal("the child survived SIGKILL")
	}

	st := must[store.Store](t)(sqlite.Open(ctx, env.dbPath))
	defer st.Close()
	for _, key := range [][]byte{env.master, newKey} {
		if _, err := New(ctx, Config{Mode: e4.SymKey, Store: st, Keyring: keyringOf(t, key)}); err == nil || !strings.Contains(err.Error(), "was interrupted") {
			t.Fatalf("New on a half-rekeyed database: %v", err)
		}
	}
	both := must[*seal.Keyring](t)(seal.NewKeyring(newKey, env.master))
	if n, err := sealedValues(t, st, both); err != nil || n != values {
		t.Fatalf("after the crash %d of %d values open under either key: %v", n, values, err)
	}
	if n, _ := sealedValues(t, st, keyringOf(t, newKey)); n <= 1 {
		t.Fatal("the child committed nothing before it was killed")
	}
	res, err := Rekey(ctx, st, env.master, newKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.AlreadyNew == 0 || res.Resealed+res.AlreadyNew != values {
		t.Fatalf("resumed run: %+v, want %d values in all", res, values)
	}
	checkRekeyed(t, st, e4.SymKey, env.master, newKey, values)
}

// TestRekeyCrashChild is the process TestRekeyResumesAfterSIGKILL kills:
// it runs a rekey and stops inside its third transaction, after that
// transaction's writes and before its commit, until it is killed. Without
// the parent's environment it does nothing.
func TestRekeyCrashChild(t *testing.T) {
	path := os.Getenv(rekeyChildDB)
	if path == "" {
		return
	}
	oldKey, err := hex.DecodeString(os.Getenv(rekeyChildOld))
	if err != nil {
		t.Fatal(err)
	}
	newKey, err := hex.DecodeString(os.Getenv(rekeyChildNew))
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Rekey(context.Background(), &stallingStore{Store: st, at: 3}, oldKey, newKey, nil)
	t.Fatalf("the rekey was not stopped: %v", err)
}

// stallingStore blocks forever inside its at-th read-write transaction,
// after fn's writes, saying so on stdout.
type stallingStore struct {
	store.Store
	n, at int
}

func (s *stallingStore) Update(ctx context.Context, fn func(tx store.Tx) error) error {
	return s.Store.Update(ctx, func(tx store.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		if s.n++; s.n == s.at {
			fmt.Printf("inside transaction %d\n", s.at)
			for {
				time.Sleep(time.Hour) // a timer, so the runtime sees no deadlock
			}
		}
		return nil
	})
}

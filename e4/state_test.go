package e4

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/e4/command"
	"github.com/e4-iot/e4kit/e4/store"
)

// slowStore is a memory store whose Save takes 2 ms, long enough for
// concurrent changes to overtake each other between snapshot and save.
type slowStore struct{ *store.Memory }

func (s slowStore) Save(b []byte) error {
	time.Sleep(2 * time.Millisecond)
	return s.Memory.Save(b)
}

// savedForm returns the serialized state of c, as it would be saved.
func savedForm(t *testing.T, c *Client) []byte {
	t.Helper()
	c.mu.RLock()
	defer c.mu.RUnlock()
	b, err := json.Marshal(c.snapshot())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestPersistNeverLosesAChange: once every change returned, the stored state
// is the state in memory, however the saves of concurrent changes interleave.
func TestPersistNeverLosesAChange(t *testing.T) {
	for trial := range 10 {
		clk := newClock(1764000000)
		st := slowStore{store.NewMemory()}
		c := newSK(t, &Config{Now: clk.Now, Store: st})
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for i := range 3 {
					topic := fmt.Sprintf("t/%d/%d", g, i)
					if g%2 == 0 {
						if err := c.SetTopicKey(testKeyA, topic); err != nil {
							t.Error(err)
						}
						continue
					}
					p, _ := ProtectCommand(mustCmd(command.NewSetTopicKey(testKeyB, HashTopic(topic))), clientKey, clk.Now())
					if _, err := c.HandleCommand(p); err != nil {
						t.Error(err)
					}
				}
			})
		}
		wg.Wait()
		loaded, err := LoadClient(&Config{Now: clk.Now, Store: st})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := savedForm(t, loaded), savedForm(t, c); !bytes.Equal(got, want) {
			t.Fatalf("trial %d: the stored state (%d topics) differs from memory (%d topics): a change that returned was lost",
				trial, len(loaded.topics), len(c.topics))
		}
	}
}

// TestNewClientLoadsSavedState: a constructor given a Store that holds a
// state returns that state, including a client key replaced by SetIDKey.
func TestNewClientLoadsSavedState(t *testing.T) {
	clk := newClock(1764000000)
	st := store.NewMemory()
	first := newSK(t, &Config{Now: clk.Now, Store: st})
	if !first.Fresh() {
		t.Fatal("client created on an empty store is not fresh")
	}
	mustSetTopicKey(t, first, testKeyA, testTopic)
	if err := sendCommand(t, first, clk, mustCmd(command.NewSetIDKey(testKeyB))); err != nil {
		t.Fatal(err)
	}
	clk.advance(time.Second)

	again := newSK(t, &Config{Now: clk.Now, Store: st}) // with the original client key
	if again.Fresh() || !again.HasTopicKey(testTopic) {
		t.Fatalf("reloaded client: fresh %v, has topic key %v", again.Fresh(), again.HasTopicKey(testTopic))
	}
	cmd, err := ProtectCommand(command.NewRemoveTopic(HashTopic(testTopic)), testKeyB, clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := again.HandleCommand(cmd); err != nil {
		t.Fatalf("command under the key SetIDKey installed: %v", err)
	}
}

func TestNewPubKeyClientLoadsSavedState(t *testing.T) {
	clk := newClock(1764000000)
	st := store.NewMemory()
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{5}, ed25519.SeedSize))
	c2Public, err := commandKeyPublic(bytes.Repeat([]byte{6}, 32))
	if err != nil {
		t.Fatal(err)
	}
	peer := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{8}, ed25519.SeedSize)).Public().(ed25519.PublicKey)
	first, err := NewPubKeyClient(IDFromName("pk"), priv, c2Public, &Config{Now: clk.Now, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	if err := first.SetPubKey(IDFromName("peer"), peer); err != nil {
		t.Fatal(err)
	}
	again, err := NewPubKeyClient(IDFromName("pk"), priv, c2Public, &Config{Now: clk.Now, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	if again.Fresh() || again.signer(IDFromName("peer")) == nil {
		t.Fatalf("reloaded PK client: fresh %v, lost the peer key", again.Fresh())
	}
}

// TestNewClientRefusesAnotherState: a state of another id or mode, or a
// damaged one, is an error and stays as it was.
func TestNewClientRefusesAnotherState(t *testing.T) {
	st := store.NewFile(filepath.Join(t.TempDir(), "e4.state"))
	newSK(t, &Config{Store: st})
	before, _ := os.ReadFile(st.Path())

	other := IDFromName("other")
	_, err := NewSymKeyClient(other, clientKey, &Config{Store: st})
	if !errors.Is(err, ErrStore) || !strings.Contains(err.Error(), other.String()) || !strings.Contains(err.Error(), IDFromName("device").String()) {
		t.Fatalf("another id: %v", err)
	}
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{5}, ed25519.SeedSize))
	c2Public, err := commandKeyPublic(bytes.Repeat([]byte{6}, 32))
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewPubKeyClient(IDFromName("device"), priv, c2Public, &Config{Store: st})
	if !errors.Is(err, ErrStore) || !strings.Contains(err.Error(), "sk mode") || !strings.Contains(err.Error(), "pk mode") {
		t.Fatalf("another mode: %v", err)
	}
	if after, _ := os.ReadFile(st.Path()); !bytes.Equal(after, before) {
		t.Fatal("a refused state was overwritten")
	}

	damaged := bytes.Clone(before)
	damaged[len(damaged)-1] ^= 1
	if err := os.WriteFile(st.Path(), damaged, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewSymKeyClient(IDFromName("device"), clientKey, &Config{Store: st}); !errors.Is(err, store.ErrCorrupt) {
		t.Fatalf("damaged state: %v", err)
	}
	if after, _ := os.ReadFile(st.Path()); !bytes.Equal(after, damaged) {
		t.Fatal("a damaged state was overwritten")
	}
}

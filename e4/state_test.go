package e4

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

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
					p, _ := ProtectCommand(mustCmd(CmdSetTopicKey(testKeyB, topic)), clientKey, clk.Now())
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

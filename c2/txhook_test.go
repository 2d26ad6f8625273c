package c2

import (
	"context"
	"errors"
	"testing"

	"github.com/e4-iot/e4kit/c2/internal/txhook"
	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/e4"
)

// TestTxHook: the hook runs once in each committed change, sees the
// change's writes, and a failing hook rolls the change back; reads and
// changes refused before their transaction never call it.
func TestTxHook(t *testing.T) {
	env := newTestService(t, e4.SymKey, nil)
	ctx := context.Background()
	var calls int
	seen := func(ctx context.Context, tx store.Tx) error {
		calls++
		_, err := tx.GetTopic("hooked/topic")
		return err
	}
	if _, err := env.svc.AddTopic(txhook.With(ctx, seen), "hooked/topic"); err != nil {
		t.Fatal(err)
	}
	if calls != 1 {
		t.Fatalf("hook called %d times for one change, want 1", calls)
	}
	if _, err := env.svc.GetTopic(txhook.With(ctx, seen), "hooked/topic"); err != nil || calls != 1 {
		t.Fatalf("a read called the hook (calls %d, err %v)", calls, err)
	}
	if _, err := env.svc.AddTopic(txhook.With(ctx, seen), "bad/+"); !errors.Is(err, ErrInvalidArgument) || calls != 1 {
		t.Fatalf("a refused change called the hook (calls %d, err %v)", calls, err)
	}

	refused := errors.New("audit unavailable")
	failing := func(context.Context, store.Tx) error { return refused }
	if _, err := env.svc.AddTopic(txhook.With(ctx, failing), "rolled/back"); !errors.Is(err, refused) {
		t.Fatalf("AddTopic with a failing hook: %v, want the hook's error", err)
	}
	if _, err := env.svc.GetTopic(ctx, "rolled/back"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the change survived its failing hook: %v", err)
	}
}

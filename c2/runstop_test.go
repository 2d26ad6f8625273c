package c2

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/e4-iot/e4kit/c2/seal"
	"github.com/e4-iot/e4kit/c2/store/sqlite"
	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/transport/loopback"
)

// TestRunStoppedWhileStarting: a C2 stopped while its dispatcher
// subscribes (SIGTERM just after `e4 c2 serve` started) stops cleanly:
// Run returns nil, not the cancelled subscription's error.
func TestRunStoppedWhileStarting(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "c2.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	master, _ := seal.GenerateKey()
	keys, err := seal.NewKeyring(master)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := New(ctx, Config{Mode: e4.SymKey, Store: st, Keyring: keys, Transport: loopback.NewBroker().Connect()})
	if err != nil {
		t.Fatal(err)
	}
	stopped, cancel := context.WithCancel(ctx)
	cancel()
	if err := svc.Run(stopped); err != nil {
		t.Fatalf("Run stopped while starting: %v, want nil", err)
	}
}

package c2

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/e4-iot/e4kit/e4"
)

// damageFile writes random bytes over a few pages in the last quarter of
// a closed SQLite file (where the clients added last live, away from the
// schema the start reads), as a broken disk or a stray write would.
func damageFile(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	const page = 4096
	pages := info.Size() / page
	if pages < 8 {
		t.Fatalf("the database has %d pages: too few to damage a table", pages)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for p := pages * 3 / 4; p < pages; p += 2 {
		junk := make([]byte, 512)
		for i := range junk {
			junk[i] = byte(rng.UintN(256))
		}
		if _, err := f.WriteAt(junk, p*page+100); err != nil {
			t.Fatal(err)
		}
	}
}

// TestHealthSeesDamagedFile: random bytes inside the SQLite file make
// listing clients fail; Health reports the database as failing too
// instead of OK (a ping and a count of pending commands did not read the
// damaged pages).
func TestHealthSeesDamagedFile(t *testing.T) {
	env := newTestService(t, e4.SymKey, nil)
	ctx := context.Background()
	for i := range 500 {
		if _, err := env.svc.AddClient(ctx, NewClient{Name: fmt.Sprintf("client-%03d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if h := env.svc.Health(ctx, 0); h.Database != nil {
		t.Fatalf("health of a sound database: %v", h.Database)
	}
	env.stop()
	damageFile(t, env.dbPath)
	env.start(t, e4.SymKey, nil)
	if _, err := env.svc.ListClients(ctx, e4.ID{}, MaxLimit); err == nil {
		t.Fatal("listing the clients of a damaged file worked: the damage missed them")
	}
	h := env.svc.Health(ctx, 0)
	if h.Database == nil || h.OK() {
		t.Fatalf("health of a damaged database: OK=%v, database error %v", h.OK(), h.Database)
	}
	t.Logf("health: %v", h.Database)
}

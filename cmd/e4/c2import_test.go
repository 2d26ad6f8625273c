package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/c2/seal"
	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/c2/store/sqlite"
	"github.com/e4-iot/e4kit/e4"
)

// TestC2ImportFailureKeepsTheCommittedKeys: an import whose second chunk
// fails (a duplicate name in it) leaves the first chunk in the database;
// the keys C2 generated for exactly those clients are in --keys-out (mode
// 0600), and the error says so. Before, the keys were lost with the error.
func TestC2ImportFailureKeepsTheCommittedKeys(t *testing.T) {
	s := startC2Serve(t)
	dir := t.TempDir()
	var file bytes.Buffer
	file.WriteString("name\n")
	for i := range c2.ImportChunk + 10 {
		fmt.Fprintf(&file, "fleet-%d\n", i)
	}
	fmt.Fprintf(&file, "fleet-%d\n", c2.ImportChunk+2)
	fleet, keysOut := filepath.Join(dir, "fleet.csv"), filepath.Join(dir, "keys.csv")
	writeFile(t, fleet, file.String())

	r := s.c2("", nil, "client", "import", fleet, "--keys-out", keysOut, "--progress", "never")
	want := fmt.Sprintf("the %d keys generated for the clients imported were written to %s", c2.ImportChunk, keysOut)
	if r.code == 0 || !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, "already exists") {
		t.Fatalf("import: exit %d, stderr %q; want a failure saying %q", r.code, r.stderr, want)
	}
	info, err := os.Stat(keysOut)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Fatalf("--keys-out has mode %v", info.Mode().Perm())
	}
	data, err := os.ReadFile(keysOut)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	written := make(map[string]string, len(rows))
	for _, row := range rows[1:] {
		written[row[0]] = row[1]
	}
	s.stop()
	checkKeysMatchDatabase(t, filepath.Join(s.dir, "data"), written)
}

// checkKeysMatchDatabase opens the C2 database of a data folder and checks
// that it holds exactly the clients of keys, with those keys.
func checkKeysMatchDatabase(t *testing.T, dataDir string, keys map[string]string) {
	t.Helper()
	ctx := context.Background()
	master, err := seal.KeyFromFile(filepath.Join(dataDir, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	ring, err := seal.NewKeyring(master)
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(ctx, filepath.Join(dataDir, "c2.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	err = st.View(ctx, func(tx store.Tx) error {
		var after e4.ID
		seen := 0
		for {
			page, err := tx.ListClients(after, 1000)
			if err != nil {
				return err
			}
			for _, c := range page {
				key, err := ring.Open(c.SealedKey, "client-key/"+c.ID.String())
				if err != nil {
					return err
				}
				if keys[c.ID.String()] != hex.EncodeToString(key) {
					return fmt.Errorf("client %s (%s) in the database: its key is not in --keys-out", c.ID, c.Name)
				}
				seen++
			}
			if len(page) < 1000 {
				break
			}
			after = page[len(page)-1].ID
		}
		if seen != len(keys) || seen == 0 {
			return fmt.Errorf("%d clients in the database, %d keys written", seen, len(keys))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

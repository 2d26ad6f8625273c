package c2

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/e4"
)

// TestImportRefusesMalformedFiles: every way a file used to lose records
// silently is an error naming the line where the file goes wrong, and
// nothing of the file is imported.
func TestImportRefusesMalformedFiles(t *testing.T) {
	ctx := context.Background()
	env := newTestService(t, e4.SymKey, nil)
	cases := []struct {
		name, data string
		format     ImportFormat
		want       string
	}{
		{"stray ] between JSON lines", "{\"name\":\"a1\"}\n]\n{\"name\":\"a2\"}\n", ImportJSON, "line 2"},
		{"stray } between JSON lines", "{\"name\":\"b1\"}\n}\n{\"name\":\"b2\"}\n", ImportJSON, "line 2"},
		{"stray } in an array", "[\n{\"name\":\"c1\"}\n}\n,{\"name\":\"c2\"}]\n", ImportJSON, "line 3"},
		{"data after the closing ]", "[\n{\"name\":\"d1\"}\n]\n{\"name\":\"d2\"}\n", ImportJSON, "line 4"},
		{"second array after the first", "[{\"name\":\"e1\"}]\n\n[{\"name\":\"e2\"}]", ImportJSON, "line 3"},
		{"array never closed", "[\n{\"name\":\"f1\"},\n{\"name\":\"f2\"}\n", ImportJSON, "not closed"},
		{"array cut inside a record", "[\n{\"name\":\"g1\"},\n{\"name\":", ImportJSON, "line 3"},
		{"CSV column twice", "name,key,name\nh1,,h2\n", ImportCSV, "line 1: column \"name\" appears twice"},
		{"CSV column twice, other case", "id,Key,key\n,,\n", ImportCSV, "column \"key\" appears twice"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := env.svc.ImportClients(ctx, strings.NewReader(c.data), c.format, nil)
			if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want ErrInvalidArgument saying %q", err, c.want)
			}
			if res.Imported != 0 {
				t.Fatalf("%d clients imported from a malformed file", res.Imported)
			}
		})
	}
	if n := must[int64](t)(env.svc.CountClients(ctx)); n != 0 {
		t.Fatalf("%d clients in the database, want 0", n)
	}
	// The forms that are right still import every record.
	for _, ok := range []string{"[]", " [ {\"name\":\"k1\"} , {\"name\":\"k2\"} ]\n\n", "{\"name\":\"k3\"}{\"name\":\"k4\"}\n", ""} {
		if _, err := env.svc.ImportClients(ctx, strings.NewReader(ok), ImportJSON, nil); err != nil {
			t.Fatalf("%q: %v", ok, err)
		}
	}
	if n := must[int64](t)(env.svc.CountClients(ctx)); n != 4 {
		t.Fatalf("%d clients after the good files, want 4", n)
	}
}

// TestImportReportsTheLineOfABadRecord: a record refused for its content
// is named by its number and its line, in a pretty-printed array too.
func TestImportReportsTheLineOfABadRecord(t *testing.T) {
	env := newTestService(t, e4.SymKey, nil)
	data := "[\n  {\"name\": \"p1\"},\n  {\n    \"name\": \"p2\",\n    \"key\": \"zz\"\n  }\n]\n"
	_, err := env.svc.ImportClients(context.Background(), strings.NewReader(data), ImportJSON, nil)
	if err == nil || !strings.Contains(err.Error(), "record 2 on line 3") {
		t.Fatalf("error %v, want record 2 on line 3", err)
	}
	_, err = env.svc.ImportClients(context.Background(), strings.NewReader("name,key\nq1,\n\nq2,zz\n"), ImportCSV, nil)
	if err == nil || !strings.Contains(err.Error(), "record 2 on line 4") {
		t.Fatalf("error %v, want record 2 on line 4", err)
	}
}

// TestImportFailingInItsSecondChunkKeepsTheCommittedKeys: the first chunk
// is committed, the second fails (a duplicate id); the result returned with
// the error holds the generated key of every client in the database, and
// only those, so the operator can provision them before resuming.
func TestImportFailingInItsSecondChunkKeepsTheCommittedKeys(t *testing.T) {
	ctx := context.Background()
	env := newTestService(t, e4.SymKey, nil)
	var csv bytes.Buffer
	csv.WriteString("name\n")
	for i := range ImportChunk + 10 {
		fmt.Fprintf(&csv, "dev-%d\n", i)
	}
	fmt.Fprintf(&csv, "dev-%d\n", ImportChunk+3) // duplicate inside the second chunk
	res, err := env.svc.ImportClients(ctx, &csv, ImportCSV, nil)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("the first %d clients are imported", ImportChunk)) {
		t.Fatalf("error %v, want one saying what was imported", err)
	}
	if res.Imported != ImportChunk || len(res.Generated) != ImportChunk {
		t.Fatalf("imported %d with %d keys, want %d and %d", res.Imported, len(res.Generated), ImportChunk, ImportChunk)
	}
	err = env.st.View(ctx, func(tx store.Tx) error {
		n, err := tx.CountClients()
		if err != nil || n != ImportChunk {
			return fmt.Errorf("%d clients in the database (%v), want %d", n, err, ImportChunk)
		}
		var after e4.ID
		for {
			page, err := tx.ListClients(after, 1000)
			if err != nil {
				return err
			}
			for _, c := range page {
				key, err := env.svc.keys.Open(c.SealedKey, clientKeyBinding(c.ID))
				if err != nil {
					return err
				}
				if got, ok := res.Generated[c.ID]; !ok || !bytes.Equal(got, key) {
					return fmt.Errorf("client %s: generated key missing or wrong", c.ID)
				}
			}
			if len(page) < 1000 {
				return nil
			}
			after = page[len(page)-1].ID
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// temps lists the temp files WriteFile left beside path.
func temps(t *testing.T, path string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), TempPrefix(filepath.Base(path))) {
			left = append(left, e.Name())
		}
	}
	return left
}

func TestWriteFileReplacesWithMode(t *testing.T) {
	// A permissive umask must not widen the mode: it is set explicitly.
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	for _, perm := range []os.FileMode{0o600, 0o644} {
		path := filepath.Join(t.TempDir(), "key")
		if err := os.WriteFile(path, []byte("old"), 0o666); err != nil {
			t.Fatal(err)
		}
		if err := WriteFile(path, []byte("new"), perm); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != "new" {
			t.Fatalf("content = %q, %v; want \"new\"", got, err)
		}
		info, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != perm {
			t.Errorf("mode = %v, want %v", info.Mode().Perm(), perm)
		}
		if left := temps(t, path); len(left) != 0 {
			t.Errorf("temp files left: %v", left)
		}
	}
}

func TestWriteFileFailureKeepsOld(t *testing.T) {
	t.Run("missing directory", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "missing", "key")
		assertFails(t, path)
	})
	t.Run("target is a directory", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "key")
		if err := os.MkdirAll(filepath.Join(path, "keep"), 0o700); err != nil {
			t.Fatal(err)
		}
		assertFails(t, path)
		if _, err := os.Stat(filepath.Join(path, "keep")); err != nil {
			t.Fatalf("failed write damaged the existing entry: %v", err)
		}
		if left := temps(t, path); len(left) != 0 {
			t.Fatalf("failed write left temp files: %v", left)
		}
	})
}

// assertFails checks that writing path fails with an error naming path and
// not the data.
func assertFails(t *testing.T, path string) {
	t.Helper()
	err := WriteFile(path, []byte("secret"), 0o600)
	var pe *fs.PathError
	if !errors.As(err, &pe) || pe.Op != "write" || pe.Path != path {
		t.Fatalf("err = %v, want a *fs.PathError writing %s", err, path)
	}
	if strings.Contains(err.Error(), "secret") {
		t.Fatalf("error leaks the data: %q", err)
	}
}

func TestIsTemp(t *testing.T) {
	cases := map[string]bool{
		".key.tmp-123": true,
		".key.tmp-":    false, // no random part
		".key.tmp-abc": false, // not made by CreateTemp
		".other.tmp-1": false, // another file's temp
		"key":          false,
	}
	for name, want := range cases {
		if got := IsTemp(name, "key"); got != want {
			t.Errorf("IsTemp(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestRemoveStaleTemps(t *testing.T) {
	dir := t.TempDir()
	files := []struct {
		name           string
		stale, survive bool
	}{
		{".key.tmp-123", true, false}, // leftover of a crashed write
		{".key.tmp-456", false, true}, // recent: maybe another process's write
		{".key.tmp-abc", true, true},  // not made by CreateTemp
		{".other.tmp-789", true, true},
	}
	now := time.Now()
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		if f.stale {
			old := now.Add(-2 * time.Minute)
			if err := os.Chtimes(p, old, old); err != nil {
				t.Fatal(err)
			}
		}
	}
	RemoveStaleTemps(filepath.Join(dir, "key"), time.Minute, now)
	for _, f := range files {
		_, err := os.Stat(filepath.Join(dir, f.name))
		if exists := err == nil; exists != f.survive {
			t.Errorf("%s: exists = %v, want %v", f.name, exists, f.survive)
		}
	}
}

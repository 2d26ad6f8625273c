package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// blob builds a state file image by hand, independently of encode, so the
// tests pin the documented on-disk format rather than whatever encode does.
func blob(version byte, payload []byte) []byte {
	var b bytes.Buffer
	b.WriteString("E4KS")
	b.WriteByte(version)
	binary.Write(&b, binary.LittleEndian, uint32(len(payload)))
	sum := sha256.Sum256(payload)
	b.Write(sum[:])
	b.Write(payload)
	return b.Bytes()
}

// maxBody is the largest body payloadFor generates.
const maxBody = 64 << 10

// payloadFor returns a self-verifying payload: n (uint64 little-endian)
// followed by a body whose length (0..64 KiB) and bytes derive from n alone,
// so a reader can check a loaded payload completely without knowing which
// Save produced it.
func payloadFor(n uint64) []byte {
	r := rand.New(rand.NewPCG(n, 0xe4))
	p := make([]byte, 8, 8+maxBody)
	binary.LittleEndian.PutUint64(p, n)
	size := r.IntN(maxBody + 1)
	for len(p) < 8+size {
		p = binary.LittleEndian.AppendUint64(p, r.Uint64())
	}
	return p[:8+size]
}

// checkPayload returns the sequence number of p, or an error if p is not
// exactly payloadFor of that number.
func checkPayload(p []byte) (uint64, error) {
	if len(p) < 8 {
		return 0, fmt.Errorf("payload of %d bytes is too short", len(p))
	}
	n := binary.LittleEndian.Uint64(p)
	want := payloadFor(n)
	if !bytes.Equal(p, want) {
		return n, fmt.Errorf("payload %d is inconsistent: %d bytes, want %d", n, len(p), len(want))
	}
	return n, nil
}

// stores returns one fresh instance of each backend.
func stores(t *testing.T) map[string]Store {
	return map[string]Store{
		"File":   NewFile(filepath.Join(t.TempDir(), "state")),
		"Memory": NewMemory(),
	}
}

// tempFiles lists the temp files Save may leave next to path.
func tempFiles(t *testing.T, path string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestRoundTrip(t *testing.T) {
	for name, s := range stores(t) {
		t.Run(name, func(t *testing.T) {
			if _, err := s.Load(); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Load before Save: err = %v, want ErrNotFound", err)
			}
			for _, want := range [][]byte{payloadFor(1), []byte("short"), {}, payloadFor(7)} {
				if err := s.Save(want); err != nil {
					t.Fatalf("Save: %v", err)
				}
				got, err := s.Load()
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("Load = %d bytes, want %d bytes saved", len(got), len(want))
				}
			}
		})
	}
}

func TestFileNotFoundMessage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state")
	_, err := NewFile(path).Load()
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), path) {
		t.Fatalf("err = %v, want ErrNotFound naming %s", err, path)
	}
}

func TestFilePath(t *testing.T) {
	if got := NewFile("dir/state").Path(); got != "dir/state" {
		t.Fatalf("Path = %q", got)
	}
}

// TestFileFormat pins the exact bytes Save writes.
func TestFileFormat(t *testing.T) {
	f := NewFile(filepath.Join(t.TempDir(), "state"))
	payload := []byte("some state")
	if err := f.Save(payload); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(f.Path())
	if err != nil {
		t.Fatal(err)
	}
	if want := blob(FormatVersion, payload); !bytes.Equal(got, want) {
		t.Fatalf("file = %x\nwant   %x", got, want)
	}
}

func TestMemoryCopies(t *testing.T) {
	m := NewMemory()
	in := []byte("key material")
	if err := m.Save(in); err != nil {
		t.Fatal(err)
	}
	in[0] = 'X'
	out, err := m.Load()
	if err != nil {
		t.Fatal(err)
	}
	out[1] = 'Y'
	again, err := m.Load()
	if err != nil {
		t.Fatal(err)
	}
	if string(again) != "key material" {
		t.Fatalf("stored state was changed through a caller's slice: %q", again)
	}
}

func TestFileMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state")
	f := NewFile(path)
	if err := f.Save([]byte("new")); err != nil {
		t.Fatal(err)
	}
	assertMode(t, path)

	// An existing, too permissive file must not keep its mode.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, blob(1, []byte("old")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil { // defeat any umask
		t.Fatal(err)
	}
	if err := f.Save([]byte("overwrite")); err != nil {
		t.Fatal(err)
	}
	assertMode(t, path)
}

func assertMode(t *testing.T, path string) {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if m := info.Mode().Perm(); m != 0o600 {
		t.Fatalf("mode of %s = %o, want 600", path, m)
	}
}

func TestLoadCorrupt(t *testing.T) {
	const secret = "secret-key-material-0123456789"
	valid := blob(1, []byte(secret))
	with := func(i int, b byte) []byte {
		c := bytes.Clone(valid)
		c[i] = b
		return c
	}
	cases := []struct {
		name   string
		data   []byte
		want   error
		detail string
	}{
		{"empty file", []byte{}, ErrCorrupt, "empty"},
		{"wrong magic", with(3, 'T'), ErrCorrupt, "not an E4 state file"},
		{"short wrong magic", []byte("E5"), ErrCorrupt, "not an E4 state file"},
		{"text file", []byte("hello, world\n"), ErrCorrupt, "not an E4 state file"},
		{"version 0", with(4, 0), ErrCorrupt, "version 0"},
		{"version 2", with(4, 2), ErrNewerVersion, "version 2"},
		{"version 255", with(4, 255), ErrNewerVersion, "version 255"},
		{"version 2 short header", []byte("E4KS\x02"), ErrNewerVersion, "version 2"},
		{"truncated payload", valid[:len(valid)-1], ErrCorrupt, "header says"},
		{"extra trailing byte", append(bytes.Clone(valid), 0), ErrCorrupt, "header says"},
		{"huge length field", append(bytes.Clone(valid[:5]), append([]byte{0xff, 0xff, 0xff, 0xff}, valid[9:]...)...), ErrCorrupt, "header says"},
		{"flipped payload bit", with(len(valid)-1, valid[len(valid)-1]^1), ErrCorrupt, "checksum"},
		{"flipped checksum bit", with(20, valid[20]^0x80), ErrCorrupt, "checksum"},
		{"truncated header", valid[:headerSize-1], ErrCorrupt, "truncated header"},
		{"header without checksum", valid[:9], ErrCorrupt, "truncated header"},
		{"magic only", []byte("E4KS"), ErrCorrupt, "truncated header"},
		{"partial magic", []byte("E4K"), ErrCorrupt, "truncated header"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state")
			if err := os.WriteFile(path, c.data, 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := NewFile(path).Load()
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			other := ErrNewerVersion
			if c.want == ErrNewerVersion {
				other = ErrCorrupt
			}
			if errors.Is(err, other) {
				t.Errorf("err = %v also matches %v", err, other)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "store: ") || !strings.Contains(msg, path) || !strings.Contains(msg, c.detail) {
				t.Errorf("err = %q, want it to start with \"store: \" and name %s and %q", msg, path, c.detail)
			}
			if strings.Contains(msg, "secret") {
				t.Errorf("error message leaks state: %q", msg)
			}
			if got != nil {
				t.Errorf("Load returned %d bytes along with an error", len(got))
			}
		})
	}
}

func TestLoadIgnoresTempFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state")
	f := NewFile(path)
	if err := f.Save([]byte("real")); err != nil {
		t.Fatal(err)
	}
	// Leftovers of crashed Saves: one partial, one complete but never renamed.
	prefix := filepath.Join(filepath.Dir(path), ".state.tmp-")
	if err := os.WriteFile(prefix+"1", []byte("E4KS\x01\x00"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(prefix+"2", blob(1, []byte("unrenamed")), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := f.Load()
	if err != nil || string(got) != "real" {
		t.Fatalf("Load = %q, %v; want \"real\"", got, err)
	}
}

func TestSaveSweepsStaleTemps(t *testing.T) {
	dir := t.TempDir()
	files := []struct {
		name           string
		stale, survive bool
	}{
		{".state.tmp-123", true, false}, // leftover of a crashed Save
		{".state.tmp-456", false, true}, // recent: maybe another process's Save
		{".state.tmp-abc", true, true},  // not made by CreateTemp
		{".other.tmp-789", true, true},  // another store's temp
	}
	old := time.Now().Add(-2 * staleTempAge)
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		if !f.stale {
			continue
		}
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	if err := NewFile(filepath.Join(dir, "state")).Save([]byte("s")); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		_, err := os.Stat(filepath.Join(dir, f.name))
		if exists := err == nil; exists != f.survive {
			t.Errorf("%s: exists = %v, want %v", f.name, exists, f.survive)
		}
	}
}

func TestSaveErrors(t *testing.T) {
	t.Run("missing directory", func(t *testing.T) {
		assertSaveFails(t, filepath.Join(t.TempDir(), "missing", "state"))
	})
	t.Run("parent is a file", func(t *testing.T) {
		parent := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(parent, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		assertSaveFails(t, filepath.Join(parent, "state"))
	})
	t.Run("target is a directory", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "state")
		if err := os.MkdirAll(filepath.Join(path, "keep"), 0o700); err != nil {
			t.Fatal(err)
		}
		assertSaveFails(t, path)
		if _, err := os.Stat(filepath.Join(path, "keep")); err != nil {
			t.Fatalf("failed Save damaged the existing entry: %v", err)
		}
		if left := tempFiles(t, path); len(left) != 0 {
			t.Fatalf("failed Save left temp files: %v", left)
		}
	})
	t.Run("read-only directory", testSaveReadOnlyDir)
}

func testSaveReadOnlyDir(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state")
	if err := NewFile(path).Save([]byte("old")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(dir, 0o700) })
	if probe, err := os.CreateTemp(dir, "probe"); err == nil {
		probe.Close()
		os.Remove(probe.Name())
		t.Skip("directory permissions are not enforced here (running as root?)")
	}
	assertSaveFails(t, path)
	got, err := NewFile(path).Load()
	if err != nil || string(got) != "old" {
		t.Fatalf("after failed Save, Load = %q, %v; want \"old\"", got, err)
	}
}

func assertSaveFails(t *testing.T, path string) {
	t.Helper()
	err := NewFile(path).Save([]byte("secret"))
	if err == nil {
		t.Fatal("Save succeeded, want an error")
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "store: ") || !strings.Contains(msg, path) || strings.Contains(msg, "secret") {
		t.Fatalf("err = %q, want \"store: \" prefix and the path, without state", msg)
	}
}

func TestConcurrent(t *testing.T) {
	const writers, saves, readers = 6, 8, 6
	for name, s := range stores(t) {
		t.Run(name, func(t *testing.T) {
			var saved atomic.Bool
			var wg, wwg, readersStarted sync.WaitGroup
			done := make(chan struct{})
			// Writers start once every reader has loaded once, so that
			// reads overlap the saves however the goroutines are scheduled
			// (on a loaded machine under qemu they once did not).
			readersStarted.Add(readers)
			for range readers {
				wg.Go(func() { readUntil(t, s, &saved, done, readersStarted.Done) })
			}
			readersStarted.Wait()
			for w := range writers {
				wwg.Go(func() {
					for i := range saves {
						if err := s.Save(payloadFor(uint64(w*saves + i))); err != nil {
							t.Errorf("Save: %v", err)
						}
						saved.Store(true)
					}
				})
			}
			wwg.Wait()
			close(done)
			wg.Wait()
		})
	}
}

// readUntil loads s in a loop until done is closed, checking that every
// Load returns one complete saved payload; it calls started once, after
// its first Load (or when it gives up before).
func readUntil(t *testing.T, s Store, saved *atomic.Bool, done <-chan struct{}, started func()) {
	var once sync.Once
	defer once.Do(started) // a reader failing early must not hold the writers back
	for loads := 0; ; loads++ {
		if loads > 0 {
			once.Do(started)
			select {
			case <-done:
				return
			default:
			}
		}
		wasSaved := saved.Load()
		p, err := s.Load()
		if errors.Is(err, ErrNotFound) && !wasSaved {
			continue
		}
		if err != nil {
			t.Errorf("Load: %v", err)
			return
		}
		if _, err := checkPayload(p); err != nil {
			t.Error(err)
			return
		}
	}
}

// Crash test protocol: TestCrash re-executes this test binary, running only
// TestCrashChild, with these variables set.
const (
	crashPathEnv  = "E4_STORE_CRASH_CHILD" // state file to rewrite forever
	crashStartEnv = "E4_STORE_CRASH_START" // first sequence number to save
	readyMarker   = "e4store-crash-child-ready\n"
	// childLifetime stops an orphaned child if its parent died before
	// killing it; a parent kills it after at most ~30 ms.
	childLifetime = 30 * time.Second
)

// TestCrashChild is the process TestCrash kills. Without the environment
// variable it is an ordinary, empty test.
func TestCrashChild(t *testing.T) {
	path := os.Getenv(crashPathEnv)
	if path == "" {
		return
	}
	n, err := strconv.ParseUint(os.Getenv(crashStartEnv), 10, 64)
	if err != nil {
		t.Fatalf("bad %s: %v", crashStartEnv, err)
	}
	f := NewFile(path)
	os.Stdout.WriteString(readyMarker)
	for deadline := time.Now().Add(childLifetime); time.Now().Before(deadline); n++ {
		if err := f.Save(payloadFor(n)); err != nil {
			t.Fatalf("Save %d: %v", n, err)
		}
	}
}

// TestCrash kills a process that rewrites the state in a loop at random
// instants, and checks that the file always holds one complete payload and
// that the sequence never goes backwards.
func TestCrash(t *testing.T) {
	iterations := 200
	if testing.Short() {
		iterations = 50
	}
	path := filepath.Join(t.TempDir(), "state")
	var last uint64 // sequence number of the last state seen
	have, advanced, interrupted := false, 0, 0
	start := time.Now()
	for i := range iterations {
		delay := rand.N(30 * time.Millisecond)
		before := len(tempFiles(t, path))
		runAndKill(t, path, last+1, delay)
		if len(tempFiles(t, path)) > before {
			interrupted++ // killed between CreateTemp and Rename
		}
		p, err := NewFile(path).Load()
		if errors.Is(err, ErrNotFound) && !have {
			continue
		}
		if err != nil {
			t.Fatalf("iteration %d (killed after %v): Load: %v", i, delay, err)
		}
		n, err := checkPayload(p)
		if err != nil {
			t.Fatalf("iteration %d (killed after %v): %v", i, delay, err)
		}
		if have && n < last {
			t.Fatalf("iteration %d: sequence went back from %d to %d", i, last, n)
		}
		if !have || n > last {
			advanced++
		}
		last, have = n, true
	}
	t.Logf("%d kills in %v: state advanced in %d, killed mid-save in %d, last sequence %d",
		iterations, time.Since(start).Round(time.Millisecond), advanced, interrupted, last)
	if advanced == 0 {
		t.Fatal("no child ever completed a Save: the test exercised nothing")
	}
}

// runAndKill starts a crash child saving from sequence number first, lets it
// run for delay after it is ready, and kills it with SIGKILL.
func runAndKill(t *testing.T, path string, first uint64, delay time.Duration) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$")
	cmd.Env = append(os.Environ(),
		crashPathEnv+"="+path, crashStartEnv+"="+strconv.FormatUint(first, 10))
	out := &markerWriter{ready: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case <-out.ready:
	case err := <-exited:
		t.Fatalf("crash child exited before it was ready: %v\n%s", err, out)
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		<-exited
		t.Fatalf("crash child never became ready\n%s", out)
	}
	time.Sleep(delay)
	cmd.Process.Kill() // an error here means it exited: caught below
	err := <-exited
	// ExitCode is -1 only for a process ended by a signal; anything else
	// means the child stopped on its own, e.g. because Save failed.
	if cmd.ProcessState.ExitCode() != -1 {
		t.Fatalf("crash child was not killed but exited: %v\n%s", err, out)
	}
}

// markerWriter collects a child's output and closes ready once the output
// contains readyMarker.
type markerWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	ready chan struct{}
	seen  bool
}

func (w *markerWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if !w.seen && bytes.Contains(w.buf.Bytes(), []byte(readyMarker)) {
		w.seen = true
		close(w.ready)
	}
	return len(p), nil
}

func (w *markerWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// FuzzLoad feeds arbitrary file contents to Load: it must never panic, must
// only fail with ErrCorrupt or ErrNewerVersion, and may only succeed on an
// exact, valid encoding of the payload it returns.
func FuzzLoad(f *testing.F) {
	valid := blob(1, []byte("state"))
	for _, seed := range [][]byte{
		{}, valid, blob(1, nil), blob(2, []byte("x")), blob(0, nil),
		[]byte("E4KS"), []byte("E4KS\x01"), valid[:headerSize], valid[:len(valid)-1],
		append(bytes.Clone(valid), 0), blob(1, payloadFor(3)[:100]),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "state")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		p, err := NewFile(path).Load()
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrNewerVersion) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		if want := blob(FormatVersion, p); !bytes.Equal(data, want) {
			t.Fatalf("Load accepted %x, which is not the encoding %x of its result", data, want)
		}
	})
}

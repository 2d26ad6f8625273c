package store

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"
)

// fileMode is the permission of the state file: it holds secret keys, so
// only its owner may read it.
const fileMode = 0o600

// staleTempAge is how old a leftover temp file must be before Save deletes
// it. A younger one may belong to a Save still running in another process.
const staleTempAge = time.Minute

// maxPresize bounds the buffer Load allocates up front from the file size,
// so a huge bogus file cannot make it reserve gigabytes before reading.
const maxPresize = 1 << 24

// File is a Store backed by one file. Save writes a temp file in the same
// directory, flushes it and renames it over the target, so readers and
// crashes only ever observe a complete old or new file.
type File struct {
	path string

	// mu serializes Saves from this process. Load takes no lock: rename is
	// atomic, so it always opens one complete file. Saves from other
	// processes (or other File values) are safe too, since each uses its
	// own temp file; the last rename wins.
	mu    sync.Mutex
	swept bool // stale temp files were already cleaned up
}

// NewFile returns a File storing state at path. It does no I/O; the
// directory must exist by the time Save is called.
func NewFile(path string) *File {
	return &File{path: path}
}

// Path returns the path of the state file, as given to NewFile.
func (f *File) Path() string {
	return f.path
}

// Load reads and verifies the state file. It returns an error wrapping
// ErrNotFound if the file does not exist, ErrCorrupt or ErrNewerVersion if
// its content cannot be used.
func (f *File) Load() ([]byte, error) {
	data, err := readFile(f.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, f.path)
	}
	if err != nil {
		return nil, fmt.Errorf("store: load %s: %w", f.path, err)
	}
	return decode(f.path, data)
}

// Save atomically and durably replaces the state file with state.
func (f *File) Save(state []byte) error {
	if uint64(len(state)) > maxPayload {
		return fmt.Errorf("store: save %s: state is %d bytes, the format allows at most %d",
			f.path, len(state), uint64(maxPayload))
	}
	data := encode(state)
	// data is a copy of the keys; wipe it once written.
	defer clear(data)

	f.mu.Lock()
	defer f.mu.Unlock()
	if err := writeAtomic(f.path, data); err != nil {
		return fmt.Errorf("store: save %s: %w", f.path, err)
	}
	f.sweepOnce()
	return nil
}

// readFile reads at most maxFileSize+1 bytes of path: anything longer cannot
// be a valid state file, and decode reports it as corrupt.
func readFile(path string) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	var buf bytes.Buffer
	if info, err := fh.Stat(); err == nil && info.Size() < maxPresize {
		buf.Grow(int(info.Size()) + 1)
	}
	_, err = buf.ReadFrom(io.LimitReader(fh, maxFileSize+1))
	return buf.Bytes(), err
}

// writeAtomic replaces path with data so that, at every instant, path holds
// either its old content or data, complete, even across a crash or power
// loss. The temp file lives in the same directory because rename is only
// atomic within one file system.
func writeAtomic(path string, data []byte) error {
	return writeAtomicMode(path, data, fileMode)
}

// WriteFileAtomic replaces the file at path with data the same way Save
// does (temp file in the same directory, fsync, rename, fsync of the
// directory), with the given permissions. Use it for key files: a crash
// never leaves a half-written key, and the file never exists with a wider
// mode than perm.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	if err := writeAtomicMode(path, data, perm); err != nil {
		return fmt.Errorf("store: write %s: %w", path, err)
	}
	return nil
}

func writeAtomicMode(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, tempPrefix(filepath.Base(path))+"*")
	if err != nil {
		return err
	}
	if err := writeTemp(tmp, data, perm); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	// Without this, a power loss could forget the rename and bring back
	// the old file (or, for the first save, no file) after Save returned.
	return syncDir(dir)
}

// writeTemp sets the file's mode, writes data, flushes it to stable storage
// and closes the file. It always closes tmp. The Sync must precede the
// rename: otherwise a power loss could leave the new name on empty blocks.
func writeTemp(tmp *os.File, data []byte, perm os.FileMode) error {
	// CreateTemp already uses 0600, but say so explicitly: the mode is a
	// security property of this package, not an accident of the stdlib.
	err := tmp.Chmod(perm)
	if err == nil {
		_, err = tmp.Write(data)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	return err
}

// syncDir flushes a directory's entries, making a rename in it durable.
func syncDir(dir string) error {
	// Windows cannot fsync a directory and its renames need no such step.
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// tempPrefix is the name prefix of temp files for the state file base. The
// leading dot hides them from casual listings.
func tempPrefix(base string) string {
	return "." + base + ".tmp-"
}

// sweepOnce removes temp files left by crashed Saves, once per File. They
// hold old keys, so they should not linger; once is enough because new
// leftovers only appear when a process dies. f.mu must be held.
func (f *File) sweepOnce() {
	if f.swept {
		return
	}
	f.swept = true
	removeStaleTemps(filepath.Dir(f.path), filepath.Base(f.path), time.Now())
}

// removeStaleTemps deletes this file's temp files older than staleTempAge.
// It is best effort: failing to clean up must not fail a successful Save.
func removeStaleTemps(dir, base string, now time.Time) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !isTempName(e.Name(), base) || !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err == nil && now.Sub(info.ModTime()) > staleTempAge {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// isTempName reports whether name was made by os.CreateTemp for base. The
// random part CreateTemp appends is all digits; requiring that keeps the
// sweep away from unrelated files that merely share the prefix.
func isTempName(name, base string) bool {
	suffix, ok := strings.CutPrefix(name, tempPrefix(base))
	if !ok || suffix == "" {
		return false
	}
	for _, c := range suffix {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

package store

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
	"time"

	"github.com/e4-iot/e4kit/internal/atomicfile"
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
		return fmt.Errorf("store: save: %w", err)
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

// writeAtomic replaces path with data, mode 0600, so that at every instant
// path holds either its old content or data, complete, even across a crash
// or power loss.
func writeAtomic(path string, data []byte) error {
	return atomicfile.WriteFile(path, data, fileMode)
}

// WriteFileAtomic replaces the file at path with data the same way Save
// does (temp file in the same directory, fsync, rename, fsync of the
// directory), with the given permissions. Use it for key files: a crash
// never leaves a half-written key, and the file never exists with a wider
// mode than perm. It is kept for code outside this module; the module's
// own packages call internal/atomicfile directly.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	if err := atomicfile.WriteFile(path, data, perm); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

// sweepOnce removes temp files left by crashed Saves, once per File. They
// hold old keys, so they should not linger; once is enough because new
// leftovers only appear when a process dies. f.mu must be held.
func (f *File) sweepOnce() {
	if f.swept {
		return
	}
	f.swept = true
	atomicfile.RemoveStaleTemps(f.path, staleTempAge, time.Now())
}

// Package atomicfile replaces files atomically and durably: a reader, a
// crash or a power loss only ever observes the old content or the new one,
// complete, and the file never exists with a wider mode than asked. Key
// files, token files and the device state file (e4/store) are written with
// it.
package atomicfile

import (
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// WriteFile replaces the file at path with data: it writes a temp file in
// the same directory (rename is only atomic within one file system) with
// mode perm, flushes it, renames it over path and flushes the directory.
// The error, an *fs.PathError with Op "write", names path, never data.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	if err := write(path, data, perm); err != nil {
		return &fs.PathError{Op: "write", Path: path, Err: err}
	}
	return nil
}

func write(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, TempPrefix(filepath.Base(path))+"*")
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
	// the old file (or, for the first write, no file) after WriteFile
	// returned.
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

// TempPrefix is the name prefix of WriteFile's temp files for a file named
// base. The leading dot hides them from casual listings.
func TempPrefix(base string) string {
	return "." + base + ".tmp-"
}

// IsTemp reports whether name was made by WriteFile for a file named base.
// The random part os.CreateTemp appends is all digits; requiring that keeps
// a sweep away from unrelated files that merely share the prefix.
func IsTemp(name, base string) bool {
	suffix, ok := strings.CutPrefix(name, TempPrefix(base))
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

// RemoveStaleTemps deletes the temp files WriteFile left beside path (when
// a process died mid-write) that are older than age at now. A younger one
// may belong to a write still running in another process. It is best
// effort: the files it cannot list or remove stay.
func RemoveStaleTemps(path string, age time.Duration, now time.Time) {
	dir, base := filepath.Dir(path), filepath.Base(path)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !IsTemp(e.Name(), base) || !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err == nil && now.Sub(info.ModTime()) > age {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

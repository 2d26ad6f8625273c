package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
)

// FormatVersion is the version of the file format that File writes. Load
// accepts files up to this version and rejects newer ones with
// ErrNewerVersion, so an older binary never misreads a newer file.
const FormatVersion = 1

// On-disk layout, all integers little-endian:
//
//	offset  size  field
//	0       4     magic "E4KS"
//	4       1     format version
//	5       4     payload length (uint32)
//	9       32    SHA-256 of the payload
//	41      n     payload
const (
	magic       = "E4KS"
	versionOff  = len(magic)
	lengthOff   = versionOff + 1
	sumOff      = lengthOff + 4
	headerSize  = sumOff + sha256.Size
	maxPayload  = math.MaxUint32
	maxFileSize = int64(headerSize) + maxPayload
)

// encode returns the file image for payload. The caller must have checked
// that len(payload) <= maxPayload.
func encode(payload []byte) []byte {
	buf := make([]byte, headerSize, headerSize+len(payload))
	copy(buf, magic)
	buf[versionOff] = FormatVersion
	binary.LittleEndian.PutUint32(buf[lengthOff:], uint32(len(payload)))
	sum := sha256.Sum256(payload)
	copy(buf[sumOff:], sum[:])
	return append(buf, payload...)
}

// decode validates a file image and returns its payload, which aliases data.
// path is only used in error messages. It must never panic, whatever data
// holds: the file may have been damaged or replaced by anything.
func decode(path string, data []byte) ([]byte, error) {
	if err := checkPreamble(path, data); err != nil {
		return nil, err
	}
	if len(data) < headerSize {
		return nil, corrupt(path, "truncated header (%d of %d bytes)", len(data), headerSize)
	}
	payload := data[headerSize:]
	want := binary.LittleEndian.Uint32(data[lengthOff:])
	if got := uint64(len(payload)); got != uint64(want) {
		return nil, corrupt(path, "payload is %d bytes, header says %d", got, want)
	}
	sum := sha256.Sum256(payload)
	if !bytes.Equal(sum[:], data[sumOff:headerSize]) {
		return nil, corrupt(path, "checksum mismatch")
	}
	return payload, nil
}

// checkPreamble validates the magic and the version byte. It runs before the
// rest of the header is parsed because a newer format may lay the header out
// differently: such a file must be reported as newer, not as corrupt.
func checkPreamble(path string, data []byte) error {
	if len(data) == 0 {
		return corrupt(path, "empty file")
	}
	n := min(len(data), len(magic))
	if string(data[:n]) != magic[:n] {
		return corrupt(path, "not an E4 state file")
	}
	if len(data) <= versionOff {
		return corrupt(path, "truncated header (%d of %d bytes)", len(data), headerSize)
	}
	switch v := data[versionOff]; {
	case v == 0:
		return corrupt(path, "invalid format version 0")
	case v > FormatVersion:
		return fmt.Errorf("%w: %s: format version %d, this build supports up to %d",
			ErrNewerVersion, path, v, FormatVersion)
	}
	return nil
}

// corrupt builds an error wrapping ErrCorrupt that names the file and the
// problem, so an operator knows which file to inspect and why.
func corrupt(path, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrCorrupt, path, fmt.Sprintf(format, args...))
}

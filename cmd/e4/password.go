package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
)

// passwordFileHelp is the sentence every --password-file help text
// carries: the reference C2 hashes a password file's raw bytes, so E4kit
// does too, and a line break at the end is part of the password.
const passwordFileHelp = "the password is the file's raw bytes, a final line break included (as the reference C2 reads it; write it with printf '%s', not echo)"

// readE4Password reads a password an E4 key is derived from (Argon2i in
// e4.KeyFromPassword). The password is every byte of the file, a trailing
// "\n" or "\r\n" included, as the reference C2's CLI reads it, so both
// derive the same key from the same file. A password ending in a line break
// is usually an accident of an editor or of echo, so it is reported on warn
// (without the password).
func readE4Password(path string, warn io.Writer) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading the password file: %w", err)
	}
	if bytes.HasSuffix(data, []byte("\n")) || bytes.HasSuffix(data, []byte("\r")) {
		fmt.Fprintf(warn, "e4: warning: the password file %s ends with a line break, which is part of the password (as in the reference C2); use printf '%%s' PASSWORD > FILE if the device's password has none\n", path)
	}
	return string(data), nil
}

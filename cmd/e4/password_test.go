package main

import (
	"encoding/hex"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/e4/command"
	"github.com/e4-iot/e4kit/e4/store"
)

// TestPasswordFileRawBytes: a password file ending in a newline gives the
// key of Argon2i over the file's raw bytes, newline included (as the
// reference C2's CLI derives it), in "e4 keygen", "e4 client" and
// "e4 c2 client add"; each warns on stderr that the line break is part of
// the password. Before, E4kit trimmed it and derived another key.
func TestPasswordFileRawBytes(t *testing.T) {
	const raw = "a device password of some length\n"
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pw.txt")
	writeFile(t, pwFile, raw)
	want, err := e4.KeyFromPassword(raw)
	if err != nil {
		t.Fatal(err)
	}
	warning := "the password file " + pwFile + " ends with a line break"

	r := e4Run(t, "", "keygen", "--type", "symmetric", "--password-file", pwFile)
	if r.code != 0 || strings.TrimSpace(r.stdout) != hex.EncodeToString(want) {
		t.Fatalf("keygen: exit %d, key %q, want %x (stderr %q)", r.code, r.stdout, want, r.stderr)
	}
	if !strings.Contains(r.stderr, warning) {
		t.Fatalf("keygen did not warn about the line break: %q", r.stderr)
	}

	state := filepath.Join(dir, "dev.state")
	r = e4Run(t, "", "client", "info", "--state", state, "--name", "dev", "--password-file", pwFile)
	if r.code != 0 || !strings.Contains(r.stderr, warning) {
		t.Fatalf("client info: exit %d, stderr %q", r.code, r.stderr)
	}
	client, err := e4.LoadClient(&e4.Config{Store: store.NewFile(state)})
	if err != nil {
		t.Fatal(err)
	}
	cmd, err := e4.ProtectCommand(command.NewResetTopics(), want, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.HandleCommand(cmd); err != nil {
		t.Fatalf("e4 client did not derive its key from the raw bytes: %v", err)
	}

	s := startC2Serve(t)
	r = s.c2("", nil, "client", "add", "dev", "--password-file", pwFile)
	if r.code != 0 || !strings.Contains(r.stderr, warning) {
		t.Fatalf("c2 client add: exit %d, stderr %q", r.code, r.stderr)
	}
	if !strings.Contains(r.stdout, hex.EncodeToString(want)) {
		t.Fatalf("c2 client add derived another key:\n%s", r.stdout)
	}
}

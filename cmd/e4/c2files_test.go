package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestC2OutputFilesNotOverwritten: token create --out, client add
// --key-out, client newkey --key-out and client import --keys-out refuse
// an existing file (as keygen does) before asking C2 for anything, so
// neither the file nor a secret is lost; --force overwrites, atomically,
// with mode 0600.
func TestC2OutputFilesNotOverwritten(t *testing.T) {
	s := startC2Serve(t)
	dir := t.TempDir()
	precious := []byte("an earlier secret\n")
	existing := func(name string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, precious, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	unchanged := func(path string) {
		t.Helper()
		if b, err := os.ReadFile(path); err != nil || string(b) != string(precious) {
			t.Fatalf("%s was overwritten: %q %v", path, b, err)
		}
	}
	replaced := func(path string) {
		t.Helper()
		b, err := os.ReadFile(path)
		info, statErr := os.Stat(path)
		if err != nil || statErr != nil || string(b) == string(precious) || info.Mode().Perm() != 0o600 {
			t.Fatalf("%s after --force: %q, %v, %v", path, b, info, err)
		}
	}

	tokenFile := existing("ops.token")
	s.fails(nil, "exists; use --force", "token", "create", "ops", "--scope", "operate", "--out", tokenFile)
	unchanged(tokenFile)
	if list := s.ok("token", "list"); strings.Contains(list, "ops") {
		t.Fatalf("a refused token create still created the token:\n%s", list)
	}
	s.ok("token", "create", "ops", "--scope", "operate", "--out", tokenFile, "--force")
	replaced(tokenFile)

	keyFile := existing("pump.key")
	s.fails(nil, "exists; use --force", "client", "add", "pump-1", "--key-out", keyFile)
	unchanged(keyFile)
	if list := s.ok("client", "list"); strings.Contains(list, "pump-1") {
		t.Fatalf("a refused client add still added the client:\n%s", list)
	}
	s.ok("client", "add", "pump-1", "--key-out", keyFile, "--force")
	replaced(keyFile)

	newKeyFile := existing("pump-new.key")
	s.fails(nil, "exists; use --force", "client", "newkey", "pump-1", "--key-out", newKeyFile)
	unchanged(newKeyFile)
	s.ok("client", "newkey", "pump-1", "--key-out", newKeyFile, "--force")
	replaced(newKeyFile)

	fleet := filepath.Join(dir, "fleet.csv")
	if err := os.WriteFile(fleet, []byte("name\nvalve-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	keysFile := existing("fleet-keys.csv")
	s.fails(nil, "exists; use --force", "client", "import", fleet, "--keys-out", keysFile)
	unchanged(keysFile)
	s.ok("client", "import", fleet, "--keys-out", keysFile, "--force")
	replaced(keysFile)
}

package main

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestC2NewKeyGenerateKeyPair: "client newkey --generate-key-pair" is
// refused by a PK-mode C2 that did not opt in, and with
// c2.allow_generated_key_pairs it records a new public key for the client.
// (c2.TestNewClientKeyPairRekeysTheDevice checks the device switches.)
func TestC2NewKeyGenerateKeyPair(t *testing.T) {
	dir := t.TempDir()
	pubFile := filepath.Join(dir, "dev.key")
	mustSucceed(t, e4Run(t, "", "keygen", "--type", "ed25519", "--out", pubFile))

	off := startC2Serve(t, "E4_C2_MODE=pk")
	off.ok("client", "add", "legacy", "--public-key-file", pubFile+".pub")
	off.fails(nil, "C2-generated device key pairs are off", "client", "newkey", "legacy", "--generate-key-pair")
	off.stop()

	on := startC2Serve(t, "E4_C2_MODE=pk", "E4_C2_C2_ALLOW_GENERATED_KEY_PAIRS=true")
	on.ok("client", "add", "legacy", "--public-key-file", pubFile+".pub")
	out := on.ok("client", "newkey", "legacy", "--generate-key-pair")
	old, err := os.ReadFile(pubFile + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(out)
	newPub := fields[len(fields)-1]
	if b, err := hex.DecodeString(newPub); err != nil || len(b) != 32 || newPub == strings.TrimSpace(string(old)) {
		t.Fatalf("newkey --generate-key-pair printed:\n%s", out)
	}
	if got := on.ok("client", "get", "legacy"); !strings.Contains(got, newPub) {
		t.Fatalf("client get after the new key pair:\n%s", got)
	}
}

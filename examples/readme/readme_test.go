// Package readme tests the Go code the README shows, as a user would paste
// it into a program. It lives outside package e4 because it needs the
// repository (the README) and the go tool, which the device bundle of the
// per-architecture runner does not carry.
package readme

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/e4-iot/e4kit/e4"
)

// The keys of the device: its client key and two topic keys.
var (
	clientKey = bytes.Repeat([]byte{0xc3}, e4.KeyLen)
	testKeyA  = bytes.Repeat([]byte{0xa1}, e4.KeyLen)
	testKeyB  = bytes.Repeat([]byte{0xb2}, e4.KeyLen)
)

// readmeStatePath is the state file the README's device uses; the test
// points it at a temporary file.
const readmeStatePath = `"/var/lib/thermostat/e4.state"`

// readmeDeviceBlock returns the Go block of the README section "A device in
// ten lines", as it stands.
func readmeDeviceBlock(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(raw), "\n## A device in ten lines\n")
	if !ok {
		t.Fatal(`README.md has no section "A device in ten lines"`)
	}
	_, block, ok := strings.Cut(section, "```go\n")
	if !ok {
		t.Fatal("the section has no Go block")
	}
	block, _, ok = strings.Cut(block, "```")
	if !ok {
		t.Fatal("the Go block does not end")
	}
	if strings.Count(block, readmeStatePath) != 1 {
		t.Fatalf("the Go block does not name the state file %s once", readmeStatePath)
	}
	return block
}

// readmeProgram wraps the README block in a program: the state file, the
// client key and the topic key come from its arguments, and it prints the
// protected message, whether the client was fresh, and fails if the message
// did not come back.
const readmeProgram = `package main

import (
	"encoding/hex"
	"fmt"
	"log"
	"os"

	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/e4/store"
)

var _ = log.Fatal

func main() {
	clientKey, _ := hex.DecodeString(os.Args[2])
	topicKey, _ := hex.DecodeString(os.Args[3])
	// README block:
%s
	if err != nil || string(plain) != "21.5 C" {
		log.Fatalf("Unprotect = %%q, %%v", plain, err)
	}
	fmt.Printf("%%x %%v\n", wire, device.Fresh())
}
`

// TestReadmeDeviceSurvivesRestart builds the README's device and runs it
// twice on one state file, the second time with another topic key: the
// second boot must load and use the key the first one installed.
func TestReadmeDeviceSurvivesRestart(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("this test builds the README's program and needs the go tool: %v", err)
	}
	dir := t.TempDir()
	state := filepath.Join(dir, "e4.state")
	block := strings.Replace(readmeDeviceBlock(t), readmeStatePath, "os.Args[1]", 1)
	src := filepath.Join(dir, "main.go")
	if err := os.WriteFile(src, fmt.Appendf(nil, readmeProgram, block), 0o600); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "device")
	if out, err := exec.Command(goTool, "build", "-o", bin, src).CombinedOutput(); err != nil {
		t.Fatalf("the README block does not build: %v\n%s", err, out)
	}
	boot := func(topicKey []byte) (wire []byte, fresh string) {
		t.Helper()
		out, err := exec.Command(bin, state, hex.EncodeToString(clientKey), hex.EncodeToString(topicKey)).CombinedOutput()
		if err != nil {
			t.Fatalf("the README device failed: %v\n%s", err, out)
		}
		fields := strings.Fields(string(out))
		if len(fields) != 2 {
			t.Fatalf("unexpected output %q", out)
		}
		wire, err = hex.DecodeString(fields[0])
		if err != nil {
			t.Fatal(err)
		}
		return wire, fields[1]
	}

	wire, fresh := boot(testKeyA)
	if fresh != "true" {
		t.Fatalf("first boot: Fresh() = %s", fresh)
	}
	if _, err := e4.UnprotectSymKey(nil, wire, testKeyA, nil); err != nil {
		t.Fatalf("first boot did not use its topic key: %v", err)
	}
	wire, fresh = boot(testKeyB)
	if fresh != "false" {
		t.Fatalf("second boot: Fresh() = %s", fresh)
	}
	if _, err := e4.UnprotectSymKey(nil, wire, testKeyA, nil); err != nil {
		t.Fatalf("second boot did not use the topic key saved by the first: %v", err)
	}
	if bytes.Contains(wire, []byte("21.5 C")) {
		t.Fatal("the payload travels in clear")
	}
}

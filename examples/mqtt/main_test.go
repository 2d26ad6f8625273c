package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/internal/testbroker"
)

// buildExample compiles the example into a temporary directory.
func buildExample(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go") // go test puts GOROOT/bin first in PATH
	if err != nil {
		t.Fatalf("the go command is needed to build the example: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "mqtt-example")
	out, err := exec.Command(goBin, "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// runExample runs the binary and checks it exits 0 and prints the
// decrypted reading.
func runExample(t *testing.T, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", bin, args, err, out)
	}
	const want = "display received on e4kit/example/temperature: 21.5 C"
	if !strings.Contains(string(out), want) {
		t.Fatalf("output lacks %q:\n%s", want, out)
	}
	return string(out)
}

// TestExample runs the example as a user would: with its embedded broker,
// then against a real Mosquitto through -broker.
func TestExample(t *testing.T) {
	bin := buildExample(t)
	t.Run("EmbeddedBroker", func(t *testing.T) {
		if out := runExample(t, bin); !strings.Contains(out, "embedded broker at tcp://127.0.0.1:") {
			t.Fatalf("output does not mention the embedded broker:\n%s", out)
		}
	})
	t.Run("Mosquitto", func(t *testing.T) {
		m := testbroker.StartMosquitto(t, nil)
		if out := runExample(t, bin, "-broker", m.URL()); strings.Contains(out, "embedded broker") {
			t.Fatalf("the example started its embedded broker despite -broker:\n%s", out)
		}
	})
}

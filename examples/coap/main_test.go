package main

import (
	"context"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/internal/testbroker"
)

// build compiles a package into a temporary directory.
func build(t *testing.T, pkg, name string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin
}

func execute(t *testing.T, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", bin, args, err, out)
	}
	return string(out)
}

const wantReading = "display received on e4kit/example/temperature: 21.5 C"

// TestExample runs the program as a user would: with its in-process
// broker, then against the real "e4 broker coap".
func TestExample(t *testing.T) {
	bin := build(t, ".", "coap-example")
	t.Run("InProcessBroker", func(t *testing.T) {
		out := execute(t, bin)
		for _, want := range []string{wantReading, "plaintext visible: false"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("E4BrokerCoAP", func(t *testing.T) {
		e4 := build(t, "github.com/e4-iot/e4kit/cmd/e4", "e4")
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(testbroker.FreePort(t, "udp")))
		p := testbroker.NewProcess(e4, []string{"broker", "coap", "--listen", addr}, nil, "")
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		defer p.Stop(5 * time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := testbroker.WaitCoAP(ctx, addr); err != nil {
			t.Fatalf("%v; output: %s", err, p.Output())
		}
		if out := execute(t, bin, "-broker", addr); !strings.Contains(out, wantReading) {
			t.Errorf("output lacks %q:\n%s", wantReading, out)
		}
	})
}

package main

import (
	"context"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/internal/testutil"
)

func TestDevStopsCleanlyOnCtrlC(t *testing.T) {
	cmd := exec.Command(e4Binary, "dev", "--dir", t.TempDir(), "--broker-addr", "127.0.0.1:0",
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
		"--publish-every", "100ms", "--rotate-every", "700ms")
	var out testutil.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitCtx, cancelWait := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelWait()
	if _, err := out.WaitFor(waitCtx, func(s string) bool { return strings.Contains(s, "rotated the key") }); err != nil {
		cmd.Process.Kill()
		t.Fatalf("no rotation within 30 s:\n%s", out.String())
	}
	// The admin command it suggests works as printed against its C2: the
	// program it names is this very binary (not an "e4" that may not exist).
	hint := regexp.MustCompile(`try: (\S+) (c2 client list .*)`).FindStringSubmatch(out.String())
	if hint == nil {
		t.Fatalf("no admin command suggested:\n%s", out.String())
	}
	if hint[1] != e4Binary {
		t.Fatalf("suggested program %q, want the running binary %q", hint[1], e4Binary)
	}
	r := e4Run(t, "", strings.Fields(hint[2])...)
	if r.code != 0 {
		t.Fatalf("%s: exit %d, %s", hint[0], r.code, r.stderr)
	}
	listed := r.stdout
	for _, name := range []string{"boiler-sensor", "dashboard", "old-gateway"} {
		if !strings.Contains(listed, name) {
			t.Errorf("e4 c2 client list does not show %s:\n%s", name, listed)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("e4 dev after Ctrl-C: %v\n%s", err, out.String())
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("e4 dev did not stop within 20 s of Ctrl-C:\n%s", out.String())
	}
	text := out.String()
	for _, want := range []string{"C2        symmetric-key mode", "embedded MQTT at tcp://127.0.0.1:", "broker sees", "summary   dashboard"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	if regexp.MustCompile(`lost [1-9]`).MatchString(text) {
		t.Errorf("messages lost:\n%s", text)
	}
}

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/internal/testbroker"
	"github.com/e4-iot/e4kit/internal/testutil"
)

// TestC2ServeStartsWhileBrokerDown: "e4 c2 serve" starts with its broker
// stopped, connects once it is up, and logs at info level every loss and
// recovery of the connection: two broker restarts give two more lines of
// each.
func TestC2ServeStartsWhileBrokerDown(t *testing.T) {
	m := testbroker.StartMosquitto(t, nil)
	m.Stop()
	dir := t.TempDir()
	grpcAddr := fmt.Sprintf("127.0.0.1:%d", testbroker.FreePort(t, "tcp"))
	httpAddr := fmt.Sprintf("127.0.0.1:%d", testbroker.FreePort(t, "tcp"))
	yaml := fmt.Sprintf("mode: sk\ndata_dir: %s\ngrpc:\n  addr: %s\nhttp:\n  addr: %s\ntransport:\n  url: %s\nlog:\n  format: json\n",
		filepath.Join(dir, "data"), grpcAddr, httpAddr, m.URL())
	if err := os.WriteFile(filepath.Join(dir, "c2.yaml"), []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	var out testutil.Buffer
	cmd := exec.Command(e4Binary, "c2", "serve", "--config", filepath.Join(dir, "c2.yaml"))
	cmd.Env = cleanEnv()
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	const down, up = `"msg":"broker connection down; retrying"`, `"msg":"connected to the broker"`
	waitCount := func(want string, n int) {
		t.Helper()
		deadline := time.Now().Add(clientTimeout)
		for strings.Count(out.String(), want) < n {
			if time.Now().After(deadline) || len(exited) > 0 {
				t.Fatalf("%q logged %d times, want %d\n%s", want, strings.Count(out.String(), want), n, out.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitCount(down, 1)
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	if err := testbroker.WaitTCP(ctx, httpAddr); err != nil {
		t.Fatalf("e4 c2 serve does not serve while the broker is down: %v\n%s", err, out.String())
	}
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitCount(up, 1)
	for round := 1; round <= 2; round++ {
		m.Stop()
		waitCount(down, 1+round)
		if err := m.Start(ctx); err != nil {
			t.Fatal(err)
		}
		waitCount(up, 1+round)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := <-exited; err != nil {
		t.Fatalf("e4 c2 serve exited with %v\n%s", err, out.String())
	}
	exited <- nil // for the cleanup
	for _, line := range strings.Split(out.String(), "\n") {
		if (strings.Contains(line, down) || strings.Contains(line, up)) && !strings.Contains(line, `"level":"INFO"`) {
			t.Fatalf("not at info level: %s", line)
		}
	}
	if n := strings.Count(out.String(), down); n != 3 {
		t.Fatalf("%d lines about the connection going down, want 3\n%s", n, out.String())
	}
}

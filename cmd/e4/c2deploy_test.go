package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/internal/testbroker"
)

// TestC2ServeRefusesAnEmptyDatabaseOfAnExistingDeployment: a 0-byte (or
// missing) database beside the master key of a deployment that existed is
// refused at start with what to do, and admin.token is left alone; before,
// C2 started a new deployment and wrote a new admin token over the old.
// The refusal holds without the deployment record too (a deployment made
// before it existed: the master key file is the evidence), and --init
// starts the new deployment on purpose.
func TestC2ServeRefusesAnEmptyDatabaseOfAnExistingDeployment(t *testing.T) {
	s := startC2Serve(t)
	s.ok("client", "add", "provisioned")
	s.stop()
	data := filepath.Join(s.dir, "data")
	token, err := os.ReadFile(filepath.Join(data, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(data, "deployment")); err != nil {
		t.Fatalf("no deployment record after the first start: %v", err)
	}
	db := filepath.Join(data, "c2.db")
	emptyDB := func() {
		t.Helper()
		for _, suffix := range []string{"-wal", "-shm"} {
			_ = os.Remove(db + suffix)
		}
		if err := os.WriteFile(db, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	serve := func(args ...string) (string, error) {
		cmd := exec.Command(e4Binary, append([]string{"c2", "serve", "--config", filepath.Join(s.dir, "c2.yaml")}, args...)...)
		cmd.Env = cleanEnv()
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	checkRefused := func(evidence string) {
		t.Helper()
		out, err := serve()
		if err == nil || !strings.Contains(out, "is empty or missing, but "+evidence) || !strings.Contains(out, "restore the database") {
			t.Fatalf("start on an empty database: %v\n%s", err, out)
		}
		if now, err := os.ReadFile(filepath.Join(data, "admin.token")); err != nil || string(now) != string(token) {
			t.Fatalf("admin.token changed (%v)", err)
		}
	}
	emptyDB()
	checkRefused("the data folder records a deployment")
	if err := os.Remove(db); err != nil {
		t.Fatal(err)
	}
	checkRefused("the data folder records a deployment")
	if err := os.Remove(filepath.Join(data, "deployment")); err != nil {
		t.Fatal(err)
	}
	emptyDB()
	checkRefused("the master key file " + filepath.Join(data, "master.key") + " exists")

	cmd := exec.Command(e4Binary, "c2", "serve", "--config", filepath.Join(s.dir, "c2.yaml"), "--init")
	cmd.Env = cleanEnv()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := testbroker.WaitTCP(ctx, s.http); err != nil {
		_ = cmd.Process.Kill()
		t.Fatalf("--init did not start: %v\n%s", err, out.String())
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("--init: %v\n%s", err, out.String())
	}
	if _, err := os.Stat(filepath.Join(data, "deployment")); err != nil {
		t.Fatalf("--init wrote no deployment record: %v", err)
	}
}

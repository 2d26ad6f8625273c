package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestC2Rekey: "e4 c2 rekey" re-seals a stopped C2's database under a new
// master key file it creates; C2 then refuses the old key and, with the
// new one, serves the same clients and topics (a rotation works, so the
// topic key opened).
func TestC2Rekey(t *testing.T) {
	s := startC2Serve(t)
	s.ok("client", "add", "kept-client")
	s.ok("topic", "add", "kept/topic")
	s.ok("member", "add", "kept-client", "kept/topic")
	s.stop()
	data := filepath.Join(s.dir, "data")
	newKey := filepath.Join(data, "master.key.new")
	rekey := func() string {
		t.Helper()
		cmd := exec.Command(e4Binary, "c2", "rekey", "--config", filepath.Join(s.dir, "c2.yaml"), "--new-master-key-file", newKey)
		cmd.Env = cleanEnv()
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("rekey: %v\n%s", err, out)
		}
		return string(out)
	}
	if out := rekey(); !strings.Contains(out, "created the new master key") || !strings.Contains(out, "re-sealed") {
		t.Fatalf("rekey said:\n%s", out)
	}
	if info, err := os.Stat(newKey); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("new key file: %v %v", info, err)
	}

	old := exec.Command(e4Binary, "c2", "serve", "--config", filepath.Join(s.dir, "c2.yaml"))
	old.Env = cleanEnv()
	if out, err := old.CombinedOutput(); err == nil || !strings.Contains(string(out), "master key does not open this database") {
		t.Fatalf("serve with the old key after the rekey: %v\n%s", err, out)
	}
	if err := os.Rename(newKey, filepath.Join(data, "master.key")); err != nil {
		t.Fatal(err)
	}
	s.start()
	s.ok("client", "get", "kept-client")
	s.ok("topic", "rotate", "kept/topic")
	s.stop()
}

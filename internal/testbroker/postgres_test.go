package testbroker

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// orphanEnv makes the test binary a helper that starts a server, writes
// its PID and directory to the file named by the variable, and waits to
// be killed.
const orphanEnv = "E4KIT_TESTBROKER_ORPHAN"

func TestMain(m *testing.M) {
	if path := os.Getenv(orphanEnv); path != "" {
		runOrphanHelper(path)
		return
	}
	os.Exit(m.Run())
}

func runOrphanHelper(path string) {
	bin, err := PostgresBinDir()
	if err != nil {
		os.Exit(2)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.Exit(2)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	p, err := NewPostgres(bin, port, nil)
	if err != nil {
		os.Exit(2)
	}
	if err := os.WriteFile(path+".tmp", []byte(strconv.Itoa(p.PID())+" "+p.dir), 0o600); err != nil {
		os.Exit(2)
	}
	_ = os.Rename(path+".tmp", path)
	select {} // killed by the test
}

// TestPostgresDiesWithTestProcess: a test binary killed before its cleanup
// takes its server with it (parent-death signal), so no server is left
// holding a port.
func TestPostgresDiesWithTestProcess(t *testing.T) {
	if _, err := PostgresBinDir(); err != nil {
		t.Fatal(err)
	}
	info := filepath.Join(t.TempDir(), "server")
	helper := exec.Command(os.Args[0], "-test.run=^$")
	helper.Env = append(os.Environ(), orphanEnv+"="+info)
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	defer helper.Wait()
	defer helper.Process.Kill()
	var pid int
	var dir string
	for deadline := time.Now().Add(time.Minute); pid == 0; time.Sleep(20 * time.Millisecond) {
		if data, err := os.ReadFile(info); err == nil {
			fields := strings.Fields(string(data))
			pid, _ = strconv.Atoi(fields[0])
			dir = fields[1]
		}
		if time.Now().After(deadline) {
			t.Fatal("the helper did not start a server")
		}
	}
	defer os.RemoveAll(dir)
	if !processAlive(pid) {
		t.Fatalf("server %d is not running", pid)
	}
	if err := helper.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); processAlive(pid); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("server %d outlived its killed test process", pid)
		}
	}
}

// TestPostgresLifecycle: the server accepts connections, NewDatabase makes
// distinct databases that exist on it, and Stop ends the process by its
// PID, closes the port and removes the data directory.
func TestPostgresLifecycle(t *testing.T) {
	p := StartPostgres(t, nil)
	pid := p.PID()
	if pid <= 0 || !processAlive(pid) {
		t.Fatalf("PID %d is not a running process", pid)
	}
	first, second := p.NewDatabase(t), p.NewDatabase(t)
	if first == second || !strings.HasPrefix(first, "postgres://postgres@127.0.0.1:"+strconv.Itoa(p.port)+"/") {
		t.Fatalf("DSNs %q and %q: want two databases on this server", first, second)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out, err := p.run(ctx, "psql", "-h", "127.0.0.1", "-p", strconv.Itoa(p.port), "-U", "postgres", "-At",
		"-c", "SELECT datname FROM pg_database WHERE datname LIKE 'test_%' ORDER BY datname", "postgres")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(string(out)); len(got) != 2 || got[0] != "test_1" || got[1] != "test_2" {
		t.Fatalf("databases on the server: %q, want test_1 and test_2", got)
	}

	dir := p.dir
	p.Stop()
	p.Stop() // idempotent
	if processAlive(pid) {
		t.Errorf("process %d still runs after Stop", pid)
	}
	if c, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		c.Close()
		t.Errorf("%s still accepts connections after Stop", p.Addr())
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("data directory %s left behind (%v)", dir, err)
	}
}

// TestPostgresBinDir: the binaries of this machine are found, or the error
// says what to install.
func TestPostgresBinDir(t *testing.T) {
	dir, err := PostgresBinDir()
	if err != nil {
		if !strings.Contains(err.Error(), "apt-get install postgresql") {
			t.Fatalf("error without an install hint: %v", err)
		}
		t.Fatal(err)
	}
	for _, name := range []string{"initdb", "postgres", "pg_ctl", "pg_isready", "createdb", "psql"} {
		if !isExecutable(dir + "/" + name) {
			t.Errorf("%s/%s is not executable", dir, name)
		}
	}
}

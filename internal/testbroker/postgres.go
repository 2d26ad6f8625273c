package testbroker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// PostgresInstallHint is printed when the PostgreSQL server binaries are
// missing.
const PostgresInstallHint = "apt-get install postgresql (or run scripts/install-test-deps.sh as root)"

// postgresBootTimeout bounds initdb plus the server start; both take about
// a second.
const postgresBootTimeout = 60 * time.Second

// postgresUser is the operating-system account that runs the server when
// the tests run as root: PostgreSQL refuses to run as root.
const postgresUser = "postgres"

// PostgresOptions configures StartPostgres. The zero value (or nil) makes
// a throwaway server: no fsync, which tests do not need.
type PostgresOptions struct {
	// Durable keeps fsync and synchronous commits on, for benchmarks that
	// should pay what a production server pays.
	Durable bool
}

// Postgres is a PostgreSQL server started for tests in a temporary data
// directory, listening on a free loopback port, with trust authentication
// for the superuser "postgres".
//
// The server runs in the foreground as a child of the test process (not
// daemonized by pg_ctl start), with a parent-death signal: if the test
// binary dies without its cleanup, the server goes with it instead of
// holding its port and memory.
type Postgres struct {
	bin  string // directory of initdb, pg_ctl, createdb
	dir  string // holds data/, the log and the socket
	port int
	opts PostgresOptions
	asPG bool // run the binaries as the postgres user (we are root)

	mu      sync.Mutex
	server  *exec.Cmd     // the postmaster, or runuser running it
	exited  chan struct{} // closed when server has exited
	pid     int           // the postmaster's own PID
	stopped bool
	dbs     atomic.Int64
}

// StartPostgres starts a server for one test (or benchmark) and stops it
// when the test ends. Databases for sub-tests come from NewDatabase.
func StartPostgres(t testing.TB, opts *PostgresOptions) *Postgres {
	t.Helper()
	bin, err := PostgresBinDir()
	if err != nil {
		t.Fatal(err)
	}
	var p *Postgres
	for attempt := 1; ; attempt++ {
		p, err = NewPostgres(bin, FreePort(t, "tcp"), opts)
		if err == nil || attempt == portAttempts || !portTaken(err) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return p
}

// PostgresBinDir returns the directory of the newest installed PostgreSQL
// server binaries (Debian: /usr/lib/postgresql/N/bin), or an error saying
// what to install.
func PostgresBinDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, dir := range dirs {
		if isExecutable(filepath.Join(dir, "initdb")) && isExecutable(filepath.Join(dir, "postgres")) {
			return dir, nil
		}
	}
	if path, err := exec.LookPath("initdb"); err == nil && isExecutable(filepath.Join(filepath.Dir(path), "postgres")) {
		return filepath.Dir(path), nil
	}
	return "", fmt.Errorf("testbroker: PostgreSQL server binaries (initdb, postgres) not found: %s", PostgresInstallHint)
}

// versionOf reads N from /usr/lib/postgresql/N/bin.
func versionOf(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func isExecutable(path string) bool {
	info, err := os.Stat(path)
	return err == nil && !info.IsDir() && info.Mode()&0o111 != 0
}

// NewPostgres creates a cluster in a new temporary directory and starts
// its server on port. Stop it with Stop, which also removes the directory.
func NewPostgres(bin string, port int, opts *PostgresOptions) (*Postgres, error) {
	p := &Postgres{bin: bin, port: port, asPG: os.Geteuid() == 0}
	if opts != nil {
		p.opts = *opts
	}
	dir, err := os.MkdirTemp("", "e4kit-postgres-")
	if err != nil {
		return nil, fmt.Errorf("testbroker: %w", err)
	}
	p.dir = dir
	ctx, cancel := context.WithTimeout(context.Background(), postgresBootTimeout)
	defer cancel()
	if err := p.boot(ctx); err != nil {
		p.Stop()
		return nil, err
	}
	return p, nil
}

// boot runs initdb and starts the server.
func (p *Postgres) boot(ctx context.Context) error {
	if p.asPG {
		if err := chownToPostgres(p.dir); err != nil {
			return err
		}
	}
	_, err := p.run(ctx, "initdb", "-D", p.dataDir(), "-U", "postgres", "-A", "trust",
		"-E", "UTF8", "--locale=C.UTF-8", "--no-sync")
	if err != nil {
		return err
	}
	return p.start(ctx)
}

// start runs the server and waits until it accepts connections.
func (p *Postgres) start(ctx context.Context) error {
	args := []string{"-D", p.dataDir(), "-p", strconv.Itoa(p.port),
		"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=" + p.dir, "-c", "max_connections=200"}
	if !p.opts.Durable {
		args = append(args, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	log, err := os.OpenFile(p.logFile(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("testbroker: %w", err)
	}
	defer log.Close() // the server has its own copy
	cmd := p.command(context.Background(), "postgres", args...)
	cmd.Stdout, cmd.Stderr = log, log
	// runuser passes the signal on to the server (and kills it 2 s later
	// if it is still there).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("testbroker: starting postgres: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	p.mu.Lock()
	p.server, p.exited = cmd, exited
	p.mu.Unlock()
	if err := p.waitReady(ctx, exited); err != nil {
		return fmt.Errorf("testbroker: PostgreSQL did not start: %w\n%s", err, p.Log())
	}
	pid, err := p.readPID()
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.pid = pid
	p.mu.Unlock()
	return nil
}

// waitReady polls pg_isready until the server accepts connections, the
// server exits, or ctx ends.
func (p *Postgres) waitReady(ctx context.Context, exited <-chan struct{}) error {
	for {
		check := p.command(ctx, "pg_isready", "-q", "-h", "127.0.0.1", "-p", strconv.Itoa(p.port))
		if check.Run() == nil {
			return nil
		}
		select {
		case <-exited:
			return errors.New("the server exited")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// command prepares one of the server's binaries, run as the postgres
// user when we are root (PostgreSQL refuses to run as root).
func (p *Postgres) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	path := filepath.Join(p.bin, name)
	var cmd *exec.Cmd
	if p.asPG {
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", postgresUser, "--", path}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, path, args...)
	}
	cmd.Dir = p.dir
	return cmd
}

// run runs one of the server's binaries and returns its output.
func (p *Postgres) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := p.command(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("testbroker: %s: %w\n%s", name, err, out.String())
	}
	return out.Bytes(), nil
}

// chownToPostgres gives dir to the postgres user, which must exist (the
// Debian package creates it).
func chownToPostgres(dir string) error {
	u, err := user.Lookup(postgresUser)
	if err != nil {
		return fmt.Errorf("testbroker: user %q: %w: %s", postgresUser, err, PostgresInstallHint)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		return fmt.Errorf("testbroker: %w", err)
	}
	return nil
}

func (p *Postgres) dataDir() string { return filepath.Join(p.dir, "data") }
func (p *Postgres) logFile() string { return filepath.Join(p.dir, "postgres.log") }

// readPID reads the postmaster's PID from the first line of
// postmaster.pid.
func (p *Postgres) readPID() (int, error) {
	data, err := os.ReadFile(filepath.Join(p.dataDir(), "postmaster.pid"))
	if err != nil {
		return 0, fmt.Errorf("testbroker: reading the PostgreSQL PID: %w", err)
	}
	first, _, _ := strings.Cut(string(data), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("testbroker: postmaster.pid starts with %q", first)
	}
	return pid, nil
}

// Addr returns "127.0.0.1:port".
func (p *Postgres) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port)) }

// PID returns the server's process id, or 0 once stopped.
func (p *Postgres) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pid
}

// DSN returns a connection URL for database name as the superuser.
func (p *Postgres) DSN(name string) string {
	return fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable", p.Addr(), name)
}

// NewDatabase creates an empty database with a fresh name and returns its
// DSN; tests that each need a clean database share one server this way.
func (p *Postgres) NewDatabase(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("test_%d", p.dbs.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := p.run(ctx, "createdb", "-h", "127.0.0.1", "-p", strconv.Itoa(p.port), "-U", "postgres", name); err != nil {
		t.Fatal(err)
	}
	return p.DSN(name)
}

// Log returns what the server wrote to its log file.
func (p *Postgres) Log() string {
	data, err := os.ReadFile(p.logFile())
	if err != nil {
		return ""
	}
	return string(data)
}

// Stop stops the server with pg_ctl (fast shutdown: open sessions are
// cut), kills its process group if that fails, and removes its directory;
// it is idempotent.
func (p *Postgres) Stop() {
	p.mu.Lock()
	server, exited, stopped := p.server, p.exited, p.stopped
	p.stopped, p.pid = true, 0
	p.mu.Unlock()
	if stopped {
		return
	}
	if server != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := p.run(ctx, "pg_ctl", "-D", p.dataDir(), "-m", "fast", "-w", "-t", "20", "stop")
		cancel()
		select {
		case <-exited:
		case <-time.After(stopGrace(err)):
			_ = syscall.Kill(-server.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	}
	_ = os.RemoveAll(p.dir)
}

// stopGrace is how long Stop waits for the server to exit after pg_ctl
// stop: briefly when pg_ctl failed.
func stopGrace(pgCtlErr error) time.Duration {
	if pgCtlErr != nil {
		return 100 * time.Millisecond
	}
	return 10 * time.Second
}

// processAlive reports whether pid still runs; a zombie (exited, not yet
// reaped by its new parent) counts as gone.
func processAlive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	// The state follows the command name, which is in parentheses.
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2] != 'Z'
	}
	return true
}

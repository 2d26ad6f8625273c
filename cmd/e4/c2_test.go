package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/internal/testbroker"
	"github.com/e4-iot/e4kit/transport/mqtt/mqttbroker"
)

// c2Server is "e4 c2 serve" running as a subprocess of the test.
type c2Server struct {
	t          *testing.T
	dir        string
	grpc, http string
	brokerURL  string
	serveEnv   []string // extra environment of the server process
	serveArgs  []string // extra flags of the server process
	env        []string // what an admin command needs to reach it
	cmd        *exec.Cmd
	output     *bytes.Buffer
	stopped    bool
}

// startC2Serve runs the built binary's "e4 c2 serve" with a YAML config
// (addresses, data dir), an environment override (the broker URL) and a
// flag (the rate limit), over the embedded MQTT broker.
func startC2Serve(t *testing.T, serveEnv ...string) *c2Server {
	t.Helper()
	return startC2ServeArgs(t, nil, serveEnv...)
}

// startC2ServeArgs is startC2Serve with extra flags for "e4 c2 serve".
func startC2ServeArgs(t *testing.T, serveArgs []string, serveEnv ...string) *c2Server {
	t.Helper()
	broker, err := mqttbroker.Start("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { broker.Close() })
	s := &c2Server{t: t, dir: t.TempDir(), brokerURL: broker.URL(), serveEnv: serveEnv, serveArgs: serveArgs}
	s.grpc = fmt.Sprintf("127.0.0.1:%d", testbroker.FreePort(t, "tcp"))
	s.http = fmt.Sprintf("127.0.0.1:%d", testbroker.FreePort(t, "tcp"))
	yaml := fmt.Sprintf("mode: sk\ndata_dir: %s\ngrpc:\n  addr: %s\nhttp:\n  addr: %s\ntransport:\n  url: none\nlog:\n  format: json\n",
		filepath.Join(s.dir, "data"), s.grpc, s.http)
	if err := os.WriteFile(filepath.Join(s.dir, "c2.yaml"), []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(s.dir, "data")
	s.env = []string{"E4_C2_SERVER=" + s.grpc, "E4_C2_TOKEN_FILE=" + filepath.Join(data, "admin.token"),
		"E4_C2_CA_FILE=" + filepath.Join(data, "tls", "cert.pem")}
	s.start()
	return s
}

// start runs the server process and waits until it listens.
func (s *c2Server) start() {
	s.t.Helper()
	s.output, s.stopped = &bytes.Buffer{}, false
	s.cmd = exec.Command(e4Binary, append([]string{"c2", "serve", "--config", filepath.Join(s.dir, "c2.yaml"), "--rate", "1000"}, s.serveArgs...)...)
	s.cmd.Env = append(append(cleanEnv(), "E4_C2_TRANSPORT_URL="+s.brokerURL), s.serveEnv...)
	s.cmd.Stdout, s.cmd.Stderr = s.output, s.output
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(s.stop)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := testbroker.WaitTCP(ctx, s.http); err != nil {
		s.stop()
		s.t.Fatalf("e4 c2 serve did not start: %v\n%s", err, s.output)
	}
}

// stop sends SIGTERM and waits; the server must exit 0.
func (s *c2Server) stop() {
	if s.stopped {
		return
	}
	s.stopped = true
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	if err := s.cmd.Wait(); err != nil {
		s.t.Errorf("e4 c2 serve exited with %v:\n%s", err, s.output)
	}
}

// c2 runs an admin command against the server, with extra environment.
func (s *c2Server) c2(stdin string, env []string, args ...string) result {
	s.t.Helper()
	cmd := exec.Command(e4Binary, append([]string{"c2"}, args...)...)
	cmd.Env = append(append(cleanEnv(), s.env...), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		s.t.Fatal(err)
	}
	return result{out.String(), errOut.String(), code}
}

// cleanEnv is the test's environment without E4_C2_ variables.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "E4_C2_") {
			env = append(env, kv)
		}
	}
	return env
}

// ok runs a command that must succeed and returns its stdout.
func (s *c2Server) ok(args ...string) string {
	s.t.Helper()
	r := s.c2("", nil, args...)
	if r.code != 0 {
		s.t.Fatalf("e4 c2 %s: exit %d, stderr %q", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

// jsonOf runs a command with --json and decodes its output.
func (s *c2Server) jsonOf(args ...string) map[string]any {
	s.t.Helper()
	var v map[string]any
	out := s.ok(append(args, "--json")...)
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		s.t.Fatalf("e4 c2 %s --json: %v\n%s", strings.Join(args, " "), err, out)
	}
	return v
}

// fails runs a command that must fail with one stderr line containing
// want.
func (s *c2Server) fails(env []string, want string, args ...string) {
	s.t.Helper()
	r := s.c2("", env, args...)
	if r.code == 0 || !strings.Contains(r.stderr, want) || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		s.t.Fatalf("e4 c2 %s: exit %d, stderr %q; want a failure saying %q", strings.Join(args, " "), r.code, r.stderr, want)
	}
}

// TestC2CLI drives a running C2 with the admin commands: tokens and
// scopes, clients, topics, memberships, rotation with --wait, import with
// a progress bar, events, audit, JSON output, errors.
func TestC2CLI(t *testing.T) {
	s := startC2Serve(t)
	dir := t.TempDir()

	opsFile := filepath.Join(dir, "ops.token")
	s.ok("token", "create", "ops", "--scope", "operate", "--out", opsFile)
	readerFile := filepath.Join(dir, "reader.token")
	s.ok("token", "create", "reader", "--scope", "read", "--out", readerFile)
	for _, f := range []string{opsFile, readerFile} {
		if info, err := os.Stat(f); err != nil || info.Mode().Perm() != 0o600 {
			t.Fatalf("token file %s: %v %v", f, info, err)
		}
	}
	asOps := []string{"E4_C2_TOKEN_FILE=" + opsFile}
	asReader := []string{"E4_C2_TOKEN_FILE=" + readerFile}

	keyFile := filepath.Join(dir, "pump.key")
	r := s.c2("", asOps, "client", "add", "pump-1", "--key-out", keyFile)
	if r.code != 0 || !strings.Contains(r.stdout, "written to "+keyFile) {
		t.Fatalf("client add: %+v", r)
	}
	key, err := os.ReadFile(keyFile)
	if b, _ := hex.DecodeString(strings.TrimSpace(string(key))); err != nil || len(b) != 32 {
		t.Fatalf("key file: %q %v", key, err)
	}
	added := s.jsonOf("client", "add", "pump-2")
	if k, _ := added["key"].(string); len(k) != 64 { // hex, as in the key files
		t.Fatalf("client add --json: %v", added)
	}
	s.ok("topic", "add", "plant/line-1")
	s.ok("member", "add", "pump-1", "plant/line-1")
	s.ok("member", "add-many", "plant/line-1", "pump-2")
	s.ok("member", "check", "pump-1", "plant/line-1")
	r = s.c2("", nil, "topic", "rotate", "plant/line-1", "--wait", "--progress", "always")
	if r.code != 0 || !strings.Contains(r.stdout, "2 commands queued") || !strings.Contains(r.stderr, "2/2 100%") {
		t.Fatalf("topic rotate --wait: %+v", r)
	}
	topic := s.jsonOf("topic", "get", "plant/line-1")
	if topic["key_version"] != float64(2) || topic["members"] != float64(2) {
		t.Fatalf("topic get: %v", topic)
	}
	list := s.ok("client", "list")
	if !strings.Contains(list, "pump-1") || !strings.Contains(list, "ID") {
		t.Fatalf("client list:\n%s", list)
	}
	cmds := s.jsonOf("command", "list", "--target", "plant/line-1")
	if cmds["total"] != float64(4) {
		t.Fatalf("command list: %v", cmds)
	}

	var csv strings.Builder
	csv.WriteString("name\n")
	for i := range 25 {
		fmt.Fprintf(&csv, "sensor-%d\n", i)
	}
	csvFile := filepath.Join(dir, "fleet.csv")
	if err := os.WriteFile(csvFile, []byte(csv.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	keysOut := filepath.Join(dir, "fleet-keys.csv")
	r = s.c2("", asOps, "client", "import", csvFile, "--keys-out", keysOut, "--progress", "always")
	if r.code != 0 || !strings.Contains(r.stdout, "imported 25 clients") || !strings.Contains(r.stderr, "importing [") || !strings.Contains(r.stderr, "25/25 100%") {
		t.Fatalf("client import: %+v", r)
	}
	keys, _ := os.ReadFile(keysOut)
	if n := strings.Count(string(keys), "\n"); n != 26 {
		t.Fatalf("%d lines of generated keys, want 26:\n%s", n, keys)
	}

	s.fails(asReader, "permission denied", "client", "add", "intruder")
	s.fails([]string{"E4_C2_TOKEN=e4c2_forged"}, "not authenticated", "client", "list")
	s.fails([]string{"E4_C2_TOKEN_FILE="}, "no API token", "client", "list")
	s.fails(nil, "invalid argument", "topic", "add", "plant/+")
	s.fails(nil, "not found", "client", "get", "nobody")
	s.fails(nil, "already exists", "topic", "add", "plant/line-1")
	s.fails(nil, "is not a member", "member", "check", "sensor-1", "plant/line-1")
	s.fails([]string{"E4_C2_SERVER=127.0.0.1:1"}, "cannot reach C2", "client", "list")

	s.ok("token", "revoke", "reader")
	s.fails(asReader, "revoked", "topic", "list")

	audit := s.jsonOf("audit", "--action", "AddClient")
	records, _ := audit["records"].([]any)
	if len(records) != 3 { // pump-1, pump-2, the refused intruder
		t.Fatalf("audit --action AddClient: %v", audit)
	}
	events := s.jsonOf("events", "--limit", "1000")
	if evs, _ := events["events"].([]any); len(evs) < 5 {
		t.Fatalf("events: %v", events)
	}
	if out := s.ok("health"); !strings.Contains(out, "transport         ok") {
		t.Fatalf("health:\n%s", out)
	}
	info := s.jsonOf("info")
	if info["mode"] != "sk" || info["clients"] != float64(27) {
		t.Fatalf("info: %v", info)
	}
	protected := s.c2(hex.EncodeToString([]byte("21.5")), asOps, "message", "protect", "plant/line-1", "--hex")
	plain := s.c2(protected.stdout, asOps, "message", "unprotect", "plant/line-1", "--hex")
	if plain.code != 0 || strings.TrimSpace(plain.stdout) != hex.EncodeToString([]byte("21.5")) {
		t.Fatalf("message protect/unprotect: %+v %+v", protected, plain)
	}
}

// TestC2EventsFollow: "e4 c2 events --follow --json" prints each event as
// one JSON line as it happens, and stops on SIGINT.
func TestC2EventsFollow(t *testing.T) {
	s := startC2Serve(t)
	follow := exec.Command(e4Binary, "c2", "events", "--follow", "--json", "--kind", "topic_added")
	follow.Env = append(cleanEnv(), s.env...)
	stdout, err := follow.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, _ := follow.StderrPipe()
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	// The follower says so once its stream is open.
	if line, err := bufio.NewReader(stderr).ReadString('\n'); err != nil || !strings.Contains(line, "following events") {
		t.Fatalf("events --follow: %q %v", line, err)
	}
	s.ok("client", "add", "not-followed")
	s.ok("topic", "add", "followed/topic")
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() {
		t.Fatalf("no event line: %v", lines.Err())
	}
	var ev map[string]any
	if err := json.Unmarshal(lines.Bytes(), &ev); err != nil || ev["kind"] != "topic_added" || ev["topic"] != "followed/topic" {
		t.Fatalf("event line %q: %v", lines.Text(), err)
	}
	_ = follow.Process.Signal(os.Interrupt)
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	if err := follow.Wait(); err != nil {
		t.Fatalf("events --follow after SIGINT: %v", err)
	}
}

// TestC2ServeRestart: SIGTERM stops the server cleanly (exit 0, stop
// logged, no token in the log); a second start on the same data dir opens
// the database with the master key made by the first, keeps the state and
// the admin token, and makes no second bootstrap token.
func TestC2ServeRestart(t *testing.T) {
	s := startC2Serve(t)
	s.ok("topic", "add", "kept")
	token, err := os.ReadFile(filepath.Join(s.dir, "data", "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	s.stop()
	first := s.output.String()
	if !strings.Contains(first, `"msg":"C2 stopped"`) || !strings.Contains(first, "created the first admin API token") {
		t.Fatalf("first run's log:\n%s", first)
	}
	if strings.Contains(first, strings.TrimSpace(string(token))) {
		t.Fatalf("the admin token appears in the server log:\n%s", first)
	}
	s.start()
	if out := s.ok("topic", "get", "kept"); !strings.Contains(out, "kept") {
		t.Fatalf("topic after the restart:\n%s", out)
	}
	s.stop()
	if second := s.output.String(); strings.Contains(second, "created the first admin API token") || strings.Contains(second, "created a new master key") {
		t.Fatalf("the restart made a new token or master key:\n%s", second)
	}
}

// TestC2ServePassphrase: a master key derived from a passphrase (salt
// kept in the database) opens the database again after a restart; a wrong
// passphrase is refused at start with a clear error, nothing served.
func TestC2ServePassphrase(t *testing.T) {
	s := startC2Serve(t, "E4_C2_MASTER_KEY_PASSPHRASE_ENV=C2_PASSPHRASE", "C2_PASSPHRASE=correct horse battery staple")
	s.ok("client", "add", "sealed-under-passphrase")
	s.stop()
	if _, err := os.Stat(filepath.Join(s.dir, "data", "master.key")); err == nil {
		t.Fatal("a master key file was written although a passphrase was configured")
	}
	s.start()
	s.ok("client", "get", "sealed-under-passphrase")
	s.stop()

	wrong := exec.Command(e4Binary, "c2", "serve", "--config", filepath.Join(s.dir, "c2.yaml"))
	wrong.Env = append(cleanEnv(), "E4_C2_MASTER_KEY_PASSPHRASE_ENV=C2_PASSPHRASE", "C2_PASSPHRASE=wrong horse battery staple!")
	out, err := wrong.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "master key does not open this database") {
		t.Fatalf("start with a wrong passphrase: %v\n%s", err, out)
	}
}

// TestC2Completion: shell completion scripts and flag value completion.
func TestC2Completion(t *testing.T) {
	out := e4Run(t, "", "__complete", "c2", "token", "create", "x", "--scope", "").stdout
	for _, scope := range []string{"read", "operate", "admin"} {
		if !strings.Contains(out, scope+"\n") {
			t.Fatalf("scope completion lacks %s:\n%s", scope, out)
		}
	}
	out = e4Run(t, "", "__complete", "c2", "command", "list", "--state", "").stdout
	if !strings.Contains(out, "pending\n") {
		t.Fatalf("state completion:\n%s", out)
	}
	for _, shell := range []string{"bash", "zsh", "fish"} {
		if out := mustSucceed(t, e4Run(t, "", "completion", shell)); !strings.Contains(out, "e4") {
			t.Fatalf("completion %s printed nothing useful", shell)
		}
	}
	help := mustSucceed(t, e4Run(t, "", "c2", "topic", "rotate", "--help"))
	if !strings.Contains(help, "Examples:") || !strings.Contains(help, "--wait") {
		t.Fatalf("help without examples:\n%s", help)
	}
}

// TestC2PolicyExamples runs every example of "e4 c2 policy --help", in
// order, against a running C2: they must work as written.
func TestC2PolicyExamples(t *testing.T) {
	s := startC2Serve(t)
	s.ok("topic", "add", "fleet/firmware")
	help := s.ok("policy", "--help")
	var ran int
	for _, line := range strings.Split(policyExamples, "\n") {
		line = strings.TrimSpace(line)
		args, err := splitShellWords(strings.TrimPrefix(line, "e4 c2 "))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(help, line) {
			t.Fatalf("--help lacks the example %q", line)
		}
		s.ok(args...)
		ran++
	}
	if ran < 10 {
		t.Fatalf("ran %d examples", ran)
	}
	list := s.ok("policy", "list")
	for _, want := range []string{"firmware-weekly", "every 1w ±1h", "analytics-weekly", "keys-age", "max age 90d"} {
		if !strings.Contains(list, want) {
			t.Fatalf("policy list lacks %q:\n%s", want, list)
		}
	}
	if strings.Contains(list, "forged") {
		t.Fatalf("the removed policy is still listed:\n%s", list)
	}
	// An operator's rotation is listed too, with its reason.
	s.ok("topic", "rotate", "fleet/firmware")
	rotations := s.ok("policy", "rotations", "--kind", "topic", "--target", "fleet/firmware")
	if !strings.Contains(rotations, "REASON") || !strings.Contains(rotations, "manual") {
		t.Fatalf("policy rotations lacks the manual rotation:\n%s", rotations)
	}
	next := s.ok("policy", "preview", "--topic", "fleet/firmware")
	if !strings.Contains(next, "firmware-weekly") {
		t.Fatalf("preview --topic:\n%s", next)
	}
	s.fails(nil, "give one of --exact, --prefix, --filter or --all", "policy", "add", "x", "--every", "1w")
	s.fails(nil, "want such as 90m, 36h, 7d or 1w", "policy", "add", "x", "--all", "--every", "soon")

	// The message budget: listed, previewed with its count, refused
	// negative; and a C2 started without the monitor warns that it counts
	// nothing.
	if !strings.Contains(list, "after 1000000000 messages") {
		t.Fatalf("policy list lacks the message budget:\n%s", list)
	}
	s.ok("topic", "add", "meters/1")
	budget := s.ok("policy", "preview", "--topic", "meters/1")
	for _, want := range []string{"at the budget", "gcm-budget", "messages (0 of 1000000000 messages)"} {
		if !strings.Contains(budget, want) {
			t.Fatalf("preview --topic of a topic under a message budget lacks %q:\n%s", want, budget)
		}
	}
	s.fails(nil, "cannot be negative", "policy", "add", "y", "--all", "--max-messages", "-1")
	s.stop()
	s.start()
	s.stop()
	if out := s.output.String(); !strings.Contains(out, "message budget") || !strings.Contains(out, "the monitor is off") {
		t.Fatalf("e4 c2 serve without --monitor does not warn about the message budget:\n%s", out)
	}
}

// splitShellWords splits a command line on spaces, keeping quoted words
// ('...' or "...") whole.
func splitShellWords(line string) ([]string, error) {
	var (
		words  []string
		cur    strings.Builder
		quote  rune
		inWord bool
	)
	for _, r := range line {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unclosed quote in %q", line)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

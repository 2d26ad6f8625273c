package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/e4-iot/e4kit/internal/testbroker"
	"github.com/e4-iot/e4kit/internal/testutil"
)

// This file runs every shell command that the README (its fenced sh
// blocks) and the --help texts (the Example of every command, and the
// examples of the root command's description) show, as written, against a
// real Mosquitto and real C2 servers, so that a wrong example fails the
// tests. The few exceptions are listed below with their reason, and the
// test fails when an exception no longer matches a documented command.

// docLine is one documented shell command.
type docLine struct {
	source  string // README.md:LINE, or the command whose help shows it
	text    string // as documented: continuations joined, comment removed
	comment string // its comment; "prints X" is checked
}

// docGroup is a sequence of commands documented together: they run in
// order in one working directory (the README's blocks all in one).
type docGroup struct {
	name  string
	lines []docLine
}

// notRun lists the documented commands the test does not run, with why.
var notRun = map[string]string{
	"make test":             "the whole test suite, which contains this test (CI runs it through .ci/run)",
	"make bench":            "benchmarks of several minutes (CI runs the benchmarks' tests with -benchtime 1x)",
	"make bench-transports": "benchmarks of several minutes",
	"go test -run '^$' -bench MonitorVsBare -benchtime 50000x -count 3 ./c2/monitor/":                          "a benchmark of minutes, in the repository (CI runs the benchmarks' tests with -benchtime 1x)",
	"go test -run '^$' -bench Check -benchmem ./c2/monitor/":                                                   "a benchmark, in the repository (CI runs the benchmarks' tests with -benchtime 1x)",
	"go build -o bin/e4 ./cmd/e4":                                                                              "TestMain builds the same package; bin/e4 in each working directory is that binary",
	"e4 c2 serve --data-dir /var/lib/e4c2 --transport mqtts://broker.example:8883 --transport-ca-file ca.pem":  "a placeholder broker host and CA of the reader's deployment",
	"E4_C2_TRANSPORT_PASSWORD=... e4 c2 serve --transport amqp://c2@rabbit.example --mode pk":                  "a placeholder RabbitMQ host and password",
	"e4 c2 serve --config c2.yaml --store postgres --dsn postgres://c2@db.example/e4c2":                        "a placeholder PostgreSQL host",
	"e4 c2 rekey --config c2.yaml --new-master-key-file /etc/e4c2/master-2027.key":                             "a placeholder configuration and system path; the README's rekey, with the same flags, runs",
	"e4 client --state display.state --broker mqtts://broker:8883 --tls-ca ca.pem --subscribe 'home/#' --json": "a placeholder TLS broker host and CA; the README's e4 client, over MQTT, runs",
}

// knownBroken lists the documented commands that fail because of a defect
// of the code, not of the example, with the defect: they run, and the test
// fails when one works again, so that it is removed from here.
var knownBroken = map[string]string{}

// background lists how the commands that keep running are checked: each
// is started, probed, then stopped with SIGINT (SIGTERM for a C2) and must
// exit 0. The key is a prefix of the command, as documented or after
// substitution.
var background = []struct {
	prefix string
	probe  string // "listen": C2's HTTP port; "output": a line containing match; "coap": a CoAP ping; "running": still running after a second
	match  string
}{
	{"e4 c2 serve", "listen", ""},
	{"bin/e4 c2 serve", "listen", ""},
	{"e4 dev", "output", "broker sees"},
	{"bin/e4 dev", "output", "broker sees"},
	{"e4 c2 events --follow", "running", ""},
	{"e4 broker coap --listen 127.0.0.1:5683", "coap", ""}, // answers a CoAP ping
	{"e4 broker coap", "running", ""},                      // over DTLS
	{"e4 client --state dev.state --name thermostat-42", "output", "e4 client: ready"},
	{"bin/e4 client --state fast.state", "output", "e4 client: ready"},
}

// preambles prepare the state a command documents an operation on, where
// another example changed it (each runs once, in the order of the help
// tree, against the same C2): the shell text runs before the command, its
// failures ignored.
var preambles = map[string]string{
	"e4 c2 client add thermostat-42 --key-out thermostat-42.key":                     "e4 c2 client remove thermostat-42",
	"e4 c2 client add --id 0123456789abcdef0123456789abcdef":                         "e4 c2 client remove 0123456789abcdef0123456789abcdef",
	"e4 c2 client add camera-7 --public-key-file camera-7.key.pub":                   "e4 c2 client remove camera-7",
	"e4 c2 client remove old-gateway":                                                "e4 c2 client add old-gateway",
	"e4 c2 member remove old-gateway plant/telemetry":                                "e4 c2 client add old-gateway; e4 c2 member add old-gateway plant/telemetry",
	"e4 c2 topic remove plant/old":                                                   "e4 c2 topic add plant/old",
	"e4 c2 token create dashboard --scope read":                                      "e4 c2 token revoke dashboard",
	"e4 c2 token revoke dashboard":                                                   "e4 c2 token create dashboard --scope read",
	"e4 c2 member check thermostat-42 plant/telemetry":                               "e4 c2 member add thermostat-42 plant/telemetry",
	"e4 c2 pubkey unlink camera-7 screen-1":                                          "e4 c2 pubkey link camera-7 screen-1",
	"e4 c2 member add-many plant/telemetry sensor-1 sensor-2 sensor-3":               "for s in sensor-1 sensor-2 sensor-3; do e4 c2 member remove $s plant/telemetry; done",
	"e4 c2 topic add plant/telemetry":                                                "e4 c2 topic remove plant/telemetry",
	"e4 c2 policy add firmware-weekly --exact fleet/firmware --every 1w --jitter 1h": "e4 c2 policy remove firmware-weekly",
	"e4 c2 policy add keys-age --kind client --all --max-age 90d":                    "e4 c2 policy remove keys-age",
	"e4 c2 policy remove forged":                                                     "e4 c2 policy add forged --filter 'fleet/#' --on-event anomaly:auth_failed --threshold 3 --window 1m",
}

// fixtures are the files some examples read without making them. Each is
// made, in this order, in a working directory whose commands mention the
// file and do not write it themselves.
var fixtures = []struct{ file, make string }{
	{"topic.key", "e4 keygen --out topic.key"},
	{"dev.key", "e4 keygen --out dev.key"},
	{"payload.bin", "printf 21.5 > payload.bin"},
	{"msg.bin", "echo -n hello | e4 protect --key $(cat topic.key) --topic sensors/temp > msg.bin"},
	{"msg.hex", "echo 68656c6c6f | e4 protect --key $(cat topic.key) --topic sensors/temp --hex > msg.hex"},
	{"signed.bin", "printf 21.5 | e4 protect --key $K --topic a --sign-key $PRIV --signer-id $ID --time 1764000000 > signed.bin"},
	{"c2data", "(E4_C2_GRPC_ADDR=127.0.0.1:0 E4_C2_HTTP_ADDR=127.0.0.1:0 e4 c2 serve --data-dir c2data & pid=$!; " +
		"until [ -f c2data/admin.token ]; do sleep 0.1; done; kill -TERM $pid; wait $pid)"},
	{"dev.state", "e4 keygen --out fx-dev.key && e4 keygen --out fx-topic.key && " +
		"e4 client set-topic-key --state dev.state --name thermostat-1 --key-file fx-dev.key --topic home/temp --topic-key-file fx-topic.key"},
	{"display.state", "e4 keygen --type ed25519 --out fx-display.key && e4 keygen --type c2 --out fx-c2.key && e4 keygen --out fx-topic2.key && " +
		"e4 client set-topic-key --state display.state --name display-1 --mode pk --key-file fx-display.key --c2-public-key-file fx-c2.key.pub --topic home/temp --topic-key-file fx-topic2.key"},
	{"message.bin", "echo -n 21.5 | e4 c2 message protect plant/telemetry > message.bin"},
	{"message.hex", "echo 32312e35 | e4 c2 message protect plant/telemetry --hex > message.hex"},
	{"camera-7.key.pub", "e4 keygen --type ed25519 --out camera-7.key"},
	{"camera-7-new.key.pub", "e4 keygen --type ed25519 --out camera-7-new.key"},
	{"thermostat.key.pub", "e4 keygen --type ed25519 --out thermostat.key"},
	{"broker.psk", "printf 00112233445566778899aabbccddeeff > broker.psk"},
	{"fleet.csv", "printf 'name\\nfleet-csv-1\\nfleet-csv-2\\n' > fleet.csv"},
	{"fleet.json", `printf '[{"name":"fleet-json-1"},{"name":"fleet-json-2"}]' > fleet.json`},
}

// pkWorldWords send a command to the public-key C2: what it names only
// exists there.
var pkWorldWords = []string{"camera-7", "screen-1", "legacy-sensor", "c2key", "e4 c2 pubkey"}

// splitComment splits a shell line at its comment: a # after white space,
// outside quotes.
func splitComment(line string) (command, comment string) {
	var quote rune
	prev := ' '
	for i, r := range line {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			}
		case r == '\'' || r == '"':
			quote = r
		case r == '#' && (prev == ' ' || prev == '\t'):
			return line[:i], strings.TrimSpace(line[i+1:])
		}
		prev = r
	}
	return line, ""
}

// shellLines returns the commands of a shell text: continuation lines
// joined, comments and blank lines removed. where names the source of the
// text's line i (0-based).
func shellLines(text string, where func(i int) string) []docLine {
	var out []docLine
	var pending strings.Builder
	start := -1
	for i, line := range strings.Split(text, "\n") {
		if start < 0 {
			start = i
		}
		trimmed := strings.TrimSpace(line)
		if cont, ok := strings.CutSuffix(trimmed, "\\"); ok {
			pending.WriteString(cont)
			continue
		}
		pending.WriteString(trimmed)
		cmd, comment := splitComment(pending.String())
		if cmd = strings.Join(strings.Fields(cmd), " "); cmd != "" {
			out = append(out, docLine{source: where(start), text: cmd, comment: comment})
		}
		pending.Reset()
		start = -1
	}
	return out
}

// readmeGroup returns the commands of the README's sh blocks, in order.
func readmeGroup(t *testing.T) docGroup {
	t.Helper()
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(raw), "\n")
	g := docGroup{name: "README.md"}
	for i := 0; i < len(lines); i++ {
		fence := strings.TrimSpace(lines[i])
		if fence != "```sh" && fence != "```bash" && fence != "```shell" {
			continue
		}
		first := i + 1
		end := first
		for end < len(lines) && strings.TrimSpace(lines[end]) != "```" {
			end++
		}
		g.lines = append(g.lines, shellLines(strings.Join(lines[first:end], "\n"), func(j int) string {
			return fmt.Sprintf("README.md:%d", first+j+1)
		})...)
		i = end
	}
	if len(g.lines) == 0 {
		t.Fatal("no shell commands found in README.md")
	}
	return g
}

// printsComment is a comment that says what a command prints.
var printsComment = regexp.MustCompile(`^prints (\S+)`)

// rootExampleLine matches a line of the examples in the root command's
// description: the command, then two spaces or more and what it does.
var rootExampleLine = regexp.MustCompile(`\s{2,}\S.*$`)

// helpGroups returns the examples of every command's help, one group per
// command, in the order of the command tree.
func helpGroups() []docGroup {
	root := newRootCommand()
	var groups []docGroup
	if _, examples, ok := strings.Cut(root.Long, "Examples:\n"); ok {
		g := docGroup{name: "e4 --help"}
		for _, line := range strings.Split(examples, "\n") {
			line = rootExampleLine.ReplaceAllString(strings.TrimSpace(line), "")
			g.lines = append(g.lines, shellLines(line, func(int) string { return "e4 --help" })...)
		}
		groups = append(groups, g)
	}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Example != "" {
			name := c.CommandPath() + " --help"
			groups = append(groups, docGroup{name: name, lines: shellLines(c.Example, func(int) string { return name })})
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	return groups
}

// docWorld is what the documented commands run against: Mosquitto, and a
// C2 in each mode, set up with the clients and topics the examples name.
type docWorld struct {
	t         *testing.T
	mosquitto *testbroker.Mosquitto
	sk, pk    *c2Server
	keyEnv    []string // K, PRIV, ID, PUB of the PK examples
	used      map[string]bool
	counts    map[string]int // of the documented commands, by what became of them
	subst     []substitution
}

// substitution replaces a value of the documentation that names the
// reader's environment by the test's.
type substitution struct {
	old, why string
	new      func(ws *workspace) string
}

func TestDocumentedCommands(t *testing.T) {
	w := newDocWorld(t)
	groups := append([]docGroup{readmeGroup(t)}, helpGroups()...)
	ran := 0
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) { ran++; w.runGroup(t, g) })
	}
	t.Logf("%d documented commands: %d run (%d of them in the background), %d not run, %d known broken",
		w.counts["all"], w.counts["run"], w.counts["background"], w.counts["notRun"], w.counts["knownBroken"])
	if ran < len(groups) {
		t.Logf("%d of %d groups ran (-run): the lists below are not checked for stale entries", ran, len(groups))
		return
	}
	for key := range notRun {
		if !w.used["notRun:"+key] {
			t.Errorf("notRun lists %q, which no README block or help example shows any more", key)
		}
	}
	for key := range knownBroken {
		if !w.used["knownBroken:"+key] {
			t.Errorf("knownBroken lists %q, which no README block or help example shows any more", key)
		}
	}
	for key := range preambles {
		if !w.used["preamble:"+key] {
			t.Errorf("preambles lists %q, which no README block or help example shows any more", key)
		}
	}
	for _, s := range w.subst {
		if !w.used["subst:"+s.old] {
			t.Errorf("the substitution of %q (%s) matches no documented command any more", s.old, s.why)
		}
	}
}

// newDocWorld starts Mosquitto and the two C2 servers, and adds what the
// examples name.
func newDocWorld(t *testing.T) *docWorld {
	m := testbroker.StartMosquitto(t, nil)
	w := &docWorld{t: t, mosquitto: m, used: make(map[string]bool), counts: make(map[string]int)}
	w.sk = startDocC2(t, m.URL(), "sk")
	w.pk = startDocC2(t, m.URL(), "pk")
	setup := t.TempDir()
	for _, cmd := range []string{
		"e4 c2 client add thermostat-42", "e4 c2 client add old-gateway",
		"e4 c2 topic add plant/telemetry", "e4 c2 topic add plant/old",
		"e4 c2 member add thermostat-42 plant/telemetry", "e4 c2 member add old-gateway plant/telemetry",
		"e4 c2 member add-many plant/telemetry sensor-1 sensor-2 sensor-3 || true", // the clients first
	} {
		w.mustShell(t, setup, w.sk.env, cmd)
	}
	for _, name := range []string{"sensor-1", "sensor-2", "sensor-3"} {
		w.mustShell(t, setup, w.sk.env, "e4 c2 client add "+name)
	}
	for _, name := range []string{"camera-7", "screen-1", "legacy-sensor"} {
		w.mustShell(t, setup, w.pk.env, fmt.Sprintf("e4 keygen --type ed25519 --out %[1]s.key && e4 c2 client add %[1]s --public-key-file %[1]s.key.pub", name))
	}
	w.mustShell(t, setup, w.pk.env, "e4 c2 topic add plant/telemetry && e4 c2 member add camera-7 plant/telemetry && e4 c2 member add screen-1 plant/telemetry")
	w.mustShell(t, setup, w.sk.env, "e4 c2 topic rotate plant/telemetry --wait")
	w.keyEnv = w.pkMessageKeys(t, setup)
	w.subst = []substitution{
		{"go run ./cmd/e4", "the binary TestMain built from ./cmd/e4", func(*workspace) string { return "e4" }},
		{" deploy/", "the repository's deploy folder", func(*workspace) string { return " " + repoFile(t, "deploy") + "/" }},
		{"mqtt://127.0.0.1:1883", "the Mosquitto of the test", func(ws *workspace) string { return ws.brokerURL }},
		{"mqtt://localhost:1883", "the Mosquitto of the test", func(ws *workspace) string { return ws.brokerURL }},
		{"https://127.0.0.1:8443", "the HTTP address of the C2 the README started", func(ws *workspace) string { return "https://" + ws.serveHTTP }},
		{"127.0.0.1:5683", "a free UDP port", func(*workspace) string { return fmt.Sprintf("127.0.0.1:%d", testbroker.FreePort(t, "udp")) }},
		{"127.0.0.1:5684", "a free UDP port", func(*workspace) string { return fmt.Sprintf("127.0.0.1:%d", testbroker.FreePort(t, "udp")) }},
		{"5f0c3e9a1b2d4c6e8f0a1b2c3d4e5f60", "the id of a command of the test's C2", func(*workspace) string { return w.firstCommandID() }},
		{"3f9a2c1d-120", "the id of an event of the test's C2", func(*workspace) string { return w.firstEventID() }},
	}
	return w
}

// startDocC2 runs an "e4 c2 serve" in the given mode over Mosquitto.
func startDocC2(t *testing.T, brokerURL, mode string) *c2Server {
	t.Helper()
	s := &c2Server{t: t, dir: t.TempDir(), brokerURL: brokerURL}
	s.grpc = fmt.Sprintf("127.0.0.1:%d", testbroker.FreePort(t, "tcp"))
	s.http = fmt.Sprintf("127.0.0.1:%d", testbroker.FreePort(t, "tcp"))
	data := filepath.Join(s.dir, "data")
	yaml := fmt.Sprintf("mode: %s\ndata_dir: %s\ngrpc:\n  addr: %s\nhttp:\n  addr: %s\nlog:\n  format: json\nc2:\n  allow_generated_key_pairs: true\nmonitor:\n  enabled: true\n",
		mode, data, s.grpc, s.http)
	if err := os.WriteFile(filepath.Join(s.dir, "c2.yaml"), []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	s.env = []string{"E4_C2_SERVER=" + s.grpc, "E4_C2_TOKEN_FILE=" + filepath.Join(data, "admin.token"),
		"E4_C2_CA_FILE=" + filepath.Join(data, "tls", "cert.pem")}
	s.start()
	return s
}

// pkMessageKeys returns the variables of the PK protect and unprotect
// examples: a topic key, a signer's Ed25519 key pair and its id.
func (w *docWorld) pkMessageKeys(t *testing.T, dir string) []string {
	w.mustShell(t, dir, nil, "e4 keygen --out k.key && e4 keygen --type ed25519 --out signer.key")
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	id := strings.TrimSpace(w.mustShell(t, dir, nil, "e4 id signer"))
	return []string{"K=" + read("k.key"), "PRIV=" + read("signer.key"), "PUB=" + read("signer.key.pub"), "ID=" + id}
}

// firstCommandID and firstEventID return ids the test's C2 knows.
func (w *docWorld) firstCommandID() string {
	out := w.mustShell(w.t, w.t.TempDir(), w.sk.env, "e4 c2 command list --json | sed -n 's/.*\"id\": *\"\\([0-9a-f]*\\)\".*/\\1/p' | head -1")
	return strings.TrimSpace(out)
}

func (w *docWorld) firstEventID() string {
	out := w.mustShell(w.t, w.t.TempDir(), w.sk.env, "e4 c2 events --json | sed -n 's/.*\"id\": *\"\\([^\"]*\\)\".*/\\1/p' | head -1")
	return strings.TrimSpace(out)
}

// shellEnv is the environment of every documented command: e4 (and
// bin/e4 in the working directory) is the binary under test.
func shellEnv(extra ...[]string) []string {
	env := append(cleanEnv(), "PATH="+filepath.Dir(e4Binary)+string(os.PathListSeparator)+os.Getenv("PATH"))
	for _, e := range extra {
		env = append(env, e...)
	}
	return env
}

// mustShell runs a shell command that must succeed and returns its
// standard output.
func (w *docWorld) mustShell(t *testing.T, dir string, env []string, script string) string {
	t.Helper()
	out, errOut, err := runShell(dir, shellEnv(env, w.keyEnv), script, time.Minute)
	if err != nil {
		t.Fatalf("%s: %v\n%s%s", script, err, out, errOut)
	}
	return out
}

// runShell runs script with bash in dir.
func runShell(dir string, env []string, script string, timeout time.Duration) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-o", "pipefail", "-c", script)
	cmd.Dir, cmd.Env = dir, env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.Stdin = strings.NewReader("")
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// workspace is the working directory of one group, with the processes it
// started in the background.
type workspace struct {
	dir       string
	readme    bool   // the README's: it runs as a reader runs it, from nothing
	brokerURL string // the Mosquitto its commands use
	exported  []string
	serve     *bgProcess // the C2 this group started, if any
	serveText string
	serveGRPC string
	serveHTTP string
	others    []*bgProcess
}

// bgProcess is a documented command running in the background.
type bgProcess struct {
	text    string
	cmd     *exec.Cmd
	output  *testutil.Buffer
	done    chan error
	started time.Time
}

// runGroup runs the commands of a group in a new working directory.
func (w *docWorld) runGroup(t *testing.T, g docGroup) {
	ws := &workspace{dir: t.TempDir(), readme: g.name == "README.md", brokerURL: w.mosquitto.URL()}
	if ws.readme {
		// A Mosquitto of its own: its devices and C2 do not meet the
		// test's C2, which knows clients of the same names.
		ws.brokerURL = testbroker.StartMosquitto(t, nil).URL()
	}
	if err := os.Mkdir(filepath.Join(ws.dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(e4Binary, filepath.Join(ws.dir, "bin", "e4")); err != nil {
		t.Fatal(err)
	}
	defer ws.stopAll(t)
	if !ws.readme { // the README runs from an empty directory, as a reader's
		w.makeFixtures(t, ws, g)
	}
	for _, l := range g.lines {
		w.counts["all"]++
		if reason, ok := notRun[l.text]; ok {
			w.counts["notRun"]++
			w.used["notRun:"+l.text] = true
			t.Logf("%s: not run: %s: %s", l.source, l.text, reason)
			continue
		}
		err := w.runLine(t, ws, l)
		if reason, broken := knownBroken[l.text]; broken {
			w.counts["knownBroken"]++
			w.used["knownBroken:"+l.text] = true
			if err == nil {
				t.Errorf("%s: %s works now: remove it from knownBroken", l.source, l.text)
			} else {
				t.Logf("%s: fails, as known (%s): %v", l.source, reason, err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		w.counts["run"]++
	}
}

// makeFixtures makes the fixture files the group reads but does not write.
func (w *docWorld) makeFixtures(t *testing.T, ws *workspace, g docGroup) {
	var all strings.Builder
	for _, l := range g.lines {
		all.WriteString(l.text + "\n")
	}
	text := all.String()
	for _, f := range fixtures {
		writes := strings.Contains(text, "> "+f.file) || strings.Contains(text, "--out "+f.file) ||
			strings.Contains(text, "--out "+strings.TrimSuffix(f.file, ".pub")) ||
			strings.Contains(text, "--state "+f.file+" --name") || // an e4 client's first use
			strings.Contains(text, "serve --data-dir ./"+f.file)
		if strings.Contains(text, f.file) && !writes {
			w.mustShell(t, ws.dir, w.sk.env, f.make)
		}
	}
}

// runLine runs one documented command.
func (w *docWorld) runLine(t *testing.T, ws *workspace, l docLine) error {
	t.Helper()
	text := l.text
	for _, s := range w.subst {
		if strings.Contains(text, s.old) {
			w.used["subst:"+s.old] = true
			text = strings.ReplaceAll(text, s.old, s.new(ws))
		}
	}
	env := w.envFor(ws, l.text)
	if pre, ok := preambles[l.text]; ok && !ws.readme {
		w.used["preamble:"+l.text] = true
		out, errOut, err := runShell(ws.dir, env, pre, time.Minute)
		t.Logf("%s: preamble %q: %v\n%s%s", l.source, pre, err, out, errOut)
	}
	if vars, ok := strings.CutPrefix(text, "export "); ok {
		ws.exported = append(ws.exported, strings.Fields(vars)...)
		return nil
	}
	for _, b := range background {
		if strings.HasPrefix(text, b.prefix) || strings.HasPrefix(l.text, b.prefix) {
			return w.startBackground(t, ws, l, text, b.probe, b.match)
		}
	}
	if strings.Contains(text, "e4 c2 rekey") && ws.serve != nil {
		ws.stopServe(t) // a rekey runs with every C2 of the database stopped
	}
	out, errOut, err := runShell(ws.dir, env, text, 2*time.Minute)
	if err != nil {
		return fmt.Errorf("%s: %s\n(run as: %s)\nfailed: %v\nstdout:\n%s\nstderr:\n%s", l.source, l.text, text, err, out, errOut)
	}
	if m := printsComment.FindStringSubmatch(l.comment); m != nil && strings.TrimSpace(out) != m[1] {
		return fmt.Errorf("%s: %s\nprinted %q, but the documentation says it prints %q", l.source, l.text, out, m[1])
	}
	if strings.HasPrefix(text, "mv c2data/master.key.new c2data/master.key") && ws.serveText != "" && ws.serve == nil {
		return w.startBackground(t, ws, l, ws.serveText, "listen", "") // "then start e4 c2 serve again"
	}
	return nil
}

// envFor returns the environment of a command: the C2 its group started,
// or else the test's C2 of the mode the command needs.
func (w *docWorld) envFor(ws *workspace, text string) []string {
	world := w.sk.env
	for _, word := range pkWorldWords {
		if strings.Contains(text, word) {
			world = w.pk.env
		}
	}
	env := shellEnv(world, w.keyEnv)
	if ws.serve != nil {
		env = append(env, "E4_C2_SERVER="+ws.serveGRPC)
	}
	return append(env, ws.exported...)
}

// startBackground starts a command that keeps running and probes it.
func (w *docWorld) startBackground(t *testing.T, ws *workspace, l docLine, text, probe, match string) error {
	t.Helper()
	env := w.envFor(ws, l.text)
	isServe := strings.Contains(text, "c2 serve")
	var grpcAddr, httpAddr string
	if isServe {
		if ws.serve != nil {
			ws.stopServe(t) // one C2 per working directory at a time
		}
		grpcAddr = fmt.Sprintf("127.0.0.1:%d", testbroker.FreePort(t, "tcp"))
		httpAddr = fmt.Sprintf("127.0.0.1:%d", testbroker.FreePort(t, "tcp"))
		env = append(env, "E4_C2_GRPC_ADDR="+grpcAddr, "E4_C2_HTTP_ADDR="+httpAddr)
	}
	if strings.HasPrefix(text, "e4 dev") || strings.HasPrefix(text, "bin/e4 dev") {
		// Free ports instead of 1883, 9443 and 8443, which another test or
		// an e4 dev of the machine may hold (e4 dev would pick others).
		text += fmt.Sprintf(" --grpc-addr 127.0.0.1:%d --http-addr 127.0.0.1:%d --broker-addr 127.0.0.1:%d",
			testbroker.FreePort(t, "tcp"), testbroker.FreePort(t, "tcp"), testbroker.FreePort(t, "tcp"))
	}
	w.counts["background"]++
	p := &bgProcess{text: text, output: &testutil.Buffer{}, done: make(chan error, 1), started: time.Now()}
	p.cmd = exec.Command("bash", "-c", "exec "+text)
	p.cmd.Dir, p.cmd.Env = ws.dir, env
	p.cmd.Stdout, p.cmd.Stderr = p.output, p.output
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	if isServe {
		ws.serve, ws.serveText, ws.serveGRPC, ws.serveHTTP = p, text, grpcAddr, httpAddr
	} else {
		ws.others = append(ws.others, p)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 45*time.Second)
	defer cancel()
	var err error
	switch probe {
	case "listen":
		err = testbroker.WaitTCP(ctx, httpAddr)
	case "output":
		err = waitFor(ctx, p, func() bool { return strings.Contains(p.output.String(), match) })
	case "coap":
		_, addr, _ := strings.Cut(text, "--listen ")
		addr, _, _ = strings.Cut(addr, " ")
		err = testbroker.WaitCoAP(ctx, addr)
	case "running":
		timer, stop := context.WithTimeout(ctx, time.Second)
		err = waitFor(timer, p, func() bool { return false })
		stop()
		if err == context.DeadlineExceeded {
			err = nil // still running, as it should
		}
	}
	if err != nil {
		_ = p.cmd.Process.Kill() // if still running; it is not the group's any more
		<-p.done
		if isServe {
			ws.serve = nil
		} else {
			ws.others = ws.others[:len(ws.others)-1]
		}
		return fmt.Errorf("%s: %s\n(run as: %s)\nprobe %s: %v\noutput:\n%s", l.source, l.text, text, probe, err, p.output.String())
	}
	return nil
}

// waitFor polls cond until it holds, the process exits, or ctx ends.
func waitFor(ctx context.Context, p *bgProcess, cond func() bool) error {
	for !cond() {
		select {
		case err := <-p.done:
			p.done <- err
			return fmt.Errorf("exited early: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// stop ends a background process with sig; it must exit 0.
func (p *bgProcess) stop(t *testing.T, sig syscall.Signal) {
	t.Helper()
	select {
	case err := <-p.done:
		t.Errorf("%s exited by itself: %v\n%s", p.text, err, p.output.String())
		return
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("%s: exit after %v: %v\n%s", p.text, sig, err, p.output.String())
		}
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Signal(syscall.SIGQUIT) // a Go program prints its goroutines
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			_ = p.cmd.Process.Kill()
		}
		t.Errorf("%s did not stop within 30 s of %v\n%s", p.text, sig, p.output.String())
	}
}

// stopServe stops the group's C2, and first what was started after it
// (an event stream ends with an error when its C2 goes).
func (ws *workspace) stopServe(t *testing.T) {
	var kept []*bgProcess
	for _, p := range slices.Backward(ws.others) {
		if p.started.After(ws.serve.started) {
			p.stop(t, syscall.SIGINT)
		} else {
			kept = append(kept, p)
		}
	}
	slices.Reverse(kept)
	ws.others = kept
	ws.serve.stop(t, syscall.SIGTERM)
	ws.serve = nil
}

func (ws *workspace) stopAll(t *testing.T) {
	for _, p := range slices.Backward(ws.others) {
		p.stop(t, syscall.SIGINT)
	}
	ws.others = nil
	if ws.serve != nil {
		ws.stopServe(t)
	}
}

// repoFile is the absolute path of name in the repository (the tests run
// in cmd/e4).
func repoFile(t *testing.T, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "..", name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

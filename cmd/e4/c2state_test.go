package main

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/internal/testdevice"
)

// runAckingDevice runs, in the test process, a device that applies C2's
// commands and acknowledges each on e4/<id>/ack, as e4kit devices do by
// default. It is subscribed when the function returns.
func runAckingDevice(t *testing.T, brokerURL, name, keyFile string) {
	t.Helper()
	keyHex, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(keyHex)))
	if err != nil {
		t.Fatal(err)
	}
	testdevice.StartAcking(t, brokerURL, name, key)
}

// eventFollower is "e4 c2 events --follow --json" running against s.
type eventFollower struct {
	t     *testing.T
	lines *bufio.Scanner
}

func (s *c2Server) followEvents(kinds ...string) *eventFollower {
	s.t.Helper()
	cmd := exec.Command(e4Binary, "c2", "events", "--follow", "--json", "--kind", strings.Join(kinds, ","))
	cmd.Env = append(cleanEnv(), s.env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		s.t.Fatal(err)
	}
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		go func() { _, _ = io.Copy(io.Discard, stdout) }()
		_ = cmd.Wait()
	})
	// The follower says so once its stream is open.
	if line, err := bufio.NewReader(stderr).ReadString('\n'); err != nil || !strings.Contains(line, "following events") {
		s.t.Fatalf("events --follow: %q %v", line, err)
	}
	return &eventFollower{t: s.t, lines: bufio.NewScanner(stdout)}
}

// next returns the next event of kind, skipping others.
func (f *eventFollower) next(kind string) map[string]any {
	f.t.Helper()
	for f.lines.Scan() {
		var ev map[string]any
		if err := json.Unmarshal(f.lines.Bytes(), &ev); err != nil {
			f.t.Fatalf("event line %q: %v", f.lines.Text(), err)
		}
		if ev["kind"] == kind {
			return ev
		}
	}
	f.t.Fatalf("the event stream ended before a %s event: %v", kind, f.lines.Err())
	return nil
}

// row finds the line of a table that starts with the given cells and
// returns its cells.
func row(t *testing.T, table string, first ...string) []string {
	t.Helper()
	for _, line := range strings.Split(table, "\n") {
		cells := regexp.MustCompile(`\s{2,}`).Split(strings.TrimSpace(line), -1)
		if len(cells) >= len(first) && strings.Join(cells[:len(first)], "|") == strings.Join(first, "|") {
			return cells
		}
	}
	t.Fatalf("no row %q in:\n%s", first, table)
	return nil
}

// TestC2StateCLI: the device-state commands against a running C2, with an
// acknowledging device and two reference devices on one topic; the
// dispatcher settings come from the environment (behind_after reports the
// rotation).
func TestC2StateCLI(t *testing.T) {
	s := startC2Serve(t, "E4_C2_C2_REPAIR_INTERVAL=50ms", "E4_C2_C2_BEHIND_AFTER=1ms")
	dir := t.TempDir()
	readerFile := filepath.Join(dir, "reader.token")
	s.ok("token", "create", "reader", "--scope", "read", "--out", readerFile)
	asReader := []string{"E4_C2_TOKEN_FILE=" + readerFile}

	keyFile := filepath.Join(dir, "thermostat-42.key")
	s.ok("client", "add", "thermostat-42", "--key-out", keyFile)
	s.ok("client", "add", "reference-1")
	s.ok("client", "add", "reference-2")
	runAckingDevice(t, s.brokerURL, "thermostat-42", keyFile)
	events := s.followEvents("command_acked", "devices_behind")
	s.ok("topic", "add", "plant/telemetry")
	s.ok("member", "add-many", "plant/telemetry", "thermostat-42", "reference-1", "reference-2")
	if ev := events.next("command_acked"); ev["topic"] != "plant/telemetry" {
		t.Fatalf("acknowledgement event: %v", ev)
	}

	out := s.c2("", asReader, "topic", "state", "plant/telemetry")
	lines := strings.Split(out.stdout, "\n")
	if out.code != 0 || lines[0] != "version 1: 1 of 3 members acknowledged; 2 behind" ||
		lines[1] != "2 of those behind do not acknowledge: C2 cannot know what they hold" {
		t.Fatalf("topic state: %+v", out)
	}
	behind := s.ok("topic", "state", "plant/telemetry", "--behind")
	ref1, ref2 := e4.IDFromName("reference-1").String(), e4.IDFromName("reference-2").String()
	if r := row(t, behind, ref1); strings.Join(r, "|") != ref1+"|-|no|never" {
		t.Fatalf("reference-1 behind: %q", r)
	}
	row(t, behind, ref2)
	if strings.Contains(behind, e4.IDFromName("thermostat-42").String()) {
		t.Fatalf("the acknowledging device is listed behind:\n%s", behind)
	}
	doc := s.jsonOf("topic", "state", "plant/telemetry", "--behind", "--limit", "1", "--all")
	state, _ := doc["state"].(map[string]any)
	list, _ := doc["behind"].(map[string]any)
	if clients, _ := list["clients"].([]any); len(clients) != 2 || list["total"] != float64(2) || state["summary"] != lines[0] {
		t.Fatalf("topic state --behind --all --json: %v", doc)
	}

	client := s.ok("client", "state", "thermostat-42")
	if r := row(t, client, "acknowledges"); r[1] != "yes (learned)" {
		t.Fatalf("acknowledges row: %q\n%s", r, client)
	}
	if r := row(t, client, "plant/telemetry"); strings.Join(r[:4], "|") != "plant/telemetry|1|1|holds" {
		t.Fatalf("topic row: %q", r)
	}
	for _, want := range [][]string{{"key in use", "current"}, {"stalled", "no"}, {"topics", "1, 0 behind"}} {
		if r := row(t, client, want[0]); r[1] != want[1] {
			t.Fatalf("%s row: %q, want %q", want[0], r, want[1])
		}
	}
	ref := s.ok("client", "state", "reference-1")
	if row(t, ref, "last seen")[1] != "never" || row(t, ref, "plant/telemetry")[3] != "unknown" ||
		row(t, ref, "acknowledges")[1] != "no (not heard from yet; auto)" {
		t.Fatalf("client state reference-1:\n%s", ref)
	}
	if st := s.jsonOf("client", "state", ref1); st["name"] != "reference-1" || st["topics_behind"] != float64(1) {
		t.Fatalf("client state --json: %v", st)
	}

	s.fails(asReader, "permission denied", "client", "acknowledges", "reference-1", "no")
	s.fails(nil, "invalid argument", "client", "acknowledges", "reference-1", "sometimes")
	s.fails(nil, "not found", "client", "state", "nobody")
	s.fails(nil, "not found", "topic", "state", "no/such/topic")
	set := s.ok("client", "acknowledges", "reference-1", "no")
	if r := row(t, set, ref1); strings.Join(r, "|") != ref1+"|reference-1|no|no" {
		t.Fatalf("client acknowledges: %q", r)
	}
	s.ok("client", "acknowledges", "reference-2", "yes")
	fleet := s.c2("", asReader, "fleet")
	for _, want := range [][]string{{"clients", "3"}, {"acknowledging", "2"}, {"not acknowledging", "1"},
		{"never heard from", "0"}, {"clients behind", "2"}, {"memberships behind", "2"},
		{"sync requests refused", "0"}, {"sync requests dropped", "0"}, {"sync requests waiting", "0"}} {
		if r := row(t, fleet.stdout, want[0]); r[1] != want[1] {
			t.Fatalf("fleet %s: %q\n%s", want[0], r, fleet.stdout)
		}
	}
	if f := s.jsonOf("state"); f["not_acknowledging"] != float64(1) {
		t.Fatalf("state --json (alias of fleet): %v", f)
	}

	s.ok("topic", "rotate", "plant/telemetry")
	if ev := events.next("devices_behind"); ev["topic"] != "plant/telemetry" || !strings.HasPrefix(ev["detail"].(string), "version 2: ") {
		t.Fatalf("devices_behind event: %v", ev)
	}
}

// TestC2StateExamples runs every example of the help of the new commands
// as written, against a C2 that has the client and topic they name.
func TestC2StateExamples(t *testing.T) {
	s := startC2Serve(t)
	s.ok("client", "add", "thermostat-42")
	s.ok("topic", "add", "plant/telemetry")
	s.ok("member", "add", "thermostat-42", "plant/telemetry")
	ran := 0
	for _, path := range [][]string{{"client", "state"}, {"client", "acknowledges"}, {"topic", "state"}, {"fleet"}} {
		help := mustSucceed(t, e4Run(t, "", append(append([]string{"c2"}, path...), "--help")...))
		_, examples, ok := strings.Cut(help, "Examples:\n")
		if !ok {
			t.Fatalf("e4 c2 %s --help has no examples:\n%s", strings.Join(path, " "), help)
		}
		examples, _, _ = strings.Cut(examples, "\n\n")
		for _, line := range strings.Split(examples, "\n") {
			args, ok := strings.CutPrefix(strings.TrimSpace(line), "e4 c2 ")
			if !ok {
				t.Fatalf("example %q does not start with e4 c2", line)
			}
			s.ok(strings.Fields(args)...)
			ran++
		}
	}
	if ran < 8 {
		t.Fatalf("ran %d examples", ran)
	}
	if out := e4Run(t, "", "__complete", "c2", "client", "acknowledges", "thermostat-42", "").stdout; !strings.Contains(out, "auto\n") {
		t.Fatalf("acknowledges completion:\n%s", out)
	}
	if out := e4Run(t, "", "__complete", "c2", "events", "--kind", "").stdout; !strings.Contains(out, "topic_converged\n") {
		t.Fatalf("event kind completion:\n%s", out)
	}
	s.ok("topic", "add", "plant/alarms")
	s.ok("member", "add", "thermostat-42", "plant/alarms")
	st := s.jsonOf("client", "state", "thermostat-42", "--limit", "1", "--all")
	if topics, _ := st["topic_states"].([]any); len(topics) != 2 {
		t.Fatalf("client state --limit 1 --all: %v", st)
	}
	st = s.jsonOf("client", "state", "thermostat-42", "--limit", "1", "--after", "plant/alarms")
	if topics, _ := st["topic_states"].([]any); len(topics) != 1 || topics[0].(map[string]any)["topic"] != "plant/telemetry" {
		t.Fatalf("client state --after plant/alarms: %v", st)
	}
}

// TestServeDeviceStateSettings: the dispatcher settings of "e4 c2 serve"
// come from YAML, then the environment, then flags, and reach
// c2.DispatchConfig.
func TestServeDeviceStateSettings(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c2.yaml")
	yaml := `
c2:
  await_ack: 2m
  resend_every: 6h
  behind_after: 30m
  client_key_grace: 48h
  catch_up:
    sync_rate: 10
    sync_queue: 500
`
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"E4_C2_C2_STALL_AFTER=3", "E4_C2_C2_CATCH_UP_COMMAND_RATE=250", "E4_C2_C2_BEHIND_AFTER=20m"}
	cfg, err := loadServeConfig(path, env)
	if err != nil {
		t.Fatal(err)
	}
	cmd := &cobra.Command{}
	var flags stateFlags
	flags.register(cmd)
	if err := cmd.Flags().Parse([]string{"--resend-every", "1h", "--catch-up-rate", "20"}); err != nil {
		t.Fatal(err)
	}
	flags.apply(cmd, cfg)
	d := cfg.dispatchConfig()
	switch {
	case d.AwaitAck != 2*time.Minute, d.ResendEvery != time.Hour, d.BehindAfter != 20*time.Minute, d.ClientKeyGrace != 48*time.Hour:
		t.Fatalf("durations: %+v", d)
	case d.StallAfter != 3, d.CatchUp.SyncRate != 20, d.CatchUp.SyncQueue != 500, d.CatchUp.CommandRate != 250:
		t.Fatalf("counts and rates: %+v", d)
	case d.RepairInterval != 0, d.CommandLead != 0, d.CatchUp.SyncBurst != 0:
		t.Fatalf("settings not given are not zero (the c2 defaults): %+v", d)
	}
	if _, err := loadServeConfig("", []string{"E4_C2_C2_RESEND_EVERY=often"}); err == nil || !strings.Contains(err.Error(), "E4_C2_C2_RESEND_EVERY") {
		t.Fatalf("bad duration: %v", err)
	}
}

package main

import (
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/e4-iot/e4kit/e4"
)

// fastVectors is the part of e4/testdata/fast-vectors.json the CLI tests
// use (hex strings as in the file).
type fastVectors struct {
	Hashes []struct {
		Input     string `json:"input"`
		TopicHash string `json:"topic_hash"`
		ID        string `json:"id_from_name"`
	} `json:"hashes"`
	SKMessages []struct {
		Topic, Key, Plaintext, Protected string
		Timestamp                        int64
	} `json:"sk_messages"`
	PKMessages []struct {
		Topic      string `json:"topic"`
		TopicKey   string `json:"topic_key"`
		SenderSeed string `json:"sender_ed25519_seed"`
		SenderID   string `json:"sender_id"`
		Timestamp  int64  `json:"timestamp"`
		Plaintext  string `json:"plaintext"`
		Protected  string `json:"protected"`
	} `json:"pk_messages"`
}

func loadFastVectors(t *testing.T) *fastVectors {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "e4", "testdata", "fast-vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v fastVectors
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return &v
}

// TestSuiteIDAndTopicHash: e4 id and e4 topichash with --suite fast give
// the pinned fast values; an unknown suite is refused by name.
func TestSuiteIDAndTopicHash(t *testing.T) {
	v := loadFastVectors(t)
	for _, h := range v.Hashes[1:] { // [0] is the empty string, not a usable argument
		if got := mustSucceed(t, e4Run(t, "", "topichash", "--suite", "fast", h.Input)); got != h.TopicHash+"\n" {
			t.Errorf("topichash --suite fast %q = %q, want %s", h.Input, got, h.TopicHash)
		}
		if got := mustSucceed(t, e4Run(t, "", "id", "--suite", "fast", h.Input)); got != h.ID+"\n" {
			t.Errorf("id --suite fast %q = %q, want %s", h.Input, got, h.ID)
		}
	}
	for _, args := range [][]string{{"id", "x"}, {"dev"}, {"client", "info", "--state", "x"}, {"protect", "--key", "00", "--topic", "t"}} {
		mustFail(t, e4Run(t, "", append(args, "--suite", "turbo")...), `e4: --suite: e4: unknown suite "turbo" (known: v1, fast)`)
	}
}

// TestSuiteProtectUnprotect: protect and unprotect --suite fast reproduce
// the pinned fast messages, SK and PK; unprotect under the default suite
// refuses them and says which suite they were protected under.
func TestSuiteProtectUnprotect(t *testing.T) {
	v := loadFastVectors(t)
	for _, m := range v.SKMessages {
		ts := strconv.FormatInt(m.Timestamp, 10)
		got := mustSucceed(t, e4Run(t, m.Plaintext, "protect", "--suite", "fast", "--key", m.Key, "--topic", m.Topic, "--time", ts, "--hex"))
		if got != m.Protected+"\n" {
			t.Errorf("protect --suite fast: %q, want %s", got, m.Protected)
		}
		plain := mustSucceed(t, e4Run(t, m.Protected, "unprotect", "--suite", "fast", "--key", m.Key, "--topic", m.Topic, "--now", ts, "--hex"))
		if plain != m.Plaintext+"\n" {
			t.Errorf("unprotect --suite fast: %q, want %s", plain, m.Plaintext)
		}
		mustFail(t, e4Run(t, m.Protected, "unprotect", "--key", m.Key, "--topic", m.Topic, "--now", ts, "--hex"),
			`e4: message authentication failed: e4: message protected under another suite: the message was protected under suite "fast", not "v1": run with --suite fast`)
	}
	for _, m := range v.PKMessages {
		ts := strconv.FormatInt(m.Timestamp, 10)
		seed, _ := hex.DecodeString(m.SenderSeed)
		priv := ed25519.NewKeyFromSeed(seed)
		got := mustSucceed(t, e4Run(t, m.Plaintext, "protect", "--suite", "fast", "--key", m.TopicKey, "--topic", m.Topic,
			"--sign-key", hex.EncodeToString(priv), "--signer-id", m.SenderID, "--time", ts, "--hex"))
		if got != m.Protected+"\n" {
			t.Errorf("protect --suite fast (PK): %q, want %s", got, m.Protected)
		}
		signer := m.SenderID + "=" + hex.EncodeToString(priv.Public().(ed25519.PublicKey))
		plain := mustSucceed(t, e4Run(t, m.Protected, "unprotect", "--suite", "fast", "--key", m.TopicKey, "--topic", m.Topic,
			"--signer", signer, "--now", ts, "--hex"))
		if plain != m.Plaintext+"\n" {
			t.Errorf("unprotect --suite fast (PK): %q, want %s", plain, m.Plaintext)
		}
	}
	// A forgery under the default suite names the suite it expected.
	m := v.SKMessages[1]
	forged := []byte(m.Protected)
	forged[len(forged)-1] = "10"[(forged[len(forged)-1]-'0')%2] // another hex digit
	mustFail(t, e4Run(t, string(forged), "unprotect", "--suite", "fast", "--key", m.Key, "--topic", m.Topic, "--now", strconv.FormatInt(m.Timestamp, 10), "--hex"),
		`e4: message authentication failed (wrong key, altered, or not protected under suite "fast" as this side expects)`)
}

// TestFastC2AndClients: "e4 c2 serve" with the suite from its environment
// (E4_C2_SUITE=fast) keys an "e4 client --suite fast" device; a default
// device under it refuses the commands, naming both suites with
// --diagnose-suite; the client's state keeps its suite; and C2 refuses to
// start again on its database with the default suite.
func TestFastC2AndClients(t *testing.T) {
	s := startC2Serve(t, "E4_C2_SUITE=fast")
	dir := t.TempDir()
	fastKey, v1Key := filepath.Join(dir, "fast.key"), filepath.Join(dir, "v1.key")
	s.ok("client", "add", "fast-dev", "--key-out", fastKey)
	s.ok("client", "add", "v1-dev", "--key-out", v1Key)
	fastState := filepath.Join(dir, "fast.state")
	fast := startClient(t, "fast-dev", "--state", fastState, "--name", "fast-dev", "--key-file", fastKey, "--suite", "fast",
		"--broker", s.brokerURL)
	fast.waitStderr("suite fast")
	// The default device is given the id C2 registered (the fast id of
	// its name), as a provisioning tool would.
	v1 := startClient(t, "v1-dev", "--state", filepath.Join(dir, "v1.state"), "--id", e4.Fast.IDFromName("v1-dev").String(),
		"--key-file", v1Key, "--diagnose-suite", "--broker", s.brokerURL)
	s.ok("topic", "add", "plant/line")
	s.ok("member", "add", "fast-dev", "plant/line")
	s.ok("member", "add", "v1-dev", "plant/line")
	fast.waitStderr("e4 client: applied command SetTopicKey")
	v1.waitStderr(`e4 client: refused a command on the control topic: e4: message authentication failed: e4: message protected under another suite: it authenticates under suite "fast", this client runs suite "v1"`)
	fast.stop()
	v1.stop()

	info := mustSucceed(t, e4Run(t, "", "client", "info", "--state", fastState))
	if !strings.Contains(info, "suite:         fast\n") {
		t.Errorf("client info of the fast state:\n%s", info)
	}
	r := e4Run(t, "", "client", "info", "--state", fastState, "--suite", "v1")
	if r.code == 0 || !strings.Contains(r.stderr, `the store holds a client of suite "fast", this one runs suite "v1"`) {
		t.Errorf("client info --suite v1 on a fast state: %+v", r)
	}

	s.stop()
	if !strings.Contains(s.output.String(), `"msg":"C2 database open","mode":"sk","suite":"fast"`) {
		t.Errorf("C2's log does not say it runs suite fast:\n%s", s.output)
	}
	again := exec.Command(e4Binary, "c2", "serve", "--config", filepath.Join(s.dir, "c2.yaml"), "--transport", "none")
	again.Env = cleanEnv()
	out, err := again.CombinedOutput()
	if err == nil || !strings.Contains(string(out), `the database was created with suite "fast", not "v1"`) {
		t.Fatalf("restart with the default suite: %v\n%s", err, out)
	}
}

package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// These tests build the e4 binary once and run it end to end.

var e4Binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "e4-cli-test")
	if err != nil {
		panic(err)
	}
	e4Binary = filepath.Join(dir, "e4")
	if out, err := exec.Command("go", "build", "-o", e4Binary, ".").CombinedOutput(); err != nil {
		panic("building e4: " + err.Error() + "\n" + string(out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	stdout, stderr string
	code           int
}

func e4Run(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	cmd := exec.Command(e4Binary, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{out.String(), errOut.String(), code}
}

func mustSucceed(t *testing.T, r result) string {
	t.Helper()
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	return r.stdout
}

// mustFail checks a non-zero exit with exactly one stderr line.
func mustFail(t *testing.T, r result, wantLine string) {
	t.Helper()
	if r.code == 0 {
		t.Fatalf("succeeded (stdout %q), want failure %q", r.stdout, wantLine)
	}
	if r.stderr != wantLine+"\n" {
		t.Fatalf("stderr %q, want %q", r.stderr, wantLine+"\n")
	}
}

type vectors struct {
	SKMessages []struct {
		Key, Topic, Plaintext, Protected string
		Timestamp                        int64
	} `json:"sk_messages"`
	PKMessages []struct {
		SignerID      string `json:"signer_id"`
		SignerPrivate string `json:"signer_private_key"`
		SignerPublic  string `json:"signer_public_key"`
		TopicKey      string `json:"topic_key"`
		Topic         string
		Plaintext     string
		Protected     string
		Timestamp     int64
	} `json:"pk_messages"`
	TopicHash []struct{ Topic, Hash string } `json:"topic_hash"`
	IDs       []struct{ Alias, ID string }   `json:"id_from_alias"`
}

func loadVectors(t *testing.T) *vectors {
	b, err := os.ReadFile("../../e4/testdata/e4-vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v vectors
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return &v
}

func TestIDAndTopicHash(t *testing.T) {
	v := loadVectors(t)
	for _, h := range v.TopicHash[1:] { // [0] is the empty topic, not a usable argument
		if got := mustSucceed(t, e4Run(t, "", "topichash", h.Topic)); got != h.Hash+"\n" {
			t.Errorf("topichash %q = %q, want %s", h.Topic, got, h.Hash)
		}
	}
	for _, id := range v.IDs[1:] {
		if got := mustSucceed(t, e4Run(t, "", "id", id.Alias)); got != id.ID+"\n" {
			t.Errorf("id %q = %q, want %s", id.Alias, got, id.ID)
		}
	}
}

func TestProtectUnprotectSK(t *testing.T) {
	v := loadVectors(t)
	for _, m := range v.SKMessages {
		ts := strconv.FormatInt(m.Timestamp, 10)
		got := mustSucceed(t, e4Run(t, m.Plaintext, "protect", "--key", m.Key, "--topic", m.Topic, "--time", ts, "--hex"))
		if got != m.Protected+"\n" {
			t.Errorf("protect: %q, want %s", got, m.Protected)
		}
		plain := mustSucceed(t, e4Run(t, spaced(m.Protected), "unprotect", "--key", m.Key, "--topic", m.Topic, "--now", ts, "--hex"))
		if plain != m.Plaintext+"\n" {
			t.Errorf("unprotect: %q, want %s", plain, m.Plaintext)
		}
	}
	// Raw bytes on stdin and stdout.
	m := v.SKMessages[5]
	raw, _ := hex.DecodeString(m.Plaintext)
	wire := mustSucceed(t, e4Run(t, string(raw), "protect", "--key", m.Key, "--topic", m.Topic, "--time", strconv.FormatInt(m.Timestamp, 10)))
	if hex.EncodeToString([]byte(wire)) != m.Protected {
		t.Errorf("raw protect: %x", wire)
	}
}

// spaced inserts whitespace, which --hex input must ignore.
func spaced(h string) string {
	var b strings.Builder
	for i := 0; i < len(h); i += 8 {
		b.WriteString(h[i:min(i+8, len(h))])
		b.WriteString(" \n\t")
	}
	return b.String()
}

func TestProtectUnprotectPK(t *testing.T) {
	v := loadVectors(t)
	for _, m := range v.PKMessages {
		ts := strconv.FormatInt(m.Timestamp, 10)
		got := mustSucceed(t, e4Run(t, m.Plaintext, "protect", "--key", m.TopicKey, "--topic", m.Topic,
			"--sign-key", m.SignerPrivate, "--signer-id", m.SignerID, "--time", ts, "--hex"))
		if got != m.Protected+"\n" {
			t.Errorf("protect PK: %q, want %s", got, m.Protected)
		}
		plain := mustSucceed(t, e4Run(t, m.Protected, "unprotect", "--key", m.TopicKey, "--topic", m.Topic,
			"--signer", m.SignerID+"="+m.SignerPublic, "--signer", strings.Repeat("ab", 16)+"="+m.SignerPublic, "--now", ts, "--hex"))
		if plain != m.Plaintext+"\n" {
			t.Errorf("unprotect PK: %q, want %s", plain, m.Plaintext)
		}
	}
	m := v.PKMessages[3]
	ts := strconv.FormatInt(m.Timestamp, 10)
	mustFail(t, e4Run(t, m.Protected, "unprotect", "--key", m.TopicKey, "--topic", m.Topic,
		"--signer", strings.Repeat("ab", 16)+"="+m.SignerPublic, "--now", ts, "--hex"), "e4: signer public key not found")
}

func TestUnprotectFailures(t *testing.T) {
	v := loadVectors(t)
	m := v.SKMessages[4]
	args := func(now int64) []string {
		return []string{"unprotect", "--key", m.Key, "--topic", m.Topic, "--now", strconv.FormatInt(now, 10), "--hex"}
	}
	mustFail(t, e4Run(t, m.Protected, args(m.Timestamp+601)...), "e4: timestamp too old")
	mustFail(t, e4Run(t, m.Protected, args(m.Timestamp-1)...), "e4: timestamp in the future")
	tampered := m.Protected[:len(m.Protected)-1] + "0"
	if tampered == m.Protected {
		tampered = m.Protected[:len(m.Protected)-1] + "1"
	}
	mustFail(t, e4Run(t, tampered, args(m.Timestamp)...), "e4: message authentication failed")
	mustFail(t, e4Run(t, "0011", args(m.Timestamp)...), "e4: invalid length of protected message")
	mustFail(t, e4Run(t, "zz", args(m.Timestamp)...), "e4: stdin is not valid hex: encoding/hex: invalid byte: U+007A 'z'")
	mustFail(t, e4Run(t, m.Protected, "unprotect", "--key", "00", "--topic", "x", "--hex"), "e4: --key must be 32 bytes (64 hex characters), got 1 bytes")
	mustFail(t, e4Run(t, m.Protected, "unprotect", "--topic", "x"), `e4: required flag(s) "key" not set`)
	// --no-clock accepts the old message.
	if got := mustSucceed(t, e4Run(t, m.Protected, append(args(m.Timestamp+100000), "--no-clock")...)); got != m.Plaintext+"\n" {
		t.Errorf("--no-clock: %q", got)
	}
}

func TestKeygen(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "device.key")
	mustSucceed(t, e4Run(t, "", "keygen", "--type", "symmetric", "--out", keyFile))
	first := checkKeyFile(t, keyFile, 32, 0o600)
	mustFail(t, e4Run(t, "", "keygen", "--out", keyFile), "e4: "+keyFile+" exists; use --force to overwrite it")
	if again := checkKeyFile(t, keyFile, 32, 0o600); !bytes.Equal(again, first) {
		t.Fatal("refused overwrite changed the file")
	}
	mustSucceed(t, e4Run(t, "", "keygen", "--out", keyFile, "--force"))
	if again := checkKeyFile(t, keyFile, 32, 0o600); bytes.Equal(again, first) {
		t.Fatal("--force did not write a new key")
	}

	edFile := filepath.Join(dir, "ed.key")
	mustSucceed(t, e4Run(t, "", "keygen", "--type", "ed25519", "--out", edFile))
	priv := checkKeyFile(t, edFile, 64, 0o600)
	if pub := checkKeyFile(t, edFile+".pub", 32, 0o644); !bytes.Equal(pub, priv[32:]) {
		t.Fatal("public key file does not match the private key")
	}
	c2File := filepath.Join(dir, "c2.key")
	mustSucceed(t, e4Run(t, "", "keygen", "--type", "c2", "--out", c2File))
	checkKeyFile(t, c2File, 32, 0o600)
	checkKeyFile(t, c2File+".pub", 32, 0o644)

	pass := filepath.Join(dir, "pass.txt")
	if err := os.WriteFile(pass, []byte("passwordpassword"), 0o600); err != nil {
		t.Fatal(err)
	}
	pwFile := filepath.Join(dir, "pw.key")
	mustSucceed(t, e4Run(t, "", "keygen", "--type", "symmetric", "--password-file", pass, "--out", pwFile))
	if k := checkKeyFile(t, pwFile, 32, 0o600); hex.EncodeToString(k) != "9f14a0ec3c98c19029eb74ba0cfb983082b3b28bd3ccee1de54af783ef11435e" {
		t.Fatalf("password-derived key %x differs from the E4 vector", k)
	}
	if err := os.WriteFile(pass, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustFail(t, e4Run(t, "", "keygen", "--password-file", pass), "e4: invalid password: 5 bytes, need at least 16")
	mustFail(t, e4Run(t, "", "keygen", "--type", "rsa"), `e4: unknown --type "rsa": want symmetric, ed25519 or c2`)
}

func checkKeyFile(t *testing.T, path string, size int, mode os.FileMode) []byte {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != mode {
		t.Errorf("%s: mode %v, want %v", path, info.Mode().Perm(), mode)
	}
	data, _ := os.ReadFile(path)
	key, err := hex.DecodeString(strings.TrimSpace(string(data)))
	if err != nil || len(key) != size {
		t.Fatalf("%s: %d-byte key, %v; want %d bytes", path, len(key), err, size)
	}
	return key
}

func TestDemo(t *testing.T) {
	out := mustSucceed(t, e4Run(t, "", "demo"))
	for _, want := range []string{`display reads: "21.5 C"`, "one bit flipped on the way: e4: message authentication failed",
		"replayed:  e4: message replayed", "without a key:   e4: topic key not found"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
}

// A mistyped subcommand fails with a suggestion at every level, so a script
// with a typo does not "succeed"; a group command alone still shows its help.
func TestUnknownSubcommandsFail(t *testing.T) {
	for _, args := range [][]string{{"bogus"}, {"c2", "polcy"}, {"c2", "topic", "rotat", "plant/x"}, {"c2", "client", "ad", "x"}} {
		r := e4Run(t, "", args...)
		if r.code == 0 {
			t.Errorf("e4 %s exited 0", strings.Join(args, " "))
		}
		if !strings.Contains(r.stderr, "unknown command") {
			t.Errorf("e4 %s: stderr %q does not say the command is unknown", strings.Join(args, " "), r.stderr)
		}
	}
	if r := e4Run(t, "", "c2", "topic", "rotat", "plant/x"); !strings.Contains(r.stderr, "did you mean rotate?") {
		t.Errorf("no suggestion for rotat: %q", r.stderr)
	}
	if r := e4Run(t, "", "c2", "topic"); r.code != 0 || !strings.Contains(r.stdout, "Available Commands") {
		t.Errorf("e4 c2 topic alone: exit %d, stdout %q", r.code, r.stdout)
	}
}

// The version comes from the build information: a test binary built from
// a checkout reports "devel" and the commit.
func TestVersion(t *testing.T) {
	out := mustSucceed(t, e4Run(t, "", "version"))
	if !strings.HasPrefix(out, "e4 devel") && !strings.HasPrefix(out, "e4 v") {
		t.Fatalf("e4 version printed %q", out)
	}
	if flag := mustSucceed(t, e4Run(t, "", "--version")); flag != out {
		t.Fatalf("e4 --version printed %q, e4 version %q", flag, out)
	}
}

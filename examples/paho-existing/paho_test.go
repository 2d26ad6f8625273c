// Package pahoexisting measures what adding E4 to an existing paho
// application costs: plain/ is the application, withe4/ the same one with
// E4. The test runs both against a real Mosquitto and checks the line
// counts the README gives.
package pahoexisting

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/e4/keyfile"
	"github.com/e4-iot/e4kit/e4/store"
	"github.com/e4-iot/e4kit/internal/testbroker"
	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/mqtt"
)

// wantOutput is what both applications print with -n 3.
const wantOutput = "received on plant/boiler/temp: 20.0 C\nreceived on plant/boiler/temp: 20.1 C\nreceived on plant/boiler/temp: 20.2 C\n"

// build compiles ./dir into a temporary directory.
func build(t *testing.T, dir string) string {
	t.Helper()
	goBin, err := exec.LookPath("go") // go test puts GOROOT/bin first in PATH
	if err != nil {
		t.Fatalf("the go command is needed to build the example: %v", err)
	}
	bin := filepath.Join(t.TempDir(), dir)
	if out, err := exec.Command(goBin, "build", "-o", bin, "./"+dir).CombinedOutput(); err != nil {
		t.Fatalf("go build ./%s: %v\n%s", dir, err, out)
	}
	return bin
}

// runIn runs bin in dir, as run does.
func runIn(t *testing.T, dir, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s%s", filepath.Base(bin), args, err, out, stderr.Bytes())
	}
	return string(out)
}

// run runs bin and returns its standard output, failing on an error exit.
func run(t *testing.T, bin string, args ...string) string {
	t.Helper()
	return runIn(t, "", bin, args...)
}

// observe subscribes a bare client to everything under plant/, to see
// what the broker carries.
func observe(t *testing.T, url string) transport.Subscription {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	tr, err := mqtt.Dial(ctx, mqtt.Config{Brokers: []string{url}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	sub, err := tr.Subscribe(ctx, "plant/#")
	if err != nil {
		t.Fatal(err)
	}
	return sub
}

// wire returns the next n payloads the observer saw.
func wire(t *testing.T, sub transport.Subscription, n int) [][]byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var payloads [][]byte
	for range n {
		m, err := sub.Receive(ctx)
		if err != nil {
			t.Fatalf("the observer: %v", err)
		}
		payloads = append(payloads, m.Payload)
	}
	return payloads
}

// TestPahoExisting runs the plain application and its E4 version against
// Mosquitto: both print the same readings; the broker carries the plain
// one's in clear and the E4 one's as E4 ciphertext under the topic key; a
// second start of the E4 one reads its keys from the state it saved; and
// without its key file it stops with an error naming the file.
func TestPahoExisting(t *testing.T) {
	plain, withE4 := build(t, "plain"), build(t, "withe4")
	m := testbroker.StartMosquitto(t, nil)
	observer := observe(t, m.URL())

	if out := run(t, plain, "-broker", m.URL()); out != wantOutput {
		t.Fatalf("plain printed\n%s\nwant\n%s", out, wantOutput)
	}
	if got := wire(t, observer, 3); string(got[0]) != "20.0 C" {
		t.Fatalf("the plain application's first message on the wire is %q, want the reading", got[0])
	}

	// Provisioning: the device's client key in its key file, and in its
	// state the topic key C2 (or e4 client set-topic-key) gave it.
	dir := t.TempDir()
	clientKey, topicKey := bytes.Repeat([]byte{0xc3}, e4.KeyLen), bytes.Repeat([]byte{0x5a}, e4.KeyLen)
	if err := keyfile.WriteKey(filepath.Join(dir, "boiler-sensor.key"), clientKey); err != nil {
		t.Fatal(err)
	}
	provisioned, err := e4.NewSymKeyClient(e4.IDFromName("boiler-sensor"), clientKey,
		&e4.Config{Store: store.NewFile(filepath.Join(dir, "boiler-sensor.state"))})
	if err != nil {
		t.Fatal(err)
	}
	if err := provisioned.SetTopicKey(topicKey, "plant/boiler/temp"); err != nil {
		t.Fatal(err)
	}

	for range 2 { // the second start reads the keys its first one saved
		out := runIn(t, dir, withE4, "-broker", m.URL())
		if out != wantOutput {
			t.Fatalf("withe4 printed\n%s\nwant\n%s", out, wantOutput)
		}
		for i, w := range wire(t, observer, 3) {
			reading := fmt.Sprintf("20.%d C", i)
			plain, err := e4.UnprotectSymKey(nil, w, topicKey, nil)
			if bytes.Contains(w, []byte(reading)) || err != nil || string(plain) != reading {
				t.Fatalf("withe4 put %x on the wire, want %q protected under the topic key (%v)", w, reading, err)
			}
		}
	}
	if err := os.Remove(filepath.Join(dir, "boiler-sensor.key")); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(withE4, "-key-file", filepath.Join(dir, "boiler-sensor.key")).CombinedOutput(); err == nil ||
		!strings.Contains(string(out), "boiler-sensor.key: no such file") {
		t.Fatalf("withe4 without its key file: %v\n%s", err, out)
	}
}

// TestLineCounts: the README's figures for the cost of adding E4 are the
// lines of code (neither blank nor comments) of plain/main.go and
// withe4/main.go, and the difference between them as a minimal diff
// counts it: lines removed from the plain one count as changed, the rest
// of the lines in the E4 one as added.
func TestLineCounts(t *testing.T) {
	plain, withE4 := codeLines(t, "plain/main.go"), codeLines(t, "withe4/main.go")
	added, removed := diffCounts(plain, withE4)
	want := fmt.Sprintf("plain paho application is %d lines of code, the same with E4 %d: %d lines added, %d changed",
		len(plain), len(withE4), added-removed, removed)
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(strings.Fields(string(readme)), " "), want) {
		t.Fatalf("README.md does not say %q", want)
	}
	t.Log(want)
}

// codeLines returns the lines of a Go file that are neither blank nor
// comments.
func codeLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var code []string
	for line := range strings.Lines(string(b)) {
		if trimmed := strings.TrimSpace(line); trimmed != "" && !strings.HasPrefix(trimmed, "//") {
			code = append(code, trimmed)
		}
	}
	return code
}

// diffCounts returns the lines a minimal diff from a to b adds and removes
// (through their longest common subsequence).
func diffCounts(a, b []string) (added, removed int) {
	lcs := make([][]int, len(a)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	common := lcs[0][0]
	return len(b) - common, len(a) - common
}

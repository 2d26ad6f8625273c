package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/e4/command"
	"github.com/e4-iot/e4kit/internal/testbroker"
	"github.com/e4-iot/e4kit/internal/testutil"
	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/coap/broker"
	"github.com/e4-iot/e4kit/transport/dial"
)

// clientTimeout bounds each wait for a client process to say something.
const clientTimeout = 60 * time.Second

// clientProcess is an "e4 client" running in the background.
type clientProcess struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout testutil.Buffer
	stderr testutil.Buffer
	done   chan struct{}
	code   int
}

// startClient runs "e4 client ARGS..." and waits until it reports that it
// is connected and subscribed. It is killed if still running at the end of
// the test.
func startClient(t *testing.T, name string, args ...string) *clientProcess {
	t.Helper()
	p := launchClient(t, name, args...)
	p.waitStderr("e4 client: ready")
	return p
}

// launchClient runs "e4 client ARGS..." without waiting for anything.
func launchClient(t *testing.T, name string, args ...string) *clientProcess {
	t.Helper()
	p := &clientProcess{t: t, name: name, done: make(chan struct{})}
	p.cmd = exec.Command(e4Binary, append([]string{"client"}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	stdin, err := p.cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.stdin = stdin
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		err := p.cmd.Wait()
		p.code = 0
		if ee, ok := err.(*exec.ExitError); ok {
			p.code = ee.ExitCode()
		}
		close(p.done)
	}()
	t.Cleanup(func() {
		if !p.exited() {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func (p *clientProcess) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitFor waits until out contains want, failing the test with both
// outputs if the process exits or clientTimeout passes first.
func (p *clientProcess) waitFor(out *testutil.Buffer, stream, want string) {
	p.t.Helper()
	deadline := time.Now().Add(clientTimeout)
	for !strings.Contains(out.String(), want) {
		if p.exited() && !strings.Contains(out.String(), want) {
			p.t.Fatalf("%s exited (status %d) without printing %q on %s\nstdout:\n%s\nstderr:\n%s", p.name, p.code, want, stream, p.stdout.String(), p.stderr.String())
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s did not print %q on %s within %v\nstdout:\n%s\nstderr:\n%s", p.name, want, stream, clientTimeout, p.stdout.String(), p.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (p *clientProcess) waitStdout(want string) { p.t.Helper(); p.waitFor(&p.stdout, "stdout", want) }
func (p *clientProcess) waitStderr(want string) { p.t.Helper(); p.waitFor(&p.stderr, "stderr", want) }

// waitStderrCount waits until stderr holds want n times.
func (p *clientProcess) waitStderrCount(want string, n int) {
	p.t.Helper()
	deadline := time.Now().Add(clientTimeout)
	for strings.Count(p.stderr.String(), want) < n {
		if p.exited() || time.Now().After(deadline) {
			p.t.Fatalf("%s printed %q %d times on stderr, want %d (exited: %v)\nstderr:\n%s", p.name, want, strings.Count(p.stderr.String(), want), n, p.exited(), p.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// wait waits for the process to exit and returns its status.
func (p *clientProcess) wait() int {
	p.t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(clientTimeout):
		p.t.Fatalf("%s still running after %v\nstderr:\n%s", p.name, clientTimeout, p.stderr.String())
		return -1
	}
}

// stop sends SIGTERM and returns the exit status.
func (p *clientProcess) stop() int {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		p.t.Fatal(err)
	}
	return p.wait()
}

// device is one client's files: its state and its key.
type device struct {
	name, state, keyFile string
}

// fixture holds the files of a client test.
type fixture struct {
	t   *testing.T
	dir string
}

func newFixture(t *testing.T) *fixture { return &fixture{t: t, dir: t.TempDir()} }

func (f *fixture) path(name string) string { return filepath.Join(f.dir, name) }

// keygen writes a key with "e4 keygen" and returns its bytes.
func (f *fixture) keygen(file, kind string) []byte {
	f.t.Helper()
	mustSucceed(f.t, e4Run(f.t, "", "keygen", "--type", kind, "--out", f.path(file)))
	data, err := os.ReadFile(f.path(file))
	if err != nil {
		f.t.Fatal(err)
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(data)))
	if err != nil {
		f.t.Fatal(err)
	}
	return key
}

// skDevice generates a client key for name; the state is created by the
// first command that uses it.
func (f *fixture) skDevice(name string) *device {
	f.keygen(name+".key", "symmetric")
	return &device{name: name, state: f.path(name + ".state"), keyFile: f.path(name + ".key")}
}

// setTopicKey provisions a topic key locally, creating the state if
// needed, and checks that nothing secret is printed.
func (f *fixture) setTopicKey(d *device, topic, topicKeyFile string) {
	f.t.Helper()
	out := mustSucceed(f.t, e4Run(f.t, "", "client", "set-topic-key", "--state", d.state, "--name", d.name,
		"--key-file", d.keyFile, "--topic", topic, "--topic-key-file", topicKeyFile))
	if want := "e4 client: key of " + topic + " stored in " + d.state + "\n"; out != want {
		f.t.Fatalf("set-topic-key printed %q, want %q", out, want)
	}
	info, err := os.Stat(d.state)
	if err != nil {
		f.t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		f.t.Fatalf("state file mode %v, want 0600", info.Mode().Perm())
	}
}

// rawSubscriber is a plain subscriber of the broker, without E4.
type rawSubscriber struct {
	t   *testing.T
	sub transport.Subscription
}

// openRaw connects to the broker without E4; it closes with the test.
func openRaw(t *testing.T, brokerURL string) transport.Transport {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	tr, err := dial.Open(ctx, brokerURL, dial.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

func subscribeRaw(t *testing.T, tr transport.Transport, filter string) *rawSubscriber {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	sub, err := tr.Subscribe(ctx, filter)
	if err != nil {
		t.Fatal(err)
	}
	return &rawSubscriber{t: t, sub: sub}
}

func (r *rawSubscriber) receive() *transport.Message {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	msg, err := r.sub.Receive(ctx)
	if err != nil {
		r.t.Fatal(err)
	}
	return msg
}

// publishRaw publishes bytes without E4, as C2 or an attacker would.
func publishRaw(t *testing.T, tr transport.Transport, topic string, payload []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	if err := tr.Publish(ctx, topic, payload); err != nil {
		t.Fatal(err)
	}
}

// sendSetTopicKey sends the SetTopicKey command C2 would send to a client,
// protected under commandKey, on the client's control topic.
func sendSetTopicKey(t *testing.T, tr transport.Transport, clientName string, topicKey []byte, topic string, commandKey []byte) {
	t.Helper()
	cmd, err := command.NewSetTopicKey(topicKey, e4.HashTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	protected, err := e4.ProtectCommand(cmd, commandKey, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	publishRaw(t, tr, e4.ControlTopic(e4.IDFromName(clientName)), protected)
}

// clientScenario runs the same story over any broker: keys set locally,
// one client publishes and another prints; a raw subscriber sees only
// ciphertext; then C2 gives the receiver the key of a new topic.
func clientScenario(t *testing.T, brokerURL string) {
	f := newFixture(t)
	sensor, display := f.skDevice("sensor"), f.skDevice("display")
	tempKey := f.keygen("temp.key", "symmetric")
	f.setTopicKey(sensor, "home/temp", f.path("temp.key"))
	f.setTopicKey(display, "home/temp", f.path("temp.key"))

	raw := openRaw(t, brokerURL)
	wire := subscribeRaw(t, raw, "home/temp")
	receiver := startClient(t, "display", "--state", display.state, "--broker", brokerURL, "--subscribe", "home/+")

	runPublisher(t, sensor.state, brokerURL, "home/temp", "21.5 C\nwindow open\n")
	receiver.waitStdout("home/temp: 21.5 C\nhome/temp: window open\n")

	// The broker carried E4 messages under the topic key, nothing readable.
	for _, want := range []string{"21.5 C", "window open"} {
		msg := wire.receive()
		if bytes.Contains(msg.Payload, []byte(want)) {
			t.Fatalf("the broker carried the plaintext %q", want)
		}
		plain, err := e4.UnprotectSymKey(nil, msg.Payload, tempKey, nil)
		if err != nil || string(plain) != want {
			t.Fatalf("raw message: %q, %v; want an E4 message of %q", plain, err, want)
		}
	}

	// C2 gives the display the key of a new topic; the sensor gets it locally.
	doorKey := f.keygen("door.key", "symmetric")
	f.setTopicKey(sensor, "home/door", f.path("door.key"))
	displayKey := readKey(t, display.keyFile)
	sendSetTopicKey(t, raw, "display", doorKey, "home/door", displayKey)
	receiver.waitStderr("e4 client: applied command SetTopicKey")
	runPublisher(t, sensor.state, brokerURL, "home/door", "locked\n")
	receiver.waitStdout("home/door: locked\n")
	if code := receiver.stop(); code != 0 {
		t.Fatalf("display exited with %d on SIGTERM, want 0; stderr:\n%s", code, receiver.stderr.String())
	}
}

// runPublisher runs "e4 client --publish" with lines on stdin and checks
// that it stops at their end, having said only that it was ready.
func runPublisher(t *testing.T, state, brokerURL, topic, lines string, extraArgs ...string) {
	t.Helper()
	args := append([]string{"client", "--state", state, "--broker", brokerURL, "--publish", topic}, extraArgs...)
	r := e4Run(t, lines, args...)
	if r.code != 0 || !strings.HasPrefix(r.stderr, "e4 client: ready: ") || strings.Count(r.stderr, "\n") != 1 {
		t.Fatalf("publisher: exit %d, stderr:\n%s", r.code, r.stderr)
	}
}

func readKey(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func TestClientMosquitto(t *testing.T) {
	m := testbroker.StartMosquitto(t, nil)
	clientScenario(t, "mqtt://"+m.Addr())
}

func TestClientRabbitMQ(t *testing.T) {
	r := testbroker.StartRabbitMQ(t, nil)
	clientScenario(t, r.AMQPURL())
}

func TestClientCoAP(t *testing.T) {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(testbroker.FreePort(t, "udp")))
	b, err := broker.Start(addr, &broker.Options{Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	clientScenario(t, "coap://"+addr)
}

// TestClientSecureBrokers runs a publisher and a subscriber through the
// security flags: MQTT over TLS with a client certificate and a password
// file, CoAP over DTLS with a pre-shared key file.
func TestClientSecureBrokers(t *testing.T) {
	f := newFixture(t)
	sensor, display := f.skDevice("sensor"), f.skDevice("display")
	f.keygen("t.key", "symmetric")
	f.setTopicKey(sensor, "site/gate", f.path("t.key"))
	f.setTopicKey(display, "site/gate", f.path("t.key"))
	roundTrip := func(brokerURL string, args ...string) {
		t.Helper()
		receiver := startClient(t, "display", append([]string{"--state", display.state, "--broker", brokerURL, "--subscribe", "site/#"}, args...)...)
		runPublisher(t, sensor.state, brokerURL, "site/gate", "closed via "+brokerURL+"\n", args...)
		receiver.waitStdout("site/gate: closed via " + brokerURL + "\n")
		if code := receiver.stop(); code != 0 {
			t.Fatalf("exit %d on SIGTERM", code)
		}
	}

	testbroker.RequireBinary(t, testbroker.MosquittoBinary)
	testbroker.RequireBinary(t, testbroker.MosquittoPasswdBinary)
	mqttDir := t.TempDir()
	m, err := testbroker.NewMosquitto(mqttDir, testbroker.FreePort(t, "tcp"), &testbroker.MosquittoOptions{TLS: true, Username: "gate", Password: "gate password"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Stop)
	writeFile(t, f.path("broker.pw"), "gate password\n")
	certFile, keyFile := f.path("client.crt"), f.path("client.key")
	writeCertificate(t, m.ClientTLS().Certificates[0], certFile, keyFile)
	// NewMosquitto writes its test CA as ca.crt in its directory.
	roundTrip("mqtts://gate@"+strings.TrimPrefix(m.URL(), "ssl://"), "--broker-password-file", f.path("broker.pw"),
		"--tls-ca", filepath.Join(mqttDir, "ca.crt"), "--tls-cert", certFile, "--tls-key", keyFile)

	psk := []byte("gate pre-shared key")
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(testbroker.FreePort(t, "udp")))
	b, err := broker.Start(addr, &broker.Options{Logf: t.Logf, DTLS: &broker.DTLSConfig{PSK: func(identity []byte) ([]byte, error) {
		if string(identity) != "gate-devices" {
			return nil, fmt.Errorf("unknown identity %q", identity)
		}
		return psk, nil
	}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	writeFile(t, f.path("psk.hex"), hex.EncodeToString(psk)+"\n")
	roundTrip("coaps://"+addr, "--dtls-psk-file", f.path("psk.hex"), "--dtls-psk-identity", "gate-devices")
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// writeCertificate writes a certificate and its key as PEM files.
func writeCertificate(t *testing.T, cert tls.Certificate, certFile, keyFile string) {
	t.Helper()
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})))
	writeFile(t, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})))
}

// TestClientCommandsPersist checks, over Mosquitto, what C2 commands do to
// a running client: a key given by C2 survives a restart, messages without
// a key and forged commands are reported without their content, and
// --json prints every event.
func TestClientCommandsPersist(t *testing.T) {
	m := testbroker.StartMosquitto(t, nil)
	brokerURL := "mqtt://" + m.Addr()
	f := newFixture(t)
	sensor, display := f.skDevice("sensor"), f.skDevice("display")
	doorKey := f.keygen("door.key", "symmetric")
	f.setTopicKey(sensor, "home/door", f.path("door.key"))
	raw := openRaw(t, brokerURL)

	// The display has no key for home/door yet: it drops the message and
	// does not show it.
	receiver := startClient(t, "display", "--state", display.state, "--name", "display", "--key-file", display.keyFile,
		"--broker", brokerURL, "--subscribe", "home/door")
	runPublisher(t, sensor.state, brokerURL, "home/door", "secret-before-key\n")
	receiver.waitStderr("e4 client: dropped a message on home/door: e4: topic key not found")

	// A command under the wrong key is refused; the right one is applied.
	sendSetTopicKey(t, raw, "display", doorKey, "home/door", readKey(t, sensor.keyFile))
	receiver.waitStderr("e4 client: refused a command on the control topic: e4: message authentication failed")
	sendSetTopicKey(t, raw, "display", doorKey, "home/door", readKey(t, display.keyFile))
	receiver.waitStderr("e4 client: applied command SetTopicKey")
	runPublisher(t, sensor.state, brokerURL, "home/door", "locked\n")
	receiver.waitStdout("home/door: locked\n")
	if code := receiver.stop(); code != 0 {
		t.Fatalf("display exited with %d on SIGTERM, want 0", code)
	}
	for _, out := range []string{receiver.stdout.String(), receiver.stderr.String()} {
		if strings.Contains(out, "secret-before-key") || strings.Contains(out, hex.EncodeToString(doorKey)) {
			t.Fatalf("the client printed a dropped plaintext or a key:\n%s", out)
		}
	}

	// Restarted from its state file alone, the display still reads home/door.
	restarted := startClient(t, "display again", "--state", display.state, "--broker", brokerURL, "--subscribe", "home/#", "--json")
	runPublisher(t, sensor.state, brokerURL, "home/door", "still locked\n")
	restarted.waitStdout(`"payload":"still locked"`)
	// A binary payload comes out as base64.
	binary, err := e4.ProtectSymKey(nil, []byte{0xff, 0x00, 0x01}, doorKey, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	publishRaw(t, raw, "home/door", binary)
	restarted.waitStdout(`"payload_base64":"/wAB"`)
	if code := restarted.stop(); code != 0 {
		t.Fatalf("restarted display exited with %d on SIGTERM, want 0", code)
	}
	checkJSONEvents(t, restarted.stdout.String(), display.name)
}

// checkJSONEvents checks the --json output of the restarted display.
func checkJSONEvents(t *testing.T, stdout, name string) {
	t.Helper()
	var types []string
	for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("not a JSON line: %q: %v", line, err)
		}
		if _, err := time.Parse(time.RFC3339Nano, ev["time"].(string)); err != nil {
			t.Errorf("event %q: bad time: %v", line, err)
		}
		types = append(types, ev["type"].(string))
		if ev["type"] == "ready" && ev["control_topic"] != e4.ControlTopic(e4.IDFromName(name)) {
			t.Errorf("ready event %q names the wrong control topic", line)
		}
		if ev["type"] == "message" && ev["topic"] != "home/door" {
			t.Errorf("message event %q: wrong topic", line)
		}
	}
	if strings.Join(types, ",") != "ready,message,message" {
		t.Fatalf("events %v, want ready, message, message:\n%s", types, stdout)
	}
}

// TestClientPubKeyMode runs two pk-mode clients: signed messages between
// them, and a command from C2 under the X25519-derived command key.
func TestClientPubKeyMode(t *testing.T) {
	m := testbroker.StartMosquitto(t, nil)
	brokerURL := "mqtt://" + m.Addr()
	f := newFixture(t)
	c2Private := f.keygen("c2.key", "c2")
	f.keygen("sensor.key", "ed25519")
	displayPrivate := f.keygen("display.key", "ed25519")
	f.keygen("temp.key", "symmetric")
	create := func(name string) string {
		state := f.path(name + ".state")
		mustSucceed(t, e4Run(t, "", "client", "set-topic-key", "--state", state, "--name", name, "--mode", "pk",
			"--key-file", f.path(name+".key"), "--c2-public-key-file", f.path("c2.key.pub"),
			"--topic", "plant/pressure", "--topic-key-file", f.path("temp.key")))
		return state
	}
	sensorState, displayState := create("sensor"), create("display")
	mustSucceed(t, e4Run(t, "", "client", "set-pub-key", "--state", displayState, "--signer-name", "sensor", "--public-key-file", f.path("sensor.key.pub")))

	info := mustSucceed(t, e4Run(t, "", "client", "info", "--state", displayState))
	wantInfo := "id:            " + e4.IDFromName("display").String() + "\nmode:          pk\nsuite:         v1\ncontrol topic: " +
		e4.ControlTopic(e4.IDFromName("display")) + "\npublic key:    " + hex.EncodeToString(displayPrivate[32:]) + "\n"
	if info != wantInfo {
		t.Fatalf("info:\n%s\nwant:\n%s", info, wantInfo)
	}

	receiver := startClient(t, "display", "--state", displayState, "--broker", brokerURL, "--subscribe", "plant/#")
	runPublisher(t, sensorState, brokerURL, "plant/pressure", "3.2 bar\n")
	receiver.waitStdout("plant/pressure: 3.2 bar\n")

	// C2 gives the display a new topic key, under the PK command key.
	newKey := make([]byte, e4.KeyLen)
	if _, err := rand.Read(newKey); err != nil {
		t.Fatal(err)
	}
	commandKey, err := e4.C2CommandKey(c2Private, displayPrivate[32:])
	if err != nil {
		t.Fatal(err)
	}
	sendSetTopicKey(t, openRaw(t, brokerURL), "display", newKey, "plant/flow", commandKey)
	receiver.waitStderr("e4 client: applied command SetTopicKey")
	if code := receiver.stop(); code != 0 {
		t.Fatalf("display exited with %d on SIGTERM, want 0", code)
	}
}

// TestClientStdinEnd checks when a client stops by itself: a publisher at
// the end of stdin, with status 1 if lines could not be published; a
// subscriber only with --exit-on-eof.
func TestClientStdinEnd(t *testing.T) {
	m := testbroker.StartMosquitto(t, nil)
	brokerURL := "mqtt://" + m.Addr()
	f := newFixture(t)
	d := f.skDevice("lamp")
	f.keygen("t.key", "symmetric")
	f.setTopicKey(d, "lamp/state", f.path("t.key"))

	// No key for lamp/other: both lines are reported, status 1.
	r := e4Run(t, "on\noff\n", "client", "--state", d.state, "--broker", brokerURL, "--publish", "lamp/other")
	if r.code != 1 || !strings.Contains(r.stderr, "e4 client: line 2 not published on lamp/other: e4transport: protecting for lamp/other: e4: topic key not found") ||
		!strings.HasSuffix(r.stderr, "e4: 2 of 2 lines were not published on lamp/other\n") {
		t.Fatalf("exit %d, stderr:\n%s", r.code, r.stderr)
	}

	// A subscriber that also publishes keeps running after the end of
	// stdin; with --exit-on-eof it stops there.
	p := startClient(t, "lamp", "--state", d.state, "--broker", brokerURL, "--subscribe", "lamp/#", "--publish", "lamp/state")
	if _, err := io.WriteString(p.stdin, "on\r\n"); err != nil {
		t.Fatal(err)
	}
	p.waitStdout("lamp/state: on\n")
	p.stdin.Close()
	other := f.skDevice("switch")
	f.setTopicKey(other, "lamp/state", f.path("t.key"))
	runPublisher(t, other.state, brokerURL, "lamp/state", "still running\n")
	p.waitStdout("lamp/state: still running\n")
	if code := p.stop(); code != 0 {
		t.Fatalf("exit %d on SIGTERM", code)
	}

	q := startClient(t, "lamp again", "--state", d.state, "--broker", brokerURL, "--subscribe", "lamp/#", "--exit-on-eof")
	q.stdin.Close()
	if code := q.wait(); code != 0 {
		t.Fatalf("--exit-on-eof: exit %d, stderr:\n%s", code, q.stderr.String())
	}
}

// TestClientErrors checks the messages of wrong command lines.
func TestClientErrors(t *testing.T) {
	f := newFixture(t)
	d := f.skDevice("dev")
	f.keygen("t.key", "symmetric")
	state := d.state
	mustFail(t, e4Run(t, "", "client", "--broker", "mqtt://127.0.0.1:1"), "e4: --state FILE is required: the file that holds the client's keys")
	mustFail(t, e4Run(t, "", "client", "--state", state, "--broker", "mqtt://127.0.0.1:1"),
		"e4: "+state+" does not exist yet: give --name or --id, and --key-file or --password-file, to create it")
	mustFail(t, e4Run(t, "", "client", "--state", state, "--name", "dev", "--key-file", f.path("t.key"), "--mode", "pk", "--broker", "mqtt://127.0.0.1:1"),
		"e4: --mode pk needs --c2-public-key-file to create the client")
	mustFail(t, e4Run(t, "", "client", "--state", state, "--name", "dev", "--key-file", f.path("missing.key"), "--broker", "mqtt://127.0.0.1:1"),
		"e4: --key-file: open "+f.path("missing.key")+": no such file or directory")
	f.setTopicKey(d, "a/b", f.path("t.key"))
	mustFail(t, e4Run(t, "", "client", "--state", state, "--broker", "localhost:1883"),
		`e4: dial: broker URL "localhost:1883": want SCHEME://HOST[:PORT] with a scheme among amqp, amqps, coap, coaps, mqtt, mqtts, ssl, tcp, tls, ws, wss, as in mqtt://localhost:1883`)
	mustFail(t, e4Run(t, "", "client", "--state", state, "--name", "other", "--broker", "mqtt://127.0.0.1:1"),
		"e4: "+state+" belongs to client "+e4.IDFromName("dev").String()+", not to "+e4.IDFromName("other").String()+" named by --name/--id")
	mustFail(t, e4Run(t, "", "client", "--state", state, "--mode", "pk", "--broker", "mqtt://127.0.0.1:1"),
		"e4: "+state+" holds a client in sk mode, not pk")
	mustFail(t, e4Run(t, "", "client", "--state", state, "--broker", "mqtt://127.0.0.1:1", "--qos", "3"), "e4: --qos must be 0, 1 or 2, got 3")
	mustFail(t, e4Run(t, "", "client", "--state", state, "--broker", "mqtt://127.0.0.1:1", "--tls-ca", f.path("t.key")),
		`e4: dial: "mqtt://127.0.0.1:1": TLS options need a secure scheme (mqtts, wss, amqps, coaps)`)
	mustFail(t, e4Run(t, "", "client", "--state", state, "--broker", "mqtts://127.0.0.1:1", "--tls-ca", f.path("t.key")),
		`e4: dial: "mqtts://127.0.0.1:1": CA file `+f.path("t.key")+` holds no PEM certificate`)
	mustFail(t, e4Run(t, "", "client", "set-topic-key", "--state", state, "--topic", "a/+", "--topic-key-file", f.path("t.key")),
		`e4: --topic "a/+": transport: invalid topic transport: topic "a/+" must be non-empty and have no wildcard`)
	mustFail(t, e4Run(t, "", "client", "set-topic-key", "--state", state, "--topic", "a/b", "--topic-key-file", d.state),
		"e4: --topic-key-file "+d.state+": not hex text")
	mustFail(t, e4Run(t, "", "client", "set-pub-key", "--state", state, "--signer-name", "x", "--public-key-file", f.path("t.key")),
		"e4: "+state+" holds an sk-mode client: only pk-mode clients check senders' signatures")
	// An unreachable broker is reported, and waited for.
	p := launchClient(t, "unreachable", "--state", state, "--broker", "mqtt://127.0.0.1:1")
	p.waitStderr("connection refused")
	if code := p.stop(); code != 0 {
		t.Fatalf("stopped while waiting for the broker: exit %d", code)
	}
	// No key material in anything printed.
	key := hex.EncodeToString(readKey(t, f.path("t.key")))
	if out := mustSucceed(t, e4Run(t, "", "client", "info", "--state", state)); strings.Contains(out, key) || strings.Contains(out, hex.EncodeToString(readKey(t, d.keyFile))) {
		t.Fatalf("info printed a key:\n%s", out)
	}
}

// TestClientStartsWhileBrokerDown: e4 client starts with its broker
// stopped, connects once it is up (a command then reaches it), and reports
// every loss and recovery of the connection: two broker restarts give two
// more lines of each.
func TestClientStartsWhileBrokerDown(t *testing.T) {
	m := testbroker.StartMosquitto(t, nil)
	m.Stop()
	f := newFixture(t)
	d := f.skDevice("late-riser")
	p := launchClient(t, "late-riser", "--state", d.state, "--name", d.name, "--key-file", d.keyFile, "--broker", m.URL())
	const down, up = "connection down, retrying", "e4 client: connected to the broker"
	p.waitStderr(down)
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	p.waitStderr("e4 client: ready")
	p.waitStderrCount(up, 1)

	c2 := dialC2(t, m.URL())
	sendCommand(t, c2, d, "room/temp")
	p.waitStderr("applied command SetTopicKey")

	for round := 1; round <= 2; round++ {
		m.Stop()
		p.waitStderrCount(down, 1+round)
		if err := m.Start(ctx); err != nil {
			t.Fatal(err)
		}
		p.waitStderrCount(up, 1+round)
	}
	if code := p.stop(); code != 0 {
		t.Fatalf("exit %d\nstderr:\n%s", code, p.stderr.String())
	}
	if n := strings.Count(p.stderr.String(), down); n != 3 {
		t.Fatalf("%d lines about the connection going down, want 3 (the start and two restarts)\n%s", n, p.stderr.String())
	}
}

// dialC2 connects a test C2 to an MQTT broker that may be restarted.
func dialC2(t *testing.T, url string) transport.Transport {
	t.Helper()
	target, err := dial.Parse(url, dial.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	tr, err := target.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

// sendCommand plays C2: it sends d a SetTopicKey command for topic,
// protected with d's key.
func sendCommand(t *testing.T, c2 transport.Transport, d *device, topic string) {
	t.Helper()
	key := readKey(t, d.keyFile)
	topicKey := make([]byte, e4.KeyLen)
	_, _ = rand.Read(topicKey)
	cmd, err := command.NewSetTopicKey(topicKey, e4.HashTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	wire, err := e4.ProtectCommand(cmd, key, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	if err := c2.Publish(ctx, e4.ControlTopic(e4.IDFromName(d.name)), wire); err != nil {
		t.Fatal(err)
	}
}

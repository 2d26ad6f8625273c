package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/e4/command"
	"github.com/e4-iot/e4kit/e4/store"
	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/dial"
	"github.com/e4-iot/e4kit/transport/e4transport"
	"github.com/spf13/cobra"
)

// maxLine bounds one stdin line published by "e4 client --publish".
const maxLine = 1 << 20

// identityFlags locate the client's state file and, on first use, say
// how to create it.
type identityFlags struct {
	state                 string
	name, id, mode        string
	keyFile, passwordFile string
	c2PublicFile          string
	modeSet               bool // --mode was given
	suite                 string
	diagnoseSuite         bool
	noClock               bool
	maxAge                time.Duration
	maxFutureSkew         time.Duration
}

// addIdentityFlags registers the state flags shared by every client
// sub-command.
func addIdentityFlags(cmd *cobra.Command, f *identityFlags) {
	fl := cmd.PersistentFlags()
	fl.StringVar(&f.state, "state", "", "the client's state file: keys and topic keys (required; created on first use, mode 0600)")
	fl.StringVar(&f.name, "name", "", "first use: the device name the client id is derived from (as e4 id NAME)")
	fl.StringVar(&f.id, "id", "", "first use: the client id, 32 hex characters, instead of --name")
	fl.StringVar(&f.mode, "mode", "sk", "first use: sk (symmetric key) or pk (Ed25519 signatures)")
	fl.StringVar(&f.keyFile, "key-file", "", "first use: the client key, hex, as e4 keygen writes it (sk: symmetric, pk: ed25519)")
	fl.StringVar(&f.passwordFile, "password-file", "", "first use: derive the client key from the password in this file instead; "+passwordFileHelp)
	fl.StringVar(&f.c2PublicFile, "c2-public-key-file", "", "first use, pk mode: C2's public key, hex (the FILE.pub of e4 keygen --type c2)")
	fl.BoolVar(&f.noClock, "no-clock", false, "skip the timestamp checks, for devices without a reliable clock")
	fl.DurationVar(&f.maxAge, "max-age", e4.DefaultMaxAge, "oldest acceptable message or command")
	fl.DurationVar(&f.maxFutureSkew, "max-skew", 0, "how far in the future a timestamp may be")
	addSuiteFlag(cmd, fl, &f.suite, "first use: "+suiteUsage+"; later checked against the state file")
	fl.BoolVar(&f.diagnoseSuite, "diagnose-suite", false, "tell messages and commands protected under another suite from forgeries (one more decryption per failure)")
}

// clientFlags are the flags of "e4 client" itself.
type clientFlags struct {
	identity identityFlags

	broker                 string
	tlsCA, tlsCert, tlsKey string
	tlsServerName          string
	tlsInsecure            bool
	username, passwordFile string
	clientID               string
	persistentSession      bool
	exchange               string
	pskFile, pskIdentity   string
	coapPrefix             string

	subscribe []string
	publish   string
	qos       int
	json      bool
	exitOnEOF bool
	awaitKey  time.Duration
	noAck     bool
	noSync    bool

	metricsAddr string
	logLevel    string
}

func newClientCommand() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "client --state FILE --broker URL [--subscribe FILTER]... [--publish TOPIC] [flags]",
		Short: "Run an E4 device: publish stdin lines protected, print what it receives decrypted",
		Long: `client runs an E4 client (a device) on a broker. It keeps its keys in the state
file given by --state, creating it on first use from --name or --id and
--key-file or --password-file (with --mode pk, also --c2-public-key-file), and
--suite (default v1; fast for a fast-mode deployment, as C2's --suite).
Keys are never printed. Afterwards --state alone is enough; the creation flags
are then only checked (--name, --id, --mode, --suite must match the file) or
ignored.

It subscribes to its control topic (e4/<id>) and applies the commands C2
sends there, saving the state after each one, so a restarted client keeps the
keys it was given, and acknowledges each authentic command on e4/<id>/ack
(--no-ack turns that off). Once subscribed, and again after each
reconnection, it tells C2 what keys it holds with a sync request on
e4/<id>/sync (--no-sync turns that off), so C2 sends what it missed. It
starts even while the broker is down, connects when it comes up, and
reports every loss and recovery of the connection on stderr. With --subscribe (repeatable, wildcards "+" and "#"
allowed) it prints every message it can decrypt as a "topic: payload" line on
stdout; a payload that is not printable UTF-8 is shown as a quoted Go string.
With --json it prints one JSON object per line instead: messages
({"type":"message","topic":...,"payload":... or "payload_base64":...,"time":...}),
commands applied or refused, dropped messages, readiness and connection
changes ({"type":"connection","state":"connected" or "disconnected",...}). Messages it cannot
decrypt (no key for the topic, tampered, replayed, too old) are dropped and
reported on stderr, without their content. Diagnostics go to stderr, one line
each, starting with "e4 client:"; "e4 client: ready" says the client is
connected and subscribed.

With --publish TOPIC each line read from stdin is protected with the topic's
key and published on TOPIC (--qos, default 1), without its line ending. A line
that cannot be published (no key yet, broker gone) is reported and skipped.

When it stops: on SIGINT or SIGTERM, always (exit status 0). When stdin ends,
if it publishes and does not subscribe: after the last line is published (exit
status 1 if some lines were not). With --subscribe it keeps running after the
end of stdin, unless --exit-on-eof is given (which also makes a client that
does not publish read stdin and stop at its end).

Broker URLs: mqtt://, mqtts://, ws://, wss:// (MQTT), amqp://, amqps:// (AMQP),
coap://, coaps:// (CoAP); see package transport/dial. Credentials go in the URL
(mqtt://user@host) with the password from --broker-password-file, or
--username. TLS: --tls-ca, --tls-cert and --tls-key (PEM files). CoAP over DTLS
with a pre-shared key: --dtls-psk-file and --dtls-psk-identity.

Local provisioning without C2: see "e4 client set-topic-key" and
"e4 client set-pub-key"; "e4 client info" shows the id and control topic.` + clientMetricsHelp,
		Example: `  e4 keygen --out dev.key
  e4 keygen --out topic.key
  e4 client set-topic-key --state dev.state --name thermostat-1 --key-file dev.key --topic home/temp --topic-key-file topic.key
  echo 21.5 | e4 client --state dev.state --broker mqtt://localhost:1883 --publish home/temp
  e4 client --state display.state --broker mqtts://broker:8883 --tls-ca ca.pem --subscribe 'home/#' --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runClient(cmd, &f) },
	}
	addIdentityFlags(cmd, &f.identity)
	fl := cmd.Flags()
	fl.StringVar(&f.broker, "broker", "", "broker URL, e.g. mqtt://localhost:1883 (required)")
	fl.StringVar(&f.tlsCA, "tls-ca", "", "PEM file of the CAs that sign the broker's certificate (default: system roots)")
	fl.StringVar(&f.tlsCert, "tls-cert", "", "client certificate, PEM (with --tls-key)")
	fl.StringVar(&f.tlsKey, "tls-key", "", "private key of --tls-cert, PEM")
	fl.StringVar(&f.tlsServerName, "tls-server-name", "", "name expected in the broker's certificate (default: the URL's host)")
	fl.BoolVar(&f.tlsInsecure, "tls-insecure", false, "accept any broker certificate (tests only)")
	fl.StringVar(&f.username, "username", "", "broker username (MQTT, AMQP); replaces the URL's")
	fl.StringVar(&f.passwordFile, "broker-password-file", "", "file whose first line is the broker password")
	fl.StringVar(&f.clientID, "client-id", "", "MQTT client id (default: random)")
	fl.BoolVar(&f.persistentSession, "persistent-session", false, "MQTT: keep the session at the broker (use with --client-id)")
	fl.StringVar(&f.exchange, "exchange", "", "AMQP topic exchange (default amq.topic)")
	fl.StringVar(&f.pskFile, "dtls-psk-file", "", "coaps: file holding the DTLS pre-shared key, hex")
	fl.StringVar(&f.pskIdentity, "dtls-psk-identity", "", "coaps: the PSK identity")
	fl.StringVar(&f.coapPrefix, "coap-prefix", "", "CoAP: path prefix of topics at the broker (default: the URL's path, else /ps)")
	fl.StringArrayVar(&f.subscribe, "subscribe", nil, "print the messages of this topic filter (repeatable)")
	fl.StringVar(&f.publish, "publish", "", "publish each stdin line on this topic")
	fl.IntVar(&f.qos, "qos", 1, "QoS of publications: 0, 1 or 2")
	fl.BoolVar(&f.json, "json", false, "print one JSON object per line")
	fl.BoolVar(&f.exitOnEOF, "exit-on-eof", false, "stop when stdin ends, even with --subscribe")
	fl.DurationVar(&f.awaitKey, "await-key", 0, "how long a message without a usable key is held aside, without delaying the others, for C2's next command before it is dropped")
	fl.BoolVar(&f.noAck, "no-ack", false, "do not acknowledge C2's commands on e4/<id>/ack (acknowledged by default)")
	fl.BoolVar(&f.noSync, "no-sync", false, "do not send sync requests (what keys the client holds) on e4/<id>/sync at start and after each reconnection")
	fl.StringVar(&f.metricsAddr, "metrics-addr", "", "serve Prometheus metrics at /metrics on this address (plain HTTP, no credentials)")
	fl.StringVar(&f.logLevel, "log-level", "info", "diagnostics on stderr: debug (also each sync request sent), info, warn (only problems: drops, refusals, failures) or error")
	_ = cmd.MarkFlagRequired("broker")
	cmd.AddCommand(newClientSetTopicKeyCommand(&f.identity), newClientSetPubKeyCommand(&f.identity), newClientInfoCommand(&f.identity))
	return cmd
}

// runClient connects, subscribes and publishes until a signal, the end of
// stdin (see the command's help) or a failure.
func runClient(cmd *cobra.Command, f *clientFlags) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", f.logLevel)
	}
	if f.qos < 0 || f.qos > 2 {
		return fmt.Errorf("--qos must be 0, 1 or 2, got %d", f.qos)
	}
	for _, filter := range f.subscribe {
		if err := transport.ValidateFilter(filter); err != nil {
			return fmt.Errorf("--subscribe %q: %w", filter, err)
		}
	}
	if f.publish != "" {
		if err := transport.ValidateTopic(f.publish); err != nil {
			return fmt.Errorf("--publish %q: %w", f.publish, err)
		}
	}
	client, err := openClient(cmd, &f.identity)
	if err != nil {
		return err
	}
	target, err := brokerTarget(f)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	out := newEventPrinter(cmd.OutOrStdout(), cmd.ErrOrStderr(), f.json)
	out.suite = client.Suite()
	out.level = level
	p, err := connectProtected(ctx, target, client, out, f)
	if err != nil {
		if ctx.Err() != nil {
			return nil // interrupted while connecting
		}
		return err
	}
	defer p.Close()
	if f.metricsAddr != "" {
		stopMetrics, err := serveClientMetrics(ctx, f.metricsAddr, p, out)
		if err != nil {
			return err
		}
		defer stopMetrics()
	}
	return serve(ctx, cmd.InOrStdin(), p, target, f, out)
}

// connectProtected dials the broker and wraps the connection with E4.
func connectProtected(ctx context.Context, target *dial.Target, client *e4.Client, out *eventPrinter, f *clientFlags) (*e4transport.Protected, error) {
	t, err := target.Dial(ctx)
	if err != nil {
		return nil, err
	}
	if n, ok := t.(transport.ConnectionNotifier); ok {
		n.NotifyConnection(out.connection(target.Redacted))
	}
	p, err := e4transport.Protect(ctx, t, client, &e4transport.Options{
		OnDrop:    out.dropped,
		OnCommand: out.command,
		OnSync:    out.synced,
		AwaitKey:  f.awaitKey,
		NoAck:     f.noAck,
		NoSync:    f.noSync,
	})
	if err != nil {
		_ = t.Close()
		return nil, err
	}
	return p, nil
}

// serve subscribes, reports readiness, publishes stdin and waits for the
// reason to stop.
func serve(ctx context.Context, stdin io.Reader, p *e4transport.Protected, target *dial.Target, f *clientFlags, out *eventPrinter) error {
	failures := make(chan error, len(f.subscribe))
	for _, filter := range f.subscribe {
		sub, err := p.Subscribe(ctx, filter)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("subscribing to %s: %w", filter, err)
		}
		go printMessages(ctx, filter, sub, out, failures)
	}
	out.ready(p.Client(), target.Redacted, f.subscribe)
	if f.publish != "" && !p.Client().HasTopicKey(f.publish) {
		out.noticeAt(slog.LevelWarn, "no key for %s yet: lines are not published until C2 or e4 client set-topic-key provides one", f.publish)
	}
	exitOnEOF := f.exitOnEOF || (f.publish != "" && len(f.subscribe) == 0)
	var eof chan error
	if f.publish != "" || exitOnEOF {
		eof = make(chan error, 1)
		go func() { eof <- publishLines(ctx, stdin, p, f.publish, transport.QoS(f.qos), out) }()
	}
	for {
		select {
		case <-ctx.Done():
			out.notice("stopping on signal")
			return nil
		case err := <-failures:
			return err
		case err := <-eof:
			if exitOnEOF {
				return err
			}
			if err != nil {
				out.noticeAt(slog.LevelError, "%v", err)
			}
			eof = nil // stdin is done; keep receiving
		}
	}
}

// printMessages prints what one subscription receives until it ends.
func printMessages(ctx context.Context, filter string, sub transport.Subscription, out *eventPrinter, failures chan<- error) {
	for {
		msg, err := sub.Receive(ctx)
		if err != nil {
			if ctx.Err() == nil {
				failures <- fmt.Errorf("subscription %s ended: %w", filter, err)
			}
			return
		}
		out.message(msg)
	}
}

// publishLines publishes each stdin line on topic (or only reads stdin to
// its end when topic is empty). It returns an error when some lines were
// not published, or stdin failed.
func publishLines(ctx context.Context, stdin io.Reader, p *e4transport.Protected, topic string, qos transport.QoS, out *eventPrinter) error {
	r := bufio.NewReaderSize(stdin, 64<<10)
	total, failed := 0, 0
	for {
		line, err := readLine(r)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if topic == "" {
			continue
		}
		total++
		if err := p.Publish(ctx, topic, line, transport.WithQoS(qos)); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			failed++
			out.noticeAt(slog.LevelWarn, "line %d not published on %s: %v", total, topic, err)
			continue
		}
		out.published.Add(1)
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d lines were not published on %s", failed, total, topic)
	}
	return nil
}

// readLine returns the next line without its "\n" or "\r\n", io.EOF after
// the last one, and an error for a line longer than maxLine.
func readLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > maxLine+2 {
			return nil, fmt.Errorf("reading stdin: a line is longer than %d bytes", maxLine)
		}
		switch {
		case err == nil:
			line = line[:len(line)-1]
			return []byte(strings.TrimSuffix(string(line), "\r")), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(line) > 0:
			return line, nil // last line without a line ending
		case errors.Is(err, io.EOF):
			return nil, io.EOF
		default:
			return nil, fmt.Errorf("reading stdin: %w", err)
		}
	}
}

// brokerTarget turns the broker flags into a dial target, reading the
// password and PSK files.
func brokerTarget(f *clientFlags) (*dial.Target, error) {
	opts := dial.Options{
		CAFile:             f.tlsCA,
		CertFile:           f.tlsCert,
		KeyFile:            f.tlsKey,
		ServerName:         f.tlsServerName,
		InsecureSkipVerify: f.tlsInsecure,
		Username:           f.username,
		ClientID:           f.clientID,
		PersistentSession:  f.persistentSession,
		Exchange:           f.exchange,
		PSKIdentity:        f.pskIdentity,
		PathPrefix:         f.coapPrefix,
		// Start while the broker is down, and connect when it comes up.
		ConnectRetry: true,
	}
	if f.passwordFile != "" {
		password, err := readPassword(f.passwordFile)
		if err != nil {
			return nil, fmt.Errorf("--broker-password-file: %w", err)
		}
		opts.Password = password
	}
	if f.pskFile != "" {
		psk, err := readHexFile(f.pskFile, "--dtls-psk-file", 0)
		if err != nil {
			return nil, err
		}
		opts.PSK = psk
	}
	return dial.Parse(f.broker, opts)
}

// openClient loads the state file, or creates it from the identity flags
// when it does not exist yet.
func openClient(cmd *cobra.Command, f *identityFlags) (*e4.Client, error) {
	f.modeSet = cmd.Flags().Changed("mode")
	if f.state == "" {
		return nil, errors.New("--state FILE is required: the file that holds the client's keys")
	}
	cfg := &e4.Config{Store: store.NewFile(f.state), NoClock: f.noClock, MaxAge: f.maxAge, MaxFutureSkew: f.maxFutureSkew,
		DiagnoseSuite: f.diagnoseSuite}
	if f.suite != "" {
		// Given, the suite must be the state's (LoadClient checks it);
		// absent, LoadClient takes the state's and a new state gets v1.
		s, err := parseSuite(f.suite)
		if err != nil {
			return nil, err
		}
		cfg.Suite = s
	}
	client, err := e4.LoadClient(cfg)
	switch {
	case err == nil:
		return client, checkIdentity(client, f)
	case !errors.Is(err, store.ErrNotFound):
		return nil, fmt.Errorf("loading %s: %w", f.state, err)
	}
	return createClient(f, cfg, cmd.ErrOrStderr())
}

// checkIdentity refuses a state file that belongs to another client than
// the flags name, so that a wrong --state is noticed.
func checkIdentity(c *e4.Client, f *identityFlags) error {
	id, given, err := flagID(f, c.Suite())
	if err != nil {
		return err
	}
	if given && id != c.ID() {
		return fmt.Errorf("%s belongs to client %v, not to %v named by --name/--id", f.state, c.ID(), id)
	}
	if f.modeSet && f.mode != c.Mode().String() {
		return fmt.Errorf("%s holds a client in %v mode, not %s", f.state, c.Mode(), f.mode)
	}
	return nil
}

// flagID returns the id --name or --id give, and whether one was given.
func flagID(f *identityFlags, suite *e4.Suite) (e4.ID, bool, error) {
	switch {
	case f.name != "" && f.id != "":
		return e4.ID{}, false, errors.New("give --name or --id, not both")
	case f.name != "":
		return suite.IDFromName(f.name), true, nil
	case f.id != "":
		id, err := e4.ParseID(strings.TrimSpace(f.id))
		if err != nil {
			return e4.ID{}, false, fmt.Errorf("--id: %w", err)
		}
		return id, true, nil
	}
	return e4.ID{}, false, nil
}

// createClient makes a new client from the identity flags; with a Store in
// cfg, e4 saves it before returning.
func createClient(f *identityFlags, cfg *e4.Config, warn io.Writer) (*e4.Client, error) {
	id, given, err := flagID(f, cfg.Suite)
	if err != nil {
		return nil, err
	}
	if !given {
		return nil, fmt.Errorf("%s does not exist yet: give --name or --id, and --key-file or --password-file, to create it", f.state)
	}
	if (f.keyFile == "") == (f.passwordFile == "") {
		return nil, fmt.Errorf("%s does not exist yet: give one of --key-file and --password-file to create it", f.state)
	}
	switch f.mode {
	case "sk":
		key, err := clientKey(f, warn, e4.KeyLen, e4.KeyFromPassword)
		if err != nil {
			return nil, err
		}
		defer clear(key)
		return e4.NewSymKeyClient(id, key, cfg)
	case "pk":
		if f.c2PublicFile == "" {
			return nil, errors.New("--mode pk needs --c2-public-key-file to create the client")
		}
		c2Public, err := readHexFile(f.c2PublicFile, "--c2-public-key-file", e4.KeyLen)
		if err != nil {
			return nil, err
		}
		key, err := clientKey(f, warn, ed25519.PrivateKeySize, func(pw string) ([]byte, error) { return e4.Ed25519KeyFromPassword(pw) })
		if err != nil {
			return nil, err
		}
		defer clear(key)
		return e4.NewPubKeyClient(id, key, c2Public, cfg)
	}
	return nil, fmt.Errorf("unknown --mode %q: want sk or pk", f.mode)
}

// clientKey reads the client key from --key-file, or derives it from the
// password in --password-file.
func clientKey(f *identityFlags, warn io.Writer, size int, fromPassword func(string) ([]byte, error)) ([]byte, error) {
	if f.keyFile != "" {
		return readHexFile(f.keyFile, "--key-file", size)
	}
	password, err := readE4Password(f.passwordFile, warn)
	if err != nil {
		return nil, err
	}
	return fromPassword(password)
}

// readHexFile reads a key written as hex text (as keygen writes it) of
// exactly size bytes, or of any non-zero size when size is 0. The content
// never appears in an error.
func readHexFile(path, flag string, size int) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	defer clear(data)
	key, err := hex.DecodeString(strings.TrimSpace(string(data)))
	switch {
	case err != nil:
		return nil, fmt.Errorf("%s %s: not hex text", flag, path)
	case size == 0 && len(key) == 0:
		return nil, fmt.Errorf("%s %s: empty", flag, path)
	case size != 0 && len(key) != size:
		clear(key)
		return nil, fmt.Errorf("%s %s: want a %d-byte key (%d hex characters), found %d bytes", flag, path, size, 2*size, len(key))
	}
	return key, nil
}

// eventPrinter writes what the client receives and does: messages on
// stdout, diagnostics on stderr, and with --json every event on stdout as
// one JSON object per line. It is safe for concurrent use.
type eventPrinter struct {
	mu             sync.Mutex
	stdout, stderr io.Writer
	asJSON         bool
	suite          *e4.Suite // the client's, named when a command does not authenticate

	// received and published count messages, for --metrics-addr.
	received, published atomic.Uint64
	// level is the least level of the diagnostics written (--log-level).
	level slog.Level
}

func newEventPrinter(stdout, stderr io.Writer, asJSON bool) *eventPrinter {
	return &eventPrinter{stdout: stdout, stderr: stderr, asJSON: asJSON}
}

// event is one line of --json output; Type is message, command, dropped,
// ready or connection.
type event struct {
	Type          string   `json:"type"`
	Time          string   `json:"time"`
	Topic         string   `json:"topic,omitempty"`
	Payload       *string  `json:"payload,omitempty"`
	PayloadBase64 string   `json:"payload_base64,omitempty"`
	Command       string   `json:"command,omitempty"`
	Error         string   `json:"error,omitempty"`
	ID            string   `json:"id,omitempty"`
	Mode          string   `json:"mode,omitempty"`
	Suite         string   `json:"suite,omitempty"`
	ControlTopic  string   `json:"control_topic,omitempty"`
	Broker        string   `json:"broker,omitempty"`
	State         string   `json:"state,omitempty"`
	Subscriptions []string `json:"subscriptions,omitempty"`
}

// emit writes ev as a JSON line when --json is on.
func (p *eventPrinter) emit(ev *event) {
	if !p.asJSON {
		return
	}
	ev.Time = time.Now().UTC().Format(time.RFC3339Nano)
	line, err := json.Marshal(ev)
	if err != nil {
		return // cannot happen: strings and slices of strings only
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	_, _ = p.stdout.Write(append(line, '\n'))
}

// notice writes one diagnostic line on stderr, at info level.
func (p *eventPrinter) notice(format string, args ...any) {
	p.noticeAt(slog.LevelInfo, format, args...)
}

// noticeAt writes one diagnostic line on stderr if level is at least the
// --log-level.
func (p *eventPrinter) noticeAt(level slog.Level, format string, args ...any) {
	if level < p.level {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.stderr, "e4 client: "+format+"\n", args...)
}

// message prints a decrypted message.
func (p *eventPrinter) message(msg *transport.Message) {
	p.received.Add(1)
	if p.asJSON {
		ev := &event{Type: "message", Topic: msg.Topic}
		if utf8.Valid(msg.Payload) {
			text := string(msg.Payload)
			ev.Payload = &text
		} else {
			ev.PayloadBase64 = base64.StdEncoding.EncodeToString(msg.Payload)
		}
		p.emit(ev)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.stdout, "%s: %s\n", msg.Topic, printable(msg.Payload))
}

// printable returns payload as is when it is UTF-8 text without control
// characters (tabs aside), else as a quoted Go string, so that one message
// is always one line.
func printable(payload []byte) string {
	s := string(payload)
	plain := utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool {
		return r != '\t' && !unicode.IsGraphic(r)
	})
	if plain {
		return s
	}
	return strconv.Quote(s)
}

// command reports a command from C2, applied or refused; the E4 client
// has already saved the state when it was applied.
func (p *eventPrinter) command(cmd command.Code, err error) {
	switch {
	case err == nil:
		p.notice("applied command %v", cmd)
		p.emit(&event{Type: "command", Command: cmd.String()})
	case errors.Is(err, e4.ErrStore):
		p.noticeAt(slog.LevelError, "applied command %v but could not save the state: %v", cmd, err)
		p.emit(&event{Type: "command", Command: cmd.String(), Error: err.Error()})
	default:
		if errors.Is(err, e4.ErrAuthentication) && !errors.Is(err, e4.ErrSuiteMismatch) {
			// C2 of another suite looks like a wrong key; say which suite
			// this client runs, so that a mode mismatch is easy to spot.
			err = fmt.Errorf("%w [this client runs suite %v; C2 must run the same]", err, p.suite)
		}
		p.noticeAt(slog.LevelWarn, "refused a command on the control topic: %v", err)
		p.emit(&event{Type: "command", Error: err.Error()})
	}
}

// connection returns the listener that reports every loss and recovery
// of the broker connection. A first connection made at once is not
// reported: "ready" follows.
func (p *eventPrinter) connection(broker string) func(transport.ConnectionEvent) {
	wasDown := false // events come one at a time
	return func(ev transport.ConnectionEvent) {
		if ev.State == transport.Connected {
			if !wasDown {
				return
			}
			p.notice("connected to the broker %s", broker)
			p.emit(&event{Type: "connection", State: ev.State.String(), Broker: broker})
			return
		}
		wasDown = true
		p.notice("broker %s connection down, retrying: %v", broker, ev.Err)
		e := &event{Type: "connection", State: ev.State.String(), Broker: broker}
		if ev.Err != nil {
			e.Error = ev.Err.Error()
		}
		p.emit(e)
	}
}

// synced reports a sync request that could not be sent.
func (p *eventPrinter) synced(err error) {
	if err != nil {
		p.noticeAt(slog.LevelWarn, "could not send the sync request (sent again after the next reconnection): %v", err)
		return
	}
	p.noticeAt(slog.LevelDebug, "sent a sync request")
}

// dropped reports a message that could not be unprotected, without its
// content.
func (p *eventPrinter) dropped(topic string, err error) {
	p.noticeAt(slog.LevelWarn, "dropped a message on %s: %v", topic, err)
	p.emit(&event{Type: "dropped", Topic: topic, Error: err.Error()})
}

// ready reports that the client is connected and subscribed.
func (p *eventPrinter) ready(c *e4.Client, broker string, filters []string) {
	subscribed := "nothing but its control topic"
	if len(filters) > 0 {
		subscribed = strings.Join(filters, ", ")
	}
	p.notice("ready: client %v (%v mode, suite %v) on %s, control topic %s, subscribed to %s", c.ID(), c.Mode(), c.Suite(), broker, c.ControlTopic(), subscribed)
	p.emit(&event{Type: "ready", ID: c.ID().String(), Mode: c.Mode().String(), Suite: c.Suite().Name(), ControlTopic: c.ControlTopic(), Broker: broker, Subscriptions: filters})
}

type setTopicKeyFlags struct{ topic, keyFile string }

func newClientSetTopicKeyCommand(id *identityFlags) *cobra.Command {
	var f setTopicKeyFlags
	cmd := &cobra.Command{
		Use:   "set-topic-key --state FILE --topic TOPIC --topic-key-file FILE",
		Short: "Give the client the key of a topic, without C2",
		Long: `set-topic-key stores a topic key in the client's state file (created first, as
"e4 client" does, if it does not exist), as C2's SetTopicKey command would.
The key file holds 32 bytes as hex, as "e4 keygen" writes it. Run it while
the client is stopped: a running client keeps its own copy of the state and
would write it back on its next command.`,
		Example: `  e4 keygen --out topic.key
  e4 client set-topic-key --state dev.state --name thermostat-1 --key-file dev.key --topic home/temp --topic-key-file topic.key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runSetTopicKey(cmd, id, &f) },
	}
	cmd.Flags().StringVar(&f.topic, "topic", "", "the topic (required)")
	cmd.Flags().StringVar(&f.keyFile, "topic-key-file", "", "file holding the 32-byte topic key, hex (required)")
	_ = cmd.MarkFlagRequired("topic")
	_ = cmd.MarkFlagRequired("topic-key-file")
	return cmd
}

func runSetTopicKey(cmd *cobra.Command, id *identityFlags, f *setTopicKeyFlags) error {
	if err := transport.ValidateTopic(f.topic); err != nil {
		return fmt.Errorf("--topic %q: %w", f.topic, err)
	}
	key, err := readHexFile(f.keyFile, "--topic-key-file", e4.KeyLen)
	if err != nil {
		return err
	}
	defer clear(key)
	client, err := openClient(cmd, id)
	if err != nil {
		return err
	}
	if err := client.SetTopicKey(key, f.topic); err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "e4 client: key of %s stored in %s\n", f.topic, id.state)
	return nil
}

type setPubKeyFlags struct{ signerName, signerID, publicKeyFile string }

func newClientSetPubKeyCommand(id *identityFlags) *cobra.Command {
	var f setPubKeyFlags
	cmd := &cobra.Command{
		Use:   "set-pub-key --state FILE (--signer-name NAME | --signer-id HEX) --public-key-file FILE",
		Short: "Tell a pk-mode client the public key of a sender, without C2",
		Long: `set-pub-key stores the Ed25519 public key of another client in a pk-mode
client's state file, as C2's SetPubKey command would, so that the client
accepts the messages that sender signs. The key file holds 32 bytes as hex:
the FILE.pub that "e4 keygen --type ed25519" writes. Run it while the client
is stopped.`,
		Example: `  e4 client set-pub-key --state display.state --signer-name thermostat-1 --public-key-file thermostat.key.pub`,
		Args:    cobra.NoArgs,
		RunE:    func(cmd *cobra.Command, _ []string) error { return runSetPubKey(cmd, id, &f) },
	}
	cmd.Flags().StringVar(&f.signerName, "signer-name", "", "the sender's device name")
	cmd.Flags().StringVar(&f.signerID, "signer-id", "", "the sender's client id, 32 hex characters")
	cmd.Flags().StringVar(&f.publicKeyFile, "public-key-file", "", "file holding the sender's Ed25519 public key, hex (required)")
	_ = cmd.MarkFlagRequired("public-key-file")
	return cmd
}

func runSetPubKey(cmd *cobra.Command, id *identityFlags, f *setPubKeyFlags) error {
	if f.signerName == "" && f.signerID == "" {
		return errors.New("name the sender with --signer-name or --signer-id")
	}
	pub, err := readHexFile(f.publicKeyFile, "--public-key-file", ed25519.PublicKeySize)
	if err != nil {
		return err
	}
	client, err := openClient(cmd, id)
	if err != nil {
		return err
	}
	// A sender's id from its name is the deployment's, so the client's suite.
	signer, _, err := flagID(&identityFlags{name: f.signerName, id: f.signerID}, client.Suite())
	if err != nil {
		return fmt.Errorf("the sender: %w (use --signer-name or --signer-id)", err)
	}
	if client.Mode() != e4.PubKey {
		return fmt.Errorf("%s holds an sk-mode client: only pk-mode clients check senders' signatures", id.state)
	}
	if err := client.SetPubKey(signer, pub); err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "e4 client: public key of sender %v stored in %s\n", signer, id.state)
	return nil
}

func newClientInfoCommand(id *identityFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "info --state FILE",
		Short: "Show the client's id, mode, control topic and public key (never its secret keys)",
		Long: `info prints what C2 needs to know to register the client: its id, its mode,
its control topic and, in pk mode, its Ed25519 public key. The state file is
created first if it does not exist and the creation flags are given.`,
		Example: "  e4 client info --state dev.state",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			client, err := openClient(cmd, id)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "id:            %v\nmode:          %v\nsuite:         %v\ncontrol topic: %s\n", client.ID(), client.Mode(), client.Suite(), client.ControlTopic())
			if pub := client.PublicKey(); pub != nil {
				fmt.Fprintf(w, "public key:    %x\n", []byte(pub))
			}
			return nil
		},
	}
}

// Package devenv runs "e4 dev": C2 on SQLite in a local folder, the
// embedded MQTT broker and three simulated devices, so a newcomer sees E4
// end to end with nothing to install. It shows what the broker carries
// (ciphertext) beside what a device reads (plaintext), rotates the topic key
// while devices keep talking, and removes a device from the topic.
package devenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/c2/api"
	"github.com/e4-iot/e4kit/c2/seal"
	"github.com/e4-iot/e4kit/c2/store/sqlite"
	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/transport/mqtt"
	"github.com/e4-iot/e4kit/transport/mqtt/mqttbroker"
)

// Options configures Run. Zero fields take the defaults shown.
type Options struct {
	// Dir holds the database, the master key and the devices' state
	// (".e4dev").
	Dir string
	// BrokerAddr is where the embedded MQTT broker listens
	// ("127.0.0.1:1883", or a free port if that one is taken).
	BrokerAddr string
	// PublishEvery is each device's telemetry period (1 s).
	PublishEvery time.Duration
	// RotateEvery is the topic key rotation period (5 s).
	RotateEvery time.Duration
	// RemoveAfter is how many rotations happen before a device is removed
	// from the topic (2).
	RemoveAfter int
	// Duration stops the run that long after the devices start; zero runs
	// until ctx ends.
	Duration time.Duration
	// GRPCAddr and HTTPAddr are where C2's API listens
	// ("127.0.0.1:9443" and "127.0.0.1:8443", or free ports if taken).
	GRPCAddr, HTTPAddr string
	// AwaitKey is how long a device holds a message it cannot read yet,
	// waiting for C2's next command (1 s); see e4transport.Options.
	AwaitKey time.Duration
	// Suite is the suite of C2 and the devices (nil: e4.V1). C2 records it
	// in the folder's database, so a folder keeps the suite it started
	// with.
	Suite *e4.Suite
}

func (o *Options) setDefaults() {
	if o.Dir == "" {
		o.Dir = ".e4dev"
	}
	if o.BrokerAddr == "" {
		o.BrokerAddr = "127.0.0.1:1883"
	}
	if o.PublishEvery <= 0 {
		o.PublishEvery = time.Second
	}
	if o.RotateEvery <= 0 {
		o.RotateEvery = 5 * time.Second
	}
	if o.RemoveAfter <= 0 {
		o.RemoveAfter = 2
	}
	if o.GRPCAddr == "" {
		o.GRPCAddr = "127.0.0.1:9443"
	}
	if o.HTTPAddr == "" {
		o.HTTPAddr = "127.0.0.1:8443"
	}
	if o.AwaitKey <= 0 {
		o.AwaitKey = time.Second
	}
}

// Topic is the topic the simulated devices talk on.
const Topic = "plant/telemetry"

// DeviceNames are the simulated devices; the last one is removed from the
// topic during the run.
var DeviceNames = []string{"boiler-sensor", "dashboard", "old-gateway"}

// env is one run's set of parts.
type env struct {
	opts   Options
	out    *printer
	broker *mqttbroker.Broker
	svc    *c2.Service
	closes []func() error
}

// Summary is what a run did.
type Summary struct {
	Rotations int
	Removed   string // the device removed from the topic, if it came to that
	Devices   []DeviceSummary
}

// DeviceSummary counts one device's messages.
type DeviceSummary struct {
	Name      string
	Published int64
	Read      int
	// Lost counts gaps in the sequence numbers a device read from each
	// sender while both were members: messages lost to a rotation would
	// show here.
	Lost int
	// Unreadable counts messages the device could not unprotect (expected
	// only for the removed device).
	Unreadable int64
}

// Run runs the development environment until ctx ends or, once the
// devices run, opts.Duration passes, printing what happens to w. It stops
// everything it started before returning.
func Run(ctx context.Context, opts Options, w io.Writer) (sum Summary, err error) {
	opts.setDefaults()
	e := &env{opts: opts, out: &printer{w: w}}
	defer func() { err = errors.Join(err, e.close()) }()
	if err := e.start(ctx); err != nil {
		return sum, err
	}
	return e.play(ctx)
}

func (e *env) close() error {
	var errs []error
	for i := len(e.closes) - 1; i >= 0; i-- {
		errs = append(errs, e.closes[i]())
	}
	return errors.Join(errs...)
}

// start opens the database, the broker and C2.
func (e *env) start(ctx context.Context) error {
	if err := os.MkdirAll(filepath.Join(e.opts.Dir, "devices"), 0o700); err != nil {
		return err
	}
	keys, err := masterKey(filepath.Join(e.opts.Dir, "master.key"))
	if err != nil {
		return err
	}
	dbPath := filepath.Join(e.opts.Dir, "c2.db")
	st, err := sqlite.Open(ctx, dbPath)
	if err != nil {
		return err
	}
	e.closes = append(e.closes, st.Close)
	if e.broker, err = startBroker(e.opts.BrokerAddr); err != nil {
		return err
	}
	e.closes = append(e.closes, e.broker.Close)
	c2Transport, err := mqtt.Dial(ctx, mqtt.Config{Brokers: []string{e.broker.URL()}, ClientID: "e4kit-c2"})
	if err != nil {
		return err
	}
	e.closes = append(e.closes, c2Transport.Close)
	hub := api.NewEventHub(0)
	e.svc, err = c2.New(ctx, c2.Config{
		Mode: e4.SymKey, Suite: e.opts.Suite, Store: st, Keyring: keys, Transport: c2Transport,
		Logger: slog.New(slog.DiscardHandler), OnEvent: hub.Publish,
	})
	if err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- e.svc.Run(runCtx) }()
	e.closes = append(e.closes, func() error { stop(); return <-done })
	e.out.line("C2        symmetric-key mode, suite %s, database %s (keys sealed under %s)", e.svc.Suite(), dbPath, filepath.Join(e.opts.Dir, "master.key"))
	if err := e.startAPI(ctx, st, hub); err != nil {
		return err
	}
	e.out.line("broker    embedded MQTT at %s — C2 sends commands there on e4/<client id>", e.broker.URL())
	e.out.line("          any MQTT client on it sees only ciphertext, e.g. mosquitto_sub -h %s -p %s -t '#' -v", hostOf(e.broker.Addr()), portOf(e.broker.Addr()))
	return nil
}

// masterKey loads the folder's master key, creating it on first run.
func masterKey(path string) (*seal.Keyring, error) {
	key, err := seal.KeyFromFile(path)
	if errors.Is(err, os.ErrNotExist) {
		key, err = seal.WriteKeyFile(path)
	}
	if err != nil {
		return nil, err
	}
	return seal.NewKeyring(key)
}

// startBroker listens on addr, or on a free port of the same host when
// addr is taken (another broker on 1883 is common).
func startBroker(addr string) (*mqttbroker.Broker, error) {
	b, err := mqttbroker.Start(addr, nil)
	if err == nil {
		return b, nil
	}
	host, _, splitErr := net.SplitHostPort(addr)
	if splitErr != nil {
		return nil, err
	}
	return mqttbroker.Start(net.JoinHostPort(host, "0"), nil)
}

// printer serializes output lines from several goroutines.
type printer struct {
	mu sync.Mutex
	w  io.Writer
}

func (p *printer) line(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format+"\n", args...)
}

func hostOf(addr string) string {
	host, _, _ := net.SplitHostPort(addr)
	return host
}

func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}

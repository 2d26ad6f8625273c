package coap_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/e4-iot/e4kit/internal/testbroker"
	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/coap"
	"github.com/e4-iot/e4kit/transport/coap/broker"
	"github.com/e4-iot/e4kit/transport/transporttest"
)

// testTimeout bounds one operation of a test.
const testTimeout = 20 * time.Second

// inProcessBroker is our broker run by the test on a fixed loopback port,
// so that it can be restarted where clients expect it.
type inProcessBroker struct {
	t    testing.TB
	addr string
	opts broker.Options

	mu sync.Mutex
	b  *broker.Broker
}

// startBroker starts our broker on a free port; it stops with the test.
func startBroker(t testing.TB, opts *broker.Options) *inProcessBroker {
	t.Helper()
	p := &inProcessBroker{t: t, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(testbroker.FreePort(t, "udp")))}
	if opts != nil {
		p.opts = *opts
	}
	if p.opts.Logf == nil {
		p.opts.Logf = t.Logf
	}
	if err := p.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.stop)
	return p
}

func (p *inProcessBroker) start() error {
	b, err := broker.Start(p.addr, &p.opts)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.b = b
	p.mu.Unlock()
	return nil
}

func (p *inProcessBroker) stop() {
	p.mu.Lock()
	b := p.b
	p.b = nil
	p.mu.Unlock()
	if b != nil {
		_ = b.Close()
	}
}

// restart closes the broker (observers are told) and starts a new one on
// the same port, retrying while the port is not yet free.
func (p *inProcessBroker) restart(ctx context.Context) error {
	p.stop()
	for {
		err := p.start()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (p *inProcessBroker) current() *broker.Broker {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.b
}

// dialApp opens a go-coap connection as an application would, block-wise
// transfers enabled; it closes with the test.
func dialApp(t testing.TB, addr string) *udpclient.Conn {
	t.Helper()
	conn, err := udp.Dial(addr,
		options.WithBlockwise(true, blockwise.SZX1024, 30*time.Second),
		options.WithErrors(func(error) {}))
	if err != nil {
		t.Fatalf("dialling %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// testConfig is the adapter configuration of the tests: quick to notice a
// lost broker.
func testConfig(addr string) coap.Config {
	return coap.Config{
		Addr:      addr,
		Timeout:   2 * time.Second,
		KeepAlive: 500 * time.Millisecond,
	}
}

// dial connects a transport that closes with the test.
func dial(t testing.TB, cfg coap.Config) *coap.Transport {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	tr, err := coap.Dial(ctx, cfg)
	if err != nil {
		t.Fatalf("dialling %s: %v", cfg.Addr, err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

// harness runs the conformance suite against an in-process broker of its
// own.
type harness struct {
	broker   *inProcessBroker
	features transporttest.Features
	config   func(addr string) coap.Config
}

func newHarness(_ context.Context, t *testing.T) (transporttest.Harness, error) {
	return &harness{
		broker: startBroker(t, nil),
		features: transporttest.Features{
			Wildcards:       true,
			OrderedPerTopic: true,
			MaxPayload:      64 << 10,
			BrokerRestart:   true,
			EmptyPayload:    true,
		},
		config: testConfig,
	}, nil
}

func (h *harness) MakeTransport(ctx context.Context) (transport.Transport, error) {
	return coap.Dial(ctx, h.config(h.broker.addr))
}

func (h *harness) RestartBroker(ctx context.Context) error { return h.broker.restart(ctx) }

func (h *harness) Features() transporttest.Features { return h.features }

func (h *harness) Close() {}

func TestConformance(t *testing.T) {
	transporttest.RunAll(t, newHarness)
}

package amqp_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/internal/testbroker"
	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/amqp"
	"github.com/e4-iot/e4kit/transport/transporttest"
)

// One RabbitMQ node (with the MQTT plugin) serves every test of the
// package: it boots in several seconds. It starts on first use, so tests
// that need no broker run without it.
var (
	rabbitOnce sync.Once
	rabbit     *testbroker.RabbitMQ
	rabbitErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if rabbit != nil {
		rabbit.Stop()
	}
	os.Exit(code)
}

// broker returns the package's RabbitMQ node, starting it if needed.
func broker(t testing.TB) *testbroker.RabbitMQ {
	t.Helper()
	testbroker.RequireBinary(t, testbroker.RabbitMQBinDir+"/rabbitmq-server")
	rabbitOnce.Do(func() {
		rabbit, rabbitErr = testbroker.NewRabbitMQ(&testbroker.RabbitMQOptions{MQTT: true})
	})
	if rabbitErr != nil {
		t.Fatalf("starting RabbitMQ: %v", rabbitErr)
	}
	return rabbit
}

// testConfig is a Config for the test node with quick reconnection.
func testConfig(r *testbroker.RabbitMQ) amqp.Config {
	return amqp.Config{URL: r.AMQPURL(), MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second}
}

// harness runs the conformance suite against the package's node.
type harness struct{ r *testbroker.RabbitMQ }

func newHarness(_ context.Context, t *testing.T) (transporttest.Harness, error) {
	return &harness{r: broker(t)}, nil
}

func (h *harness) MakeTransport(ctx context.Context) (transport.Transport, error) {
	return amqp.Dial(ctx, testConfig(h.r))
}

func (h *harness) RestartBroker(ctx context.Context) error { return h.r.Restart(ctx) }

func (h *harness) Features() transporttest.Features {
	return transporttest.Features{
		Wildcards:        true,
		OrderedPerTopic:  true,
		BrokerRestart:    true,
		ConnectionEvents: true,
		EmptyPayload:     true,
	}
}

func (h *harness) Close() {}

func TestConformance(t *testing.T) {
	transporttest.RunAll(t, newHarness)
}

// dial opens a transport to the test node, closed when the test ends.
func dial(t testing.TB, cfg amqp.Config) *amqp.Transport {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tr, err := amqp.Dial(ctx, cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

// uniqueTopic returns a topic no other test uses.
func uniqueTopic(t testing.TB, levels string) string {
	return fmt.Sprintf("e4kit-test/%s/%d/%s", sanitize(t.Name()), time.Now().UnixNano(), levels)
}

func sanitize(name string) string {
	out := []byte(name)
	for i, c := range out {
		if c == '/' || c == '.' || c == '+' || c == '#' || c == '*' {
			out[i] = '_'
		}
	}
	return string(out)
}

// testContext bounds one test step.
func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

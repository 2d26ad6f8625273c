package mqtt_test

import (
	"context"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/internal/testbroker"
	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/mqtt"
	"github.com/e4-iot/e4kit/transport/mqtt/mqttbroker"
	"github.com/e4-iot/e4kit/transport/transporttest"
)

// features of the MQTT adapter, whatever the broker.
var features = transporttest.Features{
	Wildcards:        true,
	OrderedPerTopic:  true,
	BrokerRestart:    true,
	ConnectionEvents: true,
	EmptyPayload:     true,
}

// dialConfig is how the tests connect: a short reconnect cap keeps the
// restart tests quick.
func dialConfig(url string) mqtt.Config {
	return mqtt.Config{Brokers: []string{url}, MaxReconnectInterval: 2 * time.Second}
}

// mosquittoHarness runs the suite against a Mosquitto of its own.
type mosquittoHarness struct{ m *testbroker.Mosquitto }

func newMosquittoHarness(_ context.Context, t *testing.T) (transporttest.Harness, error) {
	return &mosquittoHarness{m: testbroker.StartMosquitto(t, nil)}, nil
}

func (h *mosquittoHarness) MakeTransport(ctx context.Context) (transport.Transport, error) {
	return mqtt.Dial(ctx, dialConfig(h.m.URL()))
}
func (h *mosquittoHarness) RestartBroker(ctx context.Context) error { return h.m.Restart(ctx) }
func (h *mosquittoHarness) Features() transporttest.Features        { return features }
func (h *mosquittoHarness) Close()                                  {}

func TestConformanceMosquitto(t *testing.T) {
	transporttest.RunAll(t, newMosquittoHarness)
}

// embeddedHarness runs the suite against the embedded broker; a restart
// closes it and starts a new one on the same address.
type embeddedHarness struct{ b *mqttbroker.Broker }

func newEmbeddedHarness(ctx context.Context, t *testing.T) (transporttest.Harness, error) {
	b, err := mqttbroker.Start("127.0.0.1:0", nil)
	if err != nil {
		return nil, err
	}
	h := &embeddedHarness{b: b}
	t.Cleanup(func() { _ = h.b.Close() })
	return h, nil
}

func (h *embeddedHarness) MakeTransport(ctx context.Context) (transport.Transport, error) {
	return mqtt.Dial(ctx, dialConfig(h.b.URL()))
}

func (h *embeddedHarness) RestartBroker(ctx context.Context) error {
	addr := h.b.Addr()
	if err := h.b.Close(); err != nil {
		return err
	}
	b, err := mqttbroker.Start(addr, nil)
	if err != nil {
		return err
	}
	h.b = b
	return nil
}
func (h *embeddedHarness) Features() transporttest.Features { return features }
func (h *embeddedHarness) Close()                           {}

func TestConformanceEmbedded(t *testing.T) {
	transporttest.RunAll(t, newEmbeddedHarness)
}

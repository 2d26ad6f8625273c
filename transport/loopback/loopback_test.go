package loopback_test

import (
	"context"
	"testing"

	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/loopback"
	"github.com/e4-iot/e4kit/transport/transporttest"
)

// harness connects the conformance suite to a broker of its own.
type harness struct{ broker *loopback.Broker }

func newHarness(context.Context, *testing.T) (transporttest.Harness, error) {
	return &harness{broker: loopback.NewBroker()}, nil
}

func (h *harness) MakeTransport(context.Context) (transport.Transport, error) {
	return h.broker.Connect(), nil
}

func (h *harness) RestartBroker(context.Context) error {
	h.broker.Restart()
	return nil
}

func (h *harness) Features() transporttest.Features {
	return transporttest.Features{
		Wildcards:       true,
		OrderedPerTopic: true,
		MaxPayload:      1 << 20, // no limit; a larger payload than the default
		BrokerRestart:   true,
		EmptyPayload:    true,
	}
}

func (h *harness) Close() {}

func TestConformance(t *testing.T) {
	transporttest.RunAll(t, newHarness)
}

package transporttest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/e4transport"
)

// WithE4 wraps a harness so that every transport it makes is protected by
// E4: MakeTransport returns e4transport.Protect(ctx, inner, client, nil) with
// a client of its own per transport (a client's replay cache would refuse
// the second copy of a message delivered to two subscriptions of one
// client, as it should).
//
// The wrapper is a TopicPreparer: PrepareTopic draws a random key for the
// topic once and installs it in every client, those made before and those
// made after. It also forwards PrepareTopic to the inner harness, for the
// suite's topics and for each client's control topic.
//
// Features are those of the inner harness except MaxPayload: a non-zero
// inner MaxPayload is taken as a limit of the wire, so the wrapper lowers it
// by e4.SKOverhead, the bytes E4 adds to each message.
//
// Run the suite both ways:
//
//	transporttest.RunConformanceTests(t, newHarness)
//	transporttest.RunConformanceTests(t, transporttest.WithE4(newHarness))
func WithE4(newHarness HarnessMaker) HarnessMaker {
	return func(ctx context.Context, t *testing.T) (Harness, error) {
		inner, err := newHarness(ctx, t)
		if err != nil {
			return nil, err
		}
		return &e4Harness{inner: inner, keys: make(map[string][]byte)}, nil
	}
}

// e4Harness is the harness WithE4 returns.
type e4Harness struct {
	inner Harness

	mu      sync.Mutex // guards keys and clients
	keys    map[string][]byte
	clients []*e4.Client
}

// MakeTransport opens an inner transport and protects it with a new client
// that holds every topic key prepared so far.
func (h *e4Harness) MakeTransport(ctx context.Context) (transport.Transport, error) {
	client, _, err := newE4Client()
	if err != nil {
		return nil, err
	}
	if err := h.register(client); err != nil {
		return nil, err
	}
	if err := prepareInner(h.inner, client.ControlTopic()); err != nil {
		return nil, err
	}
	inner, err := h.inner.MakeTransport(ctx)
	if err != nil {
		return nil, err
	}
	return protect(ctx, inner, client, nil)
}

// register installs the known topic keys in client and adds it to the
// clients that later topics are installed in.
func (h *e4Harness) register(client *e4.Client) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	for topic, key := range h.keys {
		if err := client.SetTopicKey(key, topic); err != nil {
			return fmt.Errorf("transporttest: installing the key of %q: %w", topic, err)
		}
	}
	h.clients = append(h.clients, client)
	return nil
}

// PrepareTopic gives topic a key, the same in every client.
func (h *e4Harness) PrepareTopic(topic string) error {
	if err := h.addTopic(topic); err != nil {
		return err
	}
	return prepareInner(h.inner, topic)
}

func (h *e4Harness) addTopic(topic string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.keys[topic]; ok {
		return nil
	}
	key := randomKey()
	for _, client := range h.clients {
		if err := client.SetTopicKey(key, topic); err != nil {
			return fmt.Errorf("transporttest: installing the key of %q: %w", topic, err)
		}
	}
	h.keys[topic] = key
	return nil
}

// RestartBroker restarts the inner harness's broker.
func (h *e4Harness) RestartBroker(ctx context.Context) error { return h.inner.RestartBroker(ctx) }

// Features returns the inner features with room left for E4's overhead.
func (h *e4Harness) Features() Features {
	f := h.inner.Features()
	if f.MaxPayload > 0 {
		f.MaxPayload -= e4.SKOverhead
	}
	return f
}

// Close closes the inner harness.
func (h *e4Harness) Close() { h.inner.Close() }

// prepareInner forwards PrepareTopic to a harness that wants it.
func prepareInner(h Harness, topic string) error {
	if p, ok := h.(TopicPreparer); ok {
		return p.PrepareTopic(topic)
	}
	return nil
}

// protect wraps inner, closing it if that fails.
func protect(ctx context.Context, inner transport.Transport, client *e4.Client, opts *e4transport.Options) (*e4transport.Protected, error) {
	p, err := e4transport.Protect(ctx, inner, client, opts)
	if err != nil {
		return nil, errors.Join(err, inner.Close())
	}
	return p, nil
}

// newE4Client returns a symmetric-key client with a random id and key, and
// the key (C2 needs it to send commands).
func newE4Client() (*e4.Client, []byte, error) {
	var id e4.ID
	_, _ = rand.Read(id[:]) // crypto/rand.Read never fails
	key := randomKey()
	client, err := e4.NewSymKeyClient(id, key, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("transporttest: new E4 client: %w", err)
	}
	return client, key, nil
}

func randomKey() []byte {
	key := make([]byte, e4.KeyLen)
	_, _ = rand.Read(key)
	return key
}

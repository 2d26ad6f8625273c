package mqtt

import (
	"context"
	"errors"
	"fmt"
	"sync"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/transport"
)

// wrapped maps each paho client given to FromClient to its live Transport,
// for ResubscribeOnConnect, and refuses a second wrapper: paho keeps one
// message route per filter string, which two wrappers would fight over.
var wrapped = struct {
	sync.Mutex
	m map[paho.Client]*Transport
}{m: make(map[paho.Client]*Transport)}

// FromClient wraps an application's paho client, configured and connected
// by the application (its broker, TLS, credentials, session and reconnect
// options stay as they are). Publish uses QoS 1 unless told otherwise,
// and keeps at most DefaultMaxInflight of its QoS 1 and 2 messages in
// flight (messages the application publishes on c directly are not
// counted; see Config.MaxInflight for why the bound matters).
//
// Resubscription: paho's options cannot be changed once the client exists,
// so the Transport cannot install its own OnConnect handler. For its
// subscriptions to survive a reconnect to a broker that forgot them (clean
// session, or a restarted broker), build the client with
//
//	opts.SetOnConnectHandler(mqtt.ResubscribeOnConnect(yourHandler))
//
// With a persistent session on a broker that keeps it, the broker restores
// them by itself. Without either, subscriptions stop after a reconnect.
//
// The Transport routes its messages through paho routes named after its
// broker filters: the application should not subscribe to those same
// filters with handlers of its own on this client, nor to filters that
// overlap them on brokers that send one copy per subscription (Mosquitto),
// or it will receive duplicates. Close unsubscribes what the Transport
// subscribed and leaves the client connected. One Transport per client.
func FromClient(c paho.Client) (*Transport, error) {
	if c == nil {
		return nil, errors.New("mqtt: FromClient: nil client")
	}
	if !c.IsConnected() {
		return nil, errors.New("mqtt: FromClient: the client is not connected (call Connect and wait for its token first)")
	}
	t := newTransport(transport.AtLeastOnce, 0, 0)
	t.client = c
	wrapped.Lock()
	defer wrapped.Unlock()
	if _, ok := wrapped.m[c]; ok {
		return nil, errors.New("mqtt: FromClient: the client is already wrapped by a live Transport")
	}
	wrapped.m[c] = t
	return t, nil
}

// unregister forgets a closed Transport made by FromClient.
func unregister(t *Transport) {
	wrapped.Lock()
	defer wrapped.Unlock()
	if wrapped.m[t.client] == t {
		delete(wrapped.m, t.client)
	}
}

// ResubscribeOnConnect returns an OnConnectHandler for paho's options that
// calls next (which may be nil) and then makes the Transport that
// FromClient made for the connecting client, if any, subscribe again to
// everything it had subscribed.
func ResubscribeOnConnect(next paho.OnConnectHandler) paho.OnConnectHandler {
	return func(c paho.Client) {
		if next != nil {
			next(c)
		}
		wrapped.Lock()
		t := wrapped.m[c]
		wrapped.Unlock()
		if t != nil {
			t.resubscribe()
			t.listeners.Emit(transport.ConnectionEvent{State: transport.Connected})
		}
	}
}

// Protect adds E4 to an application's connected paho client in one call:
// it wraps c with FromClient and the result with transport.Protect, which
// subscribes to e4c's control topic. Closing the Protected transport
// releases the wrapper, not the client. opts may be nil (strict policies).
func Protect(ctx context.Context, c paho.Client, e4c *e4.Client, opts *transport.ProtectOptions) (*transport.Protected, error) {
	t, err := FromClient(c)
	if err != nil {
		return nil, err
	}
	p, err := transport.Protect(ctx, t, e4c, opts)
	if err != nil {
		_ = t.Close()
		return nil, fmt.Errorf("mqtt: protecting the client: %w", err)
	}
	return p, nil
}

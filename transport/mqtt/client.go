package mqtt

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/e4transport"
)

// wrapped maps each paho client given to FromClient to its live Transport,
// for ResubscribeOnConnect, and refuses a second wrapper: paho keeps one
// message route per filter string, which two wrappers would fight over.
var wrapped = struct {
	sync.Mutex
	m map[paho.Client]*Transport
}{m: make(map[paho.Client]*Transport)}

// ErrNoResubscribe is returned by FromClient (and Protect) for a client
// that reconnects by itself but was not built with ResubscribeOnConnect:
// its E4 subscriptions, the control topic's included, would silently stop
// after the first reconnection to a broker that forgot them.
var ErrNoResubscribe = errors.New("mqtt: the paho client reconnects by itself (AutoReconnect) but was not built with " +
	"opts.SetOnConnectHandler(mqtt.ResubscribeOnConnect(yourHandler)): the E4 subscriptions, C2's commands included, " +
	"would stop after a reconnection; add that line where the client's options are made (yourHandler may be nil), " +
	"or turn AutoReconnect off")

// hookWait bounds how long FromClient waits for the OnConnect handler of
// the first connection, which paho starts in a goroutine of its own
// around the time the connect token completes, to show it is
// ResubscribeOnConnect's. Only a client without it waits this long.
const hookWait = 2 * time.Second

// FromClient wraps an application's paho client, configured and connected
// by the application (its broker, TLS, credentials, session and reconnect
// options stay as they are). cfg may be nil; FromClient takes DefaultQoS,
// QueueSize, QueueBytes, MaxMessageSize and MaxInflight from it and
// ignores the rest. Publish uses QoS 1 unless told otherwise, and keeps
// at most MaxInflight (default DefaultMaxInflight) of its QoS 1 and 2
// messages in flight (messages the application publishes on c directly
// are not counted; see Config.MaxInflight for why the bound matters).
//
// Resubscription: paho's options cannot be changed once the client exists,
// so the Transport cannot install its own OnConnect handler. A client that
// reconnects by itself (paho's AutoReconnect, its default) must be built
// with
//
//	opts.SetOnConnectHandler(mqtt.ResubscribeOnConnect(yourHandler))
//
// so that the Transport's subscriptions survive a reconnect to a broker
// that forgot them (clean session, a restarted broker, one that lost its
// persistent sessions). Without it FromClient fails with ErrNoResubscribe
// (after waiting up to two seconds for the first connection's OnConnect
// handler to run) instead of returning a Transport whose subscriptions
// would silently stop. A client without AutoReconnect needs no handler:
// once its connection is lost, Publish and Subscribe fail.
//
// The Transport routes its messages through paho routes named after its
// broker filters: the application should not subscribe to those same
// filters with handlers of its own on this client, nor to filters that
// overlap them on brokers that send one copy per subscription (Mosquitto),
// or it will receive duplicates. Close unsubscribes what the Transport
// subscribed and leaves the client connected. One Transport per client.
func FromClient(c paho.Client, cfg *Config) (*Transport, error) {
	if c == nil {
		return nil, errors.New("mqtt: FromClient: nil client")
	}
	if !c.IsConnected() {
		return nil, errors.New("mqtt: FromClient: the client is not connected (call Connect and wait for its token first)")
	}
	if autoReconnects(c) && !hooks.await(c, hookWait) {
		return nil, ErrNoResubscribe
	}
	var conf Config
	if cfg != nil {
		conf = *cfg
	}
	t, err := newConfiguredTransport(&conf)
	if err != nil {
		return nil, err
	}
	t.client = c
	wrapped.Lock()
	defer wrapped.Unlock()
	if _, ok := wrapped.m[c]; ok {
		return nil, errors.New("mqtt: FromClient: the client is already wrapped by a live Transport")
	}
	wrapped.m[c] = t
	return t, nil
}

// autoReconnects reports paho's AutoReconnect option of c. A paho.Client
// of another implementation (a test double) may return a reader without
// options, whose methods panic: such a client is taken as one that does
// not reconnect by itself.
func autoReconnects(c paho.Client) (on bool) {
	defer func() {
		if recover() != nil {
			on = false
		}
	}()
	options := c.OptionsReader()
	return options.AutoReconnect()
}

// hooks records the clients whose OnConnect handler is
// ResubscribeOnConnect's, seen when it first runs. A client stays recorded
// for the life of the process (one map entry per client).
var hooks = hookSet{m: make(map[paho.Client]bool), changed: make(chan struct{})}

type hookSet struct {
	sync.Mutex
	m       map[paho.Client]bool
	changed chan struct{} // closed and replaced when a client is added
}

// add records c.
func (h *hookSet) add(c paho.Client) {
	h.Lock()
	defer h.Unlock()
	if !h.m[c] {
		h.m[c] = true
		close(h.changed)
		h.changed = make(chan struct{})
	}
}

// await reports whether c is recorded, waiting up to d for it.
func (h *hookSet) await(c paho.Client, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		h.Lock()
		found, changed := h.m[c], h.changed
		h.Unlock()
		if found {
			return true
		}
		select {
		case <-changed:
		case <-timer.C:
			return false
		}
	}
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
		hooks.add(c) // first: next may take long, and FromClient waits for this
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
// it wraps c with FromClient(c, cfg) and the result with
// e4transport.Protect(ctx, t, e4c, opts), which subscribes to e4c's
// control topic. Closing the Protected transport releases the wrapper,
// not the client. cfg and opts may be nil (the adapter's defaults, strict
// E4 policies).
func Protect(ctx context.Context, c paho.Client, e4c *e4.Client, cfg *Config, opts *e4transport.Options) (*e4transport.Protected, error) {
	t, err := FromClient(c, cfg)
	if err != nil {
		return nil, err
	}
	p, err := e4transport.Protect(ctx, t, e4c, opts)
	if err != nil {
		_ = t.Close()
		return nil, fmt.Errorf("mqtt: protecting the client: %w", err)
	}
	return p, nil
}

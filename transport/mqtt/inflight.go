package mqtt

import (
	"context"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/e4-iot/e4kit/transport"
)

// DefaultMaxInflight is Config.MaxInflight when it is 0: Mosquitto's
// default max_inflight_messages.
const DefaultMaxInflight = 20

// inflightWindow bounds the QoS 1 and 2 messages a connection has published
// and the broker not yet acknowledged (PUBACK, or PUBCOMP for QoS 2).
//
// Why: a broker bounds the QoS 2 messages a client may leave awaiting
// PUBREL (MQTT 5 calls it Receive Maximum; Mosquitto uses
// max_inflight_messages, 20 by default, for MQTT 3.1.1 clients too). An
// MQTT 3.1.1 client cannot be told that bound, and Mosquitto 2.0 refuses
// every QoS 1 or 2 PUBLISH arriving beyond it with a PUBACK or PUBREC whose
// reason code (0x97, quota exceeded) only MQTT 5 can carry: the client sees
// an ordinary acknowledgement and the message is gone. paho publishes as
// many messages at once as it is given, so the window is ours.
type inflightWindow chan struct{}

func newInflightWindow(size int) inflightWindow {
	if size <= 0 {
		size = DefaultMaxInflight
	}
	return make(inflightWindow, size)
}

// acquire takes a slot for one message, waiting for one until ctx ends or
// the transport closes (done).
func (w inflightWindow) acquire(ctx context.Context, done <-chan struct{}) error {
	select {
	case w <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-done:
		return transport.ErrClosed
	}
}

// releaseWhenDone gives the slot back once tok completes. A Publish that
// stops waiting early (ctx, Close) leaves its message in flight, so the
// slot stays taken until then; paho completes every publish token on
// acknowledgement, on resending after a reconnect, or on Disconnect.
func (w inflightWindow) releaseWhenDone(tok paho.Token) {
	select {
	case <-tok.Done():
		<-w
	default:
		go func() {
			<-tok.Done()
			<-w
		}()
	}
}

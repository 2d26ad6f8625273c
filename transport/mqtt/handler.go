package mqtt

import (
	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/transport/e4transport"
)

// Handler wraps an application's paho message handler so that it receives
// plaintext: each message is unprotected with c before h is called with a
// message whose Payload is the plaintext (its topic, QoS, retained and
// duplicate flags, id and Ack are the received message's). An application
// that subscribes with paho callbacks keeps doing so, in its own OnConnect
// handler if that is where it subscribes, wrapping only the handler:
//
//	client.Subscribe("plant/+/temp", 1, mqtt.Handler(e4Client, onReading, onUnreadable))
//
// A message that does not unprotect (no key for its topic, tampered,
// replayed, too old...) never reaches h: it goes to onError with its
// topic and the reason, without its content (nil onError drops it
// silently). Messages on c's own protocol topics, which a wide filter
// matches, are skipped: the commands on the control topic are applied by
// the Protected transport of mqtt.Protect, which also publishes the
// acknowledgements and sync requests.
//
// The handler runs on paho's delivery goroutine, like h; it unprotects
// one message at a time. Unlike a Subscribe on the Protected transport, it
// does not hold a message for a key (e4transport.Options.AwaitKey): a message
// under a key whose command has not arrived yet goes to onError.
func Handler(c *e4.Client, h paho.MessageHandler, onError func(topic string, err error)) paho.MessageHandler {
	if c == nil || h == nil {
		panic("mqtt: Handler needs an E4 client and a handler")
	}
	return func(pc paho.Client, m paho.Message) {
		if e4transport.IsProtocolTopic(c, m.Topic()) {
			return
		}
		plain, err := c.Unprotect(nil, m.Payload(), m.Topic())
		if err != nil {
			if onError != nil {
				onError(m.Topic(), err)
			}
			return
		}
		h(pc, &plaintextMessage{Message: m, plaintext: plain})
	}
}

// plaintextMessage is a received message with its payload unprotected.
type plaintextMessage struct {
	paho.Message
	plaintext []byte
}

// Payload returns the plaintext.
func (m *plaintextMessage) Payload() []byte { return m.plaintext }

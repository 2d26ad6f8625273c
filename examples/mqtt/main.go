// Command mqtt shows one idea: adding E4 to an MQTT client an application
// already has takes one call, mqtt.Protect.
//
// Two paho clients, configured the way any application configures them,
// are protected with E4 clients that share a topic key. One publishes a
// reading; the other receives and prints it decrypted. The broker, embedded
// by default, only ever carries ciphertext.
//
//	go run ./examples/mqtt                          # embedded broker
//	go run ./examples/mqtt -broker tcp://host:1883  # your broker
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/transport/e4transport"
	"github.com/e4-iot/e4kit/transport/mqtt"
	"github.com/e4-iot/e4kit/transport/mqtt/mqttbroker"
)

// topic is where the sensor publishes.
const topic = "e4kit/example/temperature"

func main() {
	broker := flag.String("broker", "", "MQTT broker URL, e.g. tcp://127.0.0.1:1883 (default: start an embedded broker)")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := run(ctx, *broker, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "mqtt example:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, brokerURL string, out io.Writer) error {
	if brokerURL == "" {
		b, err := mqttbroker.Start("127.0.0.1:0", nil)
		if err != nil {
			return err
		}
		defer b.Close()
		brokerURL = b.URL()
		fmt.Fprintln(out, "embedded broker at", brokerURL)
	}

	// Both devices were provisioned with the same key for the topic.
	topicKey := randomKey()

	sensor, err := protectedClient(ctx, brokerURL, "sensor", topicKey)
	if err != nil {
		return err
	}
	defer sensor.Close()
	display, err := protectedClient(ctx, brokerURL, "display", topicKey)
	if err != nil {
		return err
	}
	defer display.Close()

	sub, err := display.Subscribe(ctx, topic)
	if err != nil {
		return err
	}
	if err := sensor.Publish(ctx, topic, []byte("21.5 C")); err != nil {
		return err
	}
	msg, err := sub.Receive(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "display received on %s: %s\n", msg.Topic, msg.Payload)
	return nil
}

// protected is a paho client with E4 added.
type protected struct {
	*e4transport.Protected
	client paho.Client
}

// Close releases the E4 transport, then the application disconnects its
// client as it always did.
func (p *protected) Close() error {
	err := p.Protected.Close()
	p.client.Disconnect(250)
	return err
}

// protectedClient connects a paho client as an application would, then
// adds E4 to it with one call.
func protectedClient(ctx context.Context, brokerURL, name string, topicKey []byte) (*protected, error) {
	opts := paho.NewClientOptions().
		AddBroker(brokerURL).
		SetClientID("e4kit-example-" + name + "-" + hex.EncodeToString(randomKey()[:3])).
		SetAutoReconnect(true).
		// Lets the E4 transport subscribe again after a reconnect.
		SetOnConnectHandler(mqtt.ResubscribeOnConnect(nil))
	client := paho.NewClient(opts)
	if tok := client.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return nil, fmt.Errorf("%s: connecting to %s: %v", name, brokerURL, tok.Error())
	}

	e4Client, err := e4.NewSymKeyClient(e4.IDFromName(name), randomKey(), nil)
	if err != nil {
		return nil, err
	}
	if err := e4Client.SetTopicKey(topicKey, topic); err != nil {
		return nil, err
	}

	// The one call: from here on, everything published through p is
	// encrypted and authenticated, everything received is checked.
	p, err := mqtt.Protect(ctx, client, e4Client, nil, nil)
	if err != nil {
		client.Disconnect(0)
		return nil, err
	}
	return &protected{Protected: p, client: client}, nil
}

func randomKey() []byte {
	k := make([]byte, 32)
	_, _ = rand.Read(k) // crypto/rand.Read never fails
	return k
}

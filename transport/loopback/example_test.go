package loopback_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"log"

	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/e4transport"
	"github.com/e4-iot/e4kit/transport/loopback"
)

// A broker in memory stands in for MQTT, AMQP or CoAP in unit tests.
func Example() {
	ctx := context.Background()
	broker := loopback.NewBroker()
	sensor, dashboard := broker.Connect(), broker.Connect()
	defer sensor.Close()
	defer dashboard.Close()

	sub, err := dashboard.Subscribe(ctx, "home/+/temperature")
	if err != nil {
		log.Fatal(err)
	}
	if err := sensor.Publish(ctx, "home/kitchen/temperature", []byte("21.5")); err != nil {
		log.Fatal(err)
	}
	msg, err := sub.Receive(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s: %s\n", msg.Topic, msg.Payload)
	// Output: home/kitchen/temperature: 21.5
}

// Code that protects its messages with E4 runs over loopback unchanged.
func Example_protected() {
	ctx := context.Background()
	broker := loopback.NewBroker()
	topicKey := make([]byte, e4.KeyLen)
	_, _ = rand.Read(topicKey)
	sensor := mustProtect(ctx, broker.Connect(), topicKey, "home/kitchen/temperature")
	dashboard := mustProtect(ctx, broker.Connect(), topicKey, "home/kitchen/temperature")
	defer sensor.Close()
	defer dashboard.Close()

	sub, err := dashboard.Subscribe(ctx, "home/kitchen/temperature")
	if err != nil {
		log.Fatal(err)
	}
	if err := sensor.Publish(ctx, "home/kitchen/temperature", []byte("21.5")); err != nil {
		log.Fatal(err)
	}
	msg, err := sub.Receive(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s: %s\n", msg.Topic, msg.Payload)
	// Output: home/kitchen/temperature: 21.5
}

// mustProtect wraps t with a new E4 client that holds the key of topic.
func mustProtect(ctx context.Context, t transport.Transport, topicKey []byte, topic string) *e4transport.Protected {
	clientKey := make([]byte, e4.KeyLen)
	_, _ = rand.Read(clientKey)
	client, err := e4.NewSymKeyClient(e4.IDFromName("device-"+rand.Text()), clientKey, nil)
	if err != nil {
		log.Fatal(err)
	}
	if err := client.SetTopicKey(topicKey, topic); err != nil {
		log.Fatal(err)
	}
	p, err := e4transport.Protect(ctx, t, client, nil)
	if err != nil {
		log.Fatal(err)
	}
	return p
}

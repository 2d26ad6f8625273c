// Command amqp shows how an application that already talks to RabbitMQ
// with amqp091-go adds E4 end-to-end encryption with one call:
// amqp.Protect wraps the channel it has opened, and from then on what it
// publishes is protected with the topic's key and what it receives is
// checked and decrypted. The broker only ever carries ciphertext.
//
// It sends one reading from a "sensor" to a "dashboard", each with its own
// E4 client and channel, and shows what a plain AMQP consumer (the
// broker's view) gets.
//
//	go run ./examples/amqp -url amqp://guest:guest@localhost:5672/
//
// The URL may also come from $E4_AMQP_URL.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/transport/amqp"
)

func main() {
	url := flag.String("url", os.Getenv("E4_AMQP_URL"), "RabbitMQ URL, amqp://user:pass@host:port/vhost (default $E4_AMQP_URL)")
	topic := flag.String("topic", "e4kit/example/room1/temp", "topic of the reading")
	flag.Parse()
	if *url == "" {
		fmt.Fprintln(os.Stderr, "amqp example: set -url or E4_AMQP_URL to a RabbitMQ URL")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := run(ctx, *url, *topic, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "amqp example:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, url, topic string, out io.Writer) error {
	// The application's existing AMQP code: one connection, a channel
	// for each part of the program.
	conn, err := amqp091.Dial(url)
	if err != nil {
		return fmt.Errorf("connecting to RabbitMQ: %w", err)
	}
	defer conn.Close()
	sensorCh, dashboardCh, spyCh, err := openChannels(conn)
	if err != nil {
		return err
	}

	// In production C2 hands out topic keys; here both ends get the same
	// one directly.
	topicKey := make([]byte, e4.KeyLen)
	_, _ = rand.Read(topicKey)
	sensorE4, err := newClient("example-sensor", topic, topicKey)
	if err != nil {
		return err
	}
	dashboardE4, err := newClient("example-dashboard", topic, topicKey)
	if err != nil {
		return err
	}

	// The one call that adds E4 to an existing channel.
	sensor, err := amqp.Protect(ctx, sensorCh, sensorE4, nil, nil)
	if err != nil {
		return fmt.Errorf("adding E4 to the sensor's channel: %w", err)
	}
	defer sensor.Close()
	dashboard, err := amqp.Protect(ctx, dashboardCh, dashboardE4, nil, nil)
	if err != nil {
		return fmt.Errorf("adding E4 to the dashboard's channel: %w", err)
	}
	defer dashboard.Close()

	sub, err := dashboard.Subscribe(ctx, topic)
	if err != nil {
		return fmt.Errorf("subscribing: %w", err)
	}
	spy, err := spyOn(spyCh, topic)
	if err != nil {
		return err
	}

	reading := []byte("21.5 C")
	if err := sensor.Publish(ctx, topic, reading); err != nil {
		return fmt.Errorf("publishing: %w", err)
	}
	msg, err := sub.Receive(ctx)
	if err != nil {
		return fmt.Errorf("receiving: %w", err)
	}
	fmt.Fprintf(out, "dashboard received %q on %s\n", msg.Payload, msg.Topic)

	select {
	case d := <-spy:
		fmt.Fprintf(out, "a plain AMQP consumer got %d bytes; plaintext visible: %v\n",
			len(d.Body), bytes.Contains(d.Body, reading))
	case <-ctx.Done():
		return errors.New("the plain consumer got nothing")
	}
	return nil
}

// openChannels opens the channels of the sensor, the dashboard and the
// plain consumer.
func openChannels(conn *amqp091.Connection) (sensor, dashboard, spy *amqp091.Channel, err error) {
	chans := make([]*amqp091.Channel, 3)
	for i := range chans {
		if chans[i], err = conn.Channel(); err != nil {
			return nil, nil, nil, fmt.Errorf("opening a channel: %w", err)
		}
	}
	return chans[0], chans[1], chans[2], nil
}

// newClient makes a symmetric-key E4 client holding topicKey for topic.
func newClient(name, topic string, topicKey []byte) (*e4.Client, error) {
	clientKey := make([]byte, e4.KeyLen)
	_, _ = rand.Read(clientKey)
	c, err := e4.NewSymKeyClient(e4.IDFromName(name), clientKey, nil)
	if err != nil {
		return nil, fmt.Errorf("creating the E4 client %s: %w", name, err)
	}
	if err := c.SetTopicKey(topicKey, topic); err != nil {
		return nil, fmt.Errorf("setting the key of %s: %w", topic, err)
	}
	return c, nil
}

// spyOn consumes what the broker routes for topic, without E4.
func spyOn(ch *amqp091.Channel, topic string) (<-chan amqp091.Delivery, error) {
	key, err := amqp.RoutingKey(topic)
	if err != nil {
		return nil, err
	}
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		return nil, fmt.Errorf("declaring the plain consumer's queue: %w", err)
	}
	if err := ch.QueueBind(q.Name, key, amqp.DefaultExchange, false, nil); err != nil {
		return nil, fmt.Errorf("binding the plain consumer's queue: %w", err)
	}
	return ch.Consume(q.Name, "", true, true, false, false, nil)
}

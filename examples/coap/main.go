// Command coap shows one idea: an application that already talks CoAP with
// go-coap adds E4 end-to-end encryption to its connection with one call,
// coap.Protect.
//
// A "sensor" and a "display" each open a go-coap connection the way any
// application does (udp.Dial), and protect it with an E4 client; both
// clients hold the topic's key. The sensor publishes a reading (a PUT to
// /ps/<topic>), the display observes the topic and prints the reading
// decrypted. The broker, our CoAP pub/sub broker started in-process by
// default, only ever carries ciphertext.
//
//	go run ./examples/coap                         # in-process broker
//	go run ./examples/coap -broker 127.0.0.1:5683  # e.g. "e4 broker coap"
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/coap"
	"github.com/e4-iot/e4kit/transport/coap/broker"
	"github.com/e4-iot/e4kit/transport/e4transport"
)

// topic is where the sensor publishes.
const topic = "e4kit/example/temperature"

// reading is what it publishes.
const reading = "21.5 C"

func main() {
	addr := flag.String("broker", "", "CoAP pub/sub broker host:port (default: start one in-process)")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := run(ctx, *addr, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "coap example:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, addr string, out io.Writer) error {
	seen := &brokerView{}
	if addr == "" {
		b, err := broker.Start("127.0.0.1:0", &broker.Options{OnPublish: seen.record})
		if err != nil {
			return err
		}
		defer b.Close()
		addr = b.Addr().String()
		fmt.Fprintln(out, "broker listening on", addr)
	}

	topicKey := make([]byte, e4.KeyLen)
	_, _ = rand.Read(topicKey)
	display, err := protectedDevice(ctx, addr, "display-1", topicKey)
	if err != nil {
		return err
	}
	defer display.Close()
	sensor, err := protectedDevice(ctx, addr, "sensor-1", topicKey)
	if err != nil {
		return err
	}
	defer sensor.Close()

	sub, err := display.Subscribe(ctx, topic)
	if err != nil {
		return err
	}
	if err := sensor.Publish(ctx, topic, []byte(reading)); err != nil {
		return err
	}
	m, err := sub.Receive(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "display received on %s: %s\n", m.Topic, m.Payload)
	if carried, ok := seen.last(); ok {
		fmt.Fprintf(out, "the broker carried %d bytes; plaintext visible: %v\n",
			len(carried), bytes.Contains(carried, []byte(reading)))
	}
	return nil
}

// protectedDevice opens a go-coap connection as an application would and
// adds E4 to it: a client of its own, holding the topic key.
func protectedDevice(ctx context.Context, addr, name string, topicKey []byte) (transport.Transport, error) {
	conn, err := udp.Dial(addr,
		options.WithBlockwise(true, blockwise.SZX1024, 10*time.Second),
		options.WithErrors(func(error) {}))
	if err != nil {
		return nil, fmt.Errorf("dialling %s: %w", addr, err)
	}
	clientKey := make([]byte, e4.KeyLen)
	_, _ = rand.Read(clientKey)
	client, err := e4.NewSymKeyClient(e4.IDFromName(name), clientKey, nil)
	if err != nil {
		return nil, err
	}
	if err := client.SetTopicKey(topicKey, topic); err != nil {
		return nil, err
	}
	p, err := coap.Protect(ctx, conn, client, nil, nil)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	return &closingConn{Protected: p, conn: conn}, nil
}

// closingConn closes the application's connection with the transport
// (coap.Protect leaves it open: it belongs to the application).
type closingConn struct {
	*e4transport.Protected
	conn *udpclient.Conn
}

// Close closes the transport, then the connection.
func (c *closingConn) Close() error {
	err := c.Protected.Close()
	_ = c.conn.Close()
	return err
}

// brokerView keeps what the in-process broker carried.
type brokerView struct {
	mu      sync.Mutex
	payload []byte
}

func (v *brokerView) record(_ string, payload []byte) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.payload = bytes.Clone(payload)
}

func (v *brokerView) last() ([]byte, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.payload, v.payload != nil
}

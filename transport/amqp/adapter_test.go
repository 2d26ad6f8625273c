package amqp_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/internal/testbroker"
	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/amqp"
	"github.com/e4-iot/e4kit/transport/e4transport"
)

// rawChannel opens an application's own connection and channel, as code
// that already uses amqp091 would; both close when the test ends.
func rawChannel(t testing.TB, r *testbroker.RabbitMQ) *amqp091.Channel {
	t.Helper()
	conn, err := amqp091.Dial(r.AMQPURL())
	if err != nil {
		t.Fatalf("amqp091.Dial: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("opening a channel: %v", err)
	}
	return ch
}

// bareQueue declares a server-named queue bound to amq.topic with key, on
// a raw channel: the broker's view of what a transport publishes.
func bareQueue(t testing.TB, ch *amqp091.Channel, key string, args amqp091.Table) string {
	t.Helper()
	q, err := ch.QueueDeclare("", false, true, true, false, args)
	if err != nil {
		t.Fatalf("declaring a bare queue: %v", err)
	}
	if err := ch.QueueBind(q.Name, key, amqp.DefaultExchange, false, nil); err != nil {
		t.Fatalf("binding the bare queue: %v", err)
	}
	return q.Name
}

// TestPublishReturnsAfterConfirm checks that Publish returns only once the
// broker has the message: right after each Publish, another connection
// sees it in the queue it was routed to. Without the confirm, the count
// could lag, since the broker handles each connection on its own.
func TestPublishReturnsAfterConfirm(t *testing.T) {
	r := broker(t)
	topic := uniqueTopic(t, "confirmed")
	key, err := amqp.RoutingKey(topic)
	if err != nil {
		t.Fatal(err)
	}
	ch := rawChannel(t, r)
	queue := bareQueue(t, ch, key, nil)
	tr := dial(t, testConfig(r))

	const n = 50
	payload := bytes.Repeat([]byte("x"), 4096)
	for i := range n {
		if err := tr.Publish(testContext(t), topic, payload); err != nil {
			t.Fatalf("Publish %d: %v", i, err)
		}
		q, err := ch.QueueDeclarePassive(queue, false, true, true, false, nil)
		if err != nil {
			t.Fatalf("inspecting the queue: %v", err)
		}
		if q.Messages != i+1 {
			t.Fatalf("after Publish %d returned, the queue holds %d messages, want %d", i+1, q.Messages, i+1)
		}
	}
	d, ok, err := ch.Get(queue, true)
	if err != nil || !ok {
		t.Fatalf("Get: %v, %v", ok, err)
	}
	if d.DeliveryMode != amqp091.Persistent {
		t.Errorf("AtLeastOnce message has delivery mode %d, want persistent", d.DeliveryMode)
	}
}

// TestPublishNacked checks that a publication the broker refuses fails
// with ErrNacked: a queue full with x-overflow reject-publish nacks.
func TestPublishNacked(t *testing.T) {
	r := broker(t)
	topic := uniqueTopic(t, "full")
	key, _ := amqp.RoutingKey(topic)
	bareQueue(t, rawChannel(t, r), key, amqp091.Table{"x-max-length": int32(1), "x-overflow": "reject-publish"})
	tr := dial(t, testConfig(r))

	if err := tr.Publish(testContext(t), topic, []byte("fits")); err != nil {
		t.Fatalf("first Publish: %v", err)
	}
	err := tr.Publish(testContext(t), topic, []byte("refused"))
	if !errors.Is(err, amqp.ErrNacked) {
		t.Fatalf("Publish to a full reject-publish queue = %v, want ErrNacked", err)
	}
	// The channel stays usable after a nack.
	if err := tr.Publish(testContext(t), uniqueTopic(t, "elsewhere"), []byte("ok")); err != nil {
		t.Errorf("Publish after a nack: %v", err)
	}
}

// TestPublishUnroutable documents that a message no queue is bound for
// is acknowledged (and dropped) by the broker, as in MQTT.
func TestPublishUnroutable(t *testing.T) {
	tr := dial(t, testConfig(broker(t)))
	if err := tr.Publish(testContext(t), uniqueTopic(t, "nobody/listens"), []byte("lost")); err != nil {
		t.Errorf("Publish with no subscriber = %v, want nil", err)
	}
}

// TestAtMostOnce checks that QoS 0 publishes transient messages.
func TestAtMostOnce(t *testing.T) {
	r := broker(t)
	topic := uniqueTopic(t, "qos0")
	key, err := amqp.RoutingKey(topic)
	if err != nil {
		t.Fatal(err)
	}
	ch := rawChannel(t, r)
	queue := bareQueue(t, ch, key, nil)
	deliveries, err := ch.Consume(queue, "", true, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	tr := dial(t, testConfig(r))
	if err := tr.Publish(testContext(t), topic, []byte("fire and forget"), transport.WithQoS(transport.AtMostOnce)); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-deliveries:
		if d.DeliveryMode != amqp091.Transient || string(d.Body) != "fire and forget" {
			t.Errorf("got mode %d body %q, want transient \"fire and forget\"", d.DeliveryMode, d.Body)
		}
	case <-testContext(t).Done():
		t.Fatal("the QoS 0 message never arrived")
	}
}

// TestTopicsRefused checks that topics the routing-key mapping cannot
// carry are refused before anything is sent.
func TestTopicsRefused(t *testing.T) {
	tr := dial(t, testConfig(broker(t)))
	if err := tr.Publish(testContext(t), "a/b.c", []byte("x")); !errors.Is(err, transport.ErrInvalidTopic) {
		t.Errorf("Publish on a level with a dot = %v, want ErrInvalidTopic", err)
	}
	if _, err := tr.Subscribe(testContext(t), "a/*"); !errors.Is(err, transport.ErrInvalidTopic) {
		t.Errorf("Subscribe to a literal * level = %v, want ErrInvalidTopic", err)
	}
}

// TestForeignRoutingKey checks a delivery whose routing key, published by
// another AMQP client, maps to a topic the subscription's filter does not
// match: the broker routes "root.a/b" to "root.*" (one word), but it maps
// to two canonical levels, which "root/+" does not match, so it is dropped
// instead of reaching the application under a topic it did not ask for.
func TestForeignRoutingKey(t *testing.T) {
	r := broker(t)
	root := uniqueTopic(t, "foreign")
	tr := dial(t, testConfig(r))
	sub, err := tr.Subscribe(testContext(t), root+"/+")
	if err != nil {
		t.Fatal(err)
	}
	rootKey, err := amqp.RoutingKey(root)
	if err != nil {
		t.Fatal(err)
	}
	ch := rawChannel(t, r)
	// "a/b" is one word to the broker, so it matches "*", but it maps to
	// two canonical levels, which "+" does not match: dropped.
	publishRaw(t, ch, rootKey+".a/b", "two levels")
	publishRaw(t, ch, rootKey+".plain", "one level")
	m, err := sub.Receive(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	if m.Topic != root+"/plain" || string(m.Payload) != "one level" {
		t.Errorf("got %q on %q, want \"one level\" on %q", m.Payload, m.Topic, root+"/plain")
	}
}

func publishRaw(t testing.TB, ch *amqp091.Channel, key, body string) {
	t.Helper()
	err := ch.PublishWithContext(testContext(t), amqp.DefaultExchange, key, false, false, amqp091.Publishing{Body: []byte(body)})
	if err != nil {
		t.Fatalf("raw publish: %v", err)
	}
}

// TestCustomExchange checks that a non-amq exchange is declared durable
// and used for both directions, and that amq.topic does not see the
// traffic.
func TestCustomExchange(t *testing.T) {
	r := broker(t)
	exchange := fmt.Sprintf("e4kit-test-%d", time.Now().UnixNano())
	cfg := testConfig(r)
	cfg.Exchange = exchange
	tr := dial(t, cfg)
	ch := rawChannel(t, r)
	if err := ch.ExchangeDeclarePassive(exchange, "topic", true, false, false, false, nil); err != nil {
		t.Fatalf("the exchange was not declared: %v", err)
	}
	topic := uniqueTopic(t, "custom")
	key, err := amqp.RoutingKey(topic)
	if err != nil {
		t.Fatal(err)
	}
	onDefault := bareQueue(t, ch, key, nil)
	sub, err := tr.Subscribe(testContext(t), topic)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Publish(testContext(t), topic, []byte("custom")); err != nil {
		t.Fatal(err)
	}
	if m, err := sub.Receive(testContext(t)); err != nil || string(m.Payload) != "custom" {
		t.Fatalf("Receive = %v, %v", m, err)
	}
	if q, err := ch.QueueDeclarePassive(onDefault, false, true, true, false, nil); err != nil || q.Messages != 0 {
		t.Errorf("amq.topic got %d messages (%v), want 0", q.Messages, err)
	}
	_ = ch.ExchangeDelete(exchange, false, false)
}

// TestMissingExchange checks that Dial reports an amq.* exchange that does
// not exist (only checked, never declared).
func TestMissingExchange(t *testing.T) {
	cfg := testConfig(broker(t))
	cfg.Exchange = "amq.e4kit-missing"
	tr, err := amqp.Dial(testContext(t), cfg)
	if err == nil {
		tr.Close()
		t.Fatal("Dial with a missing amq.* exchange succeeded")
	}
}

// TestDialRefused checks that Dial fails at once on bad credentials
// rather than retrying.
func TestDialRefused(t *testing.T) {
	r := broker(t)
	cfg := testConfig(r)
	cfg.URL = "amqp://guest:wrong@" + r.AMQPURL()[len("amqp://guest:guest@"):]
	if tr, err := amqp.Dial(testContext(t), cfg); err == nil {
		tr.Close()
		t.Fatal("Dial with a wrong password succeeded")
	}
}

// TestReconnectAfterForcedClose checks recovery from a connection the
// broker closes (as an operator or a failover would): the subscription's
// queue is re-created on the new connection and delivers again.
func TestReconnectAfterForcedClose(t *testing.T) {
	r := broker(t)
	reconnected := make(chan struct{}, 4)
	cfg := testConfig(r)
	cfg.OnReconnected = func() { reconnected <- struct{}{} }
	tr := dial(t, cfg)
	topic := uniqueTopic(t, "forced")
	sub, err := tr.Subscribe(testContext(t), topic)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := r.Ctl(testContext(t), "close_all_connections", "test: forced close"); err != nil {
		t.Fatalf("close_all_connections: %v\n%s", err, out)
	}
	select {
	case <-reconnected:
	case <-testContext(t).Done():
		t.Fatal("never reconnected")
	}
	if err := tr.Publish(testContext(t), topic, []byte("after forced close")); err != nil {
		t.Fatal(err)
	}
	m, err := sub.Receive(testContext(t))
	if err != nil || string(m.Payload) != "after forced close" {
		t.Fatalf("Receive = %v, %v", m, err)
	}
}

// TestOutage checks Publish and Subscribe while the broker is down: they
// wait (until ctx ends), and complete once it is back; a subscription made
// before the outage and one made during it both deliver afterwards.
func TestOutage(t *testing.T) {
	r := broker(t)
	lost := make(chan struct{}, 4)
	reconnected := make(chan struct{}, 4)
	cfg := testConfig(r)
	cfg.OnConnectionLost = func(error) { lost <- struct{}{} }
	cfg.OnReconnected = func() { reconnected <- struct{}{} }
	tr := dial(t, cfg)
	topic := uniqueTopic(t, "outage")
	before, err := tr.Subscribe(testContext(t), topic)
	if err != nil {
		t.Fatal(err)
	}

	r.StopNode()
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			_ = r.StartNode(context.Background())
		}
	})
	<-lost
	short, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := tr.Publish(short, topic, []byte("too early")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Publish while the broker is down = %v, want DeadlineExceeded", err)
	}
	during := make(chan transport.Subscription, 1)
	go func() {
		s, err := tr.Subscribe(testContext(t), topic)
		if err != nil {
			t.Errorf("Subscribe during the outage: %v", err)
		}
		during <- s
	}()
	published := make(chan error, 1)
	go func() { published <- tr.Publish(testContext(t), topic, []byte("across the outage")) }()

	ctx, cancelStart := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancelStart()
	if err := r.StartNode(ctx); err != nil {
		t.Fatal(err)
	}
	restarted = true
	if err := <-published; err != nil {
		t.Fatalf("Publish across the outage: %v", err)
	}
	<-reconnected
	sub := <-during
	if sub == nil {
		t.FailNow()
	}
	for _, s := range []transport.Subscription{before, sub} {
		m, err := s.Receive(testContext(t))
		if err != nil || string(m.Payload) != "across the outage" {
			t.Fatalf("Receive = %v, %v; want \"across the outage\"", m, err)
		}
	}
}

// TestFromChannelProtect adds E4 to two channels an application opened
// itself: messages round-trip between them, a bare consumer sees only
// ciphertext that the topic key opens, and closing the transports leaves
// the application's channels usable.
func TestFromChannelProtect(t *testing.T) {
	r := broker(t)
	topic := uniqueTopic(t, "wrapped")
	topicKey := e4Key(t)
	devCh, appCh, wireCh := rawChannel(t, r), rawChannel(t, r), rawChannel(t, r)

	key, err := amqp.RoutingKey(topic)
	if err != nil {
		t.Fatal(err)
	}
	wire, err := wireCh.Consume(bareQueue(t, wireCh, key, nil), "", true, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	device, err := amqp.Protect(testContext(t), devCh, e4Client(t, "device", topic, topicKey), nil, nil)
	if err != nil {
		t.Fatalf("Protect: %v", err)
	}
	app, err := amqp.Protect(testContext(t), appCh, e4Client(t, "app", topic, topicKey), &amqp.Config{Prefetch: 16}, nil)
	if err != nil {
		t.Fatalf("Protect: %v", err)
	}
	sub, err := app.Subscribe(testContext(t), topic)
	if err != nil {
		t.Fatal(err)
	}

	plain := []byte("temperature 21.5")
	if err := device.Publish(testContext(t), topic, plain); err != nil {
		t.Fatal(err)
	}
	m, err := sub.Receive(testContext(t))
	if err != nil || m.Topic != topic || !bytes.Equal(m.Payload, plain) {
		t.Fatalf("Receive = %v, %v; want %q on %q", m, err, plain, topic)
	}
	select {
	case d := <-wire:
		if bytes.Contains(d.Body, plain) || len(d.Body) != len(plain)+e4.SKOverhead {
			t.Errorf("the bare consumer got %d bytes %q, want %d bytes of ciphertext", len(d.Body), d.Body, len(plain)+e4.SKOverhead)
		}
		if opened, err := e4.UnprotectSymKey(nil, d.Body, topicKey, nil); err != nil || !bytes.Equal(opened, plain) {
			t.Errorf("the topic key opens the wire payload to %q, %v", opened, err)
		}
	case <-testContext(t).Done():
		t.Fatal("the bare consumer got nothing")
	}

	for _, p := range []*e4transport.Protected{device, app} {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
	if devCh.IsClosed() || appCh.IsClosed() {
		t.Fatal("closing the transport closed the application's channel")
	}
	// The application's channel still works, and the transport's queue
	// is gone (the bare queue is the only one left for the key).
	if err := devCh.PublishWithContext(testContext(t), amqp.DefaultExchange, key, false, false, amqp091.Publishing{Body: []byte("raw")}); err != nil {
		t.Errorf("publishing on the application's channel after Close: %v", err)
	}
}

// TestFromChannelLost checks that a FromChannel transport whose channel
// closes fails with ErrChannelClosed and ends its subscriptions.
func TestFromChannelLost(t *testing.T) {
	r := broker(t)
	ch := rawChannel(t, r)
	tr, err := amqp.FromChannel(ch, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	sub, err := tr.Subscribe(testContext(t), uniqueTopic(t, "lost"))
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Receive(testContext(t)); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Receive after the channel closed = %v, want ErrClosed", err)
	}
	if err := tr.Publish(testContext(t), uniqueTopic(t, "x"), []byte("x")); !errors.Is(err, amqp.ErrChannelClosed) {
		t.Errorf("Publish after the channel closed = %v, want ErrChannelClosed", err)
	}
	if _, err := tr.Subscribe(testContext(t), uniqueTopic(t, "y")); !errors.Is(err, amqp.ErrChannelClosed) {
		t.Errorf("Subscribe after the channel closed = %v, want ErrChannelClosed", err)
	}
	if _, err := amqp.FromChannel(ch, nil); !errors.Is(err, amqp.ErrChannelClosed) {
		t.Errorf("FromChannel on a closed channel = %v, want ErrChannelClosed", err)
	}
}

// e4Key returns a random topic key.
func e4Key(t testing.TB) []byte {
	key := make([]byte, e4.KeyLen)
	_, _ = rand.Read(key)
	return key
}

// e4Client returns a symmetric-key client named name holding topicKey for
// topic.
func e4Client(t testing.TB, name, topic string, topicKey []byte) *e4.Client {
	t.Helper()
	return e4ClientWith(t, name, topic, topicKey, nil)
}

// e4ClientWith is e4Client with a configuration.
func e4ClientWith(t testing.TB, name, topic string, topicKey []byte, cfg *e4.Config) *e4.Client {
	t.Helper()
	id := e4.IDFromName(fmt.Sprintf("%s-%s-%d", name, t.Name(), time.Now().UnixNano()))
	c, err := e4.NewSymKeyClient(id, e4Key(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetTopicKey(topicKey, topic); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestQueueDeletedByOperator checks that a subscription whose queue is
// deleted behind its back (the broker then cancels the consumer) is
// re-created on the same connection and delivers again.
func TestQueueDeletedByOperator(t *testing.T) {
	r := broker(t)
	tr := dial(t, testConfig(r))
	topic := uniqueTopic(t, "deleted")
	key, err := amqp.RoutingKey(topic)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := tr.Subscribe(testContext(t), topic)
	if err != nil {
		t.Fatal(err)
	}
	queue := queueBoundWith(t, r, key)
	if out, err := r.Ctl(testContext(t), "delete_queue", queue); err != nil {
		t.Fatalf("delete_queue: %v\n%s", err, out)
	}
	// Publish until a message gets through: the re-creation races the
	// first publications, which may find no queue.
	deadline := testContext(t)
	for i := 0; ; i++ {
		payload := fmt.Sprintf("after deletion %d", i)
		if err := tr.Publish(deadline, topic, []byte(payload)); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(deadline, 200*time.Millisecond)
		m, err := sub.Receive(ctx)
		cancel()
		if err == nil {
			if queueBoundWith(t, r, key) == queue {
				t.Errorf("the deleted queue %s is still bound", queue)
			}
			if !strings.HasPrefix(string(m.Payload), "after deletion") {
				t.Errorf("got %q", m.Payload)
			}
			return
		}
		if !errors.Is(err, context.DeadlineExceeded) || deadline.Err() != nil {
			t.Fatalf("Receive after the queue was deleted: %v", err)
		}
	}
}

// queueBoundWith returns the queue bound to amq.topic with key, as the
// broker lists it.
func queueBoundWith(t testing.TB, r *testbroker.RabbitMQ, key string) string {
	t.Helper()
	out, err := r.Ctl(testContext(t), "list_bindings", "-q", "--no-table-headers", "source_name", "destination_name", "routing_key")
	if err != nil {
		t.Fatalf("list_bindings: %v\n%s", err, out)
	}
	for line := range strings.Lines(out) {
		fields := strings.Fields(line)
		if len(fields) == 3 && fields[0] == amqp.DefaultExchange && fields[2] == key {
			return fields[1]
		}
	}
	t.Fatalf("no queue bound with %q in:\n%s", key, out)
	return ""
}

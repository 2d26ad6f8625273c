// Command withe4 is ../plain with E4 added: the same paho client, options
// and handler, with the device's client key read from its key file, its
// topic keys kept in its state file (C2 sends them; without C2, `e4 client
// set-topic-key --state NAME.state` installs one), the handler wrapped so
// that it receives plaintext, and readings published through E4. Messages
// that cannot be read are reported, never delivered.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/e4/keyfile"
	"github.com/e4-iot/e4kit/e4/store"
	"github.com/e4-iot/e4kit/transport/mqtt"
)

func main() {
	broker := flag.String("broker", "tcp://127.0.0.1:1883", "MQTT broker URL")
	count := flag.Int("n", 3, "readings to publish")
	name := flag.String("name", "boiler-sensor", "the device's name, as C2 knows it")
	keyFile := flag.String("key-file", "boiler-sensor.key", "the device's client key, hex (e4 c2 client add --key-out)")
	flag.Parse()

	key, err := keyfile.ReadKey(*keyFile, e4.KeyLen)
	if err != nil {
		log.Fatal(err)
	}
	device, err := e4.NewSymKeyClient(e4.IDFromName(*name), key, &e4.Config{Store: store.NewFile(*name + ".state")})
	if err != nil {
		log.Fatal(err)
	}

	received := make(chan string, 100)
	onReading := func(_ paho.Client, m paho.Message) {
		received <- fmt.Sprintf("received on %s: %s", m.Topic(), m.Payload())
	}
	onUnreadable := func(topic string, err error) { log.Printf("cannot read a message on %s: %v", topic, err) }
	subscribed := make(chan struct{}, 1)
	opts := paho.NewClientOptions().AddBroker(*broker).SetAutoReconnect(true)
	opts.SetOnConnectHandler(mqtt.ResubscribeOnConnect(func(c paho.Client) {
		c.Subscribe("plant/+/temp", 1, mqtt.Handler(device, onReading, onUnreadable)).Wait()
		select {
		case subscribed <- struct{}{}:
		default:
		}
	}))
	client := paho.NewClient(opts)
	if tok := client.Connect(); tok.Wait() && tok.Error() != nil {
		log.Fatal(tok.Error())
	}
	defer client.Disconnect(250)
	ctx := context.Background()
	p, err := mqtt.Protect(ctx, client, device, nil, nil) // applies C2's commands
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	<-subscribed

	for i := range *count {
		reading := fmt.Sprintf("%.1f C", 20+float64(i)/10)
		if err := p.Publish(ctx, "plant/boiler/temp", []byte(reading)); err != nil {
			log.Fatal(err)
		}
	}
	for range *count {
		fmt.Println(<-received)
	}
}

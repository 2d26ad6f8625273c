// Command plain is an MQTT application written with paho as usual, without
// E4: it subscribes to plant/+/temp in its OnConnect handler (so that a
// reconnection subscribes again), publishes -n readings on
// plant/boiler/temp and prints each reading it receives. ../withe4 is the
// same application with E4 added.
package main

import (
	"flag"
	"fmt"
	"log"

	paho "github.com/eclipse/paho.mqtt.golang"
)

func main() {
	broker := flag.String("broker", "tcp://127.0.0.1:1883", "MQTT broker URL")
	count := flag.Int("n", 3, "readings to publish")
	flag.Parse()

	received := make(chan string, 100)
	onReading := func(_ paho.Client, m paho.Message) {
		received <- fmt.Sprintf("received on %s: %s", m.Topic(), m.Payload())
	}
	subscribed := make(chan struct{}, 1)
	opts := paho.NewClientOptions().AddBroker(*broker).SetAutoReconnect(true)
	opts.SetOnConnectHandler(func(c paho.Client) {
		c.Subscribe("plant/+/temp", 1, onReading).Wait()
		select {
		case subscribed <- struct{}{}:
		default:
		}
	})
	client := paho.NewClient(opts)
	if tok := client.Connect(); tok.Wait() && tok.Error() != nil {
		log.Fatal(tok.Error())
	}
	defer client.Disconnect(250)
	<-subscribed

	for i := range *count {
		reading := fmt.Sprintf("%.1f C", 20+float64(i)/10)
		if tok := client.Publish("plant/boiler/temp", 1, false, reading); tok.Wait() && tok.Error() != nil {
			log.Fatal(tok.Error())
		}
	}
	for range *count {
		fmt.Println(<-received)
	}
}

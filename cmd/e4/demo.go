package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"

	"github.com/e4-iot/e4kit/e4"
	"github.com/spf13/cobra"
)

func newDemoCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "demo",
		Short: "Show E4 at work with built-in keys: protect, unprotect, tamper, replay",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.OutOrStdout())
		},
	}
}

// runDemo walks through what a device and a subscriber do, with fresh keys.
func runDemo(w io.Writer) error {
	const topic = "home/kitchen/temp"
	topicKey := make([]byte, e4.KeyLen)
	if _, err := rand.Read(topicKey); err != nil {
		return err
	}
	sensor, err := demoClient("kitchen-sensor", topicKey, topic)
	if err != nil {
		return err
	}
	display, err := demoClient("hall-display", topicKey, topic)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "sensor   id %v, control topic %s\n", sensor.ID(), sensor.ControlTopic())
	fmt.Fprintf(w, "display  id %v\n\n", display.ID())

	wire, err := sensor.Protect(nil, []byte("21.5 C"), topic)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "sensor publishes on %s (%d bytes, all the broker sees):\n  %s\n", topic, len(wire), hex.EncodeToString(wire))
	plain, err := display.Unprotect(nil, wire, topic)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "display reads: %q\n\n", plain)

	tampered := append([]byte(nil), wire...)
	tampered[len(tampered)-1] ^= 0x01
	_, err = display.Unprotect(nil, tampered, topic)
	fmt.Fprintf(w, "one bit flipped on the way: %v\n", err)
	_, err = display.Unprotect(nil, wire, topic)
	fmt.Fprintf(w, "the same message replayed:  %v\n", err)
	_, err = display.Unprotect(nil, wire, "home/garage/door")
	fmt.Fprintf(w, "on a topic without a key:   %v\n", err)
	return nil
}

func demoClient(name string, topicKey []byte, topic string) (*e4.Client, error) {
	key := make([]byte, e4.KeyLen)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	c, err := e4.NewSymKeyClient(e4.IDFromName(name), key, nil)
	if err != nil {
		return nil, err
	}
	return c, c.SetTopicKey(topicKey, topic)
}

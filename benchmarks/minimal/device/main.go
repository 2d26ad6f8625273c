// Command device is the smallest useful E4 device program, built only to
// measure the code size E4 adds to a device: a symmetric-key client that
// installs a topic key, protects a reading and unprotects it, as a sensor
// that publishes and subscribes would. The benchmark runner builds it
// stripped for every architecture and compares it with ../nop, a Go program
// that does nothing, to isolate E4's share from the Go runtime's.
package main

import (
	"bytes"
	"os"

	"github.com/e4-iot/e4kit/e4"
)

// deviceKey and topicKey are fixed demonstration keys: this program exists
// to be measured, not deployed.
var (
	deviceKey = bytes.Repeat([]byte{0x42}, e4.KeyLen)
	topicKey  = bytes.Repeat([]byte{0x17}, e4.KeyLen)
)

const topic = "home/kitchen/temperature"

func main() {
	if err := run(); err != nil {
		os.Stderr.WriteString("device: " + err.Error() + "\n")
		os.Exit(1)
	}
	os.Stdout.WriteString("device: protected and unprotected one message\n")
}

func run() error {
	device, err := e4.NewSymKeyClient(e4.IDFromName("thermostat-42"), deviceKey, nil)
	if err != nil {
		return err
	}
	if err := device.SetTopicKey(topicKey, topic); err != nil {
		return err
	}
	wire, err := device.Protect(nil, []byte("21.5 C"), topic)
	if err != nil {
		return err
	}
	plain, err := device.Unprotect(nil, wire, topic)
	if err != nil {
		return err
	}
	if string(plain) != "21.5 C" {
		return os.ErrInvalid
	}
	return nil
}

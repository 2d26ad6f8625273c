package mqtt_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/e4-iot/e4kit/internal/testbroker"
	"github.com/e4-iot/e4kit/transport/mqtt"
)

// TestOversizedMessagesRefusedBeforeBuffering is the test of security item
// 8: 32 MiB messages sent to a subscriber whose limit is 1 MiB are dropped
// and counted, the small messages around them arrive in order, and the
// subscriber never holds one: the process allocates less than one such
// message while they pass (the publisher is mosquitto_pub, another
// process). Before the limit, paho read each one whole.
func TestOversizedMessagesRefusedBeforeBuffering(t *testing.T) {
	testbroker.RequireBinary(t, "mosquitto_pub")
	m := testbroker.StartMosquitto(t, nil)
	cfg := dialConfig(m.URL())
	cfg.MaxMessageSize = 1 << 20
	sub := dial(t, cfg)
	topic := uniqueTopic(t, "big")
	s, err := sub.Subscribe(opContext(t), topic)
	if err != nil {
		t.Fatal(err)
	}
	const huge = 32 << 20
	file := filepath.Join(t.TempDir(), "huge")
	if err := os.WriteFile(file, make([]byte, huge), 0o600); err != nil {
		t.Fatal(err)
	}
	host, port, _ := strings.Cut(m.Addr(), ":")
	publish := func(args ...string) {
		t.Helper()
		cmd := exec.Command("mosquitto_pub", append([]string{"-h", host, "-p", port, "-q", "1", "-t", topic}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_pub: %v\n%s", err, out)
		}
	}

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	const rounds = 3
	for i := range rounds {
		publish("-m", "small "+strconv.Itoa(i))
		publish("-f", file)
	}
	publish("-m", "last")
	for i := range rounds {
		if msg := receive(t, s, "a small message"); string(msg.Payload) != fmt.Sprintf("small %d", i) {
			t.Fatalf("got %.20q, want small %d", msg.Payload, i)
		}
	}
	if msg := receive(t, s, "a small message"); string(msg.Payload) != "last" {
		t.Fatalf("got %.20q, want last", msg.Payload)
	}
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if allocated := after.TotalAlloc - before.TotalAlloc; allocated > huge/2 {
		t.Fatalf("%d MiB allocated while %d messages of %d MiB were refused: they were buffered", allocated>>20, rounds, huge>>20)
	}
	if sub.Oversized() != rounds || s.(*mqtt.Subscription).Dropped() != rounds {
		t.Fatalf("Oversized() = %d, Dropped() = %d, want %d", sub.Oversized(), s.(*mqtt.Subscription).Dropped(), rounds)
	}
}

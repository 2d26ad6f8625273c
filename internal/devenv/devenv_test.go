package devenv

import (
	"bytes"
	"context"
	"encoding/hex"
	"strings"
	"testing"
	"time"
)

func runOnce(t *testing.T, dir string, d time.Duration) (Summary, string) {
	t.Helper()
	var out bytes.Buffer
	sum, err := Run(context.Background(), Options{
		Dir: dir, BrokerAddr: "127.0.0.1:0", GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", PublishEvery: 50 * time.Millisecond,
		RotateEvery: 400 * time.Millisecond, RemoveAfter: 3, Duration: d, AwaitKey: 500 * time.Millisecond,
	}, &out)
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, out.String())
	}
	return sum, out.String()
}

func TestDevRunRotatesWithoutLossAndRemoves(t *testing.T) {
	dir := t.TempDir()
	sum, out := runOnce(t, dir, 4*time.Second)
	if sum.Rotations < 3 || sum.Removed != DeviceNames[2] {
		t.Fatalf("rotations %d, removed %q\n%s", sum.Rotations, sum.Removed, out)
	}
	for _, d := range sum.Devices {
		if d.Read == 0 || d.Lost != 0 {
			t.Errorf("%s read %d, lost %d", d.Name, d.Read, d.Lost)
		}
		removed := d.Name == sum.Removed
		if removed != (d.Unreadable > 0) {
			t.Errorf("%s could not read %d messages (removed: %v)", d.Name, d.Unreadable, removed)
		}
	}
	// The broker column is ciphertext: no JSON of the telemetry in it.
	plainHex := hex.EncodeToString([]byte(`{"from"`))
	lines := 0
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "broker sees") {
			continue
		}
		lines++
		broker, device, ok := strings.Cut(line, "|")
		if !ok || strings.Contains(broker, plainHex) || strings.Contains(broker, "from") || strings.Contains(broker, "not captured") || !strings.Contains(device, `"from"`) {
			t.Fatalf("side-by-side line is wrong: %q", line)
		}
	}
	if lines == 0 || !strings.Contains(out, "rotated the key") || !strings.Contains(out, "removed "+DeviceNames[2]) {
		t.Fatalf("output lacks the expected lines:\n%s", out)
	}
	if t.Failed() {
		t.Log(out)
	}

	// A second run on the same folder reuses the database and the devices'
	// state, and brings the removed device back.
	sum2, out2 := runOnce(t, dir, 2*time.Second)
	if strings.Contains(out2, "added "+DeviceNames[0]) || !strings.Contains(out2, "added "+DeviceNames[2]) {
		t.Fatalf("second run did not reuse the state:\n%s", out2)
	}
	for _, d := range sum2.Devices {
		if d.Lost != 0 {
			t.Fatalf("second run: %s lost %d\n%s", d.Name, d.Lost, out2)
		}
	}
}

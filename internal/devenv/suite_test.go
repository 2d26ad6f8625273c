package devenv

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/e4"
)

// TestDevRunFastSuite: the development environment runs C2 and its devices
// in fast mode, rotates without loss, and its folder then refuses the
// default suite.
func TestDevRunFastSuite(t *testing.T) {
	dir := t.TempDir()
	opts := Options{
		Dir: dir, BrokerAddr: "127.0.0.1:0", GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", PublishEvery: 50 * time.Millisecond,
		RotateEvery: 400 * time.Millisecond, RemoveAfter: 3, Duration: 2 * time.Second, AwaitKey: 500 * time.Millisecond, Suite: e4.Fast,
	}
	var out bytes.Buffer
	sum, err := Run(context.Background(), opts, &out)
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "symmetric-key mode, suite fast") || sum.Rotations < 1 {
		t.Fatalf("rotations %d:\n%s", sum.Rotations, out.String())
	}
	for _, d := range sum.Devices {
		if d.Read == 0 || d.Lost != 0 {
			t.Errorf("%s read %d, lost %d\n%s", d.Name, d.Read, d.Lost, out.String())
		}
	}
	opts.Suite = nil
	out.Reset()
	if _, err := Run(context.Background(), opts, &out); err == nil || !strings.Contains(err.Error(), `created with suite "fast", not "v1"`) {
		t.Fatalf("default suite on a fast folder: %v", err)
	}
}

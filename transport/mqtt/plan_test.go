package mqtt

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/mqtt/mqttbroker"
)

// TestBrokerSubscriptions follows the broker subscriptions of one
// connection as local subscriptions come and go: joined when they
// overlap, narrowed and removed when no longer needed.
func TestBrokerSubscriptions(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	b, err := mqttbroker.Start("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	tr, err := Dial(ctx, Config{Brokers: []string{b.URL()}})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()

	remote := func(step string, want ...string) {
		t.Helper()
		tr.mu.Lock()
		got := slices.Clone(tr.remote)
		tr.mu.Unlock()
		if !slices.Equal(got, want) {
			t.Fatalf("%s: broker subscriptions %q, want %q", step, got, want)
		}
	}
	sub := func(filter string) transport.Subscription {
		t.Helper()
		s, err := tr.Subscribe(ctx, filter)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	unsub := func(s transport.Subscription) {
		t.Helper()
		if err := s.Unsubscribe(ctx); err != nil {
			t.Fatal(err)
		}
	}

	ax := sub("a/x")
	remote("a/x", "a/x")
	ax2 := sub("a/x")
	remote("a/x twice", "a/x")
	ay := sub("a/+")
	remote("a/+ covers a/x", "a/+")
	bx := sub("+/x")
	remote("+/x overlaps a/+", "+/+")
	c := sub("c/#")
	remote("c/# overlaps +/+", "+/#")
	unsub(c)
	remote("without c/#", "+/+")
	unsub(bx)
	remote("without +/x", "a/+")
	unsub(ay)
	remote("without a/+", "a/x")
	unsub(ax)
	remote("one a/x left", "a/x")
	unsub(ax2)
	remote("none left")
}

package broker_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"

	"github.com/e4-iot/e4kit/transport/coap/broker"
)

// TestNotificationsWaitForFreeMessageIDs: past a connection's budget of
// Message IDs, the broker holds notifications in the observer's queue
// until the window has passed, instead of reusing an ID the client would
// take for a retransmission; none is lost and the order holds.
func TestNotificationsWaitForFreeMessageIDs(t *testing.T) {
	b, _ := start(t)
	const window, dataIDs, published = 2 * time.Second, 5, 8
	broker.SetMessageIDBudget(b, window, 1000+dataIDs) // 1000: the control reserve
	// A connection made after the change: the observer's was made by start.
	observerConn, _ := udp.Dial(b.Addr().String(), options.WithErrors(func(error) {}))
	t.Cleanup(func() { _ = observerConn.Close() })
	notes, _ := observe(t, observerConn, "/ps/ids/t")
	next(t, notes) // the registration's answer uses the request's ID
	publisher, _ := udp.Dial(b.Addr().String(), options.WithErrors(func(error) {}))
	t.Cleanup(func() { _ = publisher.Close() })
	for i := range published {
		resp, err := publisher.Put(ctx(t), "/ps/ids/t", message.AppOctets, strings.NewReader(fmt.Sprint(i)))
		if err != nil {
			t.Fatal(err)
		}
		publisher.ReleaseMessage(resp)
	}
	var first time.Time
	for i := range published {
		n := next(t, notes)
		if string(n.body) != fmt.Sprint(i) {
			t.Fatalf("notification %d: %q", i, n.body)
		}
		switch i {
		case 0:
			first = time.Now()
		case dataIDs:
			if waited := time.Since(first); waited < window-100*time.Millisecond {
				t.Fatalf("notification %d came %v after the first: an ID was reused within the %v window", i, waited, window)
			}
		}
	}
}

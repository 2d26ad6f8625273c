package coap

import "time"

// SetMessageIDBudget gives t a budget of limit Message IDs per window,
// for tests that cannot wait out CoAP's 247-second exchange lifetime.
func SetMessageIDBudget(t *Transport, window time.Duration, limit int) {
	t.ids.Reset(window, limit)
}

package broker

import "time"

// SetMessageIDBudget gives the connections b accepts from now on a budget
// of limit Message IDs per window, for tests that cannot wait out CoAP's
// 247-second exchange lifetime.
func SetMessageIDBudget(b *Broker, window time.Duration, limit int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.idWindow, b.idLimit = window, limit
}

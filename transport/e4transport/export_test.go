package e4transport

// SetBatching turns the batch path of the subscriptions p makes afterwards
// on (the default) or off, so tests can compare it with one at a time.
func SetBatching(p *Protected, on bool) { p.noBatch = !on }

// BatchedMessages returns how many messages p's subscriptions unprotected
// in batches.
func BatchedMessages(p *Protected) uint64 { return p.batched.Load() }

package monitor

// SetAfterCheck makes the monitor call f after it counted each message,
// so tests wait for a message to be counted without polling.
func (m *Monitor) SetAfterCheck(f func(topic string, r Result, ignored bool)) { m.afterCheck = f }

// ReplayLen, TopicsCached, SignersCached and EventKeys expose the sizes of
// the bounded structures.
func (m *Monitor) ReplayLen() int     { return m.replay.len() }
func (m *Monitor) TopicsCached() int  { return m.keys.size() }
func (m *Monitor) SignersCached() int { return m.signers.size() }
func (m *Monitor) EventKeys() int {
	m.events.mu.Lock()
	defer m.events.mu.Unlock()
	return len(m.events.pending)
}

// FlushEvents runs one flush of the coalesced events at the monitor's now.
func (m *Monitor) FlushEvents() { m.events.flush(m.cfg.Now()) }

// TallyHeld returns how many topic states and carried counts the message
// counting holds.
func (m *Monitor) TallyHeld() int {
	m.tally.mu.Lock()
	defer m.tally.mu.Unlock()
	return len(m.tally.dirty) + len(m.tally.carry)
}

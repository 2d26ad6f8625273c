package mqtt

import (
	"bytes"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// copyingStore is paho's in-memory store, except that Get returns a copy
// of the stored packet. After a reconnect paho's resume sets the DUP flag
// on the packets it loads from the store and sends them again, while the
// old connection's writer may still be encoding the very same packet: a
// data race in paho v1.5.1 (client.go resume vs net.go startOutgoingComms)
// when the store hands out the stored pointer. With a copy, resume marks and
// sends its own packet.
type copyingStore struct {
	*paho.MemoryStore
}

func newCopyingStore() *copyingStore { return &copyingStore{MemoryStore: paho.NewMemoryStore()} }

// Get returns a copy of the packet stored under key, or nil.
func (s *copyingStore) Get(key string) packets.ControlPacket {
	p := s.MemoryStore.Get(key)
	if p == nil {
		return nil
	}
	var buf bytes.Buffer
	if err := p.Write(&buf); err != nil {
		return nil // paho treats nil as "nothing stored" and skips it
	}
	dup, err := packets.ReadPacket(&buf)
	if err != nil {
		return nil
	}
	return dup
}

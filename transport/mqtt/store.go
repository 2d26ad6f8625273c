package mqtt

import (
	"bytes"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// copyingStore is paho's in-memory store, except that it keeps its own
// copy of each packet put in it and hands out a fresh copy from Get. paho
// v1.5.1 otherwise shares one packet between the store and the writer of
// the connection that sends it: after a reconnect, resume sets the DUP flag
// on the packets it loads and sends them again, while the old connection's
// writer may still be encoding the very same packet, and encoding writes
// the packet's length field (client.go resume vs net.go
// startOutgoingComms). Copying only in Get still encoded the shared packet
// to copy it, which raced with that writer; paho puts a packet in the
// store before any writer has it, so a copy made there is never shared.
type copyingStore struct {
	*paho.MemoryStore
}

func newCopyingStore() *copyingStore { return &copyingStore{MemoryStore: paho.NewMemoryStore()} }

// Put stores a copy of packet under key; a packet that cannot be copied is
// stored as it is.
func (s *copyingStore) Put(key string, packet packets.ControlPacket) {
	if dup := copyPacket(packet); dup != nil {
		packet = dup
	}
	s.MemoryStore.Put(key, packet)
}

// Get returns a copy of the packet stored under key, or nil.
func (s *copyingStore) Get(key string) packets.ControlPacket {
	return copyPacket(s.MemoryStore.Get(key))
}

// copyPacket returns a copy of p, or nil for nil or a packet that does not
// decode (paho treats nil as "nothing stored" and skips it). A PUBLISH, the
// packet stored for every QoS 1 and 2 message, is copied field by field:
// its payload is shared, since nobody writes it (the adapter hands paho a
// copy of the caller's), and paho changes only the header fields (the DUP
// flag, the length). Other packets are encoded and decoded; encoding
// writes p's length field, so p must not be in a writer's hands.
func copyPacket(p packets.ControlPacket) packets.ControlPacket {
	if p == nil {
		return nil
	}
	if pub, ok := p.(*packets.PublishPacket); ok {
		dup := *pub
		return &dup
	}
	var buf bytes.Buffer
	if err := p.Write(&buf); err != nil {
		return nil
	}
	dup, err := packets.ReadPacket(&buf)
	if err != nil {
		return nil
	}
	return dup
}

package mqtt

import (
	"bytes"
	"io"
	"testing"

	"github.com/eclipse/paho.mqtt.golang/packets"
)

func TestCopyingStoreGetReturnsACopy(t *testing.T) {
	s := newCopyingStore()
	s.Open()
	defer s.Close()
	p := packets.NewControlPacket(packets.Publish).(*packets.PublishPacket)
	p.TopicName, p.Qos, p.MessageID, p.Payload = "e4/abc", 2, 7, []byte("command")
	s.Put("o.7", p)

	got, ok := s.Get("o.7").(*packets.PublishPacket)
	if !ok || got == p {
		t.Fatalf("Get returned %T %p, want a copy of %p", got, got, p)
	}
	if got.TopicName != p.TopicName || got.Qos != 2 || got.MessageID != 7 || !bytes.Equal(got.Payload, p.Payload) {
		t.Fatalf("copy differs: %+v", got)
	}
	got.Dup = true // what paho's resume does
	if p.Dup {
		t.Fatal("changing the copy changed the stored packet")
	}
	if s.Get("o.8") != nil {
		t.Fatal("Get of a missing key is not nil")
	}
}

// TestCopyingStoreSharesNothingWithTheWriter: the connection's writer
// encodes the packet it was given while resume, after a reconnect, gets
// the same message from the store; under -race, a store that encoded the
// writer's packet to copy it (as Get alone did) reports a data race here.
func TestCopyingStoreSharesNothingWithTheWriter(t *testing.T) {
	s := newCopyingStore()
	s.Open()
	defer s.Close()
	p := packets.NewControlPacket(packets.Publish).(*packets.PublishPacket)
	p.TopicName, p.Qos, p.MessageID, p.Payload = "e4/abc", 1, 9, []byte("command")
	s.Put("o.9", p)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 200 {
			_ = p.Write(io.Discard) // the writer of the old connection
		}
	}()
	for range 200 {
		got, ok := s.Get("o.9").(*packets.PublishPacket)
		if !ok || got.MessageID != 9 {
			t.Fatalf("Get returned %+v", got)
		}
		got.Dup = true // resume marks its own copy
	}
	<-done
}

package mqtt

import (
	"bufio"
	"bytes"
	"io"
	"slices"
	"testing"
)

// publishPacket encodes a PUBLISH with the given QoS, topic and payload.
func publishPacket(qos byte, topic string, payload []byte) []byte {
	variable := []byte{byte(len(topic) >> 8), byte(len(topic))}
	variable = append(variable, topic...)
	if qos > 0 {
		variable = append(variable, 0x12, 0x34)
	}
	body := append(variable, payload...)
	return append(append([]byte{publishType<<4 | qos<<1}, encodeRemainingLength(len(body))...), body...)
}

// TestLimitedConnEmptiesOnlyOversizedPublish: PUBLISH packets over the
// limit reach paho's side with the same header and no payload, and their
// topic is reported; the others, and other packet types, pass unchanged.
func TestLimitedConnEmptiesOnlyOversizedPublish(t *testing.T) {
	big := bytes.Repeat([]byte{0xAB}, 70_000) // a 3-byte remaining length
	pingresp := []byte{0xD0, 0x00}
	var stream, want []byte
	add := func(in, out []byte) {
		stream = append(stream, in...)
		want = append(want, out...)
	}
	add(publishPacket(1, "a/b", big), publishPacket(1, "a/b", nil))
	add(pingresp, pingresp)
	add(publishPacket(0, "small", []byte("hello")), publishPacket(0, "small", []byte("hello")))
	add(publishPacket(2, "exact", make([]byte, 1000)), publishPacket(2, "exact", make([]byte, 1000)))
	add(publishPacket(0, "c", big), publishPacket(0, "c", nil))

	var topics []string
	c := &limitedConn{r: bufio.NewReader(bytes.NewReader(stream)), limit: 1000, oversized: func(topic string) { topics = append(topics, topic) }}
	// Small reads, as paho's first-byte and length reads are.
	var got []byte
	buf := make([]byte, 7)
	for {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("stream after the limit differs: %d bytes, want %d", len(got), len(want))
	}
	if !slices.Equal(topics, []string{"a/b", "c"}) {
		t.Fatalf("oversized topics %q", topics)
	}
}

func TestLimitedConnRefusesMalformedPublish(t *testing.T) {
	// A topic length beyond the packet.
	packet := []byte{publishType << 4, 0x7f, 0xff, 0xff}
	packet = append(packet, make([]byte, 0x7f)...)
	c := &limitedConn{r: bufio.NewReader(bytes.NewReader(packet)), limit: 10, oversized: func(string) {}}
	if _, err := c.Read(make([]byte, 10)); err != errMalformed {
		t.Fatalf("Read = %v, want errMalformed", err)
	}
}

func TestOversizedQueueTakesOldestOfTopic(t *testing.T) {
	var q oversizedQueue
	q.push("a")
	q.push("b")
	if q.take("b", []byte("x")) {
		t.Fatal("a message with a payload taken as a replacement")
	}
	if !q.take("b", nil) || q.take("b", nil) || !q.take("a", nil) {
		t.Fatal("take does not find each replacement once")
	}
}

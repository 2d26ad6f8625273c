package mqtt

import (
	"bufio"
	"errors"
	"io"
	"net"
	"slices"
	"sync"
)

// Inbound size limit. MQTT gives every packet's length in its fixed header,
// before the body, so a PUBLISH too large for Config.MaxMessageSize can be
// refused before a byte of its payload is held: limitedConn reads the
// stream paho reads, and replaces such a packet by the same PUBLISH with
// an empty payload (same flags, topic and packet id), skipping the payload
// on the wire without keeping it. paho then acknowledges it as usual, so
// the session goes on and the broker does not send it again, and the
// adapter, told of the replacement, drops the empty message it delivers
// and counts it.

// publishType is the packet type of PUBLISH, in the high nibble of the
// first byte.
const publishType = 3

// errMalformed reports a PUBLISH whose variable header does not fit in it.
var errMalformed = errors.New("mqtt: malformed PUBLISH packet from the broker")

// limitedConn is a net.Conn whose incoming PUBLISH packets with a payload
// over limit lose their payload; see above.
type limitedConn struct {
	net.Conn
	r     *bufio.Reader
	limit int
	// oversized is told the topic of each replaced packet, before paho
	// can read the replacement.
	oversized func(topic string)

	pending     []byte // bytes of the current packet to hand out first
	passthrough int    // then this many bytes of body, read as they come
}

func newLimitedConn(c net.Conn, limit int, oversized func(string)) net.Conn {
	return &limitedConn{Conn: c, r: bufio.NewReaderSize(c, readBufferSize), limit: limit, oversized: oversized}
}

// Read hands out the incoming stream, packet by packet.
func (c *limitedConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		switch {
		case len(c.pending) > 0:
			n := copy(p, c.pending)
			c.pending = c.pending[n:]
			return n, nil
		case c.passthrough > 0:
			n, err := c.r.Read(p[:min(len(p), c.passthrough)])
			c.passthrough -= n
			return n, err
		}
		if err := c.nextPacket(); err != nil {
			return 0, err
		}
	}
}

// nextPacket reads the next fixed header and decides what to hand out.
func (c *limitedConn) nextPacket() error {
	first, err := c.r.ReadByte()
	if err != nil {
		return err
	}
	length, lengthBytes, err := readRemainingLength(c.r)
	if err != nil {
		return err
	}
	if first>>4 != publishType || length <= c.limit {
		c.pending = append(append(c.pending[:0], first), lengthBytes...)
		c.passthrough = length
		return nil
	}
	return c.publishHeader(first, length, lengthBytes)
}

// publishHeader reads the variable header of a PUBLISH that may be too
// large, and either passes it on or replaces the packet.
func (c *limitedConn) publishHeader(first byte, length int, lengthBytes []byte) error {
	var topicLen [2]byte
	if _, err := io.ReadFull(c.r, topicLen[:]); err != nil {
		return err
	}
	topicLength := int(topicLen[0])<<8 | int(topicLen[1])
	header := 2 + topicLength + packetIDLen(first)
	if header > length {
		return errMalformed
	}
	variable := make([]byte, header)
	copy(variable, topicLen[:])
	if _, err := io.ReadFull(c.r, variable[2:]); err != nil {
		return err
	}
	payload := length - header
	if payload <= c.limit {
		c.pending = append(append(append(c.pending[:0], first), lengthBytes...), variable...)
		c.passthrough = payload
		return nil
	}
	if _, err := c.r.Discard(payload); err != nil {
		return err
	}
	c.oversized(string(variable[2 : 2+topicLength]))
	c.pending = append(append(append(c.pending[:0], first), encodeRemainingLength(header)...), variable...)
	c.passthrough = 0
	return nil
}

func packetIDLen(first byte) int {
	if (first>>1)&3 > 0 {
		return 2
	}
	return 0
}

// readRemainingLength reads MQTT's variable-length integer (1 to 4 bytes)
// and returns it with its bytes.
func readRemainingLength(r *bufio.Reader) (int, []byte, error) {
	var raw []byte
	value, shift := 0, 0
	for {
		b, err := r.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		raw = append(raw, b)
		value |= int(b&0x7f) << shift
		if b&0x80 == 0 {
			return value, raw, nil
		}
		shift += 7
		if len(raw) == 4 {
			return 0, nil, errors.New("mqtt: malformed remaining length from the broker")
		}
	}
}

// encodeRemainingLength encodes n as MQTT's variable-length integer.
func encodeRemainingLength(n int) []byte {
	var out []byte
	for {
		b := byte(n & 0x7f)
		n >>= 7
		if n > 0 {
			b |= 0x80
		}
		out = append(out, b)
		if n == 0 {
			return out
		}
	}
}

// oversizedQueue remembers, in arrival order, the topics of the packets
// limitedConn emptied, until the adapter meets their empty replacement.
type oversizedQueue struct {
	mu     sync.Mutex
	topics []string
}

// maxOversized bounds the queue: an entry whose replacement paho never
// delivered (the connection dropped in between) must not stay forever.
const maxOversized = 1024

func (q *oversizedQueue) push(topic string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.topics) == maxOversized {
		q.topics = slices.Delete(q.topics, 0, 1)
	}
	q.topics = append(q.topics, topic)
}

// take reports whether an empty message on topic is the replacement of an
// oversized one, and forgets it. paho delivers in arrival order, so the
// replacement is the oldest entry of its topic; an application's genuinely
// empty message on the same topic just before it would be taken instead,
// which changes nothing visible: one of two identical empty messages is
// dropped.
func (q *oversizedQueue) take(topic string, payload []byte) bool {
	if len(payload) != 0 {
		return false
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	i := slices.Index(q.topics, topic)
	if i < 0 {
		return false
	}
	q.topics = slices.Delete(q.topics, i, i+1)
	return true
}

// Package datagram decides, for the CoAP adapter and the CoAP broker
// alike, whether a message travels in one datagram or block-wise.
//
// go-coap sends block-wise every body larger than a block (at most 1024
// bytes). RFC 7252 §4.6 bounds the whole message instead: with an unknown
// path MTU (1280 bytes for IPv6), 1152 bytes of header, token, options and
// payload. libcoap follows it: it reads datagrams of up to 1152 bytes and
// resets larger ones. A 1 KiB message protected by E4 (1048 bytes) fits,
// with the options of a usual topic.
package datagram

import (
	"errors"
	"fmt"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
)

// DefaultMaxSize is RFC 7252's bound on a message when the path MTU is
// unknown.
const DefaultMaxSize = 1152

// Limit is the largest configurable size: go-coap reads datagrams of up to
// 64 KiB.
const Limit = 63 << 10

// Resolve applies the default to a configured maximum size (0) and checks
// it. The default holds with blocks of 1024 bytes; with smaller blocks (a
// constrained link), none: every body over a block goes block-wise, as a
// negative size asks. It returns the size, or 0 for none.
func Resolve(size int, szx blockwise.SZX) (int, error) {
	switch {
	case size == 0 && szx == blockwise.SZX1024:
		return DefaultMaxSize, nil
	case size <= 0:
		return 0, nil
	case size > Limit:
		return 0, fmt.Errorf("a datagram of %d bytes is over %d", size, Limit)
	}
	return size, nil
}

// Fits reports whether m, once it carries a payload of n bytes, may travel
// in one datagram: when the payload fits in one block of szx (go-coap's
// rule, never larger than a block would be) or the whole message in
// maxSize bytes (0: no such bound).
func Fits(m *pool.Message, n int, szx blockwise.SZX, maxSize int) bool {
	return int64(n) <= szx.Size() || maxSize > 0 && Size(m, n) <= maxSize
}

// Size returns the length of m's datagram with a payload of n bytes (m's
// own body is not counted).
func Size(m *pool.Message, n int) int {
	size := 4 + len(m.Token()) // header, token
	options, err := m.Options().Marshal(nil)
	if err == nil || errors.Is(err, message.ErrTooSmall) {
		size += options
	}
	if n > 0 {
		size += 1 + n // payload marker, payload
	}
	return size
}

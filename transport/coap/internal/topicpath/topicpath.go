// Package topicpath maps canonical topic names to CoAP resource paths and
// back, for the CoAP adapter and the CoAP broker alike.
//
// The mapping is the identity on levels: topic level i is Uri-Path option
// (prefix length + i), byte for byte, and "/" only separates levels. Since
// CoAP carries each path segment in its own option, no escaping is needed:
// a level may hold any byte but "/" (including "%", "?", "." and spaces),
// and empty levels ("a//b", "/a", "a/") survive as empty options. The only
// limit is CoAP's: one Uri-Path option holds at most 255 bytes.
package topicpath

import (
	"errors"
	"fmt"
	"strings"

	"github.com/plgd-dev/go-coap/v3/message"
)

// MaxLevel is the longest topic level a Uri-Path option can carry.
const MaxLevel = 255

// ErrLevelTooLong reports a topic level longer than MaxLevel bytes.
var ErrLevelTooLong = errors.New("topicpath: topic level longer than 255 bytes")

// ParsePrefix splits a path prefix such as "/ps" or "ps/v1" into segments.
// Empty segments are dropped, so "" and "/" mean "no prefix".
func ParsePrefix(prefix string) []string {
	var segments []string
	for s := range strings.SplitSeq(prefix, "/") {
		if s != "" {
			segments = append(segments, s)
		}
	}
	return segments
}

// Options returns the Uri-Path options (id) naming topic under prefix.
func Options(id message.OptionID, prefix []string, topic string) ([]message.Option, error) {
	levels := strings.Split(topic, "/")
	opts := make([]message.Option, 0, len(prefix)+len(levels))
	for _, s := range prefix {
		opts = append(opts, message.Option{ID: id, Value: []byte(s)})
	}
	for _, level := range levels {
		if len(level) > MaxLevel {
			return nil, fmt.Errorf("%w: %d bytes", ErrLevelTooLong, len(level))
		}
		opts = append(opts, message.Option{ID: id, Value: []byte(level)})
	}
	return opts, nil
}

// Topic returns the topic named by the options id (Uri-Path or
// Location-Path) of opts, which must start with prefix and name at least
// one level below it.
func Topic(id message.OptionID, prefix []string, opts message.Options) (string, bool) {
	var segments []string
	for _, o := range opts {
		if o.ID == id {
			segments = append(segments, string(o.Value))
		}
	}
	if len(segments) <= len(prefix) {
		return "", false
	}
	for i, s := range prefix {
		if segments[i] != s {
			return "", false
		}
	}
	return strings.Join(segments[len(prefix):], "/"), true
}

package topicpath

import (
	"errors"
	"strings"
	"testing"

	"github.com/plgd-dev/go-coap/v3/message"
)

func TestParsePrefix(t *testing.T) {
	for prefix, want := range map[string]string{
		"/ps": "ps", "ps": "ps", "/ps/v1/": "ps|v1", "": "", "/": "", "//a//b": "a|b",
	} {
		if got := strings.Join(ParsePrefix(prefix), "|"); got != want {
			t.Errorf("ParsePrefix(%q) = %q, want %q", prefix, got, want)
		}
	}
}

// TestRoundTrip: Options then Topic is the identity, for any level bytes.
func TestRoundTrip(t *testing.T) {
	prefix := ParsePrefix("/ps")
	for _, topic := range []string{
		"a", "a/b/c", "a//b", "/a", "a/", "/", "%2F/%/?x=1", "+/#", "\x00\xff/é", strings.Repeat("x", MaxLevel),
	} {
		opts, err := Options(message.URIPath, prefix, topic)
		if err != nil {
			t.Fatalf("Options(%q): %v", topic, err)
		}
		if len(opts) != 1+strings.Count(topic, "/")+1 || string(opts[0].Value) != "ps" {
			t.Errorf("Options(%q) = %d options starting %q", topic, len(opts), opts[0].Value)
		}
		got, ok := Topic(message.URIPath, prefix, opts)
		if !ok || got != topic {
			t.Errorf("Topic(Options(%q)) = %q, %v", topic, got, ok)
		}
	}
}

func TestLevelTooLong(t *testing.T) {
	_, err := Options(message.URIPath, nil, "a/"+strings.Repeat("x", MaxLevel+1))
	if !errors.Is(err, ErrLevelTooLong) {
		t.Errorf("a 256-byte level: %v, want %v", err, ErrLevelTooLong)
	}
}

func TestTopicOutsidePrefix(t *testing.T) {
	prefix := ParsePrefix("/ps")
	for _, path := range [][]string{{}, {"ps"}, {"other", "a"}, {"p", "a"}} {
		var opts message.Options
		for _, s := range path {
			opts = append(opts, message.Option{ID: message.URIPath, Value: []byte(s)})
		}
		if topic, ok := Topic(message.URIPath, prefix, opts); ok {
			t.Errorf("path %q is topic %q, want none", path, topic)
		}
	}
	// Other options are ignored; only the given id counts.
	opts := message.Options{
		{ID: message.URIPath, Value: []byte("ps")},
		{ID: message.LocationPath, Value: []byte("x")},
		{ID: message.URIPath, Value: []byte("a")},
	}
	if topic, ok := Topic(message.URIPath, prefix, opts); !ok || topic != "a" {
		t.Errorf("Topic = %q, %v, want \"a\"", topic, ok)
	}
}

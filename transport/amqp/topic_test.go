package amqp_test

import (
	"errors"
	"testing"

	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/amqp"
)

func TestRoutingKey(t *testing.T) {
	for topic, want := range map[string]string{
		"a":                    "a",
		"sensors/kitchen/temp": "sensors.kitchen.temp",
		"e4/0123abcd":          "e4.0123abcd",
		"a//b":                 "a..b",
		"/leading":             ".leading",
		"trailing/":            "trailing.",
		"a/*/b":                "a.*.b", // "*" is an ordinary word in a routing key
		"we!rd/ch@rs/ü":        "we!rd.ch@rs.ü",
	} {
		got, err := amqp.RoutingKey(topic)
		if err != nil || got != want {
			t.Errorf("RoutingKey(%q) = %q, %v; want %q", topic, got, err, want)
		}
		if back := amqp.TopicFromRoutingKey(got); back != topic {
			t.Errorf("TopicFromRoutingKey(RoutingKey(%q)) = %q", topic, back)
		}
	}
}

func TestBindingKey(t *testing.T) {
	for filter, want := range map[string]string{
		"a/b":         "a.b",
		"a/+/c":       "a.*.c",
		"+":           "*",
		"#":           "#",
		"a/#":         "a.#",
		"+/+/#":       "*.*.#",
		"e4/0123abcd": "e4.0123abcd",
	} {
		got, err := amqp.BindingKey(filter)
		if err != nil || got != want {
			t.Errorf("BindingKey(%q) = %q, %v; want %q", filter, got, err, want)
		}
	}
}

func TestTopicFromRoutingKey(t *testing.T) {
	for key, want := range map[string]string{
		"a.b.c": "a/b/c",
		"a":     "a",
		"..":    "//",
		"":      "",
	} {
		if got := amqp.TopicFromRoutingKey(key); got != want {
			t.Errorf("TopicFromRoutingKey(%q) = %q, want %q", key, got, want)
		}
	}
}

func TestInvalidTopics(t *testing.T) {
	long := make([]byte, 256)
	for i := range long {
		long[i] = 'x'
	}
	for _, topic := range []string{"", "a.b", "a/b.c/d", ".", "a/+", "a/#", "a+", string(long)} {
		if key, err := amqp.RoutingKey(topic); !errors.Is(err, transport.ErrInvalidTopic) {
			t.Errorf("RoutingKey(%q) = %q, %v; want ErrInvalidTopic", topic, key, err)
		}
	}
	for _, filter := range []string{"", "a.b/#", "x/y.z", "a/*", "*", "#/a", "a/b+", string(long)} {
		if key, err := amqp.BindingKey(filter); !errors.Is(err, transport.ErrInvalidTopic) {
			t.Errorf("BindingKey(%q) = %q, %v; want ErrInvalidTopic", filter, key, err)
		}
	}
	// 255 bytes is the longest short string AMQP carries.
	if _, err := amqp.RoutingKey(string(long[:255])); err != nil {
		t.Errorf("RoutingKey of 255 bytes: %v", err)
	}
}

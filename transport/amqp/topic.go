package amqp

import (
	"errors"
	"fmt"
	"strings"

	"github.com/e4-iot/e4kit/transport"
)

// maxKeyLen is the longest AMQP routing or binding key: a short string.
const maxKeyLen = 255

// RoutingKey maps a canonical concrete topic to its AMQP routing key:
// "/" becomes ".", so "sensors/kitchen/temp" is "sensors.kitchen.temp".
//
// A level containing "." has no routing-key equivalent (it would split into
// two words and come back as two levels) and is refused with
// transport.ErrInvalidTopic, as are wildcards and keys longer than 255
// bytes. A level that is exactly "*" is allowed: in a routing key it is an
// ordinary word.
func RoutingKey(topic string) (string, error) {
	if err := transport.ValidateTopic(topic); err != nil {
		return "", fmt.Errorf("amqp: %w", err)
	}
	if err := checkLevels(topic, false); err != nil {
		return "", err
	}
	return strings.ReplaceAll(topic, "/", "."), nil
}

// BindingKey maps a canonical subscription filter to an AMQP topic-exchange
// binding key: "/" becomes ".", the one-level wildcard "+" becomes "*" and
// the multi-level "#" stays "#" (both match zero or more trailing levels:
// "a/#" binds "a.#", which matches "a" as MQTT does).
//
// Besides the levels RoutingKey refuses, a level that is exactly "*" is
// refused: in a binding key it would be a wildcard, not the literal word.
func BindingKey(filter string) (string, error) {
	if err := transport.ValidateFilter(filter); err != nil {
		return "", fmt.Errorf("amqp: %w", err)
	}
	if err := checkLevels(filter, true); err != nil {
		return "", err
	}
	levels := strings.Split(filter, "/")
	for i, level := range levels {
		if level == "+" {
			levels[i] = "*"
		}
	}
	return strings.Join(levels, "."), nil
}

// TopicFromRoutingKey maps the routing key of a delivery back to the
// canonical topic: "." becomes "/". It is the inverse of RoutingKey.
func TopicFromRoutingKey(key string) string {
	return strings.ReplaceAll(key, ".", "/")
}

// checkLevels refuses what the "/" <-> "." mapping cannot carry.
func checkLevels(name string, isFilter bool) error {
	if len(name) > maxKeyLen {
		return invalid(name, "is longer than 255 bytes")
	}
	for level := range strings.SplitSeq(name, "/") {
		if strings.Contains(level, ".") {
			return invalid(name, "has a level containing \".\", which AMQP routing keys use as separator")
		}
		if isFilter && level == "*" {
			return invalid(name, "has a level \"*\", which an AMQP binding key can only read as a wildcard")
		}
	}
	return nil
}

func invalid(name, why string) error {
	return errors.Join(transport.ErrInvalidTopic, fmt.Errorf("amqp: topic %q %s", name, why))
}

package amqp

import (
	"context"
	"fmt"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/transport/e4transport"
)

// Protect adds E4 to a channel the application opened, in one call: it
// wraps ch with FromChannel(ch, cfg) and the result with
// e4transport.Protect(ctx, t, c, opts), so what is published through the
// returned transport is protected with c's topic keys and what is received
// is unprotected. cfg and opts may be nil (the adapter's defaults, strict
// E4 policies). The limits of FromChannel apply (no reconnection; the
// channel stays the application's and is left open by Close).
func Protect(ctx context.Context, ch *amqp091.Channel, c *e4.Client, cfg *Config, opts *e4transport.Options) (*e4transport.Protected, error) {
	t, err := FromChannel(ch, cfg)
	if err != nil {
		return nil, err
	}
	p, err := e4transport.Protect(ctx, t, c, opts)
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("amqp: protecting the channel: %w", err)
	}
	return p, nil
}

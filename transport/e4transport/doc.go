// Package e4transport adds E4 to any transport.Transport: Protect wraps a
// transport with an E4 client, so that publishing protects with the
// topic's key, receiving unprotects (dropping, or holding for a key, what
// does not authenticate), and the commands C2 sends on the client's control
// topic are applied, acknowledged and answered with sync requests.
//
//	t, err := mqtt.Dial(ctx, mqtt.Config{Brokers: []string{"tcp://broker:1883"}})
//	p, err := e4transport.Protect(ctx, t, client, nil)
//	err = p.Publish(ctx, "home/kitchen/temp", []byte("21.5 C"))
//
// The decorator lives apart from package transport so that the interface,
// and adapters that need no E4 (transport/loopback, an application's own),
// do not link the E4 core; each adapter's Protect one-liner is
// FromX(native, cfg) followed by this package's Protect.
package e4transport

// Package dial opens a transport.Transport from a broker URL, choosing the
// adapter (MQTT, AMQP or CoAP) from the URL's scheme, so that a program or
// a command line takes one "--broker URL" whatever the protocol:
//
//	t, err := dial.Open(ctx, "mqtts://broker.example:8883", dial.Options{CAFile: "ca.pem"})
//	p, err := e4transport.Protect(ctx, t, e4Client, nil)
//
// # URL forms
//
//	mqtt://HOST[:PORT]          MQTT over TCP, port 1883 by default ("tcp://" is the same)
//	mqtts://HOST[:PORT]         MQTT over TLS, port 8883 ("ssl://" and "tls://" are the same)
//	ws://HOST[:PORT][/PATH]     MQTT over WebSocket, port 80; PATH is the WebSocket path
//	wss://HOST[:PORT][/PATH]    MQTT over secure WebSocket, port 443
//	amqp://HOST[:PORT][/VHOST]  AMQP 0-9-1, port 5672; VHOST as in RabbitMQ URIs
//	                            (none or "/" is the default vhost "/", "%2f" too)
//	amqps://HOST[:PORT][/VHOST] AMQP over TLS, port 5671
//	coap://HOST[:PORT][/PREFIX] CoAP over UDP, port 5683; PREFIX is the path under
//	                            which the broker keeps topics (default "/ps", the
//	                            prefix of our broker; "/" puts topics at the root)
//	coaps://HOST[:PORT][/PREFIX] CoAP over DTLS, port 5684, with a pre-shared key
//	                            (Options.PSK) or certificates
//
// HOST may be a name, an IPv4 address or a bracketed IPv6 address
// ("[::1]"). Schemes are case-insensitive. Query strings and fragments are
// refused: every setting goes through Options.
//
// # Credentials
//
// MQTT and AMQP take a username and password from the URL
// ("mqtt://user:pass@host", percent-encoded where needed) or from
// Options; when Options.Username is set, Options.Username and
// Options.Password replace whatever the URL holds, and Options.Password
// alone completes a URL that names the user only. Without credentials an
// AMQP connection uses RabbitMQ's default guest account. The URL given to
// the adapter never carries the password, so it cannot leak into an error
// message; Target.Redacted is the URL to show in logs. CoAP has no
// username: secure it with coaps:// and a PSK or certificates.
//
// # Security options
//
// TLS material (CA file, client certificate and key, server name, insecure
// skip verify) is only accepted with a secure scheme: giving it with a
// plain one is an error rather than a silently unencrypted connection. The
// same goes for every option that the chosen protocol does not have (a
// client id for AMQP, an exchange for MQTT, a PSK for TLS...). Certificate
// verification is on unless Options.InsecureSkipVerify says otherwise;
// coaps:// has no such switch.
package dial

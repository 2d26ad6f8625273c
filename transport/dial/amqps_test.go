package dial_test

import (
	"strings"
	"testing"

	"github.com/e4-iot/e4kit/internal/testbroker"
	"github.com/e4-iot/e4kit/transport/dial"
)

// TestRabbitMQTLS runs amqps against a RabbitMQ node that requires client
// certificates, with the CA and the client certificate given as files
// (the node's default guest account, which the URL need not name).
func TestRabbitMQTLS(t *testing.T) {
	r := testbroker.StartRabbitMQ(t, &testbroker.RabbitMQOptions{TLS: true})
	port := strings.TrimPrefix(r.TLSAddr(), "127.0.0.1:")
	opts := dial.Options{CAFile: r.CAFile(), CertFile: r.ClientCertFile(), KeyFile: r.ClientKeyFile()}
	roundTrip(t, "amqps://127.0.0.1:"+port, opts)
	roundTrip(t, "amqps://guest:guest@localhost:"+port+"/", opts)

	// Without the CA the node's certificate is refused; without a client
	// certificate the node refuses us (the message depends on which side
	// of the TLS 1.3 handshake notices first, hence only the prefix).
	openFails(t, "amqps://127.0.0.1:"+port, dial.Options{CertFile: opts.CertFile, KeyFile: opts.KeyFile}, "certificate signed by unknown authority")
	openFails(t, "amqps://127.0.0.1:"+port, dial.Options{CAFile: opts.CAFile}, "amqp: connecting")
	// The name checked must be the certificate's.
	wrongName := opts
	wrongName.ServerName = "other.example"
	openFails(t, "amqps://127.0.0.1:"+port, wrongName, "not other.example")
	// Plain AMQP to the TLS port fails instead of waiting for an answer.
	openFails(t, "amqp://127.0.0.1:"+port, dial.Options{}, "amqp: connecting")
}

package dial_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/e4-iot/e4kit/internal/testutil"
	"github.com/e4-iot/e4kit/transport/dial"
	"github.com/e4-iot/e4kit/transport/mqtt"
)

// secret is the password of the parse tests: no error may show it.
const secret = "s3cr@t-pw"

func TestParseMQTT(t *testing.T) {
	pki := testutil.NewTestPKI(t)
	tests := []struct {
		url      string
		opts     dial.Options
		want     mqtt.Config
		tls      bool
		redacted string
	}{
		{url: "mqtt://broker.example", want: mqtt.Config{Brokers: []string{"tcp://broker.example:1883"}}, redacted: "mqtt://broker.example"},
		{url: "tcp://broker.example:1884", want: mqtt.Config{Brokers: []string{"tcp://broker.example:1884"}}},
		{url: "mqtt://[::1]", want: mqtt.Config{Brokers: []string{"tcp://[::1]:1883"}}},
		{url: "MQTTS://broker.example", want: mqtt.Config{Brokers: []string{"ssl://broker.example:8883"}}, tls: true},
		{url: "ssl://broker.example:9999", want: mqtt.Config{Brokers: []string{"ssl://broker.example:9999"}}, tls: true},
		{url: "tls://broker.example", want: mqtt.Config{Brokers: []string{"ssl://broker.example:8883"}}, tls: true},
		{url: "ws://broker.example/mqtt", want: mqtt.Config{Brokers: []string{"ws://broker.example:80/mqtt"}}},
		{url: "wss://broker.example:8443/a%20b", want: mqtt.Config{Brokers: []string{"wss://broker.example:8443/a%20b"}}, tls: true},
		{url: "mqtt://broker.example/", want: mqtt.Config{Brokers: []string{"tcp://broker.example:1883"}}},
		{
			url:      "mqtt://alice:s3cr%40t-pw@broker.example",
			want:     mqtt.Config{Brokers: []string{"tcp://broker.example:1883"}, Username: "alice", Password: secret},
			redacted: "mqtt://alice:xxxxx@broker.example",
		},
		{
			url:  "mqtt://alice:other@broker.example",
			opts: dial.Options{Username: "bob", Password: secret},
			want: mqtt.Config{Brokers: []string{"tcp://broker.example:1883"}, Username: "bob", Password: secret},
		},
		{
			url:  "mqtt://alice@broker.example",
			opts: dial.Options{Password: secret},
			want: mqtt.Config{Brokers: []string{"tcp://broker.example:1883"}, Username: "alice", Password: secret},
		},
		{
			url:  "mqtt://broker.example:1",
			opts: dial.Options{ClientID: "dev-1", PersistentSession: true, KeepAlive: 7 * time.Second, ConnectTimeout: 3 * time.Second},
			want: mqtt.Config{Brokers: []string{"tcp://broker.example:1"}, ClientID: "dev-1", PersistentSession: true, KeepAlive: 7 * time.Second, ConnectTimeout: 3 * time.Second},
		},
		{
			url:  "mqtts://localhost:65535",
			opts: dial.Options{CAFile: pki.CAFile, CertFile: pki.ClientCertFile, KeyFile: pki.ClientKeyFile, ServerName: "broker.example"},
			want: mqtt.Config{Brokers: []string{"ssl://localhost:65535"}},
			tls:  true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			target, err := dial.Parse(tc.url, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if target.Protocol != dial.MQTT || target.AMQP != nil || target.CoAP != nil || target.Secure != tc.tls {
				t.Fatalf("target %+v, want MQTT only, secure %v", target, tc.tls)
			}
			got := *target.MQTT
			if (got.TLS != nil) != tc.tls {
				t.Fatalf("TLS config %v, want one: %v", got.TLS, tc.tls)
			}
			if got.TLS != nil {
				checkTLS(t, target.MQTT.TLS.RootCAs != nil, len(got.TLS.Certificates), tc.opts)
				if got.TLS.InsecureSkipVerify || got.TLS.ServerName != tc.opts.ServerName {
					t.Errorf("TLS: insecure %v, server name %q", got.TLS.InsecureSkipVerify, got.TLS.ServerName)
				}
			}
			got.TLS = nil
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("config\n got %+v\nwant %+v", got, tc.want)
			}
			if tc.redacted != "" && target.Redacted != tc.redacted {
				t.Errorf("Redacted %q, want %q", target.Redacted, tc.redacted)
			}
			if strings.Contains(target.Redacted, "s3cr") {
				t.Errorf("Redacted %q shows the password", target.Redacted)
			}
		})
	}
}

// checkTLS checks that the CA and client certificate options were loaded.
func checkTLS(t *testing.T, hasRoots bool, certs int, opts dial.Options) {
	t.Helper()
	if hasRoots != (opts.CAFile != "") {
		t.Errorf("root CAs loaded: %v, CA file %q", hasRoots, opts.CAFile)
	}
	if want := map[bool]int{true: 1}[opts.CertFile != ""]; certs != want {
		t.Errorf("%d client certificates, want %d", certs, want)
	}
}

func TestParseInsecureSkipVerify(t *testing.T) {
	target, err := dial.Parse("amqps://broker.example", dial.Options{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	if !target.AMQP.TLS.InsecureSkipVerify {
		t.Fatal("InsecureSkipVerify was not passed on")
	}
	target, err = dial.Parse("amqps://broker.example", dial.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if target.AMQP.TLS.InsecureSkipVerify || target.AMQP.TLS.MinVersion < 0x0303 {
		t.Fatalf("default TLS config %+v: verification must be on, TLS 1.2 at least", target.AMQP.TLS)
	}
}

func TestParseAMQP(t *testing.T) {
	tests := []struct {
		url          string
		opts         dial.Options
		wantURL      string
		user, vhost  string
		exchange     string
		tls          bool
		heartbeat    time.Duration
		redactedHide bool
	}{
		{url: "amqp://rabbit.example", wantURL: "amqp://rabbit.example:5672", user: "guest", vhost: "/"},
		{url: "amqp://rabbit.example/", wantURL: "amqp://rabbit.example:5672/", user: "guest", vhost: "/"},
		{url: "amqp://rabbit.example/%2f", wantURL: "amqp://rabbit.example:5672/%2f", user: "guest", vhost: "/"},
		{url: "amqp://rabbit.example:5000/devices", wantURL: "amqp://rabbit.example:5000/devices", user: "guest", vhost: "devices"},
		{url: "amqps://rabbit.example", wantURL: "amqps://rabbit.example:5671", user: "guest", vhost: "/", tls: true},
		{
			url: "amqp://bob:s3cr%40t-pw@rabbit.example/", wantURL: "amqp://bob:s3cr%40t-pw@rabbit.example:5672/",
			user: "bob", vhost: "/", redactedHide: true,
		},
		{
			url: "amqp://rabbit.example", opts: dial.Options{Username: "carol", Password: secret, Exchange: "e4", KeepAlive: time.Second},
			wantURL: "amqp://carol:s3cr%40t-pw@rabbit.example:5672", user: "carol", vhost: "/", exchange: "e4", heartbeat: time.Second,
		},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			target, err := dial.Parse(tc.url, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if target.Protocol != dial.AMQP || target.MQTT != nil || target.CoAP != nil {
				t.Fatalf("target %+v, want AMQP only", target)
			}
			cfg := target.AMQP
			if cfg.URL != tc.wantURL || cfg.Exchange != tc.exchange || cfg.Heartbeat != tc.heartbeat || (cfg.TLS != nil) != tc.tls {
				t.Errorf("config %+v; want URL %s, exchange %q, heartbeat %v, TLS %v", cfg, tc.wantURL, tc.exchange, tc.heartbeat, tc.tls)
			}
			uri, err := amqp091.ParseURI(cfg.URL)
			if err != nil {
				t.Fatal(err)
			}
			if uri.Username != tc.user || uri.Vhost != tc.vhost {
				t.Errorf("the adapter would log in as %q to vhost %q, want %q and %q", uri.Username, uri.Vhost, tc.user, tc.vhost)
			}
			if tc.redactedHide && strings.Contains(target.Redacted, "s3cr") {
				t.Errorf("Redacted %q shows the password", target.Redacted)
			}
		})
	}
}

func TestParseCoAP(t *testing.T) {
	pki := testutil.NewTestPKI(t)
	psk := []byte("0123456789abcdef")
	tests := []struct {
		url, addr, prefix string
		opts              dial.Options
		psk               bool
		certs             bool
	}{
		{url: "coap://coap.example", addr: "coap.example:5683", prefix: ""},
		{url: "coap://127.0.0.1:6000/", addr: "127.0.0.1:6000", prefix: "/"},
		{url: "coap://[::1]/ps/site", addr: "[::1]:5683", prefix: "/ps/site"},
		{url: "coap://coap.example/ps", opts: dial.Options{PathPrefix: "/other", NoWildcards: true}, addr: "coap.example:5683", prefix: "/other"},
		{url: "coaps://coap.example", opts: dial.Options{PSKIdentity: "dev-1", PSK: psk}, addr: "coap.example:5684", psk: true},
		{url: "coaps://localhost:7000", opts: dial.Options{CAFile: pki.CAFile, CertFile: pki.ClientCertFile, KeyFile: pki.ClientKeyFile}, addr: "localhost:7000", certs: true},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			target, err := dial.Parse(tc.url, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if target.Protocol != dial.CoAP || target.MQTT != nil || target.AMQP != nil {
				t.Fatalf("target %+v, want CoAP only", target)
			}
			cfg := target.CoAP
			if cfg.Addr != tc.addr || cfg.PathPrefix != tc.prefix || cfg.NoWildcards != tc.opts.NoWildcards {
				t.Errorf("config %+v; want addr %s, prefix %q", cfg, tc.addr, tc.prefix)
			}
			secure := tc.psk || tc.certs
			if (cfg.DTLS != nil) != secure || target.Secure != secure {
				t.Fatalf("DTLS %+v, want DTLS: %v", cfg.DTLS, secure)
			}
			if tc.psk && (string(cfg.DTLS.PSK) != string(psk) || string(cfg.DTLS.PSKIdentity) != "dev-1") {
				t.Errorf("PSK settings not passed on")
			}
			if tc.certs && (cfg.DTLS.RootCAs == nil || len(cfg.DTLS.Certificates) != 1 || cfg.DTLS.PSK != nil) {
				t.Errorf("certificate settings not passed on: %+v", cfg.DTLS)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	pki := testutil.NewTestPKI(t)
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	tests := []struct {
		url  string
		opts dial.Options
		want string
	}{
		{"", dial.Options{}, "empty broker URL"},
		{"localhost:1883", dial.Options{}, "want SCHEME://HOST[:PORT]"},
		{"http://broker.example", dial.Options{}, `unknown scheme "http", want one of amqp, amqps, coap, coaps, mqtt, mqtts, ssl, tcp, tls, ws, wss`},
		{"mqtt://:1883", dial.Options{}, "has no host"},
		{"mqtt:///topic", dial.Options{}, "has no host"},
		{"mqtt://broker.example:", dial.Options{}, `empty port after ":"`},
		{"mqtt://broker.example:0", dial.Options{}, `port "0" is not a number from 1 to 65535`},
		{"amqp://broker.example:70000", dial.Options{}, `port "70000" is not a number from 1 to 65535`},
		{"mqtt://u:" + secret + "@broker.example:abc", dial.Options{}, `invalid port ":abc" after host`},
		{"mqtt://broker.example?qos=1", dial.Options{}, "query strings and fragments are not supported"},
		{"mqtt://broker.example#x", dial.Options{}, "query strings and fragments are not supported"},
		{"mqtt://broker.example/topic", dial.Options{}, "MQTT over TCP takes no path"},
		{"mqtt://broker.example", dial.Options{CAFile: pki.CAFile}, "TLS options need a secure scheme"},
		{"coap://broker.example", dial.Options{InsecureSkipVerify: true}, "TLS options need a secure scheme"},
		{"mqtt://broker.example", dial.Options{Password: secret}, "a password needs a username"},
		{"mqtts://broker.example", dial.Options{CAFile: missing}, "reading the CA file: open " + missing + ": no such file or directory"},
		{"mqtts://broker.example", dial.Options{CAFile: notPEM}, "CA file " + notPEM + " holds no PEM certificate"},
		{"amqps://broker.example", dial.Options{CertFile: pki.ClientCertFile}, "needs both the certificate file and the key file"},
		{"wss://broker.example", dial.Options{CertFile: missing, KeyFile: pki.ClientKeyFile}, "client certificate: stat " + missing + ": no such file or directory"},
		{"mqtts://broker.example", dial.Options{CertFile: pki.ClientCertFile, KeyFile: notPEM}, "loading the client certificate"},
		{"amqp://broker.example", dial.Options{ClientID: "x"}, "a client id is for MQTT only"},
		{"coap://broker.example", dial.Options{PersistentSession: true}, "persistent sessions are for MQTT only"},
		{"mqtt://broker.example", dial.Options{Exchange: "x"}, "an exchange is for AMQP only"},
		{"amqp://broker.example", dial.Options{PathPrefix: "/ps"}, "path prefix and no-wildcards are for CoAP only"},
		{"coap://u:" + secret + "@broker.example", dial.Options{}, "CoAP has no username and password"},
		{"coap://broker.example", dial.Options{PSK: []byte("k")}, "a pre-shared key is for coaps only"},
		{"mqtts://broker.example", dial.Options{PSK: []byte("k")}, "a pre-shared key is for coaps only"},
		{"coaps://broker.example", dial.Options{PSKIdentity: "dev"}, "a PSK identity needs a PSK"},
		{"coaps://broker.example", dial.Options{InsecureSkipVerify: true}, "coaps cannot skip certificate verification"},
		{"coaps://broker.example", dial.Options{PSK: []byte("k"), CAFile: pki.CAFile}, "a pre-shared key or certificates, not both"},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			target, err := dial.Parse(tc.url, tc.opts)
			if err == nil {
				t.Fatalf("accepted: %+v", target)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to say %q", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "dial: ") {
				t.Errorf("error %q does not start with the package name", err)
			}
			if strings.Contains(err.Error(), "s3cr") {
				t.Errorf("error %q shows the password", err)
			}
		})
	}
}

// TestConnectRetryReachesEveryAdapter: Options.ConnectRetry is set in the
// configuration of whichever adapter the URL selects.
func TestConnectRetryReachesEveryAdapter(t *testing.T) {
	for _, url := range []string{"mqtt://localhost", "amqp://localhost", "coap://localhost"} {
		target, err := dial.Parse(url, dial.Options{ConnectRetry: true})
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case target.MQTT != nil && target.MQTT.ConnectRetry,
			target.AMQP != nil && target.AMQP.ConnectRetry,
			target.CoAP != nil && target.CoAP.ConnectRetry:
		default:
			t.Errorf("%s: ConnectRetry not passed on", url)
		}
	}
}

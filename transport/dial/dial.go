package dial

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/amqp"
	"github.com/e4-iot/e4kit/transport/coap"
	"github.com/e4-iot/e4kit/transport/mqtt"
)

// Protocol names the adapter a URL selects.
type Protocol string

// The protocols of the adapters.
const (
	MQTT Protocol = "mqtt"
	AMQP Protocol = "amqp"
	CoAP Protocol = "coap"
)

// Options carries what a broker URL cannot: TLS material, credentials and
// the settings of each protocol. The zero value connects with the
// adapters' defaults and full certificate verification. Each field says
// which schemes take it; giving one to another scheme is an error.
type Options struct {
	// CAFile is a PEM file of the CAs that sign the broker's certificate
	// (default: the system roots). Secure schemes.
	CAFile string
	// CertFile and KeyFile are the PEM client certificate and its key,
	// for brokers that require one (mutual TLS). Secure schemes.
	CertFile, KeyFile string
	// ServerName is the name checked against the broker's certificate
	// (default: the URL's host). Secure schemes.
	ServerName string
	// InsecureSkipVerify accepts any broker certificate: for tests only.
	// TLS schemes (not coaps).
	InsecureSkipVerify bool

	// Username and Password authenticate to an MQTT or AMQP broker. When
	// Username is set, both replace the URL's user information; Password
	// alone completes a URL that names the user ("mqtt://alice@host"),
	// which keeps the password off command lines.
	Username string
	Password string

	// ClientID is the MQTT client identifier (default: a random one).
	ClientID string
	// PersistentSession asks the MQTT broker to keep the session (clean
	// session off): subscriptions and queued QoS 1 and 2 messages survive
	// a disconnection. Use it with a fixed ClientID.
	PersistentSession bool

	// Exchange is the AMQP topic exchange (default amqp.DefaultExchange).
	Exchange string

	// PSKIdentity and PSK authenticate a coaps connection with a
	// pre-shared key instead of certificates.
	PSKIdentity string
	PSK         []byte
	// PathPrefix replaces the CoAP path prefix the URL gives.
	PathPrefix string
	// NoWildcards tells the CoAP adapter that the broker does not
	// understand "+" and "#" (libcoap's server).
	NoWildcards bool

	// ConnectTimeout bounds one connection attempt: MQTT ConnectTimeout,
	// AMQP DialTimeout, CoAP Timeout (default: the adapter's).
	ConnectTimeout time.Duration
	// KeepAlive is the liveness interval: MQTT keep-alive, AMQP heartbeat,
	// CoAP ping interval (default: the adapter's).
	KeepAlive time.Duration

	// ConnectRetry makes Dial return without waiting for the broker: the
	// adapter connects in the background, retrying with backoff until the
	// broker answers, and Publish and Subscribe wait for it (see each
	// adapter's Config.ConnectRetry). Without it Dial fails when the
	// broker is down.
	ConnectRetry bool
}

// Target is what Parse makes of a URL: the protocol and the configuration
// of its adapter, ready for Dial. Exactly one of MQTT, AMQP and CoAP is
// set; a caller may adjust it (callbacks, buffer sizes) before Dial.
type Target struct {
	Protocol Protocol
	// Secure reports a TLS or DTLS connection.
	Secure bool
	// Redacted is the URL without its password, for logs and messages.
	Redacted string

	MQTT *mqtt.Config
	AMQP *amqp.Config
	CoAP *coap.Config
}

// scheme describes one accepted URL scheme.
type scheme struct {
	protocol    Protocol
	secure      bool
	defaultPort int
	// adapterScheme is the scheme of the URL given to the adapter.
	adapterScheme string
}

var schemes = map[string]scheme{
	"mqtt":  {MQTT, false, 1883, "tcp"},
	"tcp":   {MQTT, false, 1883, "tcp"},
	"mqtts": {MQTT, true, 8883, "ssl"},
	"ssl":   {MQTT, true, 8883, "ssl"},
	"tls":   {MQTT, true, 8883, "ssl"},
	"ws":    {MQTT, false, 80, "ws"},
	"wss":   {MQTT, true, 443, "wss"},
	"amqp":  {AMQP, false, 5672, "amqp"},
	"amqps": {AMQP, true, 5671, "amqps"},
	"coap":  {CoAP, false, 5683, ""},
	"coaps": {CoAP, true, 5684, ""},
}

// schemeList is the accepted schemes, for error messages.
func schemeList() string {
	names := make([]string, 0, len(schemes))
	for name := range schemes {
		names = append(names, name)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// Open connects to the broker rawURL names with the adapter its scheme
// selects: Parse, then Target.Dial.
func Open(ctx context.Context, rawURL string, opts Options) (transport.Transport, error) {
	target, err := Parse(rawURL, opts)
	if err != nil {
		return nil, err
	}
	return target.Dial(ctx)
}

// Dial connects with the target's adapter.
func (t *Target) Dial(ctx context.Context) (transport.Transport, error) {
	switch {
	case t.MQTT != nil:
		return mqtt.Dial(ctx, *t.MQTT)
	case t.AMQP != nil:
		return amqp.Dial(ctx, *t.AMQP)
	case t.CoAP != nil:
		return coap.Dial(ctx, *t.CoAP)
	}
	return nil, errors.New("dial: empty Target (use Parse)")
}

// endpoint is a parsed broker URL.
type endpoint struct {
	scheme   scheme
	host     string // without brackets
	port     int
	path     string // decoded
	rawPath  string // as written (escaped), for AMQP vhosts
	username string
	password string
	hasUser  bool
	redacted string
}

// hostPort returns "host:port", bracketing an IPv6 host.
func (e *endpoint) hostPort() string { return net.JoinHostPort(e.host, strconv.Itoa(e.port)) }

// Parse checks rawURL and opts and returns the adapter configuration,
// without connecting. Errors name the problem and never the password; a
// certificate or key file that cannot be read fails here.
func Parse(rawURL string, opts Options) (*Target, error) {
	ep, err := parseURL(rawURL)
	if err != nil {
		return nil, err
	}
	if err := applyCredentials(ep, &opts); err != nil {
		return nil, err
	}
	if err := checkApplicable(ep, &opts); err != nil {
		return nil, err
	}
	target := &Target{Protocol: ep.scheme.protocol, Secure: ep.scheme.secure, Redacted: ep.redacted}
	switch ep.scheme.protocol {
	case MQTT:
		target.MQTT, err = mqttConfig(ep, &opts)
	case AMQP:
		target.AMQP, err = amqpConfig(ep, &opts)
	case CoAP:
		target.CoAP, err = coapConfig(ep, &opts)
	}
	if err != nil {
		return nil, fmt.Errorf("dial: %q: %w", ep.redacted, err)
	}
	return target, nil
}

// applyCredentials lets the options' username and password replace the
// URL's, or the options' password complete a URL that names the user.
func applyCredentials(ep *endpoint, o *Options) error {
	switch {
	case o.Username != "":
		ep.username, ep.password, ep.hasUser = o.Username, o.Password, true
	case o.Password != "":
		if ep.username == "" {
			return fmt.Errorf("dial: %q: a password needs a username, in the URL or the options", ep.redacted)
		}
		ep.password = o.Password
	}
	return nil
}

// parseURL splits a broker URL and applies the scheme's default port.
func parseURL(rawURL string) (*endpoint, error) {
	shown := redactRaw(rawURL)
	if strings.TrimSpace(rawURL) == "" {
		return nil, errors.New("dial: empty broker URL")
	}
	if !strings.Contains(rawURL, "://") {
		// url.Parse would read "localhost:1883" as scheme "localhost".
		return nil, fmt.Errorf("dial: broker URL %q: want SCHEME://HOST[:PORT] with a scheme among %s, as in mqtt://localhost:1883", shown, schemeList())
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("dial: broker URL %q: %v", shown, withoutURL(err))
	}
	sch, ok := schemes[u.Scheme]
	if !ok {
		return nil, fmt.Errorf("dial: broker URL %q: unknown scheme %q, want one of %s", shown, u.Scheme, schemeList())
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return nil, fmt.Errorf("dial: broker URL %q: query strings and fragments are not supported; use the options instead", shown)
	}
	ep := &endpoint{scheme: sch, host: u.Hostname(), path: u.Path, rawPath: u.EscapedPath()}
	if ep.host == "" {
		return nil, fmt.Errorf("dial: broker URL %q has no host", shown)
	}
	if ep.port, err = parsePort(u, sch.defaultPort); err != nil {
		return nil, fmt.Errorf("dial: broker URL %q: %w", shown, err)
	}
	if u.User != nil {
		ep.username = u.User.Username()
		ep.password, _ = u.User.Password()
		ep.hasUser = true
	}
	ep.redacted = u.Redacted()
	return ep, nil
}

// parsePort returns the URL's port, or def when it has none.
func parsePort(u *url.URL, def int) (int, error) {
	p := u.Port()
	if p == "" {
		if strings.HasSuffix(u.Host, ":") {
			return 0, errors.New("empty port after \":\"")
		}
		return def, nil
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %q is not a number from 1 to 65535", p)
	}
	return n, nil
}

// withoutURL drops the URL that a *url.Error repeats, password included.
func withoutURL(err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return uerr.Err
	}
	return err
}

// redactRaw hides the user information of a URL that may not parse.
func redactRaw(raw string) string {
	_, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return raw
	}
	authority, _, _ := strings.Cut(rest, "/")
	at := strings.LastIndex(authority, "@")
	if at < 0 {
		return raw
	}
	start := len(raw) - len(rest)
	return raw[:start] + "xxxxx" + raw[start+at:]
}

// checkApplicable refuses options the URL's protocol does not have, so
// that a setting is never silently ignored.
func checkApplicable(ep *endpoint, o *Options) error {
	sch := ep.scheme
	var problems []string
	refuse := func(cond bool, what string) {
		if cond {
			problems = append(problems, what)
		}
	}
	hasTLS := o.CAFile != "" || o.CertFile != "" || o.KeyFile != "" || o.ServerName != "" || o.InsecureSkipVerify
	refuse(hasTLS && !sch.secure, "TLS options need a secure scheme (mqtts, wss, amqps, coaps)")
	refuse((o.PSKIdentity != "" || len(o.PSK) > 0) && !(sch.protocol == CoAP && sch.secure), "a pre-shared key is for coaps only")
	refuse(o.PSKIdentity != "" && len(o.PSK) == 0, "a PSK identity needs a PSK")
	refuse(o.InsecureSkipVerify && sch.protocol == CoAP, "coaps cannot skip certificate verification")
	refuse(ep.hasUser && sch.protocol == CoAP, "CoAP has no username and password (use coaps with a PSK or certificates)")
	refuse(o.ClientID != "" && sch.protocol != MQTT, "a client id is for MQTT only")
	refuse(o.PersistentSession && sch.protocol != MQTT, "persistent sessions are for MQTT only")
	refuse(o.Exchange != "" && sch.protocol != AMQP, "an exchange is for AMQP only")
	refuse((o.PathPrefix != "" || o.NoWildcards) && sch.protocol != CoAP, "path prefix and no-wildcards are for CoAP only")
	if len(problems) > 0 {
		return fmt.Errorf("dial: %q: %s", ep.redacted, strings.Join(problems, "; "))
	}
	return nil
}

// mqttConfig builds the MQTT adapter's configuration.
func mqttConfig(ep *endpoint, o *Options) (*mqtt.Config, error) {
	path := ""
	switch ep.scheme.adapterScheme {
	case "ws", "wss":
		path = ep.rawPath
	default:
		if ep.path != "" && ep.path != "/" {
			return nil, fmt.Errorf("MQTT over TCP takes no path (%q); for WebSocket use ws:// or wss://", ep.path)
		}
	}
	broker := ep.scheme.adapterScheme + "://" + ep.hostPort() + path
	cfg := &mqtt.Config{
		Brokers:           []string{broker},
		ClientID:          o.ClientID,
		Username:          ep.username,
		Password:          ep.password,
		PersistentSession: o.PersistentSession,
		KeepAlive:         o.KeepAlive,
		ConnectTimeout:    o.ConnectTimeout,
		ConnectRetry:      o.ConnectRetry,
	}
	if ep.scheme.secure {
		tlsCfg, err := o.tlsConfig()
		if err != nil {
			return nil, err
		}
		cfg.TLS = tlsCfg
	}
	return cfg, nil
}

// amqpConfig builds the AMQP adapter's configuration; the URL it gives the
// adapter carries the credentials and the vhost.
func amqpConfig(ep *endpoint, o *Options) (*amqp.Config, error) {
	u := url.URL{Scheme: ep.scheme.adapterScheme, Host: ep.hostPort(), Path: ep.path, RawPath: ep.rawPath}
	if ep.hasUser {
		u.User = url.UserPassword(ep.username, ep.password)
	}
	if _, err := amqp091.ParseURI(u.String()); err != nil {
		return nil, fmt.Errorf("not an AMQP URI: %v", withoutURL(err))
	}
	cfg := &amqp.Config{
		URL:          u.String(),
		Exchange:     o.Exchange,
		Heartbeat:    o.KeepAlive,
		DialTimeout:  o.ConnectTimeout,
		ConnectRetry: o.ConnectRetry,
	}
	if ep.scheme.secure {
		tlsCfg, err := o.tlsConfig()
		if err != nil {
			return nil, err
		}
		cfg.TLS = tlsCfg
	}
	return cfg, nil
}

// coapConfig builds the CoAP adapter's configuration: the URL's path is
// the broker's path prefix.
func coapConfig(ep *endpoint, o *Options) (*coap.Config, error) {
	cfg := &coap.Config{
		Addr:         ep.hostPort(),
		PathPrefix:   ep.path,
		NoWildcards:  o.NoWildcards,
		Timeout:      o.ConnectTimeout,
		KeepAlive:    o.KeepAlive,
		ConnectRetry: o.ConnectRetry,
	}
	if o.PathPrefix != "" {
		cfg.PathPrefix = o.PathPrefix
	}
	if ep.scheme.secure {
		d, err := o.dtlsConfig()
		if err != nil {
			return nil, err
		}
		cfg.DTLS = d
	}
	return cfg, nil
}

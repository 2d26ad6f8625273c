package testbroker

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/internal/testutil"
)

// RabbitMQBinDir holds the RabbitMQ scripts run directly as root: the
// /usr/sbin wrappers would switch to the rabbitmq user and its shared
// data directory.
const RabbitMQBinDir = "/usr/lib/rabbitmq/bin"

// epmdBinary is Erlang's port mapper, started by us on a port of our own
// so that stopping it never touches another user's epmd.
const epmdBinary = "epmd"

// rabbitBootTimeout bounds one boot; a cold first boot takes ~10 s on this
// machine, more when the two cores are busy.
const rabbitBootTimeout = 90 * time.Second

// RabbitMQOptions configures StartRabbitMQ. The zero value (or nil) starts
// a broker with AMQP only.
type RabbitMQOptions struct {
	// MQTT enables the rabbitmq_mqtt plugin on a free port, bridged to
	// amq.topic ("a/b" on MQTT is routing key "a.b" on AMQP).
	MQTT bool
	// TLS adds an AMQPS listener on a free port, with a test CA made for
	// this node, that requires client certificates signed by it (mutual
	// TLS). The plain AMQP listener stays. See AMQPSURL and ClientTLS.
	TLS bool
}

// RabbitMQ is a RabbitMQ node started for tests: its own HOME (Erlang
// cookie), data directory, epmd and free loopback ports.
type RabbitMQ struct {
	dir      string
	amqpPort int
	distPort int
	mqttPort int
	epmdPort int
	tlsPort  int
	env      []string
	// pki and the client's PEM files exist only with TLS.
	pki                           *testutil.PKI
	clientCertFile, clientKeyFile string

	mu     sync.Mutex
	epmd   *Process
	server *Process
}

// StartRabbitMQ starts a node for one test and stops it when the test
// ends. RabbitMQ boots in several seconds: share one node per package
// with NewRabbitMQ in TestMain when several tests need it.
func StartRabbitMQ(t testing.TB, opts *RabbitMQOptions) *RabbitMQ {
	t.Helper()
	RequireBinary(t, filepath.Join(RabbitMQBinDir, "rabbitmq-server"))
	r, err := NewRabbitMQ(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	return r
}

// NewRabbitMQ starts a node and returns once it accepts AMQP (and MQTT,
// AMQPS) connections. The caller must call Stop. A missing installation
// is an error carrying InstallHint.
func NewRabbitMQ(opts *RabbitMQOptions) (*RabbitMQ, error) {
	if opts == nil {
		opts = &RabbitMQOptions{}
	}
	for _, bin := range []string{filepath.Join(RabbitMQBinDir, "rabbitmq-server"), epmdBinary} {
		if _, err := exec.LookPath(bin); err != nil {
			return nil, fmt.Errorf("testbroker: %s not found (%v): %s", bin, err, InstallHint)
		}
	}
	for attempt := 1; ; attempt++ {
		r, err := startRabbitMQ(opts)
		if err == nil || attempt == portAttempts || !portTaken(err) {
			return r, err
		}
	}
}

// startRabbitMQ makes one attempt at starting a node on fresh ports.
func startRabbitMQ(opts *RabbitMQOptions) (*RabbitMQ, error) {
	r, err := newRabbitMQDirs(opts)
	if err != nil {
		return nil, err
	}
	if err := r.prepare(opts); err != nil {
		r.removeDir()
		return nil, err
	}
	if err := r.startEPMD(); err != nil {
		r.removeDir()
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), rabbitBootTimeout)
	defer cancel()
	if err := r.startServer(ctx); err != nil {
		r.Stop()
		return nil, err
	}
	return r, nil
}

// newRabbitMQDirs picks the ports and creates the private directories.
func newRabbitMQDirs(opts *RabbitMQOptions) (*RabbitMQ, error) {
	ports, err := freeTCPPorts(5)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "testbroker-rabbitmq-")
	if err != nil {
		return nil, fmt.Errorf("testbroker: rabbitmq dir: %w", err)
	}
	r := &RabbitMQ{dir: dir, amqpPort: ports[0], distPort: ports[1], epmdPort: ports[2]}
	if opts.MQTT {
		r.mqttPort = ports[3]
	}
	if opts.TLS {
		r.tlsPort = ports[4]
	}
	for _, sub := range []string{"home", "mnesia", "log"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			r.removeDir()
			return nil, fmt.Errorf("testbroker: rabbitmq dir: %w", err)
		}
	}
	r.env = r.environment()
	return r, nil
}

// environment is what every rabbitmq script needs to act on this node
// only: the same HOME (Erlang cookie) and epmd port for server and CLI.
func (r *RabbitMQ) environment() []string {
	loopbackDist := "-kernel inet_dist_use_interface {127,0,0,1}"
	return []string{
		"HOME=" + filepath.Join(r.dir, "home"),
		"RABBITMQ_NODENAME=rabbit@localhost",
		"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
		"RABBITMQ_NODE_PORT=" + strconv.Itoa(r.amqpPort),
		"RABBITMQ_DIST_PORT=" + strconv.Itoa(r.distPort),
		"RABBITMQ_MNESIA_BASE=" + filepath.Join(r.dir, "mnesia"),
		"RABBITMQ_LOG_BASE=" + filepath.Join(r.dir, "log"),
		"RABBITMQ_CONFIG_FILE=" + filepath.Join(r.dir, "rabbitmq.conf"),
		"RABBITMQ_ENABLED_PLUGINS_FILE=" + filepath.Join(r.dir, "enabled_plugins"),
		"RABBITMQ_PID_FILE=" + r.pidFile(),
		"RABBITMQ_CONF_ENV_FILE=" + filepath.Join(r.dir, "env.conf"),
		"RABBITMQ_LOGS=-",
		"ERL_EPMD_ADDRESS=127.0.0.1",
		"ERL_EPMD_PORT=" + strconv.Itoa(r.epmdPort),
		// The CLI's own distribution port: 0 lets the OS choose, instead
		// of the fixed 35672-35682 range shared with every other CLI.
		"RABBITMQ_CTL_DIST_PORT_MIN=0",
		"RABBITMQ_CTL_DIST_PORT_MAX=0",
		"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=" + loopbackDist,
		"RABBITMQ_CTL_ERL_ARGS=" + loopbackDist,
		"PATH=" + RabbitMQBinDir + ":" + os.Getenv("PATH"),
	}
}

func (r *RabbitMQ) pidFile() string { return filepath.Join(r.dir, "rabbit.pid") }

// prepare writes the configuration (and the certificates TLS needs) and
// enables the MQTT plugin offline.
func (r *RabbitMQ) prepare(opts *RabbitMQOptions) error {
	conf := fmt.Sprintf("listeners.tcp.default = 127.0.0.1:%d\n", r.amqpPort)
	if opts.MQTT {
		conf += fmt.Sprintf("mqtt.listeners.tcp.default = 127.0.0.1:%d\nmqtt.allow_anonymous = true\nmqtt.exchange = amq.topic\n", r.mqttPort)
	}
	if opts.TLS {
		tlsConf, err := r.prepareTLS()
		if err != nil {
			return err
		}
		conf += tlsConf
	}
	files := map[string]string{"rabbitmq.conf": conf, "env.conf": "", "enabled_plugins": "[].\n"}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(r.dir, name), []byte(content), 0o600); err != nil {
			return fmt.Errorf("testbroker: rabbitmq config: %w", err)
		}
	}
	if opts.MQTT {
		ctx, cancel := context.WithTimeout(context.Background(), rabbitBootTimeout)
		defer cancel()
		if out, err := r.cli(ctx, "rabbitmq-plugins", "enable", "--offline", "rabbitmq_mqtt"); err != nil {
			return fmt.Errorf("testbroker: enabling rabbitmq_mqtt: %w\n%s", err, out)
		}
	}
	return nil
}

// prepareTLS writes the test PKI into the node's directory, the client
// certificate included (for clients that take files), and returns the
// listener's configuration.
func (r *RabbitMQ) prepareTLS() (string, error) {
	dir := filepath.Join(r.dir, "tls")
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", fmt.Errorf("testbroker: rabbitmq tls dir: %w", err)
	}
	pki, err := testutil.NewPKI(dir)
	if err != nil {
		return "", err
	}
	r.pki = pki
	r.clientCertFile, r.clientKeyFile = pki.ClientCertFile, pki.ClientKeyFile
	return fmt.Sprintf(`listeners.ssl.default = 127.0.0.1:%d
ssl_options.cacertfile = %s
ssl_options.certfile = %s
ssl_options.keyfile = %s
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = true
`, r.tlsPort, pki.CAFile, pki.ServerCertFile, pki.ServerKeyFile), nil
}

// startEPMD runs a port mapper of our own in the foreground, so it can be
// stopped by PID.
func (r *RabbitMQ) startEPMD() error {
	p := NewProcess(epmdBinary, []string{"-address", "127.0.0.1", "-port", strconv.Itoa(r.epmdPort)}, r.env, r.dir)
	if err := p.Start(); err != nil {
		return fmt.Errorf("testbroker: %w", err)
	}
	r.mu.Lock()
	r.epmd = p
	r.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := WaitTCP(ctx, r.addr(r.epmdPort)); err != nil {
		return fmt.Errorf("testbroker: epmd: %w\n%s", err, p.Output())
	}
	return nil
}

// startServer spawns the node in its own process group and waits until it
// has booted and its listeners accept connections.
func (r *RabbitMQ) startServer(ctx context.Context) error {
	_ = os.Remove(r.pidFile())
	p := NewProcess(filepath.Join(RabbitMQBinDir, "rabbitmq-server"), nil, r.env, r.dir)
	if err := p.Start(); err != nil {
		return fmt.Errorf("testbroker: %w", err)
	}
	r.mu.Lock()
	r.server = p
	r.mu.Unlock()
	// rabbitmqctl wait needs the PID file, which the node writes early in
	// its boot; until then wait fails at once.
	if err := r.waitPIDFile(ctx, p); err != nil {
		return err
	}
	if out, err := r.cli(ctx, "rabbitmqctl", "wait", "--timeout", "60", r.pidFile()); err != nil {
		return fmt.Errorf("testbroker: rabbitmq did not boot: %w\n%s\n%s", err, out, p.Output())
	}
	for _, port := range []int{r.amqpPort, r.mqttPort, r.tlsPort} {
		if port == 0 {
			continue
		}
		if err := WaitTCP(ctx, r.addr(port)); err != nil {
			return fmt.Errorf("testbroker: rabbitmq listener: %w\n%s", err, p.Output())
		}
	}
	return nil
}

func (r *RabbitMQ) waitPIDFile(ctx context.Context, p *Process) error {
	for {
		if _, err := os.Stat(r.pidFile()); err == nil {
			return nil
		}
		if p.Exited() {
			return fmt.Errorf("testbroker: rabbitmq-server exited during boot:\n%s", p.Output())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("testbroker: waiting for %s: %w\n%s", r.pidFile(), ctx.Err(), p.Output())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// cli runs one of the RabbitMQ scripts against this node.
func (r *RabbitMQ) cli(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(RabbitMQBinDir, name), args...)
	cmd.Env = append(os.Environ(), r.env...)
	cmd.Dir = r.dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// AMQPURL is the node's AMQP address with the default guest account.
func (r *RabbitMQ) AMQPURL() string {
	return fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", r.amqpPort)
}

// MQTTURL is the MQTT plugin's address ("tcp://127.0.0.1:PORT"), or ""
// when the plugin was not enabled.
func (r *RabbitMQ) MQTTURL() string {
	if r.mqttPort == 0 {
		return ""
	}
	return "tcp://" + r.addr(r.mqttPort)
}

// AMQPSURL is the node's TLS address with the default guest account
// ("amqps://guest:guest@127.0.0.1:PORT/"; the server certificate names
// 127.0.0.1 and localhost), or "" without RabbitMQOptions.TLS.
func (r *RabbitMQ) AMQPSURL() string {
	if r.tlsPort == 0 {
		return ""
	}
	return "amqps://guest:guest@" + r.TLSAddr() + "/"
}

// TLSAddr is the TLS listener's "127.0.0.1:PORT", or "" without TLS.
func (r *RabbitMQ) TLSAddr() string {
	if r.tlsPort == 0 {
		return ""
	}
	return r.addr(r.tlsPort)
}

// ClientTLS returns a client configuration for the TLS listener that
// trusts the test CA and presents a client certificate signed by it; nil
// without TLS. Each call returns a new configuration, since amqp091 fills
// in the ServerName of the one it is given.
func (r *RabbitMQ) ClientTLS() *tls.Config { return clientTLS(r.pki, true) }

// ClientTLSWithoutCert is ClientTLS without the client certificate: the
// node must refuse it.
func (r *RabbitMQ) ClientTLSWithoutCert() *tls.Config { return clientTLS(r.pki, false) }

// CAFile is the PEM file of the test CA that signs the node's and the
// client's certificates, or "" without TLS.
func (r *RabbitMQ) CAFile() string {
	if r.pki == nil {
		return ""
	}
	return r.pki.CAFile
}

// ClientCertFile is the PEM file of the client certificate ClientTLS
// presents, or "" without TLS.
func (r *RabbitMQ) ClientCertFile() string { return r.clientCertFile }

// ClientKeyFile is the PEM file of the client certificate's private key,
// or "" without TLS.
func (r *RabbitMQ) ClientKeyFile() string { return r.clientKeyFile }

// Output returns what the current server process printed.
func (r *RabbitMQ) Output() string {
	r.mu.Lock()
	p := r.server
	r.mu.Unlock()
	if p == nil {
		return ""
	}
	return p.Output()
}

// Ctl runs rabbitmqctl against the node, e.g. Ctl(ctx, "list_queues").
func (r *RabbitMQ) Ctl(ctx context.Context, args ...string) (string, error) {
	return r.cli(ctx, "rabbitmqctl", args...)
}

// Restart stops the node and boots it again on the same ports and data
// directory: durable exchanges survive, connections and exclusive queues
// do not.
func (r *RabbitMQ) Restart(ctx context.Context) error {
	r.stopServer()
	return r.startServer(ctx)
}

// StopNode shuts the node down and leaves it down (epmd and the data
// directory stay), for tests that act during an outage; StartNode boots
// it again.
func (r *RabbitMQ) StopNode() { r.stopServer() }

// StartNode boots a node stopped by StopNode on the same ports and data.
func (r *RabbitMQ) StartNode(ctx context.Context) error { return r.startServer(ctx) }

// Stop shuts the node down, then ends its process group and our epmd by
// PID, and removes the data directory. It is idempotent.
func (r *RabbitMQ) Stop() {
	r.stopServer()
	r.mu.Lock()
	epmd := r.epmd
	r.epmd = nil
	r.mu.Unlock()
	if epmd != nil {
		epmd.Stop(5 * time.Second)
	}
	r.removeDir()
}

// stopServer asks the node to shut down cleanly, then makes sure its
// process group is gone.
func (r *RabbitMQ) stopServer() {
	r.mu.Lock()
	p := r.server
	r.server = nil
	r.mu.Unlock()
	if p == nil {
		return
	}
	if !p.Exited() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, _ = r.cli(ctx, "rabbitmqctl", "shutdown")
		cancel()
	}
	p.Stop(10 * time.Second)
}

func (r *RabbitMQ) removeDir() {
	if r.dir != "" {
		_ = os.RemoveAll(r.dir)
	}
}

func (r *RabbitMQ) addr(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// freeTCPPorts returns n distinct loopback ports that were free a moment
// ago. Holding all listeners until the end keeps them distinct.
func freeTCPPorts(n int) ([]int, error) {
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("testbroker: free port: %w", err)
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/c2/api"
	"github.com/e4-iot/e4kit/c2/seal"
	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/c2/store/postgres"
	"github.com/e4-iot/e4kit/c2/store/sqlite"
	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/internal/bootstrap"
	"github.com/e4-iot/e4kit/internal/version"
	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/dial"
)

// serveConfig is the configuration of "e4 c2 serve": a YAML file, then
// E4_C2_* environment variables, then flags, each overriding the one
// before. The environment variable of a field is E4_C2_ followed by its
// YAML path in capitals joined by "_" (transport.password is
// E4_C2_TRANSPORT_PASSWORD); lists take commas.
type serveConfig struct {
	// Mode is "sk" (symmetric keys) or "pk" (public keys); recorded on
	// first start, and a later start with another mode is refused.
	Mode string `yaml:"mode"`
	// Suite is "v1" (the default) or "fast"; recorded on first start like
	// the mode, and every device must run the same (e4 client --suite).
	Suite string `yaml:"suite"`
	// DataDir holds the SQLite database, the master key file, the
	// development certificate and the bootstrap admin token by default.
	DataDir string `yaml:"data_dir"`
	Store   struct {
		Driver string `yaml:"driver"` // sqlite or postgres
		Path   string `yaml:"path"`   // SQLite file (default <data_dir>/c2.db)
		DSN    string `yaml:"dsn"`    // PostgreSQL connection string
	} `yaml:"store"`
	MasterKey struct {
		File           string `yaml:"file"` // hex key file, created on first start
		Env            string `yaml:"env"`  // name of a variable holding the key
		PassphraseFile string `yaml:"passphrase_file"`
		PassphraseEnv  string `yaml:"passphrase_env"`
	} `yaml:"master_key"`
	Transport struct {
		// URL is the broker (mqtt://, mqtts://, amqp://, coaps://...) or
		// "none" (commands wait in the outbox).
		URL                string `yaml:"url"`
		Username           string `yaml:"username"`
		Password           string `yaml:"password"`
		PasswordFile       string `yaml:"password_file"`
		CAFile             string `yaml:"ca_file"`
		CertFile           string `yaml:"cert_file"`
		KeyFile            string `yaml:"key_file"`
		ServerName         string `yaml:"server_name"`
		InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
		ClientID           string `yaml:"client_id"`
		PSKFile            string `yaml:"psk_file"`
		PSKIdentity        string `yaml:"psk_identity"`
	} `yaml:"transport"`
	GRPC struct {
		Addr string `yaml:"addr"`
	} `yaml:"grpc"`
	HTTP struct {
		Addr string `yaml:"addr"`
	} `yaml:"http"`
	TLS struct {
		CertFile string `yaml:"cert_file"`
		KeyFile  string `yaml:"key_file"`
		// Hosts are extra names of the self-signed certificate made when
		// no certificate is given.
		Hosts        []string `yaml:"hosts"`
		ClientCAFile string   `yaml:"client_ca_file"`
		// CertScopes maps client certificate common names to scopes.
		CertScopes map[string]string `yaml:"cert_scopes"`
		// Disabled serves without TLS (behind a TLS-terminating proxy).
		Disabled bool `yaml:"disabled"`
	} `yaml:"tls"`
	Limits struct {
		MaxRequestBytes int64   `yaml:"max_request_bytes"`
		RatePerSecond   float64 `yaml:"rate_per_second"`
		Burst           int     `yaml:"burst"`
		// MaxInFlightBytes, BodyReadTimeout, FailedAuthPerSecond and
		// FailedAuthBurst are those of api.Config (zero: its defaults).
		MaxInFlightBytes    int64         `yaml:"max_in_flight_bytes"`
		BodyReadTimeout     time.Duration `yaml:"body_read_timeout"`
		FailedAuthPerSecond float64       `yaml:"failed_auth_per_second"`
		FailedAuthBurst     int           `yaml:"failed_auth_burst"`
	} `yaml:"limits"`
	C2 struct {
		KeepTopicKeyOnRemove bool          `yaml:"keep_topic_key_on_remove"`
		RotateOnAdd          bool          `yaml:"rotate_on_add"`
		AwaitAck             time.Duration `yaml:"await_ack"`
		MaxAttempts          int           `yaml:"max_attempts"`

		// AllowGeneratedKeyPairs lets "client newkey --generate-key-pair"
		// send a device a key pair C2 made (PK mode; weaker, off by default).
		AllowGeneratedKeyPairs bool `yaml:"allow_generated_key_pairs"`

		// The repairs and catch-up of device state: see c2serve_state.go.
		ResendEvery    time.Duration      `yaml:"resend_every"`
		BehindAfter    time.Duration      `yaml:"behind_after"`
		StallAfter     int                `yaml:"stall_after"`
		RepairInterval time.Duration      `yaml:"repair_interval"`
		CommandLead    time.Duration      `yaml:"command_lead"`
		ClientKeyGrace time.Duration      `yaml:"client_key_grace"`
		CatchUp        catchUpSettings    `yaml:"catch_up"`
		Automation     automationSettings `yaml:"automation"`
	} `yaml:"c2"`
	BootstrapTokenFile string `yaml:"bootstrap_token_file"`
	EventBuffer        int    `yaml:"event_buffer"`
	Log                struct {
		Level  string `yaml:"level"`  // debug, info, warn, error
		Format string `yaml:"format"` // json or text
	} `yaml:"log"`
	// Metrics: Prometheus and the probes (c2serve_metrics.go).
	Metrics metricsSettings `yaml:"metrics"`

	// Init allows a new deployment on an empty database although the data
	// folder says one existed (flag --init only).
	Init bool `yaml:"-"`

	Monitor monitorSettings `yaml:"monitor"`

	PK struct {
		// GroupTopics makes the members of each topic exchange their public
		// keys (c2.Config.GroupTopics), so they read each other's messages
		// without "e4 c2 pubkey link".
		GroupTopics bool `yaml:"group_topics"`
	} `yaml:"pk"`
}

// envPrefix starts the environment variables of serveConfig.
const envPrefix = "E4_C2_"

// loadServeConfig reads path (if any), then the environment.
func loadServeConfig(path string, environ []string) (*serveConfig, error) {
	cfg := &serveConfig{}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
			if kerr := unknownConfigKey(data); kerr != nil {
				err = kerr // names the valid keys, not the Go type
			}
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
	}
	env := make(map[string]string)
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, envPrefix) {
			env[k] = v
		}
	}
	if err := applyEnv(reflect.ValueOf(cfg).Elem(), strings.TrimSuffix(envPrefix, "_"), env); err != nil {
		return nil, err
	}
	return cfg, nil
}

// applyEnv sets the fields of v from env, by YAML path.
func applyEnv(v reflect.Value, prefix string, env map[string]string) error {
	t := v.Type()
	for i := range t.NumField() {
		tag := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		name := prefix + "_" + strings.ToUpper(tag)
		field := v.Field(i)
		if field.Kind() == reflect.Struct {
			if err := applyEnv(field, name, env); err != nil {
				return err
			}
			continue
		}
		text, ok := env[name]
		if !ok {
			continue
		}
		if err := setFromText(field, text); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

func setFromText(field reflect.Value, text string) error {
	switch {
	case field.Type() == reflect.TypeOf(time.Duration(0)):
		d, err := time.ParseDuration(text)
		if err != nil {
			return err
		}
		field.SetInt(int64(d))
	case field.Kind() == reflect.String:
		field.SetString(text)
	case field.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(text)
		if err != nil {
			return err
		}
		field.SetBool(b)
	case field.Kind() == reflect.Int || field.Kind() == reflect.Int64:
		n, err := strconv.ParseInt(text, 10, 64)
		if err != nil {
			return err
		}
		field.SetInt(n)
	case field.Kind() == reflect.Float64:
		x, err := strconv.ParseFloat(text, 64)
		if err != nil {
			return err
		}
		field.SetFloat(x)
	case field.Kind() == reflect.Slice && field.Type().Elem().Kind() == reflect.String:
		var parts []string
		for _, p := range strings.Split(text, ",") {
			if p = strings.TrimSpace(p); p != "" {
				parts = append(parts, p)
			}
		}
		field.Set(reflect.ValueOf(parts))
	default:
		return fmt.Errorf("cannot be set from the environment (use the config file)")
	}
	return nil
}

// setDefaults fills what the configuration left empty.
func (c *serveConfig) setDefaults() {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.Mode, "sk")
	def(&c.DataDir, "c2data")
	def(&c.Store.Driver, "sqlite")
	if c.Store.Driver == "sqlite" {
		def(&c.Store.Path, filepath.Join(c.DataDir, "c2.db"))
	}
	if c.MasterKey.Env == "" && c.MasterKey.PassphraseFile == "" && c.MasterKey.PassphraseEnv == "" {
		def(&c.MasterKey.File, filepath.Join(c.DataDir, "master.key"))
	}
	def(&c.GRPC.Addr, defaultC2GRPCAddr)
	def(&c.HTTP.Addr, defaultC2HTTPAddr)
	def(&c.BootstrapTokenFile, filepath.Join(c.DataDir, "admin.token"))
	def(&c.Log.Level, "info")
	def(&c.Log.Format, "json")
}

// serveFlags are the flags of "e4 c2 serve"; a flag given overrides the
// configuration.
type serveFlags struct {
	config                              string
	mode, dataDir, storeDriver, db, dsn string
	suite                               string
	masterKeyFile, masterKeyEnv         string
	passphraseFile                      string
	transport, transportUser            string
	transportPasswordFile, transportCA  string
	grpcAddr, httpAddr                  string
	tlsCert, tlsKey, clientCA           string
	bootstrapTokenFile                  string
	init                                bool
	rate                                float64
	burst                               int
	logFormat, logLevel, metricsAddr    string
	state                               stateFlags
	monitor                             monitorFlags
}

func newC2ServeCommand() *cobra.Command {
	f := &serveFlags{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the C2 server: gRPC and HTTP/JSON APIs over the service and its outbox dispatcher",
		Long: `serve runs C2 until SIGINT or SIGTERM, then stops gracefully.

Configuration comes from --config (YAML), then from E4_C2_* environment
variables named after the YAML paths (E4_C2_TRANSPORT_URL,
E4_C2_TRANSPORT_PASSWORD, E4_C2_STORE_DSN, E4_C2_GRPC_ADDR...), then from
flags; docs/config.md lists every key with its default, variable and flag,
and docs/c2.sample.yaml is a commented file with all of them. With no configuration at all it runs a development C2: symmetric-key
mode, SQLite and a new master key in ./c2data, a self-signed certificate in
./c2data/tls, gRPC on ` + defaultC2GRPCAddr + `, HTTPS on ` + defaultC2HTTPAddr + `, and
no broker (commands wait in the outbox). On the first start it writes an
admin API token to <data dir>/admin.token and records the deployment in
<data dir>/deployment; a later start on an empty or missing database beside
that record (or beside an existing master key file) is refused rather than
starting a new deployment (restore the database, or use --init).

--transport takes a broker URL (mqtt://, mqtts://, ws://, amqp://, amqps://,
coap://, coaps://), or mqtt, amqp or coap for that broker on localhost, or
none. Its password comes from --transport-password-file or
E4_C2_TRANSPORT_PASSWORD, never from the command line.

The master key that seals every key in the database comes from a file
(created with mode 0600 on first start), an environment variable
(master_key.env names it), or a passphrase (master_key.passphrase_file or
passphrase_env; Argon2id with a salt kept in the database).

In public-key mode, pk.group_topics: true (E4_C2_PK_GROUP_TOPICS=true) makes
the members of each topic exchange their public keys as they join and leave,
so they read each other's messages without "e4 c2 pubkey link".` + serveStateHelp + serveMonitorHelp + serveMetricsHelp,
		Example: `  e4 c2 serve
  e4 c2 serve --data-dir /var/lib/e4c2 --transport mqtts://broker.example:8883 --transport-ca-file ca.pem
  E4_C2_TRANSPORT_PASSWORD=... e4 c2 serve --transport amqp://c2@rabbit.example --mode pk
  e4 c2 serve --data-dir ./c2fast --suite fast
  e4 c2 serve --transport mqtt://127.0.0.1:1883 --metrics-addr 127.0.0.1:9464 --log-level debug
  e4 c2 serve --config c2.yaml --store postgres --dsn postgres://c2@db.example/e4c2`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadServeConfig(f.config, os.Environ())
			if err != nil {
				return err
			}
			f.apply(cmd, cfg)
			cfg.setDefaults()
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runServe(ctx, cfg, cmd.ErrOrStderr())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.config, "config", "", "YAML configuration file")
	fl.StringVar(&f.mode, "mode", "", "crypto mode: sk or pk (default sk)")
	addSuiteFlag(cmd, fl, &f.suite, suiteUsage+"; recorded on first start")
	fl.StringVar(&f.dataDir, "data-dir", "", "folder of the default database, master key, certificate and admin token (default ./c2data)")
	fl.StringVar(&f.storeDriver, "store", "", "database: sqlite or postgres (default sqlite)")
	fl.StringVar(&f.db, "db", "", "SQLite file (default <data dir>/c2.db)")
	fl.StringVar(&f.dsn, "dsn", "", "PostgreSQL connection string (prefer E4_C2_STORE_DSN: it may hold a password)")
	fl.StringVar(&f.masterKeyFile, "master-key-file", "", "master key file, hex (default <data dir>/master.key, created on first start)")
	fl.StringVar(&f.masterKeyEnv, "master-key-env", "", "name of the environment variable holding the master key")
	fl.StringVar(&f.passphraseFile, "passphrase-file", "", "derive the master key from the passphrase in this file")
	fl.StringVar(&f.transport, "transport", "", "broker URL, or mqtt, amqp, coap (on localhost), or none")
	fl.StringVar(&f.transportUser, "transport-username", "", "broker username")
	fl.StringVar(&f.transportPasswordFile, "transport-password-file", "", "file holding the broker password")
	fl.StringVar(&f.transportCA, "transport-ca-file", "", "PEM CA of the broker's certificate (secure schemes)")
	fl.StringVar(&f.grpcAddr, "grpc-addr", "", "gRPC listen address (default "+defaultC2GRPCAddr+")")
	fl.StringVar(&f.httpAddr, "http-addr", "", "HTTP/JSON listen address (default "+defaultC2HTTPAddr+")")
	fl.StringVar(&f.tlsCert, "tls-cert", "", "server certificate, PEM (default: a self-signed one in <data dir>/tls)")
	fl.StringVar(&f.tlsKey, "tls-key", "", "key of --tls-cert")
	fl.StringVar(&f.clientCA, "client-ca", "", "require client certificates signed by this PEM CA (mutual TLS)")
	fl.StringVar(&f.bootstrapTokenFile, "bootstrap-token-file", "", "where the first admin token is written (default <data dir>/admin.token)")
	fl.Float64Var(&f.rate, "rate", 0, "calls per second allowed to each token (default 100; negative: no limit)")
	fl.IntVar(&f.burst, "burst", 0, "calls a token may make at once above --rate (default 200)")
	fl.StringVar(&f.logFormat, "log-format", "", "json or text (default json)")
	fl.StringVar(&f.logLevel, "log-level", "", "debug, info, warn or error (default info; debug shows every publish retried and key resent)")
	fl.StringVar(&f.metricsAddr, "metrics-addr", "", "also serve /metrics, /healthz and /readyz here, over plain HTTP and without a token (default: only on the API's HTTP listener, /metrics with a token)")
	fl.BoolVar(&f.init, "init", false, "start a new deployment on an empty database although the data folder has a master key or a deployment record")
	f.state.register(cmd)
	f.monitor.register(cmd)
	_ = cmd.RegisterFlagCompletionFunc("mode", fixedCompletion("sk", "pk"))
	_ = cmd.RegisterFlagCompletionFunc("store", fixedCompletion("sqlite", "postgres"))
	_ = cmd.RegisterFlagCompletionFunc("transport", fixedCompletion("mqtt://", "mqtts://", "amqp://", "amqps://", "coap://", "coaps://", "none"))
	_ = cmd.RegisterFlagCompletionFunc("log-format", fixedCompletion("json", "text"))
	_ = cmd.RegisterFlagCompletionFunc("log-level", fixedCompletion("debug", "info", "warn", "error"))
	return cmd
}

// apply copies the flags given on the command line over cfg.
func (f *serveFlags) apply(cmd *cobra.Command, cfg *serveConfig) {
	set := func(name string, dst *string, v string) {
		if cmd.Flags().Changed(name) {
			*dst = v
		}
	}
	set("mode", &cfg.Mode, f.mode)
	set("suite", &cfg.Suite, f.suite)
	set("data-dir", &cfg.DataDir, f.dataDir)
	set("store", &cfg.Store.Driver, f.storeDriver)
	set("db", &cfg.Store.Path, f.db)
	set("dsn", &cfg.Store.DSN, f.dsn)
	set("master-key-file", &cfg.MasterKey.File, f.masterKeyFile)
	set("master-key-env", &cfg.MasterKey.Env, f.masterKeyEnv)
	set("passphrase-file", &cfg.MasterKey.PassphraseFile, f.passphraseFile)
	set("transport", &cfg.Transport.URL, f.transport)
	set("transport-username", &cfg.Transport.Username, f.transportUser)
	set("transport-password-file", &cfg.Transport.PasswordFile, f.transportPasswordFile)
	set("transport-ca-file", &cfg.Transport.CAFile, f.transportCA)
	set("grpc-addr", &cfg.GRPC.Addr, f.grpcAddr)
	set("http-addr", &cfg.HTTP.Addr, f.httpAddr)
	set("tls-cert", &cfg.TLS.CertFile, f.tlsCert)
	set("tls-key", &cfg.TLS.KeyFile, f.tlsKey)
	set("client-ca", &cfg.TLS.ClientCAFile, f.clientCA)
	set("bootstrap-token-file", &cfg.BootstrapTokenFile, f.bootstrapTokenFile)
	set("log-format", &cfg.Log.Format, f.logFormat)
	set("log-level", &cfg.Log.Level, f.logLevel)
	set("metrics-addr", &cfg.Metrics.Addr, f.metricsAddr)
	cfg.Init = f.init
	if cmd.Flags().Changed("rate") {
		cfg.Limits.RatePerSecond = f.rate
	}
	if cmd.Flags().Changed("burst") {
		cfg.Limits.Burst = f.burst
	}
	f.state.apply(cmd, cfg)
	f.monitor.apply(cmd, cfg)
}

// newLogger builds the server's logger on w.
func (c *serveConfig) newLogger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.Log.Level)); err != nil {
		return nil, fmt.Errorf("log.level %q: want debug, info, warn or error", c.Log.Level)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch c.Log.Format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log.format %q: want json or text", c.Log.Format)
}

func (c *serveConfig) cryptoMode() (e4.Mode, error) {
	switch strings.ToLower(c.Mode) {
	case "sk", "symmetric", "symmetric-key":
		return e4.SymKey, nil
	case "pk", "public", "public-key":
		return e4.PubKey, nil
	}
	return 0, fmt.Errorf("mode %q: want sk or pk", c.Mode)
}

// runServe runs C2 until ctx ends.
func runServe(ctx context.Context, cfg *serveConfig, logOut io.Writer) error {
	log, err := cfg.newLogger(logOut)
	if err != nil {
		return err
	}
	mode, err := cfg.cryptoMode()
	if err != nil {
		return err
	}
	suite, err := e4.SuiteByName(strings.ToLower(cfg.Suite))
	if err != nil {
		return fmt.Errorf("suite: %w", err)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return err
	}
	obs := newObservability(cfg, version.String(), log)
	st, err := cfg.openStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	st = obs.store(st)
	if err := cfg.checkDeployment(ctx, st, cfg.Init); err != nil {
		return err
	}
	keys, err := cfg.keyring(ctx, st, log)
	if err != nil {
		return err
	}
	tlsCfg, certScopes, err := cfg.serverTLS(log)
	if err != nil {
		return err
	}
	tr, err := cfg.openTransport(ctx, log)
	if err != nil {
		return err
	}
	if tr != nil {
		defer tr.Close()
	}
	tr = obs.transport(tr)
	hub := api.NewEventHub(cfg.EventBuffer)
	mon := newMonitorWiring(cfg.Monitor)
	svc, err := c2.New(ctx, c2.Config{
		Mode: mode, Suite: suite, Store: st, Keyring: keys, Transport: tr, Logger: log,
		OnEvent:              mon.onEvent(func(ev c2.Event) { hub.Publish(ev); obs.events.Observe(ev) }),
		KeepTopicKeyOnRemove: cfg.C2.KeepTopicKeyOnRemove, RotateOnAdd: cfg.C2.RotateOnAdd, AllowGeneratedKeyPairs: cfg.C2.AllowGeneratedKeyPairs, GroupTopics: cfg.PK.GroupTopics,
		Dispatch: cfg.dispatchConfig(), Automation: cfg.C2.Automation.config(),
	})
	if err != nil {
		return err
	}
	if err := cfg.markDeployment(); err != nil {
		return err
	}
	if err := obs.setService(svc); err != nil {
		return err
	}
	log.Info("C2 database open", "mode", mode.String(), "suite", svc.Suite().Name())
	if created, err := bootstrap.AdminToken(ctx, st, cfg.BootstrapTokenFile); err != nil {
		return err
	} else if created {
		log.Warn("created the first admin API token", "file", cfg.BootstrapTokenFile)
	}
	apiCfg := api.Config{
		Service: svc, Store: st, Events: hub, GRPCAddr: cfg.GRPC.Addr, HTTPAddr: cfg.HTTP.Addr,
		TLS: tlsCfg, Plaintext: cfg.TLS.Disabled, CertScopes: certScopes,
		MaxRequestBytes: cfg.Limits.MaxRequestBytes, RatePerSecond: cfg.Limits.RatePerSecond, Burst: cfg.Limits.Burst,
		MaxInFlightBytes: cfg.Limits.MaxInFlightBytes, BodyReadTimeout: cfg.Limits.BodyReadTimeout,
		FailedAuthPerSecond: cfg.Limits.FailedAuthPerSecond, FailedAuthBurst: cfg.Limits.FailedAuthBurst,
		Logger: log, Version: version.String(),
	}
	obs.apiConfig(&apiCfg)
	srv, err := api.New(apiCfg)
	if err != nil {
		return err
	}
	if err := mountWeb(ctx, srv, svc, hub, log); err != nil {
		return err
	}
	if err := mon.start(ctx, svc, tr, log); err != nil {
		return err
	}
	defer mon.stop()
	if err := mon.warnBudgetsUncounted(ctx, svc, log); err != nil {
		return err
	}
	for _, c := range mon.collectors() {
		if err := obs.Register(c); err != nil {
			return err
		}
	}
	obs.setServer(srv)
	return obs.run(ctx, func(ctx context.Context) error { return runService(ctx, svc, srv, log) })
}

// runService runs the dispatcher and the API until ctx ends, and stops
// both.
func runService(ctx context.Context, svc *c2.Service, srv *api.Server, log *slog.Logger) error {
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	dispatched := make(chan error, 1)
	go func() { dispatched <- svc.Run(runCtx) }()
	err := srv.Run(runCtx)
	cancel()
	if derr := <-dispatched; derr != nil && err == nil {
		err = derr
	}
	log.Info("C2 stopped")
	return err
}

func (c *serveConfig) openStore(ctx context.Context) (store.Store, error) {
	switch c.Store.Driver {
	case "sqlite":
		return sqlite.Open(ctx, c.Store.Path)
	case "postgres":
		if c.Store.DSN == "" {
			return nil, errors.New("store.driver postgres needs store.dsn (or E4_C2_STORE_DSN, or --dsn)")
		}
		return postgres.Open(ctx, c.Store.DSN)
	}
	return nil, fmt.Errorf("store.driver %q: want sqlite or postgres", c.Store.Driver)
}

// settingMasterSalt keeps the salt of a passphrase-derived master key.
const settingMasterSalt = "master-key-salt"

// keyring loads the master key from the one source configured.
func (c *serveConfig) keyring(ctx context.Context, st store.Store, log *slog.Logger) (*seal.Keyring, error) {
	var (
		key []byte
		err error
	)
	switch {
	case c.MasterKey.Env != "":
		key, err = seal.KeyFromEnv(c.MasterKey.Env)
	case c.MasterKey.PassphraseFile != "" || c.MasterKey.PassphraseEnv != "":
		key, err = c.passphraseKey(ctx, st)
	default:
		key, err = seal.KeyFromFile(c.MasterKey.File)
		if errors.Is(err, os.ErrNotExist) {
			if key, err = seal.WriteKeyFile(c.MasterKey.File); err == nil {
				log.Warn("created a new master key: back it up, the database is unreadable without it", "file", c.MasterKey.File)
			}
		}
	}
	if err != nil {
		return nil, err
	}
	return seal.NewKeyring(key)
}

// passphraseKey derives the master key from a passphrase and the salt kept
// in the database (made on first start).
func (c *serveConfig) passphraseKey(ctx context.Context, st store.Store) ([]byte, error) {
	var passphrase string
	if c.MasterKey.PassphraseFile != "" {
		b, err := os.ReadFile(c.MasterKey.PassphraseFile)
		if err != nil {
			return nil, fmt.Errorf("master key passphrase: %w", err)
		}
		passphrase = strings.TrimRight(string(b), "\r\n")
	} else if passphrase = os.Getenv(c.MasterKey.PassphraseEnv); passphrase == "" {
		return nil, fmt.Errorf("master key passphrase: %s is not set", c.MasterKey.PassphraseEnv)
	}
	var salt []byte
	err := st.Update(ctx, func(tx store.Tx) error {
		var err error
		salt, err = tx.GetSetting(settingMasterSalt)
		if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		salt = make([]byte, seal.SaltSize)
		if _, err := rand.Read(salt); err != nil {
			return err
		}
		return tx.PutSetting(settingMasterSalt, salt)
	})
	if err != nil {
		return nil, err
	}
	return seal.KeyFromPassphrase(passphrase, salt)
}

// serverTLS returns the listeners' TLS configuration (nil when disabled)
// and the scopes of client certificates.
func (c *serveConfig) serverTLS(log *slog.Logger) (*tls.Config, map[string]api.Scope, error) {
	scopes := make(map[string]api.Scope, len(c.TLS.CertScopes))
	for cn, name := range c.TLS.CertScopes {
		s, err := api.ParseScope(name)
		if err != nil {
			return nil, nil, fmt.Errorf("tls.cert_scopes[%s]: %w", cn, err)
		}
		scopes[cn] = s
	}
	if len(scopes) > 0 && (c.TLS.Disabled || c.TLS.ClientCAFile == "") {
		return nil, nil, errors.New("tls.cert_scopes needs tls.client_ca_file (and TLS): without client certificates to verify, the scopes would be ignored")
	}
	if c.TLS.Disabled {
		log.Warn("TLS is disabled: serve behind a proxy that terminates TLS, never on an open network")
		return nil, scopes, nil
	}
	st := api.ServerTLS{CertFile: c.TLS.CertFile, KeyFile: c.TLS.KeyFile, ClientCAFile: c.TLS.ClientCAFile}
	if st.CertFile == "" && st.KeyFile == "" {
		var err error
		dir := filepath.Join(c.DataDir, "tls")
		if st.CertFile, st.KeyFile, err = bootstrap.EnsureSelfSigned(dir, c.TLS.Hosts); err != nil {
			return nil, nil, err
		}
		log.Warn("serving with a self-signed certificate (development); clients need --ca-file", "cert", st.CertFile)
	}
	cfg, err := st.Config()
	return cfg, scopes, err
}

// localBrokers are the URLs of "--transport mqtt|amqp|coap".
var localBrokers = map[string]string{
	"mqtt": "mqtt://127.0.0.1:1883",
	"amqp": "amqp://127.0.0.1:5672",
	"coap": "coap://127.0.0.1:5683",
}

// openTransport connects to the broker, or returns nil for none.
func (c *serveConfig) openTransport(ctx context.Context, log *slog.Logger) (transport.Transport, error) {
	t := c.Transport
	url := t.URL
	if local, ok := localBrokers[strings.ToLower(url)]; ok {
		url = local
	}
	if url == "" || url == "none" {
		log.Warn("no transport: commands wait in the outbox until C2 runs with one (--transport URL)")
		return nil, nil
	}
	opts := dial.Options{
		CAFile: t.CAFile, CertFile: t.CertFile, KeyFile: t.KeyFile, ServerName: t.ServerName,
		InsecureSkipVerify: t.InsecureSkipVerify, Username: t.Username, Password: t.Password,
		ClientID: t.ClientID, PSKIdentity: t.PSKIdentity,
		ConnectRetry: true, // start while the broker is down; connect when it comes up
	}
	if t.PasswordFile != "" {
		pw, err := readSecretFile(t.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("transport password: %w", err)
		}
		opts.Password = pw
	}
	if t.PSKFile != "" {
		psk, err := readKeyFile(t.PSKFile)
		if err != nil {
			return nil, fmt.Errorf("transport PSK: %w", err)
		}
		opts.PSK = psk
	}
	target, err := dial.Parse(url, opts)
	if err != nil {
		return nil, err
	}
	tr, err := target.Dial(ctx)
	if err != nil {
		return nil, fmt.Errorf("transport %s: %w", target.Redacted, err)
	}
	logConnection(tr, log, target.Redacted)
	return tr, nil
}

// logConnection logs, at info level, every loss and recovery of the
// broker connection tr reports.
func logConnection(tr transport.Transport, log *slog.Logger, url string) {
	log.Info("connecting to the broker", "url", url)
	if n, ok := tr.(transport.ConnectionNotifier); ok {
		n.NotifyConnection(func(ev transport.ConnectionEvent) {
			if ev.State == transport.Connected {
				log.Info("connected to the broker", "url", url)
			} else {
				log.Info("broker connection down; retrying", "url", url, "err", ev.Err)
			}
		})
	}
}

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/c2/api"
	"github.com/e4-iot/e4kit/c2/metrics"
	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/transport"
)

// serveMetricsHelp ends the help of "e4 c2 serve".
const serveMetricsHelp = `

Monitoring: /healthz (alive) and /readyz (database and broker checked in
the background every metrics.ready_interval, 5s) answer without a token on
the API's HTTP listener, and the gRPC health service follows /readyz.
/metrics (Prometheus) needs a token of any scope there; --metrics-addr
(metrics.addr) serves all three over plain HTTP without credentials, for a
loopback or private address. --log-level debug also logs each publish
retried and each batch of keys sent again.`

// metricsSettings is the metrics section of the configuration.
type metricsSettings struct {
	// Addr, when set, is a plain HTTP listener serving /metrics, /healthz
	// and /readyz without credentials (bind it to loopback or a private
	// network). The API's HTTP listener serves /healthz and /readyz
	// without credentials and /metrics with a token of any scope, always.
	Addr string `yaml:"addr"`
	// ReadyInterval and ReadyTimeout: how often the database and the
	// broker are checked for /readyz and the gRPC health status (5s), and
	// the bound of each check (2s).
	ReadyInterval time.Duration `yaml:"ready_interval"`
	ReadyTimeout  time.Duration `yaml:"ready_timeout"`
}

// observability is what "e4 c2 serve" measures and probes: one
// Prometheus registry with C2's collectors, and the readiness of the
// database and the broker.
type observability struct {
	reg       *metrics.Registry
	api       *metrics.API
	db        *metrics.Database
	broker    *metrics.Broker
	events    *metrics.Events
	readiness *metrics.Readiness
	addr      string
	log       *slog.Logger

	mu     sync.Mutex
	svc    *c2.Service
	server *api.Server
}

// newObservability builds the registry and the readiness of a serve run;
// the service and the API server join it once made (setService,
// setServer).
func newObservability(cfg *serveConfig, version string, log *slog.Logger) *observability {
	o := &observability{
		reg: metrics.NewRegistry(version), api: metrics.NewAPI(), db: metrics.NewDatabase(),
		broker: metrics.NewBroker(), events: metrics.NewEvents(), addr: cfg.Metrics.Addr, log: log,
	}
	o.readiness = metrics.NewReadiness(metrics.ReadinessConfig{
		Check:    o.check,
		Broker:   !noTransport(cfg.Transport.URL),
		Interval: cfg.Metrics.ReadyInterval, Timeout: cfg.Metrics.ReadyTimeout,
		Logger: log, OnChange: o.setServing,
	})
	o.broker.OnConnection(o.readiness.ConnectionChanged)
	// The collectors of a fixed set cannot clash: a failure is a bug.
	if err := o.reg.Register(o.api, o.db, o.broker, o.events, o.readiness); err != nil {
		panic(err)
	}
	return o
}

// Register adds collectors to the registry /metrics serves: the hook for
// components built beside the service (the monitor's Collector()).
func (o *observability) Register(cs ...prometheus.Collector) error {
	return o.reg.Register(cs...)
}

// store and transport return st and tr measured.
func (o *observability) store(st store.Store) store.Store { return o.db.Instrument(st) }

func (o *observability) transport(tr transport.Transport) transport.Transport {
	if tr == nil {
		return nil
	}
	return o.broker.Instrument(tr)
}

// setService adds svc's collector and makes it the readiness check.
func (o *observability) setService(svc *c2.Service) error {
	o.mu.Lock()
	o.svc = svc
	o.mu.Unlock()
	return o.reg.Register(metrics.NewServiceCollector(svc, 0))
}

// setServer makes the gRPC health status of srv follow the readiness:
// NOT_SERVING until the first check passed.
func (o *observability) setServer(srv *api.Server) {
	o.mu.Lock()
	o.server = srv
	o.mu.Unlock()
	srv.SetServing(o.readiness.Ready())
}

func (o *observability) setServing(ready bool) {
	o.mu.Lock()
	srv := o.server
	o.mu.Unlock()
	if srv != nil {
		srv.SetServing(ready)
	}
}

func (o *observability) check(ctx context.Context, timeout time.Duration) c2.Health {
	o.mu.Lock()
	svc := o.svc
	o.mu.Unlock()
	if svc == nil {
		return c2.Health{Database: errors.New("starting")}
	}
	return svc.Health(ctx, timeout)
}

// apiConfig adds the instrumentation and the routes to the API's
// configuration.
func (o *observability) apiConfig(cfg *api.Config) {
	cfg.Instrumentation = o.api.Instrumentation()
	cfg.PublicRoutes = map[string]http.Handler{
		metrics.HealthzPath: metrics.Healthz(),
		metrics.ReadyzPath:  o.readiness.Readyz(),
	}
	cfg.AuthenticatedRoutes = map[string]http.Handler{metrics.MetricsPath: o.reg.Handler()}
}

// run runs the readiness checks and the metrics listener (if any) beside
// serve, and stops them when it returns.
func (o *observability) run(ctx context.Context, serve func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { o.readiness.Run(ctx) })
	if o.addr != "" {
		srv, ln, err := o.listen(ctx)
		if err != nil {
			return err
		}
		wg.Go(func() { _ = srv.Serve(ln) })
		defer func() {
			shutCtx, stop := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer stop()
			_ = srv.Shutdown(shutCtx)
		}()
	}
	return serve(ctx)
}

// listen binds the metrics listener: /metrics, /healthz and /readyz
// without credentials.
func (o *observability) listen(ctx context.Context) (*http.Server, net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", o.addr)
	if err != nil {
		return nil, nil, fmt.Errorf("metrics listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET "+metrics.MetricsPath, o.reg.Handler())
	mux.Handle("GET "+metrics.HealthzPath, metrics.Healthz())
	mux.Handle("GET "+metrics.ReadyzPath, o.readiness.Readyz())
	o.log.Info("metrics and probes listening, without credentials", "addr", ln.Addr().String(),
		"paths", metrics.MetricsPath+" "+metrics.HealthzPath+" "+metrics.ReadyzPath)
	return &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}, ln, nil
}

// noTransport reports a transport URL that means no broker.
func noTransport(url string) bool { return url == "" || url == "none" }

package api

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/c2/api/c2pb"
	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/internal/version"
)

// Defaults of Config.
const (
	DefaultMaxRequestBytes = 16 << 20
	DefaultRatePerSecond   = 100
	DefaultBurst           = 200
	DefaultTokenCacheTTL   = 5 * time.Second
	DefaultShutdownTimeout = 10 * time.Second
	DefaultBodyReadTimeout = 30 * time.Second
	// DefaultFailedAuthPerSecond and DefaultFailedAuthBurst budget the
	// failed authentications of each remote address.
	DefaultFailedAuthPerSecond = 1
	DefaultFailedAuthBurst     = 50
	// minInFlightBytes is the least default of MaxInFlightBytes.
	minInFlightBytes = 64 << 20
)

// Intervals of the server's background work.
const (
	// maintenanceInterval is how often expired or revoked tokens' streams
	// are looked for, and the refusal log flushed.
	maintenanceInterval = time.Second
	// refusalLogInterval is the window one warning about refused
	// unauthenticated calls covers.
	refusalLogInterval = time.Minute
)

// Config configures a Server. Service, Store, Events and the two
// addresses are required, and TLS unless Plaintext.
type Config struct {
	Service *c2.Service
	// Store is the service's store; it also keeps the tokens and the
	// audit log (it must implement store.AccessTx in its transactions).
	Store store.Store
	// Events is the hub the service publishes to (c2.Config.OnEvent).
	Events *EventHub

	// GRPCAddr and HTTPAddr are where the listeners bind
	// ("127.0.0.1:0" picks a free port; see Server.GRPCAddr).
	GRPCAddr, HTTPAddr string
	// TLS is the configuration of both listeners; with ClientAuth set it
	// requires client certificates (mutual TLS).
	TLS *tls.Config
	// Plaintext serves without TLS when TLS is nil: only for a C2 behind
	// a proxy that terminates TLS, or on a loopback-only test setup.
	Plaintext bool
	// CertScopes maps the common name of a verified client certificate to
	// the scope it has when the call carries no token. It needs TLS with
	// client CAs (TLS.ClientCAs and ClientAuth verifying certificates); a
	// certificate whose subject has several common names is refused.
	CertScopes map[string]Scope

	// MaxRequestBytes bounds a request (gRPC message or HTTP body);
	// default DefaultMaxRequestBytes. Only authenticated callers send a
	// body: both listeners check credentials from the headers first.
	MaxRequestBytes int64
	// MaxInFlightBytes bounds the request bytes being received and
	// handled at once on both listeners (an HTTP body counts its length,
	// a gRPC call MaxRequestBytes for the methods that take bulk data, 64
	// KiB for the others); a request past it is refused with
	// ResourceExhausted (HTTP 429). Default: 4 × MaxRequestBytes, at least
	// 64 MiB.
	MaxInFlightBytes int64
	// BodyReadTimeout bounds receiving a request body (or gRPC request
	// message) once its headers are in; default DefaultBodyReadTimeout.
	// Responses (event streams) are not bounded.
	BodyReadTimeout time.Duration
	// FailedAuthPerSecond and FailedAuthBurst budget the failed
	// authentications of each remote address: past it, its calls without
	// a valid cached token are refused with ResourceExhausted (HTTP 429)
	// without a database read. Defaults DefaultFailedAuthPerSecond and
	// DefaultFailedAuthBurst; a negative FailedAuthPerSecond turns it off.
	FailedAuthPerSecond float64
	FailedAuthBurst     int
	// RatePerSecond and Burst limit each caller (token or certificate);
	// defaults DefaultRatePerSecond and DefaultBurst. A negative
	// RatePerSecond turns the limit off.
	RatePerSecond float64
	Burst         int
	// TokenCacheTTL is how long a checked token is remembered; a token
	// revoked through another replica works that long (default 5 s).
	TokenCacheTTL time.Duration
	// ShutdownTimeout bounds the graceful stop of Run (default 10 s);
	// streams still open then are cut.
	ShutdownTimeout time.Duration

	// Logger receives the server's logs and, with message "audit", one
	// JSON-ready line per audit record; nil discards them.
	Logger *slog.Logger
	// Version is reported by GetInfo and in the OpenAPI document; default
	// the build's (internal/version).
	Version string
	// Now returns the current time; nil means time.Now.
	Now func() time.Time

	// Instrumentation observes the calls of both listeners (metrics).
	Instrumentation Instrumentation
	// PublicRoutes are served on the HTTP listener without credentials,
	// by exact path, for GET and HEAD (health probes); AuthenticatedRoutes
	// the same after checking credentials of any scope (metrics).
	PublicRoutes, AuthenticatedRoutes map[string]http.Handler
}

// Server serves the C2 API over gRPC and HTTP/JSON.
type Server struct {
	cfg      Config
	log      *slog.Logger
	handlers *handlers
	external *grpc.Server // the public gRPC listener, with TLS
	internal *grpc.Server // behind the in-memory connection of the gateway
	health   *health.Server
	pipe     *pipeListener
	guard    *guard // of the public listeners
	refusals *refusalLog

	ready chan struct{}
	// notServing is what SetServing asked the health service to report;
	// servingMu orders the reports and guards serving (Run started).
	notServing atomic.Bool
	servingMu  sync.Mutex
	serving    bool

	mu       sync.Mutex
	grpcAddr string
	httpAddr string
	mounts   map[string]http.Handler // see Mount
}

// New checks cfg and builds a server; Run starts it.
func New(cfg Config) (*Server, error) {
	if cfg.Service == nil || cfg.Store == nil || cfg.Events == nil {
		return nil, errors.New("api: Config.Service, Config.Store and Config.Events are required")
	}
	if cfg.GRPCAddr == "" || cfg.HTTPAddr == "" {
		return nil, errors.New("api: Config.GRPCAddr and Config.HTTPAddr are required")
	}
	if cfg.TLS == nil && !cfg.Plaintext {
		return nil, errors.New("api: Config.TLS is required (set Plaintext to serve without TLS)")
	}
	if err := checkCertScopes(cfg); err != nil {
		return nil, err
	}
	setDefaults(&cfg)
	s := &Server{cfg: cfg, log: cfg.Logger, pipe: newPipeListener(), ready: make(chan struct{}), health: health.NewServer()}
	auth := newAuthenticator(cfg.Store, cfg.TokenCacheTTL, cfg.Now)
	streams := newStreamTracker()
	s.handlers = &handlers{svc: cfg.Service, st: cfg.Store, hub: cfg.Events, auth: auth, streams: streams, now: cfg.Now,
		version: cfg.Version, stopping: make(chan struct{})}
	audit := &auditor{st: cfg.Store, log: s.log, now: cfg.Now}
	limits := newLimiters(cfg.RatePerSecond, cfg.Burst)
	failures := newFailureLimiter(cfg.FailedAuthPerSecond, cfg.FailedAuthBurst)
	s.refusals = newRefusalLog(s.log, refusalLogInterval)
	budget := &byteBudget{max: cfg.MaxInFlightBytes}
	newGuard := func(internal bool) *guard {
		return &guard{auth: auth, audit: audit, limits: limits, certScopes: cfg.CertScopes, log: s.log, now: cfg.Now, internal: internal,
			failures: failures, refusals: s.refusals, budget: budget, maxRequest: cfg.MaxRequestBytes,
			bodyTimeout: cfg.BodyReadTimeout, streams: streams}
	}
	s.guard = newGuard(false)
	s.external = s.newGRPCServer(s.guard, cfg.TLS)
	s.internal = s.newGRPCServer(newGuard(true), nil)
	healthpb.RegisterHealthServer(s.external, s.health)
	reflection.Register(s.external)
	return s, nil
}

func setDefaults(cfg *Config) {
	if cfg.MaxRequestBytes <= 0 {
		cfg.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if cfg.RatePerSecond == 0 {
		cfg.RatePerSecond = DefaultRatePerSecond
	}
	if cfg.Burst <= 0 {
		cfg.Burst = DefaultBurst
	}
	if cfg.TokenCacheTTL <= 0 {
		cfg.TokenCacheTTL = DefaultTokenCacheTTL
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = DefaultShutdownTimeout
	}
	if cfg.MaxInFlightBytes <= 0 {
		cfg.MaxInFlightBytes = max(minInFlightBytes, 4*cfg.MaxRequestBytes)
	}
	if cfg.BodyReadTimeout <= 0 {
		cfg.BodyReadTimeout = DefaultBodyReadTimeout
	}
	if cfg.FailedAuthPerSecond == 0 {
		cfg.FailedAuthPerSecond = DefaultFailedAuthPerSecond
	}
	if cfg.FailedAuthBurst <= 0 {
		cfg.FailedAuthBurst = DefaultFailedAuthBurst
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Version == "" {
		cfg.Version = version.String()
	}
}

// checkCertScopes refuses CertScopes without verified client
// certificates to map: they would be silently ignored.
func checkCertScopes(cfg Config) error {
	if len(cfg.CertScopes) == 0 {
		return nil
	}
	if cfg.TLS == nil || cfg.TLS.ClientCAs == nil ||
		(cfg.TLS.ClientAuth != tls.RequireAndVerifyClientCert && cfg.TLS.ClientAuth != tls.VerifyClientCertIfGiven) {
		return errors.New("api: Config.CertScopes needs TLS that verifies client certificates (a client CA file)")
	}
	return nil
}

// newGRPCServer builds a gRPC server; g.internal marks the one behind
// the gateway, whose callers the HTTP handler chain already admitted.
func (s *Server) newGRPCServer(g *guard, tlsCfg *tls.Config) *grpc.Server {
	unary := []grpc.UnaryServerInterceptor{g.unary}
	stream := []grpc.StreamServerInterceptor{g.stream}
	if in := s.cfg.Instrumentation; !g.internal {
		if in.Unary != nil {
			unary = append([]grpc.UnaryServerInterceptor{in.Unary}, unary...)
		}
		if in.Stream != nil {
			stream = append([]grpc.StreamServerInterceptor{in.Stream}, stream...)
		}
	}
	opts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
		grpc.MaxRecvMsgSize(int(s.cfg.MaxRequestBytes)),
		grpc.ForceServerCodecV2(newLenientCodec()),
	}
	if !g.internal {
		opts = append(opts, grpc.InTapHandle(tapWithRefusals(g, s.cfg.Instrumentation.Refused)))
	}
	if tlsCfg != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(tlsCfg)))
	}
	srv := grpc.NewServer(opts...)
	c2pb.RegisterC2Server(srv, s.handlers)
	return srv
}

// Ready is closed once both listeners accept connections.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// GRPCAddr is the address the gRPC listener is bound to (after Ready).
func (s *Server) GRPCAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.grpcAddr
}

// HTTPAddr is the address the HTTP listener is bound to (after Ready).
func (s *Server) HTTPAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.httpAddr
}

// Run listens on both addresses and serves until ctx ends, then stops
// gracefully: no new calls, the calls under way get ShutdownTimeout to
// finish. It returns nil after a clean stop.
func (s *Server) Run(ctx context.Context) error {
	var lc net.ListenConfig
	grpcLn, err := lc.Listen(ctx, "tcp", s.cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("api: gRPC listener: %w", err)
	}
	httpLn, err := lc.Listen(ctx, "tcp", s.cfg.HTTPAddr)
	if err != nil {
		grpcLn.Close()
		return fmt.Errorf("api: HTTP listener: %w", err)
	}
	conn, err := grpc.NewClient("passthrough:///gateway",
		grpc.WithContextDialer(s.pipe.DialContext),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<30)))
	if err != nil {
		grpcLn.Close()
		httpLn.Close()
		return fmt.Errorf("api: gateway connection: %w", err)
	}
	defer conn.Close()
	gwCtx, stopGateway := context.WithCancel(context.WithoutCancel(ctx))
	defer stopGateway()
	handler, err := newGateway(gwCtx, conn, s.guard, s.handlers.stopping, s.cfg.Version)
	if err != nil {
		grpcLn.Close()
		httpLn.Close()
		return fmt.Errorf("api: gateway: %w", err)
	}
	handler = withExtraRoutes(s.cfg, s.guard, handler)
	if s.cfg.Instrumentation.HTTP != nil {
		handler = s.cfg.Instrumentation.HTTP(handler)
	}
	httpSrv := &http.Server{
		Handler:           s.withMounts(handler),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		TLSConfig:         s.cfg.TLS,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	s.mu.Lock()
	s.grpcAddr, s.httpAddr = grpcLn.Addr().String(), httpLn.Addr().String()
	s.mu.Unlock()
	return s.serve(ctx, grpcLn, httpLn, httpSrv, stopGateway)
}

// serve runs the three servers until ctx ends or one fails.
func (s *Server) serve(ctx context.Context, grpcLn, httpLn net.Listener, httpSrv *http.Server, stopGateway func()) error {
	errs := make(chan error, 3)
	go func() { errs <- s.external.Serve(grpcLn) }()
	go func() { errs <- s.internal.Serve(s.pipe) }()
	go func() {
		var err error
		if s.cfg.TLS != nil {
			err = httpSrv.ServeTLS(httpLn, "", "")
		} else {
			err = httpSrv.Serve(httpLn)
		}
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		errs <- err
	}()
	maintained := make(chan struct{})
	stopMaintenance := make(chan struct{})
	go func() { defer close(maintained); s.maintain(stopMaintenance) }()
	defer func() { close(stopMaintenance); <-maintained; s.refusals.flush(s.cfg.Now(), true) }()
	s.startServing()
	s.log.Info("C2 API listening", "grpc", s.GRPCAddr(), "http", s.HTTPAddr(), "tls", s.cfg.TLS != nil)
	close(s.ready)
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errs:
		runErr = fmt.Errorf("api: a listener stopped: %w", runErr)
	}
	s.shutdown(httpSrv, stopGateway)
	return runErr
}

// maintain ends the streams of expired or revoked tokens and flushes the
// refusal log, until stop is closed.
func (s *Server) maintain(stop <-chan struct{}) {
	tick := time.NewTicker(maintenanceInterval)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
			now := s.cfg.Now()
			ctx, cancel := context.WithTimeout(context.Background(), maintenanceInterval)
			s.guard.streams.sweep(ctx, now, s.guard.auth)
			cancel()
			s.refusals.flush(now, false)
		}
	}
}

// shutdown stops the listeners gracefully, then forcibly after the
// shutdown timeout.
func (s *Server) shutdown(httpSrv *http.Server, stopGateway func()) {
	s.health.Shutdown()
	// Event streams never end by themselves: tell them to, so that the
	// graceful stop waits only for calls that do.
	close(s.handlers.stopping)
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	// HTTP first: its calls go through the internal gRPC server.
	if err := httpSrv.Shutdown(ctx); err != nil {
		httpSrv.Close()
	}
	stopGateway()
	var wg sync.WaitGroup
	for _, srv := range []*grpc.Server{s.external, s.internal} {
		wg.Go(func() {
			done := make(chan struct{})
			go func() { srv.GracefulStop(); close(done) }()
			select {
			case <-done:
			case <-ctx.Done():
				srv.Stop()
			}
		})
	}
	wg.Wait()
	s.pipe.Close()
	s.log.Info("C2 API stopped")
}

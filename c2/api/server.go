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
)

// Defaults of Config.
const (
	DefaultMaxRequestBytes = 16 << 20
	DefaultRatePerSecond   = 100
	DefaultBurst           = 200
	DefaultTokenCacheTTL   = 5 * time.Second
	DefaultShutdownTimeout = 10 * time.Second
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
	// the scope it has when the call carries no token.
	CertScopes map[string]Scope

	// MaxRequestBytes bounds a request (gRPC message or HTTP body);
	// default DefaultMaxRequestBytes.
	MaxRequestBytes int64
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
	// Version is reported by GetInfo.
	Version string
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
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

	ready    chan struct{}
	mu       sync.Mutex
	grpcAddr string
	httpAddr string
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
	setDefaults(&cfg)
	s := &Server{cfg: cfg, log: cfg.Logger, pipe: newPipeListener(), ready: make(chan struct{}), health: health.NewServer()}
	auth := newAuthenticator(cfg.Store, cfg.TokenCacheTTL, cfg.Now)
	s.handlers = &handlers{svc: cfg.Service, st: cfg.Store, hub: cfg.Events, auth: auth, now: cfg.Now,
		version: cfg.Version, stopping: make(chan struct{})}
	audit := &auditor{st: cfg.Store, log: s.log, now: cfg.Now}
	limits := newLimiters(cfg.RatePerSecond, cfg.Burst)
	newGuard := func(internal bool) *guard {
		return &guard{auth: auth, audit: audit, limits: limits, certScopes: cfg.CertScopes, log: s.log, now: cfg.Now, internal: internal}
	}
	s.external = s.newGRPCServer(newGuard(false), cfg.TLS)
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
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
}

func (s *Server) newGRPCServer(g *guard, tlsCfg *tls.Config) *grpc.Server {
	opts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(g.unary),
		grpc.ChainStreamInterceptor(g.stream),
		grpc.MaxRecvMsgSize(int(s.cfg.MaxRequestBytes)),
		grpc.ForceServerCodecV2(newLenientCodec()),
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
	handler, err := newGateway(gwCtx, conn, s.cfg.MaxRequestBytes, s.handlers.stopping)
	if err != nil {
		grpcLn.Close()
		httpLn.Close()
		return fmt.Errorf("api: gateway: %w", err)
	}
	httpSrv := &http.Server{
		Handler:           handler,
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
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus(c2pb.C2_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
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

package api

import (
	"context"
	"net/http"
	"sync/atomic"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/tap"

	"github.com/e4-iot/e4kit/c2/api/c2pb"
)

// Instrumentation lets the caller of New observe the API's calls (for
// metrics) without the api package knowing how they are recorded.
type Instrumentation struct {
	// Unary and Stream, when set, are the outermost interceptors of the
	// public gRPC listener: they see every call that reached a method,
	// with the status the caller gets (refusals included). Calls made
	// through the HTTP gateway are not seen here but by HTTP.
	Unary  grpc.UnaryServerInterceptor
	Stream grpc.StreamServerInterceptor
	// Refused, when set, hears the calls the public gRPC listener refused
	// from their headers alone (no valid credentials, too many bytes in
	// flight), which never reach an interceptor. fullMethod is what the
	// caller asked for: it may name no method at all.
	Refused func(fullMethod string, err error)
	// HTTP, when set, wraps the whole HTTP handler, so it sees every
	// request, refused or not. RouteOf tells it which route a request
	// took.
	HTTP func(http.Handler) http.Handler
}

// routeKey carries the *atomic.Pointer[string] a request's route is
// written to.
type routeKey struct{}

// TrackRoute returns r with a place for the route it will take, and a
// function that reads that route once the request was served: the route
// pattern of a REST route ("GET /v1/clients/{client}"), the path of a
// fixed route ("GET /openapi.json"), or "" when no route matched. The
// route never holds the caller's values, so it is fit for a label.
func TrackRoute(r *http.Request) (*http.Request, func() string) {
	var route atomic.Pointer[string]
	r = r.WithContext(context.WithValue(r.Context(), routeKey{}, &route))
	return r, func() string {
		if p := route.Load(); p != nil {
			return *p
		}
		return ""
	}
}

// tapWithRefusals returns the tap handle of the public listener, telling
// refused about the calls it refuses.
func tapWithRefusals(g *guard, refused func(string, error)) tap.ServerInHandle {
	if refused == nil {
		return g.tap
	}
	return func(ctx context.Context, info *tap.Info) (context.Context, error) {
		ctx, err := g.tap(ctx, info)
		if err != nil {
			refused(info.FullMethodName, err)
		}
		return ctx, err
	}
}

// setRoute records the route of the request whose context is ctx, if it
// is tracked.
func setRoute(ctx context.Context, route string) {
	if p, ok := ctx.Value(routeKey{}).(*atomic.Pointer[string]); ok {
		p.Store(&route)
	}
}

// routeMiddleware records the pattern of the REST route grpc-gateway
// matched.
func routeMiddleware(next runtime.HandlerFunc) runtime.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
		if pattern, ok := runtime.HTTPPattern(r.Context()); ok {
			setRoute(r.Context(), r.Method+" "+pattern.String())
		}
		next(w, r, params)
	}
}

// fixedRoute records route for the requests h serves.
func fixedRoute(route string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		setRoute(r.Context(), route)
		h.ServeHTTP(w, r)
	})
}

// withExtraRoutes serves Config.PublicRoutes before authentication and
// Config.AuthenticatedRoutes after it (any valid credentials), by exact
// path and for GET and HEAD only; everything else goes to api.
func withExtraRoutes(cfg Config, g *guard, api http.Handler) http.Handler {
	if len(cfg.PublicRoutes) == 0 && len(cfg.AuthenticatedRoutes) == 0 {
		return api
	}
	authed := make(map[string]http.Handler, len(cfg.AuthenticatedRoutes))
	for path, h := range cfg.AuthenticatedRoutes {
		authed[path] = g.admitHTTP(h)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			// The route is known before the credentials are checked, so
			// a refusal is counted under it too.
			if h, ok := cfg.PublicRoutes[r.URL.Path]; ok {
				setRoute(r.Context(), "GET "+r.URL.Path)
				h.ServeHTTP(w, r)
				return
			}
			if h, ok := authed[r.URL.Path]; ok {
				setRoute(r.Context(), "GET "+r.URL.Path)
				h.ServeHTTP(w, r)
				return
			}
		}
		api.ServeHTTP(w, r)
	})
}

// SetServing sets the status the gRPC health service reports, for the
// whole server and for the C2 service: SERVING when serving is true,
// NOT_SERVING otherwise (a readiness check failed). It may be called
// before Run, and at any time after; once the server stops the status
// stays NOT_SERVING.
func (s *Server) SetServing(serving bool) {
	s.notServing.Store(!serving)
	s.applyServing()
}

// startServing makes the health service report what SetServing asked
// for, from now on.
func (s *Server) startServing() {
	s.servingMu.Lock()
	s.serving = true
	s.servingMu.Unlock()
	s.applyServing()
}

// applyServing reports the status SetServing asked for, once Run started.
func (s *Server) applyServing() {
	s.servingMu.Lock()
	defer s.servingMu.Unlock()
	if !s.serving {
		return // serve applies it when it starts
	}
	status := healthpb.HealthCheckResponse_SERVING
	if s.notServing.Load() {
		status = healthpb.HealthCheckResponse_NOT_SERVING
	}
	s.health.SetServingStatus("", status)
	s.health.SetServingStatus(c2pb.C2_ServiceDesc.ServiceName, status)
}

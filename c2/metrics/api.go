package metrics

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/e4-iot/e4kit/c2/api"
	"github.com/e4-iot/e4kit/c2/api/c2pb"
)

// API measures the calls of the C2 API: requests by protocol, method and
// code, and their latency. The method of a gRPC call is its short name
// (only registered methods reach an interceptor); that of an HTTP request
// its route pattern ("GET /v1/clients/{client}"), or "other" when no
// route matched, so no caller value becomes a label.
type API struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewAPI returns the API metrics; register them with Registry.Register
// and pass Instrumentation to api.Config.
func NewAPI() *API {
	return &API{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "c2", Name: "api_requests_total",
			Help: "C2 API requests by protocol (grpc, http), method (gRPC method or HTTP route) and code (gRPC status name or HTTP status).",
		}, []string{"protocol", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Subsystem: "c2", Name: "api_request_duration_seconds",
			Help:    "C2 API request latency by protocol and method (an event stream counts its whole life).",
			Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
		}, []string{"protocol", "method"}),
	}
}

// Describe implements prometheus.Collector.
func (a *API) Describe(ch chan<- *prometheus.Desc) {
	a.requests.Describe(ch)
	a.duration.Describe(ch)
}

// Collect implements prometheus.Collector.
func (a *API) Collect(ch chan<- prometheus.Metric) {
	a.requests.Collect(ch)
	a.duration.Collect(ch)
}

// Instrumentation returns the hooks for api.Config.Instrumentation.
func (a *API) Instrumentation() api.Instrumentation {
	return api.Instrumentation{Unary: a.unary, Stream: a.stream, HTTP: a.middleware, Refused: a.refused}
}

// refused counts a call refused from its headers (it took no time worth
// measuring, and its method may be anything the caller wrote).
func (a *API) refused(fullMethod string, err error) {
	a.requests.WithLabelValues("grpc", grpcMethod(fullMethod), status.Code(err).String()).Inc()
}

func (a *API) observe(protocol, method, code string, start time.Time) {
	a.requests.WithLabelValues(protocol, method, code).Inc()
	a.duration.WithLabelValues(protocol, method).Observe(time.Since(start).Seconds())
}

func (a *API) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := handler(ctx, req)
	a.observe("grpc", grpcMethod(info.FullMethod), status.Code(err).String(), start)
	return resp, err
}

func (a *API) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start := time.Now()
	err := handler(srv, ss)
	a.observe("grpc", grpcMethod(info.FullMethod), status.Code(err).String(), start)
	return err
}

// c2Methods are the methods of the C2 service, by full name.
var c2Methods = func() map[string]string {
	desc := c2pb.C2_ServiceDesc
	m := make(map[string]string, len(desc.Methods)+len(desc.Streams))
	for _, md := range desc.Methods {
		m["/"+desc.ServiceName+"/"+md.MethodName] = md.MethodName
	}
	for _, sd := range desc.Streams {
		m["/"+desc.ServiceName+"/"+sd.StreamName] = sd.StreamName
	}
	return m
}()

// grpcMethod shortens "/e4kit.c2.v1.C2/AddClient" to "AddClient", keeps
// the health and reflection services' methods whole
// ("grpc.health.v1.Health/Check") and makes anything else "other": a
// refused caller may name any method.
func grpcMethod(full string) string {
	if m, ok := c2Methods[full]; ok {
		return m
	}
	switch full {
	case "/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch", "/grpc.health.v1.Health/List",
		"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
		"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo":
		return strings.TrimPrefix(full, "/")
	}
	return "other"
}

func (a *API) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		r, route := api.TrackRoute(r)
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(rec, r)
		method := route()
		if method == "" {
			method = "other"
		}
		a.observe("http", method, strconv.Itoa(rec.code), start)
	})
}

// statusRecorder remembers the status of a response. It keeps Flush (for
// event streams) and Unwrap (for http.ResponseController).
type statusRecorder struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (s *statusRecorder) WriteHeader(code int) {
	if !s.wrote {
		s.code, s.wrote = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	s.wrote = true
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Flush() {
	s.wrote = true
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

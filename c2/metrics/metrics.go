// Package metrics exposes the operation of a C2 server to Prometheus and
// to health probes: the outbox and its dispatcher, device convergence,
// the API, the database and the broker connection, and the /healthz and
// /readyz probes with the readiness the gRPC health service follows.
//
// Counters that C2 already keeps (the dispatcher's, the fleet counts of
// the database) are read when Prometheus scrapes, not counted twice; what
// C2 does not keep (latencies, API calls) is measured by wrappers around
// the store, the transport and the API. Every label takes a bounded set
// of values: never a client id, a topic or a caller.
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every metric of this package.
const Namespace = "e4"

// Registry is one Prometheus registry: the Go runtime and process
// collectors, the build information, and whatever else is registered.
type Registry struct {
	reg *prometheus.Registry
}

// NewRegistry returns a registry with the Go runtime and process
// collectors and e4_build_info{version}.
func NewRegistry(version string) *Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "build_info",
			Help:        "Always 1; the version label says which e4kit runs.",
			ConstLabels: prometheus.Labels{"version": version},
		}, func() float64 { return 1 }),
	)
	return &Registry{reg: reg}
}

// Register adds collectors (another component's, such as the monitor's).
// It fails if one of them describes a metric already registered.
func (r *Registry) Register(cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := r.reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// Prometheus returns the underlying registry (for tests and for gathering
// without HTTP).
func (r *Registry) Prometheus() *prometheus.Registry { return r.reg }

// Handler serves the registry in the Prometheus exposition formats. A
// collector that fails leaves its metrics out and is reported in the
// log-less error counter promhttp keeps; the other metrics are served.
func (r *Registry) Handler() http.Handler {
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError,
		Registry:            r.reg,
		MaxRequestsInFlight: 4,
	})
}

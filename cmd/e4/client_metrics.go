package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/e4-iot/e4kit/c2/metrics"
	"github.com/e4-iot/e4kit/internal/version"
	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/e4transport"
)

// clientMetricsHelp ends the help of "e4 client".
const clientMetricsHelp = `

With --metrics-addr HOST:PORT it serves Prometheus metrics at /metrics there
(plain HTTP, no credentials: bind it to loopback or a private network):
e4_client_messages_received_total, e4_client_messages_published_total,
e4_client_messages_dropped_total, e4_client_commands_applied_total,
e4_client_sync_requests_total, e4_client_broker_connected and
e4_client_broker_connection_losses_total.`

// clientCollectors are the metrics of a running "e4 client": counters the
// Protected transport and the printer keep, read at scrape, and the
// broker connection state.
func clientCollectors(p *e4transport.Protected, out *eventPrinter) []prometheus.Collector {
	counter := func(name, help string, f func() uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "e4", Subsystem: "client", Name: name, Help: help},
			func() float64 { return float64(f()) })
	}
	connected := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "e4", Subsystem: "client", Name: "broker_connected",
		Help: "1 while the client is connected to its broker, 0 while it is not."})
	losses := prometheus.NewCounter(prometheus.CounterOpts{Namespace: "e4", Subsystem: "client", Name: "broker_connection_losses_total",
		Help: "Times the client lost (or failed to make) its broker connection."})
	connected.Set(1) // Protect returned: subscribed, so connected, unless an event says otherwise
	p.NotifyConnection(func(ev transport.ConnectionEvent) {
		if ev.State == transport.Connected {
			connected.Set(1)
			return
		}
		connected.Set(0)
		losses.Inc()
	})
	return []prometheus.Collector{
		counter("messages_received_total", "Messages received and decrypted on the subscriptions.", out.received.Load),
		counter("messages_published_total", "Lines of stdin published protected.", out.published.Load),
		counter("messages_dropped_total", "Messages received that could not be unprotected (no key, tampered, replayed, too old).", p.Dropped),
		counter("commands_applied_total", "Commands from C2 applied.", p.Commands),
		counter("sync_requests_total", "Sync requests published.", p.SyncRequests),
		connected, losses,
	}
}

// serveClientMetrics serves the client's metrics on addr until ctx ends;
// the returned function stops the listener.
func serveClientMetrics(ctx context.Context, addr string, p *e4transport.Protected, out *eventPrinter) (stop func(), err error) {
	reg := metrics.NewRegistry(version.String())
	if err := reg.Register(clientCollectors(p, out)...); err != nil {
		return nil, err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET "+metrics.MetricsPath, reg.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	out.notice("metrics on http://%s%s", ln.Addr(), metrics.MetricsPath)
	return func() {
		shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutCtx)
	}, nil
}

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/c2/monitor"
	"github.com/e4-iot/e4kit/transport"
)

// The monitor of "e4 c2 serve" (package c2/monitor): flags, configuration
// and wiring, kept apart from c2serve.go.

// monitorSettings is the "monitor" section of the serve configuration.
type monitorSettings struct {
	// Enabled runs the monitor (--monitor, E4_C2_MONITOR_ENABLED).
	Enabled bool `yaml:"enabled"`
	// Topics are the filters it subscribes to (default "#": every topic;
	// messages on topics C2 does not manage are ignored).
	Topics []string `yaml:"topics"`
}

// monitorFlags are the flags of the monitor.
type monitorFlags struct {
	enabled bool
	topics  []string
}

const serveMonitorHelp = `

--monitor makes C2 subscribe to the topics it manages (--monitor-topics
filters, default "#") and classify every message: valid, previous_key,
auth_failed, replay, too_old, future, not_e4, unknown_signer. It keeps
counters only, never a payload; read them with "e4 c2 monitor stats" and
"e4 c2 monitor top", and anomalies appear on the event stream.`

func (f *monitorFlags) register(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&f.enabled, "monitor", false, "watch the messages on C2's topics and count anomalies (needs --transport)")
	cmd.Flags().StringSliceVar(&f.topics, "monitor-topics", nil, `topic filters the monitor watches, comma-separated (default "#"; implies --monitor)`)
}

func (f *monitorFlags) apply(cmd *cobra.Command, cfg *serveConfig) {
	if cmd.Flags().Changed("monitor") {
		cfg.Monitor.Enabled = f.enabled
	}
	if cmd.Flags().Changed("monitor-topics") {
		cfg.Monitor.Topics, cfg.Monitor.Enabled = f.topics, true
	}
}

// monitorWiring runs the monitor beside the service, if configured. Its
// zero value (monitor off) does nothing.
type monitorWiring struct {
	settings monitorSettings
	mu       sync.Mutex
	mon      *monitor.Monitor
	cancel   context.CancelFunc
	done     chan struct{}
}

func newMonitorWiring(s monitorSettings) *monitorWiring { return &monitorWiring{settings: s} }

// onEvent returns the service's event callback: next, then the monitor,
// which reads the keys of a rotated topic at once.
func (w *monitorWiring) onEvent(next func(c2.Event)) func(c2.Event) {
	if !w.settings.Enabled {
		return next
	}
	return func(e c2.Event) {
		next(e)
		w.mu.Lock()
		m := w.mon
		w.mu.Unlock()
		if m != nil {
			m.Notify(e)
		}
	}
}

// start runs the monitor until ctx ends or stop.
func (w *monitorWiring) start(ctx context.Context, svc *c2.Service, tr transport.Transport, log *slog.Logger) error {
	if !w.settings.Enabled {
		return nil
	}
	if tr == nil {
		return errors.New("--monitor needs a broker to watch: give --transport")
	}
	var filters []string
	for _, t := range w.settings.Topics {
		if t = strings.TrimSpace(t); t != "" {
			filters = append(filters, t)
		}
	}
	m, err := monitor.New(monitor.Config{Service: svc, Transport: tr, Filters: filters, Logger: log})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	w.mu.Lock()
	w.mon, w.cancel, w.done = m, cancel, make(chan struct{})
	w.mu.Unlock()
	svc.SetMonitor(m)
	go func() {
		defer close(w.done)
		if err := m.Run(ctx); err != nil {
			log.Error("monitor stopped", "err", err)
		}
	}()
	return nil
}

// warnBudgetsUncounted warns when a policy has a message budget and the
// monitor, which counts the messages, is off: this C2 adds nothing to the
// counts (another replica started with --monitor may).
func (w *monitorWiring) warnBudgetsUncounted(ctx context.Context, svc *c2.Service, log *slog.Logger) error {
	if w.settings.Enabled {
		return nil
	}
	has, err := svc.HasMessageBudgets(ctx)
	if err != nil {
		return fmt.Errorf("looking for message-budget policies: %w", err)
	}
	if has {
		log.Warn("a rotation policy has a message budget (--max-messages) but the monitor is off: " +
			"this C2 counts no message, so those topics rotate by their budget only if another replica runs with --monitor")
	}
	return nil
}

// stop stops the monitor and waits for it.
func (w *monitorWiring) stop() {
	w.mu.Lock()
	cancel, done := w.cancel, w.done
	w.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// collectors returns the Prometheus collectors of the monitor to register
// on the server's /metrics registry: none when the monitor is off. Call it
// after start.
func (w *monitorWiring) collectors() []prometheus.Collector {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.mon == nil {
		return nil
	}
	return []prometheus.Collector{w.mon.Collector()}
}

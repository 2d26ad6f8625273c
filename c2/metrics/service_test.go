package metrics_test

import (
	"context"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/c2"
	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/internal/testbroker"
	"github.com/e4-iot/e4kit/transport"
	"github.com/e4-iot/e4kit/transport/e4transport"
	"github.com/e4-iot/e4kit/transport/mqtt"
)

// TestCommandMovesCounters: over Mosquitto, a device joining a topic
// moves the dispatch, event, publish and database metrics; a rotation the
// device acknowledges is measured as converged; a command published while
// the broker is down counts a retry and a publish error and is logged at
// debug level, and the outbox depth shows it pending until it goes out.
func TestCommandMovesCounters(t *testing.T) {
	m := testbroker.StartMosquitto(t, nil)
	logs := &logBuffer{}
	h := newHarness(t, m.URL(), nil, func(cfg *c2.Config) {
		cfg.Logger = logs.logger()
		cfg.Dispatch.PublishTimeout = 300 * time.Millisecond
		cfg.Dispatch.RepairInterval = 50 * time.Millisecond
	})
	reg := h.reg.Prometheus()
	ctx := context.Background()
	sent := map[string]string{"result": "sent"}
	if v, ok := value(t, reg, "e4_c2_dispatch_commands_total", sent); !ok || v != 0 {
		t.Fatalf("sent before any command: %v (present %v)", v, ok)
	}

	dev, err := h.svc.AddClient(ctx, c2.NewClient{Name: "thermostat"})
	if err != nil {
		t.Fatal(err)
	}
	device := attachDevice(t, m.URL(), dev.ID, dev.Key)
	if _, err := h.svc.AddTopic(ctx, "plant/temp"); err != nil {
		t.Fatal(err)
	}
	if err := h.svc.AddMember(ctx, "plant/temp", dev.ID); err != nil {
		t.Fatal(err)
	}
	waitValue(t, reg, "e4_c2_dispatch_commands_total", sent, func(v float64) bool { return v >= 1 })
	waitValue(t, reg, "e4_c2_events_total", map[string]string{"kind": "command_sent"}, func(v float64) bool { return v >= 1 })
	waitValue(t, reg, "e4_c2_publish_duration_seconds", map[string]string{"kind": "command"}, func(v float64) bool { return v >= 1 })
	waitValue(t, reg, "e4_c2_acks_total", map[string]string{"result": "matched"}, func(v float64) bool { return v >= 1 })
	for _, op := range []string{"claim", "mark_sent", "update"} {
		if v, _ := value(t, reg, "e4_c2_db_operation_duration_seconds", map[string]string{"op": op}); v < 1 {
			t.Fatalf("database operation %s timed %v times", op, v)
		}
	}
	// The database counts are read at most once a second.
	waitValue(t, reg, "e4_c2_clients", nil, func(v float64) bool { return v == 1 })
	if v, _ := value(t, reg, "e4_c2_state_query_up", nil); v != 1 {
		t.Fatalf("e4_c2_state_query_up = %v", v)
	}

	// A rotation the device acknowledges converges, and is measured.
	if _, err := h.svc.RotateTopic(ctx, "plant/temp"); err != nil {
		t.Fatal(err)
	}
	waitValue(t, reg, "e4_c2_topic_convergence_seconds", nil, func(v float64) bool { return v == 1 })
	waitValue(t, reg, "e4_c2_memberships_behind", nil, func(v float64) bool { return v == 0 })
	device.Close()

	// With the broker down, the next command fails, is retried, and waits.
	m.Stop()
	waitValue(t, reg, "e4_c2_broker_connected", nil, func(v float64) bool { return v == 0 })
	if _, err := h.svc.RotateTopic(ctx, "plant/temp"); err != nil {
		t.Fatal(err)
	}
	waitValue(t, reg, "e4_c2_dispatch_commands_total", map[string]string{"result": "retried"}, func(v float64) bool { return v >= 1 })
	waitValue(t, reg, "e4_c2_publish_errors_total", map[string]string{"kind": "command"}, func(v float64) bool { return v >= 1 })
	waitValue(t, reg, "e4_c2_outbox_commands", map[string]string{"state": "pending"}, func(v float64) bool { return v == 1 })
	waitValue(t, reg, "e4_c2_memberships_behind", nil, func(v float64) bool { return v == 1 })
	if logs.count("publish failed; the command will be sent again") == 0 {
		t.Fatalf("no debug line for the retry:\n%s", logs)
	}
	startCtx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	if err := m.Start(startCtx); err != nil {
		t.Fatal(err)
	}
	waitValue(t, reg, "e4_c2_outbox_commands", map[string]string{"state": "pending"}, func(v float64) bool { return v == 0 })
}

// TestClaimFailureLoggedOnce: while the database is gone the dispatcher
// fails to claim commands at every poll, and says so once.
func TestClaimFailureLoggedOnce(t *testing.T) {
	m := testbroker.StartMosquitto(t, nil)
	logs := &logBuffer{}
	h := newHarness(t, m.URL(), nil, func(cfg *c2.Config) { cfg.Logger = logs.logger() })
	reg := h.reg.Prometheus()
	claims := map[string]string{"op": "claim"}
	if err := h.raw.Close(); err != nil {
		t.Fatal(err)
	}
	// Both read after the close: claims failing in between count in both.
	errorsBefore, _ := value(t, reg, "e4_c2_db_errors_total", claims)
	timedBefore, _ := value(t, reg, "e4_c2_db_operation_duration_seconds", claims)
	waitValue(t, reg, "e4_c2_db_errors_total", claims, func(v float64) bool { return v >= errorsBefore+10 })
	waitValue(t, reg, "e4_c2_db_operation_duration_seconds", claims, func(v float64) bool { return v >= timedBefore+10 })
	if n := logs.count(`msg="claiming outbox commands`); n != 1 {
		t.Fatalf("the claim failure logged %d times over 10 polls, want once:\n%s", n, logs)
	}
}

// attachDevice runs an E4 device (acknowledging C2's commands) on its own
// connection to the broker.
func attachDevice(t *testing.T, brokerURL string, id e4.ID, key []byte) transport.Transport {
	t.Helper()
	ctx := context.Background()
	tr, err := mqtt.Dial(ctx, mqtt.Config{Brokers: []string{brokerURL}})
	if err != nil {
		t.Fatal(err)
	}
	client, err := e4.NewSymKeyClient(id, key, &e4.Config{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := e4transport.Protect(ctx, tr, client, nil)
	if err != nil {
		tr.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

package metrics_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/e4-iot/e4kit/c2/metrics"
)

// deployDir holds the shipped alert rules and dashboard.
var deployDir = filepath.Join("..", "..", "deploy")

// The monitor's metrics, as agreed with the monitor (c2/monitor): a
// counter by result and a histogram of clock skew.
var (
	monitorMetrics = []string{"e4_monitor_messages_total", "e4_monitor_clock_skew_seconds"}
	monitorResults = []string{"valid", "previous_key", "auth_failed", "replay", "too_old", "future", "not_e4", "unknown_signer"}
)

// promtool runs Debian's promtool (package prometheus) in dir and fails
// the test, never skips, when it is missing or the check fails.
func promtool(t *testing.T, dir string, args ...string) {
	t.Helper()
	if _, err := exec.LookPath("promtool"); err != nil {
		t.Fatalf("promtool not found (%v): %s", err, "apt-get install prometheus (or run scripts/install-test-deps.sh as root)")
	}
	cmd := exec.Command("promtool", args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestAlertRules: the shipped rules load, their unit tests pass, and the
// example configuration that loads them is valid.
func TestAlertRules(t *testing.T) {
	dir := filepath.Join(deployDir, "prometheus")
	promtool(t, dir, "check", "rules", "e4kit-alerts.yml")
	promtool(t, dir, "test", "rules", "e4kit-alerts.test.yml")
	promtool(t, dir, "check", "config", "prometheus.example.yml")
}

// TestDeployedMetricsExist: every metric the alert rules and the Grafana
// dashboard name is one C2 exports (or the monitor's agreed names), and
// every monitor result they filter on is one the monitor counts; a renamed
// metric breaks this test instead of silently blanking a panel.
func TestDeployedMetricsExist(t *testing.T) {
	h := newHarness(t, "", nil)
	api, ready := metrics.NewAPI(), metrics.NewReadiness(metrics.ReadinessConfig{})
	if err := h.reg.Register(api, ready); err != nil {
		t.Fatal(err)
	}
	exported := describedNames(t, h.reg.Prometheus(), h.db, h.broker, h.events, api, ready)
	exported = append(exported, monitorMetrics...)
	nameRE := regexp.MustCompile(`\be4_[a-z0-9_]+`)
	resultRE := regexp.MustCompile(`e4_monitor_messages_total\{[^}]*result=~?"([^"]+)"`)
	for _, file := range []string{"prometheus/e4kit-alerts.yml", "prometheus/e4kit-alerts.test.yml", "grafana/e4kit-c2.json"} {
		data, err := os.ReadFile(filepath.Join(deployDir, file))
		if err != nil {
			t.Fatal(err)
		}
		names := nameRE.FindAllString(string(data), -1)
		if len(names) == 0 {
			t.Fatalf("%s names no metric", file)
		}
		for _, name := range names {
			if strings.HasSuffix(name, "_") {
				continue // a prefix in prose, such as e4_c2_*
			}
			base := name
			for _, suffix := range []string{"_bucket", "_count", "_sum"} {
				base = strings.TrimSuffix(base, suffix)
			}
			if !slices.Contains(exported, name) && !slices.Contains(exported, base) {
				t.Errorf("%s uses %s, which nothing exports", file, name)
			}
		}
		for _, m := range resultRE.FindAllStringSubmatch(string(data), -1) {
			for _, result := range strings.Split(m[1], "|") {
				if !slices.Contains(monitorResults, result) {
					t.Errorf("%s filters the monitor on result %q, which it does not count", file, result)
				}
			}
		}
	}
}

// describedNames lists the metric names the registry gathers and those
// the collectors describe (a vector without a child yet is described but
// not gathered).
func describedNames(t *testing.T, reg *prometheus.Registry, described ...prometheus.Collector) []string {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range families {
		names = append(names, f.GetName())
	}
	descs := make(chan *prometheus.Desc, 256)
	go func() {
		for _, c := range described {
			c.Describe(descs)
		}
		close(descs)
	}()
	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	for d := range descs {
		if m := fqName.FindStringSubmatch(d.String()); m != nil {
			names = append(names, m[1])
		}
	}
	return names
}

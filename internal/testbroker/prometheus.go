package testbroker

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// PrometheusBinary is Debian's Prometheus server (package prometheus,
// which also has promtool).
const PrometheusBinary = "prometheus"

// PrometheusInstallHint is printed when Prometheus is missing.
const PrometheusInstallHint = "apt-get install prometheus (or run scripts/install-test-deps.sh as root)"

// prometheusBootTimeout bounds one start; Prometheus answers /-/ready
// within a few seconds.
const prometheusBootTimeout = 60 * time.Second

// PrometheusOptions configures StartPrometheus.
type PrometheusOptions struct {
	// Targets are the host:port addresses scraped by the job "e4kit".
	Targets []string
	// MetricsPath is the path scraped (default /metrics).
	MetricsPath string
	// ScrapeInterval is the scrape and rule evaluation interval (1 s).
	ScrapeInterval time.Duration
	// RuleFiles are rule files loaded by the server.
	RuleFiles []string
}

// Prometheus is a Prometheus server started for a test on a free loopback
// port, with its storage in a temporary directory.
type Prometheus struct {
	port int
	proc *Process
}

// StartPrometheus starts a server scraping opts.Targets, waits until it
// is ready and stops it when the test ends. A missing binary fails the
// test.
func StartPrometheus(t testing.TB, opts PrometheusOptions) *Prometheus {
	t.Helper()
	if _, err := exec.LookPath(PrometheusBinary); err != nil {
		t.Fatalf("%s not found (%v): %s", PrometheusBinary, err, PrometheusInstallHint)
	}
	dir := t.TempDir()
	config := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(config, []byte(prometheusConfig(opts)), 0o600); err != nil {
		t.Fatal(err)
	}
	var p *Prometheus
	var err error
	for attempt := 1; ; attempt++ {
		p, err = startPrometheus(dir, config, FreePort(t, "tcp"))
		if err == nil || attempt == portAttempts || !portTaken(err) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.proc.Stop(10 * time.Second) })
	return p
}

// prometheusConfig is the configuration of one scrape job.
func prometheusConfig(opts PrometheusOptions) string {
	interval := opts.ScrapeInterval
	if interval <= 0 {
		interval = time.Second
	}
	path := opts.MetricsPath
	if path == "" {
		path = "/metrics"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "global:\n  scrape_interval: %s\n  evaluation_interval: %s\n", interval, interval)
	if len(opts.RuleFiles) > 0 {
		b.WriteString("rule_files:\n")
		for _, f := range opts.RuleFiles {
			fmt.Fprintf(&b, "  - %q\n", f)
		}
	}
	fmt.Fprintf(&b, "scrape_configs:\n  - job_name: e4kit\n    metrics_path: %q\n    static_configs:\n      - targets: [", path)
	for i, target := range opts.Targets {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q", target)
	}
	b.WriteString("]\n")
	return b.String()
}

func startPrometheus(dir, config string, port int) (*Prometheus, error) {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	data := filepath.Join(dir, "data-"+strconv.Itoa(port))
	proc := NewProcess(PrometheusBinary, []string{"--config.file=" + config, "--web.listen-address=" + addr,
		"--storage.tsdb.path=" + data, "--log.level=warn"}, nil, dir)
	if err := proc.Start(); err != nil {
		return nil, err
	}
	p := &Prometheus{port: port, proc: proc}
	ctx, cancel := context.WithTimeout(context.Background(), prometheusBootTimeout)
	defer cancel()
	if err := p.waitReady(ctx); err != nil {
		proc.Stop(5 * time.Second)
		return nil, fmt.Errorf("testbroker: Prometheus did not start: %w\n%s", err, proc.Output())
	}
	return p, nil
}

// waitReady polls /-/ready until it answers 200, the process exits or
// ctx ends.
func (p *Prometheus) waitReady(ctx context.Context) error {
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.URL()+"/-/ready", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if p.proc.Exited() {
			return fmt.Errorf("the server exited")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// URL is the server's base URL.
func (p *Prometheus) URL() string {
	return "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port))
}

// Output returns what the server logged.
func (p *Prometheus) Output() string { return p.proc.Output() }

// Sample is one element of an instant vector.
type Sample struct {
	Labels map[string]string
	Value  float64
}

// Query evaluates expr now through the HTTP query API (/api/v1/query)
// and returns the instant vector it gives.
func (p *Prometheus) Query(ctx context.Context, expr string) ([]Sample, error) {
	u := p.URL() + "/api/v1/query?" + url.Values{"query": {expr}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("prometheus query %q: %w", expr, err)
	}
	if body.Status != "success" {
		return nil, fmt.Errorf("prometheus query %q: %s", expr, body.Error)
	}
	if body.Data.ResultType != "vector" {
		return nil, fmt.Errorf("prometheus query %q: a %s, not a vector", expr, body.Data.ResultType)
	}
	out := make([]Sample, 0, len(body.Data.Result))
	for _, r := range body.Data.Result {
		text, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(text, 64)
		if err != nil {
			return nil, fmt.Errorf("prometheus query %q: value %v: %w", expr, r.Value[1], err)
		}
		out = append(out, Sample{Labels: r.Metric, Value: v})
	}
	return out, nil
}

// Rule is one loaded rule as the rules API (/api/v1/rules) reports it.
type Rule struct {
	Group, Name string
	// Health is "ok", "err" or "unknown" (not evaluated yet); LastError
	// says why it is "err".
	Health, LastError string
}

// Rules lists the loaded rules and the health of their last evaluation.
func (p *Prometheus) Rules(ctx context.Context) ([]Rule, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL()+"/api/v1/rules", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Data   struct {
			Groups []struct {
				Name  string `json:"name"`
				Rules []struct {
					Name      string `json:"name"`
					Health    string `json:"health"`
					LastError string `json:"lastError"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("prometheus rules: %w", err)
	}
	if body.Status != "success" {
		return nil, fmt.Errorf("prometheus rules: status %s", body.Status)
	}
	var out []Rule
	for _, g := range body.Data.Groups {
		for _, r := range g.Rules {
			out = append(out, Rule{Group: g.Name, Name: r.Name, Health: r.Health, LastError: r.LastError})
		}
	}
	return out, nil
}

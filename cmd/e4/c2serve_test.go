package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestServeConfigLayers: the YAML file, then E4_C2_* variables named after
// the YAML paths, each override the one before; mistakes are refused with
// the key or variable named.
func TestServeConfigLayers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c2.yaml")
	yaml := `
mode: pk
grpc:
  addr: 10.0.0.1:9443
transport:
  url: mqtt://yaml-broker
  username: c2
limits:
  rate_per_second: 5
c2:
  await_ack: 30s
tls:
  cert_scopes:
    robot: operate
`
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"E4_C2_TRANSPORT_URL=amqp://env-broker", "E4_C2_TRANSPORT_PASSWORD=s3cret", "E4_C2_LIMITS_RATE_PER_SECOND=7.5",
		"E4_C2_TLS_HOSTS=c2.example, 10.0.0.1", "E4_C2_C2_ROTATE_ON_ADD=true", "OTHER=ignored"}
	cfg, err := loadServeConfig(path, env)
	if err != nil {
		t.Fatal(err)
	}
	cfg.setDefaults()
	switch {
	case cfg.Mode != "pk", cfg.GRPC.Addr != "10.0.0.1:9443", cfg.HTTP.Addr != defaultC2HTTPAddr:
		t.Fatalf("YAML and defaults: %+v", cfg)
	case cfg.Transport.URL != "amqp://env-broker", cfg.Transport.Password != "s3cret", cfg.Transport.Username != "c2":
		t.Fatalf("transport: %+v", cfg.Transport)
	case cfg.Limits.RatePerSecond != 7.5, !cfg.C2.RotateOnAdd, cfg.C2.AwaitAck != 30*time.Second:
		t.Fatalf("limits and c2: %+v %+v", cfg.Limits, cfg.C2)
	case strings.Join(cfg.TLS.Hosts, "|") != "c2.example|10.0.0.1", cfg.TLS.CertScopes["robot"] != "operate":
		t.Fatalf("tls: %+v", cfg.TLS)
	case cfg.Store.Path != filepath.Join("c2data", "c2.db"), cfg.MasterKey.File != filepath.Join("c2data", "master.key"):
		t.Fatalf("data dir defaults: %+v %+v", cfg.Store, cfg.MasterKey)
	}

	if err := os.WriteFile(path, []byte("grpc:\n  adress: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadServeConfig(path, nil); err == nil || !strings.Contains(err.Error(), "adress") {
		t.Fatalf("misspelled key: %v", err)
	}
	if _, err := loadServeConfig("", []string{"E4_C2_LIMITS_BURST=lots"}); err == nil || !strings.Contains(err.Error(), "E4_C2_LIMITS_BURST") {
		t.Fatalf("bad variable: %v", err)
	}
	bad := &serveConfig{Mode: "quantum"}
	if _, err := bad.cryptoMode(); err == nil {
		t.Fatal("unknown mode accepted")
	}
}

// TestServeCertScopesNeedClientCA: tls.cert_scopes without
// tls.client_ca_file (or with TLS disabled) stops the start with an
// error naming both keys, instead of being silently ignored.
func TestServeCertScopesNeedClientCA(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	for _, disabled := range []bool{false, true} {
		cfg := &serveConfig{DataDir: t.TempDir()}
		cfg.TLS.CertScopes = map[string]string{"robot": "operate"}
		cfg.TLS.Disabled = disabled
		_, _, err := cfg.serverTLS(log)
		if err == nil || !strings.Contains(err.Error(), "cert_scopes") || !strings.Contains(err.Error(), "client_ca_file") {
			t.Fatalf("cert_scopes without a client CA (TLS disabled %v): %v", disabled, err)
		}
	}
}

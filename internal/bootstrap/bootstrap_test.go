package bootstrap

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/e4-iot/e4kit/c2/store/sqlite"
	"github.com/e4-iot/e4kit/internal/apitoken"
)

// TestAdminTokenOnce: the first call on an empty store writes an admin
// token (mode 0600); a second call, the store holding a token, does not.
func TestAdminTokenOnce(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "c2.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	path := filepath.Join(dir, "admin.token")
	created, err := AdminToken(ctx, st, path)
	if err != nil || !created {
		t.Fatalf("first AdminToken = %v, %v; want true, nil", created, err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %v, want 0600", info.Mode().Perm())
	}
	tok, err := ReadTokenFile(path)
	if err != nil || !strings.HasPrefix(tok, apitoken.Prefix) {
		t.Fatalf("ReadTokenFile = %q, %v; want a token", tok, err)
	}
	if created, err := AdminToken(ctx, st, filepath.Join(dir, "again.token")); err != nil || created {
		t.Fatalf("second AdminToken = %v, %v; want false, nil", created, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "again.token")); !os.IsNotExist(err) {
		t.Errorf("second AdminToken wrote a file: %v", err)
	}
}

// TestEnsureSelfSigned: the certificate loads with its key, covers the
// loopback address and the hosts given, and is kept on the next call.
func TestEnsureSelfSigned(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	certFile, keyFile, err := EnsureSelfSigned(dir, []string{"c2.example", "10.0.0.7"})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"localhost", "127.0.0.1", "c2.example", "10.0.0.7"} {
		if err := cert.VerifyHostname(host); err != nil {
			t.Errorf("certificate does not cover %s: %v", host, err)
		}
	}
	if info, err := os.Stat(keyFile); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v, %v; want mode 0600", info, err)
	}
	before, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := EnsureSelfSigned(dir, nil); err != nil {
		t.Fatal(err)
	}
	after, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	if string(before) != string(after) {
		t.Error("a second call replaced the existing certificate")
	}
}

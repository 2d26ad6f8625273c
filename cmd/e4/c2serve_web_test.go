package main

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/e4-iot/e4kit/c2/api"
	"github.com/e4-iot/e4kit/internal/bootstrap"
)

// TestServeMountsWebInterface: "e4 c2 serve" serves the web interface
// under /ui/ on its HTTPS listener, with its security headers, and the
// bootstrap admin token signs in.
func TestServeMountsWebInterface(t *testing.T) {
	s := startC2Serve(t)
	data := filepath.Join(s.dir, "data")
	tlsCfg, err := api.ClientTLS(filepath.Join(data, "tls", "cert.pem"), "", "", "")
	if err != nil {
		t.Fatal(err)
	}
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, Transport: &http.Transport{TLSClientConfig: tlsCfg}}
	base := "https://" + s.http
	resp, err := client.Get(base + "/ui/signin")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'self'") {
		t.Fatalf("sign-in page: %d, CSP %q", resp.StatusCode, resp.Header.Get("Content-Security-Policy"))
	}
	u, _ := url.Parse(base)
	var pre string
	for _, c := range jar.Cookies(u) {
		if strings.HasSuffix(c.Name, "-signin") {
			pre = c.Value
		}
	}
	token, err := bootstrap.ReadTokenFile(filepath.Join(data, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err = client.PostForm(base+"/ui/signin", url.Values{"token": {token}, "pre": {pre}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/ui/" || !strings.Contains(string(body), "Dashboard") {
		t.Fatalf("signed in: %d at %s", resp.StatusCode, resp.Request.URL)
	}
	// The API beside it still wants its bearer token.
	resp, err = client.Get(base + "/v1/clients")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the API with only a web session: %d, want 401", resp.StatusCode)
	}
	s.stop()
	if !strings.Contains(s.output.String(), "web interface listening") {
		t.Errorf("the log does not give the web interface's address:\n%s", s.output.String())
	}
}

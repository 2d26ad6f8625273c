package devenv

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/e4-iot/e4kit/internal/testutil"
)

var signInLink = regexp.MustCompile(`https://[0-9.:]+/ui/signin\?code=[A-Za-z0-9_-]+`)

// TestDevPrintsSignInLink: "e4 dev" prints the web interface's address
// with a one-time link that signs a browser in as admin, once.
func TestDevPrintsSignInLink(t *testing.T) {
	out := &testutil.Buffer{}
	done := make(chan error, 1)
	go func() {
		_, err := Run(context.Background(), Options{Duration: 2 * time.Second, Dir: t.TempDir(), BrokerAddr: "127.0.0.1:0", GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
			PublishEvery: 100 * time.Millisecond, RotateEvery: time.Hour, RemoveAfter: 3}, out)
		done <- err
	}()
	defer func() {
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	waitCtx, cancelWait := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelWait()
	written, _ := out.WaitFor(waitCtx, signInLink.MatchString) // a timeout leaves no link: reported below
	link := signInLink.FindString(written)
	if link == "" || !strings.Contains(written, "C2 web    https://") {
		t.Fatalf("no sign-in link in the output:\n%s", out.String())
	}
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} // the dev certificate is self-signed
	u, _ := url.Parse(link)
	var pre string
	code := u.Query().Get("code")
	signIn := func() *http.Response {
		form, err := client.Get(link) // a fresh form
		if err != nil {
			t.Fatal(err)
		}
		form.Body.Close()
		for _, c := range jar.Cookies(u) {
			if strings.HasSuffix(c.Name, "-signin") {
				pre = c.Value
			}
		}
		resp, err := client.PostForm(u.Scheme+"://"+u.Host+"/ui/signin", url.Values{"code": {code}, "pre": {pre}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := signIn(); resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/ui/" {
		t.Fatalf("signing in with the link: %d at %s", resp.StatusCode, resp.Request.URL)
	}
	if resp := signIn(); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the link worked twice: %d", resp.StatusCode)
	}
}

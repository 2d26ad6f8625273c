package web

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// tab drives one headless Chromium tab against a test C2 and keeps a
// screenshot of each step.
type tab struct {
	t     *testing.T
	ctx   context.Context
	base  string
	shots string
	n     int

	mu      sync.Mutex
	alerts  []string // alert dialogs: a script ran that should not have
	errors  []string // uncaught JavaScript exceptions
	confirm bool     // the answer to confirmation dialogs
}

// artifactsDir is where screenshots go: $E4KIT_ARTIFACTS/web/<test> when
// set (CI keeps it), else the test's temporary folder.
func artifactsDir(t *testing.T) string {
	dir := t.TempDir()
	if root := os.Getenv("E4KIT_ARTIFACTS"); root != "" {
		dir = filepath.Join(root, "web", t.Name())
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// newTab starts headless Chromium (Debian's chromium package; its absence
// fails the test) and opens a tab.
func newTab(t *testing.T, base string) *tab {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("headless Chromium is needed for the web interface's tests: install Debian's chromium (scripts/install-test-deps.sh)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.IgnoreCertErrors, chromedp.WindowSize(1280, 900), chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true))
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(alloc)
	ctx, cancelTimeout := context.WithTimeout(ctx, 4*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	tb := &tab{t: t, ctx: ctx, base: base, shots: artifactsDir(t), confirm: true}
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("starting Chromium: %v", err)
	}
	dialogs := chromedp.Events(ctx, cdppage.JavascriptDialogOpening)
	exceptions := chromedp.Events(ctx, runtime.ExceptionThrown)
	go func() {
		for ev, err := range dialogs {
			if err != nil {
				return
			}
			tb.mu.Lock()
			accept := tb.confirm
			if ev.Type == cdppage.DialogTypeAlert {
				tb.alerts = append(tb.alerts, ev.Message)
			}
			tb.mu.Unlock()
			_, _ = chromedp.Call(ctx, cdppage.HandleJavaScriptDialog, cdppage.HandleJavaScriptDialogParams{Accept: accept})
		}
	}()
	go func() {
		for ev, err := range exceptions {
			if err != nil {
				return
			}
			tb.mu.Lock()
			tb.errors = append(tb.errors, ev.ExceptionDetails.Text)
			tb.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		tb.mu.Lock()
		defer tb.mu.Unlock()
		if len(tb.alerts) > 0 {
			t.Errorf("alert dialogs opened (a script ran): %q", tb.alerts)
		}
		if len(tb.errors) > 0 {
			t.Errorf("JavaScript exceptions: %q", tb.errors)
		}
		t.Logf("screenshots in %s", tb.shots)
	})
	return tb
}

func (b *tab) do(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		b.t.Fatalf("browser: %v", err)
	}
}

// open loads a page and waits for it.
func (b *tab) open(path string) {
	b.t.Helper()
	b.do(chromedp.Navigate(b.base+path), chromedp.WaitReady(chromedp.CSS("body")))
}

// text is the text of the first element matching sel.
func (b *tab) text(sel string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

// has reports whether an element matches sel now.
func (b *tab) has(sel string) bool {
	b.t.Helper()
	return b.eval(fmt.Sprintf("document.querySelector(%q) !== null", sel))
}

func (b *tab) eval(expr string) bool {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// shot saves a full-page screenshot.
func (b *tab) shot(name string) {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot: %v", err)
	}
	b.n++
	if err := os.WriteFile(filepath.Join(b.shots, fmt.Sprintf("%02d-%s.png", b.n, name)), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// submit fills the fields of the form matching form (by input name) and
// clicks its button, then waits for the page the form leads to.
func (b *tab) submit(form string, fields map[string]string) {
	b.t.Helper()
	var actions []chromedp.Action[chromedp.Void]
	for name, v := range fields {
		actions = append(actions, chromedp.SetValue(chromedp.CSS(fmt.Sprintf("%s [name=%q]", form, name)), v))
	}
	b.do(actions...)
	b.clickAndWait(form + " button")
}

// clickAndWait clicks and waits until another page is loaded.
func (b *tab) clickAndWait(sel string) {
	b.t.Helper()
	b.do(chromedp.Evaluate[chromedp.Void]("window.__stale = true"), chromedp.Click(chromedp.CSS(sel)))
	b.waitFor(`!window.__stale && document.readyState === "complete"`)
}

// waitFor polls a JavaScript predicate across navigations.
func (b *tab) waitFor(expr string) {
	b.t.Helper()
	for range 1500 {
		if v, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](expr)); err == nil && v {
			return
		}
		waitABit()
	}
	b.t.Fatalf("waited in vain for %s on %s", expr, b.location())
}

// waitText reloads the page until the element's text contains want.
func (b *tab) waitText(path, sel, want string) {
	b.t.Helper()
	for range 300 {
		b.open(path)
		if b.has(sel) && strings.Contains(b.text(sel), want) {
			return
		}
		waitABit()
	}
	b.t.Fatalf("%s: %s never showed %q", path, sel, want)
}

func (b *tab) location() string {
	loc, _ := chromedp.Run(b.ctx, chromedp.Location())
	return loc
}

// signIn signs in with a token through the form.
func (b *tab) signIn(token string) {
	b.t.Helper()
	b.open("/ui/signin")
	b.submit("#signin-form", map[string]string{"token": token})
	if !b.has("#count-clients") {
		b.t.Fatalf("signing in did not lead to the dashboard: %s", b.location())
	}
}

// flash is the message the last change left.
func (b *tab) flash() string {
	if !b.has(".flash") {
		return ""
	}
	return b.text(".flash")
}

// expectFlash fails the test unless the page's message contains want.
func (b *tab) expectFlash(want string) {
	b.t.Helper()
	if got := b.flash(); !strings.Contains(got, want) {
		b.t.Fatalf("wanted the message %q, the page (%s) shows: %s", want, b.location(), b.text("main"))
	}
}

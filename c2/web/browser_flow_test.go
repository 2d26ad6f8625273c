package web

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/internal/testdevice"
)

// TestBrowserSymmetricKey drives every page and action of an SK
// deployment in headless Chromium, against a real C2 on SQLite over
// Mosquitto with an acknowledging device.
func TestBrowserSymmetricKey(t *testing.T) {
	c := startC2(t, e4.SymKey)
	ctx := context.Background()
	b := newTab(t, c.base)

	// The one-time link signs in (the script submits its form).
	link, err := c.gui.SignInLink(ctx, c.base, c.admin)
	if err != nil {
		t.Fatal(err)
	}
	b.do(chromedp.Navigate(link))
	b.waitFor(`document.getElementById("count-clients") !== null`)
	// The style sheet and the script load under the strict CSP.
	if !b.eval(`getComputedStyle(document.querySelector("header.top")).backgroundColor === "rgb(20, 33, 61)"`) {
		t.Error("the style sheet did not apply")
	}
	b.shot("dashboard-empty")

	// Add a client: C2 generates its key and shows it once.
	b.open("/ui/clients")
	b.submit("#add-client", map[string]string{"name": "sensor-1"})
	key := strings.TrimSpace(b.text("#one-time-key"))
	if len(key) != 64 {
		t.Fatalf("one-time key %q", key)
	}
	b.shot("client-key-shown-once")
	keyBytes, err := hex.DecodeString(key)
	if err != nil {
		t.Fatal(err)
	}
	testdevice.StartAcking(t, c.brokerURL, "sensor-1", keyBytes)

	// A client named like a script is shown as text, and runs nothing.
	b.open("/ui/clients")
	b.submit("#add-client", map[string]string{"name": xss})
	b.open("/ui/clients")
	if !strings.Contains(b.text("#client-list"), xss) {
		t.Error("the script-like name is not shown as text")
	}
	b.shot("clients-with-script-name")

	// A topic, a member, a rotation, and convergence as the device acknowledges.
	b.open("/ui/topics")
	b.submit("#add-topic", map[string]string{"name": "plant/telemetry"})
	b.expectFlash("topic added")
	b.submit("#add-member", map[string]string{"client": "sensor-1"})
	b.clickAndWait("#rotate-form button") // confirmation accepted
	b.expectFlash("key rotated")
	topicPath := "/ui/topic?name=" + url.QueryEscape("plant/telemetry")
	b.waitText(topicPath, "#convergence", "converged")
	if v := b.text("#key-version"); v != "2" {
		t.Errorf("key version %s after one rotation", v)
	}
	b.shot("topic-converged")

	// A declined confirmation changes nothing.
	b.mu.Lock()
	b.confirm = false
	b.mu.Unlock()
	b.do(chromedp.Click(chromedp.CSS("#rotate-form button")))
	b.open(topicPath)
	if v := b.text("#key-version"); v != "2" {
		t.Errorf("a declined rotation rotated: version %s", v)
	}
	b.mu.Lock()
	b.confirm = true
	b.mu.Unlock()

	// Traffic for the monitor: a valid message and plaintext.
	wire, err := c.svc.ProtectMessage(ctx, "plant/telemetry", []byte(`{"t":21.5}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, msg := range [][]byte{wire, []byte("plaintext on a protected topic")} {
		if err := c.tr.Publish(ctx, "plant/telemetry", msg); err != nil {
			t.Fatal(err)
		}
	}

	// The dashboard: rotations with convergence, live events.
	b.open("/ui/")
	if !strings.Contains(b.text("#rotations"), "plant/telemetry") {
		t.Error("the dashboard does not list the rotation")
	}
	b.waitFor(`document.querySelector("#events[data-state=open]") !== null`)
	if _, err := c.svc.RotateTopic(ctx, "plant/telemetry"); err != nil {
		t.Fatal(err)
	}
	b.waitFor(`[...document.querySelectorAll("#events li")].some(li => li.textContent.includes("topic_key_rotated"))`)
	b.waitText("/ui/monitor", "#monitor-total", "2 messages")
	b.shot("monitor")
	b.open("/ui/")
	b.waitFor(`document.querySelector("#events[data-state=open]") !== null`)
	if _, err := c.svc.RotateTopic(ctx, "plant/telemetry"); err != nil {
		t.Fatal(err)
	}
	b.waitFor(`document.querySelectorAll("#events li").length > 0`)
	b.shot("dashboard-live")

	// The client's page: desired against acknowledged, and its commands.
	id := e4.IDFromName("sensor-1")
	clientPath := "/ui/client?id=" + id.String()
	b.waitText(clientPath, "#client-topics", "current")
	if !strings.Contains(b.text("#client-commands"), "SetTopicKey") {
		t.Error("no SetTopicKey in the command history")
	}
	b.shot("client-detail")
	b.submit("#ack-form", map[string]string{"mode": "yes"})
	b.expectFlash("yes")
	b.clickAndWait("#rekey-form button")
	if k := strings.TrimSpace(b.text("#one-time-key")); len(k) != 64 || k == key {
		t.Fatalf("re-key shows %q", k)
	}
	b.shot("rekey-shown-once")

	// Search and keyset pages.
	b.open("/ui/clients?q=sensor-1")
	if !strings.Contains(b.text("#client-list"), id.String()) {
		t.Error("search by name")
	}
	b.open("/ui/clients?q=" + id.String()[:6])
	if !strings.Contains(b.text("#client-list"), id.String()) {
		t.Error("search by id prefix")
	}
	b.shot("client-search")

	// Import a CSV with progress, then the generated keys once.
	csvFile := filepath.Join(t.TempDir(), "fleet.csv")
	var sb strings.Builder
	sb.WriteString("name\n")
	for i := range 300 {
		fmt.Fprintf(&sb, "imported-%03d\n", i)
	}
	if err := os.WriteFile(csvFile, []byte(sb.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	b.open("/ui/clients")
	b.do(chromedp.SetUploadFiles(chromedp.CSS("#import-file"), []string{csvFile}))
	b.clickAndWait("#import-form button")
	b.waitFor(`document.getElementById("import-state") !== null && document.getElementById("import-state").textContent.includes("Finished")`)
	if !b.has("#keys-form") || !strings.Contains(b.text("#import"), "300 of 300") {
		t.Errorf("import page: %s", b.text("main"))
	}
	b.shot("import-finished")

	browsePolicies(t, b, topicPath)

	// Membership removal, reset and removal of a client.
	b.open(topicPath)
	b.clickAndWait("#members form button")
	b.expectFlash("member removed")
	// Reset and removal on a client without a device (see the report:
	// an acknowledging device refused a ResetTopics sent during its
	// client-key change as older than its state).
	b.open("/ui/client?id=" + e4.IDFromName("imported-000").String())
	b.clickAndWait("#reset-form button")
	b.expectFlash("reset")
	b.clickAndWait("#remove-form button")
	b.expectFlash("removed")
	b.open(topicPath)
	b.clickAndWait("#remove-topic-form button")
	b.expectFlash("topic removed")

	// Admin pages: the audit log with a filter, tokens.
	b.open("/ui/audit?action=AddClient")
	if got := b.text("#audit"); !strings.Contains(got, "sensor-1") || strings.Contains(got, "RotateTopic") {
		t.Errorf("filtered audit log: %s", got)
	}
	b.shot("audit-filtered")
	b.open("/ui/tokens")
	b.submit("#create-token", map[string]string{"name": "ci-reader", "scope": "read"})
	secret := strings.TrimSpace(b.text("#one-time-token"))
	if !strings.HasPrefix(secret, "e4c2_") {
		t.Fatalf("token shown: %q", secret)
	}
	b.shot("token-shown-once")
	b.open("/ui/tokens")
	b.clickAndWait("#revoke-ops")
	b.expectFlash("revoked")
	b.shot("tokens")
	b.open("/ui/pk")
	if !b.has("#pk-off") {
		t.Error("the PK page in SK mode")
	}

	// A read token: sees, changes nothing, no admin page.
	b.clickAndWait(".who button")
	b.signIn(secret)
	b.open("/ui/clients")
	if b.has("#add-client") || b.has("#import-form") {
		t.Error("a read session is offered changes")
	}
	b.open("/ui/tokens")
	if !strings.Contains(b.text("#error"), "admin role") {
		t.Errorf("tokens page for a read session: %s", b.text("main"))
	}
	b.shot("read-role-forbidden")
	// Revoking its token ends the session at the next request.
	if err := c.srv.Access().RevokeToken(ctx, c.adminCaller, "test", "ci-reader"); err != nil {
		t.Fatal(err)
	}
	b.open("/ui/clients")
	if !b.has("#signin-form") {
		t.Errorf("a revoked token's session still shows %s", b.location())
	}
	b.shot("signed-out-after-revocation")
}

// TestBrowserPublicKey drives the public-key pages: clients added with
// their public keys, links, public keys sent and removed, C2's key.
func TestBrowserPublicKey(t *testing.T) {
	c := startC2(t, e4.PubKey)
	b := newTab(t, c.base)
	b.signIn(c.admin)
	for _, name := range []string{"pk-a", "pk-b"} {
		pub, _, _ := ed25519.GenerateKey(rand.Reader)
		b.open("/ui/clients")
		b.submit("#add-client", map[string]string{"name": name, "public_key": hex.EncodeToString(pub)})
		b.expectFlash("client added")
	}
	b.open("/ui/pk")
	if !strings.HasPrefix(b.text("#c2-key"), "C2 public key") || !strings.Contains(b.text("#c2-key"), "SHA256:") {
		t.Errorf("C2 key: %s", b.text("#c2-key"))
	}
	steps := []struct{ form, flash string }{
		{"#link-form", "linked"}, {"#unlink-form", "unlinked"}, {"#send-form", "public key sent"}, {"#remove-form", "removal sent"},
	}
	for _, s := range steps {
		b.open("/ui/pk")
		b.submit(s.form, map[string]string{"source": "pk-a", "target": "pk-b"})
		b.expectFlash(s.flash)
	}
	b.open("/ui/pk")
	b.submit("#link-form", map[string]string{"source": "pk-a", "target": "pk-b"})
	if !strings.Contains(b.text("#link-targets"), e4.IDFromName("pk-b").String()) {
		t.Errorf("links of pk-a: %s", b.text("#link-targets"))
	}
	b.shot("pk-links")
	for _, form := range []string{"#reset-form", "#signer-form"} {
		b.open("/ui/pk")
		b.submit(form, map[string]string{"target": "pk-b"})
		b.expectFlash("sent")
	}
	b.open("/ui/pk")
	b.clickAndWait("#rotate-c2")
	b.expectFlash("SetC2Key queued for 2 clients")
	b.shot("pk-c2-rotated")
	// A re-key in PK mode takes the device's new public key.
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	b.open("/ui/client?id=" + e4.IDFromName("pk-a").String())
	b.submit("#rekey-form", map[string]string{"public_key": hex.EncodeToString(pub)})
	b.expectFlash("new public key")
	b.shot("pk-client")
	// Public keys are named by fingerprint, never shown.
	html, err := chromedp.Run(b.ctx, chromedp.OuterHTML(chromedp.CSS("html")))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(html, hex.EncodeToString(pub)) || !strings.Contains(html, fingerprint(pub)) {
		t.Error("the client page shows the public key, or not its fingerprint")
	}
}

// browsePolicies adds a weekly policy on plant/telemetry through the
// form (after a refused one), sees it listed, in the week's preview and
// on the topic page, then pauses, resumes and removes it.
func browsePolicies(t *testing.T, b *tab, topicPath string) {
	t.Helper()
	name := "weekly-" + xss
	fields := map[string]string{"name": name, "pattern": "plant/telemetry", "span": "1w", "jitter": "4d"}
	b.open("/ui/policies")
	b.submit("#add-policy", fields)
	if !b.has("#policy-error") || !strings.Contains(b.text("#policy-error"), "jitter at most half") {
		t.Fatalf("a refused policy: %s", b.text("main"))
	}
	b.shot("policy-refused")
	b.submit("#add-policy", map[string]string{"jitter": "1h"}) // the form kept the rest
	b.expectFlash("added")
	if got := b.text("#policies"); !strings.Contains(got, name) || !strings.Contains(got, "every 1w") || !strings.Contains(got, "±1h") {
		t.Errorf("policies listed: %s", got)
	}
	b.shot("policies")
	b.open("/ui/rotations?within=1w")
	if got := b.text("#preview"); !strings.Contains(got, "plant/telemetry") || !strings.Contains(got, name) {
		t.Errorf("the week's preview: %s", got)
	}
	b.shot("rotations-preview")
	b.open(topicPath)
	if got := b.text("#rotation-policy"); !strings.Contains(got, name) || !strings.Contains(got, "next due") {
		t.Errorf("the topic's policy row: %s", got)
	}
	b.shot("topic-policy")
	b.open("/ui/policies")
	b.submit(".policy form.pause", map[string]string{"reason": "firmware freeze"})
	b.expectFlash("paused")
	if got := b.text(".policy td.state"); !strings.Contains(got, "paused") || !strings.Contains(got, "firmware freeze") {
		t.Errorf("paused policy: %s", got)
	}
	b.shot("policy-paused")
	b.open("/ui/rotations?within=1w")
	if got := b.text("#preview"); strings.Contains(got, "plant/telemetry") {
		t.Errorf("a paused policy in the preview: %s", got)
	}
	b.open("/ui/policies")
	b.clickAndWait(".policy form.resume button")
	b.expectFlash("resumed")
	if got := b.text(".policy td.state"); !strings.Contains(got, "running") {
		t.Errorf("resumed policy: %s", got)
	}
	b.clickAndWait(".policy form.remove button") // confirmation accepted
	b.expectFlash("removed")
	if got := b.text("#policies"); !strings.Contains(got, "No policy") {
		t.Errorf("after removal: %s", got)
	}
}

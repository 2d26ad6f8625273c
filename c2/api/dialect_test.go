package api_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/e4-iot/e4kit/e4"
	"github.com/e4-iot/e4kit/internal/testdevice"
)

// TestHTTPHexKeys: the JSON API takes and gives keys, hashes and payloads
// in hex, as the CLI and the files do. A client added with a hex key over
// HTTP holds that key (a device with it applies and acknowledges the
// topic key C2 sends); a generated key, a topic hash and a protected
// message come back as hex.
func TestHTTPHexKeys(t *testing.T) {
	e := newStateEnv(t, false)
	acked := e.watch("command_acked")
	key := make([]byte, e4.KeyLen)
	rand.Read(key)
	r := e.do("POST", "/v1/clients", e.opsToken, map[string]any{"name": "pump-7", "key": hex.EncodeToString(key)})
	wantStatus(t, "add client with a hex key", r, http.StatusOK)
	if r.json["key"] != "" {
		t.Fatalf("a given key is returned: %s", r.body)
	}
	testdevice.StartAcking(t, e.brokerURL, "pump-7", key)
	r = e.do("POST", "/v1/topics", e.opsToken, map[string]any{"topic": "site/a/temp"})
	wantStatus(t, "add topic", r, http.StatusOK)
	hash := e4.HashTopic("site/a/temp")
	if r.json["hash"] != hex.EncodeToString(hash[:]) || r.json["key_version"] != json.Number("1") || r.json["members"] != json.Number("0") {
		t.Fatalf("topic: %s (want hash %x, key_version and members as numbers)", r.body, hash)
	}
	wantStatus(t, "add member", e.do("POST", "/v1/members", e.opsToken, map[string]any{"client": "pump-7", "topic": "site/a/temp"}), http.StatusOK)
	if ev := nextEvent(t, acked); ev.ClientId != e4.IDFromName("pump-7").String() {
		t.Fatalf("acknowledged by %s", ev.ClientId)
	}

	r = e.do("POST", "/v1/clients", e.opsToken, map[string]any{"name": "valve-1"})
	generated, err := hex.DecodeString(r.json["key"].(string))
	if r.status != http.StatusOK || err != nil || len(generated) != e4.KeyLen {
		t.Fatalf("generated key: %d %s (%v)", r.status, r.body, err)
	}

	payload := hex.EncodeToString([]byte("21.5"))
	r = e.do("POST", "/v1/messages/protect", e.opsToken, map[string]any{"topic": "site/a/temp", "payload": payload})
	wantStatus(t, "protect", r, http.StatusOK)
	protected, _ := r.json["protected"].(string)
	if _, err := hex.DecodeString(protected); err != nil || len(protected) <= 2*len("21.5") {
		t.Fatalf("protected message: %s", r.body)
	}
	r = e.do("POST", "/v1/messages/unprotect", e.opsToken, map[string]any{"topic": "site/a/temp", "protected": protected})
	if r.status != http.StatusOK || r.json["payload"] != payload {
		t.Fatalf("unprotect: %d %s, want payload %s", r.status, r.body, payload)
	}
}

// TestHTTPRefusesBase64: a key in base64 (what this API spoke before) or
// of the wrong length is refused with what was expected; the message
// never echoes the key.
func TestHTTPRefusesBase64(t *testing.T) {
	c := newTestC2(t, options{})
	ops := c.token("ops", "operate")
	key := make([]byte, e4.KeyLen)
	rand.Read(key)
	b64 := base64.StdEncoding.EncodeToString(key)
	cases := []struct {
		what, body string
		want       []string
	}{
		{"base64 key", `{"name":"a","key":"` + b64 + `"}`,
			[]string{"key: want 64 hex digits (32 bytes), got 44 characters; this looks like base64; keys and hashes are hex in this API"}},
		{"short hex key", `{"name":"b","key":"` + hex.EncodeToString(key[:31]) + `"}`,
			[]string{"key: want 64 hex digits (32 bytes), got 62 characters"}},
		{"odd hex payload", `{"topic":"t","payload":"abc"}`, []string{"payload: want hex digits, two per byte, got 3 characters (an odd count)"}},
		{"base64 payload", `{"topic":"t","payload":"aGVsbG8="}`, []string{"payload: want hex digits, two per byte, got 8 characters; this looks like base64; bytes (keys, hashes, payloads) are hex"}},
		{"typo in a hex key", `{"name":"c","key":"` + hex.EncodeToString(key[:31]) + `xy"}`,
			[]string{"key: want 64 hex digits (32 bytes), got 64 characters, not all hex digits (character 63 is not)"}},
	}
	for _, tc := range cases {
		path := "/v1/clients"
		if strings.Contains(tc.body, "payload") {
			path = "/v1/messages/protect"
		}
		r := c.do("POST", path, ops, tc.body)
		wantStatus(t, tc.what, r, http.StatusBadRequest)
		msg, _ := r.json["message"].(string)
		for _, want := range tc.want {
			if !strings.Contains(msg, want) {
				t.Errorf("%s: message %q lacks %q", tc.what, msg, want)
			}
		}
		if strings.Contains(msg, b64) || strings.Contains(msg, hex.EncodeToString(key[:31])) {
			t.Errorf("%s: the message echoes the key: %q", tc.what, msg)
		}
	}
}

// TestHTTPPublicKeysHex: in public-key mode a device's public key given in
// hex comes back identical, and C2's own keys are hex.
func TestHTTPPublicKeysHex(t *testing.T) {
	c := newTestC2(t, options{mode: e4.PubKey})
	ops := c.token("ops", "operate")
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	want := hex.EncodeToString(pub)
	wantStatus(t, "add PK client", c.do("POST", "/v1/clients", ops, map[string]any{"name": "cam-1", "public_key": want}), http.StatusOK)
	r := c.do("GET", "/v1/clients/cam-1", ops, nil)
	if r.status != http.StatusOK || r.json["public_key"] != want {
		t.Fatalf("client: %d %s, want public_key %s", r.status, r.body, want)
	}
	r = c.do("GET", "/v1/c2-key", ops, nil)
	for _, field := range []string{"public_key", "signer_public_key"} {
		if b, err := hex.DecodeString(r.json[field].(string)); err != nil || len(b) != e4.KeyLen {
			t.Fatalf("C2 key %s: %s", field, r.body)
		}
	}
}

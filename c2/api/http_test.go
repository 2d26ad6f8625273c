package api_test

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/e4-iot/e4kit/c2/api"
	"github.com/e4-iot/e4kit/e4"
)

// TestHTTPRoutes drives the REST routes: status codes for each kind of
// error, topics with slashes in paths, keys in hex, counts as numbers.
func TestHTTPRoutes(t *testing.T) {
	c := newTestC2(t, options{})
	ops := c.token("ops", "operate")
	reader := c.token("reader", "read")

	wantStatus(t, "no token", c.do("GET", "/v1/clients", "", nil), http.StatusUnauthorized)
	wantStatus(t, "bad token", c.do("GET", "/v1/clients", "e4c2_bad", nil), http.StatusUnauthorized)
	wantStatus(t, "read token adding", c.do("POST", "/v1/topics", reader, map[string]any{"topic": "a/b"}), http.StatusForbidden)

	r := c.do("POST", "/v1/clients", ops, map[string]any{"name": "pump-7"})
	wantStatus(t, "add client", r, http.StatusOK)
	key, err := hex.DecodeString(r.json["key"].(string))
	if err != nil || len(key) != e4.KeyLen {
		t.Fatalf("generated key %v (%v)", r.json["key"], err)
	}
	wantStatus(t, "add client twice", c.do("POST", "/v1/clients", ops, map[string]any{"name": "pump-7"}), http.StatusConflict)
	wantStatus(t, "key of 3 bytes", c.do("POST", "/v1/clients", ops, map[string]any{"name": "x", "key": "010203"}), http.StatusBadRequest)
	wantStatus(t, "unknown field", c.do("POST", "/v1/clients", ops, `{"name":"y","colour":"red"}`), http.StatusBadRequest)
	wantStatus(t, "malformed JSON", c.do("POST", "/v1/clients", ops, `{"name":`), http.StatusBadRequest)
	wantStatus(t, "get client", c.do("GET", "/v1/clients/pump-7", reader, nil), http.StatusOK)
	wantStatus(t, "get client by id", c.do("GET", "/v1/clients/"+e4.IDFromName("pump-7").String(), reader, nil), http.StatusOK)
	wantStatus(t, "unknown client", c.do("GET", "/v1/clients/nobody", reader, nil), http.StatusNotFound)

	wantStatus(t, "add topic", c.do("POST", "/v1/topics", ops, map[string]any{"topic": "site/a/temp"}), http.StatusOK)
	wantStatus(t, "wildcard topic", c.do("POST", "/v1/topics", ops, map[string]any{"topic": "site/#"}), http.StatusBadRequest)
	r = c.do("GET", "/v1/topics/site/a/temp", reader, nil)
	wantStatus(t, "topic by path", r, http.StatusOK)
	if r.json["name"] != "site/a/temp" {
		t.Fatalf("topic by path: %s", r.body)
	}
	wantStatus(t, "topic by escaped path", c.do("GET", "/v1/topics/"+url.PathEscape("site/a/temp"), reader, nil), http.StatusOK)
	wantStatus(t, "add member", c.do("POST", "/v1/members", ops, map[string]any{"client": "pump-7", "topic": "site/a/temp"}), http.StatusOK)
	r = c.do("GET", "/v1/members/pump-7/site/a/temp", reader, nil)
	if r.status != http.StatusOK || r.json["member"] != true {
		t.Fatalf("is member: %d %s", r.status, r.body)
	}
	r = c.do("POST", "/v1/rotations", ops, map[string]any{"topic": "site/a/temp"})
	if r.status != http.StatusOK || r.json["commands"] != json.Number("1") {
		t.Fatalf("rotation: %d %s", r.status, r.body)
	}
	r = c.do("GET", "/v1/members?topic=site/a/temp", reader, nil)
	if r.status != http.StatusOK || r.json["total"] != json.Number("1") {
		t.Fatalf("members: %d %s", r.status, r.body)
	}
	r = c.do("GET", "/v1/clients/pump-7/topics", reader, nil)
	if r.status != http.StatusOK || !strings.Contains(string(r.body), "site/a/temp") {
		t.Fatalf("topics of client: %d %s", r.status, r.body)
	}
	wantStatus(t, "remove member", c.do("DELETE", "/v1/members/pump-7/site/a/temp", ops, nil), http.StatusOK)
	wantStatus(t, "remove member twice", c.do("DELETE", "/v1/members/pump-7/site/a/temp", ops, nil), http.StatusNotFound)
	wantStatus(t, "PK call in SK mode", c.do("POST", "/v1/pubkeys/send", ops, map[string]any{"target": "pump-7", "source": "pump-7"}), http.StatusBadRequest)
	wantStatus(t, "commands", c.do("GET", "/v1/commands?state=pending", reader, nil), http.StatusOK)
	wantStatus(t, "bad command state", c.do("GET", "/v1/commands?state=weird", reader, nil), http.StatusBadRequest)
	wantStatus(t, "bad command id", c.do("GET", "/v1/commands/xyz", reader, nil), http.StatusBadRequest)
	wantStatus(t, "health", c.do("GET", "/v1/health", reader, nil), http.StatusOK)
	wantStatus(t, "remove topic", c.do("DELETE", "/v1/topics/site/a/temp", ops, nil), http.StatusOK)
	wantStatus(t, "remove client", c.do("DELETE", "/v1/clients/pump-7", ops, nil), http.StatusOK)

	wantStatus(t, "unknown route", c.do("GET", "/v2/nothing", reader, nil), http.StatusNotFound)
	wantStatus(t, "wrong method", c.do("PATCH", "/v1/clients", reader, nil), http.StatusMethodNotAllowed)

	r = c.do("GET", "/openapi.json", "", nil)
	wantStatus(t, "OpenAPI document", r, http.StatusOK)
	var doc struct {
		Paths map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(r.body, &doc); err != nil || doc.Paths["/v1/clients"] == nil || doc.Paths["/v1/topics/{topic}"] == nil {
		t.Fatalf("OpenAPI paths: %v (%v)", doc.Paths, err)
	}
}

// TestHTTPBodyLimit: a body over MaxRequestBytes is refused with 413
// before it is read.
func TestHTTPBodyLimit(t *testing.T) {
	c := newTestC2(t, options{edit: func(cfg *api.Config) { cfg.MaxRequestBytes = 1024 }})
	ops := c.token("ops", "operate")
	big := `{"name":"` + strings.Repeat("x", 4096) + `"}`
	wantStatus(t, "oversized body", c.do("POST", "/v1/clients", ops, big), http.StatusRequestEntityTooLarge)
}

// TestHTTPOpenAPI: the served document is valid OpenAPI 3 (kin-openapi's
// validator), with the API's title and the server's version, and every
// operation it describes is served: a request to each, with a query
// parameter no route takes, reaches that route (its refusal names it)
// before the service is called.
func TestHTTPOpenAPI(t *testing.T) {
	c := newTestC2(t, options{})
	r := c.do("GET", api.OpenAPIPath, "", nil)
	wantStatus(t, "OpenAPI document", r, http.StatusOK)
	doc, err := openapi3.NewLoader().LoadFromData(r.body)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("invalid OpenAPI 3 document: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") || doc.Info.Title != "E4kit C2 API" || doc.Info.Version != "test" {
		t.Fatalf("openapi %q, title %q, version %q", doc.OpenAPI, doc.Info.Title, doc.Info.Version)
	}
	if doc.Paths.Find(api.EventStreamPath) == nil {
		t.Fatalf("the OpenAPI document lacks %s", api.EventStreamPath)
	}
	sample := strings.NewReplacer("{topic}", "plant/a", "{client}", "pump-7", "{source}", "a", "{target}", "b", "{id}", "x", "{name}", "n")
	probed := 0
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			r := c.do(method, sample.Replace(path)+"?e4probe=1", c.admin, nil)
			want := `unknown query parameter "e4probe": ` + method + " " + path + " takes "
			if msg, _ := r.json["message"].(string); r.status != http.StatusBadRequest || !strings.HasPrefix(msg, want) {
				t.Errorf("%s %s: HTTP %d %s, want 400 %q", method, path, r.status, r.body, want)
			}
			probed++
		}
	}
	if probed < 40 {
		t.Fatalf("only %d operations in the document", probed)
	}
}

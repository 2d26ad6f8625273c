package api

import (
	"net/url"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/e4-iot/e4kit/c2/api/c2pb"
)

// TestOnePaginationName: no request of the API, those added later
// included, names its page cursor other than after (after_id, after_seq
// and topics_after were all in use once).
func TestOnePaginationName(t *testing.T) {
	desc, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(c2pb.C2_ServiceDesc.ServiceName))
	if err != nil {
		t.Fatal(err)
	}
	methods := desc.(protoreflect.ServiceDescriptor).Methods()
	for i := range methods.Len() {
		fields := methods.Get(i).Input().Fields()
		for j := range fields.Len() {
			name := string(fields.Get(j).Name())
			if strings.HasPrefix(name, "after_") || strings.HasSuffix(name, "_after_id") {
				t.Errorf("%s.%s: a page cursor is named after", methods.Get(i).Input().FullName(), name)
			}
		}
	}
}

// TestRouteQuery: the query parameters a route takes are its request
// fields outside its path and body, nested fields dotted; a refusal names
// the parameter and those taken.
func TestRouteQuery(t *testing.T) {
	routes, err := httpRoutes()
	if err != nil {
		t.Fatal(err)
	}
	byKey := make(map[string]route)
	for _, r := range routes {
		byKey[r.method+" "+r.path] = r
	}
	want := map[string]string{
		"GET /v1/clients/{client}/topics":     "after, limit",
		"GET /v1/audit":                       "actor, action, target, outcome, since, until, after, limit",
		"GET /v1/members/{client}/{topic=**}": "",
		"POST /v1/clients":                    "",
		"POST /v1/clients/{client}/key":       "",
		"GET /v1/events/stream":               "after, kinds",
	}
	for key, query := range want {
		r, ok := byKey[key]
		if !ok {
			t.Fatalf("no route %s", key)
		}
		if got := strings.Join(r.query, ", "); got != query {
			t.Errorf("%s takes %q, want %q", key, got, query)
		}
	}
	r := byKey["GET /v1/clients/{client}/topics"]
	if err := r.checkQuery(url.Values{"after": {"a"}, "limit": {"2"}}); err != nil {
		t.Fatal(err)
	}
	if r.gatewayPattern() != "/v1/clients/{client=*}/topics" || r.openAPIPath() != "/v1/clients/{client}/topics" {
		t.Fatalf("patterns %s %s", r.gatewayPattern(), r.openAPIPath())
	}
	if _, err := loadRoutes([]byte("http:\n  rules:\n    - selector: e4kit.c2.v1.C2.Nothing\n      get: /x\n")); err == nil {
		t.Fatal("a rule for an unknown method loads")
	}
}

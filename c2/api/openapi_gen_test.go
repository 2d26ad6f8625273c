package api

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi2"
	"github.com/getkin/kin-openapi/openapi2conv"
	"github.com/getkin/kin-openapi/openapi3"
	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The OpenAPI 3 document served at /openapi.json (openapi.json beside this
// file) is generated, never edited: protoc-gen-openapiv2 writes the
// Swagger 2 document of c2.proto and c2_http.yaml (c2pb/c2.swagger.json),
// and this test converts it (kin-openapi's openapi2conv) and completes it
// from the route table: the title, the API's JSON dialect (hex bytes,
// integer numbers), the bearer token, and the server-sent events route.
// scripts/gen-proto.sh runs it with -update-openapi; without the flag it
// fails when openapi.json is not what the sources generate.

var updateOpenAPI = flag.Bool("update-openapi", false, "rewrite openapi.json from c2pb/c2.swagger.json and the routes")

const (
	openAPIFile  = "openapi.json"
	swaggerFile  = "c2pb/c2.swagger.json"
	openAPITitle = "E4kit C2 API"
	// openAPIFileVersion is the version in the file; the server serves its
	// own (Config.Version).
	openAPIFileVersion = "devel"
	hexPattern         = "^([0-9a-fA-F]{2})*$"
)

const openAPIDescription = `The key server of an E4 deployment: clients, topics, memberships, keys,
device state, events and audit, over HTTP/JSON (this document) and gRPC
(the same c2.proto).

Every call needs an API token with a scope that covers it (read, operate,
admin): Authorization: Bearer e4c2_...

JSON speaks the dialect of the e4 CLI and of every file E4kit writes:
bytes (keys, topic hashes, payloads) are hex; 64-bit integers are JSON
numbers (a decimal string beyond 2^53, where a float64 would round them);
field names are those of c2.proto. Every list pages with after (the last
item of the previous page) and limit. A query parameter a route does not
take is refused (400), naming those it takes. Errors are
{"code": gRPC code, "message": ..., "details": [...]} with the matching
HTTP status.`

func TestOpenAPIDocument(t *testing.T) {
	generated, err := generateOpenAPI()
	if err != nil {
		t.Fatal(err)
	}
	if *updateOpenAPI {
		if err := os.WriteFile(openAPIFile, generated, 0o644); err != nil {
			t.Fatal(err)
		}
	} else if !bytes.Equal(generated, openAPIDocument) {
		t.Fatalf("%s is not what %s and the routes generate: run scripts/gen-proto.sh (make proto) and commit", openAPIFile, swaggerFile)
	}
	doc, err := openapi3.NewLoader().LoadFromData(generated)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("%s is not a valid OpenAPI 3 document: %v", openAPIFile, err)
	}
}

// generateOpenAPI converts the Swagger 2 document and completes it.
func generateOpenAPI() ([]byte, error) {
	swagger, err := os.ReadFile(swaggerFile)
	if err != nil {
		return nil, err
	}
	var v2 openapi2.T
	if err := json.Unmarshal(swagger, &v2); err != nil {
		return nil, fmt.Errorf("%s: %w", swaggerFile, err)
	}
	doc, err := openapi2conv.ToV3(&v2)
	if err != nil {
		return nil, err
	}
	doc.Info.Title = openAPITitle
	doc.Info.Version = openAPIFileVersion
	doc.Info.Description = openAPIDescription
	doc.Servers = openapi3.Servers{{URL: "https://127.0.0.1:8443", Description: "e4 c2 serve with its defaults"}}
	doc.Components.SecuritySchemes = openapi3.SecuritySchemes{"bearer": &openapi3.SecuritySchemeRef{Value: &openapi3.SecurityScheme{
		Type: "http", Scheme: "bearer", Description: "An API token (e4c2_...), from e4 c2 token create.",
	}}}
	doc.Security = openapi3.SecurityRequirements{{"bearer": []string{}}}
	routes, err := httpRoutes()
	if err != nil {
		return nil, err
	}
	for _, r := range routes {
		if r.stream {
			doc.AddOperation(r.openAPIPath(), r.method, streamOperation(r))
		}
	}
	dialect(doc)
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// streamOperation describes the server-sent events route, which the
// gateway does not serve and Swagger 2 cannot describe.
func streamOperation(r route) *openapi3.Operation {
	op := openapi3.NewOperation()
	op.OperationID = "C2_WatchEvents"
	op.Tags = []string{"C2"}
	op.Summary = "WatchEvents streams events as server-sent events, first those after `after` (or the Last-Event-ID header) when set."
	for _, name := range r.query {
		fd := r.rpc.Input().Fields().ByName(protoreflect.Name(name))
		p := openapi3.NewQueryParameter(name).WithSchema(paramSchema(fd))
		op.AddParameter(p)
	}
	op.AddParameter(openapi3.NewHeaderParameter("Last-Event-ID").WithSchema(openapi3.NewStringSchema()).
		WithDescription("Resumes after this event id (browsers send it when they reconnect); the after parameter wins."))
	events := openapi3.NewResponse().WithDescription("One event per message: `id:` its id, `event:` its kind, `data:` the " +
		string(r.rpc.Output().Name()) + " as JSON (#/components/schemas/v1Event). The stream lasts until the client " +
		"closes it, the token is revoked or expires, or the server stops; a failure ends it with an `event: error` message.")
	events.Content = openapi3.NewContentWithSchema(openapi3.NewStringSchema(), []string{"text/event-stream"})
	op.AddResponse(200, events)
	failure := openapi3.NewResponse().WithDescription("An unexpected error response.")
	failure.Content = openapi3.NewContentWithJSONSchemaRef(openapi3.NewSchemaRef("#/components/schemas/rpcStatus", nil))
	op.Responses.Set("default", &openapi3.ResponseRef{Value: failure})
	return op
}

// paramSchema is the schema of a query parameter for a scalar field.
func paramSchema(fd protoreflect.FieldDescriptor) *openapi3.Schema {
	var s *openapi3.Schema
	switch fd.Kind() {
	case protoreflect.BoolKind:
		s = openapi3.NewBoolSchema()
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind, protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		s = openapi3.NewInt32Schema()
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		s = openapi3.NewInt64Schema()
	default:
		s = openapi3.NewStringSchema()
	}
	if fd.IsList() {
		return openapi3.NewArraySchema().WithItems(s)
	}
	return s
}

// dialect makes every schema of doc say what the API sends: hex for
// bytes (of a fixed length for keys and hashes), integers for 64-bit
// integers.
func dialect(doc *openapi3.T) {
	seen := make(map[*openapi3.Schema]bool)
	for _, ref := range doc.Components.Schemas {
		dialectSchema(ref, "", seen, true)
	}
	for _, item := range doc.Paths.Map() {
		for _, op := range item.Operations() {
			for _, p := range op.Parameters {
				dialectSchema(p.Value.Schema, p.Value.Name, seen, false)
			}
			if op.RequestBody != nil && op.RequestBody.Value != nil {
				for _, media := range op.RequestBody.Value.Content {
					dialectSchema(media.Schema, "", seen, true)
				}
			}
			for _, resp := range op.Responses.Map() {
				if resp.Value != nil {
					for _, media := range resp.Value.Content {
						dialectSchema(media.Schema, "", seen, true)
					}
				}
			}
		}
	}
}

// dialectSchema fixes ref and what it contains; name is the property or
// parameter it describes, inJSON whether it is JSON (not a query).
func dialectSchema(ref *openapi3.SchemaRef, name string, seen map[*openapi3.Schema]bool, inJSON bool) {
	if ref == nil || ref.Ref != "" || ref.Value == nil || seen[ref.Value] {
		return
	}
	s := ref.Value
	seen[s] = true
	switch {
	case s.Type.Is("string") && s.Format == "byte":
		s.Format = "hex"
		s.Pattern = hexPattern
		if size := fixedSizeOf(name); size > 0 {
			s.Pattern = fmt.Sprintf("^([0-9a-fA-F]{%d})?$", 2*size)
		}
		s.Description = strings.TrimSpace(s.Description + "\n\nHex.")
	case s.Type.Is("string") && (s.Format == "int64" || s.Format == "uint64"):
		s.Type = &openapi3.Types{"integer"}
		if inJSON {
			s.Description = strings.TrimSpace(s.Description + "\n\nA JSON number (a decimal string beyond 2^53).")
		}
	}
	for prop, p := range s.Properties {
		dialectSchema(p, prop, seen, inJSON)
	}
	dialectSchema(s.Items, name, seen, inJSON)
	dialectSchema(s.AdditionalProperties.Schema, "", seen, inJSON)
	for _, group := range []openapi3.SchemaRefs{s.AllOf, s.AnyOf, s.OneOf} {
		for _, sub := range group {
			dialectSchema(sub, name, seen, inJSON)
		}
	}
}

// TestOpenAPIRoutes: the document describes exactly the routes of the
// route table, each with the parameters (path and query) the route takes
// and a body when it has one; and the gateway serves exactly the table's
// routes (read from the patterns of the generated c2.pb.gw.go).
func TestOpenAPIRoutes(t *testing.T) {
	routes, err := httpRoutes()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := openapi3.NewLoader().LoadFromData(openAPIDocument)
	if err != nil {
		t.Fatal(err)
	}
	described := make(map[string]bool)
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			described[method+" "+path] = true
		}
	}
	inTable := make(map[string]bool)
	for _, r := range routes {
		key := r.method + " " + r.openAPIPath()
		inTable[key] = true
		item := doc.Paths.Find(r.openAPIPath())
		if item == nil || item.GetOperation(r.method) == nil {
			t.Errorf("%s is served but not in the OpenAPI document", key)
			continue
		}
		op := item.GetOperation(r.method)
		var params []string
		for _, p := range op.Parameters {
			if p.Value.In != "header" {
				params = append(params, p.Value.Name)
			}
		}
		want := append(slices.Clone(r.pathParams), r.query...)
		slices.Sort(params)
		slices.Sort(want)
		if !slices.Equal(params, want) {
			t.Errorf("%s: the document gives parameters %v, the route takes %v", key, params, want)
		}
		if hasBody := op.RequestBody != nil; hasBody != (r.body != "") {
			t.Errorf("%s: the document has a body %v, the route's body is %q", key, hasBody, r.body)
		}
	}
	for key := range described {
		if !inTable[key] {
			t.Errorf("%s is in the OpenAPI document but not served", key)
		}
	}

	served := gatewayPatterns(t)
	var tableRoutes []string
	for _, r := range routes {
		if !r.stream {
			tableRoutes = append(tableRoutes, r.method+" "+r.gatewayPattern())
		}
	}
	slices.Sort(tableRoutes)
	if !slices.Equal(served, tableRoutes) {
		t.Fatalf("the gateway serves\n%v\nthe route table has\n%v", served, tableRoutes)
	}
}

// gatewayPatterns reads the routes RegisterC2HandlerClient registers in
// the generated gateway: their method and pattern, as runtime.Pattern
// writes it.
func gatewayPatterns(t *testing.T) []string {
	t.Helper()
	src, err := os.ReadFile("c2pb/c2.pb.gw.go")
	if err != nil {
		t.Fatal(err)
	}
	text := string(src)
	client := text[strings.Index(text, "func RegisterC2HandlerClient("):]
	handles := regexp.MustCompile(`mux\.Handle\(http\.Method(\w+), (pattern_\w+),`).FindAllStringSubmatch(client, -1)
	defs := regexp.MustCompile(`(pattern_\w+)\s+= runtime\.MustPattern\(runtime\.NewPattern\(1, \[\]int\{([^}]*)\}, \[\]string\{([^}]*)\}, "([^"]*)"\)\)`).FindAllStringSubmatch(text, -1)
	patterns := make(map[string]string)
	for _, d := range defs {
		var ops []int
		for _, n := range strings.Split(d[2], ",") {
			v, err := strconv.Atoi(strings.TrimSpace(n))
			if err != nil {
				t.Fatalf("%s: %v", d[1], err)
			}
			ops = append(ops, v)
		}
		var pool []string
		for _, lit := range strings.Split(d[3], ",") {
			pool = append(pool, strings.Trim(strings.TrimSpace(lit), `"`))
		}
		p, err := runtime.NewPattern(1, ops, pool, d[4])
		if err != nil {
			t.Fatalf("%s: %v", d[1], err)
		}
		patterns[d[1]] = p.String()
	}
	if len(handles) == 0 || len(defs) != len(handles) {
		t.Fatalf("read %d routes and %d patterns from c2.pb.gw.go", len(handles), len(defs))
	}
	var out []string
	for _, h := range handles {
		out = append(out, strings.ToUpper(h[1])+" "+patterns[h[2]])
	}
	slices.Sort(out)
	return out
}

package api

import (
	_ "embed"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/e4-iot/e4kit/c2/api/c2pb"
)

// The routes of the HTTP/JSON API come from c2_http.yaml (the rules
// grpc-gateway generates its handlers from) and the descriptors of
// c2.proto, so that what a route takes is derived, never listed by hand:
// the query parameters a route accepts are the fields of its request
// message that are neither in its path nor in its body.

//go:embed c2pb/c2_http.yaml
var httpRulesYAML []byte

// route is one route of the HTTP/JSON API.
type route struct {
	// method and path as in c2_http.yaml: "GET", "/v1/topics/{topic=**}".
	method, path string
	// rpc is the gRPC method the route calls.
	rpc protoreflect.MethodDescriptor
	// body is the request field the body holds: "*" for all, "" for none.
	body string
	// pathParams are the fields taken from the path.
	pathParams []string
	// query lists the query parameters the route takes, in field order
	// (nested fields dotted; a timestamp is one value).
	query []string
	// stream is set for the server-sent events route, served beside the
	// gateway.
	stream bool
}

var (
	routesOnce  sync.Once
	routeTable  []route
	routesError error
)

// httpRoutes returns every route of the HTTP/JSON API: those of
// c2_http.yaml in their order, then the server-sent events route.
func httpRoutes() ([]route, error) {
	routesOnce.Do(func() { routeTable, routesError = loadRoutes(httpRulesYAML) })
	return routeTable, routesError
}

// httpRules is the part of a google.api.Service file that c2_http.yaml
// uses.
type httpRules struct {
	HTTP struct {
		Rules []httpRule `yaml:"rules"`
	} `yaml:"http"`
}

// httpRule is one rule of c2_http.yaml (or one of its additional
// bindings): the method it maps, its path under the HTTP method's key,
// and the request field the body holds.
type httpRule struct {
	Selector                      string `yaml:"selector"`
	Get, Post, Put, Delete, Patch string
	Body                          string     `yaml:"body"`
	AdditionalBindings            []httpRule `yaml:"additional_bindings"`
}

// methodPath returns the rule's HTTP method and path.
func (r httpRule) methodPath() (string, string) {
	for _, mp := range [][2]string{{"GET", r.Get}, {"POST", r.Post}, {"PUT", r.Put}, {"DELETE", r.Delete}, {"PATCH", r.Patch}} {
		if mp[1] != "" {
			return mp[0], mp[1]
		}
	}
	return "", ""
}

// pathParam matches a path variable: {client} or {topic=**}.
var pathParam = regexp.MustCompile(`\{([A-Za-z0-9_.]+)(=[^}]*)?\}`)

// loadRoutes builds the route table from the rules.
func loadRoutes(rulesYAML []byte) ([]route, error) {
	var rules httpRules
	if err := yaml.Unmarshal(rulesYAML, &rules); err != nil {
		return nil, fmt.Errorf("c2_http.yaml: %w", err)
	}
	var out []route
	for _, rule := range rules.HTTP.Rules {
		for _, binding := range append([]httpRule{rule}, rule.AdditionalBindings...) {
			binding.Selector = rule.Selector
			r, err := newRoute(binding)
			if err != nil {
				return nil, err
			}
			out = append(out, r)
		}
	}
	stream, err := newRoute(httpRule{Selector: string(c2pb.C2_ServiceDesc.ServiceName) + ".WatchEvents", Get: EventStreamPath})
	if err != nil {
		return nil, err
	}
	stream.stream = true
	return append(out, stream), nil
}

// newRoute describes the route of rule from its method's descriptor.
func newRoute(rule httpRule) (route, error) {
	desc, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(rule.Selector))
	if err != nil {
		return route{}, fmt.Errorf("c2_http.yaml: %s: %w", rule.Selector, err)
	}
	rpc, ok := desc.(protoreflect.MethodDescriptor)
	if !ok {
		return route{}, fmt.Errorf("c2_http.yaml: %s is not a method", rule.Selector)
	}
	method, path := rule.methodPath()
	if method == "" {
		return route{}, fmt.Errorf("c2_http.yaml: %s has no path", rule.Selector)
	}
	r := route{method: method, path: path, rpc: rpc, body: rule.Body}
	for _, m := range pathParam.FindAllStringSubmatch(path, -1) {
		r.pathParams = append(r.pathParams, m[1])
	}
	if r.body != "*" {
		r.query = queryFields(rpc.Input(), "", append(slices.Clone(r.pathParams), r.body))
	}
	return r, nil
}

// queryFields lists the fields of md that a query can set, with prefix,
// leaving out those named in skip (and what they contain).
func queryFields(md protoreflect.MessageDescriptor, prefix string, skip []string) []string {
	var out []string
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		name := prefix + string(fd.Name())
		switch {
		case slices.Contains(skip, name), fd.IsMap():
		case fd.Message() != nil && !isCustomJSON(fd.Message()) && !fd.IsList():
			out = append(out, queryFields(fd.Message(), name+".", skip)...)
		case fd.Message() != nil && fd.IsList():
			// a query cannot carry a list of messages
		default:
			out = append(out, name)
		}
	}
	return out
}

// eventStreamRoute returns the server-sent events route of routes.
func eventStreamRoute(routes []route) (route, error) {
	for _, r := range routes {
		if r.stream {
			return r, nil
		}
	}
	return route{}, errors.New("api: the route table lacks the event stream")
}

// gatewayPattern is the route's path as grpc-gateway's Pattern.String
// writes it ("{client}" is "{client=*}").
func (r route) gatewayPattern() string {
	return pathParam.ReplaceAllStringFunc(r.path, func(p string) string {
		if strings.Contains(p, "=") {
			return p
		}
		return strings.TrimSuffix(p, "}") + "=*}"
	})
}

// openAPIPath is the route's path as the OpenAPI document writes it
// ("{topic=**}" is "{topic}").
func (r route) openAPIPath() string {
	return pathParam.ReplaceAllString(r.path, "{$1}")
}

// checkQuery refuses a query parameter the route does not take, naming
// the ones it does.
func (r route) checkQuery(q url.Values) error {
	for name := range q {
		if slices.Contains(r.query, name) {
			continue
		}
		what := fmt.Sprintf("unknown query parameter %q", name)
		if slices.Contains(r.pathParams, name) {
			what = fmt.Sprintf("query parameter %q is given in the path", name)
		} else if r.body != "" && (r.body == "*" || r.body == name) && r.rpc.Input().Fields().ByName(protoreflect.Name(name)) != nil {
			what = fmt.Sprintf("query parameter %q is given in the JSON body", name)
		}
		return fmt.Errorf("%s: %s %s takes %s", what, r.method, r.openAPIPath(), r.takes())
	}
	return nil
}

func (r route) takes() string {
	if len(r.query) == 0 {
		return "no query parameters"
	}
	return strings.Join(r.query, ", ")
}

// queryChecker is a gateway middleware that refuses, with 400, a query
// parameter the matched route does not take: a misspelt filter or page
// cursor must not silently give every record.
func queryChecker(routes []route) runtime.Middleware {
	byPattern := make(map[string]route, len(routes))
	for _, r := range routes {
		byPattern[r.method+" "+r.gatewayPattern()] = r
	}
	return func(next runtime.HandlerFunc) runtime.HandlerFunc {
		return func(w http.ResponseWriter, req *http.Request, params map[string]string) {
			if pat, ok := runtime.HTTPPattern(req.Context()); ok {
				if r, ok := byPattern[req.Method+" "+pat.String()]; ok {
					if err := r.checkQuery(req.URL.Query()); err != nil {
						writeError(w, http.StatusBadRequest, codes.InvalidArgument, err.Error())
						return
					}
				}
			}
			next(w, req, params)
		}
	}
}

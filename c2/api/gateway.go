package api

import (
	"context"
	"crypto/x509"
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/grpc-ecosystem/grpc-gateway/v2/utilities"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/e4-iot/e4kit/c2/api/c2pb"
)

// OpenAPIPath is where the OpenAPI document of the HTTP/JSON API is
// served (without authentication: it describes the API, nothing more).
const OpenAPIPath = "/openapi.json"

// EventStreamPath is where events are served as server-sent events.
const EventStreamPath = "/v1/events/stream"

// openAPIDocument is the OpenAPI 3 document of the HTTP/JSON API,
// generated (see openapi_gen_test.go).
//
//go:embed openapi.json
var openAPIDocument []byte

// openAPIWithVersion returns the OpenAPI document with the server's
// version.
func openAPIWithVersion(version string) ([]byte, error) {
	var doc, info map[string]json.RawMessage
	if err := json.Unmarshal(openAPIDocument, &doc); err != nil {
		return nil, fmt.Errorf("openapi.json: %w", err)
	}
	if err := json.Unmarshal(doc["info"], &info); err != nil {
		return nil, fmt.Errorf("openapi.json info: %w", err)
	}
	var err error
	if info["version"], err = json.Marshal(version); err != nil {
		return nil, err
	}
	if doc["info"], err = json.Marshal(info); err != nil {
		return nil, err
	}
	return json.MarshalIndent(doc, "", "  ")
}

// newGateway returns the HTTP handler: the REST routes of c2_http.yaml
// through grpc-gateway over conn, the event stream and the OpenAPI
// document. The caller is authenticated (g.admitHTTP) before its body is
// read (g.readBody).
func newGateway(ctx context.Context, conn *grpc.ClientConn, g *guard, stopping <-chan struct{}, version string) (http.Handler, error) {
	routes, err := httpRoutes()
	if err != nil {
		return nil, err
	}
	openAPI, err := openAPIWithVersion(version)
	if err != nil {
		return nil, err
	}
	streamRoute, err := eventStreamRoute(routes)
	if err != nil {
		return nil, err
	}
	gw := runtime.NewServeMux(
		// Only Authorization reaches the service (the gateway forwards it
		// itself); no header may pose as the metadata set below.
		runtime.WithIncomingHeaderMatcher(func(string) (string, bool) { return "", false }),
		runtime.WithOutgoingHeaderMatcher(func(string) (string, bool) { return "", false }),
		runtime.WithMetadata(gatewayMetadata),
		runtime.WithUnescapingMode(runtime.UnescapingModeAllCharacters),
		runtime.WithMarshalerOption(runtime.MIMEWildcard, jsonDialect{}),
		runtime.WithRoutingErrorHandler(routingError),
		runtime.WithMiddlewares(routeMiddleware, queryChecker(routes)),
	)
	client := c2pb.NewC2Client(conn)
	if err := c2pb.RegisterC2HandlerClient(ctx, gw, client); err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/", gw)
	mux.Handle("GET "+OpenAPIPath, fixedRoute("GET "+OpenAPIPath, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(openAPI)
	})))
	mux.Handle("GET "+EventStreamPath, fixedRoute("GET "+EventStreamPath, &eventStream{client: client, stopping: stopping, route: streamRoute}))
	return requireUTF8(g.admitHTTP(g.readBody(mux))), nil
}

func allUTF8(values []string) bool {
	for _, v := range values {
		if !utf8.ValidString(v) {
			return false
		}
	}
	return true
}

// requireUTF8 refuses a path or query that is not valid UTF-8 once
// unescaped: protobuf strings must be, and the gateway would otherwise fail
// to encode the call and answer 500.
func requireUTF8(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !utf8.ValidString(r.URL.Path) {
			writeError(w, http.StatusBadRequest, codes.InvalidArgument, "the path is not valid UTF-8")
			return
		}
		for key, values := range r.URL.Query() {
			if !utf8.ValidString(key) || !allUTF8(values) {
				writeError(w, http.StatusBadRequest, codes.InvalidArgument, "the query is not valid UTF-8")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// gatewayMetadata tells the service who the HTTP caller is: its address
// and, with mutual TLS, its verified certificate.
func gatewayMetadata(_ context.Context, r *http.Request) metadata.MD {
	md := metadata.Pairs(mdRemote, r.RemoteAddr)
	if cert := httpCertificate(r); cert != nil {
		md.Set(mdCertDER, string(cert.Raw))
	}
	return md
}

// httpCertificate returns the verified client certificate of an HTTP
// caller, or nil.
func httpCertificate(r *http.Request) *x509.Certificate {
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		return r.TLS.VerifiedChains[0][0]
	}
	return nil
}

// routingError answers a request no route matches: 404, or 405 when the
// path exists with another method (not grpc-gateway's 501).
func routingError(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, httpStatus int) {
	switch httpStatus {
	case http.StatusMethodNotAllowed:
		writeError(w, http.StatusMethodNotAllowed, codes.Unimplemented, fmt.Sprintf("%s is not allowed on this path", r.Method))
	case http.StatusBadRequest:
		writeError(w, http.StatusBadRequest, codes.InvalidArgument, "malformed path")
	default:
		writeError(w, http.StatusNotFound, codes.NotFound, "no such route (the API is described at "+OpenAPIPath+")")
	}
}

// writeError writes an error body shaped as grpc-gateway's.
func writeError(w http.ResponseWriter, httpStatus int, code codes.Code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(httpStatus)
	_ = json.NewEncoder(w).Encode(struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Details []any  `json:"details"`
	}{int(code), msg, []any{}})
}

// eventStream serves WatchEvents as server-sent events. It calls the
// service through the gateway's connection like any other route, so the
// same authentication, scope and rate limit apply. Its query parameters
// are the fields of WatchEventsRequest, as a REST route's: a client
// resumes with after (or the Last-Event-ID header, which browsers send
// when they reconnect); kinds (repeatable) filters.
type eventStream struct {
	client   c2pb.C2Client
	stopping <-chan struct{}
	route    route
}

// request reads the stream's WatchEventsRequest from the query.
func (e *eventStream) request(r *http.Request) (*c2pb.WatchEventsRequest, error) {
	query := r.URL.Query()
	if err := e.route.checkQuery(query); err != nil {
		return nil, err
	}
	req := &c2pb.WatchEventsRequest{}
	if err := runtime.PopulateQueryParameters(req, query, &utilities.DoubleArray{}); err != nil {
		return nil, err
	}
	if req.After == "" {
		req.After = r.Header.Get("Last-Event-ID")
	}
	return req, nil
}

func (e *eventStream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, codes.Internal, "streaming unsupported")
		return
	}
	req, err := e.request(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, codes.InvalidArgument, err.Error())
		return
	}
	md := gatewayMetadata(r.Context(), r)
	if auth := r.Header.Values("Authorization"); len(auth) > 0 {
		md.Set("authorization", auth...)
	}
	ctx, cancel := context.WithCancel(metadata.NewOutgoingContext(r.Context(), md))
	defer cancel()
	go func() {
		select {
		case <-e.stopping:
			cancel()
		case <-ctx.Done():
		}
	}()
	stream, err := e.client.WatchEvents(ctx, req)
	if err == nil {
		err = admitted(stream)
	}
	if err != nil {
		st := status.Convert(err)
		writeError(w, runtime.HTTPStatusFromCode(st.Code()), st.Code(), st.Message())
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	flusher.Flush()
	for {
		ev, err := stream.Recv()
		if err != nil {
			if st := status.Convert(err); ctx.Err() == nil && st.Code() != codes.OK {
				fmt.Fprintf(w, "event: error\ndata: %s\n\n", oneLine(st.Message()))
				flusher.Flush()
			}
			return
		}
		data, err := MarshalJSON(ev)
		if err != nil {
			return
		}
		fmt.Fprintf(w, "id: %s\nevent: %s\ndata: %s\n\n", oneLine(ev.Id), oneLine(ev.Kind), data)
		flusher.Flush()
	}
}

// admitted waits for the stream's header, which the service sends once
// it admitted the call, so that a refusal is still an HTTP status, not an
// event. A call refused at once ends with trailers only: no header, and
// the refusal comes with the first Recv.
func admitted(stream c2pb.C2_WatchEventsClient) error {
	hdr, err := stream.Header()
	if err != nil {
		return err
	}
	if len(hdr) == 0 {
		if _, err := stream.Recv(); err != nil {
			return err
		}
		return status.Error(codes.Internal, "the event stream started without a header")
	}
	return nil
}

// oneLine keeps a value on one SSE line.
func oneLine(s string) string { return strings.NewReplacer("\r", " ", "\n", " ").Replace(s) }

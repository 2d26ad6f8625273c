// Package api serves the C2 service layer (package c2) over gRPC and, from
// the same contract (c2pb/c2.proto), over HTTP/JSON through grpc-gateway,
// with the OpenAPI 3 document at /openapi.json (openapi.json, generated:
// see openapi_gen_test.go) and the event stream as server-sent events at
// /v1/events/stream.
//
// HTTP/JSON speaks the dialect of the CLI and the files (jsonDialect):
// bytes in hex, 64-bit integers as numbers, every list paged by after and
// limit, and a query parameter a route does not take refused. Routes come
// from c2pb/c2_http.yaml and the descriptors (routes.go), so an RPC added
// to c2.proto with its rule gets all of this without more code.
//
// Every call is authenticated by an API token (a bearer token whose
// SHA-256 only is stored) or, with mutual TLS, by a client certificate
// mapped to a scope; a scope (read, operate, admin) is checked on every
// call, and each token is rate limited. Every state-changing call is
// audited before it returns: the record is written in the transaction
// that makes the change (c2/internal/txhook), so a change without its record,
// or a record of a change that did not happen, cannot exist; a failure is
// recorded in a transaction of its own. If the record cannot be written
// the call fails. Each record is also logged as one JSON line. Neither
// holds key material: keys appear in responses only, once.
//
// The HTTP gateway reaches the gRPC service through an in-memory
// connection, so both protocols go through the same interceptors
// (authentication, scope, rate limit, audit, error mapping).
package api

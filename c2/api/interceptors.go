package api

import (
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"runtime/debug"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Metadata the HTTP gateway sets on the calls it makes through the
// in-memory connection. They are trusted on that connection only: on the
// public gRPC listener they are ignored.
// The certificate goes whole (DER), so that both listeners read its
// subject through the same parsed fields (see certIdentity).
const (
	mdRemote  = "x-e4kit-remote"
	mdCertDER = "x-e4kit-cert-bin"
)

// Methods outside the C2 service.
const (
	healthPrefix     = "/grpc.health.v1.Health/"
	reflectionPrefix = "/grpc.reflection."
)

type identityKey struct{}

// callerOf returns the identity the interceptor authenticated.
func callerOf(ctx context.Context) identity {
	id, _ := ctx.Value(identityKey{}).(identity)
	return id
}

// guard holds what the interceptors need.
type guard struct {
	auth       *authenticator
	audit      *auditor
	limits     *limiters
	certScopes map[string]Scope // client certificate subject CN -> scope
	log        *slog.Logger
	now        func() time.Time
	// failures budgets failed authentications per address, refusals logs
	// them in aggregate.
	failures *failureLimiter
	refusals *refusalLog
	// budget bounds the request bytes in flight; maxRequest is the
	// largest request, bodyTimeout how long receiving one may take.
	budget      *byteBudget
	maxRequest  int64
	bodyTimeout time.Duration
	// streams are the open streams, ended when their token is revoked or
	// expires.
	streams *streamTracker
	// internal marks the server behind the in-memory connection of the
	// HTTP gateway, whose metadata says who the HTTP caller is.
	internal bool
}

// unary is the interceptor of unary calls.
func (g *guard) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	defer g.recover(info.FullMethod, &err)
	requestReceived(ctx)
	malformed := decodingError(req) // always, so the note is forgotten
	if strings.HasPrefix(info.FullMethod, healthPrefix) {
		if malformed != nil {
			return nil, malformed
		}
		return handler(ctx, req)
	}
	ctx, r, err := g.admit(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	if malformed != nil {
		return nil, malformed
	}
	if !r.audited {
		resp, err = handler(ctx, req)
		return resp, toStatus(g.log, info.FullMethod, err)
	}
	ctx, call := g.audit.begin(ctx, callerOf(ctx), info.FullMethod, auditTarget(req), g.remote(ctx))
	resp, err = handler(ctx, req)
	err = call.finish(ctx, toStatus(g.log, info.FullMethod, err))
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// stream is the interceptor of streaming calls.
func (g *guard) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	defer g.recover(info.FullMethod, &err)
	ss = &decodingStream{ServerStream: ss}
	if strings.HasPrefix(info.FullMethod, healthPrefix) {
		return handler(srv, ss)
	}
	ctx, r, err := g.admit(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	ctx, untrack, err := g.streams.track(ctx, callerOf(ctx))
	if err != nil {
		return err
	}
	defer untrack()
	if !r.audited {
		err = handler(srv, &contextStream{ServerStream: ss, ctx: ctx})
		return toStatus(g.log, info.FullMethod, err)
	}
	// The target of a streamed request is known only once it is read.
	ws := &auditedStream{ServerStream: ss, g: g, method: info.FullMethod, ctx: ctx}
	err = handler(srv, ws)
	err = toStatus(g.log, info.FullMethod, err)
	if ws.call == nil {
		ws.begin(nil)
	}
	return ws.call.finish(ws.ctx, err)
}

// admit authenticates a call, checks its scope and rate limit, and
// returns the context carrying the caller's identity.
func (g *guard) admit(ctx context.Context, method string) (context.Context, rule, error) {
	r, known := rules[method]
	if strings.HasPrefix(method, reflectionPrefix) {
		r, known = rule{scope: ScopeRead}, true
	}
	id, err := g.gate(ctx, g.presented(ctx), shortMethod(method))
	if err != nil {
		return ctx, r, err
	}
	if !known || id.scope < r.scope {
		need := "no scope"
		if known {
			need = "the " + r.scope.String() + " scope"
		}
		err := status.Errorf(codes.PermissionDenied, "%s (scope %s) may not call %s: it needs %s", id.actor, id.scope, shortMethod(method), need)
		if known && r.audited {
			ctx, call := g.audit.begin(context.WithValue(ctx, identityKey{}, id), id, method, "", g.remote(ctx))
			return ctx, r, call.finish(ctx, err)
		}
		return ctx, r, err
	}
	if !g.limits.allow(id.actor, g.now()) {
		return ctx, r, status.Errorf(codes.ResourceExhausted, "rate limit of %s exceeded: slow down", id.actor)
	}
	return context.WithValue(ctx, identityKey{}, id), r, nil
}

// presented is what the caller of a gRPC call shows: on the in-memory
// connection, what the gateway says of the HTTP caller.
func (g *guard) presented(ctx context.Context) presented {
	md, _ := metadata.FromIncomingContext(ctx)
	p := presented{authorization: md.Get("authorization"), remote: g.remote(ctx)}
	if g.internal {
		p.cert = internalCertificate(md)
	} else {
		p.cert = peerCertificate(ctx)
	}
	return p
}

// bearer extracts the token of an authorization header.
func bearer(values []string) (string, error) {
	switch len(values) {
	case 0:
		return "", nil
	case 1:
	default:
		return "", errors.New("more than one authorization header")
	}
	scheme, token, ok := strings.Cut(values[0], " ")
	if !ok || !strings.EqualFold(scheme, "bearer") || strings.TrimSpace(token) == "" {
		return "", errors.New(`the authorization header must be "Bearer <token>"`)
	}
	return strings.TrimSpace(token), nil
}

// peerCertificate returns the verified client certificate of a TLS peer.
func peerCertificate(ctx context.Context) *x509.Certificate {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return nil
	}
	return info.State.VerifiedChains[0][0]
}

// remote is the caller's address, as the gateway reports it for HTTP
// calls.
func (g *guard) remote(ctx context.Context) string {
	if g.internal {
		md, _ := metadata.FromIncomingContext(ctx)
		if vals := md.Get(mdRemote); len(vals) == 1 {
			return vals[0]
		}
		return "http"
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}

// recover turns a panic of a handler into an Internal error, logged with
// its stack: one bad request must not stop the server.
func (g *guard) recover(method string, err *error) {
	if p := recover(); p != nil {
		g.log.Error("panic in a handler", "method", method, "panic", p, "stack", string(debug.Stack()))
		*err = status.Error(codes.Internal, "internal error (see the C2 log)")
	}
}

// decodingStream refuses a streamed message that did not decode.
type decodingStream struct{ grpc.ServerStream }

func (s *decodingStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	requestReceived(s.Context())
	return decodingError(m)
}

// contextStream is a ServerStream with another context.
type contextStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *contextStream) Context() context.Context { return s.ctx }

// auditedStream starts the audit of a streaming call when its request
// arrives, so that the record names the target.
type auditedStream struct {
	grpc.ServerStream
	g      *guard
	method string
	ctx    context.Context
	call   *auditCall
}

func (s *auditedStream) Context() context.Context { return s.ctx }

func (s *auditedStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if err == nil && s.call == nil {
		s.begin(m)
	}
	return err
}

func (s *auditedStream) begin(req any) {
	s.ctx, s.call = s.g.audit.begin(s.ctx, callerOf(s.ctx), s.method, auditTarget(req), s.g.remote(s.ctx))
}

package api

import (
	"context"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	"github.com/e4-iot/e4kit/c2/api/c2pb"
)

// Admission: who may send a request body. Both listeners authenticate a
// call from its headers, before its body is read (the HTTP handler chain
// before the gateway reads, the gRPC tap handle before the message is
// received), through gate: a caller without valid credentials costs a
// header, never a body.

// presented is what a caller shows before its body: the values of its
// authorization header, its verified client certificate (nil without
// one) and its address.
type presented struct {
	authorization []string
	cert          *x509.Certificate
	remote        string
}

// oidCommonName is the attribute type of a common name (CN).
var oidCommonName = asn1.ObjectIdentifier{2, 5, 4, 3}

// soleCommonName returns the one common name of a certificate's subject,
// read from its parsed attributes. A subject with several common names is
// refused: which one names the caller would depend on who reads it.
func soleCommonName(cert *x509.Certificate) (string, error) {
	var names []string
	for _, atv := range cert.Subject.Names {
		if atv.Type.Equal(oidCommonName) {
			v, ok := atv.Value.(string)
			if !ok {
				return "", errors.New("the client certificate's common name is not a string")
			}
			names = append(names, v)
		}
	}
	switch len(names) {
	case 0:
		return "", nil
	case 1:
		return names[0], nil
	}
	return "", fmt.Errorf("the client certificate's subject has %d common names; C2 accepts one", len(names))
}

// identify finds who calls: a bearer token, or else a client certificate
// mapped to a scope. Both listeners come here with the parsed certificate.
// Errors are status errors.
func (g *guard) identify(ctx context.Context, p presented, cacheOnly bool) (identity, error) {
	certID, certOK, err := g.certIdentity(p.cert)
	if err != nil {
		return identity{}, status.Error(codes.Unauthenticated, err.Error())
	}
	token, err := bearer(p.authorization)
	if err != nil {
		return identity{}, status.Error(codes.Unauthenticated, err.Error())
	}
	if token == "" && certOK {
		return certID, nil
	}
	id, err := g.auth.check(ctx, token, cacheOnly)
	switch {
	case err == nil:
		return id, nil
	case errors.Is(err, errNoToken), errors.Is(err, errUnknownToken), errors.Is(err, errRevoked),
		errors.Is(err, errExpired), errors.Is(err, errNotChecked):
		return identity{}, status.Error(codes.Unauthenticated, err.Error())
	}
	g.log.Error("checking a token", "err", err)
	return identity{}, status.Error(codes.Unavailable, "tokens cannot be checked now (database unavailable)")
}

// certIdentity maps a verified client certificate to a scope. It fails
// for a certificate whose subject has several common names.
func (g *guard) certIdentity(cert *x509.Certificate) (identity, bool, error) {
	if len(g.certScopes) == 0 || cert == nil {
		return identity{}, false, nil
	}
	cn, err := soleCommonName(cert)
	if err != nil {
		return identity{}, false, err
	}
	scope, ok := g.certScopes[cn]
	if !ok || cn == "" {
		return identity{}, false, nil
	}
	return identity{actor: "cert:" + cert.Subject.String(), scope: scope}, true, nil
}

// gate authenticates a call and counts the failures of its address: past
// the address's budget of failures, calls from it that present no cached
// token are refused with ResourceExhausted without a database read.
// Refusals are logged in aggregate (see refusalLog).
func (g *guard) gate(ctx context.Context, p presented, what string) (identity, error) {
	host := hostOf(p.remote)
	now := g.now()
	throttled := g.failures.exhausted(host, now)
	id, err := g.identify(ctx, p, throttled)
	if err == nil {
		return id, nil
	}
	if status.Code(err) != codes.Unauthenticated {
		return identity{}, err
	}
	if throttled || !g.failures.allow(host, now) {
		g.refusals.note(now, host, what, "too many failed authentications")
		return identity{}, status.Errorf(codes.ResourceExhausted,
			"too many unauthenticated calls from %s: wait, then send a valid token", host)
	}
	g.refusals.note(now, host, what, status.Convert(err).Message())
	return identity{}, err
}

// hostOf is the host of a host:port address (the address itself when it
// has no port).
func hostOf(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

// tap authenticates a call on the public gRPC listener from its headers,
// before its message is received, and reserves its share of the in-flight
// budget until the call ends. It runs on the connection's reading
// goroutine: a token missing from the cache costs one database read,
// bounded per address by the failure budget.
func (g *guard) tap(ctx context.Context, info *tap.Info) (context.Context, error) {
	method := info.FullMethodName
	if strings.HasPrefix(method, healthPrefix) {
		return ctx, nil
	}
	p := presented{authorization: info.Header.Get("authorization"), cert: peerCertificate(ctx)}
	if pr, ok := peer.FromContext(ctx); ok && pr.Addr != nil {
		p.remote = pr.Addr.String()
	}
	if _, err := g.gate(ctx, p, shortMethod(method)); err != nil {
		return ctx, err
	}
	size := g.requestAllowance(method)
	if !g.budget.tryAcquire(size) {
		return ctx, status.Errorf(codes.ResourceExhausted, "too many large requests in flight: retry later")
	}
	return g.startRequestPhase(ctx, method, size), nil
}

// smallRequestBytes is the share of the in-flight budget reserved for a
// call whose request carries no bulk data.
const smallRequestBytes = 64 << 10

// bulkMethods take requests that may be as large as MaxRequestBytes.
var bulkMethods = map[string]bool{
	c2pb.C2_ImportClients_FullMethodName:    true,
	c2pb.C2_ProtectMessage_FullMethodName:   true,
	c2pb.C2_UnprotectMessage_FullMethodName: true,
	c2pb.C2_AddMembers_FullMethodName:       true,
}

// longLivedMethods are streams whose small request is followed by a
// long life: their share of the budget returns once the request is in.
var longLivedMethods = map[string]bool{c2pb.C2_WatchEvents_FullMethodName: true}

// requestAllowance is the share of the in-flight budget a call reserves.
func (g *guard) requestAllowance(method string) int64 {
	if bulkMethods[method] {
		return g.maxRequest
	}
	return min(g.maxRequest, smallRequestBytes)
}

type requestPhaseKey struct{}

// requestPhase follows a gRPC call from its headers until its request
// message is in: a deadline on receiving it, and the budget share.
type requestPhase struct {
	timer        *time.Timer
	release      func()
	releaseEarly bool // release as soon as the request is in
}

// startRequestPhase arms the receive deadline of a call and releases its
// budget share when the call ends.
func (g *guard) startRequestPhase(ctx context.Context, method string, size int64) context.Context {
	rctx := newReceiveContext(ctx)
	var once sync.Once
	ph := &requestPhase{release: func() { once.Do(func() { g.budget.release(size) }) }, releaseEarly: longLivedMethods[method]}
	ph.timer = time.AfterFunc(g.bodyTimeout, rctx.expire)
	context.AfterFunc(rctx, func() { ph.timer.Stop(); ph.release() })
	return context.WithValue(rctx, requestPhaseKey{}, ph)
}

// receiveContext is the context of a gRPC call whose request must arrive
// in time. When it does not, the context ends with DeadlineExceeded, the
// error gRPC reports to the caller (a deadline that a received request
// lifts, which context.WithDeadline cannot do).
type receiveContext struct {
	context.Context
	cancel  context.CancelFunc
	expired atomic.Bool
}

func newReceiveContext(parent context.Context) *receiveContext {
	ctx, cancel := context.WithCancel(parent)
	return &receiveContext{Context: ctx, cancel: cancel}
}

// expire ends the context: the request did not arrive in time.
func (c *receiveContext) expire() {
	c.expired.Store(true)
	c.cancel()
}

// Err is DeadlineExceeded once expired.
func (c *receiveContext) Err() error {
	if err := c.Context.Err(); err != nil && c.expired.Load() {
		return context.DeadlineExceeded
	}
	return c.Context.Err()
}

// requestReceived ends the receive deadline of a call (its request is
// in) and, for a long-lived stream, returns its budget share.
func requestReceived(ctx context.Context) {
	ph, ok := ctx.Value(requestPhaseKey{}).(*requestPhase)
	if !ok {
		return
	}
	ph.timer.Stop()
	if ph.releaseEarly {
		ph.release()
	}
}

// internalCertificate reads the verified certificate the gateway passes
// on the in-memory connection.
func internalCertificate(md metadata.MD) *x509.Certificate {
	vals := md.Get(mdCertDER)
	if len(vals) != 1 {
		return nil
	}
	cert, err := x509.ParseCertificate([]byte(vals[0]))
	if err != nil {
		return nil
	}
	return cert
}

// failureLimiter rate limits failed authentications per address.
type failureLimiter struct{ l *limiters }

func newFailureLimiter(perSecond float64, burst int) *failureLimiter {
	return &failureLimiter{l: newLimiters(perSecond, burst)}
}

// allow takes one failure from host's budget, reporting whether there
// was one.
func (f *failureLimiter) allow(host string, now time.Time) bool { return f.l.allow(host, now) }

// exhausted reports whether host has no failure left, without taking one.
func (f *failureLimiter) exhausted(host string, now time.Time) bool {
	if f.l == nil {
		return false
	}
	f.l.mu.Lock()
	defer f.l.mu.Unlock()
	e, ok := f.l.byID[host]
	return ok && e.lim.TokensAt(now) < 1
}

// refusalLog aggregates the refusals of unauthenticated calls into one
// warning per interval, so that a flood of bad calls cannot flood the
// log.
type refusalLog struct {
	log      *slog.Logger
	interval time.Duration

	mu      sync.Mutex
	start   time.Time // of the current window; zero when it is empty
	count   int
	remotes map[string]int
	last    string // the last reason, as an example
	lastWhy string
}

// maxRemotesNamed bounds the addresses a summary names.
const maxRemotesNamed = 5

func newRefusalLog(log *slog.Logger, interval time.Duration) *refusalLog {
	return &refusalLog{log: log, interval: interval, remotes: make(map[string]int)}
}

// note counts one refusal, and logs the window's summary when it is
// older than the interval.
func (r *refusalLog) note(now time.Time, host, what, why string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.count == 0 {
		r.start = now
	}
	r.count++
	if _, ok := r.remotes[host]; ok || len(r.remotes) < 1000 {
		r.remotes[host]++
	}
	r.last, r.lastWhy = what, why
	if now.Sub(r.start) >= r.interval {
		r.flushLocked(now)
	}
}

// flush logs the summary of the current window if it is older than the
// interval, or whatever its age with force.
func (r *refusalLog) flush(now time.Time, force bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.count > 0 && (force || now.Sub(r.start) >= r.interval) {
		r.flushLocked(now)
	}
}

func (r *refusalLog) flushLocked(now time.Time) {
	top := make([]string, 0, maxRemotesNamed)
	for host, n := range r.remotes {
		if len(top) == maxRemotesNamed {
			break
		}
		top = append(top, fmt.Sprintf("%s (%d)", host, n))
	}
	r.log.Warn("unauthenticated calls refused", "count", r.count, "since", r.start.UTC().Format(time.RFC3339),
		"seconds", int(now.Sub(r.start).Seconds()), "addresses", len(r.remotes), "from", strings.Join(top, ", "),
		"last_call", r.last, "last_reason", r.lastWhy)
	r.count = 0
	clear(r.remotes)
}

// byteBudget bounds the bytes of the requests in flight on both
// listeners. It never waits: a request that does not fit is refused.
type byteBudget struct {
	mu   sync.Mutex
	used int64
	max  int64
}

func (b *byteBudget) tryAcquire(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > b.max {
		return false
	}
	b.used += n
	return true
}

func (b *byteBudget) release(n int64) {
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
}

package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/e4-iot/e4kit/c2/store"
)

// Access is the part of the server's access control that another front
// end on the same listener (the web interface, c2/web) uses: it checks
// tokens with the server's own cache, writes audit records the way API
// calls do, and manages tokens so that a revocation also ends the API
// streams of the token. Get it with Server.Access.
type Access struct {
	st      store.Store
	auth    *authenticator
	audit   *auditor
	streams *streamTracker
	limits  *limiters
	now     func() time.Time
}

// Caller is who signed in with a token, and what the token allows.
type Caller struct {
	// Actor is "token:NAME", as in the audit log.
	Actor     string
	TokenName string
	Scope     Scope
	// Expires is the token's expiry (zero: never).
	Expires time.Time
	hash    string
}

// ErrTokenRefused is returned (wrapped, with the reason) for a token that
// is unknown, revoked or expired.
var ErrTokenRefused = errors.New("token refused")

// Access returns the server's access control for other front ends.
func (s *Server) Access() *Access {
	return &Access{st: s.cfg.Store, auth: s.guard.auth, audit: s.guard.audit, streams: s.guard.streams, limits: s.guard.limits, now: s.cfg.Now}
}

// Check returns the caller a token identifies. A token that is not
// accepted gives an error wrapping ErrTokenRefused; any other error means
// tokens cannot be checked now.
func (a *Access) Check(ctx context.Context, secret string) (Caller, error) {
	id, err := a.auth.check(ctx, strings.TrimSpace(secret), false)
	return callerFrom(id, err)
}

// Allow takes one request from c's rate budget, the one its API calls
// take from too (Config.RatePerSecond and Burst, per token), and
// reports whether there was one.
func (a *Access) Allow(c Caller) bool { return a.limits.allow(c.Actor, a.now()) }

// Recheck checks that the token c signed in with still holds (not
// revoked, not expired). Answers are cached as for API calls (see
// Config.TokenCacheTTL); a revocation made through this server applies
// at once.
func (a *Access) Recheck(ctx context.Context, c Caller) error {
	if c.hash == "" {
		return fmt.Errorf("%w: no token", ErrTokenRefused)
	}
	_, err := callerFrom(a.auth.checkHash(ctx, c.hash, false))
	return err
}

func callerFrom(id identity, err error) (Caller, error) {
	if err != nil {
		if isRefusal(err) || errors.Is(err, errNoToken) {
			return Caller{}, fmt.Errorf("%w: %v", ErrTokenRefused, err)
		}
		return Caller{}, err
	}
	return Caller{Actor: id.actor, TokenName: id.tokenName, Scope: id.scope, Expires: id.expires, hash: id.token}, nil
}

// Audited prepares the audit record of a change c makes: the service
// transactions run with the returned context write it with the change
// (fail-closed, as for API calls), and finish, called with the change's
// error, settles it and returns the error to report (a status error with
// a message for people).
func (a *Access) Audited(ctx context.Context, c Caller, action, target, remote string) (context.Context, func(error) error) {
	ctx, call := a.audit.begin(ctx, identity{actor: c.Actor}, action, target, remote)
	return ctx, func(err error) error {
		return call.finish(ctx, toStatus(a.audit.log, action, err))
	}
}

// Record appends one audit record in its own transaction (a sign-in, a
// refused sign-in) and logs it.
func (a *Access) Record(ctx context.Context, rec store.AuditRecord) error {
	if rec.Time.IsZero() {
		rec.Time = a.now().UTC()
	}
	err := a.st.Update(ctx, func(tx store.Tx) error { return insertAudit(tx, rec) })
	if err == nil {
		a.audit.logLine(rec)
	}
	return err
}

// CreateToken creates a token for c (who must be an admin; the caller
// checks), audited, and returns its secret.
func (a *Access) CreateToken(ctx context.Context, c Caller, remote, name, scope string, ttl time.Duration) (string, store.Token, error) {
	ctx, finish := a.Audited(ctx, c, "CreateToken", "name="+clip(name, 300), remote)
	var (
		secret string
		tok    store.Token
	)
	err := checkTokenName(name)
	var sc Scope
	if err == nil {
		sc, err = ParseScope(scope)
	}
	if err == nil && (ttl < 0 || ttl > maxTokenTTL) {
		err = fmt.Errorf("the lifetime must be 0 (no expiry) to %v", maxTokenTTL)
	}
	if err != nil {
		return "", tok, finish(status.Error(codes.InvalidArgument, err.Error()))
	}
	err = a.st.Update(ctx, func(tx store.Tx) (err error) {
		if secret, tok, err = createToken(tx, NewToken{Name: name, Scope: sc, TTL: ttl, CreatedBy: c.Actor}, a.now()); err != nil {
			return err
		}
		return auditInTx(ctx, tx)
	})
	if errors.Is(err, store.ErrExists) {
		err = status.Errorf(codes.AlreadyExists, "a token named %q exists (names are never reused)", name)
	}
	return secret, tok, finish(err)
}

// RevokeToken revokes the token named name, audited; the streams it has
// open on the API end, and this server's cache forgets it.
func (a *Access) RevokeToken(ctx context.Context, c Caller, remote, name string) error {
	ctx, finish := a.Audited(ctx, c, "RevokeToken", "name="+clip(name, 300), remote)
	if err := checkTokenName(name); err != nil {
		return finish(status.Error(codes.InvalidArgument, err.Error()))
	}
	err := a.st.Update(ctx, func(tx store.Tx) error {
		ac, ok := tx.(store.AccessTx)
		if !ok {
			return status.Errorf(codes.Unimplemented, "the store (%T) keeps no tokens", tx)
		}
		if err := ac.RevokeToken(name, a.now().UTC()); err != nil {
			return err
		}
		return auditInTx(ctx, tx)
	})
	a.auth.forget()
	if errors.Is(err, store.ErrNotFound) {
		err = status.Errorf(codes.NotFound, "no token named %q", name)
	}
	if err == nil {
		a.streams.endToken(name, errRevoked)
	}
	return finish(err)
}

// Tokens lists the tokens (never their secrets), by name.
func (a *Access) Tokens(ctx context.Context) ([]store.Token, error) {
	var list []store.Token
	err := a.st.View(ctx, func(tx store.Tx) error {
		ac, ok := tx.(store.AccessTx)
		if !ok {
			return fmt.Errorf("the store (%T) keeps no tokens", tx)
		}
		var err error
		list, err = ac.ListTokens("", maxTokensListed)
		return err
	})
	return list, err
}

// AuditLog lists the audit records matching f, by id after afterID.
func (a *Access) AuditLog(ctx context.Context, f store.AuditFilter, afterID int64, limit int) ([]store.AuditRecord, error) {
	var list []store.AuditRecord
	err := a.st.View(ctx, func(tx store.Tx) error {
		ac, ok := tx.(store.AccessTx)
		if !ok {
			return fmt.Errorf("the store (%T) keeps no audit log", tx)
		}
		var err error
		list, err = ac.ListAudit(f, afterID, limit)
		return err
	})
	return list, err
}

// Mount serves h for the paths under prefix (such as "/ui/") on the
// HTTPS listener, beside the API and outside its bearer-token admission:
// h does its own authentication. Call it before Run.
func (s *Server) Mount(prefix string, h http.Handler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mounts == nil {
		s.mounts = make(map[string]http.Handler)
	}
	s.mounts[prefix] = h
}

// withMounts routes the mounted prefixes to their handlers and every
// other path to api.
func (s *Server) withMounts(api http.Handler) http.Handler {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.mounts) == 0 {
		return api
	}
	mux := http.NewServeMux()
	mux.Handle("/", api)
	for prefix, h := range s.mounts {
		mux.Handle(prefix, h)
	}
	return mux
}

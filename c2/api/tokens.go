package api

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/internal/apitoken"
)

// TokenPrefix starts every API token, so a leaked one is easy to spot
// (and to search for in a repository).
const TokenPrefix = apitoken.Prefix

// maxTokenNameLen bounds token names.
const maxTokenNameLen = 64

// checkTokenName accepts 1 to 64 letters, digits, '.', '_', '-' and '@'.
func checkTokenName(name string) error {
	if name == "" || len(name) > maxTokenNameLen {
		return fmt.Errorf("token name must be 1 to %d characters", maxTokenNameLen)
	}
	for _, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-@", r)
		if !ok {
			return fmt.Errorf("token name %q may hold only letters, digits, '.', '_', '-' and '@'", name)
		}
	}
	return nil
}

// NewToken is a token to create.
type NewToken struct {
	Name      string
	Scope     Scope
	TTL       time.Duration // zero: never expires
	CreatedBy string
}

// createToken stores a new token in tx and returns its secret.
func createToken(tx store.Tx, n NewToken, now time.Time) (string, store.Token, error) {
	a, ok := tx.(store.AccessTx)
	if !ok {
		return "", store.Token{}, fmt.Errorf("api: the store (%T) keeps no tokens", tx)
	}
	tok := store.Token{Name: n.Name, Scope: n.Scope.String(), CreatedBy: n.CreatedBy, CreatedAt: now}
	return apitoken.Insert(a, tok, n.TTL)
}

// identity is who made a call and what they may do.
type identity struct {
	actor string // "token:NAME" or "cert:SUBJECT"
	scope Scope
	// token is the hash of the caller's token ("" for a certificate),
	// tokenName its name and expires its expiry (zero: never): the
	// streams a token opens end when it is revoked or expires.
	token     string
	tokenName string
	expires   time.Time
}

// Why a token was refused; messages for the caller.
var (
	errNoToken      = errors.New("no API token: send \"authorization: Bearer <token>\" (e4 c2 token create makes one)")
	errUnknownToken = errors.New("unknown API token")
	errRevoked      = errors.New("this API token was revoked")
	errExpired      = errors.New("this API token has expired")
	// errNotChecked refuses a token that is not in the cache when the
	// caller's address has failed too often to cost a database read.
	errNotChecked = errors.New("API token not checked")
)

// authenticator checks tokens against the store, remembering answers for
// a short while so a busy caller does not cost a database read per call.
type authenticator struct {
	st  store.Store
	ttl time.Duration
	now func() time.Time

	mu    sync.Mutex
	cache map[string]cachedToken // by hash
}

type cachedToken struct {
	tok   store.Token
	until time.Time
}

// maxCachedTokens bounds the cache; it starts over when full.
const maxCachedTokens = 4096

func newAuthenticator(st store.Store, ttl time.Duration, now func() time.Time) *authenticator {
	return &authenticator{st: st, ttl: ttl, now: now, cache: make(map[string]cachedToken)}
}

// check returns the identity of a token, or why it is refused. With
// cacheOnly, a token that is not cached is refused with errNotChecked
// instead of being looked up.
func (a *authenticator) check(ctx context.Context, secret string, cacheOnly bool) (identity, error) {
	if secret == "" {
		return identity{}, errNoToken
	}
	if !strings.HasPrefix(secret, TokenPrefix) || len(secret) > 256 {
		return identity{}, errUnknownToken
	}
	return a.checkHash(ctx, string(apitoken.Hash(secret)), cacheOnly)
}

// checkHash is check for the hash of a token.
func (a *authenticator) checkHash(ctx context.Context, hash string, cacheOnly bool) (identity, error) {
	tok, err := a.lookup(ctx, []byte(hash), cacheOnly)
	if err != nil {
		return identity{}, err
	}
	now := a.now()
	switch {
	case !tok.RevokedAt.IsZero():
		return identity{}, errRevoked
	case !tok.ExpiresAt.IsZero() && !now.Before(tok.ExpiresAt):
		return identity{}, errExpired
	}
	scope, err := ParseScope(tok.Scope)
	if err != nil {
		return identity{}, fmt.Errorf("token %q: %w", tok.Name, err)
	}
	return identity{actor: "token:" + tok.Name, scope: scope, token: hash, tokenName: tok.Name, expires: tok.ExpiresAt}, nil
}

func (a *authenticator) lookup(ctx context.Context, hash []byte, cacheOnly bool) (store.Token, error) {
	key := string(hash)
	now := a.now()
	a.mu.Lock()
	c, ok := a.cache[key]
	a.mu.Unlock()
	if ok && now.Before(c.until) {
		return c.tok, nil
	}
	if cacheOnly {
		return store.Token{}, errNotChecked
	}
	var tok store.Token
	err := a.st.View(ctx, func(tx store.Tx) error {
		ac, ok := tx.(store.AccessTx)
		if !ok {
			return fmt.Errorf("api: the store (%T) keeps no tokens", tx)
		}
		var err error
		tok, err = ac.TokenByHash(hash)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return tok, errUnknownToken
	}
	if err != nil {
		return tok, err
	}
	a.mu.Lock()
	if len(a.cache) >= maxCachedTokens {
		clear(a.cache)
	}
	a.cache[key] = cachedToken{tok: tok, until: now.Add(a.ttl)}
	a.mu.Unlock()
	return tok, nil
}

// forget drops every cached answer, so a revocation made by this process
// applies to its next call. (Other replicas see it within their TTL.)
func (a *authenticator) forget() {
	a.mu.Lock()
	clear(a.cache)
	a.mu.Unlock()
}

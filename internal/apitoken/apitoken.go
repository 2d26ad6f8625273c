// Package apitoken mints C2 API tokens and hashes them for storage. It is
// shared by c2/api, which creates tokens on request, and internal/bootstrap,
// which creates a new deployment's first one.
package apitoken

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"time"

	"github.com/e4-iot/e4kit/c2/store"
)

// Prefix starts every API token, so a leaked one is easy to spot (and to
// search for in a repository).
const Prefix = "e4c2_"

// secretSize is the randomness of a token: 256 bits, so a plain SHA-256 is
// a safe way to store it (no password hashing needed).
const secretSize = 32

// New returns a fresh token secret.
func New() (string, error) {
	b := make([]byte, secretSize)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return Prefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// Hash is what the store keeps of a token.
func Hash(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// Insert mints a token described by tok (name, scope, creator, creation
// time), stores its hash in a, expiring ttl after its creation (never when
// ttl is zero), and returns its secret and the stored record.
func Insert(a store.AccessTx, tok store.Token, ttl time.Duration) (string, store.Token, error) {
	secret, err := New()
	if err != nil {
		return "", store.Token{}, err
	}
	tok.Hash = Hash(secret)
	tok.CreatedAt = tok.CreatedAt.UTC()
	if ttl > 0 {
		tok.ExpiresAt = tok.CreatedAt.Add(ttl)
	}
	return secret, tok, a.InsertToken(tok)
}

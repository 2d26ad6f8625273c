// Package bootstrap gives a new C2 deployment what it needs before anyone
// can call its API: a self-signed TLS certificate for development and a
// first admin token written to a file. `e4 c2 serve`, `e4 dev` and the
// tests use it; it is not part of the API a client programs against.
package bootstrap

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/e4-iot/e4kit/c2/api"
	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/internal/apitoken"
	"github.com/e4-iot/e4kit/internal/atomicfile"
)

// AdminToken gives a new deployment its first admin token: when the store
// holds no token at all, it creates one named "admin" and writes it to
// path (mode 0600, atomically). It reports whether it did. Without a token
// nobody could call the API, and without this file nobody could create
// one.
func AdminToken(ctx context.Context, st store.Store, path string) (bool, error) {
	var secret string
	err := st.Update(ctx, func(tx store.Tx) error {
		a, ok := tx.(store.AccessTx)
		if !ok {
			return fmt.Errorf("bootstrap: the store (%T) keeps no tokens", tx)
		}
		n, err := a.CountTokens()
		if err != nil || n > 0 {
			return err
		}
		var tok store.Token
		secret, tok, err = apitoken.Insert(a, store.Token{
			Name: "admin", Scope: api.ScopeAdmin.String(), CreatedBy: "system:bootstrap", CreatedAt: time.Now(),
		}, 0)
		if err != nil {
			return err
		}
		_, err = a.InsertAudit(store.AuditRecord{
			Time: tok.CreatedAt, Actor: "system:bootstrap", Action: "CreateToken", Target: "name=admin", Outcome: "ok",
			Detail: "first admin token, written to " + path,
		})
		return err
	})
	if err != nil || secret == "" {
		return false, err
	}
	if err := atomicfile.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		return true, fmt.Errorf("bootstrap: writing the first admin token: %w (it was created: revoke it with the database or start over)", err)
	}
	return true, nil
}

// ReadTokenFile reads a token written by AdminToken or by hand.
func ReadTokenFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

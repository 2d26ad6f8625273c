package sqlstore

import (
	"crypto/sha256"
	"fmt"
	"strings"
	"time"

	"github.com/e4-iot/e4kit/c2/store"
)

// API tokens and the audit log (store.AccessTx).

var _ store.AccessTx = (*tx)(nil)

const (
	tokenColumns = "name, hash, scope, created_by, created_at, expires_at, revoked_at"
	auditColumns = "id, at, actor, action, target, outcome, detail, remote"

	qInsertToken = "INSERT INTO api_tokens (" + tokenColumns + ") VALUES ($1, $2, $3, $4, $5, $6, NULL) ON CONFLICT DO NOTHING"
	qTokenByHash = "SELECT " + tokenColumns + " FROM api_tokens WHERE hash = $1"
	qListTokens  = "SELECT " + tokenColumns + " FROM api_tokens WHERE name > $1 ORDER BY name LIMIT $2"
	qCountTokens = "SELECT COUNT(*) FROM api_tokens"
	qRevokeToken = "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE name = $1"
	qInsertAudit = "INSERT INTO audit_log (at, actor, action, target, outcome, detail, remote) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id"
)

// accessQueries lists the fixed queries of this file, for preparing.
func accessQueries() []string {
	return []string{qInsertToken, qTokenByHash, qListTokens, qCountTokens, qRevokeToken, qInsertAudit}
}

// InsertToken adds a token, or fails with ErrExists when its name or hash
// is taken.
func (t *tx) InsertToken(tok store.Token) error {
	if err := checkToken(tok); err != nil {
		return err
	}
	n, err := t.exec(qInsertToken, tok.Name, tok.Hash, tok.Scope, tok.CreatedBy, t.at(tok.CreatedAt), t.optionalTime(tok.ExpiresAt))
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("%w: token %q", store.ErrExists, tok.Name)
	}
	return nil
}

func checkToken(tok store.Token) error {
	if err := checkName("token name", tok.Name); err != nil {
		return err
	}
	if len(tok.Hash) != sha256.Size {
		return fmt.Errorf("store: token hash has %d bytes, want %d", len(tok.Hash), sha256.Size)
	}
	if err := checkName("token scope", tok.Scope); err != nil {
		return err
	}
	return checkText("token creator", tok.CreatedBy)
}

// optionalTime binds the zero time as NULL.
func (t *tx) optionalTime(v time.Time) any {
	if v.IsZero() {
		return nil
	}
	return t.at(v)
}

// TokenByHash returns the token with that hash or ErrNotFound.
func (t *tx) TokenByHash(hash []byte) (store.Token, error) {
	if len(hash) != sha256.Size {
		return store.Token{}, fmt.Errorf("%w: no token has a hash of %d bytes", store.ErrNotFound, len(hash))
	}
	tok, found, err := one(t, scanToken, qTokenByHash, hash)
	if err == nil && !found {
		err = fmt.Errorf("%w: token", store.ErrNotFound)
	}
	return tok, err
}

// ListTokens lists tokens by name after the given name.
func (t *tx) ListTokens(after string, limit int) ([]store.Token, error) {
	if err := checkLimit(limit); err != nil {
		return nil, err
	}
	if err := checkText("token name", after); err != nil {
		return nil, err
	}
	return all(t, scanToken, qListTokens, after, limit)
}

// CountTokens counts every token.
func (t *tx) CountTokens() (int64, error) { return t.count(qCountTokens) }

// RevokeToken marks a token revoked, keeping an earlier revocation time.
func (t *tx) RevokeToken(name string, at time.Time) error {
	if err := checkName("token name", name); err != nil {
		return err
	}
	n, err := t.exec(qRevokeToken, name, t.at(at))
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("%w: token %q", store.ErrNotFound, name)
	}
	return nil
}

func scanToken(r rowScanner) (store.Token, error) {
	var (
		tok                       store.Token
		created, expires, revoked dbTime
	)
	if err := r.Scan(&tok.Name, &tok.Hash, &tok.Scope, &tok.CreatedBy, &created, &expires, &revoked); err != nil {
		return tok, err
	}
	if len(tok.Hash) != sha256.Size {
		return tok, fmt.Errorf("%w: api_tokens.hash of %q has %d bytes", errBadRow, tok.Name, len(tok.Hash))
	}
	tok.CreatedAt, tok.ExpiresAt, tok.RevokedAt = created.t, expires.t, revoked.t
	return tok, nil
}

// InsertAudit appends a record. Its texts are made storable (valid UTF-8,
// no NUL, bounded) rather than refused: an audit record must not fail for
// the odd bytes of a refused request.
func (t *tx) InsertAudit(r store.AuditRecord) (int64, error) {
	id, found, err := one(t, scanInt, qInsertAudit, t.at(r.Time),
		auditText(r.Actor), auditText(r.Action), auditText(r.Target),
		auditText(r.Outcome), auditText(r.Detail), auditText(r.Remote))
	if err == nil && !found {
		err = fmt.Errorf("store: %s: the audit insert returned no id", t.d.Name)
	}
	return id, err
}

// auditText is cleanReason, which also bounds the length.
func auditText(s string) string { return cleanReason(s) }

// ListAudit lists matching records by id after afterID.
func (t *tx) ListAudit(f store.AuditFilter, afterID int64, limit int) ([]store.AuditRecord, error) {
	if err := checkLimit(limit); err != nil {
		return nil, err
	}
	for _, s := range []string{f.Actor, f.Action, f.Target, f.Outcome} {
		if err := checkText("audit filter", s); err != nil {
			return nil, err
		}
	}
	conds := []string{"id > $1"}
	args := []any{afterID}
	add := func(cond string, v any) {
		args = append(args, v)
		conds = append(conds, fmt.Sprintf(cond, len(args)))
	}
	for _, eq := range []struct{ column, value string }{
		{"actor", f.Actor}, {"action", f.Action}, {"target", f.Target}, {"outcome", f.Outcome},
	} {
		if eq.value != "" {
			add(eq.column+" = $%d", eq.value)
		}
	}
	if !f.Since.IsZero() {
		add("at >= $%d", t.at(f.Since))
	}
	if !f.Until.IsZero() {
		add("at < $%d", t.at(f.Until))
	}
	args = append(args, limit)
	query := fmt.Sprintf("SELECT %s FROM audit_log WHERE %s ORDER BY id LIMIT $%d", auditColumns, strings.Join(conds, " AND "), len(args))
	return all(t, scanAudit, query, args...)
}

func scanAudit(r rowScanner) (store.AuditRecord, error) {
	var (
		rec store.AuditRecord
		at  dbTime
	)
	err := r.Scan(&rec.ID, &at, &rec.Actor, &rec.Action, &rec.Target, &rec.Outcome, &rec.Detail, &rec.Remote)
	rec.Time = at.t
	return rec, err
}

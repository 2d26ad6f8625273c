package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/e4"
)

// errTxEnded reports a Tx used after its Update or View returned.
var errTxEnded = errors.New("store: transaction used after its Update or View returned")

// tx is one database transaction behind a store.Tx.
type tx struct {
	ctx   context.Context
	sqlTx *sql.Tx
	d     *Dialect
	q     *sqlText
	cache *stmtCache
	stmts map[*sql.Stmt]*sql.Stmt // the pool's prepared statement -> this transaction's
	ended atomic.Bool
}

var _ store.Tx = (*tx)(nil)

func (t *tx) end() { t.ended.Store(true) }

// at encodes a time for the database.
func (t *tx) at(v time.Time) any { return encodeTime(t.d, v) }

// fail wraps a database error with the backend's name.
func (t *tx) fail(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("store: %s: %w", t.d.Name, err)
}

// stmt returns this transaction's handle on the prepared query, or nil
// when query is not prepared.
func (t *tx) stmt(query string) *sql.Stmt {
	st := t.cache.get(query)
	if st == nil {
		return nil
	}
	if ts, ok := t.stmts[st]; ok {
		return ts
	}
	if t.stmts == nil {
		t.stmts = make(map[*sql.Stmt]*sql.Stmt)
	}
	ts := t.sqlTx.StmtContext(t.ctx, st)
	t.stmts[st] = ts
	return ts
}

// exec runs a statement and returns how many rows it changed.
func (t *tx) exec(query string, args ...any) (int64, error) {
	if t.ended.Load() {
		return 0, errTxEnded
	}
	var (
		res sql.Result
		err error
	)
	if st := t.stmt(query); st != nil {
		res, err = st.ExecContext(t.ctx, args...)
	} else {
		res, err = t.sqlTx.ExecContext(t.ctx, query, args...)
	}
	if err != nil {
		return 0, t.fail(err)
	}
	n, err := res.RowsAffected()
	return n, t.fail(err)
}

// query runs a query returning rows.
func (t *tx) query(query string, args ...any) (*sql.Rows, error) {
	if t.ended.Load() {
		return nil, errTxEnded
	}
	var (
		rows *sql.Rows
		err  error
	)
	if st := t.stmt(query); st != nil {
		rows, err = st.QueryContext(t.ctx, args...)
	} else {
		rows, err = t.sqlTx.QueryContext(t.ctx, query, args...)
	}
	return rows, t.fail(err)
}

// one scans the single row of a query; found is false when there is none.
func one[T any](t *tx, scan func(rowScanner) (T, error), query string, args ...any) (v T, found bool, err error) {
	rows, err := t.query(query, args...)
	if err != nil {
		return v, false, err
	}
	defer rows.Close()
	if !rows.Next() {
		return v, false, t.fail(rows.Err())
	}
	if v, err = scan(rows); err != nil {
		return v, false, t.fail(err)
	}
	return v, true, t.fail(rows.Close())
}

// all scans every row of a query.
func all[T any](t *tx, scan func(rowScanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := t.query(query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, t.fail(err)
		}
		out = append(out, v)
	}
	return out, t.fail(rows.Err())
}

// exists reports whether a query finds a row.
func (t *tx) exists(query string, args ...any) (bool, error) {
	_, found, err := one(t, scanInt, query, args...)
	return found, err
}

// mustExist returns ErrNotFound naming what when the query finds no row.
func (t *tx) mustExist(what string, query string, args ...any) error {
	found, err := t.exists(query, args...)
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("%w: %s", store.ErrNotFound, what)
	}
	return nil
}

func (t *tx) clientMustExist(id e4.ID) error {
	return t.mustExist("client "+id.String(), qClientExists, id[:])
}

func (t *tx) topicMustExist(name string) error {
	return t.mustExist(fmt.Sprintf("topic %q", name), qTopicExists, name)
}

// counter reads a row count kept in the counters table.
func (t *tx) counter(name string) (int64, error) {
	n, found, err := one(t, scanInt, qCount, name)
	if err != nil {
		return 0, err
	}
	if !found || n < 0 {
		return 0, fmt.Errorf("%w: counter %q is missing or negative", errBadRow, name)
	}
	return n, nil
}

// addToCounter moves a row count by delta, in the transaction that adds
// or removes the rows.
func (t *tx) addToCounter(name string, delta int64) error {
	_, err := t.exec(qAddToCount, name, delta)
	return err
}

// count runs a COUNT query.
func (t *tx) count(query string, args ...any) (int64, error) {
	n, _, err := one(t, scanInt, query, args...)
	return n, err
}

func scanInt(r rowScanner) (int64, error) {
	var n int64
	err := r.Scan(&n)
	return n, err
}

func scanString(r rowScanner) (string, error) {
	var s string
	err := r.Scan(&s)
	return s, err
}

// idScanner scans a 16-byte id column.
func idScanner(column string) func(rowScanner) (e4.ID, error) {
	return func(r rowScanner) (e4.ID, error) {
		var b []byte
		if err := r.Scan(&b); err != nil {
			return e4.ID{}, err
		}
		return toID(b, column)
	}
}

func scanBlob(r rowScanner) ([]byte, error) {
	var b []byte
	err := r.Scan(&b)
	return b, err
}

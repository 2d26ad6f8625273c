package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/e4-iot/e4kit/c2/store"
)

// maxAttempts bounds how often a conflicting transaction is run again.
const maxAttempts = 30

// Store is a store.Store over one database. Writes go through writer and
// reads (View) through reader, which may be the same pool.
type Store struct {
	d       Dialect
	q       *sqlText
	writer  *sql.DB
	reader  *sql.DB
	wstmts  *stmtCache
	rstmts  *stmtCache
	closing sync.Once
}

var _ store.Store = (*Store)(nil)

// Open migrates the database with the numbered .sql files of migrations,
// prepares the fixed queries when the dialect asks for it, and returns a
// Store that owns writer and reader (Close closes them, also when Open
// fails).
func Open(ctx context.Context, d Dialect, writer, reader *sql.DB, migrations fs.FS) (*Store, error) {
	s := &Store{d: d, q: newSQLText(&d), writer: writer, reader: reader}
	if err := s.open(ctx, migrations); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) open(ctx context.Context, migrations fs.FS) error {
	if err := migrate(ctx, s.writer, s.d, migrations); err != nil {
		return err
	}
	if !s.d.CacheStatements {
		return nil
	}
	var err error
	if s.wstmts, err = prepareAll(ctx, s.writer, s.q.prepared()); err != nil {
		return fmt.Errorf("store: %s: %w", s.d.Name, err)
	}
	if s.reader == s.writer {
		s.rstmts = s.wstmts
		return nil
	}
	if s.rstmts, err = prepareAll(ctx, s.reader, s.q.prepared()); err != nil {
		return fmt.Errorf("store: %s: %w", s.d.Name, err)
	}
	return nil
}

// Update runs fn in a read-write transaction, again from the start when the
// database reports a conflict with a concurrent transaction.
func (s *Store) Update(ctx context.Context, fn func(tx store.Tx) error) error {
	return s.retry(ctx, func() error {
		return s.run(ctx, s.writer, s.wstmts, s.d.UpdateOptions, func(t *tx) error { return fn(t) })
	})
}

// View runs fn in a read-only transaction that sees one snapshot.
func (s *Store) View(ctx context.Context, fn func(tx store.Tx) error) error {
	return s.retry(ctx, func() error {
		return s.run(ctx, s.reader, s.rstmts, s.d.ViewOptions, func(t *tx) error { return fn(t) })
	})
}

// run runs fn in one transaction on db and commits it if fn succeeds.
func (s *Store) run(ctx context.Context, db *sql.DB, cache *stmtCache, opts *sql.TxOptions, fn func(t *tx) error) error {
	sqlTx, err := db.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("store: %s: begin: %w", s.d.Name, err)
	}
	t := &tx{ctx: ctx, sqlTx: sqlTx, d: &s.d, q: s.q, cache: cache}
	committed := false
	defer func() {
		t.end()
		if !committed {
			_ = sqlTx.Rollback() // also when fn panics
		}
	}()
	if err := fn(t); err != nil {
		return err
	}
	committed = true
	if err := sqlTx.Commit(); err != nil {
		return fmt.Errorf("store: %s: commit: %w", s.d.Name, err)
	}
	return nil
}

// retry runs op until it succeeds, fails for a reason other than a
// conflict, or has been tried maxAttempts times.
func (s *Store) retry(ctx context.Context, op func() error) error {
	for attempt := 1; ; attempt++ {
		err := op()
		if err == nil || s.d.Retryable == nil || !s.d.Retryable(err) || attempt == maxAttempts {
			return err
		}
		if err := sleep(ctx, backoff(attempt)); err != nil {
			return err
		}
	}
}

// backoff spreads the next attempts of conflicting transactions apart, up
// to 100 ms.
func backoff(attempt int) time.Duration {
	ceiling := time.Millisecond << min(attempt, 7)
	return rand.N(min(ceiling, 100*time.Millisecond)) + time.Millisecond
}

func sleep(ctx context.Context, d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}

// Ping checks that both pools reach the database.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.writer.PingContext(ctx); err != nil {
		return fmt.Errorf("store: %s: %w", s.d.Name, err)
	}
	if err := s.reader.PingContext(ctx); err != nil {
		return fmt.Errorf("store: %s: %w", s.d.Name, err)
	}
	return nil
}

// maxDamageReported bounds the damage CheckIntegrity describes.
const maxDamageReported = 5

// CheckIntegrity reads the whole database file looking for damage (a page
// that is not what SQLite wrote), with the dialect's IntegrityCheck; it is
// nil for a database without one (PostgreSQL checks its own pages).
func (s *Store) CheckIntegrity(ctx context.Context) error {
	if s.d.IntegrityCheck == "" {
		return nil
	}
	rows, err := s.reader.QueryContext(ctx, s.d.IntegrityCheck)
	if err != nil {
		return fmt.Errorf("store: %s: integrity check: %w", s.d.Name, err)
	}
	defer rows.Close()
	var damage []string
	for rows.Next() && len(damage) < maxDamageReported {
		var line string
		if err := rows.Scan(&line); err != nil {
			return fmt.Errorf("store: %s: integrity check: %w", s.d.Name, err)
		}
		if line != "ok" {
			damage = append(damage, cleanReason(line))
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store: %s: integrity check: %w", s.d.Name, err)
	}
	if len(damage) > 0 {
		return fmt.Errorf("store: %s: the database file is damaged: %s", s.d.Name, strings.Join(damage, "; "))
	}
	return nil
}

// Close closes the prepared statements and the pools.
func (s *Store) Close() error {
	var errs []error
	s.closing.Do(func() {
		if s.wstmts != nil {
			errs = append(errs, s.wstmts.close())
		}
		if s.rstmts != nil && s.rstmts != s.wstmts {
			errs = append(errs, s.rstmts.close())
		}
		errs = append(errs, s.writer.Close())
		if s.reader != s.writer {
			errs = append(errs, s.reader.Close())
		}
	})
	return errors.Join(errs...)
}

// stmtCache holds the statements of one pool prepared at Open. It is
// filled before the store is used, because preparing needs a connection of
// the pool and the writer's only connection is busy inside Update; it is
// read-only afterwards.
type stmtCache struct {
	m map[string]*sql.Stmt
}

// prepareAll prepares each query on db.
func prepareAll(ctx context.Context, db *sql.DB, queries []string) (*stmtCache, error) {
	c := &stmtCache{m: make(map[string]*sql.Stmt, len(queries))}
	for _, q := range queries {
		if _, ok := c.m[q]; ok {
			continue
		}
		st, err := db.PrepareContext(ctx, q)
		if err != nil {
			_ = c.close()
			return nil, fmt.Errorf("preparing %q: %w", q, err)
		}
		c.m[q] = st
	}
	return c, nil
}

// get returns the prepared statement of query, or nil.
func (c *stmtCache) get(query string) *sql.Stmt {
	if c == nil {
		return nil
	}
	return c.m[query]
}

func (c *stmtCache) close() error {
	var errs []error
	for _, st := range c.m {
		errs = append(errs, st.Close())
	}
	return errors.Join(errs...)
}

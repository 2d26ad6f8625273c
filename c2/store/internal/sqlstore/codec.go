package sqlstore

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/e4"
)

// What goes into the database is checked before it is written, and what
// comes out is checked again: a row edited by hand or damaged must give an
// error, never a panic or a silently wrong key.

// errBadRow reports a row that breaks what the store writes.
var errBadRow = errors.New("store: corrupt row")

// maxReasonLen bounds the error text kept with a command.
const maxReasonLen = 2048

// encodeTime converts v for the dialect, in UTC at microsecond precision.
func encodeTime(d *Dialect, v time.Time) any {
	return d.EncodeTime(v.UTC().Truncate(time.Microsecond))
}

// dbTime scans a time column: Unix microseconds (SQLite), a time.Time
// (PostgreSQL), or NULL for the zero time.
type dbTime struct{ t time.Time }

// Scan implements sql.Scanner.
func (d *dbTime) Scan(v any) error {
	switch x := v.(type) {
	case nil:
		d.t = time.Time{}
	case int64:
		d.t = time.UnixMicro(x).UTC()
	case time.Time:
		d.t = x.UTC()
	default:
		return fmt.Errorf("%w: a time column holds a %T", errBadRow, v)
	}
	return nil
}

// toID converts a 16-byte column value.
func toID(b []byte, column string) (e4.ID, error) {
	var id e4.ID
	if len(b) != len(id) {
		return id, fmt.Errorf("%w: %s has %d bytes, want %d", errBadRow, column, len(b), len(id))
	}
	return e4.ID(b), nil
}

// orNil returns nil for an empty blob, so that NULL and empty compare the
// same whichever database they came from.
func orNil(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// notNil returns b, or an empty blob for a NOT NULL column.
func notNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// checkText refuses what a text column of PostgreSQL cannot hold (invalid
// UTF-8, NUL) so that both backends accept the same strings.
func checkText(field, s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("store: %s is not valid UTF-8", field)
	}
	if strings.IndexByte(s, 0) >= 0 {
		return fmt.Errorf("store: %s contains a NUL byte", field)
	}
	return nil
}

// checkName is checkText for a key: it must not be empty either.
func checkName(field, s string) error {
	if s == "" {
		return fmt.Errorf("store: %s is empty", field)
	}
	return checkText(field, s)
}

// cleanReason makes an error text storable: valid UTF-8, no NUL, bounded.
func cleanReason(s string) string {
	s = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
	if len(s) <= maxReasonLen {
		return s
	}
	cut := maxReasonLen
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// checkLimit refuses a page size that cannot be a page.
func checkLimit(limit int) error {
	if limit <= 0 {
		return fmt.Errorf("store: page size %d is not positive", limit)
	}
	return nil
}

func checkClient(c store.Client) error {
	if c.ID == (e4.ID{}) {
		return errors.New("store: the all-zero client id is reserved (it starts the first page of a list)")
	}
	return checkText("client name", c.Name)
}

func checkTopic(t store.Topic) error {
	if err := checkName("topic name", t.Name); err != nil {
		return err
	}
	return checkVersion(t.KeyVersion)
}

func checkVersion(v uint64) error {
	if v > math.MaxInt64 {
		return fmt.Errorf("store: topic key version %d is too large", v)
	}
	return nil
}

func checkCommand(c store.Command) error {
	if err := checkText("command kind", c.Kind); err != nil {
		return err
	}
	return checkText("command target", c.Target)
}

// checkFilter refuses an unknown state.
func checkFilter(f store.CommandFilter) error {
	if f.State != "" && !knownState(f.State) {
		return fmt.Errorf("store: unknown command state %q", f.State)
	}
	return checkText("command target", f.Target)
}

func knownState(s store.CommandState) bool {
	return s == store.CommandPending || s == store.CommandSent || s == store.CommandFailed || s == store.CommandSuperseded
}

// rowScanner is *sql.Row or *sql.Rows.
type rowScanner interface{ Scan(dest ...any) error }

func scanClient(r rowScanner) (store.Client, error) {
	var (
		c       store.Client
		id      []byte
		created dbTime
	)
	if err := r.Scan(&id, &c.Name, &c.SealedKey, &c.PublicKey, &created); err != nil {
		return c, err
	}
	var err error
	if c.ID, err = toID(id, "clients.id"); err != nil {
		return c, err
	}
	c.SealedKey, c.PublicKey, c.CreatedAt = orNil(c.SealedKey), orNil(c.PublicKey), created.t
	return c, nil
}

func scanTopic(r rowScanner) (store.Topic, error) {
	var (
		t                store.Topic
		hash             []byte
		version          int64
		created, rotated dbTime
	)
	if err := r.Scan(&t.Name, &hash, &t.SealedKey, &version, &created, &rotated, &t.PrevSealedKey); err != nil {
		return t, err
	}
	if len(hash) != len(t.Hash) {
		return t, fmt.Errorf("%w: topics.hash of %q has %d bytes, want %d", errBadRow, t.Name, len(hash), len(t.Hash))
	}
	if version < 0 {
		return t, fmt.Errorf("%w: topics.key_version of %q is %d", errBadRow, t.Name, version)
	}
	t.Hash, t.KeyVersion = e4.TopicHash(hash), uint64(version)
	t.SealedKey, t.PrevSealedKey, t.CreatedAt, t.RotatedAt = orNil(t.SealedKey), orNil(t.PrevSealedKey), created.t, rotated.t
	return t, nil
}

func scanCommand(r rowScanner) (store.Command, error) {
	var (
		c                   store.Command
		id, client          []byte
		state               string
		attempts            int64
		next, created, sent dbTime
		acked               dbTime
	)
	err := r.Scan(&c.Seq, &id, &client, &c.Kind, &c.Target, &c.SealedPayload, &state, &attempts,
		&next, &c.LastError, &created, &sent, &acked)
	if err != nil {
		return c, err
	}
	if len(id) != len(c.ID) {
		return c, fmt.Errorf("%w: outbox.id of seq %d has %d bytes, want %d", errBadRow, c.Seq, len(id), len(c.ID))
	}
	c.ID = store.CommandID(id)
	if c.ClientID, err = toID(client, "outbox.client_id"); err != nil {
		return c, err
	}
	c.State = store.CommandState(state)
	if !knownState(c.State) || attempts < 0 || attempts > math.MaxInt32 {
		return c, fmt.Errorf("%w: outbox seq %d has state %q and %d attempts", errBadRow, c.Seq, state, attempts)
	}
	c.Attempts, c.SealedPayload = int(attempts), orNil(c.SealedPayload)
	c.NextAttemptAt, c.CreatedAt, c.SentAt, c.AckedAt = next.t, created.t, sent.t, acked.t
	return c, nil
}

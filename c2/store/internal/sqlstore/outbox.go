package sqlstore

import (
	"fmt"
	"strings"

	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/e4"
)

// GetSetting returns a named value or ErrNotFound.
func (t *tx) GetSetting(name string) ([]byte, error) {
	if err := checkName("setting name", name); err != nil {
		return nil, err
	}
	v, found, err := one(t, scanBlob, qGetSetting, name)
	if err == nil && !found {
		err = fmt.Errorf("%w: setting %q", store.ErrNotFound, name)
	}
	return orNil(v), err
}

// PutSetting sets a named value, replacing any previous one.
func (t *tx) PutSetting(name string, value []byte) error {
	if err := checkName("setting name", name); err != nil {
		return err
	}
	_, err := t.exec(qPutSetting, name, notNil(value))
	return err
}

// EnqueueCommands appends commands in slice order, so their seqs grow in
// that order; if any id is already there (or twice in cmds) it appends
// none (checked before writing, as InsertClients does).
func (t *tx) EnqueueCommands(cmds []store.Command) error {
	ids := make([][]byte, len(cmds))
	for i := range cmds {
		if err := checkCommand(cmds[i]); err != nil {
			return fmt.Errorf("command %d of %d: %w", i+1, len(cmds), err)
		}
		ids[i] = cmds[i].ID[:]
	}
	if len(cmds) == 0 {
		return nil
	}
	if err := t.refuseTaken(ids, t.q.commandsExist, "commands"); err != nil {
		return err
	}
	inserted, err := t.insertCommandRows(cmds)
	if err != nil {
		return err
	}
	if inserted != int64(len(cmds)) {
		return fmt.Errorf("%w: %d of %d command ids enqueued concurrently", store.ErrExists, int64(len(cmds))-inserted, len(cmds))
	}
	return nil
}

func (t *tx) insertCommandRows(cmds []store.Command) (int64, error) {
	var inserted int64
	args := make([]any, 0, 7*maxCommandRows)
	for _, n := range batches(len(cmds), maxCommandRows) {
		args = args[:0]
		for i := range cmds[:n] {
			c := &cmds[i]
			args = append(args, c.ID[:], c.ClientID[:], c.Kind, c.Target, notNil(c.SealedPayload),
				t.at(c.NextAttemptAt), t.at(c.CreatedAt))
		}
		k, err := t.exec(t.q.enqueue[n], args...)
		if err != nil {
			return 0, err
		}
		inserted += k
		cmds = cmds[n:]
	}
	return inserted, nil
}

// GetCommand returns an outbox entry or ErrNotFound.
func (t *tx) GetCommand(id store.CommandID) (store.Command, error) {
	c, found, err := one(t, scanCommand, qGetCommand, id[:])
	if err == nil && !found {
		err = fmt.Errorf("%w: command %x", store.ErrNotFound, id[:])
	}
	return c, err
}

// ListCommands lists matching commands by seq after afterSeq.
func (t *tx) ListCommands(f store.CommandFilter, afterSeq int64, limit int) ([]store.Command, error) {
	if err := checkLimit(limit); err != nil {
		return nil, err
	}
	if err := checkFilter(f); err != nil {
		return nil, err
	}
	conds, args := filterConditions(f, 2)
	query := listCommandsQuery(conds, len(args))
	args = append(append([]any{afterSeq}, args...), limit)
	return all(t, scanCommand, query, args...)
}

// CountCommands counts matching commands.
func (t *tx) CountCommands(f store.CommandFilter) (int64, error) {
	if err := checkFilter(f); err != nil {
		return 0, err
	}
	conds, args := filterConditions(f, 1)
	return t.count(countCommandsQuery(conds), args...)
}

// filterConditions turns a filter into SQL conditions with placeholders
// numbered from first, and their arguments. The state, checked against the
// known ones, is written literally so that the planner can use the partial
// indexes on pending and failed commands.
func filterConditions(f store.CommandFilter, first int) ([]string, []any) {
	var (
		conds []string
		args  []any
	)
	add := func(column string, v any) {
		conds = append(conds, fmt.Sprintf("%s = $%d", column, first+len(args)))
		args = append(args, v)
	}
	if f.ClientID != nil {
		add("client_id", f.ClientID[:])
	}
	if f.State != "" {
		conds = append(conds, "state = '"+string(f.State)+"'")
	}
	if f.Target != "" {
		add("target", f.Target)
	}
	return conds, args
}

// listCommandsQuery selects commands after seq $1 meeting conds, which use
// the nargs parameters after it; the limit is the last parameter.
func listCommandsQuery(conds []string, nargs int) string {
	where := strings.Join(append([]string{"seq > $1"}, conds...), " AND ")
	return fmt.Sprintf("SELECT %s FROM outbox WHERE %s ORDER BY seq LIMIT $%d", commandColumns, where, nargs+2)
}

// countCommandsQuery counts the commands meeting conds.
func countCommandsQuery(conds []string) string {
	if len(conds) == 0 {
		return "SELECT COUNT(*) FROM outbox"
	}
	return "SELECT COUNT(*) FROM outbox WHERE " + strings.Join(conds, " AND ")
}

// commandFilterQueries returns the list and count queries of every filter
// shape, for preparing.
func commandFilterQueries() []string {
	var qs []string
	for _, state := range []store.CommandState{"", store.CommandPending, store.CommandSent, store.CommandFailed, store.CommandSuperseded} {
		for mask := range 4 {
			f := store.CommandFilter{State: state}
			if mask&1 != 0 {
				f.ClientID = new(e4.ID)
			}
			if mask&2 != 0 {
				f.Target = "t"
			}
			listConds, args := filterConditions(f, 2)
			countConds, _ := filterConditions(f, 1)
			qs = append(qs, listCommandsQuery(listConds, len(args)), countCommandsQuery(countConds))
		}
	}
	return qs
}

// qUpdatePayload re-seals a command's payload, whatever its state.
const qUpdatePayload = "UPDATE outbox SET payload = $2 WHERE id = $1"

// UpdateCommandPayload replaces a command's sealed payload.
func (t *tx) UpdateCommandPayload(id store.CommandID, sealedPayload []byte) error {
	if len(sealedPayload) == 0 {
		return fmt.Errorf("store: command %x: empty payload", id[:])
	}
	n, err := t.exec(qUpdatePayload, id[:], sealedPayload)
	if err == nil && n == 0 {
		err = fmt.Errorf("%w: command %x", store.ErrNotFound, id[:])
	}
	return err
}

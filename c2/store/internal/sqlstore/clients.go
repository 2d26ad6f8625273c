package sqlstore

import (
	"fmt"
	"slices"

	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/e4"
)

func (t *tx) clientArgs(args []any, c *store.Client) []any {
	return append(args, c.ID[:], c.Name, orNil(c.SealedKey), orNil(c.PublicKey), t.at(c.CreatedAt))
}

// InsertClient adds a client, or fails with ErrExists.
func (t *tx) InsertClient(c store.Client) error {
	if err := checkClient(c); err != nil {
		return err
	}
	n, err := t.exec(qInsertClient, t.clientArgs(make([]any, 0, 5), &c)...)
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("%w: client %s", store.ErrExists, c.ID)
	}
	return t.addToCounter("clients", 1)
}

// InsertClients adds clients with multi-row inserts; if any id is already
// there (or twice in cs) it inserts none. It checks the ids before it
// writes rather than undoing a partial insert: a savepoint would make
// SQLite copy every page the import touches into its sub-journal.
func (t *tx) InsertClients(cs []store.Client) error {
	ids := make([][]byte, len(cs))
	for i := range cs {
		if err := checkClient(cs[i]); err != nil {
			return fmt.Errorf("client %d of %d: %w", i+1, len(cs), err)
		}
		ids[i] = cs[i].ID[:]
	}
	if len(cs) == 0 {
		return nil
	}
	if err := t.refuseTaken(ids, t.q.clientsExist, "clients"); err != nil {
		return err
	}
	inserted, err := t.insertClientRows(cs)
	if err != nil {
		return err
	}
	if inserted != int64(len(cs)) {
		// Only a concurrent transaction can get here (and PostgreSQL
		// reports a serialization failure first): the caller's Update
		// returns this error and rolls back.
		return fmt.Errorf("%w: %d of %d clients inserted concurrently", store.ErrExists, int64(len(cs))-inserted, len(cs))
	}
	return t.addToCounter("clients", int64(len(cs)))
}

// refuseTaken returns ErrExists if ids repeat or any is found by the
// IN-list queries of exist (by size).
func (t *tx) refuseTaken(ids [][]byte, exist map[int]string, what string) error {
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		if seen[string(id)] {
			return fmt.Errorf("%w: %x twice in a batch of %s (none inserted)", store.ErrExists, id, what)
		}
		seen[string(id)] = true
	}
	args := make([]any, 0, maxIDs)
	for chunk := range slices.Chunk(ids, maxIDs) {
		n := roundUp(len(chunk))
		args = args[:0]
		for i := range n {
			args = append(args, chunk[min(i, len(chunk)-1)])
		}
		taken, err := all(t, scanBlob, exist[n], args...)
		if err != nil {
			return err
		}
		if len(taken) > 0 {
			return fmt.Errorf("%w: %d of a batch of %d %s, such as %x (none inserted)", store.ErrExists, len(taken), len(ids), what, taken[0])
		}
	}
	return nil
}

// insertClientRows inserts cs, skipping ids already there, and returns how
// many rows went in.
func (t *tx) insertClientRows(cs []store.Client) (int64, error) {
	var inserted int64
	args := make([]any, 0, 5*maxClientRows)
	for _, n := range batches(len(cs), maxClientRows) {
		args = args[:0]
		for i := range cs[:n] {
			args = t.clientArgs(args, &cs[i])
		}
		k, err := t.exec(t.q.insertClients[n], args...)
		if err != nil {
			return 0, err
		}
		inserted += k
		cs = cs[n:]
	}
	return inserted, nil
}

// GetClient returns a client or ErrNotFound.
func (t *tx) GetClient(id e4.ID) (store.Client, error) {
	c, found, err := one(t, scanClient, qGetClient, id[:])
	if err == nil && !found {
		err = fmt.Errorf("%w: client %s", store.ErrNotFound, id)
	}
	return c, err
}

// UpdateClientKey replaces both keys of a client.
func (t *tx) UpdateClientKey(id e4.ID, sealedKey, publicKey []byte) error {
	n, err := t.exec(qUpdateKey, id[:], orNil(sealedKey), orNil(publicKey))
	if err == nil && n == 0 {
		err = fmt.Errorf("%w: client %s", store.ErrNotFound, id)
	}
	return err
}

// DeleteClient removes a client; foreign keys remove its memberships and
// links, in both directions. Its outbox entries stay.
func (t *tx) DeleteClient(id e4.ID) error {
	n, err := t.exec(qDeleteClient, id[:])
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("%w: client %s", store.ErrNotFound, id)
	}
	return t.addToCounter("clients", -1)
}

// ListClients returns up to limit clients with ids after after, by id.
func (t *tx) ListClients(after e4.ID, limit int) ([]store.Client, error) {
	if err := checkLimit(limit); err != nil {
		return nil, err
	}
	return all(t, scanClient, qListClients, after[:], limit)
}

// CountClients reads the client counter, kept up to date by every insert
// and delete, so that counting does not scan the table.
func (t *tx) CountClients() (int64, error) { return t.counter("clients") }

// AddLink records that target follows source's public key.
func (t *tx) AddLink(source, target e4.ID) error {
	if err := t.clientMustExist(source); err != nil {
		return err
	}
	if err := t.clientMustExist(target); err != nil {
		return err
	}
	n, err := t.exec(qAddLink, source[:], target[:])
	if err == nil && n == 0 {
		err = fmt.Errorf("%w: link from %s to %s", store.ErrExists, source, target)
	}
	return err
}

// RemoveLink removes a link or fails with ErrNotFound.
func (t *tx) RemoveLink(source, target e4.ID) error {
	n, err := t.exec(qRemoveLink, source[:], target[:])
	if err == nil && n == 0 {
		err = fmt.Errorf("%w: link from %s to %s", store.ErrNotFound, source, target)
	}
	return err
}

// LinkTargets lists the clients linked from source, by id.
func (t *tx) LinkTargets(source, after e4.ID, limit int) ([]e4.ID, error) {
	if err := checkLimit(limit); err != nil {
		return nil, err
	}
	ids, err := all(t, idScanner("links.target"), qLinkTargets, source[:], after[:], limit)
	if err == nil && len(ids) == 0 {
		err = t.clientMustExist(source)
	}
	return ids, err
}

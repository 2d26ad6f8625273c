package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/e4-iot/e4kit/c2/store"
)

// dispatch runs fn in a write transaction for the outbox methods, again
// when the database reports a conflict.
func (s *Store) dispatch(ctx context.Context, fn func(t *tx) error) error {
	return s.retry(ctx, func() error {
		return s.run(ctx, s.writer, s.wstmts, s.d.DispatchOptions, fn)
	})
}

// ClaimCommands leases the oldest claimable commands (see store.Store).
// The lease is taken in a transaction, so a row that cannot be read back
// leaves no lease behind.
func (s *Store) ClaimCommands(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int) ([]store.Command, error) {
	if err := checkName("lease owner", owner); err != nil {
		return nil, err
	}
	if lease <= 0 {
		return nil, fmt.Errorf("store: lease %v is not positive", lease)
	}
	if err := checkLimit(limit); err != nil {
		return nil, err
	}
	var claimed []store.Command
	err := s.dispatch(ctx, func(t *tx) error {
		var err error
		claimed, err = all(t, scanCommand, s.q.claim, owner, t.at(now.Add(lease)), t.at(now), limit)
		return err
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(claimed, func(a, b store.Command) int { return compareInt(a.Seq, b.Seq) })
	return claimed, nil
}

func compareInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// MarkSent settles the commands owner holds as sent; the others are
// reported, after the rest were settled, with ErrLeaseLost (or ErrNotFound
// for ids that are not in the outbox).
func (s *Store) MarkSent(ctx context.Context, owner string, ids []store.CommandID, sentAt time.Time) error {
	if err := checkName("lease owner", owner); err != nil {
		return err
	}
	ids = unique(ids)
	if len(ids) == 0 {
		return nil
	}
	var settleErr error
	err := s.dispatch(ctx, func(t *tx) error {
		missing, err := t.markSent(owner, ids, sentAt)
		if err != nil {
			return err
		}
		settleErr, err = t.unsettled(missing)
		return err
	})
	if err != nil {
		return err
	}
	return settleErr
}

// markSent settles ids in IN-list batches and returns those it could not.
func (t *tx) markSent(owner string, ids []store.CommandID, sentAt time.Time) ([]store.CommandID, error) {
	settled := make(map[store.CommandID]bool, len(ids))
	for chunk := range slices.Chunk(ids, maxIDs) {
		n := roundUp(len(chunk))
		args := append(make([]any, 0, 2+n), t.at(sentAt), owner)
		args = appendPaddedIDs(args, chunk, n)
		done, err := all(t, commandIDScanner, t.q.markSent[n], args...)
		if err != nil {
			return nil, err
		}
		for _, id := range done {
			settled[id] = true
		}
	}
	var missing []store.CommandID
	for _, id := range ids {
		if !settled[id] {
			missing = append(missing, id)
		}
	}
	return missing, nil
}

// unsettled explains why commands were not settled: ErrNotFound for ids
// not in the outbox, ErrLeaseLost for the others. It returns nil for none.
func (t *tx) unsettled(ids []store.CommandID) (settleErr, err error) {
	if len(ids) == 0 {
		return nil, nil
	}
	known := make(map[store.CommandID]bool, len(ids))
	for chunk := range slices.Chunk(ids, maxIDs) {
		n := roundUp(len(chunk))
		found, err := all(t, commandIDScanner, t.q.commandsExist[n], appendPaddedIDs(make([]any, 0, n), chunk, n)...)
		if err != nil {
			return nil, err
		}
		for _, id := range found {
			known[id] = true
		}
	}
	var lost, unknown []store.CommandID
	for _, id := range ids {
		if known[id] {
			lost = append(lost, id)
		} else {
			unknown = append(unknown, id)
		}
	}
	return errors.Join(commandsError(store.ErrLeaseLost, lost), commandsError(store.ErrNotFound, unknown)), nil
}

// commandsError wraps kind with the ids it applies to (the first few).
func commandsError(kind error, ids []store.CommandID) error {
	if len(ids) == 0 {
		return nil
	}
	const shown = 4
	var names []string
	for _, id := range ids[:min(len(ids), shown)] {
		names = append(names, fmt.Sprintf("%x", id[:]))
	}
	if len(ids) > shown {
		names = append(names, fmt.Sprintf("and %d more", len(ids)-shown))
	}
	return fmt.Errorf("%w: %d command(s): %s", kind, len(ids), strings.Join(names, ", "))
}

// appendPaddedIDs appends ids and repeats the last one up to n arguments,
// so that an IN list has one of few sizes (duplicates match nothing more).
func appendPaddedIDs(args []any, ids []store.CommandID, n int) []any {
	for i := range n {
		id := ids[min(i, len(ids)-1)]
		args = append(args, id[:])
	}
	return args
}

func commandIDScanner(r rowScanner) (store.CommandID, error) {
	var b []byte
	if err := r.Scan(&b); err != nil {
		return store.CommandID{}, err
	}
	var id store.CommandID
	if len(b) != len(id) {
		return id, fmt.Errorf("%w: outbox.id has %d bytes, want %d", errBadRow, len(b), len(id))
	}
	return store.CommandID(b), nil
}

// unique returns ids without repeats, in first-seen order.
func unique(ids []store.CommandID) []store.CommandID {
	seen := make(map[store.CommandID]bool, len(ids))
	out := make([]store.CommandID, 0, len(ids))
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

// Retry releases a command owner holds, counting the attempt and keeping
// reason, claimable again at next.
func (s *Store) Retry(ctx context.Context, owner string, id store.CommandID, next time.Time, reason string) error {
	if err := checkName("lease owner", owner); err != nil {
		return err
	}
	return s.settle(ctx, id, qRetry, id[:], owner, encodeTime(&s.d, next), cleanReason(reason))
}

// Fail settles a command owner holds as failed for good. The attempt count
// is left as it is: only Retry counts attempts.
func (s *Store) Fail(ctx context.Context, owner string, id store.CommandID, reason string) error {
	if err := checkName("lease owner", owner); err != nil {
		return err
	}
	return s.settle(ctx, id, qFail, id[:], owner, cleanReason(reason))
}

// Acknowledge records its device's answer to a pending or sent command,
// whoever holds its lease (a resend may be out when the answer comes):
// acknowledged (and sent) at at when refusal is empty, else failed with
// refusal as its error. An unknown id gives ErrNotFound, a command failed,
// superseded or already acknowledged ErrLeaseLost.
func (s *Store) Acknowledge(ctx context.Context, id store.CommandID, at time.Time, refusal string) error {
	if refusal == "" {
		return s.settle(ctx, id, qAckSent, id[:], encodeTime(&s.d, at))
	}
	return s.settle(ctx, id, qAckRefused, id[:], cleanReason(refusal))
}

// settle runs a one-command settling statement and explains a miss.
func (s *Store) settle(ctx context.Context, id store.CommandID, query string, args ...any) error {
	var settleErr error
	err := s.dispatch(ctx, func(t *tx) error {
		n, err := t.exec(query, args...)
		if err != nil || n == 1 {
			settleErr = nil
			return err
		}
		settleErr, err = t.unsettled([]store.CommandID{id})
		return err
	})
	if err != nil {
		return err
	}
	return settleErr
}

package sqlstore

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/e4"
)

// The state of devices (store.DeviceTx, store.DeviceStore).

var _ store.DeviceTx = (*tx)(nil)

// acknowledging is the SQL condition, on client_state cs, of a device that
// acknowledges; a member without a client_state row never did.
const acknowledging = "(cs.ack_mode = 'yes' OR (cs.ack_mode = 'auto' AND cs.acks_seen = 1))"

const (
	deviceColumns   = "ack_mode, acks_seen, last_seen, last_sync, prev_key, key_changed_at, key_state, stalled_reason, stalled_at, c2_key_acked"
	qGetDeviceState = "SELECT " + deviceColumns + " FROM client_state WHERE client_id = $1"
	qPutDeviceState = "INSERT INTO client_state (client_id, " + deviceColumns + ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) " +
		"ON CONFLICT (client_id) DO UPDATE SET ack_mode = excluded.ack_mode, acks_seen = excluded.acks_seen, " +
		"last_seen = excluded.last_seen, last_sync = excluded.last_sync, prev_key = excluded.prev_key, " +
		"key_changed_at = excluded.key_changed_at, key_state = excluded.key_state, " +
		"stalled_reason = excluded.stalled_reason, stalled_at = excluded.stalled_at, c2_key_acked = excluded.c2_key_acked"
	qSetTopicAcked = "UPDATE memberships SET acked_version = $3, acked_at = $4 WHERE client_id = $1 AND topic = $2"
	qMemberStates  = "SELECT m.topic, t.key_version, m.acked_version, m.acked_at FROM memberships AS m " +
		"JOIN topics AS t ON t.name = m.topic WHERE m.client_id = $1 AND m.topic > $2 ORDER BY m.topic LIMIT $3"
	qCountMembersBehind = "SELECT COUNT(*) FROM memberships AS m JOIN topics AS t ON t.name = m.topic " +
		"WHERE m.client_id = $1 AND m.acked_version < t.key_version"
	qCountCurrent    = "SELECT COUNT(*) FROM memberships WHERE topic = $1 AND acked_version >= $2"
	qCountBehindAcks = "SELECT COUNT(*) FROM memberships AS m JOIN client_state AS cs ON cs.client_id = m.client_id " +
		"WHERE m.topic = $1 AND m.acked_version < $2 AND " + acknowledging
	qTopicBehind = "SELECT m.client_id, m.acked_version, m.acked_at, COALESCE(cs.ack_mode, 'auto'), COALESCE(cs.acks_seen, 0), cs.last_seen " +
		"FROM memberships AS m LEFT JOIN client_state AS cs ON cs.client_id = m.client_id " +
		"WHERE m.topic = $1 AND m.acked_version < $2 AND m.client_id > $3 ORDER BY m.client_id LIMIT $4"
	qCountAcknowledging    = "SELECT COUNT(*) FROM client_state AS cs WHERE " + acknowledging
	qCountNotAcknowledging = "SELECT COUNT(*) FROM client_state WHERE ack_mode = 'no'"
	qCountStalled          = "SELECT COUNT(*) FROM client_state WHERE stalled_reason <> ''"
	qCountKeyChanges       = "SELECT COUNT(*) FROM client_state WHERE prev_key IS NOT NULL"
	qCountBehind           = "SELECT COUNT(*), COUNT(DISTINCT m.client_id) FROM memberships AS m " +
		"JOIN topics AS t ON t.name = m.topic WHERE m.acked_version < t.key_version"
	// qReserveTimestamp moves a client's command timestamp to max($2,
	// last + 1) unless that passes $3; no row comes back when it would, or
	// when the client does not exist.
	qReserveTimestamp = "INSERT INTO client_state (client_id, last_command_ts) SELECT $1, $2 WHERE EXISTS (SELECT 1 FROM clients WHERE id = $1) " +
		"ON CONFLICT (client_id) DO UPDATE SET last_command_ts = CASE WHEN client_state.last_command_ts + 1 > $2 " +
		"THEN client_state.last_command_ts + 1 ELSE $2 END WHERE client_state.last_command_ts + 1 <= $3 RETURNING last_command_ts"
	qLastTimestamp  = "SELECT last_command_ts FROM client_state WHERE client_id = $1"
	qListKeyChanges = "SELECT client_id, " + deviceColumns + " FROM client_state WHERE prev_key IS NOT NULL AND client_id > $1 ORDER BY client_id LIMIT $2"
	qLinkSources    = "SELECT source FROM links WHERE target = $1 AND source > $2 ORDER BY source LIMIT $3"
	qSetLinkAcked   = "UPDATE links SET acked_key = $3, acked_at = $4 WHERE source = $1 AND target = $2"
	qCountLinks     = "SELECT COUNT(*), COALESCE(SUM(CASE WHEN l.acked_key IS NULL OR l.acked_key <> c.public_key THEN 1 ELSE 0 END), 0) " +
		"FROM links AS l JOIN clients AS c ON c.id = l.source WHERE l.target = $1"
	qClearStalled = "UPDATE client_state SET stalled_reason = '', stalled_at = NULL WHERE client_id = $1 AND stalled_reason <> ''"
	qPostpone     = "UPDATE outbox SET next_attempt_at = $3, lease_owner = NULL, lease_until = NULL " +
		"WHERE id = $1 AND state = 'pending' AND lease_owner = $2"
)

// deviceQueries lists the fixed queries of this file, for preparing.
func deviceQueries() []string {
	return []string{qGetDeviceState, qPutDeviceState, qSetTopicAcked, qMemberStates, qCountMembersBehind,
		qCountCurrent, qCountBehindAcks, qTopicBehind, qCountAcknowledging, qCountNotAcknowledging,
		qCountStalled, qCountKeyChanges, qCountBehind, qReserveTimestamp, qLastTimestamp, qPostpone,
		qListKeyChanges, qLinkSources, qClearStalled, qSetLinkAcked, qCountLinks,
		itemsToRepairQuery(true), itemsToRepairQuery(false)}
}

// GetDeviceState returns a client's device state, the default one when C2
// has recorded none.
func (t *tx) GetDeviceState(client e4.ID) (store.DeviceState, error) {
	s, found, err := one(t, scanDeviceState, qGetDeviceState, client[:])
	if err != nil {
		return s, err
	}
	if !found {
		if err := t.clientMustExist(client); err != nil {
			return s, err
		}
		s = store.DeviceState{AckMode: store.AckAuto}
	}
	s.ClientID = client
	return s, nil
}

func scanDeviceState(r rowScanner) (store.DeviceState, error) {
	var s store.DeviceState
	return s, scanDeviceStateInto(r, &s)
}

// scanDeviceStateInto scans the device columns into s, after the columns
// of prefix.
func scanDeviceStateInto(r rowScanner, s *store.DeviceState, prefix ...any) error {
	var (
		mode, keyState                       string
		seen                                 int64
		lastSeen, lastSync, changed, stalled dbTime
	)
	dest := append(prefix, &mode, &seen, &lastSeen, &lastSync, &s.PrevSealedKey, &changed, &keyState, &s.StalledReason, &stalled, &s.C2KeyAcked)
	if err := r.Scan(dest...); err != nil {
		return err
	}
	s.AckMode, s.KeyState, s.AcksSeen = store.AckMode(mode), store.KeyState(keyState), seen == 1
	if !knownAckMode(s.AckMode) || !knownKeyState(s.KeyState) {
		return fmt.Errorf("%w: client_state has ack mode %q and key state %q", errBadRow, mode, keyState)
	}
	s.PrevSealedKey, s.C2KeyAcked = orNil(s.PrevSealedKey), orNil(s.C2KeyAcked)
	s.LastSeen, s.LastSync, s.KeyChangedAt, s.StalledAt = lastSeen.t, lastSync.t, changed.t, stalled.t
	return nil
}

// ListKeyChanges lists the device states with a key change pending.
func (t *tx) ListKeyChanges(after e4.ID, limit int) ([]store.DeviceState, error) {
	if err := checkLimit(limit); err != nil {
		return nil, err
	}
	return all(t, func(r rowScanner) (store.DeviceState, error) {
		var (
			s  store.DeviceState
			id []byte
		)
		if err := scanDeviceStateInto(r, &s, &id); err != nil {
			return s, err
		}
		var err error
		s.ClientID, err = toID(id, "client_state.client_id")
		return s, err
	}, qListKeyChanges, after[:], limit)
}

// LinkSources lists the sources of the links to target.
func (t *tx) LinkSources(target, after e4.ID, limit int) ([]e4.ID, error) {
	if err := checkLimit(limit); err != nil {
		return nil, err
	}
	ids, err := all(t, idScanner("links.source"), qLinkSources, target[:], after[:], limit)
	if err == nil && len(ids) == 0 {
		err = t.clientMustExist(target)
	}
	return ids, err
}

// ClearStalled clears the stall of the stalled ones of clients.
func (s *Store) ClearStalled(ctx context.Context, clients []e4.ID) error {
	if len(clients) == 0 {
		return nil
	}
	return s.dispatch(ctx, func(t *tx) error {
		for _, id := range clients {
			if _, err := t.exec(qClearStalled, id[:]); err != nil {
				return err
			}
		}
		return nil
	})
}

func knownAckMode(m store.AckMode) bool {
	return m == store.AckAuto || m == store.AckYes || m == store.AckNo
}

func knownKeyState(k store.KeyState) bool {
	return k == store.KeySettled || k == store.KeyChanging || k == store.KeyOld
}

// PutDeviceState writes a client's device state, keeping its command
// timestamp.
func (t *tx) PutDeviceState(s store.DeviceState) error {
	if s.AckMode == "" {
		s.AckMode = store.AckAuto
	}
	if !knownAckMode(s.AckMode) {
		return fmt.Errorf("store: unknown acknowledgement mode %q", s.AckMode)
	}
	if !knownKeyState(s.KeyState) {
		return fmt.Errorf("store: unknown key state %q", s.KeyState)
	}
	if err := t.clientMustExist(s.ClientID); err != nil {
		return err
	}
	seen := 0
	if s.AcksSeen {
		seen = 1
	}
	_, err := t.exec(qPutDeviceState, s.ClientID[:], string(s.AckMode), seen, t.optionalTime(s.LastSeen),
		t.optionalTime(s.LastSync), orNil(s.PrevSealedKey), t.optionalTime(s.KeyChangedAt), string(s.KeyState),
		cleanReason(s.StalledReason), t.optionalTime(s.StalledAt), orNil(s.C2KeyAcked))
	return err
}

// AcknowledgeCommand records a device's answer to a pending or sent
// command, as Store.Acknowledge does.
func (t *tx) AcknowledgeCommand(id store.CommandID, at time.Time, refusal string) error {
	query, args := qAckSent, []any{id[:], t.at(at)}
	if refusal != "" {
		query, args = qAckRefused, []any{id[:], cleanReason(refusal)}
	}
	n, err := t.exec(query, args...)
	if err != nil || n == 1 {
		return err
	}
	settleErr, err := t.unsettled([]store.CommandID{id})
	if err != nil {
		return err
	}
	return settleErr
}

// SetLinkAcked records the public key of source that target's device
// holds.
func (t *tx) SetLinkAcked(source, target e4.ID, publicKey []byte, at time.Time) error {
	n, err := t.exec(qSetLinkAcked, source[:], target[:], orNil(publicKey), t.at(at))
	if err == nil && n == 0 {
		err = fmt.Errorf("%w: link from %s to %s", store.ErrNotFound, source, target)
	}
	return err
}

// CountLinksBehind counts the links to target and those behind.
func (t *tx) CountLinksBehind(target e4.ID) (links, behind int64, err error) {
	type pair struct{ links, behind int64 }
	p, _, err := one(t, func(r rowScanner) (pair, error) {
		var p pair
		return p, r.Scan(&p.links, &p.behind)
	}, qCountLinks, target[:])
	if err == nil && p.links == 0 {
		err = t.clientMustExist(target)
	}
	return p.links, p.behind, err
}

// SetTopicAcked records an acknowledged topic key version.
func (t *tx) SetTopicAcked(client e4.ID, topic string, version uint64, at time.Time) error {
	if err := checkName("topic name", topic); err != nil {
		return err
	}
	if err := checkVersion(version); err != nil {
		return err
	}
	n, err := t.exec(qSetTopicAcked, client[:], topic, int64(version), t.at(at))
	if err != nil || n > 0 {
		return err
	}
	return t.mustExist(fmt.Sprintf("client %s in topic %q", client, topic), qIsMember, client[:], topic)
}

// MemberStates lists a client's topics with their versions.
func (t *tx) MemberStates(client e4.ID, after string, limit int) ([]store.MemberState, error) {
	if err := checkLimit(limit); err != nil {
		return nil, err
	}
	if err := checkText("topic name", after); err != nil {
		return nil, err
	}
	list, err := all(t, scanMemberState, qMemberStates, client[:], after, limit)
	if err == nil && len(list) == 0 {
		err = t.clientMustExist(client)
	}
	return list, err
}

func scanMemberState(r rowScanner) (store.MemberState, error) {
	var (
		m           store.MemberState
		want, acked int64
		ackedAt     dbTime
	)
	if err := r.Scan(&m.Topic, &want, &acked, &ackedAt); err != nil {
		return m, err
	}
	if want < 0 || acked < 0 {
		return m, fmt.Errorf("%w: versions %d and %d of topic %q", errBadRow, want, acked, m.Topic)
	}
	m.WantVersion, m.AckedVersion, m.AckedAt = uint64(want), uint64(acked), ackedAt.t
	return m, nil
}

// CountMembersBehind counts a client's topics behind their current key.
func (t *tx) CountMembersBehind(client e4.ID) (int64, error) {
	n, err := t.count(qCountMembersBehind, client[:])
	if err == nil && n == 0 {
		err = t.clientMustExist(client)
	}
	return n, err
}

// TopicCounts sums up a topic's members against its current version.
func (t *tx) TopicCounts(topic string) (store.TopicCounts, error) {
	tp, err := t.GetTopic(topic)
	if err != nil {
		return store.TopicCounts{}, err
	}
	c := store.TopicCounts{Version: tp.KeyVersion}
	v := int64(tp.KeyVersion)
	if c.Members, err = t.count(qCountClientsOfTopic, topic); err != nil {
		return c, err
	}
	if c.Current, err = t.count(qCountCurrent, topic, v); err != nil {
		return c, err
	}
	c.BehindAcknowledging, err = t.count(qCountBehindAcks, topic, v)
	return c, err
}

// TopicBehind lists the members of a topic behind its current key.
func (t *tx) TopicBehind(topic string, after e4.ID, limit int) ([]store.BehindMember, error) {
	if err := checkLimit(limit); err != nil {
		return nil, err
	}
	tp, err := t.GetTopic(topic)
	if err != nil {
		return nil, err
	}
	return all(t, scanBehindMember, qTopicBehind, topic, int64(tp.KeyVersion), after[:], limit)
}

func scanBehindMember(r rowScanner) (store.BehindMember, error) {
	var (
		b                 store.BehindMember
		id                []byte
		acked, seen       int64
		mode              string
		ackedAt, lastSeen dbTime
	)
	if err := r.Scan(&id, &acked, &ackedAt, &mode, &seen, &lastSeen); err != nil {
		return b, err
	}
	var err error
	if b.ClientID, err = toID(id, "memberships.client_id"); err != nil {
		return b, err
	}
	if acked < 0 {
		return b, fmt.Errorf("%w: acknowledged version %d", errBadRow, acked)
	}
	ds := store.DeviceState{AckMode: store.AckMode(mode), AcksSeen: seen == 1}
	b.AckedVersion, b.AckedAt, b.Acknowledges, b.LastSeen = uint64(acked), ackedAt.t, ds.Acknowledges(), lastSeen.t
	return b, nil
}

// FleetCounts sums up every device.
func (t *tx) FleetCounts() (store.FleetCounts, error) {
	var (
		f   store.FleetCounts
		err error
	)
	if f.Clients, err = t.counter("clients"); err != nil {
		return f, err
	}
	for _, c := range []struct {
		dst   *int64
		query string
	}{
		{&f.Acknowledging, qCountAcknowledging}, {&f.NotAcknowledging, qCountNotAcknowledging},
		{&f.Stalled, qCountStalled}, {&f.KeyChangesPending, qCountKeyChanges},
	} {
		if *c.dst, err = t.count(c.query); err != nil {
			return f, err
		}
	}
	type pair struct{ rows, clients int64 }
	p, _, err := one(t, func(r rowScanner) (pair, error) {
		var p pair
		return p, r.Scan(&p.rows, &p.clients)
	}, qCountBehind)
	f.MembershipsBehind, f.ClientsBehind = p.rows, p.clients
	return f, err
}

// itemsToRepairQuery selects memberships behind of acknowledging devices
// (or of the others), paged by client and topic, whose last command about
// the topic was sent before $3 and none is pending.
func itemsToRepairQuery(acks bool) string {
	cond := acknowledging
	if !acks {
		cond = "(cs.client_id IS NULL OR NOT " + acknowledging + ")"
	}
	return "SELECT m.client_id, m.topic FROM memberships AS m JOIN topics AS t ON t.name = m.topic " +
		"LEFT JOIN client_state AS cs ON cs.client_id = m.client_id " +
		"WHERE m.acked_version < t.key_version AND (m.client_id > $1 OR (m.client_id = $1 AND m.topic > $2)) AND " + cond + " " +
		"AND NOT EXISTS (SELECT 1 FROM outbox AS o WHERE o.client_id = m.client_id AND o.target = m.topic " +
		"AND (o.state = 'pending' OR (o.state = 'sent' AND o.sent_at >= $3) " +
		"OR (o.state = 'sent' AND o.sent_at >= $5 AND (cs.last_seen IS NULL OR cs.last_seen < o.sent_at)))) " +
		"ORDER BY m.client_id, m.topic LIMIT $4"
}

// ItemsToRepair lists memberships behind that a repair may send again.
func (t *tx) ItemsToRepair(f store.RepairFilter) ([]store.RepairItem, error) {
	if err := checkLimit(f.Limit); err != nil {
		return nil, err
	}
	if err := checkText("topic name", f.After.Topic); err != nil {
		return nil, err
	}
	idle := f.IdleBefore
	if idle.IsZero() || idle.After(f.SentBefore) {
		idle = f.SentBefore // no stricter rule for devices not heard from
	}
	return all(t, func(r rowScanner) (store.RepairItem, error) {
		var (
			it store.RepairItem
			id []byte
		)
		if err := r.Scan(&id, &it.Topic); err != nil {
			return it, err
		}
		var err error
		it.ClientID, err = toID(id, "memberships.client_id")
		return it, err
	}, itemsToRepairQuery(f.Acknowledging), f.After.ClientID[:], f.After.Topic, t.at(f.SentBefore), f.Limit, t.at(idle))
}

// kindList returns " AND kind IN (...)" with placeholders from first, and
// its arguments; empty for no kinds.
func kindList(kinds []string, first int) (string, []any, error) {
	if len(kinds) == 0 {
		return "", nil, nil
	}
	args := make([]any, len(kinds))
	marks := make([]string, len(kinds))
	for i, k := range kinds {
		if err := checkName("command kind", k); err != nil {
			return "", nil, err
		}
		args[i] = k
		marks[i] = fmt.Sprintf("$%d", first+i)
	}
	return " AND kind IN (" + strings.Join(marks, ", ") + ")", args, nil
}

// HasPendingCommand reports whether client has a pending command about
// target of one of kinds.
func (t *tx) HasPendingCommand(client e4.ID, target string, kinds ...string) (bool, error) {
	if err := checkText("command target", target); err != nil {
		return false, err
	}
	cond, args, err := kindList(kinds, 3)
	if err != nil {
		return false, err
	}
	query := "SELECT 1 FROM outbox WHERE client_id = $1 AND target = $2 AND state = 'pending'" + cond + " LIMIT 1"
	return t.exists(query, append([]any{client[:], target}, args...)...)
}

// SupersedeCommands marks pending commands no dispatcher holds superseded.
func (t *tx) SupersedeCommands(client *e4.ID, target string, now time.Time, kinds ...string) (int64, error) {
	if err := checkText("command target", target); err != nil {
		return 0, err
	}
	if client == nil && target == "" {
		return 0, fmt.Errorf("store: superseding needs a client or a target")
	}
	query := "UPDATE outbox SET state = 'superseded', last_error = 'superseded by a newer command', " +
		"lease_owner = NULL, lease_until = NULL WHERE state = 'pending' AND (lease_until IS NULL OR lease_until <= $1)"
	args := []any{t.at(now)}
	if client != nil {
		args = append(args, client[:])
		query += fmt.Sprintf(" AND client_id = $%d", len(args))
	}
	if target != "" {
		args = append(args, target)
		query += fmt.Sprintf(" AND target = $%d", len(args))
	}
	cond, kindArgs, err := kindList(kinds, len(args)+1)
	if err != nil {
		return 0, err
	}
	return t.exec(query+cond, append(args, kindArgs...)...)
}

// ReserveTimestamps gives each client the timestamp of its next command.
// Clients that appear once are reserved with one statement per IN-list
// chunk; a client repeated in the list gets its later timestamps one by
// one.
func (s *Store) ReserveTimestamps(ctx context.Context, clients []e4.ID, now time.Time, maxAhead time.Duration) ([]int64, error) {
	nowSec := now.Unix()
	limit := nowSec + int64(maxAhead/time.Second)
	if maxAhead < 0 {
		limit = nowSec
	}
	out := make([]int64, len(clients))
	err := s.dispatch(ctx, func(t *tx) error {
		first := make(map[e4.ID]int, len(clients))
		var unique []e4.ID
		for i, id := range clients {
			if _, seen := first[id]; !seen {
				first[id] = i
				unique = append(unique, id)
			}
		}
		got, err := t.reserveTimestamps(unique, nowSec, limit)
		if err != nil {
			return err
		}
		for i, id := range clients {
			if first[id] == i {
				out[i] = got[id]
				continue
			}
			if out[i], err = t.reserveTimestamp(id, nowSec, limit); err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

// reserveTimestamps reserves the next timestamp of each of ids (no
// repeats), in chunks, and returns them by client (0: held).
func (t *tx) reserveTimestamps(ids []e4.ID, now, limit int64) (map[e4.ID]int64, error) {
	out := make(map[e4.ID]int64, len(ids))
	for chunk := range slices.Chunk(ids, maxIDs) {
		n := roundUp(len(chunk))
		args := appendPaddedClientIDs(append(make([]any, 0, 2+n), now, limit), chunk, n)
		rows, err := all(t, scanClientTimestamp, t.q.reserveTimestamps[n], args...)
		if err != nil {
			return nil, err
		}
		for _, r := range rows {
			out[r.id] = r.ts
		}
		var missing []e4.ID
		for _, id := range chunk {
			if _, ok := out[id]; !ok {
				missing = append(missing, id)
			}
		}
		if len(missing) == 0 {
			continue
		}
		// Held (a state row that did not move) or gone (no row).
		m := roundUp(len(missing))
		held, err := all(t, idScanner("client_state.client_id"), t.q.clientStatesExist[m], appendPaddedClientIDs(make([]any, 0, m), missing, m)...)
		if err != nil {
			return nil, err
		}
		for _, id := range missing {
			out[id] = now
		}
		for _, id := range held {
			out[id] = 0
		}
	}
	return out, nil
}

type clientTimestamp struct {
	id e4.ID
	ts int64
}

func scanClientTimestamp(r rowScanner) (clientTimestamp, error) {
	var (
		b  []byte
		ct clientTimestamp
	)
	if err := r.Scan(&b, &ct.ts); err != nil {
		return ct, err
	}
	var err error
	ct.id, err = toID(b, "client_state.client_id")
	return ct, err
}

// appendPaddedClientIDs appends ids and repeats the last one up to n.
func appendPaddedClientIDs(args []any, ids []e4.ID, n int) []any {
	for i := range n {
		id := ids[min(i, len(ids)-1)]
		args = append(args, id[:])
	}
	return args
}

// reserveTimestampsQuery moves the command timestamp of up to n clients
// to max($1, last + 1) unless that passes $2, and returns those it moved.
func reserveTimestampsQuery(p placeholderStyle, n int) string {
	return "INSERT INTO client_state (client_id, last_command_ts) SELECT id, $1 FROM clients WHERE id IN (" + p.list(3, n) + ") " +
		"ON CONFLICT (client_id) DO UPDATE SET last_command_ts = CASE WHEN client_state.last_command_ts + 1 > $1 " +
		"THEN client_state.last_command_ts + 1 ELSE $1 END WHERE client_state.last_command_ts + 1 <= $2 " +
		"RETURNING client_id, last_command_ts"
}

// clientStatesExistQuery returns which of n clients have a state row.
func clientStatesExistQuery(p placeholderStyle, n int) string {
	return "SELECT client_id FROM client_state WHERE client_id IN (" + p.list(1, n) + ")"
}

func (t *tx) reserveTimestamp(id e4.ID, now, limit int64) (int64, error) {
	ts, found, err := one(t, scanInt, qReserveTimestamp, id[:], now, limit)
	if err != nil || found {
		return ts, err
	}
	_, found, err = one(t, scanInt, qLastTimestamp, id[:])
	if err != nil {
		return 0, err
	}
	if !found {
		return now, nil // the client is gone: nothing to order against
	}
	return 0, nil // held: it would run too far ahead of the clock
}

// Postpone releases a command without counting an attempt.
func (s *Store) Postpone(ctx context.Context, owner string, id store.CommandID, next time.Time) error {
	if err := checkName("lease owner", owner); err != nil {
		return err
	}
	return s.settle(ctx, id, qPostpone, id[:], owner, encodeTime(&s.d, next))
}

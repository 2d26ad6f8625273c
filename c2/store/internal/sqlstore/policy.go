package sqlstore

import (
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/e4-iot/e4kit/c2/store"
	"github.com/e4-iot/e4kit/e4"
)

// Automatic rotation (store.PolicyTx).

var _ store.PolicyTx = (*tx)(nil)

const (
	policyColumns = "name, kind, selector, pattern, period, max_age, jitter, on_event, threshold, event_window, " +
		"ramp, pause_behind, paused_reason, created_by, created_at, started_at, max_messages"
	dueColumns      = "kind, target, due_at, event, attempts, last_error, lease_owner, lease_until"
	rotationColumns = "id, kind, target, policy, reason, due_at, fired_at, version, commands, state, behind, detail, settled_at, owner"

	qPutPolicy = "INSERT INTO rotation_policies (" + policyColumns + ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) " +
		"ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, selector = excluded.selector, pattern = excluded.pattern, " +
		"period = excluded.period, max_age = excluded.max_age, jitter = excluded.jitter, on_event = excluded.on_event, " +
		"threshold = excluded.threshold, event_window = excluded.event_window, ramp = excluded.ramp, " +
		"pause_behind = excluded.pause_behind, paused_reason = excluded.paused_reason, created_by = excluded.created_by, " +
		"created_at = excluded.created_at, started_at = excluded.started_at, max_messages = excluded.max_messages"
	qGetPolicy    = "SELECT " + policyColumns + " FROM rotation_policies WHERE name = $1"
	qDeletePolicy = "DELETE FROM rotation_policies WHERE name = $1"
	qListPolicies = "SELECT " + policyColumns + " FROM rotation_policies WHERE name > $1 ORDER BY name LIMIT $2"
	// Two index lookups, so that a million exact policies cost one row.
	qPoliciesFor = "SELECT " + policyColumns + " FROM rotation_policies WHERE kind = $1 AND selector = 'exact' AND pattern = $2 " +
		"UNION ALL SELECT " + policyColumns + " FROM rotation_policies WHERE kind = $1 AND selector IN ('all', 'prefix', 'filter') ORDER BY 1"
	qEventPolicies = "SELECT " + policyColumns + " FROM rotation_policies WHERE on_event <> '' AND name > $1 ORDER BY name LIMIT $2"
	qHasPolicies   = "SELECT 1 FROM rotation_policies WHERE kind = $1 LIMIT 1"
	qHasBudget     = "SELECT 1 FROM rotation_policies WHERE max_messages > 0 LIMIT 1"
	// One statement, so that concurrent replicas add up (the row lock
	// orders them).
	qAddMessages    = "UPDATE topics SET messages = messages + $3 WHERE name = $1 AND key_version = $2 RETURNING messages"
	qTopicMessages  = "SELECT key_version, messages FROM topics WHERE name = $1"
	qPutDue         = "INSERT INTO rotation_due (" + dueColumns + ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (kind, target) DO UPDATE SET due_at = excluded.due_at, event = excluded.event, attempts = excluded.attempts, last_error = excluded.last_error, lease_owner = excluded.lease_owner, lease_until = excluded.lease_until"
	qMergeEvent     = "INSERT INTO rotation_due (" + dueColumns + ") VALUES ($1, $2, $3, $4, 0, '', NULL, NULL) ON CONFLICT (kind, target) DO UPDATE SET due_at = CASE WHEN rotation_due.event <> '' THEN rotation_due.due_at ELSE excluded.due_at END, event = CASE WHEN rotation_due.event <> '' THEN rotation_due.event ELSE excluded.event END"
	qGetDue         = "SELECT " + dueColumns + " FROM rotation_due WHERE kind = $1 AND target = $2"
	qDeleteDue      = "DELETE FROM rotation_due WHERE kind = $1 AND target = $2"
	qCountDue       = "SELECT COUNT(*) FROM rotation_due WHERE due_at < $1"
	qListDue        = "SELECT " + dueColumns + " FROM rotation_due WHERE due_at < $1 AND (due_at > $2 OR (due_at = $2 AND (kind > $3 OR (kind = $3 AND target > $4)))) ORDER BY due_at, kind, target LIMIT $5"
	qInsertRotation = "INSERT INTO rotations (kind, target, policy, reason, due_at, fired_at, version, commands, state, behind, detail, settled_at, owner) " +
		"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id"
	qSettleRotation = "UPDATE rotations SET state = $2, behind = $3, detail = $4, settled_at = $5 WHERE id = $1 AND state = 'started'"
	qClientKeyTime  = "SELECT COALESCE(key_created_at, created_at) FROM clients WHERE id = $1"
	qSetClientKeyAt = "UPDATE clients SET key_created_at = $2 WHERE id = $1"
	// One pass over the clients that existed when the key was made.
	qC2KeyCounts = "SELECT COUNT(*), COALESCE(SUM(CASE WHEN cs.c2_key_acked = $2 THEN 1 ELSE 0 END), 0), " +
		"COALESCE(SUM(CASE WHEN (cs.c2_key_acked IS NULL OR cs.c2_key_acked <> $2) AND " + acknowledging + " THEN 1 ELSE 0 END), 0) " +
		"FROM clients AS c LEFT JOIN client_state AS cs ON cs.client_id = c.id WHERE c.created_at <= $1"
	// No index on last_seen: the scheduler pages through it rarely (every
	// AutomationConfig.Rescan, only with IdleAfter set).
	qIdleClients = "SELECT client_id, last_seen FROM client_state WHERE last_seen < $3 AND " +
		"(last_seen > $1 OR (last_seen = $1 AND client_id > $2)) ORDER BY last_seen, client_id LIMIT $4"
	scheduleUpsert   = " ON CONFLICT (kind, target) DO UPDATE SET due_at = excluded.due_at WHERE excluded.due_at < rotation_due.due_at"
	scheduleIfAbsent = " ON CONFLICT (kind, target) DO NOTHING"
)

// policyQueries lists the fixed queries of this file, for preparing.
func policyQueries() []string {
	return []string{qPutPolicy, qGetPolicy, qDeletePolicy, qListPolicies, qPoliciesFor, qEventPolicies, qHasPolicies,
		qHasBudget, qAddMessages, qTopicMessages,
		qPutDue, qMergeEvent, qGetDue, qDeleteDue, qCountDue, qListDue, qInsertRotation, qSettleRotation,
		qClientKeyTime, qSetClientKeyAt, qC2KeyCounts, qIdleClients}
}

// claimDueQuery leases the earliest due rows with a free or expired
// lease; lock ends the picking SELECT (see claimQuery).
func claimDueQuery(lock string) string {
	return "WITH picked AS MATERIALIZED (" +
		"SELECT kind, target FROM rotation_due WHERE due_at <= $3 AND (lease_until IS NULL OR lease_until <= $3) " +
		"ORDER BY due_at LIMIT $4 " + lock +
		") UPDATE rotation_due SET lease_owner = $1, lease_until = $2 WHERE (kind, target) IN (SELECT kind, target FROM picked) " +
		"RETURNING " + dueColumns
}

func knownKind(k store.TargetKind) bool {
	return k == store.TargetTopic || k == store.TargetClient || k == store.TargetC2
}

func checkPolicy(p store.Policy) error {
	if err := checkName("policy name", p.Name); err != nil {
		return err
	}
	if !knownKind(p.Kind) {
		return fmt.Errorf("store: policy %q: unknown target kind %q", p.Name, p.Kind)
	}
	switch p.Selector {
	case store.SelectAll, store.SelectExact, store.SelectPrefix, store.SelectFilter:
	default:
		return fmt.Errorf("store: policy %q: unknown selector %q", p.Name, p.Selector)
	}
	for _, s := range []string{p.Pattern, p.OnEvent, p.PausedReason, p.CreatedBy} {
		if err := checkText("policy text", s); err != nil {
			return err
		}
	}
	if p.Period < 0 || p.MaxAge < 0 || p.Jitter < 0 || p.Window < 0 || p.Threshold < 0 || p.Ramp < 0 || p.PauseBehind < 0 || p.MaxMessages < 0 {
		return fmt.Errorf("store: policy %q has a negative setting", p.Name)
	}
	return nil
}

// PutPolicy inserts or replaces a policy.
func (t *tx) PutPolicy(p store.Policy) error {
	if err := checkPolicy(p); err != nil {
		return err
	}
	_, err := t.exec(qPutPolicy, p.Name, string(p.Kind), string(p.Selector), p.Pattern,
		p.Period.Microseconds(), p.MaxAge.Microseconds(), p.Jitter.Microseconds(), p.OnEvent,
		p.Threshold, p.Window.Microseconds(), p.Ramp, p.PauseBehind, p.PausedReason, p.CreatedBy,
		t.at(p.CreatedAt), t.at(p.StartedAt), p.MaxMessages)
	return err
}

// GetPolicy returns a policy or ErrNotFound.
func (t *tx) GetPolicy(name string) (store.Policy, error) {
	if err := checkName("policy name", name); err != nil {
		return store.Policy{}, err
	}
	p, found, err := one(t, scanPolicy, qGetPolicy, name)
	if err == nil && !found {
		err = fmt.Errorf("%w: policy %q", store.ErrNotFound, name)
	}
	return p, err
}

// DeletePolicy removes a policy or fails with ErrNotFound.
func (t *tx) DeletePolicy(name string) error {
	if err := checkName("policy name", name); err != nil {
		return err
	}
	n, err := t.exec(qDeletePolicy, name)
	if err == nil && n == 0 {
		err = fmt.Errorf("%w: policy %q", store.ErrNotFound, name)
	}
	return err
}

// ListPolicies lists policies by name after after.
func (t *tx) ListPolicies(after string, limit int) ([]store.Policy, error) {
	if err := checkLimit(limit); err != nil {
		return nil, err
	}
	if err := checkText("policy name", after); err != nil {
		return nil, err
	}
	return all(t, scanPolicy, qListPolicies, after, limit)
}

// PoliciesFor returns the exact policies naming target and every
// non-exact policy of kind.
func (t *tx) PoliciesFor(kind store.TargetKind, target string) ([]store.Policy, error) {
	if err := checkText("target", target); err != nil {
		return nil, err
	}
	return all(t, scanPolicy, qPoliciesFor, string(kind), target)
}

// EventPolicies lists the event rules by name after after.
func (t *tx) EventPolicies(after string, limit int) ([]store.Policy, error) {
	if err := checkLimit(limit); err != nil {
		return nil, err
	}
	if err := checkText("policy name", after); err != nil {
		return nil, err
	}
	return all(t, scanPolicy, qEventPolicies, after, limit)
}

// HasPolicies reports whether a policy of kind exists.
func (t *tx) HasPolicies(kind store.TargetKind) (bool, error) {
	return t.exists(qHasPolicies, string(kind))
}

// HasBudgetPolicies reports whether a policy has a message budget.
func (t *tx) HasBudgetPolicies() (bool, error) { return t.exists(qHasBudget) }

// AddTopicMessages adds n to the messages counted under a topic's key
// version.
func (t *tx) AddTopicMessages(topic string, version uint64, n int64) (int64, bool, error) {
	if err := checkName("topic name", topic); err != nil {
		return 0, false, err
	}
	if err := checkVersion(version); err != nil {
		return 0, false, err
	}
	if n < 0 {
		return 0, false, fmt.Errorf("store: adding %d messages to topic %q: negative", n, topic)
	}
	return one(t, scanInt, qAddMessages, topic, int64(version), n)
}

// TopicMessages returns a topic's key version and its message count.
func (t *tx) TopicMessages(topic string) (uint64, int64, error) {
	if err := checkName("topic name", topic); err != nil {
		return 0, 0, err
	}
	type counted struct {
		version uint64
		n       int64
	}
	c, found, err := one(t, func(r rowScanner) (counted, error) {
		var c counted
		var v int64
		err := r.Scan(&v, &c.n)
		c.version = uint64(v)
		return c, err
	}, qTopicMessages, topic)
	if err == nil && !found {
		err = fmt.Errorf("%w: topic %q", store.ErrNotFound, topic)
	}
	return c.version, c.n, err
}

func scanPolicy(r rowScanner) (store.Policy, error) {
	var (
		p                              store.Policy
		kind, selector                 string
		period, maxAge, jitter, window int64
		created, started               dbTime
	)
	err := r.Scan(&p.Name, &kind, &selector, &p.Pattern, &period, &maxAge, &jitter, &p.OnEvent,
		&p.Threshold, &window, &p.Ramp, &p.PauseBehind, &p.PausedReason, &p.CreatedBy, &created, &started, &p.MaxMessages)
	p.Kind, p.Selector = store.TargetKind(kind), store.Selector(selector)
	p.Period, p.MaxAge = time.Duration(period)*time.Microsecond, time.Duration(maxAge)*time.Microsecond
	p.Jitter, p.Window = time.Duration(jitter)*time.Microsecond, time.Duration(window)*time.Microsecond
	p.CreatedAt, p.StartedAt = created.t, started.t
	return p, err
}

// ScheduleTopics writes schedule rows for the topics starting with prefix.
func (t *tx) ScheduleTopics(prefix string, at time.Time, onlyMissing bool) (int64, error) {
	if err := checkText("prefix", prefix); err != nil {
		return 0, err
	}
	query := "INSERT INTO rotation_due (" + dueColumns + ") SELECT 'topic', name, $1, '', 0, '', NULL, NULL FROM topics WHERE "
	args := []any{t.at(at)}
	if prefix == "" {
		query += "true"
	} else {
		query += "substr(name, 1, $2) = $3"
		args = append(args, utf8.RuneCountInString(prefix), prefix)
	}
	return t.exec(query+scheduleClause(onlyMissing), args...)
}

func scheduleClause(onlyMissing bool) string {
	if onlyMissing {
		return scheduleIfAbsent
	}
	return scheduleUpsert
}

// ScheduleClients writes schedule rows for every client, named by id in
// lower-case hex.
func (t *tx) ScheduleClients(at time.Time, onlyMissing bool) (int64, error) {
	hex := "lower(hex(id))"
	if t.d.Name == "postgres" {
		hex = "encode(id, 'hex')"
	}
	query := "INSERT INTO rotation_due (" + dueColumns + ") SELECT 'client', " + hex + ", $1, '', 0, '', NULL, NULL FROM clients WHERE true"
	return t.exec(query+scheduleClause(onlyMissing), t.at(at))
}

func checkDueKey(kind store.TargetKind, target string) error {
	if !knownKind(kind) {
		return fmt.Errorf("store: unknown target kind %q", kind)
	}
	return checkText("target", target)
}

// PutDue writes a schedule row.
func (t *tx) PutDue(d store.Due) error {
	if err := checkDueKey(d.Kind, d.Target); err != nil {
		return err
	}
	var owner any
	if d.LeaseOwner != "" {
		owner = d.LeaseOwner
	}
	_, err := t.exec(qPutDue, string(d.Kind), d.Target, t.at(d.DueAt), cleanReason(d.Event), d.Attempts,
		cleanReason(d.LastError), owner, t.optionalTime(d.LeaseUntil))
	return err
}

// MergeEvent records a forced rotation, coalesced with a pending one.
func (t *tx) MergeEvent(kind store.TargetKind, target, event string, at time.Time) error {
	if err := checkDueKey(kind, target); err != nil {
		return err
	}
	if err := checkName("event", event); err != nil {
		return err
	}
	_, err := t.exec(qMergeEvent, string(kind), target, t.at(at), event)
	return err
}

// GetDue returns a schedule row or ErrNotFound.
func (t *tx) GetDue(kind store.TargetKind, target string) (store.Due, error) {
	if err := checkDueKey(kind, target); err != nil {
		return store.Due{}, err
	}
	d, found, err := one(t, scanDue, qGetDue, string(kind), target)
	if err == nil && !found {
		err = fmt.Errorf("%w: schedule of %s %q", store.ErrNotFound, kind, target)
	}
	return d, err
}

// DeleteDue removes a schedule row; a missing row is not an error.
func (t *tx) DeleteDue(kind store.TargetKind, target string) error {
	if err := checkDueKey(kind, target); err != nil {
		return err
	}
	_, err := t.exec(qDeleteDue, string(kind), target)
	return err
}

// ClaimDue leases the earliest due rows to owner.
func (t *tx) ClaimDue(owner string, now time.Time, lease time.Duration, limit int) ([]store.Due, error) {
	if err := checkName("lease owner", owner); err != nil {
		return nil, err
	}
	if lease <= 0 {
		return nil, fmt.Errorf("store: lease %v is not positive", lease)
	}
	if err := checkLimit(limit); err != nil {
		return nil, err
	}
	list, err := all(t, scanDue, claimDueQuery(t.d.ClaimLock), owner, t.at(now.Add(lease)), t.at(now), limit)
	slices.SortFunc(list, func(a, b store.Due) int { return a.DueAt.Compare(b.DueAt) })
	return list, err
}

// ListDue lists rows due before until, by due time.
func (t *tx) ListDue(until time.Time, after store.Due, limit int) ([]store.Due, error) {
	if err := checkLimit(limit); err != nil {
		return nil, err
	}
	if err := checkText("target", after.Target); err != nil {
		return nil, err
	}
	return all(t, scanDue, qListDue, t.at(until), t.at(after.DueAt), string(after.Kind), after.Target, limit)
}

// CountDue counts rows due before until.
func (t *tx) CountDue(until time.Time) (int64, error) { return t.count(qCountDue, t.at(until)) }

func scanDue(r rowScanner) (store.Due, error) {
	var (
		d          store.Due
		kind       string
		owner      *string
		due, until dbTime
	)
	err := r.Scan(&kind, &d.Target, &due, &d.Event, &d.Attempts, &d.LastError, &owner, &until)
	d.Kind, d.DueAt, d.LeaseUntil = store.TargetKind(kind), due.t, until.t
	if owner != nil {
		d.LeaseOwner = *owner
	}
	return d, err
}

// InsertRotation records a rotation.
func (t *tx) InsertRotation(r store.Rotation) (int64, error) {
	if err := checkDueKey(r.Kind, r.Target); err != nil {
		return 0, err
	}
	if err := checkVersion(r.Version); err != nil {
		return 0, err
	}
	id, found, err := one(t, scanInt, qInsertRotation, string(r.Kind), r.Target, cleanReason(r.Policy), cleanReason(r.Reason),
		t.at(r.DueAt), t.at(r.FiredAt), int64(r.Version), r.Commands, string(r.State), r.Behind,
		cleanReason(r.Detail), t.optionalTime(r.SettledAt), cleanReason(r.Owner))
	if err == nil && !found {
		err = fmt.Errorf("store: %s: the rotation insert returned no id", t.d.Name)
	}
	return id, err
}

// SettleRotation records a rotation's outcome.
func (t *tx) SettleRotation(id int64, state store.RotationState, behind int64, detail string, at time.Time) error {
	n, err := t.exec(qSettleRotation, id, string(state), behind, cleanReason(detail), t.at(at))
	if err == nil && n == 0 {
		err = fmt.Errorf("%w: started rotation %d", store.ErrNotFound, id)
	}
	return err
}

// rotationWhere builds the WHERE clause of a rotation filter; args holds
// the arguments already bound.
func (t *tx) rotationWhere(f store.RotationFilter, args []any) (string, []any, error) {
	var conds []string
	add := func(cond string, v any) {
		args = append(args, v)
		conds = append(conds, fmt.Sprintf(cond, len(args)))
	}
	for _, eq := range []struct{ column, value string }{
		{"kind", string(f.Kind)}, {"target", f.Target}, {"policy", f.Policy}, {"state", string(f.State)},
	} {
		if err := checkText("rotation filter", eq.value); err != nil {
			return "", nil, err
		}
		if eq.value != "" {
			add(eq.column+" = $%d", eq.value)
		}
	}
	if !f.FiredBefore.IsZero() {
		add("fired_at < $%d", t.at(f.FiredBefore))
	}
	if !f.FiredSince.IsZero() {
		add("fired_at >= $%d", t.at(f.FiredSince))
	}
	if len(conds) == 0 {
		return "true", args, nil
	}
	return strings.Join(conds, " AND "), args, nil
}

// ListRotations lists matching rotations by id after afterID.
func (t *tx) ListRotations(f store.RotationFilter, afterID int64, limit int) ([]store.Rotation, error) {
	if err := checkLimit(limit); err != nil {
		return nil, err
	}
	where, args, err := t.rotationWhere(f, []any{afterID})
	if err != nil {
		return nil, err
	}
	args = append(args, limit)
	query := fmt.Sprintf("SELECT %s FROM rotations WHERE id > $1 AND %s ORDER BY id LIMIT $%d", rotationColumns, where, len(args))
	return all(t, scanRotation, query, args...)
}

// CountRotations counts matching rotations.
func (t *tx) CountRotations(f store.RotationFilter) (int64, error) {
	where, args, err := t.rotationWhere(f, nil)
	if err != nil {
		return 0, err
	}
	return t.count("SELECT COUNT(*) FROM rotations WHERE "+where, args...)
}

// SumBehind sums the behind counts of matching rotations.
func (t *tx) SumBehind(f store.RotationFilter) (int64, error) {
	where, args, err := t.rotationWhere(f, nil)
	if err != nil {
		return 0, err
	}
	return t.count("SELECT COALESCE(SUM(behind), 0) FROM rotations WHERE "+where, args...)
}

func scanRotation(r rowScanner) (store.Rotation, error) {
	var (
		x                     store.Rotation
		kind, state           string
		version               int64
		due, fired, settledAt dbTime
	)
	err := r.Scan(&x.ID, &kind, &x.Target, &x.Policy, &x.Reason, &due, &fired, &version, &x.Commands,
		&state, &x.Behind, &x.Detail, &settledAt, &x.Owner)
	x.Kind, x.State, x.Version = store.TargetKind(kind), store.RotationState(state), uint64(version)
	x.DueAt, x.FiredAt, x.SettledAt = due.t, fired.t, settledAt.t
	return x, err
}

// ClientKeyCreatedAt returns when a client's key was made.
func (t *tx) ClientKeyCreatedAt(id e4.ID) (time.Time, error) {
	at, found, err := one(t, func(r rowScanner) (time.Time, error) {
		var v dbTime
		err := r.Scan(&v)
		return v.t, err
	}, qClientKeyTime, id[:])
	if err == nil && !found {
		err = fmt.Errorf("%w: client %s", store.ErrNotFound, id)
	}
	return at, err
}

// SetClientKeyCreatedAt records when a client's key was made.
func (t *tx) SetClientKeyCreatedAt(id e4.ID, at time.Time) error {
	n, err := t.exec(qSetClientKeyAt, id[:], t.at(at))
	if err == nil && n == 0 {
		err = fmt.Errorf("%w: client %s", store.ErrNotFound, id)
	}
	return err
}

// C2KeyCounts sums up the clients created at or before since against a
// C2 public key.
func (t *tx) C2KeyCounts(publicKey []byte, since time.Time) (store.C2KeyCounts, error) {
	if len(publicKey) == 0 {
		return store.C2KeyCounts{}, fmt.Errorf("store: C2 key counts: empty public key")
	}
	c, _, err := one(t, func(r rowScanner) (store.C2KeyCounts, error) {
		var c store.C2KeyCounts
		return c, r.Scan(&c.Clients, &c.Current, &c.BehindAcknowledging)
	}, qC2KeyCounts, t.at(since), publicKey)
	return c, err
}

// IdleClients lists the clients last heard from before before, by last
// contact then id after after.
func (t *tx) IdleClients(after store.SeenClient, before time.Time, limit int) ([]store.SeenClient, error) {
	if err := checkLimit(limit); err != nil {
		return nil, err
	}
	return all(t, func(r rowScanner) (store.SeenClient, error) {
		var (
			c    store.SeenClient
			id   []byte
			seen dbTime
		)
		if err := r.Scan(&id, &seen); err != nil {
			return c, err
		}
		var err error
		c.ID, err = toID(id, "client_state.client_id")
		c.LastSeen = seen.t
		return c, err
	}, qIdleClients, t.at(after.LastSeen), after.ID[:], t.at(before), limit)
}

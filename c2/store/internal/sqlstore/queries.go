package sqlstore

import (
	"fmt"
	"math/bits"
	"strings"
)

// The SQL of the store. Fixed queries are prepared once per connection
// where the dialect asks for it; statements with a variable number of rows
// or ids come in power-of-two sizes so that they can be prepared too.

const (
	clientColumns  = "id, name, sealed_key, public_key, created_at"
	topicColumns   = "name, hash, sealed_key, key_version, created_at, rotated_at, prev_sealed_key"
	commandColumns = "seq, id, client_id, kind, target, payload, state, attempts, next_attempt_at, last_error, created_at, sent_at, acked_at"
)

// Row and id batches: an insert of n rows runs as statements of maxRows
// rows and then of the powers of two that add up to the rest.
const (
	maxClientRows  = 256 // 5 parameters a row
	maxCommandRows = 256 // 7 parameters a row
	maxIDs         = 512 // ids in one IN list
)

const (
	qInsertClient = "INSERT INTO clients (" + clientColumns + ") VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING"
	qGetClient    = "SELECT " + clientColumns + " FROM clients WHERE id = $1"
	qClientExists = "SELECT 1 FROM clients WHERE id = $1"
	qUpdateKey    = "UPDATE clients SET sealed_key = $2, public_key = $3 WHERE id = $1"
	qDeleteClient = "DELETE FROM clients WHERE id = $1"
	qListClients  = "SELECT " + clientColumns + " FROM clients WHERE id > $1 ORDER BY id LIMIT $2"
	qCount        = "SELECT value FROM counters WHERE name = $1"
	qAddToCount   = "UPDATE counters SET value = value + $2 WHERE name = $1"

	qInsertTopic = "INSERT INTO topics (" + topicColumns + ") VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (name) DO NOTHING"
	qGetTopic    = "SELECT " + topicColumns + " FROM topics WHERE name = $1"
	qTopicExists = "SELECT 1 FROM topics WHERE name = $1"
	// A new key version starts its message count at 0 (a re-seal under a
	// new master key keeps the version and the count).
	qRotateTopic = "UPDATE topics SET sealed_key = $2, key_version = $3, rotated_at = $4, prev_sealed_key = $5, " +
		"messages = CASE WHEN key_version = $3 THEN messages ELSE 0 END WHERE name = $1"
	// qHasPrevKeys and qForgetPrevKeys find and clear the previous keys
	// whose window is over.
	qHasPrevKeys    = "SELECT 1 FROM topics WHERE prev_sealed_key IS NOT NULL AND rotated_at < $1 LIMIT 1"
	qForgetPrevKeys = "UPDATE topics SET prev_sealed_key = NULL WHERE prev_sealed_key IS NOT NULL AND rotated_at < $1"
	qDeleteTopic    = "DELETE FROM topics WHERE name = $1"
	qListTopics     = "SELECT " + topicColumns + " FROM topics WHERE name > $1 ORDER BY name LIMIT $2"

	qAddMember            = "INSERT INTO memberships (client_id, topic) VALUES ($1, $2) ON CONFLICT (client_id, topic) DO NOTHING"
	qRemoveMember         = "DELETE FROM memberships WHERE client_id = $1 AND topic = $2"
	qIsMember             = "SELECT 1 FROM memberships WHERE client_id = $1 AND topic = $2"
	qRemoveAllMemberships = "DELETE FROM memberships WHERE client_id = $1 RETURNING topic"
	qTopicsOfClient       = "SELECT topic FROM memberships WHERE client_id = $1 AND topic > $2 ORDER BY topic LIMIT $3"
	qCountTopicsOfClient  = "SELECT COUNT(*) FROM memberships WHERE client_id = $1"
	qClientsOfTopic       = "SELECT client_id FROM memberships WHERE topic = $1 AND client_id > $2 ORDER BY client_id LIMIT $3"
	qCountClientsOfTopic  = "SELECT COUNT(*) FROM memberships WHERE topic = $1"

	qAddLink     = "INSERT INTO links (source, target) VALUES ($1, $2) ON CONFLICT (source, target) DO NOTHING"
	qRemoveLink  = "DELETE FROM links WHERE source = $1 AND target = $2"
	qLinkTargets = "SELECT target FROM links WHERE source = $1 AND target > $2 ORDER BY target LIMIT $3"

	qGetSetting = "SELECT value FROM settings WHERE name = $1"
	qPutSetting = "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value"

	qGetCommand    = "SELECT " + commandColumns + " FROM outbox WHERE id = $1"
	qCommandExists = "SELECT 1 FROM outbox WHERE id = $1"
	// qRetry and qFail settle one command; the lease owner must match.
	qRetry = "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $3, last_error = $4, lease_owner = NULL, lease_until = NULL " +
		"WHERE id = $1 AND state = 'pending' AND lease_owner = $2"
	qFail = "UPDATE outbox SET state = 'failed', last_error = $3, lease_owner = NULL, lease_until = NULL " +
		"WHERE id = $1 AND state = 'pending' AND lease_owner = $2"
	// qAckSent and qAckRefused record a device's answer to a pending or
	// sent command whoever holds it.
	qAckSent = "UPDATE outbox SET state = 'sent', sent_at = COALESCE(sent_at, $2), acked_at = $2, lease_owner = NULL, lease_until = NULL " +
		"WHERE id = $1 AND (state = 'pending' OR (state = 'sent' AND acked_at IS NULL))"
	qAckRefused = "UPDATE outbox SET state = 'failed', last_error = $2, lease_owner = NULL, lease_until = NULL " +
		"WHERE id = $1 AND state IN ('pending', 'sent')"
)

// sqlText holds the generated queries of one dialect.
type sqlText struct {
	claim                   string
	insertClients, enqueue  map[int]string // by row count
	markSent, commandsExist map[int]string // by id count
	clientsExist            map[int]string
	reserveTimestamps       map[int]string // by client count
	clientStatesExist       map[int]string
}

func newSQLText(d *Dialect) *sqlText {
	p := placeholderStyle(d.AnonymousPlaceholders)
	return &sqlText{
		claim:         claimQuery(d.ClaimLock),
		insertClients: bySize(maxClientRows, func(n int) string { return insertClientsQuery(d, n) }),
		enqueue:       bySize(maxCommandRows, func(n int) string { return enqueueQuery(d, n) }),
		markSent:      bySize(maxIDs, func(n int) string { return markSentQuery(p, n) }),
		commandsExist: bySize(maxIDs, func(n int) string { return commandsExistQuery(p, n) }),
		clientsExist:  bySize(maxIDs, func(n int) string { return clientsExistQuery(p, n) }),
		// $1 and $2 come after the list in its text, where SQLite would
		// number them among the ?s: this one keeps $n throughout.
		reserveTimestamps: bySize(maxIDs, func(n int) string { return reserveTimestampsQuery(placeholderStyle(false), n) }),
		clientStatesExist: bySize(maxIDs, func(n int) string { return clientStatesExistQuery(p, n) }),
	}
}

// bySize builds a query for every power of two up to max.
func bySize(max int, build func(n int) string) map[int]string {
	m := make(map[int]string)
	for _, n := range powersOfTwo(max) {
		m[n] = build(n)
	}
	return m
}

// prepared lists every query worth preparing once per connection.
func (q *sqlText) prepared() []string {
	qs := []string{
		qInsertClient, qGetClient, qClientExists, qUpdateKey, qDeleteClient, qListClients, qCount, qAddToCount,
		qInsertTopic, qGetTopic, qTopicExists, qRotateTopic, qHasPrevKeys, qForgetPrevKeys, qDeleteTopic, qListTopics,
		qAddMember, qRemoveMember, qIsMember, qRemoveAllMemberships, qTopicsOfClient, qCountTopicsOfClient,
		qClientsOfTopic, qCountClientsOfTopic,
		qAddLink, qRemoveLink, qLinkTargets, qGetSetting, qPutSetting,
		qGetCommand, qCommandExists, qRetry, qFail, qAckSent, qAckRefused, q.claim,
	}
	qs = append(qs, commandFilterQueries()...)
	qs = append(qs, accessQueries()...)
	qs = append(qs, deviceQueries()...)
	qs = append(qs, policyQueries()...)
	for _, m := range []map[int]string{q.insertClients, q.enqueue, q.markSent, q.commandsExist, q.clientsExist, q.reserveTimestamps, q.clientStatesExist} {
		for _, query := range m {
			qs = append(qs, query)
		}
	}
	return qs
}

// claimQuery leases the oldest claimable commands: pending, due, with a
// free or expired lease, and the oldest pending command of their client
// (so a client's commands go out in seq order). lock ends the picking
// SELECT. The picked rows are materialized once before the UPDATE, so
// PostgreSQL locks exactly the rows it returns.
func claimQuery(lock string) string {
	return "WITH picked AS MATERIALIZED (" +
		"SELECT o.seq FROM outbox AS o " +
		"WHERE o.state = 'pending' AND o.next_attempt_at <= $3 AND (o.lease_until IS NULL OR o.lease_until <= $3) " +
		"AND NOT EXISTS (SELECT 1 FROM outbox AS p WHERE p.state = 'pending' AND p.client_id = o.client_id AND p.seq < o.seq) " +
		"ORDER BY o.seq LIMIT $4 " + lock +
		") UPDATE outbox SET lease_owner = $1, lease_until = $2 WHERE seq IN (SELECT seq FROM picked) " +
		"RETURNING " + commandColumns
}

// markSentQuery settles up to n commands held by $2 as sent at $1 and
// returns their ids.
func markSentQuery(p placeholderStyle, n int) string {
	return "UPDATE outbox SET state = 'sent', sent_at = $1, lease_owner = NULL, lease_until = NULL " +
		"WHERE state = 'pending' AND lease_owner = $2 AND id IN (" + p.list(3, n) + ") RETURNING id"
}

// commandsExistQuery returns which of n ids are in the outbox.
func commandsExistQuery(p placeholderStyle, n int) string {
	return "SELECT id FROM outbox WHERE id IN (" + p.list(1, n) + ")"
}

// clientsExistQuery returns which of n ids are clients.
func clientsExistQuery(p placeholderStyle, n int) string {
	return "SELECT id FROM clients WHERE id IN (" + p.list(1, n) + ")"
}

// insertClientsQuery inserts n clients, skipping ids already there.
func insertClientsQuery(d *Dialect, n int) string {
	p := placeholderStyle(d.AnonymousPlaceholders)
	return insertIgnoring(d, "clients ("+clientColumns+") VALUES "+p.rows(n, 5, ""), "id")
}

// enqueueQuery appends n pending commands, skipping ids already there.
func enqueueQuery(d *Dialect, n int) string {
	p := placeholderStyle(d.AnonymousPlaceholders)
	return insertIgnoring(d, "outbox (id, client_id, kind, target, payload, next_attempt_at, created_at, state, attempts, last_error) VALUES "+
		p.rows(n, 7, "'pending', 0, ''"), "id")
}

// insertIgnoring writes a multi-row INSERT that skips rows whose key is
// taken: INSERT OR IGNORE where the dialect has it, so that SQLite needs
// no statement journal (the rows are checked before), else ON CONFLICT
// DO NOTHING.
func insertIgnoring(d *Dialect, into, key string) string {
	if d.InsertOrIgnore {
		return "INSERT OR IGNORE INTO " + into
	}
	return "INSERT INTO " + into + " ON CONFLICT (" + key + ") DO NOTHING"
}

// placeholderStyle says how generated statements write their parameters:
// $n, or ? where the dialect prefers anonymous parameters in long lists
// (SQLite looks a named parameter up in a linear list, which makes binding
// a thousand of them quadratic). A ? after $1..$k stands for $k+1, $k+2...
type placeholderStyle bool

// list returns n placeholders for the parameters first, first+1, ...
func (anonymous placeholderStyle) list(first, n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		if anonymous {
			b.WriteString("?")
		} else {
			fmt.Fprintf(&b, "$%d", first+i)
		}
	}
	return b.String()
}

// rows returns n parenthesized groups of width placeholders, numbered on
// from 1, with constant SQL appended to every group.
func (anonymous placeholderStyle) rows(n, width int, constants string) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(" + anonymous.list(1+i*width, width))
		if constants != "" {
			b.WriteString(", " + constants)
		}
		b.WriteString(")")
	}
	return b.String()
}

// batches splits n items into statement sizes: as many of max as fit, then
// the powers of two that make up the rest (max is a power of two).
func batches(n, max int) []int {
	var sizes []int
	for ; n >= max; n -= max {
		sizes = append(sizes, max)
	}
	for bit := max >> 1; bit > 0; bit >>= 1 {
		if n&bit != 0 {
			sizes = append(sizes, bit)
		}
	}
	return sizes
}

// roundUp returns the power of two at least n (n >= 1).
func roundUp(n int) int { return 1 << bits.Len(uint(n-1)) }

// powersOfTwo returns 1, 2, 4, ..., max.
func powersOfTwo(max int) []int {
	var sizes []int
	for n := 1; n <= max; n <<= 1 {
		sizes = append(sizes, n)
	}
	return sizes
}

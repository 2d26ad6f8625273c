-- The desired-versus-actual model of each device (see package c2): what a
-- device acknowledged of what C2 wants it to hold, whether it acknowledges
-- at all, and the order of the commands C2 sends it. Times are Unix
-- microseconds in UTC.

-- Per membership, the topic key version the device acknowledged (0: none)
-- and when. The wanted version is the topic's key_version.
ALTER TABLE memberships ADD COLUMN acked_version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE memberships ADD COLUMN acked_at INTEGER;

-- Per link (PK mode), the public key of the source that the target's
-- device acknowledged holding (public keys are not secret) and when.
ALTER TABLE links ADD COLUMN acked_key BLOB;
ALTER TABLE links ADD COLUMN acked_at INTEGER;

-- Counting the members of a topic that hold its current key reads this
-- index only.
CREATE INDEX memberships_acked ON memberships (topic, acked_version);

-- Per client: whether its device acknowledges (ack_mode set by the
-- operator: auto, yes, no; acks_seen learned from its first
-- acknowledgement or sync request), when it was last heard, the timestamp
-- of the last command sent to it (commands to one client carry strictly
-- increasing timestamps), the key it held before a client-key change not
-- yet confirmed, and why its queue is stalled.
CREATE TABLE client_state (
    client_id       BLOB    NOT NULL PRIMARY KEY REFERENCES clients (id) ON DELETE CASCADE,
    ack_mode        TEXT    NOT NULL DEFAULT 'auto' CHECK (ack_mode IN ('auto', 'yes', 'no')),
    acks_seen       INTEGER NOT NULL DEFAULT 0 CHECK (acks_seen IN (0, 1)),
    last_seen       INTEGER,
    last_sync       INTEGER,
    last_command_ts INTEGER NOT NULL DEFAULT 0,
    prev_key        BLOB,
    key_changed_at  INTEGER,
    key_state       TEXT    NOT NULL DEFAULT '',
    stalled_reason  TEXT    NOT NULL DEFAULT '',
    stalled_at      INTEGER,
    -- PK mode: the C2 public key the device acknowledged holding.
    c2_key_acked    BLOB
) STRICT, WITHOUT ROWID;

CREATE INDEX client_state_stalled ON client_state (client_id) WHERE stalled_reason <> '';
CREATE INDEX client_state_key_change ON client_state (client_id) WHERE prev_key IS NOT NULL;

-- The outbox gains the state "superseded" (a newer command made it
-- pointless before it was sent) and the time its device acknowledged it.
-- SQLite cannot change a CHECK constraint in place: the table is rebuilt
-- with the same rows and seqs.
CREATE TABLE outbox_new (
    seq             INTEGER NOT NULL PRIMARY KEY,
    id              BLOB    NOT NULL UNIQUE CHECK (length(id) = 16),
    client_id       BLOB    NOT NULL CHECK (length(client_id) = 16),
    kind            TEXT    NOT NULL,
    target          TEXT    NOT NULL,
    payload         BLOB    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'sent', 'failed', 'superseded')),
    attempts        INTEGER NOT NULL CHECK (attempts >= 0),
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    sent_at         INTEGER,
    lease_owner     TEXT,
    lease_until     INTEGER,
    acked_at        INTEGER
) STRICT;

INSERT INTO outbox_new (seq, id, client_id, kind, target, payload, state, attempts, next_attempt_at,
                        last_error, created_at, sent_at, lease_owner, lease_until)
    SELECT seq, id, client_id, kind, target, payload, state, attempts, next_attempt_at,
           last_error, created_at, sent_at, lease_owner, lease_until FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_new RENAME TO outbox;

CREATE INDEX outbox_claim ON outbox (seq, client_id, next_attempt_at, lease_until) WHERE state = 'pending';
CREATE INDEX outbox_client_head ON outbox (client_id, seq) WHERE state = 'pending';
CREATE INDEX outbox_failed ON outbox (seq) WHERE state = 'failed';
CREATE INDEX outbox_by_client ON outbox (client_id, seq);
CREATE INDEX outbox_by_target ON outbox (target, seq);
-- The commands of one client about one item (superseding, repair).
CREATE INDEX outbox_by_item ON outbox (client_id, target, seq);
-- Superseding the pending commands about a topic when it is rotated.
CREATE INDEX outbox_pending_target ON outbox (target) WHERE state = 'pending';

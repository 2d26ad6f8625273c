-- The C2 schema for SQLite. Times are Unix microseconds in UTC; ids, keys
-- and payloads are BLOBs that the program checks again when it reads them.

CREATE TABLE clients (
    id         BLOB    NOT NULL PRIMARY KEY CHECK (length(id) = 16),
    name       TEXT    NOT NULL,
    sealed_key BLOB,
    public_key BLOB,
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE topics (
    name        TEXT    NOT NULL PRIMARY KEY,
    hash        BLOB    NOT NULL CHECK (length(hash) = 16),
    sealed_key  BLOB    NOT NULL,
    key_version INTEGER NOT NULL CHECK (key_version >= 0),
    created_at  INTEGER NOT NULL,
    rotated_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE memberships (
    client_id BLOB NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    topic     TEXT NOT NULL REFERENCES topics (name) ON DELETE CASCADE,
    PRIMARY KEY (client_id, topic)
) STRICT, WITHOUT ROWID;

CREATE INDEX memberships_by_topic ON memberships (topic, client_id);

CREATE TABLE links (
    source BLOB NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    target BLOB NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    PRIMARY KEY (source, target)
) STRICT, WITHOUT ROWID;

-- Deleting a client finds the links to it through this index.
CREATE INDEX links_by_target ON links (target, source);

CREATE TABLE settings (
    name  TEXT NOT NULL PRIMARY KEY,
    value BLOB NOT NULL
) STRICT, WITHOUT ROWID;

-- Row counts kept in the transactions that insert and delete, so that
-- counting a million clients reads one row.
CREATE TABLE counters (
    name  TEXT    NOT NULL PRIMARY KEY,
    value INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

INSERT INTO counters (name, value) VALUES ('clients', 0), ('topics', 0);

-- The outbox. Rows are never deleted by the store: seq (the rowid) only grows.
CREATE TABLE outbox (
    seq             INTEGER NOT NULL PRIMARY KEY,
    id              BLOB    NOT NULL UNIQUE CHECK (length(id) = 16),
    client_id       BLOB    NOT NULL CHECK (length(client_id) = 16),
    kind            TEXT    NOT NULL,
    target          TEXT    NOT NULL,
    payload         BLOB    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'sent', 'failed')),
    attempts        INTEGER NOT NULL CHECK (attempts >= 0),
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    sent_at         INTEGER,
    lease_owner     TEXT,
    lease_until     INTEGER
) STRICT;

-- Claiming walks the pending commands in seq order with everything its
-- filter needs in the index, and checks that each is its client's oldest
-- pending command through outbox_client_head. States are few, so the
-- queries name a state literally and use these partial indexes; an index
-- on state alone would tempt the planner away from the id index when
-- settling commands.
CREATE INDEX outbox_claim ON outbox (seq, client_id, next_attempt_at, lease_until) WHERE state = 'pending';
CREATE INDEX outbox_client_head ON outbox (client_id, seq) WHERE state = 'pending';
CREATE INDEX outbox_failed ON outbox (seq) WHERE state = 'failed';

-- ListCommands and CountCommands by client and by target.
CREATE INDEX outbox_by_client ON outbox (client_id, seq);
CREATE INDEX outbox_by_target ON outbox (target, seq);

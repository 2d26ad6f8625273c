-- The C2 schema for PostgreSQL. Names that are listed in order are in the
-- "C" collation, so that they sort by bytes as in Go and in SQLite.

CREATE TABLE clients (
    id         BYTEA       NOT NULL PRIMARY KEY CHECK (octet_length(id) = 16),
    name       TEXT        NOT NULL,
    sealed_key BYTEA,
    public_key BYTEA,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE topics (
    name        TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    hash        BYTEA       NOT NULL CHECK (octet_length(hash) = 16),
    sealed_key  BYTEA       NOT NULL,
    key_version BIGINT      NOT NULL CHECK (key_version >= 0),
    created_at  TIMESTAMPTZ NOT NULL,
    rotated_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE memberships (
    client_id BYTEA            NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    topic     TEXT COLLATE "C" NOT NULL REFERENCES topics (name) ON DELETE CASCADE,
    PRIMARY KEY (client_id, topic)
);

CREATE INDEX memberships_by_topic ON memberships (topic, client_id);

CREATE TABLE links (
    source BYTEA NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    target BYTEA NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    PRIMARY KEY (source, target)
);

-- Deleting a client finds the links to it through this index.
CREATE INDEX links_by_target ON links (target, source);

CREATE TABLE settings (
    name  TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    value BYTEA NOT NULL
);

-- Row counts kept in the transactions that insert and delete, so that
-- counting a million clients reads one row.
CREATE TABLE counters (
    name  TEXT   NOT NULL PRIMARY KEY,
    value BIGINT NOT NULL
);

INSERT INTO counters (name, value) VALUES ('clients', 0), ('topics', 0);

-- The outbox. Rows are never deleted by the store.
CREATE TABLE outbox (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id              BYTEA       NOT NULL UNIQUE CHECK (octet_length(id) = 16),
    client_id       BYTEA       NOT NULL CHECK (octet_length(client_id) = 16),
    kind            TEXT        NOT NULL,
    target          TEXT        NOT NULL,
    payload         BYTEA       NOT NULL,
    state           TEXT        NOT NULL CHECK (state IN ('pending', 'sent', 'failed')),
    attempts        INTEGER     NOT NULL CHECK (attempts >= 0),
    next_attempt_at TIMESTAMPTZ NOT NULL,
    last_error      TEXT        NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    sent_at         TIMESTAMPTZ,
    lease_owner     TEXT,
    lease_until     TIMESTAMPTZ
);

-- Claiming walks the pending commands in seq order, locking with SKIP
-- LOCKED, and checks that each is its client's oldest pending command
-- through outbox_client_head. The queries name states literally so that
-- these partial indexes apply.
CREATE INDEX outbox_claim ON outbox (seq) INCLUDE (client_id, next_attempt_at, lease_until) WHERE state = 'pending';
CREATE INDEX outbox_client_head ON outbox (client_id, seq) WHERE state = 'pending';
CREATE INDEX outbox_failed ON outbox (seq) WHERE state = 'failed';

-- ListCommands and CountCommands by client and by target.
CREATE INDEX outbox_by_client ON outbox (client_id, seq);
CREATE INDEX outbox_by_target ON outbox (target, seq);

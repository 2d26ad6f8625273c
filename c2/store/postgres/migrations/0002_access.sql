-- API tokens (only their SHA-256 is stored) and the audit log of the C2
-- API.

CREATE TABLE api_tokens (
    name       TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    hash       BYTEA       NOT NULL UNIQUE CHECK (octet_length(hash) = 32),
    scope      TEXT        NOT NULL,
    created_by TEXT        NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ,
    revoked_at TIMESTAMPTZ
);

-- Records are only appended; id only grows.
CREATE TABLE audit_log (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at      TIMESTAMPTZ NOT NULL,
    actor   TEXT        NOT NULL,
    action  TEXT        NOT NULL,
    target  TEXT        NOT NULL,
    outcome TEXT        NOT NULL,
    detail  TEXT        NOT NULL,
    remote  TEXT        NOT NULL
);

CREATE INDEX audit_by_actor ON audit_log (actor, id);
CREATE INDEX audit_by_action ON audit_log (action, id);
CREATE INDEX audit_by_target ON audit_log (target, id);
CREATE INDEX audit_by_time ON audit_log (at, id);

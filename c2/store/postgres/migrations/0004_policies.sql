-- Automatic rotation (package c2's scheduler): the policies, the schedule
-- of the keys they cover, and the outcome of every rotation. Durations are
-- microseconds.

-- A policy rotates the keys of the targets it selects (topics by exact
-- name, prefix or MQTT filter; clients; C2's key pair) on a crypto period
-- or at a key age, or when an event occurs threshold times in a window.
CREATE TABLE rotation_policies (
    name          TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    kind          TEXT        NOT NULL CHECK (kind IN ('topic', 'client', 'c2')),
    selector      TEXT        NOT NULL CHECK (selector IN ('all', 'exact', 'prefix', 'filter')),
    pattern       TEXT COLLATE "C" NOT NULL,
    period        BIGINT      NOT NULL CHECK (period >= 0),
    max_age       BIGINT      NOT NULL CHECK (max_age >= 0),
    jitter        BIGINT      NOT NULL CHECK (jitter >= 0),
    on_event      TEXT        NOT NULL,
    threshold     BIGINT      NOT NULL CHECK (threshold >= 0),
    event_window  BIGINT      NOT NULL CHECK (event_window >= 0),
    ramp          BIGINT      NOT NULL CHECK (ramp >= 0),
    pause_behind  BIGINT      NOT NULL CHECK (pause_behind >= 0),
    paused_reason TEXT        NOT NULL,
    created_by    TEXT        NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    started_at    TIMESTAMPTZ NOT NULL
);

-- Exact-name policies are found by their target, without reading the others.
CREATE INDEX rotation_policies_by_pattern ON rotation_policies (kind, selector, pattern);

-- The event rules, read by every replica without reading the other policies.
CREATE INDEX rotation_policies_events ON rotation_policies (name) WHERE on_event <> '';

-- When each target is to be looked at next. due_at is a lower bound: the
-- scheduler computes due-ness again from the key's age when it gets there.
-- event, when set, forces a rotation (a coalesced membership leave, an
-- event rule). A replica claims a row with a lease before working on it.
CREATE TABLE rotation_due (
    kind        TEXT COLLATE "C" NOT NULL,
    target      TEXT COLLATE "C" NOT NULL,
    due_at      TIMESTAMPTZ NOT NULL,
    event       TEXT        NOT NULL,
    attempts    BIGINT      NOT NULL,
    last_error  TEXT        NOT NULL,
    lease_owner TEXT,
    lease_until TIMESTAMPTZ,
    PRIMARY KEY (kind, target)
);

CREATE INDEX rotation_due_by_time ON rotation_due (due_at);

-- The outcome of every rotation the scheduler fired: started, then
-- converged, stuck (devices behind), superseded by a newer one, or failed.
CREATE TABLE rotations (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind       TEXT        NOT NULL,
    target     TEXT COLLATE "C" NOT NULL,
    policy     TEXT COLLATE "C" NOT NULL,
    reason     TEXT        NOT NULL,
    due_at     TIMESTAMPTZ NOT NULL,
    fired_at   TIMESTAMPTZ NOT NULL,
    version    BIGINT      NOT NULL,
    commands   BIGINT      NOT NULL,
    state      TEXT        NOT NULL CHECK (state IN ('started', 'converged', 'stuck', 'superseded', 'failed')),
    behind     BIGINT      NOT NULL,
    detail     TEXT        NOT NULL,
    settled_at TIMESTAMPTZ,
    owner      TEXT        NOT NULL
);

CREATE INDEX rotations_by_state ON rotations (state, fired_at);
CREATE INDEX rotations_by_target ON rotations (kind, target, id);
CREATE INDEX rotations_by_policy ON rotations (policy, id);

-- When each client's key was made (NULL: at created_at), for key-age
-- policies.
ALTER TABLE clients ADD COLUMN key_created_at TIMESTAMPTZ;

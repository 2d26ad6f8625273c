-- The desired-versus-actual model of each device (see package c2): what a
-- device acknowledged of what C2 wants it to hold, whether it acknowledges
-- at all, and the order of the commands C2 sends it.

-- Per membership, the topic key version the device acknowledged (0: none)
-- and when. The wanted version is the topic's key_version.
ALTER TABLE memberships ADD COLUMN acked_version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE memberships ADD COLUMN acked_at TIMESTAMPTZ;

-- Per link (PK mode), the public key of the source that the target's
-- device acknowledged holding (public keys are not secret) and when.
ALTER TABLE links ADD COLUMN acked_key BYTEA;
ALTER TABLE links ADD COLUMN acked_at TIMESTAMPTZ;

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
    client_id       BYTEA       NOT NULL PRIMARY KEY REFERENCES clients (id) ON DELETE CASCADE,
    ack_mode        TEXT        NOT NULL DEFAULT 'auto' CHECK (ack_mode IN ('auto', 'yes', 'no')),
    acks_seen       INTEGER     NOT NULL DEFAULT 0 CHECK (acks_seen IN (0, 1)),
    last_seen       TIMESTAMPTZ,
    last_sync       TIMESTAMPTZ,
    last_command_ts BIGINT      NOT NULL DEFAULT 0,
    prev_key        BYTEA,
    key_changed_at  TIMESTAMPTZ,
    key_state       TEXT        NOT NULL DEFAULT '',
    stalled_reason  TEXT        NOT NULL DEFAULT '',
    stalled_at      TIMESTAMPTZ,
    -- PK mode: the C2 public key the device acknowledged holding.
    c2_key_acked    BYTEA
);

CREATE INDEX client_state_stalled ON client_state (client_id) WHERE stalled_reason <> '';
CREATE INDEX client_state_key_change ON client_state (client_id) WHERE prev_key IS NOT NULL;

-- The outbox gains the state "superseded" (a newer command made it
-- pointless before it was sent) and the time its device acknowledged it.
ALTER TABLE outbox DROP CONSTRAINT outbox_state_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_state_check CHECK (state IN ('pending', 'sent', 'failed', 'superseded'));
ALTER TABLE outbox ADD COLUMN acked_at TIMESTAMPTZ;
-- The commands of one client about one item (superseding, repair).
CREATE INDEX outbox_by_item ON outbox (client_id, target, seq);
-- Superseding the pending commands about a topic when it is rotated.
CREATE INDEX outbox_pending_target ON outbox (target) WHERE state = 'pending';

-- Rotation by message budget: a policy with max_messages rotates a topic
-- once the messages C2's monitor saw under the topic's current key reach
-- it (FIPS mode's AES-GCM limit on messages per key).
ALTER TABLE rotation_policies ADD COLUMN max_messages INTEGER NOT NULL DEFAULT 0 CHECK (max_messages >= 0);

-- Budget policies are found without reading the others.
CREATE INDEX rotation_policies_budget ON rotation_policies (name) WHERE max_messages > 0;

-- The messages the monitor counted under the topic's current key (version
-- key_version): incremented by every replica (messages = messages + n),
-- set back to 0 by the rotation that changes key_version.
ALTER TABLE topics ADD COLUMN messages INTEGER NOT NULL DEFAULT 0 CHECK (messages >= 0);

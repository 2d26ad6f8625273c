-- The topic key the last rotation replaced (version key_version - 1),
-- sealed like sealed_key and bound to its own version, kept while devices
-- may still use it: the monitor of every C2 replica, and of a C2 after a
-- restart, tells a device lagging after a rotation from a forgery with it.
-- It was replaced at rotated_at. NULL when there is none: no rotation yet,
-- a rotation after a member removal (the old key is revoked at once, so it
-- is not kept), or its transition window is over (C2 clears it).
ALTER TABLE topics ADD COLUMN prev_sealed_key BYTEA;

-- Clearing the previous keys whose window is over reads only the topics
-- that have one.
CREATE INDEX topics_prev_key ON topics (rotated_at) WHERE prev_sealed_key IS NOT NULL;

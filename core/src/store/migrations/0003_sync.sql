-- 0003: sync bookkeeping on the log.
-- `hash`: SHA-256 of the sealed envelope (its identity on the relay).
-- `server_seq`: the relay's sequence once the relay holds it (acknowledged
-- upload, or pulled). `outbound` = 1 for changes made on this device: those
-- with `server_seq IS NULL` form the outbox.

ALTER TABLE section_log ADD COLUMN hash BLOB;
ALTER TABLE section_log ADD COLUMN server_seq INTEGER;
ALTER TABLE section_log ADD COLUMN outbound INTEGER NOT NULL DEFAULT 1;

UPDATE section_log SET hash = satchel_sha256(envelope) WHERE hash IS NULL;

CREATE UNIQUE INDEX section_log_by_hash ON section_log (hash);
CREATE INDEX section_log_outbox ON section_log (seq) WHERE outbound = 1 AND server_seq IS NULL;

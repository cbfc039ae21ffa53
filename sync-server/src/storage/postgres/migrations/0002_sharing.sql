-- Sharing (issue 4): membership derived from the verified access log
-- (role, sections, write flag, expiry), the creator's card on the record
-- (the root of the log), and the audit trail of pulls and pushes.

ALTER TABLE records ADD COLUMN owner_card BYTEA;
UPDATE records SET owner_card = (
    SELECT m.card FROM members m
    WHERE m.record_id = records.record_id AND m.identity = records.owner
);

-- Existing rows are owner devices: every section, write, no expiry.
ALTER TABLE members ADD COLUMN sections TEXT NOT NULL DEFAULT '[]';  -- JSON array of names
ALTER TABLE members ADD COLUMN can_write BOOLEAN NOT NULL DEFAULT TRUE;
ALTER TABLE members ADD COLUMN expires_at_ms BIGINT;                 -- NULL: never

CREATE TABLE audit (
    seq        BIGSERIAL PRIMARY KEY,
    record_id  BYTEA NOT NULL,
    at_ms      BIGINT NOT NULL,
    identity   BYTEA NOT NULL,
    action     TEXT NOT NULL,                      -- 'pull' | 'push'
    section    TEXT NOT NULL,
    count      BIGINT NOT NULL
);
CREATE INDEX audit_by_record ON audit (record_id, seq);

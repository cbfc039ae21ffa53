-- Sharing (issue 4): membership derived from the verified access log
-- (role, sections, write flag, expiry), the creator's card on the record
-- (the root of the log), and the audit trail of pulls and pushes.

ALTER TABLE records ADD COLUMN owner_card BLOB;
UPDATE records SET owner_card = (
    SELECT m.card FROM members m
    WHERE m.record_id = records.record_id AND m.identity = records.owner
);

-- Existing rows are owner devices: every section, write, no expiry.
ALTER TABLE members ADD COLUMN sections TEXT NOT NULL DEFAULT '[]';  -- JSON array of names
ALTER TABLE members ADD COLUMN can_write INTEGER NOT NULL DEFAULT 1;
ALTER TABLE members ADD COLUMN expires_at_ms INTEGER;                -- NULL: never

CREATE TABLE audit (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    record_id  BLOB NOT NULL,
    at_ms      INTEGER NOT NULL,
    identity   BLOB NOT NULL,
    action     TEXT NOT NULL,                      -- 'pull' | 'push'
    section    TEXT NOT NULL,
    count      INTEGER NOT NULL
);
CREATE INDEX audit_by_record ON audit (record_id, seq);

-- Session revocation: an owner device ends every token of an identity.
-- The tokens go at once; the revocation row tells every relay instance
-- (each polls this table) to drop the identity from its token cache and
-- to close its WebSockets. Rows are purged after an hour.

CREATE INDEX tokens_by_identity ON tokens (identity);

CREATE TABLE session_revocations (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    identity      BLOB NOT NULL,
    at_ms         INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL
);
CREATE INDEX session_revocations_by_time ON session_revocations (at_ms);

-- Schema 3: session revocation, and the LISTEN catch-up index.
-- Session revocation: an owner device ends every token of an identity.
-- The tokens go at once; the revocation row tells every relay instance
-- (each polls this table) to drop the identity from its token cache and
-- to close its WebSockets. Rows are purged after an hour.

CREATE INDEX tokens_by_identity ON tokens (identity);

CREATE TABLE session_revocations (
    seq           BIGSERIAL PRIMARY KEY,
    identity      BYTEA NOT NULL,
    at_ms         BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);
CREATE INDEX session_revocations_by_time ON session_revocations (at_ms);

-- The catch-up after the LISTEN connection reconnects reads the sections
-- changed after a sequence number.
CREATE INDEX sections_by_max_seq ON sections (max_seq);

-- Satchel relay schema, version 1 (SQLite). Ids are raw bytes; payloads
-- are ciphertext or public signed data.

CREATE TABLE tokens (
    hash          BLOB PRIMARY KEY,      -- SHA-256 of the bearer token
    identity      BLOB NOT NULL,
    expires_at_ms INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE challenges (
    identity      BLOB NOT NULL,
    challenge     BLOB NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    PRIMARY KEY (identity, challenge)
) WITHOUT ROWID;

CREATE TABLE records (
    record_id     BLOB PRIMARY KEY,
    owner         BLOB NOT NULL,         -- first owner device
    created_at_ms INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE members (
    record_id BLOB NOT NULL,
    identity  BLOB NOT NULL,
    role      TEXT NOT NULL,
    card      BLOB NOT NULL,             -- binary identity card
    PRIMARY KEY (record_id, identity)
) WITHOUT ROWID;

CREATE TABLE access_log (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    record_id      BLOB NOT NULL,
    statement_hash BLOB NOT NULL,        -- SHA-256 of statement (idempotency)
    statement      BLOB NOT NULL,        -- exact bytes as signed
    signature      BLOB NOT NULL
);
CREATE UNIQUE INDEX access_log_by_hash ON access_log (record_id, statement_hash);
CREATE INDEX access_log_by_record ON access_log (record_id, seq);

-- Idempotency is by hash. Equal hashes imply equal headers, so the
-- lookup goes through (record, section, author, author_seq), an index that
-- grows at the end of each author's stream instead of at random places
-- like an index on the hash would, then compares the stored hash.
CREATE TABLE envelopes (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,  -- relay-wide, never reused
    record_id  BLOB NOT NULL,
    section    TEXT NOT NULL,
    author     BLOB NOT NULL,
    author_seq INTEGER NOT NULL,                   -- the header's seq (u64 bits)
    hash       BLOB NOT NULL,                      -- SHA-256 of bytes
    bytes      BLOB NOT NULL
);
CREATE INDEX envelopes_by_section ON envelopes (record_id, section, seq);
CREATE INDEX envelopes_by_author ON envelopes (record_id, section, author, author_seq);

-- Newest seq per section (the feed, and the snapshot bound).
CREATE TABLE sections (
    record_id BLOB NOT NULL,
    section   TEXT NOT NULL,
    max_seq   INTEGER NOT NULL,
    PRIMARY KEY (record_id, section)
) WITHOUT ROWID;

CREATE TABLE snapshots (
    record_id BLOB NOT NULL,
    section   TEXT NOT NULL,
    upto_seq  INTEGER NOT NULL,
    bytes     BLOB NOT NULL,
    PRIMARY KEY (record_id, section)
);

CREATE TABLE links (
    link_id        TEXT PRIMARY KEY,
    record_id      BLOB NOT NULL,
    creator        BLOB NOT NULL,
    joiner         BLOB,
    join_payload   BLOB,
    accept_payload BLOB,
    expires_at_ms  INTEGER NOT NULL
);
CREATE INDEX links_by_expiry ON links (expires_at_ms);
CREATE INDEX tokens_by_expiry ON tokens (expires_at_ms);

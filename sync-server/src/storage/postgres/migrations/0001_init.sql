-- Satchel relay schema, version 1 (PostgreSQL). Ids are raw bytes; payloads
-- are ciphertext or public signed data. Tables are created in the
-- connection's search_path (one schema per deployment or test run).

CREATE TABLE tokens (
    hash          BYTEA PRIMARY KEY,     -- SHA-256 of the bearer token
    identity      BYTEA NOT NULL,
    expires_at_ms BIGINT NOT NULL
);
CREATE INDEX tokens_by_expiry ON tokens (expires_at_ms);

CREATE TABLE challenges (
    identity      BYTEA NOT NULL,
    challenge     BYTEA NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    PRIMARY KEY (identity, challenge)
);

CREATE TABLE records (
    record_id     BYTEA PRIMARY KEY,
    owner         BYTEA NOT NULL,        -- first owner device
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE members (
    record_id BYTEA NOT NULL,
    identity  BYTEA NOT NULL,
    role      TEXT NOT NULL,
    card      BYTEA NOT NULL,            -- binary identity card
    PRIMARY KEY (record_id, identity)
);

CREATE TABLE access_log (
    seq            BIGSERIAL PRIMARY KEY,
    record_id      BYTEA NOT NULL,
    statement_hash BYTEA NOT NULL,       -- SHA-256 of statement (idempotency)
    statement      BYTEA NOT NULL,       -- exact bytes as signed
    signature      BYTEA NOT NULL,
    UNIQUE (record_id, statement_hash)
);
CREATE INDEX access_log_by_record ON access_log (record_id, seq);

-- Idempotency is by hash. Equal hashes imply equal headers, so the
-- lookup goes through (record, section, author, author_seq), an index that
-- grows at the end of each author's stream, then compares the stored hash.
CREATE TABLE envelopes (
    seq        BIGSERIAL PRIMARY KEY,    -- relay-wide, never reused
    record_id  BYTEA NOT NULL,
    section    TEXT NOT NULL,
    author     BYTEA NOT NULL,
    author_seq BIGINT NOT NULL,          -- the header's seq (u64 bits)
    hash       BYTEA NOT NULL,           -- SHA-256 of bytes
    bytes      BYTEA NOT NULL
);
CREATE INDEX envelopes_by_section ON envelopes (record_id, section, seq);
CREATE INDEX envelopes_by_author ON envelopes (record_id, section, author, author_seq);

-- Newest seq per section (the feed, and the snapshot bound).
CREATE TABLE sections (
    record_id BYTEA NOT NULL,
    section   TEXT NOT NULL,
    max_seq   BIGINT NOT NULL,
    PRIMARY KEY (record_id, section)
);

CREATE TABLE snapshots (
    record_id BYTEA NOT NULL,
    section   TEXT NOT NULL,
    upto_seq  BIGINT NOT NULL,
    bytes     BYTEA NOT NULL,
    PRIMARY KEY (record_id, section)
);

CREATE TABLE links (
    link_id        TEXT PRIMARY KEY,
    record_id      BYTEA NOT NULL,
    creator        BYTEA NOT NULL,
    joiner         BYTEA,
    join_payload   BYTEA,
    accept_payload BYTEA,
    expires_at_ms  BIGINT NOT NULL
);
CREATE INDEX links_by_expiry ON links (expires_at_ms);

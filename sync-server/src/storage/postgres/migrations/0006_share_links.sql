-- SMART Health Links hosted blind (issue: share links). A link is known by
-- its handle (SHA-256 of its secret id); the relay never has the id or the
-- key. The passcode is kept as an Argon2id PHC string only. Files are JWE
-- compact text exactly as the device made it. Location tokens are kept as
-- their SHA-256. Opens carry the recipient's self-declared name.

CREATE TABLE share_links (
    handle        BYTEA PRIMARY KEY,
    record_id     BYTEA NOT NULL REFERENCES records (record_id) ON DELETE CASCADE,
    created_by    BYTEA NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT,                 -- NULL: until revoked
    revoked_at_ms BIGINT,
    passcode_hash TEXT,                    -- Argon2id PHC string; NULL: no passcode
    attempts_left BIGINT CHECK (attempts_left >= 0),
    opens_left    BIGINT CHECK (opens_left >= 0),
    direct        BOOLEAN NOT NULL
);
CREATE INDEX share_links_by_record ON share_links (record_id, created_at_ms);

CREATE TABLE share_link_files (
    handle       BYTEA NOT NULL REFERENCES share_links (handle) ON DELETE CASCADE,
    idx          BIGINT NOT NULL,
    content_type TEXT NOT NULL,
    jwe          TEXT NOT NULL,
    PRIMARY KEY (handle, idx)
);

CREATE TABLE share_link_locations (
    token_hash    BYTEA PRIMARY KEY,        -- SHA-256 of the location token
    handle        BYTEA NOT NULL REFERENCES share_links (handle) ON DELETE CASCADE,
    idx           BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);
CREATE INDEX share_link_locations_by_handle ON share_link_locations (handle);
CREATE INDEX share_link_locations_by_expiry ON share_link_locations (expires_at_ms);

CREATE TABLE share_link_opens (
    seq       BIGSERIAL PRIMARY KEY,
    handle    BYTEA NOT NULL REFERENCES share_links (handle) ON DELETE CASCADE,
    at_ms     BIGINT NOT NULL,
    recipient TEXT NOT NULL,
    kind      TEXT NOT NULL                -- 'manifest' | 'direct' | 'wrong-passcode'
);
CREATE INDEX share_link_opens_by_handle ON share_link_opens (handle, seq);

-- Replication (issue 15): how far each stream of a record (its access log,
-- its feed, each log's envelopes, in each direction) has been exchanged
-- with each upstream relay; the members index a relay's listing of
-- "records that name me a replica" reads; where an envelope came from.

CREATE TABLE replication_cursors (
    upstream  TEXT NOT NULL,     -- the upstream's base URL
    record_id BYTEA NOT NULL,
    stream    TEXT NOT NULL,     -- e.g. "pull:access", "pull:log:vitals", "push:feed"
    seq       BIGINT NOT NULL,
    PRIMARY KEY (upstream, record_id, stream)
);

CREATE INDEX members_by_identity ON members (identity, role, record_id);

-- The upstream relay an envelope was replicated from (NULL: uploaded
-- here), so that it is not offered back to that upstream.
ALTER TABLE envelopes ADD COLUMN origin TEXT;

-- Federated audit (issue 15): events a replica relay recorded and
-- forwarded here carry that relay's identity and their seq in its trail
-- (NULL for events that happened here); the pair is unique per record, so
-- forwarding an event again stores nothing.

ALTER TABLE audit ADD COLUMN relay BYTEA;
ALTER TABLE audit ADD COLUMN relay_seq BIGINT;
CREATE UNIQUE INDEX audit_forwarded ON audit (record_id, relay, relay_seq) WHERE relay IS NOT NULL;

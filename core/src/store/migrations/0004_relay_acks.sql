-- 0004: acknowledgements per relay (a device may use several relays).
-- `relay`: the relay's address as the profile lists it; `hash`: the
-- envelope's SHA-256 (as in section_log); `relay_seq`: the relay's sequence
-- for it. The outbox for relay R is the local changes (outbound = 1) with
-- no row for R here. `section_log.server_seq` keeps meaning "some relay
-- holds it" (a held envelope is never sealed again).
--
-- Acknowledgements made before this migration were by the one relay the
-- device used, named in meta `sync/relay` (plaintext: an address, never
-- clinical data): they are kept under that relay.

CREATE TABLE relay_ack (
    relay     TEXT NOT NULL,
    hash      BLOB NOT NULL,
    relay_seq INTEGER NOT NULL,
    PRIMARY KEY (relay, hash)
) STRICT, WITHOUT ROWID;

INSERT INTO relay_ack (relay, hash, relay_seq)
    SELECT CAST(m.value AS TEXT), l.hash, l.server_seq
    FROM section_log l, meta m
    WHERE m.key = 'sync/relay' AND l.server_seq IS NOT NULL AND l.hash IS NOT NULL;

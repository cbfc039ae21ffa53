-- 0002: local compaction snapshots. Opening a section reads its newest
-- snapshot and only the log entries stored after it.

CREATE TABLE section_snapshot (
    section  TEXT PRIMARY KEY NOT NULL,
    upto_seq INTEGER NOT NULL,
    envelope BLOB NOT NULL
) STRICT;

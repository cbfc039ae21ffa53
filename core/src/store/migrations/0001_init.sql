-- 0001: the device store's first schema.
-- Nothing clinical is stored in plaintext: `meta.value`, `section_log.envelope`
-- and `section_snapshot.envelope` hold sealed bytes (see core/src/profile).
-- Only structural names (meta keys, section names) are plaintext.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value BLOB NOT NULL
) STRICT;

-- Every sealed change of every section, in the order this device stored it.
CREATE TABLE section_log (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    section  TEXT NOT NULL,
    envelope BLOB NOT NULL
) STRICT;

CREATE INDEX section_log_by_section ON section_log (section, seq);

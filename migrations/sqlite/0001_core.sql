-- Records submitted by departments. One row per item instance.
CREATE TABLE records (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    subject_type TEXT    NOT NULL,
    subject_id   TEXT    NOT NULL,
    item         TEXT    NOT NULL,
    provider     TEXT    NOT NULL,
    data         TEXT    NOT NULL,   -- JSON object of catalog fields
    recorded_at  TEXT    NOT NULL,   -- RFC 3339 UTC
    request_id   TEXT    NOT NULL
);
CREATE INDEX records_subject ON records (subject_id, subject_type);

-- The audit log: leaves of an RFC 6962 Merkle tree, in sequence order.
CREATE TABLE audit_log (
    seq      INTEGER PRIMARY KEY,    -- assigned by the sequencer, contiguous from 0
    ts       TEXT    NOT NULL,
    org      TEXT,
    subject  TEXT,                   -- keyed hash of the subject id, never the id
    purpose  TEXT,
    outcome  TEXT    NOT NULL,
    entry    BLOB    NOT NULL,       -- canonical serialisation (the Merkle leaf data)
    leaf     BLOB    NOT NULL        -- leaf hash
);
CREATE INDEX audit_org ON audit_log (org, seq);
-- On a 12-hex-digit prefix of the keyed hash (48 bits: a handful of false
-- positives per billion entries, filtered by the full comparison): a short
-- key keeps random inserts cheap, and this index is written on every request.
CREATE INDEX audit_subject ON audit_log (substr(subject, 1, 12));
CREATE INDEX audit_ts ON audit_log (ts);

-- Perfect-subtree nodes: (level, idx) covers leaves [idx*2^level, (idx+1)*2^level).
CREATE TABLE merkle_nodes (
    level INTEGER NOT NULL,
    idx   INTEGER NOT NULL,
    hash  BLOB    NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;

-- The one tree head; every append locks and advances it.
CREATE TABLE log_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    size INTEGER NOT NULL,
    root BLOB    NOT NULL
);
INSERT INTO log_head (id, size, root)
VALUES (1, 0, X'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');

-- Signed checkpoints (C2SP signed notes).
CREATE TABLE checkpoints (
    size       INTEGER PRIMARY KEY,
    root       BLOB    NOT NULL,
    note       TEXT    NOT NULL,
    created_at TEXT    NOT NULL
);

-- Audit log v2: the log as C2SP tlog-tiles rows, sequenced under the
-- tree-head lock, one transaction per batch (crates/credlog,
-- src/store/tlog.rs). Entries of the v1 log are discarded (see README).
DROP TABLE audit_log;
DROP TABLE merkle_nodes;
DROP TABLE log_head;
DELETE FROM checkpoints;

-- The one tree head; every batch locks it (SELECT ... FOR UPDATE).
CREATE TABLE tlog_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    size BIGINT  NOT NULL,
    root BYTEA   NOT NULL
);
INSERT INTO tlog_head (id, size, root)
VALUES (1, 0, '\xe3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');

-- Hash tiles: the widest version of each (a partial tile is overwritten
-- until it is full, then never again).
CREATE TABLE tlog_tiles (
    level SMALLINT NOT NULL,
    idx   BIGINT   NOT NULL,
    data  BYTEA    NOT NULL,
    PRIMARY KEY (level, idx)
);

-- Entry bundles, likewise.
CREATE TABLE tlog_bundles (
    idx  BIGINT PRIMARY KEY,
    data BYTEA  NOT NULL
);

-- The derived search index (see the SQLite migration).
CREATE TABLE audit_index (
    seq        BIGINT  PRIMARY KEY,
    ts         TEXT    NOT NULL,
    org        TEXT,
    subject    TEXT,
    purpose    TEXT,
    outcome    TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    decisions  INTEGER NOT NULL,
    request_id TEXT    NOT NULL
);
CREATE INDEX audit_index_org ON audit_index (org, seq);
CREATE INDEX audit_index_subject ON audit_index ((substr(subject, 1, 12)));
CREATE INDEX audit_index_ts ON audit_index (ts);
CREATE INDEX audit_index_request ON audit_index (request_id);

CREATE TABLE audit_index_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    size BIGINT  NOT NULL
);
INSERT INTO audit_index_head (id, size) VALUES (1, 0);

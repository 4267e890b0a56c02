-- Audit log v2. The log itself moves out of SQL into C2SP tlog-tiles files
-- beside the database (crates/credlog, `audit.log_dir`); what stays here is
-- derived: the search index (rebuildable with `credgate audit reindex`) and
-- the signed checkpoints. Entries of the v1 log are discarded: nothing is
-- deployed, and a development database's old log cannot move into tiles
-- without re-signing (see README, "Audit log").
DROP TABLE audit_log;
DROP TABLE merkle_nodes;
DROP TABLE log_head;
DELETE FROM checkpoints;

-- One row per log entry, written by the indexer in large batches off the
-- request path. Search results are read back from the log by seq.
CREATE TABLE audit_index (
    seq        INTEGER PRIMARY KEY,
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
CREATE INDEX audit_index_subject ON audit_index (substr(subject, 1, 12));
CREATE INDEX audit_index_ts ON audit_index (ts);
CREATE INDEX audit_index_request ON audit_index (request_id);

-- How many log entries the index covers (entries [0, size)).
CREATE TABLE audit_index_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    size INTEGER NOT NULL
);
INSERT INTO audit_index_head (id, size) VALUES (1, 0);

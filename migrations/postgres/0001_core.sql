-- Records submitted by departments. One row per item instance.
CREATE TABLE records (
    id           BIGSERIAL PRIMARY KEY,
    subject_type TEXT   NOT NULL,
    subject_id   TEXT   NOT NULL,
    item         TEXT   NOT NULL,
    provider     TEXT   NOT NULL,
    data         TEXT   NOT NULL,
    recorded_at  TEXT   NOT NULL,
    request_id   TEXT   NOT NULL
);
CREATE INDEX records_subject ON records (subject_id, subject_type);

-- The audit log. seq is assigned by the sequencer under the log_head row
-- lock, never by a sequence: sequences commit out of order.
CREATE TABLE audit_log (
    seq      BIGINT PRIMARY KEY,
    ts       TEXT   NOT NULL,
    org      TEXT,
    subject  TEXT,
    purpose  TEXT,
    outcome  TEXT   NOT NULL,
    entry    BYTEA  NOT NULL,
    leaf     BYTEA  NOT NULL
);
CREATE INDEX audit_org ON audit_log (org, seq);
-- On a 12-hex-digit prefix of the keyed hash: a short key keeps the
-- random inserts this index takes on every request cheap.
CREATE INDEX audit_subject ON audit_log ((substr(subject, 1, 12)));
CREATE INDEX audit_ts ON audit_log (ts);

CREATE TABLE merkle_nodes (
    level INTEGER NOT NULL,
    idx   BIGINT  NOT NULL,
    hash  BYTEA   NOT NULL,
    PRIMARY KEY (level, idx)
);

CREATE TABLE log_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    size BIGINT NOT NULL,
    root BYTEA  NOT NULL
);
INSERT INTO log_head (id, size, root)
VALUES (1, 0, '\xe3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'::bytea);

CREATE TABLE checkpoints (
    size       BIGINT PRIMARY KEY,
    root       BYTEA  NOT NULL,
    note       TEXT   NOT NULL,
    created_at TEXT   NOT NULL
);

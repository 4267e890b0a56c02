-- Credit-information lifecycle (issue 5): disclosure periods, objections,
-- credit repair, red/black/focus lists and 应查必查 checks.
-- Dates are 'YYYY-MM-DD' text (China Standard Time calendar days).

-- Negative records carry a tier and a decision date (NULL for records that
-- predate this migration: the catalog's defaults apply). A record is never
-- deleted: withdrawal or correction after an objection changes its state.
ALTER TABLE records ADD COLUMN tier TEXT;              -- minor | general | serious
ALTER TABLE records ADD COLUMN decision_date TEXT;
ALTER TABLE records ADD COLUMN state TEXT NOT NULL DEFAULT 'active'; -- active | withdrawn | superseded
ALTER TABLE records ADD COLUMN supersedes BIGINT;      -- the version this one corrects
ALTER TABLE records ADD COLUMN superseded_by BIGINT;   -- the corrected version
ALTER TABLE records ADD COLUMN repaired_on TEXT;       -- approved credit repair took effect

-- One row per subject with lifecycle activity. Every lifecycle transaction
-- upserts its subject's row first: on PostgreSQL that row lock serialises
-- concurrent changes to one subject (black vs red listing), on SQLite the
-- write takes the database lock before anything is read.
CREATE TABLE subject_locks (
    subject_type TEXT    NOT NULL,
    subject_id   TEXT    NOT NULL,
    n            BIGINT  NOT NULL,
    PRIMARY KEY (subject_type, subject_id)
);

-- Objections (异议), filed through the portal, answered by the provider.
CREATE TABLE objections (
    id               BIGSERIAL PRIMARY KEY,
    record_id        BIGINT  NOT NULL REFERENCES records (id),
    subject_type     TEXT    NOT NULL,
    subject_id       TEXT    NOT NULL,
    filed_by         TEXT    NOT NULL,
    grounds          TEXT    NOT NULL,
    filed_on         TEXT    NOT NULL,
    due_on           TEXT    NOT NULL,   -- filed_on + 20 days
    status           TEXT    NOT NULL,   -- open | corrected | upheld | withdrawn
    resolved_by      TEXT,
    resolved_on      TEXT,
    resolution_note  TEXT,
    new_record_id    BIGINT  REFERENCES records (id),
    filed_request    TEXT    NOT NULL,
    resolved_request TEXT
);
CREATE UNIQUE INDEX objections_one_open ON objections (record_id) WHERE status = 'open';
CREATE INDEX objections_due ON objections (status, due_on);

-- Credit repair applications (信用修复).
CREATE TABLE repairs (
    id               BIGSERIAL PRIMARY KEY,
    record_id        BIGINT  NOT NULL REFERENCES records (id),
    subject_type     TEXT    NOT NULL,
    subject_id       TEXT    NOT NULL,
    applied_by       TEXT    NOT NULL,
    grounds          TEXT    NOT NULL,
    applied_on       TEXT    NOT NULL,
    status           TEXT    NOT NULL,   -- pending | approved | rejected
    decided_by       TEXT,
    decided_on       TEXT,
    decision_note    TEXT,
    applied_request  TEXT    NOT NULL,
    decided_request  TEXT
);
CREATE UNIQUE INDEX repairs_one_pending ON repairs (record_id) WHERE status = 'pending';
CREATE INDEX repairs_record ON repairs (record_id);

-- Red, black and focus list entries. Exit (移出) keeps the row.
CREATE TABLE list_entries (
    id              BIGSERIAL PRIMARY KEY,
    list            TEXT    NOT NULL CHECK (list IN ('red', 'black', 'focus')),
    subject_type    TEXT    NOT NULL,
    subject_id      TEXT    NOT NULL,
    issuer          TEXT    NOT NULL,
    basis           TEXT    NOT NULL,   -- legal basis / decision, free text
    basis_record_id BIGINT  REFERENCES records (id),
    effective_from  TEXT    NOT NULL,
    effective_to    TEXT,
    listed_at       TEXT    NOT NULL,
    listed_request  TEXT    NOT NULL,
    exited_on       TEXT,
    exit_reason     TEXT,
    exited_by       TEXT,
    exit_request    TEXT
);
CREATE INDEX list_entries_subject ON list_entries (subject_id, subject_type);

-- 应查必查 checks and the department's feedback (触发反馈).
CREATE TABLE checks (
    id               BIGSERIAL PRIMARY KEY,
    org              TEXT    NOT NULL,
    subject_type     TEXT    NOT NULL,
    subject_id       TEXT    NOT NULL,
    matter           TEXT    NOT NULL,
    checked_on       TEXT    NOT NULL,
    result           TEXT    NOT NULL,   -- JSON: measures and their status
    request_id       TEXT    NOT NULL,
    feedback         TEXT,               -- JSON
    feedback_at      TEXT,
    feedback_request TEXT
);

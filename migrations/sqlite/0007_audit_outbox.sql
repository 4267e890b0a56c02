-- The audit outbox: the entry of a request that changes state is written in
-- the same transaction as the change, then appended to the log, then this
-- row is deleted. At start, rows left by a crash are appended if the log
-- does not hold them yet (see src/store/outbox.rs).
CREATE TABLE audit_outbox (
    request_id TEXT PRIMARY KEY,
    -- The log size when the entry was written: its seq, if appended, is at
    -- least this, so recovery scans only the log's tail.
    log_size   INTEGER NOT NULL,
    entry      BLOB    NOT NULL
);

-- Consent registry: one row per consent token id (jti), created on first use
-- or by a revocation that arrives before first use (then iss … exp are NULL).
-- Use counting and revocation are single conditional UPDATEs on this row, so
-- they stay correct when several gateway nodes share one database.
CREATE TABLE consents (
    jti            TEXT    PRIMARY KEY,
    iss            TEXT,
    subject        TEXT,
    grantee        TEXT,
    purpose        TEXT,
    exp            BIGINT,
    max_uses       BIGINT,
    notice         TEXT,
    uses           BIGINT  NOT NULL DEFAULT 0,
    state          TEXT    NOT NULL
                   CHECK (state IN ('active', 'revoked', 'expired', 'exhausted')),
    registered_at  TEXT,
    last_used_at   TEXT,
    revoked_at     TEXT,
    revoked_by     TEXT,
    revoke_request TEXT
);
CREATE INDEX consents_subject ON consents (subject);

-- Consent registry: one row per consent token id (jti), created on first use
-- or by a revocation that arrives before first use (then iss … exp are NULL).
-- Use counting and revocation are single conditional UPDATEs on this row, so
-- they stay correct when several gateway nodes share one database.
CREATE TABLE consents (
    jti           TEXT    PRIMARY KEY,
    iss           TEXT,
    subject       TEXT,               -- keyed hash of the subject id, never the id
    grantee       TEXT,
    purpose       TEXT,
    exp           INTEGER,            -- unix seconds, from the token
    max_uses      INTEGER,            -- NULL: unlimited
    notice        TEXT,               -- hex SHA-256 of the adverse-consequence notice
    uses          INTEGER NOT NULL DEFAULT 0,
    state         TEXT    NOT NULL
                  CHECK (state IN ('active', 'revoked', 'expired', 'exhausted')),
    registered_at TEXT,               -- first use (RFC 3339)
    last_used_at  TEXT,
    revoked_at    TEXT,
    revoked_by    TEXT,               -- org code of the portal that revoked
    revoke_request TEXT               -- request id of the revocation (audit cross-reference)
);
CREATE INDEX consents_subject ON consents (subject);

//! Why a token was refused: the one error type of verification and of the
//! caller's next steps (binding, scope, revocation, counting), with its
//! stable sub-reasons.

/// Why a token was refused. Details are static strings: token content is
/// never echoed, so errors are safe to log and return to callers.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConsentError {
    /// `exp` (plus leeway) has passed.
    #[error("consent token expired")]
    Expired,
    /// `nbf` or `iat` lies beyond `now` plus leeway.
    #[error("consent token not yet valid")]
    NotYetValid,
    /// For the caller's revocation check; [`ConsentVerifier::verify`](super::ConsentVerifier::verify) is pure
    /// and never returns it.
    #[error("consent token revoked")]
    Revoked,
    /// For the caller's `max_uses` counter; never returned by `verify`.
    #[error("consent token use limit reached")]
    Exhausted,
    /// Caller's org code (from its certificate) is not the `grantee`.
    #[error("consent token granted to another party")]
    WrongGrantee,
    /// Request purpose differs from the consented `purpose`.
    #[error("consent token given for another purpose")]
    WrongPurpose,
    /// Request subject differs from the consenting `sub`.
    #[error("consent token given by another subject")]
    WrongSubject,
    /// `aud` names another gateway; kept apart from `Malformed` so misrouted
    /// but genuine tokens stand out in metrics.
    #[error("consent token addressed to another gateway")]
    WrongAudience,
    /// Signature invalid, or header `alg` is not the key's pinned algorithm.
    #[error("consent token signature invalid")]
    BadSignature,
    /// `kid` missing or not pinned, or `iss` differs from the issuer pinned
    /// for that `kid` (an issuer may not speak for another).
    #[error("consent token issuer not trusted")]
    UnknownIssuer,
    /// Requested field/category not in `scope`.
    #[error("field not covered by consent scope")]
    OutOfScope,
    /// Structurally invalid; the detail is static and names the failed rule.
    #[error("malformed consent token: {0}")]
    Malformed(&'static str),
}

impl ConsentError {
    /// Stable snake_case reason for audit logs, metrics and API error bodies;
    /// do not rename, downstream alerting keys on these.
    pub fn sub_reason(&self) -> &'static str {
        match self {
            ConsentError::Expired => "expired",
            ConsentError::NotYetValid => "not_yet_valid",
            ConsentError::Revoked => "revoked",
            ConsentError::Exhausted => "exhausted",
            ConsentError::WrongGrantee => "wrong_grantee",
            ConsentError::WrongPurpose => "wrong_purpose",
            ConsentError::WrongSubject => "wrong_subject",
            ConsentError::WrongAudience => "wrong_audience",
            ConsentError::BadSignature => "bad_signature",
            ConsentError::UnknownIssuer => "unknown_issuer",
            ConsentError::OutOfScope => "out_of_scope",
            ConsentError::Malformed(_) => "malformed",
        }
    }
}

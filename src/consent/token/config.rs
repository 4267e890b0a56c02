//! Gateway-wide verification policy and the errors that refuse it at load.

/// Largest clock-skew allowance [`ConsentVerifier::new`](super::ConsentVerifier::new) accepts; more would
/// quietly extend every token's life.
pub const MAX_LEEWAY_SECS: u64 = 30;

/// Gateway-wide verification policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifierConfig {
    /// This gateway's id; tokens must name exactly it in `aud`.
    pub audience: String,
    /// Clock-skew allowance for `exp`/`nbf`/`iat`; at most [`MAX_LEEWAY_SECS`].
    pub leeway_secs: u64,
    /// Longest acceptable `exp - min(iat, nbf)`; bounds the damage of a leaked token.
    pub max_lifetime_secs: u64,
}

/// Rejected policy config; reported at load time so a bad config never
/// reaches request handling.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// Leeway above [`MAX_LEEWAY_SECS`].
    #[error("leeway_secs {0} exceeds the maximum of {MAX_LEEWAY_SECS}")]
    LeewayTooLarge(u64),
    /// `max_lifetime_secs` is zero, which would refuse every token.
    #[error("max_lifetime_secs must be greater than zero")]
    ZeroLifetime,
    /// Empty audience would make `aud` checking meaningless.
    #[error("audience must not be empty")]
    EmptyAudience,
    /// No keys: every token would fail, almost certainly a config mistake.
    #[error("no issuer keys configured")]
    NoKeys,
    /// A key with an empty `kid` or `issuer`.
    #[error("issuer key has an empty kid or issuer")]
    EmptyKeyField,
    /// Two keys share a `kid`; which one verifies would be ambiguous.
    #[error("duplicate kid {0:?}")]
    DuplicateKid(String),
    /// Public key bytes of the wrong size/encoding for the pinned algorithm.
    #[error("public key for kid {0:?} has the wrong encoding for its algorithm")]
    BadPublicKey(String),
}

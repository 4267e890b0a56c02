//! Issuer keys as pinned by config: the one algorithm each key verifies and
//! its public key encoding.

use ring::signature;

/// Signature algorithm pinned to an issuer key; exactly one per key so the
/// token can never choose how it is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyAlg {
    /// Ed25519 (RFC 8037); preferred: deterministic and fast to verify.
    EdDSA,
    /// ECDSA P-256/SHA-256, fixed-width `r||s` (RFC 7518 §3.4), for issuers
    /// whose HSMs lack Ed25519.
    ES256,
}

impl KeyAlg {
    /// JOSE `alg` value the header must carry, byte for byte.
    pub const fn jose_name(self) -> &'static str {
        match self {
            KeyAlg::EdDSA => "EdDSA",
            KeyAlg::ES256 => "ES256",
        }
    }

    pub(super) fn verification(self) -> &'static dyn signature::VerificationAlgorithm {
        match self {
            KeyAlg::EdDSA => &signature::ED25519,
            KeyAlg::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
        }
    }

    pub(super) fn public_key_ok(self, key: &[u8]) -> bool {
        match self {
            KeyAlg::EdDSA => key.len() == 32,
            KeyAlg::ES256 => key.len() == 65 && key[0] == 0x04,
        }
    }
}

/// One trusted issuer key from policy config. Public key encoding: Ed25519
/// raw 32 bytes, or ES256 uncompressed SEC1 point (65 bytes, `0x04||X||Y`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuerKey {
    /// The `iss` a token signed by this key must claim.
    pub issuer: String,
    /// Key id the token header names to select this key.
    pub kid: String,
    /// The only algorithm this key verifies.
    pub alg: KeyAlg,
    /// Raw public key bytes (see the type docs for encoding).
    pub public_key: Vec<u8>,
}

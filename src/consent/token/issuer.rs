//! The issuer's side, for the dev CLI and tests (real issuers run their own):
//! key generation and token signing.

use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};

use super::claims::ConsentClaims;
use super::header::CONSENT_TYP;
use super::key::KeyAlg;

/// Key generation/signing failure in the dev tooling.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// The system RNG failed; no key or signature was produced.
    #[error("random number generator failed")]
    Rng,
    /// Bytes are not a PKCS#8 private key for the requested algorithm.
    #[error("not a valid PKCS#8 private key for this algorithm")]
    InvalidKey,
    /// The JWS encoder refused to sign.
    #[error("signing failed")]
    Sign,
}

/// New Ed25519 private key (PKCS#8 v2) for the dev CLI and tests.
pub fn generate_ed25519_pkcs8() -> Result<Vec<u8>, KeyError> {
    Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
        .map(|d| d.as_ref().to_vec())
        .map_err(|_| KeyError::Rng)
}

/// Raw 32-byte public key to pin in [`IssuerKey`](super::IssuerKey) for an Ed25519 PKCS#8 key.
pub fn ed25519_public_from_pkcs8(pkcs8: &[u8]) -> Result<Vec<u8>, KeyError> {
    Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
        .map(|k| k.public_key().as_ref().to_vec())
        .map_err(|_| KeyError::InvalidKey)
}

/// New ES256 (P-256) private key (PKCS#8) for the dev CLI and tests.
pub fn generate_es256_pkcs8() -> Result<Vec<u8>, KeyError> {
    EcdsaKeyPair::generate_pkcs8(
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &SystemRandom::new(),
    )
    .map(|d| d.as_ref().to_vec())
    .map_err(|_| KeyError::Rng)
}

/// Uncompressed 65-byte SEC1 point to pin in [`IssuerKey`](super::IssuerKey) for an ES256 key.
pub fn es256_public_from_pkcs8(pkcs8: &[u8]) -> Result<Vec<u8>, KeyError> {
    EcdsaKeyPair::from_pkcs8(
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        pkcs8,
        &SystemRandom::new(),
    )
    .map(|k| k.public_key().as_ref().to_vec())
    .map_err(|_| KeyError::InvalidKey)
}

/// Signs `claims` as a consent token (dev CLI and tests; real issuers run
/// their own). Uses jsonwebtoken, so the verifier is tested against an
/// independent encoder. Does not validate the claims: tests need bad ones.
pub fn issue(
    kid: &str,
    alg: KeyAlg,
    private_pkcs8: &[u8],
    claims: &ConsentClaims,
) -> Result<String, KeyError> {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let (jalg, key) = match alg {
        KeyAlg::EdDSA => (Algorithm::EdDSA, EncodingKey::from_ed_der(private_pkcs8)),
        KeyAlg::ES256 => (Algorithm::ES256, EncodingKey::from_ec_der(private_pkcs8)),
    };
    let mut header = Header::new(jalg);
    header.typ = Some(CONSENT_TYP.to_owned());
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &key).map_err(|e| match e.kind() {
        jsonwebtoken::errors::ErrorKind::InvalidKeyFormat => KeyError::InvalidKey,
        _ => KeyError::Sign,
    })
}

//! Consent tokens: verification of the compact JWS (`typ: consent+jwt`) that
//! proves a data subject agreed to a specific grantee reading specific fields
//! for a specific purpose.
//!
//! This is the gateway's most attackable input, so nothing the token says is
//! trusted to steer its own verification (RFC 8725):
//!
//! * Keys are pinned by config as `kid -> (issuer, alg, public key)`, one
//!   algorithm per key. The header `alg` must equal the pinned one; any other
//!   value (`none`, `HS*`, `RS*`, the other curve) is `bad_signature`, since
//!   it is an attempt to get the signature judged by rules we did not choose.
//! * Headers that carry or point at keys (`jku`, `jwk`, `x5u`, `x5c`) are
//!   `malformed`, as are unknown header parameters (so `crit` can never be
//!   silently ignored) and duplicate header keys.
//! * Signatures are checked with `ring` directly against the pinned key, not
//!   through `jsonwebtoken::decode`: jsonwebtoken 9 reads the system clock for
//!   `exp`/`nbf` (no fixed-clock tests), accepts a token lacking `aud`/`iss`
//!   unless told otherwise, ignores unknown header parameters, and parses
//!   everything twice. jsonwebtoken is used only by [`issue`], which also
//!   gives the tests an independent encoder to interoperate with.
//! * Claims are parsed only after the signature verifies, strictly: must be a
//!   JSON object, duplicate keys, wrong types and unknown claims are
//!   `malformed`. Unknown claims are refused rather than ignored because an
//!   issuer-added claim is most likely a restriction we would silently drop;
//!   issuers are pinned, so adding a claim is a coordinated change.
//! * Time is judged against the `now` passed in, never the system clock.
//!
//! Check order (cheapest first; the first failure wins): size, segment count,
//! base64url, header JSON, key headers, `typ`, `kid`, `alg`, signature,
//! claims JSON, required claims, `iss`, `aud`, claim formats, lifetime,
//! `iat`/`nbf`, `exp`.
//!
//! Note for replay tracking: ES256 signatures are malleable (`s` vs `n - s`),
//! so count uses by `jti` (which is signed), never by a hash of the token.
//!
//! # Layout
//!
//! One file per noun, without cycles: `verifier.rs` and `issuer.rs` sit on
//! top; `header.rs` and `claims.rs` use only `jws.rs`, `config.rs` and
//! `error.rs`; `key.rs`, `config.rs` and `error.rs` use none of the others.
//! This file only re-exports, so callers name `consent::token::…` as before.
//!
//! * `verifier.rs` — [`ConsentVerifier`]: the pinned keys and the check order
//!   above;
//! * `jws.rs` — the compact serialization: size, segments, base64url, strict
//!   JSON objects, the fixed-width signature;
//! * `header.rs` — the JOSE header as we accept it ([`CONSENT_TYP`]);
//! * `claims.rs` — [`ConsentClaims`], request binding and scope, and the
//!   claim checks (required claims through `exp`);
//! * `key.rs` — [`KeyAlg`] and [`IssuerKey`]; `config.rs` —
//!   [`VerifierConfig`] and [`ConfigError`]; `error.rs` — [`ConsentError`];
//! * `issuer.rs` — the issuer's side for the dev CLI and tests: key
//!   generation and [`issue`].

mod claims;
mod config;
mod error;
#[cfg(test)]
mod fixture;
mod header;
mod issuer;
mod jws;
mod key;
mod verifier;

pub use claims::ConsentClaims;
pub use config::{ConfigError, MAX_LEEWAY_SECS, VerifierConfig};
pub use error::ConsentError;
pub use header::CONSENT_TYP;
pub use issuer::{
    KeyError, ed25519_public_from_pkcs8, es256_public_from_pkcs8, generate_ed25519_pkcs8,
    generate_es256_pkcs8, issue,
};
pub use jws::MAX_TOKEN_BYTES;
pub use key::{IssuerKey, KeyAlg};
pub use verifier::ConsentVerifier;

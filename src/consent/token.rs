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

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Deserializer, Serialize};

/// Tokens longer than this are refused before any decoding, so hostile input
/// costs O(1) and cannot make us allocate much.
pub const MAX_TOKEN_BYTES: usize = 8192;

/// Largest clock-skew allowance [`ConsentVerifier::new`] accepts; more would
/// quietly extend every token's life.
pub const MAX_LEEWAY_SECS: u64 = 30;

/// The only accepted header `typ` (compared exactly). Keeps other JWTs from
/// the same issuers (ID or access tokens) from being replayed as consent.
pub const CONSENT_TYP: &str = "consent+jwt";

/// Both Ed25519 and fixed-width ES256 signatures are 64 bytes.
const SIG_LEN: usize = 64;
/// Unpadded base64url length of a 64-byte signature.
const SIG_B64_LEN: usize = 86;

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

    fn verification(self) -> &'static dyn signature::VerificationAlgorithm {
        match self {
            KeyAlg::EdDSA => &signature::ED25519,
            KeyAlg::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
        }
    }

    fn public_key_ok(self, key: &[u8]) -> bool {
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
    /// For the caller's revocation check; [`ConsentVerifier::verify`] is pure
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

/// Verified consent claims. Only [`ConsentVerifier::verify`] should produce
/// these from untrusted input; Serialize exists for [`issue`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentClaims {
    /// Issuer; equals the issuer pinned for the signing `kid`.
    pub iss: String,
    /// Subject id: 18-char unified social credit code or resident ID number
    /// (`[0-9A-Z]{18}`, uppercase `X` check digit).
    pub sub: String,
    /// Gateway id this consent is addressed to.
    pub aud: String,
    /// Org code of the only party allowed to use the consent.
    pub grantee: String,
    /// Purpose the subject agreed to.
    pub purpose: String,
    /// Field names or consent categories (e.g. `income`); no wildcards.
    pub scope: Vec<String>,
    /// Issued-at, NumericDate seconds.
    pub iat: u64,
    /// Not-before, NumericDate seconds.
    pub nbf: u64,
    /// Expiry, NumericDate seconds.
    pub exp: u64,
    /// Unique token id; the key for replay and `max_uses` accounting.
    pub jti: String,
    /// Use limit enforced by the caller's counter (never zero when verified).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_uses: Option<u32>,
    /// Natural persons: consent was given in writing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written: Option<bool>,
    /// Natural persons: lowercase hex SHA-256 of the adverse-consequence
    /// notice shown before consent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice: Option<String>,
}

impl ConsentClaims {
    /// Ties a verified token to the request: a valid consent is worthless
    /// unless it is this subject's, for this caller (org code from its mTLS
    /// certificate), for this purpose. Checked in that order.
    pub fn check_binding(
        &self,
        subject: &str,
        grantee: &str,
        purpose: &str,
    ) -> Result<(), ConsentError> {
        if self.sub != subject {
            return Err(ConsentError::WrongSubject);
        }
        if self.grantee != grantee {
            return Err(ConsentError::WrongGrantee);
        }
        if self.purpose != purpose {
            return Err(ConsentError::WrongPurpose);
        }
        Ok(())
    }

    /// Whether `scope` lists the field itself or its consent category; exact,
    /// case-sensitive match, empty names never match.
    pub fn covers(&self, field: &str, category: Option<&str>) -> bool {
        let category = category.filter(|c| !c.is_empty());
        self.scope
            .iter()
            .any(|s| (!field.is_empty() && s == field) || category.is_some_and(|c| s == c))
    }

    /// [`covers`](Self::covers) as a `Result`, so handlers can use `?`.
    pub fn require_scope(&self, field: &str, category: Option<&str>) -> Result<(), ConsentError> {
        if self.covers(field, category) {
            Ok(())
        } else {
            Err(ConsentError::OutOfScope)
        }
    }

    /// Written consent after the adverse-consequence notice, as natural
    /// persons' data requires: `written == true` and a well-formed notice hash.
    pub fn has_written_notice(&self) -> bool {
        self.written == Some(true) && self.notice.as_deref().is_some_and(is_sha256_hex)
    }
}

#[derive(Debug)]
struct PinnedKey {
    issuer: String,
    alg: KeyAlg,
    key: UnparsedPublicKey<Vec<u8>>,
}

/// Verifier built once at policy load; holds the pinned keys so per-request
/// verification allocates no key material.
#[derive(Debug)]
pub struct ConsentVerifier {
    audience: String,
    leeway: u64,
    max_lifetime: u64,
    keys: HashMap<String, PinnedKey>,
}

/// Header as we accept it: unknown parameters (incl. `crit`) and duplicates
/// are refused by serde; key-bearing parameters are detected to refuse them
/// with a precise detail.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeader {
    alg: Option<String>,
    typ: Option<String>,
    kid: Option<String>,
    #[serde(default, deserialize_with = "present")]
    jku: bool,
    #[serde(default, deserialize_with = "present")]
    jwk: bool,
    #[serde(default, deserialize_with = "present")]
    x5u: bool,
    #[serde(default, deserialize_with = "present")]
    x5c: bool,
}

/// All-optional mirror of [`ConsentClaims`] so a missing claim gets a precise
/// detail; serde still refuses duplicates, wrong types and unknown claims.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClaims {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<String>,
    grantee: Option<String>,
    purpose: Option<String>,
    scope: Option<Vec<String>>,
    iat: Option<u64>,
    nbf: Option<u64>,
    exp: Option<u64>,
    jti: Option<String>,
    max_uses: Option<u32>,
    written: Option<bool>,
    notice: Option<String>,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    IgnoredAny::deserialize(d).map(|_| true)
}

fn b64(part: &str, what: &'static str) -> Result<Vec<u8>, ConsentError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| ConsentError::Malformed(what))
}

/// Strict JSON object parse. Serde structs also deserialize from arrays
/// (positionally), which is not a JWT, hence the leading-`{` check.
fn parse_object<T: DeserializeOwned>(
    json: &[u8],
    not_json: &'static str,
    invalid: &'static str,
) -> Result<T, ConsentError> {
    if json.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ConsentError::Malformed(not_json));
    }
    serde_json::from_slice(json)
        .map_err(|e| ConsentError::Malformed(if e.is_data() { invalid } else { not_json }))
}

fn req<T>(v: Option<T>, missing: &'static str) -> Result<T, ConsentError> {
    v.ok_or(ConsentError::Malformed(missing))
}

fn is_subject_id(s: &str) -> bool {
    s.len() == 18
        && s.bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl ConsentVerifier {
    /// Validates the policy and pins the keys; fails closed on anything odd
    /// so misconfiguration surfaces at load, not as request failures.
    pub fn new(cfg: VerifierConfig, keys: Vec<IssuerKey>) -> Result<Self, ConfigError> {
        if cfg.leeway_secs > MAX_LEEWAY_SECS {
            return Err(ConfigError::LeewayTooLarge(cfg.leeway_secs));
        }
        if cfg.max_lifetime_secs == 0 {
            return Err(ConfigError::ZeroLifetime);
        }
        if cfg.audience.is_empty() {
            return Err(ConfigError::EmptyAudience);
        }
        if keys.is_empty() {
            return Err(ConfigError::NoKeys);
        }
        let mut pinned = HashMap::with_capacity(keys.len());
        for k in keys {
            if k.kid.is_empty() || k.issuer.is_empty() {
                return Err(ConfigError::EmptyKeyField);
            }
            if !k.alg.public_key_ok(&k.public_key) {
                return Err(ConfigError::BadPublicKey(k.kid));
            }
            if pinned.contains_key(&k.kid) {
                return Err(ConfigError::DuplicateKid(k.kid));
            }
            let key = UnparsedPublicKey::new(k.alg.verification(), k.public_key);
            pinned.insert(
                k.kid,
                PinnedKey {
                    issuer: k.issuer,
                    alg: k.alg,
                    key,
                },
            );
        }
        Ok(Self {
            audience: cfg.audience,
            leeway: cfg.leeway_secs,
            max_lifetime: cfg.max_lifetime_secs,
            keys: pinned,
        })
    }

    /// Checks signature, header, claims and time against `now` (unix seconds,
    /// injected so tests and replays use a fixed clock). Pure: revocation,
    /// `max_uses` counting and request binding are the caller's next steps.
    pub fn verify(&self, token: &str, now: u64) -> Result<ConsentClaims, ConsentError> {
        use ConsentError::Malformed;

        if token.len() > MAX_TOKEN_BYTES {
            return Err(Malformed("token too large"));
        }
        let mut parts = token.split('.');
        let (Some(h64), Some(p64), Some(s64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Malformed("not three segments"));
        };

        let header: RawHeader = parse_object(
            &b64(h64, "header encoding")?,
            "header not json object",
            "header invalid",
        )?;
        if header.jku || header.jwk || header.x5u || header.x5c {
            return Err(Malformed("key-bearing header"));
        }
        if header.typ.as_deref() != Some(CONSENT_TYP) {
            return Err(Malformed("typ"));
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.keys.get(kid))
            .ok_or(ConsentError::UnknownIssuer)?;
        let Some(alg) = header.alg.as_deref() else {
            return Err(Malformed("alg missing"));
        };
        if alg != key.alg.jose_name() {
            return Err(ConsentError::BadSignature);
        }

        if s64.len() != SIG_B64_LEN {
            return Err(ConsentError::BadSignature);
        }
        let mut sig = [0u8; SIG_LEN];
        match URL_SAFE_NO_PAD.decode_slice(s64, &mut sig) {
            Ok(SIG_LEN) => {}
            _ => return Err(Malformed("signature encoding")),
        }
        let signing_input = &token.as_bytes()[..h64.len() + 1 + p64.len()];
        key.key
            .verify(signing_input, &sig)
            .map_err(|_| ConsentError::BadSignature)?;

        let raw: RawClaims = parse_object(
            &b64(p64, "payload encoding")?,
            "payload not json object",
            "claims invalid",
        )?;
        self.check_claims(key, raw, now)
    }

    fn check_claims(
        &self,
        key: &PinnedKey,
        raw: RawClaims,
        now: u64,
    ) -> Result<ConsentClaims, ConsentError> {
        use ConsentError::Malformed;

        let iss = req(raw.iss, "missing iss")?;
        let sub = req(raw.sub, "missing sub")?;
        let aud = req(raw.aud, "missing aud")?;
        let grantee = req(raw.grantee, "missing grantee")?;
        let purpose = req(raw.purpose, "missing purpose")?;
        let scope = req(raw.scope, "missing scope")?;
        let iat = req(raw.iat, "missing iat")?;
        let nbf = req(raw.nbf, "missing nbf")?;
        let exp = req(raw.exp, "missing exp")?;
        let jti = req(raw.jti, "missing jti")?;

        if iss != key.issuer {
            return Err(ConsentError::UnknownIssuer);
        }
        if aud != self.audience {
            return Err(ConsentError::WrongAudience);
        }
        if !is_subject_id(&sub) {
            return Err(Malformed("sub format"));
        }
        if grantee.is_empty() || purpose.is_empty() || jti.is_empty() {
            return Err(Malformed("empty grantee/purpose/jti"));
        }
        if scope.is_empty() || scope.iter().any(String::is_empty) {
            return Err(Malformed("scope"));
        }
        if raw.max_uses == Some(0) {
            return Err(Malformed("max_uses zero"));
        }
        if raw.notice.as_deref().is_some_and(|n| !is_sha256_hex(n)) {
            return Err(Malformed("notice format"));
        }
        if exp <= iat || exp <= nbf {
            return Err(Malformed("time order"));
        }
        if exp - iat.min(nbf) > self.max_lifetime {
            return Err(Malformed("lifetime"));
        }
        let horizon = now.saturating_add(self.leeway);
        if iat > horizon || nbf > horizon {
            return Err(ConsentError::NotYetValid);
        }
        if now >= exp.saturating_add(self.leeway) {
            return Err(ConsentError::Expired);
        }

        Ok(ConsentClaims {
            iss,
            sub,
            aud,
            grantee,
            purpose,
            scope,
            iat,
            nbf,
            exp,
            jti,
            max_uses: raw.max_uses,
            written: raw.written,
            notice: raw.notice,
        })
    }
}

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

/// Raw 32-byte public key to pin in [`IssuerKey`] for an Ed25519 PKCS#8 key.
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

/// Uncompressed 65-byte SEC1 point to pin in [`IssuerKey`] for an ES256 key.
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};
    use std::sync::OnceLock;

    const NOW: u64 = 1_750_000_000;
    const AUD: &str = "credgate-gw-01";
    const SUB: &str = "91350100M000100Y43";
    const GRANTEE: &str = "91110108MA01XYZ12K";
    const PURPOSE: &str = "loan_underwriting";

    struct Fx {
        v: ConsentVerifier,
        a_pk8: Vec<u8>,
        a_pub: Vec<u8>,
        b_pk8: Vec<u8>,
        c_pk8: Vec<u8>,
    }

    fn fx() -> &'static Fx {
        static FX: OnceLock<Fx> = OnceLock::new();
        FX.get_or_init(|| {
            let a_pk8 = generate_ed25519_pkcs8().unwrap();
            let b_pk8 = generate_ed25519_pkcs8().unwrap();
            let c_pk8 = generate_es256_pkcs8().unwrap();
            let a_pub = ed25519_public_from_pkcs8(&a_pk8).unwrap();
            let key = |issuer: &str, kid: &str, alg, public_key| IssuerKey {
                issuer: issuer.into(),
                kid: kid.into(),
                alg,
                public_key,
            };
            let v = ConsentVerifier::new(
                cfg(),
                vec![
                    key("ISSUER-A", "a1", KeyAlg::EdDSA, a_pub.clone()),
                    key(
                        "ISSUER-B",
                        "b1",
                        KeyAlg::EdDSA,
                        ed25519_public_from_pkcs8(&b_pk8).unwrap(),
                    ),
                    key(
                        "ISSUER-C",
                        "c1",
                        KeyAlg::ES256,
                        es256_public_from_pkcs8(&c_pk8).unwrap(),
                    ),
                ],
            )
            .unwrap();
            Fx {
                v,
                a_pk8,
                a_pub,
                b_pk8,
                c_pk8,
            }
        })
    }

    fn cfg() -> VerifierConfig {
        VerifierConfig {
            audience: AUD.into(),
            leeway_secs: 30,
            max_lifetime_secs: 7 * 86_400,
        }
    }

    fn claims(iss: &str) -> ConsentClaims {
        ConsentClaims {
            iss: iss.into(),
            sub: SUB.into(),
            aud: AUD.into(),
            grantee: GRANTEE.into(),
            purpose: PURPOSE.into(),
            scope: vec!["income".into(), "loan_balance".into()],
            iat: NOW - 60,
            nbf: NOW - 60,
            exp: NOW + 3600,
            jti: "c0ffee-0001".into(),
            max_uses: Some(3),
            written: Some(true),
            notice: Some("ab".repeat(32)),
        }
    }

    fn enc(b: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(b)
    }

    fn hdr(alg: &str, kid: &str) -> String {
        format!(r#"{{"alg":"{alg}","typ":"consent+jwt","kid":"{kid}"}}"#)
    }

    /// Signs arbitrary header/payload bytes with ring, bypassing all checks.
    fn sign_raw(header: &str, payload: &[u8], alg: KeyAlg, pkcs8: &[u8]) -> String {
        let input = format!("{}.{}", enc(header.as_bytes()), enc(payload));
        let sig = match alg {
            KeyAlg::EdDSA => Ed25519KeyPair::from_pkcs8(pkcs8)
                .unwrap()
                .sign(input.as_bytes())
                .as_ref()
                .to_vec(),
            KeyAlg::ES256 => {
                let rng = SystemRandom::new();
                EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng)
                    .unwrap()
                    .sign(&rng, input.as_bytes())
                    .unwrap()
                    .as_ref()
                    .to_vec()
            }
        };
        format!("{input}.{}", enc(&sig))
    }

    /// Issuer A's properly signed token over a JSON value.
    fn signed_a(payload: &Value) -> String {
        sign_raw(
            &hdr("EdDSA", "a1"),
            payload.to_string().as_bytes(),
            KeyAlg::EdDSA,
            &fx().a_pk8,
        )
    }

    fn claims_value() -> Value {
        serde_json::to_value(claims("ISSUER-A")).unwrap()
    }

    fn without(key: &str) -> Value {
        let mut v = claims_value();
        v.as_object_mut().unwrap().remove(key);
        v
    }

    fn with(key: &str, val: Value) -> Value {
        let mut v = claims_value();
        v[key] = val;
        v
    }

    #[track_caller]
    fn reason(token: &str) -> &'static str {
        match fx().v.verify(token, NOW) {
            Ok(c) => panic!("unexpectedly verified: {c:?}"),
            Err(e) => e.sub_reason(),
        }
    }

    #[track_caller]
    fn detail(token: &str) -> &'static str {
        match fx().v.verify(token, NOW) {
            Err(ConsentError::Malformed(d)) => d,
            other => panic!("expected malformed, got {other:?}"),
        }
    }

    #[test]
    fn happy_eddsa_via_jsonwebtoken_encoder() {
        let t = issue("a1", KeyAlg::EdDSA, &fx().a_pk8, &claims("ISSUER-A")).unwrap();
        let c = fx().v.verify(&t, NOW).unwrap();
        assert_eq!(c, claims("ISSUER-A"));
        c.check_binding(SUB, GRANTEE, PURPOSE).unwrap();
        assert!(c.has_written_notice());
        assert!(c.covers("monthly_income", Some("income")));
        assert!(c.covers("loan_balance", None));
    }

    #[test]
    fn happy_es256() {
        let t = issue("c1", KeyAlg::ES256, &fx().c_pk8, &claims("ISSUER-C")).unwrap();
        assert_eq!(fx().v.verify(&t, NOW).unwrap(), claims("ISSUER-C"));
        // Raw ring signer as well, header without `typ` first.
        let t = sign_raw(
            &hdr("ES256", "c1"),
            serde_json::to_vec(&claims("ISSUER-C")).unwrap().as_slice(),
            KeyAlg::ES256,
            &fx().c_pk8,
        );
        assert!(fx().v.verify(&t, NOW).is_ok());
    }

    #[test]
    fn optional_claims_may_be_absent() {
        let mut v = claims_value();
        for k in ["max_uses", "written", "notice"] {
            v.as_object_mut().unwrap().remove(k);
        }
        let c = fx().v.verify(&signed_a(&v), NOW).unwrap();
        assert!(!c.has_written_notice());
        assert_eq!(c.max_uses, None);
    }

    #[test]
    fn alg_none() {
        let body = enc(claims_value().to_string().as_bytes());
        let t = format!("{}.{body}.", enc(hdr("none", "a1").as_bytes()));
        assert_eq!(reason(&t), "bad_signature");
    }

    #[test]
    fn hs256_with_issuer_public_key_as_secret() {
        use jsonwebtoken::{Algorithm, EncodingKey, Header};
        let mut h = Header::new(Algorithm::HS256);
        h.typ = Some(CONSENT_TYP.into());
        h.kid = Some("a1".into());
        let t = jsonwebtoken::encode(
            &h,
            &claims("ISSUER-A"),
            &EncodingKey::from_secret(&fx().a_pub),
        )
        .unwrap();
        assert_eq!(reason(&t), "bad_signature");
    }

    #[test]
    fn other_algs_refused() {
        for alg in ["RS256", "ES256", "HS512", "Ed25519", "eddsa", ""] {
            let t = sign_raw(
                &hdr(alg, "a1"),
                claims_value().to_string().as_bytes(),
                KeyAlg::EdDSA,
                &fx().a_pk8,
            );
            assert_eq!(reason(&t), "bad_signature", "alg {alg:?}");
        }
        let t = sign_raw(
            r#"{"typ":"consent+jwt","kid":"a1"}"#,
            claims_value().to_string().as_bytes(),
            KeyAlg::EdDSA,
            &fx().a_pk8,
        );
        assert_eq!(reason(&t), "malformed");
    }

    #[test]
    fn es256_key_with_eddsa_signed_token() {
        let p = serde_json::to_vec(&claims("ISSUER-C")).unwrap();
        let t = sign_raw(&hdr("EdDSA", "c1"), &p, KeyAlg::EdDSA, &fx().a_pk8);
        assert_eq!(reason(&t), "bad_signature");
        // Even claiming ES256 over an Ed25519 signature fails the signature.
        let t = sign_raw(&hdr("ES256", "c1"), &p, KeyAlg::EdDSA, &fx().a_pk8);
        assert_eq!(reason(&t), "bad_signature");
    }

    #[test]
    fn unknown_or_missing_kid() {
        let p = claims_value().to_string();
        let t = sign_raw(
            &hdr("EdDSA", "zz9"),
            p.as_bytes(),
            KeyAlg::EdDSA,
            &fx().a_pk8,
        );
        assert_eq!(reason(&t), "unknown_issuer");
        let t = sign_raw(
            r#"{"alg":"EdDSA","typ":"consent+jwt"}"#,
            p.as_bytes(),
            KeyAlg::EdDSA,
            &fx().a_pk8,
        );
        assert_eq!(reason(&t), "unknown_issuer");
    }

    #[test]
    fn another_issuers_kid() {
        // Claims iss A, signed by B's key under B's kid: B may not speak for A.
        let p = claims_value().to_string();
        let t = sign_raw(
            &hdr("EdDSA", "b1"),
            p.as_bytes(),
            KeyAlg::EdDSA,
            &fx().b_pk8,
        );
        assert_eq!(reason(&t), "unknown_issuer");
        // Same, but naming A's kid: the signature cannot match A's key.
        let t = sign_raw(
            &hdr("EdDSA", "a1"),
            p.as_bytes(),
            KeyAlg::EdDSA,
            &fx().b_pk8,
        );
        assert_eq!(reason(&t), "bad_signature");
    }

    #[test]
    fn tampered_payload() {
        let t = signed_a(&claims_value());
        let forged = enc(with("grantee", json!("91440300MA5EVIL00X"))
            .to_string()
            .as_bytes());
        let mut parts: Vec<&str> = t.split('.').collect();
        parts[1] = &forged;
        assert_eq!(reason(&parts.join(".")), "bad_signature");
    }

    #[test]
    fn tampered_signature() {
        let t = signed_a(&claims_value());
        let (input, s) = t.rsplit_once('.').unwrap();
        let mut sig = URL_SAFE_NO_PAD.decode(s).unwrap();
        sig[10] ^= 0x01;
        assert_eq!(reason(&format!("{input}.{}", enc(&sig))), "bad_signature");
        // Truncated / extended signature.
        assert_eq!(reason(&t[..t.len() - 2]), "bad_signature");
        assert_eq!(reason(&format!("{t}AA")), "bad_signature");
    }

    #[test]
    fn expired_and_not_yet_valid() {
        let v = &fx().v;
        let t = signed_a(&claims_value());
        // exp = NOW+3600, leeway 30.
        assert!(v.verify(&t, NOW + 3600 + 29).is_ok());
        assert_eq!(v.verify(&t, NOW + 3600 + 30), Err(ConsentError::Expired));
        assert_eq!(v.verify(&t, NOW + 999_999), Err(ConsentError::Expired));
        // nbf = NOW-60.
        assert!(v.verify(&t, NOW - 90).is_ok());
        assert_eq!(v.verify(&t, NOW - 91), Err(ConsentError::NotYetValid));

        let t = signed_a(&with("nbf", json!(NOW + 600)));
        assert_eq!(reason(&t), "not_yet_valid");
        let t = signed_a(&with("iat", json!(NOW + 600)));
        assert_eq!(reason(&t), "not_yet_valid");
        let mut p = with("iat", json!(NOW - 7200));
        p["nbf"] = json!(NOW - 7200);
        p["exp"] = json!(NOW - 60);
        assert_eq!(reason(&signed_a(&p)), "expired");
    }

    #[test]
    fn missing_required_claims() {
        for k in [
            "exp", "aud", "iss", "sub", "nbf", "iat", "jti", "scope", "grantee", "purpose",
        ] {
            let e = fx().v.verify(&signed_a(&without(k)), NOW).unwrap_err();
            assert_eq!(e.sub_reason(), "malformed", "missing {k}");
            let ConsentError::Malformed(d) = e else {
                unreachable!()
            };
            assert_eq!(d.strip_prefix("missing "), Some(k));
        }
    }

    #[test]
    fn wrong_aud() {
        assert_eq!(
            reason(&signed_a(&with("aud", json!("credgate-gw-02")))),
            "wrong_audience"
        );
        // RFC 7519 allows an array; our spec does not.
        assert_eq!(reason(&signed_a(&with("aud", json!([AUD])))), "malformed");
    }

    #[test]
    fn binding_checks() {
        let c = fx().v.verify(&signed_a(&claims_value()), NOW).unwrap();
        let r = |s, g, p| c.check_binding(s, g, p).unwrap_err().sub_reason();
        assert_eq!(r("11010519491231002X", GRANTEE, PURPOSE), "wrong_subject");
        assert_eq!(r(SUB, "91110108MA01XYZ12J", PURPOSE), "wrong_grantee");
        assert_eq!(r(SUB, GRANTEE, "marketing"), "wrong_purpose");
    }

    #[test]
    fn scope_checks() {
        let c = claims("ISSUER-A");
        assert!(!c.covers("tax_records", None));
        assert!(!c.covers("tax_records", Some("tax")));
        assert!(!c.covers("", None));
        assert!(!c.covers("", Some("")));
        assert!(!c.covers("Income", None));
        assert_eq!(
            c.require_scope("tax_records", Some("tax"))
                .unwrap_err()
                .sub_reason(),
            "out_of_scope"
        );
        assert!(c.require_scope("x", Some("income")).is_ok());
    }

    #[test]
    fn oversized_token() {
        let mut p = claims_value();
        p["scope"] = json!(vec!["f".repeat(100); 90]);
        let t = signed_a(&p);
        assert!(t.len() > MAX_TOKEN_BYTES);
        assert_eq!(reason(&t), "malformed");
        assert_eq!(reason(&"a".repeat(MAX_TOKEN_BYTES + 1)), "malformed");
    }

    #[test]
    fn non_json_and_non_object_payload() {
        for p in [
            &b"not json"[..],
            b"",
            b"[1,2]",
            b"\"s\"",
            b"{\"iss\":",
            b"\xff\xfe{}",
        ] {
            let t = sign_raw(&hdr("EdDSA", "a1"), p, KeyAlg::EdDSA, &fx().a_pk8);
            assert_eq!(detail(&t), "payload not json object", "{p:?}");
        }
        // A struct-as-array payload would be accepted positionally by serde.
        let c = claims("ISSUER-A");
        let arr = json!([
            c.iss, c.sub, c.aud, c.grantee, c.purpose, c.scope, c.iat, c.nbf, c.exp, c.jti,
            c.max_uses, c.written, c.notice
        ]);
        let t = sign_raw(
            &hdr("EdDSA", "a1"),
            arr.to_string().as_bytes(),
            KeyAlg::EdDSA,
            &fx().a_pk8,
        );
        assert_eq!(detail(&t), "payload not json object");
    }

    #[test]
    fn duplicate_claims() {
        let base = claims_value().to_string();
        for extra in [
            r#""grantee":"91440300MA5EVIL00X","#,
            r#""exp":99999999999,"#,
            r#""max_uses":9,"#,
        ] {
            let p = format!("{{{extra}{}", &base[1..]);
            let t = sign_raw(
                &hdr("EdDSA", "a1"),
                p.as_bytes(),
                KeyAlg::EdDSA,
                &fx().a_pk8,
            );
            assert_eq!(detail(&t), "claims invalid", "{extra}");
        }
    }

    #[test]
    fn wrong_types_and_unknown_claims() {
        for (k, v) in [
            ("exp", json!(1.5e9)),
            ("exp", json!(-1)),
            ("exp", json!("1750003600")),
            ("max_uses", json!(0)),
            ("max_uses", json!(u64::MAX)),
            ("scope", json!("income")),
            ("scope", json!([])),
            ("written", json!("yes")),
            ("notice", json!("AB".repeat(32))),
            ("sub", json!("91350100m000100y43")),
            ("sub", json!("913501")),
            ("grantee", json!("")),
            ("admin", json!(true)),
        ] {
            assert_eq!(
                reason(&signed_a(&with(k, v.clone()))),
                "malformed",
                "{k}={v}"
            );
        }
    }

    #[test]
    fn header_checks() {
        let p = claims_value().to_string();
        let cases: [(&str, &str); 14] = [
            (
                r#"{"alg":"EdDSA","alg":"EdDSA","typ":"consent+jwt","kid":"a1"}"#,
                "header invalid",
            ),
            (
                r#"{"alg":"EdDSA","typ":"consent+jwt","kid":"a1","kid":"b1"}"#,
                "header invalid",
            ),
            (r#"{"alg":"EdDSA","kid":"a1"}"#, "typ"),
            (r#"{"alg":"EdDSA","typ":"JWT","kid":"a1"}"#, "typ"),
            (r#"{"alg":"EdDSA","typ":"CONSENT+JWT","kid":"a1"}"#, "typ"),
            (
                r#"{"alg":"EdDSA","typ":"application/consent+jwt","kid":"a1"}"#,
                "typ",
            ),
            (
                r#"{"alg":"EdDSA","typ":"consent+jwt","kid":"a1","crit":["exp"]}"#,
                "header invalid",
            ),
            (
                r#"{"alg":"EdDSA","typ":"consent+jwt","kid":"a1","jwk":{"kty":"OKP"}}"#,
                "key-bearing header",
            ),
            (
                r#"{"alg":"EdDSA","typ":"consent+jwt","kid":"a1","jwk":null}"#,
                "key-bearing header",
            ),
            (
                r#"{"alg":"EdDSA","typ":"consent+jwt","kid":"a1","jku":"https://x/"}"#,
                "key-bearing header",
            ),
            (
                r#"{"alg":"EdDSA","typ":"consent+jwt","kid":"a1","x5u":"https://x/"}"#,
                "key-bearing header",
            ),
            (
                r#"{"alg":"EdDSA","typ":"consent+jwt","kid":"a1","x5c":["MII"]}"#,
                "key-bearing header",
            ),
            (r#"["EdDSA","consent+jwt","a1"]"#, "header not json object"),
            ("not json", "header not json object"),
        ];
        for (h, want) in cases {
            let t = sign_raw(h, p.as_bytes(), KeyAlg::EdDSA, &fx().a_pk8);
            assert_eq!(detail(&t), want, "{h}");
        }
    }

    #[test]
    fn segment_and_encoding_checks() {
        let t = signed_a(&claims_value());
        let (h, rest) = t.split_once('.').unwrap();
        for bad in [
            String::new(),
            "..".into(),
            h.to_string(),
            rest.to_string(),
            format!("{t}."),
            format!("{h}.{t}"),
            format!("{h}=.{rest}"),
            format!("{}.{rest}", h.replace('e', "+")),
            t.replacen('.', " .", 1),
        ] {
            assert_eq!(reason(&bad), "malformed", "{bad}");
        }
    }

    #[test]
    fn lifetime_too_long() {
        let mut p = with("exp", json!(NOW - 60 + 7 * 86_400 + 1));
        assert_eq!(detail(&signed_a(&p)), "lifetime");
        p["exp"] = json!(NOW - 60 + 7 * 86_400);
        assert!(fx().v.verify(&signed_a(&p), NOW).is_ok());
        // Backdated nbf counts too; exp not after iat is malformed.
        let p = with("nbf", json!(NOW - 8 * 86_400));
        assert_eq!(detail(&signed_a(&p)), "lifetime");
        let p = with("exp", json!(NOW - 60));
        assert_eq!(reason(&signed_a(&p)), "malformed");
    }

    #[test]
    fn config_validation() {
        let k = IssuerKey {
            issuer: "I".into(),
            kid: "k".into(),
            alg: KeyAlg::EdDSA,
            public_key: fx().a_pub.clone(),
        };
        let mk = |c: VerifierConfig, ks: Vec<IssuerKey>| ConsentVerifier::new(c, ks).unwrap_err();
        let c = VerifierConfig {
            leeway_secs: 31,
            ..cfg()
        };
        assert_eq!(mk(c, vec![k.clone()]), ConfigError::LeewayTooLarge(31));
        assert_eq!(mk(cfg(), vec![]), ConfigError::NoKeys);
        assert_eq!(
            mk(cfg(), vec![k.clone(), k.clone()]),
            ConfigError::DuplicateKid("k".into())
        );
        let es = IssuerKey {
            alg: KeyAlg::ES256,
            ..k.clone()
        };
        assert_eq!(mk(cfg(), vec![es]), ConfigError::BadPublicKey("k".into()));
        let c = VerifierConfig {
            max_lifetime_secs: 0,
            ..cfg()
        };
        assert_eq!(mk(c, vec![k]), ConfigError::ZeroLifetime);
    }

    #[test]
    fn verifier_is_shareable() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<ConsentVerifier>();
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn random_bytes_never_verify(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let s = String::from_utf8_lossy(&bytes);
            prop_assert!(fx().v.verify(&s, NOW).is_err());
        }

        #[test]
        fn jws_shaped_strings_never_verify(s in "[A-Za-z0-9_-]{0,200}\\.[A-Za-z0-9_-]{0,400}\\.[A-Za-z0-9_-]{0,100}") {
            prop_assert!(fx().v.verify(&s, NOW).is_err());
        }

        #[test]
        fn any_single_char_change_fails(pos in any::<prop::sample::Index>(), c in "[A-Za-z0-9_.=+/ -]") {
            static TOKEN: OnceLock<String> = OnceLock::new();
            let t = TOKEN.get_or_init(|| signed_a(&claims_value()));
            let i = pos.index(t.len());
            let c = c.chars().next().unwrap();
            prop_assume!(t.as_bytes()[i] != c as u8);
            let mut m = t.clone().into_bytes();
            m[i] = c as u8;
            let m = String::from_utf8(m).unwrap();
            prop_assert!(fx().v.verify(&m, NOW).is_err());
        }
    }

    /// `cargo test --release -- --ignored --nocapture timing`
    #[test]
    #[ignore]
    fn timing_estimate() {
        const N: u32 = 10_000;
        for (kid, alg, pk8, iss) in [
            ("a1", KeyAlg::EdDSA, &fx().a_pk8, "ISSUER-A"),
            ("c1", KeyAlg::ES256, &fx().c_pk8, "ISSUER-C"),
        ] {
            let t = issue(kid, alg, pk8, &claims(iss)).unwrap();
            let start = std::time::Instant::now();
            for _ in 0..N {
                std::hint::black_box(fx().v.verify(std::hint::black_box(&t), NOW).unwrap());
            }
            let us = start.elapsed().as_secs_f64() * 1e6 / f64::from(N);
            // Signature alone, to show what the parsing/checks add on top.
            let key = &fx().v.keys[kid].key;
            let (input, sig) = t.rsplit_once('.').unwrap();
            let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
            let start = std::time::Instant::now();
            for _ in 0..N {
                std::hint::black_box(key.verify(input.as_bytes(), &sig)).unwrap();
            }
            let sig_us = start.elapsed().as_secs_f64() * 1e6 / f64::from(N);
            println!(
                "{alg:?}: {us:.1} µs/verify, of which signature {sig_us:.1} µs ({} byte token)",
                t.len()
            );
        }
    }
}

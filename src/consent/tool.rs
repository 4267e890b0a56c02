//! Issuer key generation and token minting for development, integration
//! testing and issuer operators trying the format (`credgate consent
//! keygen/issue`; the command line itself lives in `cli`). Real issuers run
//! their own signing service; this is the reference.

use std::path::{Path, PathBuf};

use super::token::{self, ConsentClaims, KeyAlg};

/// A tool failure, as a message for the operator.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ToolError(pub String);

/// What to put in a consent token (`consent issue`).
#[derive(Debug, Clone)]
pub struct IssueParams {
    /// Issuer private key (PKCS#8, Ed25519 or P-256; the algorithm follows the key).
    pub issuer_key: PathBuf,
    /// Key id pinned for that key.
    pub kid: String,
    /// Issuer name pinned for that key.
    pub iss: String,
    /// Subject id (unified social credit code or resident ID number).
    pub sub: String,
    /// Org code of the party allowed to use the consent.
    pub grantee: String,
    /// Purpose consented to (`collection` for submissions).
    pub purpose: String,
    /// Field names, consent categories or item ids.
    pub scope: Vec<String>,
    /// Lifetime in seconds from now.
    pub ttl: u64,
    /// Use limit.
    pub max_uses: Option<u32>,
    /// Consent was given in writing (natural persons).
    pub written: bool,
    /// The adverse-consequence notice shown before consent; its SHA-256 goes
    /// into the `notice` claim.
    pub notice_text: Option<String>,
    /// Gateway id the token is addressed to (`server.gateway_id`).
    pub aud: String,
    /// Token id (default: 128 random bits, hex).
    pub jti: Option<String>,
}

/// Generate an issuer key pair for `alg`: writes the PKCS#8 private key to
/// `out` (mode 0600, never overwriting) and returns the `[[issuer]]` block
/// to pin in `policies/consent.toml`.
pub fn keygen(out: &Path, alg: KeyAlg, iss: &str, kid: &str) -> Result<String, ToolError> {
    let pkcs8 = match alg {
        KeyAlg::ES256 => token::generate_es256_pkcs8(),
        KeyAlg::EdDSA => token::generate_ed25519_pkcs8(),
    }
    .map_err(|e| ToolError(e.to_string()))?;
    let public = public_key(alg, &pkcs8)?;
    super::dev::write_private(out, &pkcs8).map_err(ToolError)?;
    Ok(super::policy::issuer_block(iss, kid, alg, &public))
}

fn public_key(alg: KeyAlg, pkcs8: &[u8]) -> Result<Vec<u8>, ToolError> {
    match alg {
        KeyAlg::EdDSA => token::ed25519_public_from_pkcs8(pkcs8),
        KeyAlg::ES256 => token::es256_public_from_pkcs8(pkcs8),
    }
    .map_err(|e| ToolError(e.to_string()))
}

/// Build and sign the token `a` describes, valid from `now`.
pub fn issue(a: &IssueParams, now: u64) -> Result<String, ToolError> {
    let pkcs8 = std::fs::read(&a.issuer_key)
        .map_err(|e| ToolError(format!("{}: {e}", a.issuer_key.display())))?;
    let alg = if token::ed25519_public_from_pkcs8(&pkcs8).is_ok() {
        KeyAlg::EdDSA
    } else if token::es256_public_from_pkcs8(&pkcs8).is_ok() {
        KeyAlg::ES256
    } else {
        return Err(ToolError(format!(
            "{}: not an Ed25519 or P-256 PKCS#8 private key",
            a.issuer_key.display()
        )));
    };
    let bad = |m: &str| Err(ToolError(m.to_owned()));
    let sub = crate::ids::SubjectId::parse_untyped(&a.sub)
        .map_err(|e| ToolError(format!("--sub is {e}")))?;
    if a.ttl == 0 {
        return bad("--ttl must be positive");
    }
    if a.max_uses == Some(0) {
        return bad("--max-uses must be positive");
    }
    if a.scope.iter().any(|s| s.trim().is_empty()) {
        return bad("--scope entries must not be empty");
    }
    let jti = match &a.jti {
        Some(j) => j.clone(),
        None => {
            let mut b = [0u8; 16];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
                .map_err(|_| ToolError("system random number generator failed".into()))?;
            hex::encode(b)
        }
    };
    if !super::jti_ok(&jti) {
        return bad("--jti must be 1-128 characters from A-Z a-z 0-9 - _ . ~ :");
    }
    let claims = ConsentClaims {
        iss: a.iss.clone(),
        sub: sub.id().to_owned(),
        aud: a.aud.clone(),
        grantee: a.grantee.clone(),
        purpose: a.purpose.clone(),
        scope: a.scope.iter().map(|s| s.trim().to_owned()).collect(),
        iat: now,
        nbf: now,
        exp: now.saturating_add(a.ttl),
        jti,
        max_uses: a.max_uses,
        written: a.written.then_some(true),
        notice: a.notice_text.as_deref().map(super::notice_hash),
    };
    token::issue(&a.kid, alg, &pkcs8, &claims).map_err(|e| ToolError(e.to_string()))
}

//! `credgate consent …`: issuer key generation and token minting for
//! development, integration testing and issuer operators trying the format.
//! Real issuers run their own signing service; this is the reference.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::token::{self, ConsentClaims, KeyAlg};
use crate::cli::CliError;

/// `consent` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConsentCommand {
    /// Generate an issuer key pair: writes the PKCS#8 private key (mode 0600,
    /// never overwriting) and prints the `[[issuer]]` block to pin in
    /// `policies/consent.toml`.
    Keygen {
        /// Private key file to create.
        #[arg(long)]
        out: PathBuf,
        /// Signature algorithm the key is pinned to.
        #[arg(long, default_value = "EdDSA", value_parser = ["EdDSA", "ES256"])]
        alg: String,
        /// Issuer name for the printed block.
        #[arg(long, default_value = "CHANGE-ME-issuer")]
        iss: String,
        /// Key id for the printed block.
        #[arg(long, default_value = "CHANGE-ME-kid")]
        kid: String,
    },
    /// Sign a consent token and print it.
    Issue(IssueArgs),
}

/// Options of `consent issue`.
#[derive(Debug, Args)]
pub struct IssueArgs {
    /// Issuer private key (PKCS#8, Ed25519 or P-256; the algorithm follows the key).
    #[arg(long)]
    pub issuer_key: PathBuf,
    /// Key id pinned for that key.
    #[arg(long)]
    pub kid: String,
    /// Issuer name pinned for that key.
    #[arg(long)]
    pub iss: String,
    /// Subject id (unified social credit code or resident ID number).
    #[arg(long)]
    pub sub: String,
    /// Org code of the party allowed to use the consent.
    #[arg(long)]
    pub grantee: String,
    /// Purpose consented to (`collection` for submissions).
    #[arg(long)]
    pub purpose: String,
    /// Comma-separated field names, consent categories or item ids.
    #[arg(long, value_delimiter = ',', required = true)]
    pub scope: Vec<String>,
    /// Lifetime in seconds from now.
    #[arg(long, default_value_t = 3600)]
    pub ttl: u64,
    /// Use limit.
    #[arg(long)]
    pub max_uses: Option<u32>,
    /// Consent was given in writing (natural persons); needs --notice-text.
    #[arg(long, requires = "notice_text")]
    pub written: bool,
    /// The adverse-consequence notice shown before consent; its SHA-256 goes
    /// into the `notice` claim.
    #[arg(long)]
    pub notice_text: Option<String>,
    /// Gateway id the token is addressed to (`server.gateway_id`).
    #[arg(long, default_value = "credgate-dev")]
    pub aud: String,
    /// Token id (default: 128 random bits, hex).
    #[arg(long)]
    pub jti: Option<String>,
}

/// Run a `consent` subcommand.
pub fn run(cmd: ConsentCommand) -> Result<(), CliError> {
    match cmd {
        ConsentCommand::Keygen { out, alg, iss, kid } => {
            let (alg, pkcs8) = match alg.as_str() {
                "ES256" => (KeyAlg::ES256, token::generate_es256_pkcs8()),
                _ => (KeyAlg::EdDSA, token::generate_ed25519_pkcs8()),
            };
            let pkcs8 = pkcs8.map_err(|e| CliError(e.to_string()))?;
            let public = public_key(alg, &pkcs8)?;
            super::dev::write_private(&out, &pkcs8).map_err(CliError)?;
            eprintln!(
                "wrote {} (PKCS#8 private key: keep it secret)",
                out.display()
            );
            print!("{}", super::policy::issuer_block(&iss, &kid, alg, &public));
            Ok(())
        }
        ConsentCommand::Issue(a) => {
            println!("{}", issue(&a, super::now_unix())?);
            Ok(())
        }
    }
}

fn public_key(alg: KeyAlg, pkcs8: &[u8]) -> Result<Vec<u8>, CliError> {
    match alg {
        KeyAlg::EdDSA => token::ed25519_public_from_pkcs8(pkcs8),
        KeyAlg::ES256 => token::es256_public_from_pkcs8(pkcs8),
    }
    .map_err(|e| CliError(e.to_string()))
}

/// Build and sign the token `a` describes, valid from `now`.
pub fn issue(a: &IssueArgs, now: u64) -> Result<String, CliError> {
    let pkcs8 = std::fs::read(&a.issuer_key)
        .map_err(|e| CliError(format!("{}: {e}", a.issuer_key.display())))?;
    let alg = if token::ed25519_public_from_pkcs8(&pkcs8).is_ok() {
        KeyAlg::EdDSA
    } else if token::es256_public_from_pkcs8(&pkcs8).is_ok() {
        KeyAlg::ES256
    } else {
        return Err(CliError(format!(
            "{}: not an Ed25519 or P-256 PKCS#8 private key",
            a.issuer_key.display()
        )));
    };
    let bad = |m: &str| Err(CliError(m.to_owned()));
    let sub = crate::ids::SubjectId::parse_untyped(&a.sub)
        .map_err(|e| CliError(format!("--sub is {e}")))?;
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
                .map_err(|_| CliError("system random number generator failed".into()))?;
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
    token::issue(&a.kid, alg, &pkcs8, &claims).map_err(|e| CliError(e.to_string()))
}

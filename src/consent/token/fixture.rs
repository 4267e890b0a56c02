//! Shared test fixture: three pinned issuers (two Ed25519, one ES256), a
//! fixed clock and a raw signer that bypasses every check.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair};
use serde_json::Value;
use std::sync::OnceLock;

use super::*;

pub(super) const NOW: u64 = 1_750_000_000;
pub(super) const AUD: &str = "credgate-gw-01";
pub(super) const SUB: &str = "91350100M000100Y43";
pub(super) const GRANTEE: &str = "91110108MA01XYZ12K";
pub(super) const PURPOSE: &str = "loan_underwriting";

pub(super) struct Fx {
    pub(super) v: ConsentVerifier,
    pub(super) a_pk8: Vec<u8>,
    pub(super) a_pub: Vec<u8>,
    pub(super) b_pk8: Vec<u8>,
    pub(super) c_pk8: Vec<u8>,
}

pub(super) fn fx() -> &'static Fx {
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

pub(super) fn cfg() -> VerifierConfig {
    VerifierConfig {
        audience: AUD.into(),
        leeway_secs: 30,
        max_lifetime_secs: 7 * 86_400,
    }
}

pub(super) fn claims(iss: &str) -> ConsentClaims {
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

pub(super) fn enc(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

pub(super) fn hdr(alg: &str, kid: &str) -> String {
    format!(r#"{{"alg":"{alg}","typ":"consent+jwt","kid":"{kid}"}}"#)
}

/// Signs arbitrary header/payload bytes with ring, bypassing all checks.
pub(super) fn sign_raw(header: &str, payload: &[u8], alg: KeyAlg, pkcs8: &[u8]) -> String {
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
pub(super) fn signed_a(payload: &Value) -> String {
    sign_raw(
        &hdr("EdDSA", "a1"),
        payload.to_string().as_bytes(),
        KeyAlg::EdDSA,
        &fx().a_pk8,
    )
}

pub(super) fn claims_value() -> Value {
    serde_json::to_value(claims("ISSUER-A")).unwrap()
}

pub(super) fn without(key: &str) -> Value {
    let mut v = claims_value();
    v.as_object_mut().unwrap().remove(key);
    v
}

pub(super) fn with(key: &str, val: Value) -> Value {
    let mut v = claims_value();
    v[key] = val;
    v
}

#[track_caller]
pub(super) fn reason(token: &str) -> &'static str {
    match fx().v.verify(token, NOW) {
        Ok(c) => panic!("unexpectedly verified: {c:?}"),
        Err(e) => e.sub_reason(),
    }
}

#[track_caller]
pub(super) fn detail(token: &str) -> &'static str {
    match fx().v.verify(token, NOW) {
        Err(ConsentError::Malformed(d)) => d,
        other => panic!("expected malformed, got {other:?}"),
    }
}

//! The verifier: pinned keys and policy, built once at load, and the check
//! order that ties the pieces together.

use std::collections::HashMap;

use ring::signature::UnparsedPublicKey;

use super::claims::{ConsentClaims, RawClaims};
use super::config::{ConfigError, MAX_LEEWAY_SECS, VerifierConfig};
use super::error::ConsentError;
use super::header::RawHeader;
use super::jws;
use super::key::{IssuerKey, KeyAlg};

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
    cfg: VerifierConfig,
    keys: HashMap<String, PinnedKey>,
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
        Ok(Self { cfg, keys: pinned })
    }

    /// Checks signature, header, claims and time against `now` (unix seconds,
    /// injected so tests and replays use a fixed clock). Pure: revocation,
    /// `max_uses` counting and request binding are the caller's next steps.
    pub fn verify(&self, token: &str, now: u64) -> Result<ConsentClaims, ConsentError> {
        use ConsentError::Malformed;

        let (h64, p64, s64) = jws::segments(token)?;

        let header = RawHeader::parse(h64)?;
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

        let sig = jws::signature(s64)?;
        let signing_input = &token.as_bytes()[..h64.len() + 1 + p64.len()];
        key.key
            .verify(signing_input, &sig)
            .map_err(|_| ConsentError::BadSignature)?;

        RawClaims::parse(p64)?.check(&key.issuer, &self.cfg, now)
    }
}

#[cfg(test)]
mod tests {
    use crate::consent::token::fixture::*;
    use crate::consent::token::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use proptest::prelude::*;
    use serde_json::json;
    use std::sync::OnceLock;

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

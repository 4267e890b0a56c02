//! Consent claims: the verified [`ConsentClaims`] and what a handler asks of
//! them (binding to the request, scope, written notice), and the strict parse
//! and checks that turn a signed payload into them.

use serde::{Deserialize, Serialize};

use super::config::VerifierConfig;
use super::error::ConsentError;
use super::jws::{b64, parse_object};

/// Verified consent claims. Only [`ConsentVerifier::verify`](super::ConsentVerifier::verify) should produce
/// these from untrusted input; Serialize exists for [`issue`](super::issue).
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

/// All-optional mirror of [`ConsentClaims`] so a missing claim gets a precise
/// detail; serde still refuses duplicates, wrong types and unknown claims.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClaims {
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

impl RawClaims {
    /// Decodes and parses the (already signature-checked) payload segment.
    pub(super) fn parse(p64: &str) -> Result<Self, ConsentError> {
        parse_object(
            &b64(p64, "payload encoding")?,
            "payload not json object",
            "claims invalid",
        )
    }

    /// Required claims, then `iss` against the issuer pinned for the signing
    /// key, `aud`, claim formats, lifetime, `iat`/`nbf` and `exp` against
    /// `now` (the first failure wins).
    pub(super) fn check(
        self,
        issuer: &str,
        cfg: &VerifierConfig,
        now: u64,
    ) -> Result<ConsentClaims, ConsentError> {
        use ConsentError::Malformed;
        let raw = self;

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

        if iss != issuer {
            return Err(ConsentError::UnknownIssuer);
        }
        if aud != cfg.audience {
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
        if exp - iat.min(nbf) > cfg.max_lifetime_secs {
            return Err(Malformed("lifetime"));
        }
        let horizon = now.saturating_add(cfg.leeway_secs);
        if iat > horizon || nbf > horizon {
            return Err(ConsentError::NotYetValid);
        }
        if now >= exp.saturating_add(cfg.leeway_secs) {
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

#[cfg(test)]
mod tests {
    use crate::consent::token::fixture::*;
    use crate::consent::token::*;
    use serde_json::json;

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
}

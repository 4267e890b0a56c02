//! The JOSE header as we accept it: no key-bearing or unknown parameters,
//! exactly our `typ`; `kid` and `alg` are judged by the verifier against its
//! pinned keys.

use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};

use super::error::ConsentError;
use super::jws::{b64, parse_object};

/// The only accepted header `typ` (compared exactly). Keeps other JWTs from
/// the same issuers (ID or access tokens) from being replayed as consent.
pub const CONSENT_TYP: &str = "consent+jwt";

/// Header as we accept it: unknown parameters (incl. `crit`) and duplicates
/// are refused by serde; key-bearing parameters are detected to refuse them
/// with a precise detail.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHeader {
    pub(super) alg: Option<String>,
    typ: Option<String>,
    pub(super) kid: Option<String>,
    #[serde(default, deserialize_with = "present")]
    jku: bool,
    #[serde(default, deserialize_with = "present")]
    jwk: bool,
    #[serde(default, deserialize_with = "present")]
    x5u: bool,
    #[serde(default, deserialize_with = "present")]
    x5c: bool,
}

impl RawHeader {
    /// Decodes and parses the header segment, then refuses key-bearing
    /// parameters and any `typ` but [`CONSENT_TYP`], in that order.
    pub(super) fn parse(h64: &str) -> Result<Self, ConsentError> {
        use ConsentError::Malformed;

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
        Ok(header)
    }
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    IgnoredAny::deserialize(d).map(|_| true)
}

#[cfg(test)]
mod tests {
    use crate::consent::token::fixture::*;
    use crate::consent::token::*;

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
}

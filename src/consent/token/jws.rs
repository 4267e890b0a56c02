//! The compact JWS serialization (`header.payload.signature`): size and
//! segment count, base64url, the strict JSON object each of the first two
//! segments must be, and the fixed-width signature.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::DeserializeOwned;

use super::error::ConsentError;

/// Tokens longer than this are refused before any decoding, so hostile input
/// costs O(1) and cannot make us allocate much.
pub const MAX_TOKEN_BYTES: usize = 8192;

/// Both Ed25519 and fixed-width ES256 signatures are 64 bytes.
const SIG_LEN: usize = 64;
/// Unpadded base64url length of a 64-byte signature.
const SIG_B64_LEN: usize = 86;

/// Refuses oversized tokens before any decoding, then splits the three
/// segments (header, payload, signature).
pub(super) fn segments(token: &str) -> Result<(&str, &str, &str), ConsentError> {
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
    Ok((h64, p64, s64))
}

/// Decodes the signature segment; a wrong length is `bad_signature` (it
/// cannot be the pinned key's signature), bad base64url is `malformed`.
pub(super) fn signature(s64: &str) -> Result<[u8; SIG_LEN], ConsentError> {
    use ConsentError::Malformed;
    if s64.len() != SIG_B64_LEN {
        return Err(ConsentError::BadSignature);
    }
    let mut sig = [0u8; SIG_LEN];
    match URL_SAFE_NO_PAD.decode_slice(s64, &mut sig) {
        Ok(SIG_LEN) => {}
        _ => return Err(Malformed("signature encoding")),
    }
    Ok(sig)
}

pub(super) fn b64(part: &str, what: &'static str) -> Result<Vec<u8>, ConsentError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| ConsentError::Malformed(what))
}

/// Strict JSON object parse. Serde structs also deserialize from arrays
/// (positionally), which is not a JWT, hence the leading-`{` check.
pub(super) fn parse_object<T: DeserializeOwned>(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::token::fixture::*;
    use serde_json::json;

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
}

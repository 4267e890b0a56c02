//! Strict parsing of the console's HTML form bodies
//! (`application/x-www-form-urlencoded`, decoded by the `form_urlencoded`
//! crate, the WHATWG parser the `url` crate uses).
//!
//! A form names its fields up front: a field it does not name is
//! `unknown_form_field`, a field sent twice is `duplicate_form_field`
//! (whatever its values), a body that is not ASCII (browsers percent-encode
//! everything else), is empty, or decodes to invalid UTF-8 is `malformed_form`, a value
//! longer than [`MAX_VALUE`] characters ([`MAX_SUBJECT_HASH_VALUE`] for
//! `subject_hash`, which carries a subject's hash under every configured
//! subject key) is `invalid_request`. Empty values
//! are what a browser sends for an untouched input and count as absent;
//! nothing else is trimmed or normalised.

use std::collections::BTreeMap;

use serde_json::json;

use crate::http::ApiError;

/// Longest value accepted in any console form field, in characters.
pub const MAX_VALUE: usize = 256;

/// Longest `subject_hash` value: 16 keyed hashes (the most subject keys a
/// configuration may list) (`<id of up to 16>:<64 hex>`) separated by spaces.
pub const MAX_SUBJECT_HASH_VALUE: usize = 16 * (16 + 1 + 64) + 15;

/// A parsed form: each known field at most once; empty values dropped.
#[derive(Debug, Default)]
pub struct Form {
    values: BTreeMap<&'static str, String>,
}

impl Form {
    /// Parse `body` against the field names `fields`.
    pub fn parse(body: &[u8], fields: &[&'static str]) -> Result<Form, ApiError> {
        if body.is_empty() {
            // A browser sends every field of a form, empty or not.
            return Err(malformed("the form body is empty"));
        }
        if !body.is_ascii() {
            return Err(malformed(
                "a form body is ASCII (browsers percent-encode the rest)",
            ));
        }
        let mut seen: Vec<&'static str> = Vec::new();
        let mut values = BTreeMap::new();
        for (name, value) in form_urlencoded::parse(body) {
            if name.contains('\u{FFFD}') || value.contains('\u{FFFD}') {
                return Err(malformed("a form field does not decode to UTF-8"));
            }
            let Some(known) = fields.iter().copied().find(|f| *f == name) else {
                return Err(ApiError::bad_request(
                    "unknown_form_field",
                    format!(
                        "this form has no field '{}'",
                        name.chars().take(64).collect::<String>()
                    ),
                )
                .with(json!({"allowed": fields})));
            };
            if seen.contains(&known) {
                return Err(ApiError::bad_request(
                    "duplicate_form_field",
                    format!("the form field '{known}' is sent more than once"),
                )
                .with(json!({"field": known})));
            }
            seen.push(known);
            let max = if known == "subject_hash" {
                MAX_SUBJECT_HASH_VALUE
            } else {
                MAX_VALUE
            };
            if value.chars().count() > max {
                return Err(ApiError::bad_request(
                    "invalid_request",
                    format!("the form field '{known}' is longer than {max} characters"),
                )
                .with(json!({"field": known})));
            }
            // Not trimmed: " " is a value (and refused wherever a value
            // has a format), so the document's patterns say exactly what passes.
            if !value.is_empty() {
                values.insert(known, value.into_owned());
            }
        }
        Ok(Form { values })
    }

    /// The field's value, if it was sent non-empty.
    pub fn get(&self, name: &str) -> Option<String> {
        self.values.get(name).cloned()
    }

    /// The field as a decimal number.
    pub fn number(&self, name: &'static str) -> Result<Option<u64>, ApiError> {
        self.values
            .get(name)
            .map(|v| {
                if v.len() <= 19 && v.bytes().all(|b| b.is_ascii_digit()) {
                    v.parse::<u64>().ok()
                } else {
                    None
                }
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_request",
                        format!("the form field '{name}' must be a decimal number"),
                    )
                    .with(json!({"field": name}))
                })
            })
            .transpose()
    }

    /// The field, which must be one of `options`.
    pub fn choice(
        &self,
        name: &'static str,
        options: &[&'static str],
    ) -> Result<Option<&'static str>, ApiError> {
        match self.values.get(name) {
            None => Ok(None),
            Some(v) => options
                .iter()
                .copied()
                .find(|o| o == v)
                .map(Some)
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_request",
                        format!(
                            "the form field '{name}' must be one of {}",
                            options.join(", ")
                        ),
                    )
                    .with(json!({"field": name}))
                }),
        }
    }
}

fn malformed(message: &str) -> ApiError {
    ApiError::bad_request("malformed_form", message)
}

/// A time from a `datetime-local` input (`YYYY-MM-DDTHH:MM`, seconds
/// optional), read as China Standard Time, or a full RFC 3339 timestamp,
/// as RFC 3339 text for the auditor API's bounds (which validate it).
pub fn local_time(v: Option<String>) -> Option<String> {
    let v = v?;
    let b = v.as_bytes();
    let local = (v.len() == 16 || v.len() == 19)
        && b.get(10) == Some(&b'T')
        && !v.ends_with('Z')
        && !v[10..].contains(['+', '-']);
    Some(if local {
        let secs = if v.len() == 16 { ":00" } else { "" };
        format!("{v}{secs}+08:00")
    } else {
        v
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELDS: &[&str] = &["org", "action", "after"];

    #[test]
    fn known_fields_once_and_empty_is_absent() {
        let f = Form::parse(b"org=9137&action=&after=12", FIELDS).unwrap();
        assert_eq!(f.get("org").as_deref(), Some("9137"));
        assert_eq!(f.get("action"), None);
        assert_eq!(f.number("after").unwrap(), Some(12));
        let f = Form::parse(b"org=%E5%B1%B1%E4%B8%9C+x", FIELDS).unwrap();
        assert_eq!(f.get("org").as_deref(), Some("山东 x"));
        assert!(Form::parse(b"org=", FIELDS).unwrap().get("org").is_none());
    }

    #[test]
    fn hostile_forms_get_stable_codes() {
        for (body, code) in [
            (&b"org=a&org=b"[..], "duplicate_form_field"),
            (b"org=&org=", "duplicate_form_field"),
            (b"subject_id=370303198503150015", "unknown_form_field"),
            (b"ORG=a", "unknown_form_field"),
            (b"org=\xe5\xb1\xb1", "malformed_form"),
            (b"org=%FF", "malformed_form"),
            (b"%FF=1", "malformed_form"),
            (b"", "malformed_form"),
        ] {
            let e = Form::parse(body, FIELDS).unwrap_err();
            assert_eq!(e.code, code, "{}", String::from_utf8_lossy(body));
        }
        let long = format!("org={}", "a".repeat(MAX_VALUE + 1));
        assert_eq!(
            Form::parse(long.as_bytes(), FIELDS).unwrap_err().code,
            "invalid_request"
        );
        let f = Form::parse(b"after=-1", FIELDS).unwrap();
        assert_eq!(f.number("after").unwrap_err().code, "invalid_request");
        let f = Form::parse(b"action=x", FIELDS).unwrap();
        assert!(f.choice("action", &["y"]).is_err());
        assert_eq!(f.choice("action", &["x"]).unwrap(), Some("x"));
    }

    #[test]
    fn local_times_are_china_standard_time() {
        assert_eq!(
            local_time(Some("2026-11-23T10:30".into())).as_deref(),
            Some("2026-11-23T10:30:00+08:00")
        );
        assert_eq!(
            local_time(Some("2026-11-23T10:30:15".into())).as_deref(),
            Some("2026-11-23T10:30:15+08:00")
        );
        assert_eq!(
            local_time(Some("2026-11-23T02:30:00Z".into())).as_deref(),
            Some("2026-11-23T02:30:00Z")
        );
        assert_eq!(local_time(None), None);
    }
}

//! The audit entry and its frozen canonical form (the Merkle leaf data).
//!
//! Field values never enter an entry: it holds field names, decisions and
//! reasons; the subject only as a keyed hash; a prohibited field's raw name
//! only as its category. [`AuditEntry::canonical`] is a public format —
//! auditors' verifiers recompute leaf hashes from it — frozen by the golden
//! tests below; any change needs a new [`ENTRY_VERSION`].
//!
//! Versions:
//! * **1** — the original form, ending with `outcome`.
//! * **2** — adds `policy` after `outcome`: the content hash of the policy
//!   the request was decided under (see `credgate policy check`), so an
//!   auditor can tell which grants applied. A v2 entry always carries it;
//!   a v1 entry never does.
//! * **3** — the fields of v2; the subject hash names the key that made it:
//!   `<key id>:<64 lowercase hex>` (e.g. `k2:…`), so the subject key can be
//!   rotated while entries under an older key stay searchable (the gateway
//!   hashes a presented subject id under every configured key). A v3
//!   `subject`, when present, always has that form; v1 and v2 entries carry
//!   the bare hex, which is read as key id [`LEGACY_KEY_ID`] (`k1`).
//!
//! All three are read and verified; new entries are v3.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// Current canonical format version.
pub const ENTRY_VERSION: u32 = 3;

/// The oldest version still read and verified.
pub const OLDEST_ENTRY_VERSION: u32 = 1;

/// The key id of a subject hash without one (entries of versions 1 and 2,
/// and a configuration with a single unnamed subject key).
pub const LEGACY_KEY_ID: &str = "k1";

/// Longest key id.
pub const MAX_KEY_ID_LEN: usize = 16;

/// Whether `id` is a well-formed key id: 1 to [`MAX_KEY_ID_LEN`] characters
/// from `a-z0-9`.
pub fn valid_key_id(id: &str) -> bool {
    (1..=MAX_KEY_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Whether `h` is a bare subject hash: 64 lowercase hex characters.
pub fn bare_subject_hash(h: &str) -> bool {
    h.len() == 64 && h.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// Split a subject hash into (key id, bare hash): `k2:<hex>` as is, a bare
/// hash (versions 1 and 2) as key id [`LEGACY_KEY_ID`]. `None` if it is
/// neither.
pub fn split_subject_hash(h: &str) -> Option<(&str, &str)> {
    match h.split_once(':') {
        Some((id, hex)) if valid_key_id(id) && bare_subject_hash(hex) => Some((id, hex)),
        None if bare_subject_hash(h) => Some((LEGACY_KEY_ID, h)),
        _ => None,
    }
}

/// A subject hash in its keyed form, `<key id>:<hex>` (a bare one gets
/// [`LEGACY_KEY_ID`]): the one form the search index holds, whatever the
/// entry's version. Anything else is returned unchanged.
pub fn keyed_subject_hash(h: &str) -> std::borrow::Cow<'_, str> {
    if !h.contains(':') && bare_subject_hash(h) {
        std::borrow::Cow::Owned(format!("{LEGACY_KEY_ID}:{h}"))
    } else {
        std::borrow::Cow::Borrowed(h)
    }
}

/// One field's outcome as logged.
///
/// Decisions, reasons and details are the gateway's own stable codes, so
/// they are borrowed `'static` strings when an entry is made (no allocation
/// per field on the request path) and owned when an entry is read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditField {
    /// Catalog field name, `prohibited:<category>` for a prohibited name, or
    /// the (truncated) requested name for a non-catalog one.
    pub field: String,
    /// `returned`, `masked`, `withheld`, or for submissions `accepted`/`refused`.
    pub decision: Cow<'static, str>,
    /// Stable reason code.
    pub reason: Cow<'static, str>,
    /// Sub-reason (e.g. consent `expired`).
    pub detail: Option<Cow<'static, str>>,
}

/// One audit entry. Field order is the canonical order: do not reorder, add
/// new fields only with a new [`ENTRY_VERSION`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    /// Format version.
    pub v: u32,
    /// RFC 3339 UTC timestamp with milliseconds.
    pub ts: String,
    /// Request id, also returned to the caller in `x-request-id`.
    pub request_id: String,
    /// Gateway node that served it.
    pub gateway: String,
    /// Caller org code, if the certificate carried one.
    pub org: Option<String>,
    /// SHA-256 fingerprint of the caller's certificate.
    pub cert_fp: Option<String>,
    /// What was asked: `query`, `submit_records`, `audit_search`, … or
    /// `unknown` for unrouted paths.
    pub action: String,
    /// Subject type, when a subject was named.
    pub subject_type: Option<String>,
    /// Keyed hash of the subject id: bare hex in v1 and v2,
    /// `<key id>:<hex>` from v3 on.
    pub subject: Option<String>,
    /// Purpose named.
    pub purpose: Option<String>,
    /// Consent token id (`jti`) used, if any.
    pub consent: Option<String>,
    /// Per-field decisions.
    pub fields: Vec<AuditField>,
    /// Records stored or released.
    pub records: u32,
    /// HTTP status sent.
    pub status: u16,
    /// `ok` or the stable error code.
    pub outcome: String,
    /// Content hash of the policy in force (version 2 on; absent in v1,
    /// whose canonical bytes therefore stay exactly as they were).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
}

impl AuditEntry {
    /// The canonical bytes: compact JSON in declaration order. Frozen by a
    /// golden test; an auditor's verifier recomputes leaf hashes from it.
    pub fn canonical(&self) -> Vec<u8> {
        // Most entries are a few hundred bytes: one allocation, not a
        // series of doublings from serde_json's 128.
        let mut out = Vec::with_capacity(512 + 96 * self.fields.len());
        serde_json::to_writer(&mut out, self).expect("audit entries always serialise");
        out
    }

    /// Parse canonical bytes (strict: unknown keys refused; the fields must
    /// be those of the entry's version, so a v1 entry with a `policy` or a
    /// v2 or v3 entry without one is refused, as is a v3 subject without
    /// its key id, or an unknown version).
    pub fn parse(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        use serde::de::Error as _;
        let e: Self = serde_json::from_slice(bytes)?;
        match (e.v, &e.policy) {
            (1, None) | (2, Some(_)) => Ok(e),
            (3, Some(_)) => match e.subject.as_deref() {
                Some(h) if !h.contains(':') || split_subject_hash(h).is_none() => {
                    Err(serde_json::Error::custom(
                        "a version 3 subject hash is <key id>:<64 lowercase hex>",
                    ))
                }
                _ => Ok(e),
            },
            (1, Some(_)) => Err(serde_json::Error::custom(
                "a version 1 entry has no policy field",
            )),
            (v @ (2 | 3), None) => Err(serde_json::Error::custom(format!(
                "a version {v} entry must carry its policy hash"
            ))),
            (v, _) => Err(serde_json::Error::custom(format!(
                "unknown entry version {v} (this build reads {OLDEST_ENTRY_VERSION} to {ENTRY_VERSION})"
            ))),
        }
    }

    /// The subject hash as (key id, bare hex): a v1 or v2 entry's bare hash
    /// is key id [`LEGACY_KEY_ID`].
    pub fn subject_key(&self) -> Option<(&str, &str)> {
        self.subject.as_deref().and_then(split_subject_hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle;

    fn sample() -> AuditEntry {
        AuditEntry {
            v: 1,
            ts: "2026-11-23T02:30:00.123Z".into(),
            request_id: "r-0001".into(),
            gateway: "credgate-dev".into(),
            org: Some("91370300164100001A".into()),
            cert_fp: Some("ab".repeat(32)),
            action: "query".into(),
            subject_type: Some("legal_person".into()),
            subject: Some("cd".repeat(32)),
            purpose: Some("financing".into()),
            consent: None,
            fields: vec![AuditField {
                field: "enterprise_name".into(),
                decision: "returned".into(),
                reason: "authorised".into(),
                detail: None,
            }],
            records: 1,
            status: 200,
            outcome: "ok".into(),
            policy: None,
        }
    }

    fn sample_v2() -> AuditEntry {
        AuditEntry {
            v: 2,
            policy: Some("sha256:0123456789abcdef".into()),
            ..sample()
        }
    }

    /// The canonical form is a public format: auditors' verifiers recompute
    /// leaf hashes from it. This golden string must never change for v1.
    #[test]
    fn canonical_form_is_frozen() {
        let golden = concat!(
            r#"{"v":1,"ts":"2026-11-23T02:30:00.123Z","request_id":"r-0001","gateway":"credgate-dev","#,
            r#""org":"91370300164100001A","cert_fp":"abababababababababababababababababababababababababababababababab","#,
            r#""action":"query","subject_type":"legal_person","#,
            r#""subject":"cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd","#,
            r#""purpose":"financing","consent":null,"#,
            r#""fields":[{"field":"enterprise_name","decision":"returned","reason":"authorised","detail":null}],"#,
            r#""records":1,"status":200,"outcome":"ok"}"#
        );
        let e = sample();
        assert_eq!(String::from_utf8(e.canonical()).unwrap(), golden);
        assert_eq!(AuditEntry::parse(golden.as_bytes()).unwrap(), e);
        assert_eq!(
            hex::encode(merkle::leaf_hash(golden.as_bytes())),
            hex::encode(merkle::leaf_hash(&e.canonical()))
        );
    }

    /// Version 2: the v1 form plus `policy` after `outcome`. Frozen too.
    #[test]
    fn canonical_form_v2_is_frozen() {
        let golden = concat!(
            r#"{"v":2,"ts":"2026-11-23T02:30:00.123Z","request_id":"r-0001","gateway":"credgate-dev","#,
            r#""org":"91370300164100001A","cert_fp":"abababababababababababababababababababababababababababababababab","#,
            r#""action":"query","subject_type":"legal_person","#,
            r#""subject":"cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd","#,
            r#""purpose":"financing","consent":null,"#,
            r#""fields":[{"field":"enterprise_name","decision":"returned","reason":"authorised","detail":null}],"#,
            r#""records":1,"status":200,"outcome":"ok","policy":"sha256:0123456789abcdef"}"#
        );
        let e = sample_v2();
        assert_eq!(String::from_utf8(e.canonical()).unwrap(), golden);
        assert_eq!(AuditEntry::parse(golden.as_bytes()).unwrap(), e);
    }

    fn sample_v3() -> AuditEntry {
        AuditEntry {
            v: 3,
            subject: Some(format!("k2:{}", "cd".repeat(32))),
            ..sample_v2()
        }
    }

    /// Version 3: the v2 fields, the subject hash prefixed by its key id.
    /// Frozen too.
    #[test]
    fn canonical_form_v3_is_frozen() {
        let golden = concat!(
            r#"{"v":3,"ts":"2026-11-23T02:30:00.123Z","request_id":"r-0001","gateway":"credgate-dev","#,
            r#""org":"91370300164100001A","cert_fp":"abababababababababababababababababababababababababababababababab","#,
            r#""action":"query","subject_type":"legal_person","#,
            r#""subject":"k2:cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd","#,
            r#""purpose":"financing","consent":null,"#,
            r#""fields":[{"field":"enterprise_name","decision":"returned","reason":"authorised","detail":null}],"#,
            r#""records":1,"status":200,"outcome":"ok","policy":"sha256:0123456789abcdef"}"#
        );
        let e = sample_v3();
        assert_eq!(ENTRY_VERSION, 3);
        assert_eq!(String::from_utf8(e.canonical()).unwrap(), golden);
        assert_eq!(AuditEntry::parse(golden.as_bytes()).unwrap(), e);
        assert_eq!(e.subject_key(), Some(("k2", "cd".repeat(32).as_str())));
        // Older entries' bare hashes read as key id k1.
        assert_eq!(
            sample_v2().subject_key(),
            Some(("k1", "cd".repeat(32).as_str()))
        );
        assert_eq!(
            sample().subject_key(),
            Some(("k1", "cd".repeat(32).as_str()))
        );
        // A v3 entry without a subject is fine.
        let none = AuditEntry {
            subject: None,
            subject_type: None,
            ..sample_v3()
        };
        assert_eq!(AuditEntry::parse(&none.canonical()).unwrap(), none);
    }

    /// A v3 subject hash names its key: bare, malformed ids or hashes are refused.
    #[test]
    fn a_v3_subject_hash_carries_a_well_formed_key_id() {
        let v3 = String::from_utf8(sample_v3().canonical()).unwrap();
        let hex = "cd".repeat(32);
        for bad in [
            hex.clone(),
            format!("K2:{hex}"),
            format!(":{hex}"),
            format!("k-2:{hex}"),
            format!("{}:{hex}", "a".repeat(MAX_KEY_ID_LEN + 1)),
            format!("k2:{}", &hex[1..]),
            format!("k2:{}", hex.to_uppercase()),
            format!("k2:k1:{hex}"),
        ] {
            let text = v3.replace(&format!("k2:{hex}"), &bad);
            let e = AuditEntry::parse(text.as_bytes()).unwrap_err();
            assert!(e.to_string().contains("key id"), "{bad}: {e}");
        }
        assert_eq!(keyed_subject_hash(&hex), format!("k1:{hex}"));
        assert_eq!(
            keyed_subject_hash(&format!("k9:{hex}")),
            format!("k9:{hex}")
        );
        assert!(valid_key_id("k2") && valid_key_id("2027a") && !valid_key_id(""));
    }

    /// Each version carries exactly its own fields; unknown versions are refused.
    #[test]
    fn fields_must_match_the_version() {
        let v1 = String::from_utf8(sample().canonical()).unwrap();
        let v2 = String::from_utf8(sample_v2().canonical()).unwrap();
        let v1_with_policy = v1.replace(r#""outcome":"ok"}"#, r#""outcome":"ok","policy":"x"}"#);
        let e = AuditEntry::parse(v1_with_policy.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("version 1"), "{e}");
        let v2_without = v2.replace(r#","policy":"sha256:0123456789abcdef""#, "");
        let e = AuditEntry::parse(v2_without.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("policy hash"), "{e}");
        let v3 = String::from_utf8(sample_v3().canonical()).unwrap();
        let v3_without = v3.replace(r#","policy":"sha256:0123456789abcdef""#, "");
        let e = AuditEntry::parse(v3_without.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("version 3 entry must carry"), "{e}");
        let v4 = v3.replace(r#"{"v":3"#, r#"{"v":4"#);
        let e = AuditEntry::parse(v4.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("unknown entry version 4"), "{e}");
        let extra = v2.replace(r#""outcome":"ok""#, r#""outcome":"ok","x":1"#);
        assert!(AuditEntry::parse(extra.as_bytes()).is_err());
    }
}

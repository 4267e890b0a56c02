//! The audit entry and its frozen canonical form (the Merkle leaf data).
//!
//! Field values never enter an entry: it holds field names, decisions and
//! reasons; the subject only as a keyed hash; a prohibited field's raw name
//! only as its category. [`AuditEntry::canonical`] is a public format —
//! auditors' verifiers recompute leaf hashes from it — frozen by the golden
//! test below; any change needs a new [`ENTRY_VERSION`].

use serde::{Deserialize, Serialize};

/// Current canonical format version.
pub const ENTRY_VERSION: u32 = 1;

/// One field's outcome as logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditField {
    /// Catalog field name, `prohibited:<category>` for a prohibited name, or
    /// the (truncated) requested name for a non-catalog one.
    pub field: String,
    /// `returned`, `masked`, `withheld`, or for submissions `accepted`/`refused`.
    pub decision: String,
    /// Stable reason code.
    pub reason: String,
    /// Sub-reason (e.g. consent `expired`).
    pub detail: Option<String>,
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
    /// Keyed hash of the subject id.
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
}

impl AuditEntry {
    /// The canonical bytes: compact JSON in declaration order. Frozen by a
    /// golden test; an auditor's verifier recomputes leaf hashes from it.
    pub fn canonical(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("audit entries always serialise")
    }

    /// Parse canonical bytes (strict: unknown keys refused).
    pub fn parse(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle;

    fn sample() -> AuditEntry {
        AuditEntry {
            v: ENTRY_VERSION,
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
}

//! Wire types, kept apart from domain types: these mirror the JSON contract
//! (and refuse unknown keys); handlers convert them into validated domain
//! values ([`crate::ids`]) before anything else happens.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::{Map, Value};

/// A string of a request body, borrowed from the body unless it holds
/// escapes (a plain `String` costs an allocation per value).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct BodyStr<'a>(#[serde(borrow)] pub Cow<'a, str>);

impl AsRef<str> for BodyStr<'_> {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// `{"type": "legal_person" | "natural_person", "id": "…"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectDto {
    /// Subject type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Identifier.
    pub id: String,
}

/// Body of `POST /v1/query`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest<'a> {
    /// Whose data.
    pub subject: SubjectDto,
    /// Why (closed list).
    pub purpose: String,
    /// Which catalog fields (empty when a `view` is named).
    #[serde(default, borrow)]
    pub fields: Vec<BodyStr<'a>>,
    /// A named view from the catalog (e.g. `financing_profile`) instead of
    /// `fields`; the response then carries a `summary` block.
    #[serde(default)]
    pub view: Option<String>,
    /// Consent token (compact JWS) for consent-classified fields.
    #[serde(default)]
    pub consent_token: Option<String>,
}

/// Body of `POST /v1/records`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// The batch; stored all or nothing.
    pub records: Vec<RecordDto>,
}

/// One submitted record.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordDto {
    /// Whose record.
    pub subject: SubjectDto,
    /// Catalog item id.
    pub item: String,
    /// Catalog fields of that item.
    pub fields: Map<String, Value>,
    /// Collection consent for consent-classified fields of a natural person.
    #[serde(default)]
    pub consent_token: Option<String>,
    /// Severity tier (`minor`, `general`, `serious`): required on negative
    /// items, refused on others.
    #[serde(default)]
    pub tier: Option<String>,
    /// Decision date (`YYYY-MM-DD`) the disclosure period counts from:
    /// required on negative items, refused on others.
    #[serde(default)]
    pub decision_date: Option<String>,
}

/// Largest number of fields one query may name.
pub const MAX_QUERY_FIELDS: usize = 256;
/// Largest number of records in one submission.
pub const MAX_BATCH_RECORDS: usize = 1000;
/// Longest field name accepted in a query or a record, in bytes.
pub const MAX_FIELD_NAME: usize = 128;
/// Most distinct consent tokens in one submission (a batch is about one
/// subject; its entry lists every verified token's id, each at most
/// [`crate::consent::token::MAX_TOKEN_BYTES`] long like its token).
pub const MAX_BATCH_CONSENT_TOKENS: usize = 4;
/// How many characters of a field name the audit log keeps.
pub const AUDIT_NAME_CHARS: usize = 64;

/// A field name the gateway accepts from a client (queried or submitted):
/// 1–[`MAX_FIELD_NAME`] bytes, no control characters. Together with
/// [`MAX_QUERY_FIELDS`], [`AUDIT_NAME_CHARS`], [`MAX_BATCH_CONSENT_TOKENS`]
/// and the consent verifier's token limit this bounds what a request
/// can put in its audit entry, so the entry always fits in the log
/// (`credlog::tiles::MAX_ENTRY_LEN`).
pub fn field_name_ok(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_FIELD_NAME && !name.chars().any(char::is_control)
}

/// A field name as the audit log keeps it: its first [`AUDIT_NAME_CHARS`]
/// characters.
pub fn audit_field_name(name: &str) -> String {
    // A name of at most AUDIT_NAME_CHARS bytes has at most that many
    // characters: copied whole (the common case, without a per-char loop).
    if name.len() <= AUDIT_NAME_CHARS {
        return name.to_owned();
    }
    match name.char_indices().nth(AUDIT_NAME_CHARS) {
        Some((end, _)) => name[..end].to_owned(),
        None => name.to_owned(),
    }
}

/// Body of `POST /v1/audit/search`: filters, all optional, combined with AND.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// Caller organisation code.
    pub org: Option<String>,
    /// A subject, hashed server-side with the subject key.
    pub subject: Option<SubjectDto>,
    /// A subject's keyed hash, as entries carry it.
    pub subject_hash: Option<String>,
    /// Purpose named.
    pub purpose: Option<String>,
    /// Audit action (endpoint action name, `malformed_http`, …).
    pub action: Option<String>,
    /// `ok` or a stable error code.
    pub outcome: Option<String>,
    /// A per-field decision any field of the entry had.
    pub decision: Option<String>,
    /// Only entries that were refused or withheld something.
    pub denied: Option<bool>,
    /// From this RFC 3339 time (inclusive).
    pub from: Option<String>,
    /// Up to this RFC 3339 time (exclusive).
    pub to: Option<String>,
    /// Page after this sequence number.
    pub after: Option<u64>,
    /// Page size.
    pub limit: Option<u32>,
}

/// Body of `POST /v1/audit/proof/inclusion`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionRequest {
    /// The entry's sequence number.
    pub seq: u64,
    /// Tree size to prove against (default: the latest checkpoint).
    pub tree_size: Option<u64>,
    /// `"json"` (default) or `"tlog-proof"`: the proof as a
    /// `c2sp.org/tlog-proof@v1` file (`text/plain`).
    pub format: Option<ProofFormat>,
}

/// How `POST /v1/audit/proof/inclusion` answers.
///
/// Read through a string, so a value of the wrong type is a schema error
/// (`invalid_request`) like an unknown name, not `malformed_json` (which
/// serde_json reports for a non-string where an enum is expected).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum ProofFormat {
    /// `"json"`: the JSON object with the entry, proof, root and checkpoint.
    Json,
    /// `"tlog-proof"`: a `c2sp.org/tlog-proof@v1` file carrying the entry as
    /// its extra data.
    TlogProof,
}

impl TryFrom<String> for ProofFormat {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "json" => Ok(Self::Json),
            "tlog-proof" => Ok(Self::TlogProof),
            _ => Err(format!(
                "unknown format {s:?}, expected \"json\" or \"tlog-proof\""
            )),
        }
    }
}

/// Body of `POST /v1/audit/proof/consistency`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyRequest {
    /// The older tree size.
    pub old_size: u64,
    /// The newer one (default: the latest checkpoint).
    pub new_size: Option<u64>,
}

/// Body of `POST /v1/audit/report`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportRequest {
    /// From this RFC 3339 time (default: 24 h ago).
    pub from: Option<String>,
    /// Up to this RFC 3339 time (default: now).
    pub to: Option<String>,
    /// Length of the most-queried-subjects list.
    pub top: Option<u32>,
}

/// Body of `POST /v1/audit/export`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportRequest {
    /// `jsonl` (default) or `csv`.
    pub format: Option<crate::audit::export::ExportFormat>,
    /// First sequence number.
    pub from_seq: Option<u64>,
    /// Last sequence number (inclusive).
    pub to_seq: Option<u64>,
    /// From this RFC 3339 time instead of `from_seq`.
    pub from: Option<String>,
    /// Up to this RFC 3339 time instead of `to_seq`.
    pub to: Option<String>,
    /// Tree size the proofs are against.
    pub tree_size: Option<u64>,
    /// Also prove consistency from this earlier tree size.
    pub consistency_from: Option<u64>,
}

/// Body of `POST /v1/portal/access-history`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryRequest {
    /// Whose history (the portal has verified this person's identity).
    pub subject: SubjectDto,
    /// Page after this sequence number.
    pub after: Option<u64>,
    /// Page size.
    pub limit: Option<u32>,
}

/// Body of `POST /v1/consents/{jti}/revoke`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// Whose consent; the portal has verified this person's identity.
    pub subject: SubjectDto,
}

/// Whether a `Content-Type` value names the media type `want` (an
/// `type/subtype` in lower case): type and subtype compared exactly and
/// case-insensitively, parameters allowed (`name=value`, the value a token
/// or a quoted string), and a `charset`, if given, only `utf-8`.
pub fn media_type_is(value: &str, want: &str) -> bool {
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or("").trim_matches([' ', '\t']);
    if !essence.eq_ignore_ascii_case(want) {
        return false;
    }
    parts.all(|p| {
        let p = p.trim_matches([' ', '\t']);
        let Some((name, v)) = p.split_once('=') else {
            return false;
        };
        let token = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        };
        let v = match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
            Some(q) if !q.contains(['"', '\\']) && !q.bytes().any(|b| b.is_ascii_control()) => q,
            Some(_) => return false,
            None if token(v) => v,
            None => return false,
        };
        token(name) && (!name.eq_ignore_ascii_case("charset") || v.eq_ignore_ascii_case("utf-8"))
    })
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::{QueryRequest, media_type_is};

    #[test]
    fn query_field_names_are_borrowed_unless_escaped() {
        let body = br#"{"subject":{"type":"legal_person","id":"x"},"purpose":"financing",
            "fields":["enterprise_name","\u0065nterprise_name","penalty_date"]}"#;
        let req: QueryRequest<'_> = serde_json::from_slice(body).unwrap();
        let names: Vec<&str> = req.fields.iter().map(AsRef::as_ref).collect();
        assert_eq!(
            names,
            ["enterprise_name", "enterprise_name", "penalty_date"]
        );
        assert!(matches!(req.fields[0].0, Cow::Borrowed(_)));
        assert!(
            matches!(req.fields[1].0, Cow::Owned(_)),
            "escapes are decoded"
        );
        assert!(matches!(req.fields[2].0, Cow::Borrowed(_)));
        // Still strict: a field name must be a string.
        let bad =
            br#"{"subject":{"type":"legal_person","id":"x"},"purpose":"financing","fields":[1]}"#;
        assert!(serde_json::from_slice::<QueryRequest<'_>>(bad).is_err());
    }

    #[test]
    fn media_types_are_parsed_not_prefixed() {
        let json = "application/json";
        for ok in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "application/json;charset=UTF-8",
            "application/json; charset=\"utf-8\"",
            "application/json ; charset=utf-8",
        ] {
            assert!(media_type_is(ok, json), "{ok}");
        }
        for bad in [
            "",
            "application/jsonx",
            "application/json-patch+json",
            "application/json; charset=latin1",
            "application/json; charset=utf-16",
            "application/json; charset",
            "application/json; charset=",
            "application/json;",
            "application/json; =utf-8",
            "application/json; charset=\"utf-8",
            "text/json",
            "application/x-www-form-urlencoded",
            "application /json",
        ] {
            assert!(!media_type_is(bad, json), "{bad}");
        }
        let form = "application/x-www-form-urlencoded";
        assert!(media_type_is(form, form));
        assert!(media_type_is(
            "application/x-www-form-urlencoded; charset=UTF-8",
            form
        ));
        assert!(!media_type_is("application/x-www-form-urlencodedx", form));
    }
}

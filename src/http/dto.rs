//! Wire types, kept apart from domain types: these mirror the JSON contract
//! (and refuse unknown keys); handlers convert them into validated domain
//! values ([`crate::ids`]) before anything else happens.

use serde::Deserialize;
use serde_json::{Map, Value};

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
pub struct QueryRequest {
    /// Whose data.
    pub subject: SubjectDto,
    /// Why (closed list).
    pub purpose: String,
    /// Which catalog fields (empty when a `view` is named).
    #[serde(default)]
    pub fields: Vec<String>,
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
/// Longest field name accepted in a query.
pub const MAX_FIELD_NAME: usize = 128;

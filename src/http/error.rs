//! The one place errors become HTTP responses.
//!
//! Every refusal the gateway can give is an [`ApiError`]: a status, a stable
//! snake_case code, a human message and optional structured details. Layer
//! errors convert into it here, and nowhere else, so the mapping (and what
//! is *not* revealed: database messages, file paths, token contents) can be
//! reviewed in one screen.

use hyper::StatusCode;
use serde_json::{Value, json};

use crate::audit::AuditError;
use crate::audit::anomaly::QuotaExceeded;
use crate::ids::IdError;
use crate::policy::lifecycle::{
    LifecycleRefusal, Noun, RepairRefusal, TermsError, ViewRefusal, format_date,
};
use crate::policy::submission::SubmissionRefusal;
use crate::store::{Refusal, StoreError};

/// A refusal with its wire representation.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code (part of the public contract).
    pub code: &'static str,
    /// Human-readable message (no internal detail).
    pub message: String,
    /// Structured details, e.g. the record index and field.
    pub details: Option<Value>,
    /// The `Allow` header of a 405.
    pub allow: Option<String>,
}

impl ApiError {
    /// Build an error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: None,
            allow: None,
        }
    }

    /// Attach details.
    pub fn with(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// 400 with `code`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401: the caller has no usable identity.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "no_identity", message)
    }

    /// 401 `certificate_revoked`: a CRL loaded after the connection's
    /// handshake revokes its certificate (the connection is then closed).
    pub fn certificate_revoked() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "certificate_revoked",
            "the client certificate has been revoked; the connection is closed",
        )
    }

    /// 403 with `code`.
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    /// 404 with `code`.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// 409 with `code`: the request is valid but conflicts with the state.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    /// 422 with `code`.
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// 500 without detail; the cause goes to the log, not the client.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal error; the request has been logged",
        )
    }

    /// The JSON body `{"error": {code, message, details}}`.
    pub fn body(&self) -> Value {
        let mut e = json!({"code": self.code, "message": self.message});
        if let Some(d) = &self.details {
            e["details"] = d.clone();
        }
        json!({ "error": e })
    }
}

impl From<IdError> for ApiError {
    fn from(e: IdError) -> Self {
        let code = if matches!(e, IdError::SubjectType) {
            "unknown_subject_type"
        } else {
            "invalid_identifier"
        };
        ApiError::bad_request(code, format!("invalid subject identifier: {e}"))
            .with(json!({"check": e.check()}))
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store error");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "the data store is unavailable; try again later",
        )
    }
}

impl From<AuditError> for ApiError {
    fn from(_: AuditError) -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "audit_unavailable",
            "the audit log cannot be written, so no data is served (fail closed)",
        )
    }
}

/// 503 for a change that committed although the log did not take its
/// entry: the entry is appended once the log recovers (`AuditLog::defer`),
/// and the client is told the change is stored, so that it does not store
/// it twice by resubmitting.
pub(crate) fn stored_without_entry() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "audit_unavailable",
        "the change is stored, but the audit log cannot be written now; its entry is appended when the log recovers, so do not resubmit it",
    )
    .with(json!({"stored": true}))
}

impl From<QuotaExceeded> for ApiError {
    fn from(e: QuotaExceeded) -> Self {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "quota_exceeded",
            format!(
                "this organisation has queried its quota of {} distinct subjects in the last hour; \
                 subjects already queried in that hour remain available",
                e.limit
            ),
        )
        .with(json!({"limit": e.limit, "window_secs": 3600}))
    }
}

impl From<super::strict_json::StrictJsonError> for ApiError {
    fn from(e: super::strict_json::StrictJsonError) -> Self {
        use super::strict_json::StrictJsonError as E;
        match &e {
            E::DuplicateKey { key } => {
                ApiError::bad_request("duplicate_key", e.to_string()).with(json!({ "key": key }))
            }
            E::TooDeep => ApiError::bad_request("too_deep", e.to_string()),
            E::Syntax { .. } => ApiError::bad_request("malformed_json", e.to_string()),
        }
    }
}

impl From<crate::endpoint::RouteError> for ApiError {
    fn from(e: crate::endpoint::RouteError) -> Self {
        use crate::endpoint::{RouteError, allow_header};
        match e {
            RouteError::MethodNotAllowed { allow } => {
                let allow = allow_header(&allow);
                let mut err = ApiError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    format!("this endpoint allows {allow}"),
                )
                .with(json!({ "allow": allow }));
                err.allow = Some(allow);
                err
            }
            _ => ApiError::not_found("not_found", "no such endpoint"),
        }
    }
}

impl From<crate::policy::access::NotPermitted> for ApiError {
    fn from(e: crate::policy::access::NotPermitted) -> Self {
        ApiError::forbidden(
            "role_not_permitted",
            format!("this endpoint is for {}", {
                let r: Vec<&str> = e.allowed.iter().map(|r| r.as_str()).collect();
                if r.is_empty() {
                    "no role".to_owned()
                } else {
                    r.join(" or ")
                }
            }),
        )
    }
}

/// Map the error of reading a request body (`body`, the bytes) into its
/// wire type: a body that is not strict JSON is refused as such
/// (`malformed_json`, `duplicate_key`, `too_deep`); well-formed JSON of the
/// wrong shape — an unknown key, a missing one, a wrong type, a value
/// outside a closed list — is 400 `invalid_request` with `details.field`,
/// the path of the value (`subject.type`, `records[0].tier`) when it has
/// one. (serde_json reports a non-string where an enum is expected as a
/// syntax error; on a body that is strict JSON it is a schema error.)
pub fn json_error_at(e: &serde_json::Error, body: &[u8]) -> ApiError {
    if let Err(not_json) = super::strict_json::check(body) {
        return not_json.into();
    }
    let mut message = e.to_string();
    // serde_json appends " at line L column C".
    if let Some((what, _)) = message.rsplit_once(" at line ") {
        message = what.to_owned();
    }
    let message = without_values(&message);
    match super::strict_json::path_of_error(body, e) {
        Some(field) => ApiError::bad_request(
            "invalid_request",
            format!("request does not match the schema at `{field}`: {message}"),
        )
        .with(json!({ "field": field })),
        None => ApiError::bad_request(
            "invalid_request",
            format!("request does not match the schema: {message}"),
        ),
    }
}

/// A serde message without the client's value in it: `unknown variant
/// `…`` and `string "…"` name the value's length instead. A value may be
/// an identifier or other personal data sent in the wrong place; an error
/// body travels through proxies and client logs, so it carries only what
/// the client needs to fix the request (the field, what was expected).
/// Field names (`unknown field `…``) stay: they are the schema's words or
/// the client's own key, and the prohibited-key check ran before.
fn without_values(message: &str) -> String {
    const MARKERS: [(&str, &str); 2] = [("unknown variant `", "`"), ("string \"", "\"")];
    for (open, close) in MARKERS {
        let Some(start) = message.find(open) else {
            continue;
        };
        let from = start + open.len();
        // The value may itself hold `", expected`; the expected part never does.
        let end = message[from..]
            .rfind(&format!("{close}, expected "))
            .map(|i| from + i)
            .or_else(|| {
                message[from..]
                    .ends_with(close)
                    .then(|| message.len() - close.len())
            });
        if let Some(end) = end.filter(|&e| e >= from) {
            let kind = open.trim_end_matches(['`', '"']);
            return format!(
                "{}{kind}({} bytes){}",
                &message[..start],
                end - from,
                &message[end + close.len()..]
            );
        }
    }
    message.to_owned()
}

/// The error of a wire type read from a `Value` already parsed from
/// `body` (after a scan of the parsed tree): read again from the bytes, for
/// the position [`json_error_at`] needs (on the error path only).
pub fn value_error_at<T: serde::de::DeserializeOwned>(
    e: &serde_json::Error,
    body: &[u8],
) -> ApiError {
    match serde_json::from_slice::<T>(body) {
        Err(located) => json_error_at(&located, body),
        Ok(_) => json_error_at(e, body),
    }
}

/// The 404 for a record, objection or repair application that does not
/// exist — and, identically, for one the caller may not see
/// ([`LifecycleRefusal::NotVisible`]): no existence oracle.
pub(crate) fn not_found(noun: Noun) -> ApiError {
    match noun {
        Noun::Record => ApiError::not_found("record_not_found", "no such record"),
        Noun::Objection => ApiError::not_found("objection_not_found", "no such objection"),
        Noun::Repair => ApiError::not_found("repair_not_found", "no such repair application"),
        Noun::ListEntry => ApiError::not_found("list_entry_not_found", "no such list entry"),
        Noun::Check => ApiError::not_found("check_not_found", "no such check"),
    }
}

/// Lifecycle changes that did not happen: something named does not exist.
impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::RecordNotFound => {
                ApiError::not_found("record_not_found", "no such record for this subject")
            }
            Refusal::ObjectionNotFound => not_found(Noun::Objection),
            Refusal::RepairNotFound => not_found(Noun::Repair),
            Refusal::BasisNotFound => ApiError::unprocessable(
                "unknown_basis_record",
                "basis_record_id is not a record of this subject",
            ),
            Refusal::EntryNotFound => not_found(Noun::ListEntry),
            Refusal::CheckNotFound => not_found(Noun::Check),
            Refusal::Denied(d) => d.into(),
        }
    }
}

/// Lifecycle steps the policy refused.
impl From<LifecycleRefusal> for ApiError {
    fn from(r: LifecycleRefusal) -> Self {
        use crate::policy::lifecycle::RecordState as S;
        match r {
            LifecycleRefusal::NotVisible(noun) => not_found(noun),
            LifecycleRefusal::RecordState(s) => {
                let code = match s {
                    S::Expired => "record_expired",
                    S::Withdrawn => "record_withdrawn",
                    S::Superseded => "record_superseded",
                    S::Repaired => "already_repaired",
                    S::Disputed => "objection_open",
                    S::Active => "record_active",
                };
                ApiError::conflict(code, format!("the record is {}", s.as_str()))
                    .with(json!({"state": s}))
            }
            LifecycleRefusal::ObjectionOpen(id) => ApiError::conflict(
                "objection_open",
                "an objection on this record is already open",
            )
            .with(json!({"objection_id": id})),
            LifecycleRefusal::ObjectionClosed(status) => {
                ApiError::conflict("objection_closed", "the objection was already resolved")
                    .with(json!({"status": status}))
            }
            LifecycleRefusal::RepairPending(id) => ApiError::conflict(
                "repair_pending",
                "a repair application for this record is already pending",
            )
            .with(json!({"repair_id": id})),
            LifecycleRefusal::RepairClosed(status) => {
                ApiError::conflict("repair_closed", "the application was already decided")
                    .with(json!({"status": status}))
            }
            LifecycleRefusal::RepairIneligible(RepairRefusal::NotNegative) => {
                ApiError::unprocessable(
                    "not_negative",
                    "only negative (dishonesty) information can be repaired",
                )
            }
            LifecycleRefusal::RepairIneligible(RepairRefusal::TooEarly(d)) => ApiError::conflict(
                "repair_too_early",
                format!(
                    "the minimum disclosure period has not passed; applications open on {}",
                    format_date(d)
                ),
            )
            .with(json!({"opens_on": format_date(d)})),
            LifecycleRefusal::RepairIneligible(RepairRefusal::Expired) => ApiError::conflict(
                "record_expired",
                "the record is past its disclosure period and no longer shared",
            ),
            LifecycleRefusal::BlackListed(ids) => ApiError::conflict(
                "conflict_black_listed",
                "the subject is on a black list and cannot be red-listed (docs/compliance.md, rule 9)",
            )
            .with(json!({"black_entries": ids})),
            LifecycleRefusal::AlreadyListed(id) => ApiError::conflict(
                "already_listed",
                "your department already has this subject on this list",
            )
            .with(json!({"entry_id": id})),
            LifecycleRefusal::AlreadyExited => {
                ApiError::conflict("already_exited", "the entry was already exited")
            }
            LifecycleRefusal::PeriodEndsBeforeStart => ApiError::bad_request(
                "invalid_date",
                "effective_to must be after effective_from",
            )
            .with(json!({"field": "effective_to"})),
            LifecycleRefusal::ExitInFuture => ApiError::bad_request(
                "invalid_exit_date",
                "an exit is recorded when it happens; the date cannot be in the future",
            ),
            LifecycleRefusal::ExitBeforeEffective(d) => ApiError::bad_request(
                "invalid_exit_date",
                "the exit date is before the entry took effect",
            )
            .with(json!({"effective_from": format_date(d)})),
            LifecycleRefusal::FeedbackRecorded => ApiError::conflict(
                "feedback_recorded",
                "feedback for this check was already recorded",
            ),
            LifecycleRefusal::UnknownMeasure(m) => ApiError::unprocessable(
                "unknown_measure",
                format!("'{m}' is not a measure of this check"),
            )
            .with(json!({"measure": m})),
            LifecycleRefusal::MeasureNamedTwice(m) => {
                ApiError::bad_request("invalid_request", format!("measure '{m}' is named twice"))
            }
            LifecycleRefusal::MeasureNotApplicable { measure, status } => ApiError::conflict(
                "measure_not_applicable",
                format!("measure '{measure}' is {status} and must not be applied"),
            )
            .with(json!({"measure": measure, "status": status})),
            LifecycleRefusal::FeedbackIncomplete(missing) => ApiError::bad_request(
                "feedback_incomplete",
                "report every applicable measure as applied or not_applied (with a reason)",
            )
            .with(json!({"missing": missing})),
        }
    }
}

/// Views the policy refused for a query.
impl From<ViewRefusal> for ApiError {
    fn from(r: ViewRefusal) -> Self {
        match r {
            ViewRefusal::Unknown { known } => {
                ApiError::bad_request("unknown_view", "view is not in the catalog")
                    .with(json!({"known": known}))
            }
            ViewRefusal::SubjectMismatch { .. } => {
                ApiError::bad_request("view_subject_mismatch", r.to_string())
            }
            ViewRefusal::PurposeMismatch { .. } => {
                ApiError::bad_request("view_purpose_mismatch", r.to_string())
            }
        }
    }
}

/// Submitted data the policy refused. `record` is the index of the record
/// in a submission batch (`None` for an objection's correction): messages
/// then start with `record {i}: ` and details carry `"record"`.
pub fn submission_refused(e: &SubmissionRefusal, record: Option<usize>) -> ApiError {
    let at = |msg: String| match record {
        Some(i) => format!("record {i}: {msg}"),
        None => msg,
    };
    let details = |mut d: serde_json::Map<String, Value>| {
        if let Some(i) = record {
            d.insert("record".into(), json!(i));
        }
        Value::Object(d)
    };
    let obj = |v: Value| match v {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    match e {
        SubmissionRefusal::UnknownItem(item) => {
            ApiError::unprocessable("unknown_item", at("item is not in the catalog".into()))
                .with(details(obj(json!({"item": item}))))
        }
        SubmissionRefusal::SubjectTypeMismatch { item, describes } => ApiError::unprocessable(
            "subject_type_mismatch",
            at(format!("item '{item}' describes a {}", describes.as_str())),
        )
        .with(details(obj(json!({"item": item})))),
        SubmissionRefusal::NotSubmittable(item) => ApiError::unprocessable(
            "item_not_submittable",
            at(format!(
                "item '{item}' is derived from the red/black/focus lists; use POST /v1/lists/…"
            )),
        )
        .with(details(obj(json!({"item": item})))),
        SubmissionRefusal::Terms { item, error } => terms_refused(record, item, error),
        SubmissionRefusal::NoFields => match record {
            Some(i) => {
                ApiError::bad_request("invalid_request", format!("record {i} has no fields"))
                    .with(json!({"record": i}))
            }
            None => ApiError::bad_request(
                "invalid_request",
                "a correction carries the corrected record's fields",
            ),
        },
        SubmissionRefusal::UnknownField { field, item } => ApiError::unprocessable(
            "unknown_field",
            at(format!("'{field}' is not a field of item '{item}'")),
        )
        .with(details(obj(json!({"field": field})))),
        SubmissionRefusal::InvalidValue { field, expected } => ApiError::bad_request(
            "invalid_value",
            at(format!("field '{field}' must be a {}", expected.describe())),
        )
        .with(details(obj(json!({"field": field, "expected": expected})))),
        SubmissionRefusal::MixedSubjects => ApiError::bad_request(
            "mixed_subjects",
            at(
                "about another subject than record 0: a batch holds the records of one subject, whose audit entry names it"
                    .to_owned(),
            ),
        )
        .with(details(serde_json::Map::new())),
        SubmissionRefusal::ConsentRequired(field) => ApiError::unprocessable(
            "consent_required",
            at(format!(
                "'{field}' may be collected only with the person's written consent"
            )),
        )
        .with(details(obj(json!({"field": field})))),
    }
}

/// Refused lifecycle terms of item `item`, of record `i` of a batch (`None`
/// for an objection's correction).
fn terms_refused(i: Option<usize>, item: &str, e: &TermsError) -> ApiError {
    let (code, msg, field) = match e {
        TermsError::Missing => (
            "lifecycle_terms_required",
            format!(
                "negative item '{item}' needs tier (minor, general, serious) and decision_date"
            ),
            None,
        ),
        TermsError::NotNegative => (
            "lifecycle_terms_not_applicable",
            format!("item '{item}' is not negative: omit tier and decision_date"),
            None,
        ),
        TermsError::UnknownTier => (
            "unknown_tier",
            "tier must be minor, general or serious".to_owned(),
            Some("tier".to_owned()),
        ),
        TermsError::BadDate => (
            "invalid_date",
            "decision_date must be a real YYYY-MM-DD date, year 0001 or later".to_owned(),
            Some("decision_date".to_owned()),
        ),
        TermsError::FutureDate => (
            "future_decision_date",
            "decision_date is in the future".to_owned(),
            Some("decision_date".to_owned()),
        ),
        TermsError::Mismatch(f) => (
            "decision_date_mismatch",
            format!("decision_date differs from the record's own '{f}'"),
            Some(f.clone()),
        ),
    };
    match i {
        Some(i) => ApiError::bad_request(code, format!("record {i}: {msg}"))
            .with(json!({"record": i, "item": item, "field": field})),
        None => ApiError::bad_request(code, msg).with(json!({"item": item, "field": field})),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message_for<T: serde::de::DeserializeOwned + std::fmt::Debug>(body: &str) -> String {
        let e = serde_json::from_str::<T>(body).unwrap_err();
        json_error_at(&e, body.as_bytes()).body()["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Wire {
        kind: Kind,
        count: Option<u32>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Kind {
        LegalPerson,
    }

    #[test]
    fn schema_errors_never_echo_the_clients_value() {
        let id = "110101199003071234";
        let m = message_for::<Wire>(&format!(r#"{{"kind":"{id}"}}"#));
        assert!(!m.contains(id), "{m}");
        assert!(
            m.contains("unknown variant (18 bytes), expected `legal_person`"),
            "{m}"
        );
        let m = message_for::<Wire>(&format!(r#"{{"kind":"legal_person","count":"{id}"}}"#));
        assert!(!m.contains(id), "{m}");
        assert!(
            m.contains("invalid type: string (18 bytes), expected u32"),
            "{m}"
        );
        // A value that imitates the message's own punctuation.
        let tricky = r#"x\", expected y"#;
        let m = message_for::<Wire>(&format!(r#"{{"kind":"legal_person","count":"{tricky}"}}"#));
        assert!(!m.contains("expected y"), "{m}");
        assert!(m.ends_with("expected u32"), "{m}");
        // Field names stay: the client needs them to fix the request.
        let m = message_for::<Wire>(r#"{"kind":"legal_person","colour":1}"#);
        assert!(m.contains("unknown field `colour`"), "{m}");
    }
}

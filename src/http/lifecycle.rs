//! Handlers for the credit-information lifecycle: objections (异议), credit
//! repair (信用修复), red/black/focus lists, 应查必查 checks with feedback,
//! record history, and the lifecycle parts of queries and submissions
//! (disclosure terms, views with a summary).
//!
//! | endpoint | role |
//! |---|---|
//! | `POST /v1/objections` | portal |
//! | `POST /v1/objections/{id}/resolution` | department (the record's provider) |
//! | `GET /v1/objections/overdue` | department (own records), auditor (all) |
//! | `POST /v1/repairs` | portal |
//! | `POST /v1/repairs/{id}/decision` | department (the record's provider) |
//! | `POST /v1/lists/{red,black,focus}` | department |
//! | `POST /v1/lists/entries/{id}/exit` | department (the issuer) |
//! | `POST /v1/checks` | department |
//! | `POST /v1/checks/{id}/feedback` | department (that ran the check) |
//! | `GET /v1/records/{id}/history` | department (the provider), auditor |
//!
//! Every decision (state, sharing, measures, periods) comes from the pure
//! policy; the store persists; these handlers validate input, ask, and fill
//! the audit draft. Like every request, each call is one audit entry.

use std::sync::{Arc, PoisonError};

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use time::Date;

use super::api::type_ok;
use super::dto::{RecordDto, SubjectDto};
use super::error::json_error;
use super::{ApiError, App, AuditDraft, Caller, Reply};
use crate::audit::now_rfc3339;
use crate::ids::SubjectId;
use crate::policy::lifecycle::{
    ListKind, RecordStatus, RecordTerms, RepairRefusal, Sharing, TermsError, ViewDef, format_date,
    parse_date,
};
use crate::policy::measures::{ListFact, MeasureKind, MeasureStatus};
use crate::policy::{ConsentNeed, ItemDef, Organisation, Permit, PurposeDef, Role};
use crate::store::{
    Application, NewListEntry, Refusal, Resolution, SharedRecord, Step, WithheldRecord,
};

/// Source of "today" for lifecycle decisions. The policy never reads a
/// clock; the gateway passes this date in, and tests replace it.
pub type Clock = Arc<dyn Fn() -> Date + Send + Sync>;

/// The system clock's calendar date in China Standard Time (UTC+8, no DST):
/// decision dates and disclosure periods are Chinese calendar days.
pub(super) fn system_clock() -> Clock {
    Arc::new(|| {
        time::OffsetDateTime::now_utc()
            .to_offset(time::macros::offset!(+8))
            .date()
    })
}

impl App {
    /// Today's date for lifecycle decisions.
    pub fn today(&self) -> Date {
        let clock = self
            .clock
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        clock()
    }

    /// Replace the clock (tests pin dates at period boundaries with it).
    pub fn set_clock(&self, clock: Clock) {
        *self.clock.write().unwrap_or_else(PoisonError::into_inner) = clock;
    }
}

/// Longest free-text field (grounds, basis, reasons, notes), in characters.
const MAX_TEXT: usize = 500;
/// Most measures named in one feedback.
const MAX_FEEDBACK_ITEMS: usize = 64;

/// Whether `path` belongs to this module.
pub(super) fn handles(path: &str) -> bool {
    ["/v1/objections", "/v1/repairs", "/v1/lists", "/v1/checks"]
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")))
        || path.starts_with("/v1/records/")
}

/// Route a lifecycle request. Sets the audit action first, then checks the
/// role, then parses path ids and the body.
pub(super) async fn route(
    app: &App,
    caller: &Caller,
    req: Request<Incoming>,
    method: &Method,
    path: &str,
    draft: &mut AuditDraft,
) -> Result<Reply, ApiError> {
    let segs: Vec<&str> = path.trim_start_matches("/v1/").split('/').collect();
    let post = method == Method::POST;
    let get = method == Method::GET;
    match segs.as_slice() {
        ["objections"] if post => {
            draft.action = "objection_file";
            let org = caller.require(&[Role::Portal])?;
            let body = app.body(req).await?;
            file_objection(app, org, &body, draft).await
        }
        ["objections", "overdue"] if get => {
            draft.action = "objection_overdue";
            let org = caller.require(&[Role::Department, Role::Auditor])?;
            overdue(app, org).await
        }
        ["objections", id, "resolution"] if post => {
            draft.action = "objection_resolve";
            let org = caller.require(&[Role::Department])?;
            let id = path_id(id)?;
            let body = app.body(req).await?;
            resolve_objection(app, org, id, &body, draft).await
        }
        ["repairs"] if post => {
            draft.action = "repair_apply";
            let org = caller.require(&[Role::Portal])?;
            let body = app.body(req).await?;
            apply_repair(app, org, &body, draft).await
        }
        ["repairs", id, "decision"] if post => {
            draft.action = "repair_decide";
            let org = caller.require(&[Role::Department])?;
            let id = path_id(id)?;
            let body = app.body(req).await?;
            decide_repair(app, org, id, &body, draft).await
        }
        ["lists", name] if post && ListKind::parse(name).is_some() => {
            draft.action = "list_add";
            let org = caller.require(&[Role::Department])?;
            let list = ListKind::parse(name)
                .ok_or_else(|| ApiError::not_found("not_found", "no such list"))?;
            let body = app.body(req).await?;
            add_list_entry(app, org, list, &body, draft).await
        }
        ["lists", "entries", id, "exit"] if post => {
            draft.action = "list_exit";
            let org = caller.require(&[Role::Department])?;
            let id = path_id(id)?;
            let body = app.body(req).await?;
            exit_list_entry(app, org, id, &body, draft).await
        }
        ["checks"] if post => {
            draft.action = "check";
            let org = caller.require(&[Role::Department])?;
            let body = app.body(req).await?;
            run_check(app, org, &body, draft).await
        }
        ["checks", id, "feedback"] if post => {
            draft.action = "check_feedback";
            let org = caller.require(&[Role::Department])?;
            let id = path_id(id)?;
            let body = app.body(req).await?;
            check_feedback(app, org, id, &body, draft).await
        }
        ["records", id, "history"] if get => {
            draft.action = "record_history";
            let org = caller.require(&[Role::Department, Role::Auditor])?;
            let id = path_id(id)?;
            history(app, org, id, draft).await
        }
        ["objections"]
        | ["objections", "overdue"]
        | ["objections", _, "resolution"]
        | ["repairs"]
        | ["repairs", _, "decision"]
        | ["lists", "red" | "black" | "focus"]
        | ["lists", "entries", _, "exit"]
        | ["checks"]
        | ["checks", _, "feedback"]
        | ["records", _, "history"] => {
            draft.action = "method_not_allowed";
            caller.require(&Role::ALL)?;
            Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{method} is not allowed here"),
            ))
        }
        _ => {
            caller.require(&Role::ALL)?;
            Err(ApiError::not_found("not_found", "no such endpoint"))
        }
    }
}

// ------------------------------------------------------------ input helpers

/// Parse a JSON body: malformed → 400, a prohibited key anywhere → 422
/// (logged as its category), schema mismatch → 400.
fn parse_body<T: DeserializeOwned>(
    app: &App,
    body: &Bytes,
    draft: &mut AuditDraft,
) -> Result<T, ApiError> {
    let raw: Value = serde_json::from_slice(body).map_err(|e| json_error(&e))?;
    if let Some((path, cat)) = app.policy.prohibited().scan_json(&raw, &mut String::new()) {
        draft.field(
            format!("prohibited:{}", cat.id),
            "refused",
            "prohibited",
            None,
        );
        let path: String = path.chars().take(64).collect();
        return Err(ApiError::unprocessable(
            "prohibited_field",
            format!(
                "'{path}' falls in the prohibited category {} ({}); nothing was stored",
                cat.label_en, cat.label_zh
            ),
        )
        .with(json!({"field": path, "category": cat.id})));
    }
    serde_json::from_value(raw).map_err(|e| json_error(&e))
}

/// A numeric id from the path: 1–18 ASCII digits, positive.
fn path_id(s: &str) -> Result<i64, ApiError> {
    let bad = || {
        ApiError::bad_request(
            "invalid_id",
            "the id in the path must be a positive integer",
        )
    };
    if s.is_empty() || s.len() > 18 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    s.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(bad)
}

/// A positive id from a body field.
fn body_id(what: &'static str, n: i64) -> Result<i64, ApiError> {
    if n > 0 {
        Ok(n)
    } else {
        Err(
            ApiError::bad_request("invalid_id", format!("{what} must be a positive integer"))
                .with(json!({"field": what})),
        )
    }
}

/// Free text: trimmed, 1–[`MAX_TEXT`] characters, no control characters
/// other than newline and tab.
fn text<'a>(what: &'static str, s: &'a str) -> Result<&'a str, ApiError> {
    let t = s.trim();
    let ok = !t.is_empty()
        && t.chars().count() <= MAX_TEXT
        && !t.chars().any(|c| c.is_control() && c != '\n' && c != '\t');
    if ok {
        Ok(t)
    } else {
        Err(ApiError::bad_request(
            "invalid_text",
            format!("{what} must be 1 to {MAX_TEXT} characters of text"),
        )
        .with(json!({"field": what})))
    }
}

fn opt_text<'a>(what: &'static str, s: Option<&'a str>) -> Result<Option<&'a str>, ApiError> {
    s.map(|s| text(what, s)).transpose()
}

/// A `YYYY-MM-DD` date from a body field.
fn date(what: &'static str, s: &str) -> Result<Date, ApiError> {
    parse_date(s).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_date",
            format!("{what} must be a real YYYY-MM-DD date"),
        )
        .with(json!({"field": what}))
    })
}

fn subject(dto: &SubjectDto, draft: &mut AuditDraft) -> Result<SubjectId, ApiError> {
    let s = SubjectId::parse(&dto.kind, &dto.id)?;
    draft.subject = Some(s.clone());
    Ok(s)
}

/// A stored subject (validated when it was stored).
fn stored_subject(kind: &str, id: &str) -> Option<SubjectId> {
    SubjectId::parse(kind, id).ok()
}

fn record_field(id: i64) -> String {
    format!("record:{id}")
}

/// The one mapping of store refusals to HTTP errors.
fn refused(r: Refusal) -> ApiError {
    match r {
        Refusal::RecordNotFound => {
            ApiError::not_found("record_not_found", "no such record for this subject")
        }
        Refusal::NotProvider => ApiError::forbidden(
            "not_provider",
            "only the department that provided the record may do this",
        ),
        Refusal::RecordState(s) => {
            use crate::policy::lifecycle::RecordState as S;
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
        Refusal::ObjectionOpen(id) => ApiError::conflict(
            "objection_open",
            "an objection on this record is already open",
        )
        .with(json!({"objection_id": id})),
        Refusal::ObjectionNotFound => {
            ApiError::not_found("objection_not_found", "no such objection")
        }
        Refusal::ObjectionClosed(status) => {
            ApiError::conflict("objection_closed", "the objection was already resolved")
                .with(json!({"status": status}))
        }
        Refusal::RepairPending(id) => ApiError::conflict(
            "repair_pending",
            "a repair application for this record is already pending",
        )
        .with(json!({"repair_id": id})),
        Refusal::RepairNotFound => {
            ApiError::not_found("repair_not_found", "no such repair application")
        }
        Refusal::RepairClosed(status) => {
            ApiError::conflict("repair_closed", "the application was already decided")
                .with(json!({"status": status}))
        }
        Refusal::RepairIneligible(RepairRefusal::NotNegative) => ApiError::unprocessable(
            "not_negative",
            "only negative (dishonesty) information can be repaired",
        ),
        Refusal::RepairIneligible(RepairRefusal::TooEarly(d)) => ApiError::conflict(
            "repair_too_early",
            format!(
                "the minimum disclosure period has not passed; applications open on {}",
                format_date(d)
            ),
        )
        .with(json!({"opens_on": format_date(d)})),
        Refusal::RepairIneligible(RepairRefusal::Expired) => ApiError::conflict(
            "record_expired",
            "the record is past its disclosure period and no longer shared",
        ),
        Refusal::BlackListed(ids) => ApiError::conflict(
            "conflict_black_listed",
            "the subject is on a black list and cannot be red-listed (SPEC §2.9)",
        )
        .with(json!({"black_entries": ids})),
        Refusal::AlreadyListed(id) => ApiError::conflict(
            "already_listed",
            "your department already has this subject on this list",
        )
        .with(json!({"entry_id": id})),
        Refusal::BasisNotFound => ApiError::unprocessable(
            "unknown_basis_record",
            "basis_record_id is not a record of this subject",
        ),
        Refusal::EntryNotFound => ApiError::not_found("list_entry_not_found", "no such list entry"),
        Refusal::NotIssuer => ApiError::forbidden(
            "not_issuer",
            "only the issuing department may exit a list entry",
        ),
        Refusal::AlreadyExited => {
            ApiError::conflict("already_exited", "the entry was already exited")
        }
        Refusal::ExitBeforeEffective(d) => ApiError::bad_request(
            "invalid_exit_date",
            "the exit date is before the entry took effect",
        )
        .with(json!({"effective_from": format_date(d)})),
        Refusal::CheckNotFound => ApiError::not_found("check_not_found", "no such check"),
        Refusal::NotCheckOwner => ApiError::forbidden(
            "not_check_owner",
            "only the department that ran the check reports its feedback",
        ),
        Refusal::FeedbackRecorded => ApiError::conflict(
            "feedback_recorded",
            "feedback for this check was already recorded",
        ),
    }
}

// ------------------------------------------------ queries and submissions

/// Resolve `view` (if named) into `fields`, checking it fits the subject
/// and purpose. Naming both a view and fields is an error.
pub(super) fn expand_view<'a>(
    app: &'a App,
    view: Option<&str>,
    fields: &mut Vec<String>,
    subject: &SubjectId,
    purpose: &PurposeDef,
) -> Result<Option<&'a ViewDef>, ApiError> {
    let Some(name) = view else {
        return Ok(None);
    };
    let Some(v) = app.policy.view(name) else {
        return Err(ApiError::bad_request("unknown_view", "view is not in the catalog")
            .with(json!({"known": app.policy.views().iter().map(|v| v.id.as_str()).collect::<Vec<_>>()})));
    };
    if v.subject != subject.kind() {
        return Err(ApiError::bad_request(
            "view_subject_mismatch",
            format!("view '{}' describes a {}", v.id, v.subject.as_str()),
        ));
    }
    if v.purpose != purpose.name.as_str() {
        return Err(ApiError::bad_request(
            "view_purpose_mismatch",
            format!("view '{}' is for purpose '{}'", v.id, v.purpose),
        ));
    }
    if !fields.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_request",
            "name either fields or a view, not both",
        ));
    }
    fields.clone_from(&v.fields);
    Ok(Some(v))
}

/// Log the records the lifecycle rules withheld from a query (never in the
/// response: a caller must not learn that an expired record exists).
pub(super) fn audit_withheld(draft: &mut AuditDraft, withheld: &[WithheldRecord]) {
    for w in withheld {
        draft.field(
            record_field(w.record_id),
            "withheld",
            w.reason.as_str(),
            Some(&w.item),
        );
    }
}

/// Add `view` and the view's `summary` (from released data only).
pub(super) fn add_summary(
    app: &App,
    view: &ViewDef,
    permit: &Permit,
    records: &[SharedRecord],
    reply: &mut Value,
) {
    let fields = app.policy.fields();
    let released: Vec<&str> = permit
        .fields()
        .iter()
        .map(|(i, _)| fields[*i].name.as_str())
        .collect();
    let rows: Vec<(&str, RecordStatus, &Map<String, Value>)> = records
        .iter()
        .map(|r| (r.item.as_str(), r.status, &r.fields))
        .collect();
    let mut summary = view.summarise(&app.policy, &released, &rows);
    summary.insert("as_of".into(), json!(format_date(app.today())));
    reply["view"] = json!(view.id);
    reply["summary"] = Value::Object(summary);
}

/// Lifecycle checks of one submitted record: list-derived items are never
/// submitted; negative items need a valid tier and decision date.
pub(super) fn submission_terms(
    app: &App,
    i: usize,
    item: &ItemDef,
    r: &RecordDto,
) -> Result<Option<RecordTerms>, ApiError> {
    if app.policy.list_item_fields(item.id.as_str()).is_some() {
        return Err(ApiError::unprocessable(
            "item_not_submittable",
            format!(
                "record {i}: item '{}' is derived from the red/black/focus lists; use POST /v1/lists/…",
                item.id
            ),
        )
        .with(json!({"record": i, "item": item.id})));
    }
    app.policy
        .check_terms(
            item.id.as_str(),
            r.tier.as_deref(),
            r.decision_date.as_deref(),
            &r.fields,
            app.today(),
        )
        .map_err(|e| terms_error(i, item, e))
}

fn terms_error(i: usize, item: &ItemDef, e: TermsError) -> ApiError {
    let (code, msg, field) = match e {
        TermsError::Missing => (
            "lifecycle_terms_required",
            format!(
                "negative item '{}' needs tier (minor, general, serious) and decision_date",
                item.id
            ),
            None,
        ),
        TermsError::NotNegative => (
            "lifecycle_terms_not_applicable",
            format!(
                "item '{}' is not negative: omit tier and decision_date",
                item.id
            ),
            None,
        ),
        TermsError::UnknownTier => (
            "unknown_tier",
            "tier must be minor, general or serious".to_owned(),
            Some("tier".to_owned()),
        ),
        TermsError::BadDate => (
            "invalid_date",
            "decision_date must be a real YYYY-MM-DD date".to_owned(),
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
            Some(f),
        ),
    };
    ApiError::bad_request(code, format!("record {i}: {msg}"))
        .with(json!({"record": i, "item": item.id, "field": field}))
}

// -------------------------------------------------------------- objections

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApplicationRequest {
    subject: SubjectDto,
    record_id: i64,
    grounds: String,
}

async fn file_objection(
    app: &App,
    org: &Organisation,
    body: &Bytes,
    draft: &mut AuditDraft,
) -> Result<Reply, ApiError> {
    let req: ApplicationRequest = parse_body(app, body, draft)?;
    let subject = subject(&req.subject, draft)?;
    let record_id = body_id("record_id", req.record_id)?;
    let grounds = text("grounds", &req.grounds)?;
    let filed = app
        .store
        .file_objection(
            Application {
                subject: &subject,
                record_id,
                by: org.code.as_str(),
                grounds,
                request_id: &draft.request_id,
            },
            &app.policy,
            app.today(),
        )
        .await?
        .map_err(refused)?;
    let (id, o) = (filed.objection_id, filed);
    draft.field(
        record_field(record_id),
        "disputed",
        "objection_filed",
        Some(&o.item),
    );
    Ok(Reply {
        status: StatusCode::CREATED,
        body: json!({
            "objection_id": id, "record_id": record_id, "item": o.item, "status": "open",
            "filed_on": o.filed_on, "due_on": o.due_on,
        }),
        raw: None,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResolutionRequest {
    outcome: String,
    #[serde(default)]
    note: Option<String>,
    #[serde(default)]
    fields: Option<Map<String, Value>>,
    #[serde(default)]
    tier: Option<String>,
    #[serde(default)]
    decision_date: Option<String>,
}

async fn resolve_objection(
    app: &App,
    org: &Organisation,
    id: i64,
    body: &Bytes,
    draft: &mut AuditDraft,
) -> Result<Reply, ApiError> {
    let req: ResolutionRequest = parse_body(app, body, draft)?;
    let note = opt_text("note", req.note.as_deref())?;
    let t = app
        .store
        .objection_target(id)
        .await?
        .ok_or_else(|| refused(Refusal::ObjectionNotFound))?;
    draft.subject = stored_subject(&t.subject_type, &t.subject_id);
    if t.provider != org.code.as_str() {
        return Err(refused(Refusal::NotProvider));
    }
    if t.status != "open" {
        return Err(refused(Refusal::ObjectionClosed(t.status)));
    }
    let has_correction = req.fields.is_some() || req.tier.is_some() || req.decision_date.is_some();
    let resolution = match req.outcome.as_str() {
        "corrected" => {
            let data = req.fields.unwrap_or_default();
            let terms = correction(app, &t.item, &data, req.tier, req.decision_date, draft)?;
            Resolution::Corrected { data, terms }
        }
        "upheld" | "withdrawn" if has_correction => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "fields, tier and decision_date belong to a correction only",
            ));
        }
        "upheld" => Resolution::Upheld,
        "withdrawn" => Resolution::Withdrawn,
        _ => {
            return Err(ApiError::bad_request(
                "unknown_outcome",
                "outcome must be corrected, upheld or withdrawn",
            ));
        }
    };
    let now = now_rfc3339();
    let new_id = app
        .store
        .resolve_objection(
            Step {
                id,
                org: org.code.as_str(),
                note,
                request_id: &draft.request_id,
                now: &now,
                today: app.today(),
            },
            &resolution,
        )
        .await?
        .map_err(refused)?;
    let reason = match resolution {
        Resolution::Corrected { .. } => "superseded",
        Resolution::Upheld => "objection_upheld",
        Resolution::Withdrawn => "withdrawn",
    };
    draft.field(
        record_field(t.record_id),
        resolution.as_str(),
        reason,
        Some(&t.item),
    );
    if let Some(n) = new_id {
        draft.field(record_field(n), "accepted", "correction", Some(&t.item));
        draft.records = 1;
    }
    let mut body =
        json!({"objection_id": id, "record_id": t.record_id, "status": resolution.as_str()});
    if let Some(n) = new_id {
        body["new_record_id"] = json!(n);
    }
    Ok(Reply::ok(body))
}

/// Validate a corrected version like a submission of the same item:
/// catalog fields of that item only, declared types, no personal-consent
/// data, and lifecycle terms (optional: the old ones are kept if absent).
fn correction(
    app: &App,
    item: &str,
    data: &Map<String, Value>,
    tier: Option<String>,
    decision_date: Option<String>,
    draft: &mut AuditDraft,
) -> Result<Option<RecordTerms>, ApiError> {
    let policy = &app.policy;
    if data.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_request",
            "a correction carries the corrected record's fields",
        ));
    }
    for (name, value) in data {
        let def = policy
            .field(name)
            .filter(|(_, f)| policy.items()[f.item].id.as_str() == item);
        let Some((_, def)) = def else {
            let shown: String = name.chars().take(64).collect();
            draft.field(shown.clone(), "refused", "not_in_catalog", None);
            return Err(ApiError::unprocessable(
                "unknown_field",
                format!("'{shown}' is not a field of item '{item}'"),
            )
            .with(json!({"field": shown})));
        };
        if !type_ok(def.ty, value) {
            return Err(ApiError::bad_request(
                "invalid_value",
                format!("field '{name}' must be a {:?}", def.ty).to_lowercase(),
            )
            .with(json!({"field": name, "expected": def.ty})));
        }
        if policy.class_of(def).consent == ConsentNeed::Personal {
            draft.field(name.clone(), "refused", "consent_required", None);
            return Err(ApiError::unprocessable(
                "consent_required",
                format!("'{name}' may be collected only with the person's written consent"),
            )
            .with(json!({"field": name})));
        }
    }
    if tier.is_none() && decision_date.is_none() {
        return Ok(None);
    }
    let Some((_, def)) = policy.item(item) else {
        return Ok(None);
    };
    policy
        .check_terms(
            item,
            tier.as_deref(),
            decision_date.as_deref(),
            data,
            app.today(),
        )
        .map_err(|e| terms_error(0, def, e))
}

async fn overdue(app: &App, org: &Organisation) -> Result<Reply, ApiError> {
    let today = app.today();
    // Auditors oversee every provider and see subjects only as keyed hashes
    // (as in the audit log); a department sees its own records' objections.
    let auditor = org.has_role(Role::Auditor);
    let provider = (!auditor).then(|| org.code.as_str());
    let rows = app.store.overdue_objections(provider, today).await?;
    let list: Vec<Value> = rows
        .into_iter()
        .map(|o| {
            let days = parse_date(&o.due_on).map(|d| (today - d).whole_days());
            let subject = match (auditor, stored_subject(&o.subject_type, &o.subject_id)) {
                (true, Some(s)) => json!({"type": o.subject_type, "hash": app.hasher.hash(&s)}),
                (true, None) => json!({"type": o.subject_type}),
                (false, _) => json!({"type": o.subject_type, "id": o.subject_id}),
            };
            json!({
                "objection_id": o.objection_id, "record_id": o.record_id, "item": o.item,
                "provider": o.provider, "subject": subject, "filed_on": o.filed_on,
                "due_on": o.due_on, "days_overdue": days,
            })
        })
        .collect();
    Ok(Reply::ok(
        json!({"as_of": format_date(today), "overdue": list}),
    ))
}

// ----------------------------------------------------------------- repairs

async fn apply_repair(
    app: &App,
    org: &Organisation,
    body: &Bytes,
    draft: &mut AuditDraft,
) -> Result<Reply, ApiError> {
    let req: ApplicationRequest = parse_body(app, body, draft)?;
    let subject = subject(&req.subject, draft)?;
    let record_id = body_id("record_id", req.record_id)?;
    let grounds = text("grounds", &req.grounds)?;
    let (id, terms) = app
        .store
        .apply_repair(
            Application {
                subject: &subject,
                record_id,
                by: org.code.as_str(),
                grounds,
                request_id: &draft.request_id,
            },
            &app.policy,
            app.today(),
        )
        .await?
        .map_err(refused)?;
    draft.field(record_field(record_id), "applied", "repair_applied", None);
    Ok(Reply {
        status: StatusCode::CREATED,
        body: json!({"repair_id": id, "record_id": record_id, "status": "pending", "terms": terms}),
        raw: None,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionRequest {
    decision: String,
    #[serde(default)]
    note: Option<String>,
}

async fn decide_repair(
    app: &App,
    org: &Organisation,
    id: i64,
    body: &Bytes,
    draft: &mut AuditDraft,
) -> Result<Reply, ApiError> {
    let req: DecisionRequest = parse_body(app, body, draft)?;
    let approve = match req.decision.as_str() {
        "approve" => true,
        "reject" => false,
        _ => {
            return Err(ApiError::bad_request(
                "unknown_decision",
                "decision must be approve or reject",
            ));
        }
    };
    let note = opt_text("note", req.note.as_deref())?;
    let today = app.today();
    let now = now_rfc3339();
    let t = app
        .store
        .decide_repair(
            Step {
                id,
                org: org.code.as_str(),
                note,
                request_id: &draft.request_id,
                now: &now,
                today,
            },
            approve,
        )
        .await?
        .map_err(refused)?;
    draft.subject = stored_subject(&t.subject_type, &t.subject_id);
    let (status, reason) = if approve {
        ("approved", "repaired")
    } else {
        ("rejected", "repair_rejected")
    };
    draft.field(record_field(t.record_id), status, reason, Some(&t.item));
    let mut body = json!({"repair_id": id, "record_id": t.record_id, "status": status});
    if approve {
        body["repaired_on"] = json!(format_date(today));
    }
    Ok(Reply::ok(body))
}

// ------------------------------------------------------------------- lists

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListRequest {
    subject: SubjectDto,
    basis: String,
    #[serde(default)]
    basis_record_id: Option<i64>,
    #[serde(default)]
    effective_from: Option<String>,
    #[serde(default)]
    effective_to: Option<String>,
}

async fn add_list_entry(
    app: &App,
    org: &Organisation,
    list: ListKind,
    body: &Bytes,
    draft: &mut AuditDraft,
) -> Result<Reply, ApiError> {
    let req: ListRequest = parse_body(app, body, draft)?;
    let subject = subject(&req.subject, draft)?;
    let basis = text("basis", &req.basis)?;
    let basis_record_id = req
        .basis_record_id
        .map(|n| body_id("basis_record_id", n))
        .transpose()?;
    let today = app.today();
    let from = match &req.effective_from {
        Some(s) => date("effective_from", s)?,
        None => today,
    };
    let to = req
        .effective_to
        .as_deref()
        .map(|s| date("effective_to", s))
        .transpose()?;
    if to.is_some_and(|t| t <= from) {
        return Err(ApiError::bad_request(
            "invalid_date",
            "effective_to must be after effective_from",
        )
        .with(json!({"field": "effective_to"})));
    }
    let now = now_rfc3339();
    let added = app
        .store
        .add_list_entry(
            &NewListEntry {
                list,
                subject: &subject,
                issuer: org.code.as_str(),
                basis,
                basis_record_id,
                effective_from: from,
                effective_to: to,
                request_id: &draft.request_id,
                now: &now,
            },
            today,
        )
        .await?
        .map_err(refused)?;
    draft.field(
        format!("list_entry:{}", added.entry_id),
        "listed",
        "list_entry_added",
        Some(list.as_str()),
    );
    for r in &added.removed_red {
        draft.field(
            format!("list_entry:{r}"),
            "exited",
            "black_listed",
            Some("red"),
        );
    }
    Ok(Reply {
        status: StatusCode::CREATED,
        body: json!({
            "entry_id": added.entry_id, "list": list, "effective_from": format_date(from),
            "effective_to": to.map(format_date), "removed_red_entries": added.removed_red,
        }),
        raw: None,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExitRequest {
    reason: String,
    #[serde(default)]
    exit_date: Option<String>,
}

async fn exit_list_entry(
    app: &App,
    org: &Organisation,
    id: i64,
    body: &Bytes,
    draft: &mut AuditDraft,
) -> Result<Reply, ApiError> {
    let req: ExitRequest = parse_body(app, body, draft)?;
    let reason = text("reason", &req.reason)?;
    let today = app.today();
    let on = match &req.exit_date {
        Some(s) => date("exit_date", s)?,
        None => today,
    };
    if on > today {
        return Err(ApiError::bad_request(
            "invalid_exit_date",
            "an exit is recorded when it happens; the date cannot be in the future",
        ));
    }
    let (list, st, sid) = app
        .store
        .exit_list_entry(id, org.code.as_str(), reason, on, &draft.request_id)
        .await?
        .map_err(refused)?;
    draft.subject = stored_subject(&st, &sid);
    draft.field(
        format!("list_entry:{id}"),
        "exited",
        "list_exit",
        Some(list.as_str()),
    );
    Ok(Reply::ok(
        json!({"entry_id": id, "list": list, "exited_on": format_date(on), "exit_reason": reason}),
    ))
}

// ------------------------------------------------------------------ checks

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckRequest {
    subject: SubjectDto,
    matter: String,
}

async fn run_check(
    app: &App,
    org: &Organisation,
    body: &Bytes,
    draft: &mut AuditDraft,
) -> Result<Reply, ApiError> {
    let req: CheckRequest = parse_body(app, body, draft)?;
    let subject = subject(&req.subject, draft)?;
    draft.purpose = Some("administrative_review".into());
    let policy = &app.policy;
    let Some(matter) = policy.matter(&req.matter) else {
        return Err(
            ApiError::bad_request("unknown_matter", "matter is not in the measures list")
                .with(json!({"known": policy.matters().iter().map(|m| m.id.as_str()).collect::<Vec<_>>()})),
        );
    };
    let today = app.today();
    let inputs = app.store.check_inputs(&subject, policy, today).await?;
    let disputed = inputs
        .negative
        .iter()
        .any(|r| r.state == crate::policy::lifecycle::RecordState::Disputed);
    let facts: Vec<ListFact> = inputs
        .entries
        .iter()
        .map(|e| ListFact {
            entry_id: e.entry_id,
            list: e.list,
            basis: e.basis_state,
        })
        .collect();
    let outcomes = policy.decide_check(&matter.id, &facts, disputed);
    let measures: Vec<Value> = outcomes
        .iter()
        .map(|o| {
            json!({
                "id": o.measure.id, "list": o.measure.list, "kind": o.measure.kind,
                "status": o.status, "reason": o.reason.map(|r| r.as_str()),
                "text_zh": o.measure.text_zh, "text_en": o.measure.text_en,
                "basis": o.measure.basis, "entries": o.entries,
            })
        })
        .collect();
    let punishment_suspended = outcomes
        .iter()
        .any(|o| o.measure.kind == MeasureKind::Punishment && o.status == MeasureStatus::Suspended);
    // Negative records as this department may see them (a repaired one only
    // if the catalog lets departments see repaired records).
    let records: Vec<Value> = inputs
        .negative
        .iter()
        .filter_map(|r| match policy.sharing(org, &r.item, r.state) {
            Sharing::Shared(status) => Some(json!({
                "record_id": r.record_id, "item": r.item, "provided_by": r.provided_by,
                "status": status, "terms": r.terms,
            })),
            Sharing::Withheld(_) => None,
        })
        .collect();
    let lists: Map<String, Value> = ListKind::ALL
        .iter()
        .map(|k| {
            let entries: Vec<&crate::store::ListEntryView> =
                inputs.entries.iter().filter(|e| e.list == *k).collect();
            (k.as_str().to_owned(), json!(entries))
        })
        .collect();
    let stored = json!({
        "matter": matter.id,
        "measures": outcomes.iter().map(|o| json!({"id": o.measure.id, "status": o.status})).collect::<Vec<_>>(),
        "punishment_suspended": punishment_suspended,
    });
    let check_id = app
        .store
        .insert_check(
            org.code.as_str(),
            &subject,
            &matter.id,
            today,
            &stored,
            &draft.request_id,
        )
        .await?;
    for o in &outcomes {
        let status = match o.status {
            MeasureStatus::Applies => "applies",
            MeasureStatus::Suspended => "suspended",
            MeasureStatus::Lapsed => "lapsed",
        };
        draft.field(
            format!("measure:{}", o.measure.id),
            status,
            o.reason.map(|r| r.as_str()).unwrap_or("listed"),
            Some(o.measure.list.as_str()),
        );
    }
    Ok(Reply::ok(json!({
        "check_id": check_id,
        "subject": {"type": subject.kind(), "id": subject.id()},
        "matter": {"id": matter.id, "label_zh": matter.label_zh, "label_en": matter.label_en},
        "checked_on": format_date(today),
        "lists": lists,
        "measures": measures,
        "punishment_suspended": punishment_suspended,
        "records": records,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedbackRequest {
    #[serde(default)]
    applied: Vec<String>,
    #[serde(default)]
    not_applied: Vec<NotApplied>,
    #[serde(default)]
    note: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NotApplied {
    measure: String,
    reason: String,
}

async fn check_feedback(
    app: &App,
    org: &Organisation,
    id: i64,
    body: &Bytes,
    draft: &mut AuditDraft,
) -> Result<Reply, ApiError> {
    let req: FeedbackRequest = parse_body(app, body, draft)?;
    let note = opt_text("note", req.note.as_deref())?;
    if req.applied.len() + req.not_applied.len() > MAX_FEEDBACK_ITEMS {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("feedback names at most {MAX_FEEDBACK_ITEMS} measures"),
        ));
    }
    let check = app
        .store
        .check(id)
        .await?
        .ok_or_else(|| refused(Refusal::CheckNotFound))?;
    if check.org != org.code.as_str() {
        return Err(refused(Refusal::NotCheckOwner));
    }
    if check.feedback.is_some() {
        return Err(refused(Refusal::FeedbackRecorded));
    }
    let status_of = |m: &str| {
        check.result["measures"]
            .as_array()
            .and_then(|ms| ms.iter().find(|x| x["id"] == m))
            .and_then(|x| x["status"].as_str().map(str::to_owned))
    };
    let mut named: Vec<&str> = Vec::new();
    let mut not_applied = Vec::new();
    for m in req
        .applied
        .iter()
        .map(String::as_str)
        .chain(req.not_applied.iter().map(|n| n.measure.as_str()))
    {
        let shown: String = m.chars().take(64).collect();
        let Some(status) = status_of(m) else {
            return Err(ApiError::unprocessable(
                "unknown_measure",
                format!("'{shown}' is not a measure of this check"),
            )
            .with(json!({"measure": shown})));
        };
        if named.contains(&m) {
            return Err(ApiError::bad_request(
                "invalid_request",
                format!("measure '{shown}' is named twice"),
            ));
        }
        if req.applied.iter().any(|a| a == m) && status != "applies" {
            return Err(ApiError::conflict(
                "measure_not_applicable",
                format!("measure '{shown}' is {status} and must not be applied"),
            )
            .with(json!({"measure": shown, "status": status})));
        }
        named.push(m);
    }
    for n in &req.not_applied {
        not_applied.push(json!({"measure": n.measure, "reason": text("reason", &n.reason)?}));
    }
    let missing: Vec<String> = check.result["measures"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|x| x["status"] == "applies")
        .filter_map(|x| x["id"].as_str())
        .filter(|id| !named.contains(id))
        .map(str::to_owned)
        .collect();
    if !missing.is_empty() {
        return Err(ApiError::bad_request(
            "feedback_incomplete",
            "report every applicable measure as applied or not_applied (with a reason)",
        )
        .with(json!({"missing": missing})));
    }
    let feedback = json!({"applied": req.applied, "not_applied": not_applied, "note": note});
    let now = now_rfc3339();
    app.store
        .check_feedback(id, org.code.as_str(), &feedback, &draft.request_id, &now)
        .await?
        .map_err(refused)?;
    for m in &req.applied {
        draft.field(format!("measure:{m}"), "applied", "feedback", None);
    }
    for n in &req.not_applied {
        draft.field(
            format!("measure:{}", n.measure),
            "not_applied",
            "feedback",
            None,
        );
    }
    Ok(Reply::ok(
        json!({"check_id": id, "feedback_recorded": true}),
    ))
}

// ----------------------------------------------------------------- history

async fn history(
    app: &App,
    org: &Organisation,
    id: i64,
    draft: &mut AuditDraft,
) -> Result<Reply, ApiError> {
    let h = app
        .store
        .record_history(id, &app.policy, app.today())
        .await?
        .ok_or_else(|| ApiError::not_found("record_not_found", "no such record"))?;
    let subject = stored_subject(&h.subject_type, &h.subject_id);
    draft.subject = subject.clone();
    let auditor = org.has_role(Role::Auditor);
    if !auditor && h.provided_by != org.code.as_str() {
        return Err(refused(Refusal::NotProvider));
    }
    draft.field(record_field(id), "history", h.state.as_str(), Some(&h.item));
    let mut body = serde_json::to_value(&h).map_err(|_| ApiError::internal())?;
    if auditor && let Some(obj) = body.as_object_mut() {
        // Auditors never see clear subject ids: the keyed hash, as in the log.
        obj.remove("subject_id");
        obj.insert(
            "subject_hash".into(),
            json!(subject.map(|s| app.hasher.hash(&s))),
        );
    }
    Ok(Reply::ok(body))
}

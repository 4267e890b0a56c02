//! `POST /v1/objections`, `POST /v1/objections/{id}/resolution`,
//! `GET /v1/objections/overdue`.

use bytes::Bytes;
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::input::{body_id, opt_text, parse_body, record_field, stored_subject, subject, text};
use crate::audit::items::ItemKind;
use crate::audit::now_rfc3339;
use crate::http::dto::{MAX_FIELD_NAME, SubjectDto, audit_field_name, field_name_ok};
use crate::http::error::submission_refused;
use crate::http::{ApiError, App, AuditDraft, Reply};
use crate::ids::SubjectId;
use crate::policy::Organisation;
use crate::policy::lifecycle::{RecordTerms, SubjectView, format_date, parse_date};
use crate::policy::submission::SubmissionRefusal;
use crate::store::Refusal;
use crate::store::{Application, Resolution, Step};

/// Body of an objection or a repair application.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApplicationRequest {
    subject: SubjectDto,
    record_id: i64,
    grounds: String,
}

/// Body of a status read: the subject the portal acts for.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusRequest {
    subject: SubjectDto,
}

/// The subject of a status read (to the audit draft too).
pub(super) fn status_subject(
    app: &App,
    body: &Bytes,
    draft: &mut AuditDraft,
) -> Result<SubjectId, ApiError> {
    let req: StatusRequest = parse_body(app, body, draft)?;
    subject(app, &req.subject, draft)
}

/// `POST /v1/objections/{id}/status`: the objection and its answer, for
/// the subject it is about; 404 `objection_not_found` otherwise, whether
/// or not the id exists.
pub(in crate::http) async fn objection_status(
    app: &App,
    org: &Organisation,
    id: i64,
    body: &Bytes,
    draft: &mut AuditDraft,
) -> Result<Reply, ApiError> {
    let asked = status_subject(app, body, draft)?;
    let o = app
        .store
        .objection_status(id, &asked, org, &app.policy, app.today())
        .await?
        .map_err(ApiError::from)?;
    status_reply(&o, &asked, (o.record_id, &o.status, &o.item), draft)
}

/// The answer to a status read (an objection or a repair application, as
/// stored, for the subject asked about), audited as the record's status.
pub(super) fn status_reply<T: serde::Serialize>(
    case: &T,
    asked: &SubjectId,
    (record_id, status, item): (i64, &str, &str),
    draft: &mut AuditDraft,
) -> Result<Reply, ApiError> {
    draft.field_on(record_field(record_id), "status", status.to_owned(), item);
    let mut body = serde_json::to_value(case).map_err(|_| ApiError::internal())?;
    body["subject"] = json!({"type": asked.kind().as_str(), "id": asked.id()});
    Ok(Reply::ok(body))
}

/// A validated objection or repair application from the portal.
pub(super) struct Filing {
    subject: SubjectId,
    /// The record it concerns.
    pub(super) record_id: i64,
    grounds: String,
}

impl Filing {
    /// Parse and validate the body (the subject goes to the audit draft).
    pub(super) fn parse(app: &App, body: &Bytes, draft: &mut AuditDraft) -> Result<Self, ApiError> {
        let req: ApplicationRequest = parse_body(app, body, draft)?;
        let subject = subject(app, &req.subject, draft)?;
        let record_id = body_id("record_id", req.record_id)?;
        let grounds = text("grounds", &req.grounds)?.to_owned();
        Ok(Filing {
            subject,
            record_id,
            grounds,
        })
    }

    /// The store's view of it, filed by `org` in request `request_id`.
    pub(super) fn application<'a>(
        &'a self,
        org: &'a Organisation,
        request_id: &'a str,
    ) -> Application<'a> {
        Application {
            subject: &self.subject,
            record_id: self.record_id,
            by: org.code.as_str(),
            grounds: &self.grounds,
            request_id,
        }
    }
}

pub(in crate::http) async fn file_objection(
    app: &App,
    org: &Organisation,
    body: &Bytes,
    draft: &mut AuditDraft,
) -> Result<Reply, ApiError> {
    let filing = Filing::parse(app, body, draft)?;
    let record_id = filing.record_id;
    let intent = app.intend_provisional(draft, StatusCode::CREATED).await?;
    let filed = app
        .store
        .file_objection(
            filing.application(org, &draft.request_id),
            &app.policy,
            app.today(),
            &intent,
        )
        .await?
        .map_err(ApiError::from)?;
    let (id, o) = (filed.objection_id, filed);
    draft.field_on(
        record_field(record_id),
        "disputed",
        "objection_filed",
        &o.item,
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

pub(in crate::http) async fn resolve_objection(
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
        .ok_or_else(|| ApiError::from(Refusal::ObjectionNotFound))?;
    draft.subject = stored_subject(&t.subject_type, &t.subject_id);
    // Checked again inside the store's transaction; asked here first so a
    // caller who may not answer learns nothing about the correction.
    app.policy.objection_answer(org, &t.case())?;
    let has_correction = req.fields.is_some() || req.tier.is_some() || req.decision_date.is_some();
    let resolution = match req.outcome.as_str() {
        "corrected" => {
            let data = req.fields.unwrap_or_default();
            let terms = correction(
                app,
                t.record_id,
                &t.item,
                &data,
                req.tier,
                req.decision_date,
                draft,
            )?;
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
    let intent = app.intend_provisional(draft, StatusCode::OK).await?;
    let (new_id, lapsed) = app
        .store
        .resolve_objection(
            Step {
                id,
                org,
                note,
                request_id: &draft.request_id,
                now: &now,
                today: app.today(),
            },
            &resolution,
            &app.policy,
            &intent,
        )
        .await?
        .map_err(ApiError::from)?;
    let reason = match resolution {
        Resolution::Corrected { .. } => "superseded",
        Resolution::Upheld => "objection_upheld",
        Resolution::Withdrawn => "withdrawn",
    };
    draft.field_on(
        record_field(t.record_id),
        resolution.as_str(),
        reason,
        &t.item,
    );
    if let Some(n) = new_id {
        draft.field_on(record_field(n), "accepted", "correction", &t.item);
        draft.records = 1;
    }
    for e in &lapsed {
        draft.item(ItemKind::ListEntry, *e, "exited", "basis_withdrawn", None);
    }
    let mut body =
        json!({"objection_id": id, "record_id": t.record_id, "status": resolution.as_str()});
    if let Some(n) = new_id {
        body["new_record_id"] = json!(n);
    }
    if !lapsed.is_empty() {
        body["exited_list_entries"] = json!(lapsed);
    }
    Ok(Reply::ok(body))
}

/// Validate a corrected version like a submission of the same item (see
/// [`Policy::check_correction`](crate::policy::Policy::check_correction)).
fn correction(
    app: &App,
    record_id: i64,
    item: &str,
    data: &Map<String, Value>,
    tier: Option<String>,
    decision_date: Option<String>,
    draft: &mut AuditDraft,
) -> Result<Option<RecordTerms>, ApiError> {
    if let Some(k) = data.keys().find(|k| !field_name_ok(k)) {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("a field name is 1 to {MAX_FIELD_NAME} bytes without control characters"),
        )
        .with(json!({"length": k.len()})));
    }
    app.policy
        .check_correction(
            item,
            data,
            tier.as_deref(),
            decision_date.as_deref(),
            app.today(),
        )
        .map_err(|e| {
            match &e {
                SubmissionRefusal::UnknownField { field, .. } => {
                    draft.field(audit_field_name(field), "refused", "not_in_catalog", None);
                }
                SubmissionRefusal::ConsentRequired(field) => {
                    draft.field(field.clone(), "refused", "consent_required", None);
                }
                _ => {}
            }
            // One record, the objection's: refused terms name it by its id
            // (no batch index), like they name the item.
            let mut err = submission_refused(&e, None);
            if let (SubmissionRefusal::Terms { .. }, Some(Value::Object(d))) =
                (&e, &mut err.details)
            {
                d.insert("record_id".into(), json!(record_id));
            }
            err
        })
}

pub(in crate::http) async fn overdue(app: &App, org: &Organisation) -> Result<Reply, ApiError> {
    let today = app.today();
    let scope = app.policy.overdue_scope(org);
    let rows = app.store.open_objections(scope.provider).await?;
    let list: Vec<Value> = rows
        .into_iter()
        .filter(|o| {
            parse_date(&o.due_on).is_some_and(|due| app.policy.objection_overdue(true, due, today))
        })
        .map(|o| {
            let days = parse_date(&o.due_on).map(|d| (today - d).whole_days());
            let subject = match (
                scope.subjects,
                stored_subject(&o.subject_type, &o.subject_id),
            ) {
                (SubjectView::Hashed, Some(s)) => {
                    json!({"type": o.subject_type, "hash": app.hasher.hash(&s)})
                }
                (SubjectView::Hashed, None) => json!({"type": o.subject_type}),
                (SubjectView::Clear, _) => json!({"type": o.subject_type, "id": o.subject_id}),
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

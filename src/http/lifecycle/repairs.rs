//! `POST /v1/repairs`, `POST /v1/repairs/{id}/decision`.

use bytes::Bytes;
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::input::{opt_text, parse_body, record_field, stored_subject};
use super::objections::{Filing, status_reply, status_subject};
use crate::audit::items::ItemKind;
use crate::audit::now_rfc3339;
use crate::http::{ApiError, App, AuditDraft, Reply};
use crate::policy::Organisation;
use crate::policy::lifecycle::format_date;
use crate::store::Step;

pub(in crate::http) async fn apply_repair(
    app: &App,
    org: &Organisation,
    body: &Bytes,
    draft: &mut AuditDraft,
) -> Result<Reply, ApiError> {
    let filing = Filing::parse(app, body, draft)?;
    let record_id = filing.record_id;
    let intent = app.intend_provisional(draft, StatusCode::CREATED).await?;
    let (id, terms) = app
        .store
        .apply_repair(
            filing.application(org, &draft.request_id),
            &app.policy,
            app.today(),
            &intent,
        )
        .await?
        .map_err(ApiError::from)?;
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

pub(in crate::http) async fn decide_repair(
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
    let intent = app.intend_provisional(draft, StatusCode::OK).await?;
    let (t, lapsed) = app
        .store
        .decide_repair(
            Step {
                id,
                org,
                note,
                request_id: &draft.request_id,
                now: &now,
                today,
            },
            approve,
            &app.policy,
            &intent,
        )
        .await?
        .map_err(ApiError::from)?;
    draft.subject = stored_subject(&t.subject_type, &t.subject_id);
    let (status, reason) = if approve {
        ("approved", "repaired")
    } else {
        ("rejected", "repair_rejected")
    };
    draft.field_on(record_field(t.record_id), status, reason, &t.item);
    for e in &lapsed {
        draft.item(ItemKind::ListEntry, *e, "exited", "basis_repaired", None);
    }
    let mut body = json!({"repair_id": id, "record_id": t.record_id, "status": status});
    if approve {
        body["repaired_on"] = json!(format_date(today));
    }
    if !lapsed.is_empty() {
        body["exited_list_entries"] = json!(lapsed);
    }
    Ok(Reply::ok(body))
}

/// `POST /v1/repairs/{id}/status`: the application and its decision (a
/// rejection too), for the subject it is about; 404 `repair_not_found`
/// otherwise, whether or not the id exists.
pub(in crate::http) async fn repair_status(
    app: &App,
    org: &Organisation,
    id: i64,
    body: &Bytes,
    draft: &mut AuditDraft,
) -> Result<Reply, ApiError> {
    let asked = status_subject(app, body, draft)?;
    let r = app
        .store
        .repair_status(id, &asked, org, &app.policy)
        .await?
        .map_err(ApiError::from)?;
    status_reply(&r, &asked, (r.record_id, &r.status, &r.item), draft)
}

//! `POST /v1/lists/{red,black,focus}`, `POST /v1/lists/entries/{id}/exit`.

use bytes::Bytes;
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::input::{body_id, date, parse_body, stored_subject, subject, text};
use crate::audit::items::ItemKind;
use crate::audit::now_rfc3339;
use crate::http::dto::SubjectDto;
use crate::http::{ApiError, App, AuditDraft, Reply};
use crate::policy::Organisation;
use crate::policy::lifecycle::{ListKind, format_date};
use crate::store::NewListEntry;

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

pub(in crate::http) async fn add_list_entry(
    app: &App,
    org: &Organisation,
    list: ListKind,
    body: &Bytes,
    draft: &mut AuditDraft,
) -> Result<Reply, ApiError> {
    let req: ListRequest = parse_body(app, body, draft)?;
    let subject = subject(app, &req.subject, draft)?;
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
    app.policy.list_period(from, to)?;
    let now = now_rfc3339();
    let intent = app.intend_provisional(draft, StatusCode::CREATED).await?;
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
            &app.policy,
            today,
            &intent,
        )
        .await?
        .map_err(ApiError::from)?;
    draft.field(
        format!("list_entry:{}", added.entry_id),
        "listed",
        "list_entry_added",
        Some(list.as_str()),
    );
    for r in &added.removed_red {
        draft.item(
            ItemKind::ListEntry,
            *r,
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

pub(in crate::http) async fn exit_list_entry(
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
    app.policy.exit_date(on, today)?;
    let intent = app.intend_provisional(draft, StatusCode::OK).await?;
    let (list, st, sid) = app
        .store
        .exit_list_entry(id, org, reason, on, &app.policy, &intent)
        .await?
        .map_err(ApiError::from)?;
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

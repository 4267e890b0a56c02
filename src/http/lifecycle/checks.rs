//! `POST /v1/checks`, `POST /v1/checks/{id}/feedback`.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::MAX_FEEDBACK_ITEMS;
use super::input::{opt_text, parse_body, subject, text};
use crate::audit::now_rfc3339;
use crate::http::dto::SubjectDto;
use crate::http::{ApiError, App, AuditDraft, Reply};
use crate::policy::Organisation;
use crate::policy::lifecycle::{ListKind, Sharing, format_date};
use crate::policy::measures::{ListFact, MeasureKind, MeasureStatus};
use crate::store::Refusal;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckRequest {
    subject: SubjectDto,
    matter: String,
}

pub(in crate::http) async fn run_check(
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

pub(in crate::http) async fn check_feedback(
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
        .ok_or_else(|| ApiError::from(Refusal::CheckNotFound))?;
    if check.org != org.code.as_str() {
        return Err(ApiError::from(Refusal::NotCheckOwner));
    }
    if check.feedback.is_some() {
        return Err(ApiError::from(Refusal::FeedbackRecorded));
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
        .map_err(ApiError::from)?;
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

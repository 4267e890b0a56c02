//! `POST /v1/checks`, `POST /v1/checks/{id}/feedback`.

use bytes::Bytes;
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::MAX_FEEDBACK_ITEMS;
use super::input::{opt_text, parse_body, stored_subject, subject, text};
use crate::audit::now_rfc3339;
use crate::http::dto::SubjectDto;
use crate::http::{ApiError, App, AuditDraft, Reply};
use crate::policy::Organisation;
use crate::policy::lifecycle::RecordState;
use crate::policy::lifecycle::{ListKind, Sharing, format_date};
use crate::policy::measures::{CheckDecision, CheckFacts, ListFact};
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
    let subject = subject(app, &req.subject, draft)?;
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
    let negative: Vec<RecordState> = inputs.negative.iter().map(|r| r.state).collect();
    let facts: Vec<ListFact> = inputs
        .entries
        .iter()
        .map(|e| ListFact {
            entry_id: e.entry_id,
            list: e.list,
            basis: e.basis_state,
        })
        .collect();
    let CheckDecision {
        outcomes,
        punishment_suspended,
    } = policy.check_decision(&matter.id, &facts, &negative);
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
    let intent = app.intend_provisional(draft, StatusCode::OK).await?;
    let check_id = app
        .store
        .insert_check(
            org.code.as_str(),
            &subject,
            &matter.id,
            today,
            &stored,
            &intent,
        )
        .await?;
    for o in &outcomes {
        draft.field(
            format!("measure:{}", o.measure.id),
            o.status.as_str(),
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
    // Feedback on a check is about its subject (their access history).
    draft.subject = stored_subject(&check.subject_type, &check.subject_id);
    let measures: Vec<(&str, &str)> = check.result["measures"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| Some((x["id"].as_str()?, x["status"].as_str()?)))
        .collect();
    let facts = CheckFacts {
        id,
        org: &check.org,
        measures: &measures,
        feedback_recorded: check.feedback.is_some(),
    };
    let applied: Vec<&str> = req.applied.iter().map(String::as_str).collect();
    let named_not: Vec<&str> = req.not_applied.iter().map(|n| n.measure.as_str()).collect();
    let permit = app
        .policy
        .check_feedback(org, &facts, &applied, &named_not)?;
    let mut not_applied = Vec::new();
    for n in &req.not_applied {
        not_applied.push(json!({"measure": n.measure, "reason": text("reason", &n.reason)?}));
    }
    let feedback = json!({"applied": req.applied, "not_applied": not_applied, "note": note});
    let now = now_rfc3339();
    let intent = app.intend_provisional(draft, StatusCode::OK).await?;
    app.store
        .check_feedback(&permit, &feedback, &intent, &now)
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

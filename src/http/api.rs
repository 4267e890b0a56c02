//! Handlers for the credit-data endpoints.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Value, json};

use super::dto::{
    MAX_BATCH_CONSENT_TOKENS, MAX_BATCH_RECORDS, MAX_FIELD_NAME, MAX_QUERY_FIELDS, QueryRequest,
    SubmitRequest, audit_field_name, field_name_ok,
};
use super::error::{json_error_at, submission_refused, value_error_at};
use super::{ApiError, App, AuditDraft, Reply, lifecycle};
use crate::audit::items::ItemKind;
use crate::ids::SubjectId;
use crate::policy::submission::{SubmissionRefusal, SubmittedRecord};
use crate::policy::{Decision, Organisation, Reason};
use crate::store::NewRecord;

/// How a requested field name is written to the log: the catalog name, the
/// prohibited category (never the raw name, which may itself carry data), or
/// the unknown name truncated.
fn audit_name(app: &App, name: &str, reason: Reason) -> String {
    if reason == Reason::Prohibited {
        let cat = app
            .policy
            .prohibited()
            .classify(name)
            .map(|c| c.id.as_str())
            .unwrap_or("unknown");
        return format!("prohibited:{cat}");
    }
    audit_field_name(name)
}

/// `POST /v1/query`.
pub(super) async fn query(
    app: &App,
    org: &Arc<Organisation>,
    body: &Bytes,
    draft: &mut AuditDraft,
) -> Result<Reply, ApiError> {
    let mut req: QueryRequest<'_> =
        serde_json::from_slice(body).map_err(|e| json_error_at(&e, body))?;
    // One reading of the clock for the whole request: the identifier's
    // birth-date check and the lifecycle decisions see the same day.
    let today = app.today();
    let subject = SubjectId::parse_at(&req.subject.kind, &req.subject.id, today)?;
    draft.subject = Some(subject.clone());
    let purpose = app.policy.purpose(&req.purpose).ok_or_else(|| {
        ApiError::bad_request("unknown_purpose", "purpose is not in the closed list")
            .with(json!({"known": app.policy.purposes().iter().map(|p| p.name.as_str()).collect::<Vec<_>>()}))
    })?;
    draft.purpose = Some(purpose.name.to_string());
    let view =
        lifecycle::expand_view(app, req.view.as_deref(), &mut req.fields, &subject, purpose)?;
    if req.fields.is_empty() || req.fields.len() > MAX_QUERY_FIELDS {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("fields must name between 1 and {MAX_QUERY_FIELDS} fields"),
        ));
    }
    if let Some(f) = req.fields.iter().find(|f| !field_name_ok(f.as_ref())) {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("a field name is 1 to {MAX_FIELD_NAME} bytes without control characters"),
        )
        .with(json!({"length": f.0.len()})));
    }
    // Counted only once the query is well formed, and before any data (or
    // consent) is read: a refused query does not use the subject quota.
    app.metrics.anomalies.admit(org, &subject)?;
    let (decisions, permit) = super::consent::decide_query(
        app,
        org,
        purpose,
        &subject,
        &req.fields,
        req.consent_token.as_deref(),
        draft,
    )
    .await?;
    for d in &decisions {
        let decision = match d.decision {
            Decision::Returned => "returned",
            Decision::Masked => "masked",
            Decision::Withheld => "withheld",
        };
        draft.field(
            audit_name(app, d.field, d.reason),
            decision,
            d.reason.as_str(),
            d.detail,
        );
    }
    let shared = app
        .store
        .read_shared(&subject, &permit, &app.policy, org, today)
        .await?;
    lifecycle::audit_withheld(draft, &shared.withheld);
    // List entries that lapsed with their basis: the query's entry says so.
    for (entry, reason) in &shared.lapsed_entries {
        draft.item(ItemKind::ListEntry, *entry, "lapsed", reason.as_str(), None);
    }
    draft.records = shared.records.len() as u32;
    let reply = QueryReply {
        subject: SubjectOut {
            kind: subject.kind(),
            id: subject.id(),
        },
        purpose: purpose.name.as_str(),
        decisions: decisions
            .iter()
            .map(|d| DecisionOut {
                field: d.field,
                decision: d.decision,
                reason: d.reason,
                detail: d.detail,
            })
            .collect(),
        records: &shared.records,
    };
    match view {
        // Views add a summary computed on the JSON tree.
        Some(view) => {
            let mut reply = serde_json::to_value(&reply).map_err(|_| ApiError::internal())?;
            lifecycle::add_summary(app, view, &permit, &shared.records, &mut reply);
            Ok(Reply::ok(reply))
        }
        // The hot path: serialise the typed reply straight to bytes, without
        // building an intermediate JSON tree.
        None => {
            // Sized for a typical answer up front: growing from serde_json's
            // 128 bytes reallocated and copied it five or six times.
            let mut bytes = Vec::with_capacity(4096);
            serde_json::to_writer(&mut bytes, &reply).map_err(|_| ApiError::internal())?;
            Ok(Reply::json_bytes(Bytes::from(bytes)))
        }
    }
}

/// Body of a `/v1/query` answer.
#[derive(serde::Serialize)]
struct QueryReply<'a> {
    subject: SubjectOut<'a>,
    purpose: &'a str,
    decisions: Vec<DecisionOut<'a>>,
    records: &'a [crate::store::SharedRecord],
}

#[derive(serde::Serialize)]
struct SubjectOut<'a> {
    #[serde(rename = "type")]
    kind: crate::ids::SubjectType,
    id: &'a str,
}

#[derive(serde::Serialize)]
struct DecisionOut<'a> {
    field: &'a str,
    decision: Decision,
    reason: crate::policy::Reason,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'static str>,
}

/// `POST /v1/records`: validate the whole batch, then store it in one
/// transaction.
pub(super) async fn submit(
    app: &App,
    org: &Arc<Organisation>,
    body: &Bytes,
    draft: &mut AuditDraft,
) -> Result<Reply, ApiError> {
    let raw: Value = serde_json::from_slice(body).map_err(|e| json_error_at(&e, body))?;
    // 1. Prohibited keys anywhere, before any schema check: nothing can be
    //    smuggled in an unexpected place.
    let prohibited = app.policy.prohibited();
    let refuse =
        |record: Option<usize>, path: String, cat: &crate::policy::prohibited::Category| {
            ApiError::unprocessable(
                "prohibited_field",
                format!(
                    "'{path}' falls in the prohibited category {} ({}); the whole batch is refused",
                    cat.label_en, cat.label_zh
                ),
            )
            .with(json!({"record": record, "field": path, "category": cat.id}))
        };
    if let Value::Object(top) = &raw {
        for (k, v) in top {
            if let Some(c) = prohibited.classify(k) {
                draft.field(
                    format!("prohibited:{}", c.id),
                    "refused",
                    "prohibited",
                    None,
                );
                return Err(refuse(None, k.clone(), c));
            }
            if k == "records" {
                if let Value::Array(recs) = v {
                    for (i, r) in recs.iter().enumerate() {
                        if let Some((path, c)) = prohibited.scan_json(r, &mut String::new()) {
                            draft.field(
                                format!("prohibited:{}", c.id),
                                "refused",
                                "prohibited",
                                None,
                            );
                            return Err(refuse(Some(i), path, c));
                        }
                    }
                }
            } else if let Some((path, c)) = prohibited.scan_json(v, &mut k.clone()) {
                draft.field(
                    format!("prohibited:{}", c.id),
                    "refused",
                    "prohibited",
                    None,
                );
                return Err(refuse(None, path, c));
            }
        }
    }
    // 2. Schema.
    let req: SubmitRequest =
        serde_json::from_value(raw).map_err(|e| value_error_at::<SubmitRequest>(&e, body))?;
    if req.records.is_empty() || req.records.len() > MAX_BATCH_RECORDS {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("a batch holds between 1 and {MAX_BATCH_RECORDS} records"),
        ));
    }
    // Bounds that keep the batch's audit entry within the log's limit.
    let mut tokens: Vec<&str> = Vec::new();
    for (i, r) in req.records.iter().enumerate() {
        if let Some(k) = r.fields.keys().find(|k| !field_name_ok(k)) {
            return Err(ApiError::bad_request(
                "invalid_request",
                format!(
                    "record {i}: a field name is 1 to {MAX_FIELD_NAME} bytes without control characters"
                ),
            )
            .with(json!({"record": i, "length": k.len()})));
        }
        if let Some(t) = r.consent_token.as_deref().filter(|t| !tokens.contains(t)) {
            tokens.push(t);
        }
    }
    if tokens.len() > MAX_BATCH_CONSENT_TOKENS {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("a batch carries at most {MAX_BATCH_CONSENT_TOKENS} distinct consent tokens"),
        ));
    }
    // 3. Every record against the catalog.
    let policy = &app.policy;
    let today = app.today();
    let mut batch = Vec::with_capacity(req.records.len());
    let mut first_subject: Option<SubjectId> = None;
    let mut consents = super::consent::Collection::default();
    for (i, r) in req.records.into_iter().enumerate() {
        let subject = SubjectId::parse_at(&r.subject.kind, &r.subject.id, today).map_err(|e| {
            let mut err = ApiError::from(e.clone());
            err.message = format!("record {i}: {}", err.message);
            err.with(json!({"record": i, "check": e.check()}))
        })?;
        match &first_subject {
            Some(first) => policy
                .check_batch_subject(first, &subject)
                .map_err(|e| submission_refused(&e, Some(i)))?,
            None => first_subject = Some(subject.clone()),
        }
        let accepted = policy
            .check_submission(
                &SubmittedRecord {
                    subject: subject.kind(),
                    item: &r.item,
                    tier: r.tier.as_deref(),
                    decision_date: r.decision_date.as_deref(),
                    fields: &r.fields,
                },
                app.today(),
            )
            .map_err(|e| {
                if let SubmissionRefusal::UnknownField { field, .. } = &e {
                    draft.field(audit_field_name(field), "refused", "not_in_catalog", None);
                }
                submission_refused(&e, Some(i))
            })?;
        consents.check(
            app,
            org,
            i,
            &subject,
            &accepted.personal,
            r.consent_token.as_deref(),
            draft,
        )?;
        let (item, terms) = (accepted.item.id.to_string(), accepted.terms);
        batch.push(NewRecord {
            subject,
            item,
            provider: org.code.to_string(),
            data: r.fields,
            terms,
        });
    }
    draft.subject = first_subject;
    let mut names: Vec<&str> = batch
        .iter()
        .flat_map(|r| r.data.keys().map(String::as_str))
        .collect();
    names.sort_unstable();
    names.dedup();
    for n in names {
        draft.field(n.to_owned(), "accepted", "authorised", None);
    }
    let ids = consents.store(app, &batch, draft).await?;
    draft.records = ids.len() as u32;
    Ok(Reply {
        status: hyper::StatusCode::CREATED,
        body: json!({"accepted": ids.len(), "record_ids": ids}),
        raw: None,
    })
}

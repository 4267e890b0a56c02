//! The read side of the audit log: the auditor API and the subject's own
//! access history for the portal.
//!
//! Auditors never see credit data, only the log: who asked for what, about
//! which subject (as a keyed hash), why, and what was decided — plus the
//! proofs that let them check the gateway's answers against its signed
//! checkpoints without trusting the operator.
//!
//! # Endpoints
//!
//! Role `auditor` only (every other role gets 403 `role_not_permitted`),
//! except the access history, which is for the `portal` role only. Every call
//! is itself audited, under the action named in the table.
//!
//! Parameters travel as a JSON body on `POST` — like `/v1/query`, so subject
//! identifiers never appear in URLs (and so in proxy or browser logs) — and
//! are parsed strictly: unknown keys, wrong types, malformed identifiers or
//! timestamps and impossible ranges are 400s with stable codes, before any
//! database work. The `GET`s take no parameters.
//!
//! | method, path | action | body → answer |
//! |---|---|---|
//! | `POST /v1/audit/search` | `audit_search` | filters (all optional): `org`, `subject` `{type,id}` *or* `subject_hash`, `purpose`, `action`, `outcome`, `decision` (`returned`/`masked`/`withheld`/`accepted`/`refused`), `denied` (bool: failed, or a field refused as `not_authorised`, `consent_invalid` or `prohibited`; lifecycle withholdings do not count), `from`/`to` (RFC 3339, `from` inclusive, `to` exclusive), `after` (seq cursor), `limit` (1–1000, default 100) → `{entries:[{seq, entry}], next_after}` |
//! | `POST /v1/audit/proof/inclusion` | `audit_inclusion_proof` | `{seq, tree_size?, format?}` (default: latest checkpoint, `"json"`) → `{seq, tree_size, entry, proof, root, checkpoint}`, or with `"format": "tlog-proof"` a `c2sp.org/tlog-proof@v1` file (`text/plain`; [`credlog::proof`]) |
//! | `POST /v1/audit/proof/consistency` | `audit_consistency_proof` | `{old_size, new_size?}` (default: latest checkpoint) → `{old_size, new_size, proof, old_root, new_root, old_checkpoint, new_checkpoint}` |
//! | `GET /v1/audit/checkpoint` | `audit_checkpoint` | → `{checkpoint, tree_size, verifier_key}` (`checkpoint` null before the first one) |
//! | `POST /v1/audit/report` | `audit_report` | `{from?, to?, top?}` (default: the last 24 h, top 10) → volume per organisation, denied attempts, most-queried subjects, anomalies |
//! | `GET /v1/audit/log/checkpoint`, `GET /v1/audit/log/tile/…` | `audit_log_checkpoint`, `audit_log_tile` | the log as C2SP tlog-tiles ([`super::tiles`]) |
//! | `POST /v1/audit/export` | `audit_export` | `{format?: "jsonl"/"csv", from_seq?, to_seq?, from?, to?, tree_size?, consistency_from?}` → the export file ([`crate::audit::export`]) |
//! | `POST /v1/portal/access-history` | `access_history` | `{subject:{type,id}, after?, limit?}` → who accessed that subject's data |
//!
//! Hashes are standard base64, as in checkpoint notes. `entry` in a proof is
//! the exact canonical text whose leaf hash is in the tree: an auditor hashes
//! it (`SHA-256(0x00 || entry)`) and checks the proof against the root of a
//! checkpoint verified with the published key. `root` fields are what the
//! store computes and are only worth comparing with a verified checkpoint.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::dto::{
    ConsistencyRequest, ExportRequest, HistoryRequest, InclusionRequest, ProofFormat,
    ReportRequest, SearchRequest,
};
use super::error::json_error_at;
use super::{ApiError, App, AuditDraft, Reply};
use crate::audit::AuditEntry;
use crate::audit::export::{self, ExportFormat, ExportPlan, encode_hash};
use crate::audit::merkle::{self, Hash};
use crate::endpoint::Endpoint;
use crate::ids::{CreditCode, SubjectId};
use crate::policy::Organisation;
use crate::store::{
    AuditQuery, DECISION_ACCEPTED, DECISION_MASKED, DECISION_REFUSED, DECISION_RETURNED,
    DECISION_WITHHELD, StoreError, node_map,
};

/// Largest page of search results or access history.
pub const MAX_PAGE: u32 = 1000;
/// Page size when none is given.
const DEFAULT_PAGE: u32 = 100;
/// Most entries in one export response (about 15 MB; the response is built
/// in memory, so this bounds what one request can make the gateway hold).
/// Larger ranges are exported in parts, each verifiable on its own, or with
/// `credgate audit export` straight from the store.
pub const MAX_EXPORT_ENTRIES: u64 = 20_000;
/// Most subjects in the report's top list.
const MAX_TOP: u32 = 100;
/// Actions that touch a subject's credit data, shown in its access history
/// (个人信息保护法 第四十四、四十五条): reads (queries, record history,
/// 应查必查 checks and their feedback), submissions, list changes, and
/// objections and repairs about it, from filing to answer and the status
/// reads. Consent handling, the overdue report (no subject) and auditors'
/// and the portal's own reads of the log are not accesses to the subject's
/// data and are left out. A submission batch naming several subjects has no
/// single subject in its entry and is not shown (the entry format is frozen).
const SUBJECT_VISIBLE_ACTIONS: [Endpoint; 13] = [
    Endpoint::Query,
    Endpoint::SubmitRecords,
    Endpoint::RecordHistory,
    Endpoint::Check,
    Endpoint::CheckFeedback,
    Endpoint::ListAdd,
    Endpoint::ListExit,
    Endpoint::ObjectionFile,
    Endpoint::ObjectionResolve,
    Endpoint::ObjectionStatus,
    Endpoint::RepairApply,
    Endpoint::RepairDecide,
    Endpoint::RepairStatus,
];

/// Parse a typed request body (already strict JSON: see `http::strict_json`).
pub(super) fn parse<'a, T: Deserialize<'a>>(body: &'a Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| json_error_at(&e, body))
}

// ------------------------------------------------------------ validation

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_request", message)
}

fn invalid_range(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_range", message)
}

/// A snake_case code (purpose, action, outcome) as the log stores them.
fn code(what: &str, v: Option<String>) -> Result<Option<String>, ApiError> {
    match v {
        None => Ok(None),
        Some(s)
            if !s.is_empty()
                && s.len() <= 64
                && s.as_bytes()[0].is_ascii_lowercase()
                && s.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_') =>
        {
            Ok(Some(s))
        }
        Some(_) => Err(invalid(format!(
            "{what} must be a snake_case code of 1-64 characters"
        ))
        .with(json!({"field": what}))),
    }
}

fn org_code(v: Option<String>) -> Result<Option<String>, ApiError> {
    v.map(|s| {
        CreditCode::parse(&s).map(|c| c.to_string()).map_err(|e| {
            ApiError::bad_request("invalid_identifier", format!("org: {e}"))
                .with(json!({"field": "org", "check": e.check()}))
        })
    })
    .transpose()
}

/// The `subject_hash` filter ([`crate::audit::search::parse_subject_hashes`]):
/// one or more subject hashes, keyed or bare, in the index's keyed form.
fn subject_hashes(v: Option<String>) -> Result<Vec<String>, ApiError> {
    let Some(v) = v else {
        return Ok(Vec::new());
    };
    crate::audit::search::parse_subject_hashes(&v).ok_or_else(|| {
        invalid(format!(
            "subject_hash must be 1-{} subject hashes separated by spaces, each 64 lowercase \
             hex characters, optionally prefixed by a key id and ':' (k2:…)",
            crate::audit::search::MAX_SUBJECT_HASHES
        ))
        .with(json!({"field": "subject_hash"}))
    })
}

fn page(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit.unwrap_or(DEFAULT_PAGE) {
        n @ 1..=MAX_PAGE => Ok(n),
        _ => Err(invalid(format!("limit must be between 1 and {MAX_PAGE}"))
            .with(json!({"field": "limit"}))),
    }
}

/// Format as the log does: `YYYY-MM-DDTHH:MM:SS.mmmZ`, UTC.
fn fmt_ts(t: OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Parse an RFC 3339 bound into the log's layout, rounding *up* to the
/// millisecond: log timestamps have millisecond precision, so for both the
/// inclusive `from` and the exclusive `to` this selects exactly the entries
/// the caller's sub-millisecond bound would.
fn bound(what: &str, v: &str) -> Result<String, ApiError> {
    let bad = || {
        ApiError::bad_request(
            "invalid_timestamp",
            format!("{what} must be an RFC 3339 timestamp such as 2026-11-23T02:30:00Z"),
        )
        .with(json!({"field": what}))
    };
    if v.len() > 64 {
        return Err(bad());
    }
    let t = OffsetDateTime::parse(v, &Rfc3339).map_err(|_| bad())?;
    let t = t.to_offset(time::UtcOffset::UTC);
    let sub_ms = t.nanosecond() % 1_000_000;
    let t = if sub_ms == 0 {
        Some(t)
    } else {
        t.checked_add(time::Duration::nanoseconds(i64::from(1_000_000 - sub_ms)))
    };
    match t {
        Some(t) if (0..=9999).contains(&t.year()) => Ok(fmt_ts(t)),
        _ => Err(bad()),
    }
}

/// `from`/`to` bounds, defaulting to the last `default_hours` hours.
fn time_range(
    from: Option<String>,
    to: Option<String>,
    default_hours: Option<i64>,
) -> Result<(Option<String>, Option<String>), ApiError> {
    let mut from = from.map(|v| bound("from", &v)).transpose()?;
    let mut to = to.map(|v| bound("to", &v)).transpose()?;
    if let Some(hours) = default_hours {
        let now = OffsetDateTime::now_utc() + time::Duration::milliseconds(1);
        if to.is_none() {
            to = Some(fmt_ts(now));
        }
        if from.is_none() {
            from = Some(fmt_ts(now - time::Duration::hours(hours)));
        }
    }
    if let (Some(f), Some(t)) = (&from, &to)
        && f > t
    {
        return Err(invalid_range("from must not be after to"));
    }
    Ok((from, to))
}

fn org_name(app: &App, code: &str) -> Option<String> {
    let c = CreditCode::parse(code).ok()?;
    app.policy.organisation(&c).map(|o| o.name.clone())
}

fn entry_json(bytes: &[u8]) -> Value {
    AuditEntry::parse(bytes)
        .ok()
        .and_then(|e| serde_json::to_value(e).ok())
        .unwrap_or(Value::Null)
}

// ------------------------------------------------------------ search

pub(super) async fn search(
    app: &App,
    r: SearchRequest,
    draft: &mut AuditDraft,
) -> Result<Reply, ApiError> {
    let hashes = subject_hashes(r.subject_hash)?;
    let subjects = match r.subject {
        Some(_) if !hashes.is_empty() => {
            return Err(invalid("give subject or subject_hash, not both"));
        }
        Some(s) => {
            let id = SubjectId::parse_at(&s.kind, &s.id, app.today())?;
            // Under every configured subject key: entries written before a
            // rotation are found too.
            let h = app.hasher.hashes(&id);
            // The auditor's look-up of a subject is itself on the record.
            draft.subject = Some(id);
            h
        }
        None => hashes,
    };
    let decision = match r.decision.as_deref() {
        None => None,
        Some("returned") => Some(DECISION_RETURNED),
        Some("masked") => Some(DECISION_MASKED),
        Some("withheld") => Some(DECISION_WITHHELD),
        Some("accepted") => Some(DECISION_ACCEPTED),
        Some("refused") => Some(DECISION_REFUSED),
        Some(_) => {
            return Err(invalid(
                "decision must be returned, masked, withheld, accepted or refused",
            )
            .with(json!({"field": "decision"})));
        }
    };
    let (from, to) = time_range(r.from, r.to, None)?;
    let limit = page(r.limit)?;
    let q = AuditQuery {
        org: org_code(r.org)?,
        subjects,
        purpose: code("purpose", r.purpose)?,
        actions: code("action", r.action)?.into_iter().collect(),
        outcome: code("outcome", r.outcome)?,
        decision,
        denied: r.denied,
        from,
        to,
        after: r.after,
        limit,
    };
    let rows = app.store.audit_query(&q).await?;
    let next_after = (rows.len() as u32 == limit)
        .then(|| rows.last().map(|r| r.seq))
        .flatten();
    let entries: Vec<Value> = rows
        .iter()
        .map(|r| json!({"seq": r.seq, "entry": entry_json(&r.entry)}))
        .collect();
    Ok(Reply::ok(
        json!({"entries": entries, "next_after": next_after}),
    ))
}

// ------------------------------------------------------------ proofs

/// The tree size to prove against and its signed note, if one exists:
/// the latest checkpoint by default, else any size up to the log head.
async fn tree_size(app: &App, requested: Option<u64>) -> Result<(u64, Option<String>), ApiError> {
    match requested {
        None => match app.store.checkpoint(None).await? {
            Some((size, note)) => Ok((size, Some(note))),
            None => Err(no_checkpoint()),
        },
        Some(n) => {
            let (head, _) = app.store.log_head().await?;
            if n == 0 || n > head {
                return Err(
                    invalid_range(format!("tree_size must be between 1 and {head}"))
                        .with(json!({"tree_size": n, "log_size": head})),
                );
            }
            Ok((
                n,
                app.store.checkpoint(Some(n)).await?.map(|(_, note)| note),
            ))
        }
    }
}

fn no_checkpoint() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_checkpoint",
        "there is no signed checkpoint for that tree size yet",
    )
}

/// Hash every range from stored nodes fetched in one query.
async fn hash_ranges(app: &App, ranges: &[(u64, u64)]) -> Result<Vec<Hash>, ApiError> {
    let nodes = node_map(app.store.audit_nodes(&merkle::nodes_for(ranges)).await?);
    merkle::assemble(ranges, |id| nodes.get(&id).copied())
        .map_err(|e| ApiError::from(StoreError::Corrupt(e.to_string())))
}

fn b64_all(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(encode_hash).collect()
}

/// Content type of a `c2sp.org/tlog-proof@v1` file.
const TLOG_PROOF: &str = "text/plain; charset=utf-8";

pub(super) async fn inclusion(app: &App, r: InclusionRequest) -> Result<Reply, ApiError> {
    let (size, note) = tree_size(app, r.tree_size).await?;
    if r.seq >= size {
        return Err(
            invalid_range(format!("seq {} is not in the tree of size {size}", r.seq))
                .with(json!({"seq": r.seq, "tree_size": size})),
        );
    }
    let mut ranges =
        merkle::inclusion_ranges(r.seq, size).map_err(|e| invalid_range(e.to_string()))?;
    ranges.push((0, size));
    let mut hashes = hash_ranges(app, &ranges).await?;
    let root = hashes.pop().unwrap_or(merkle::EMPTY_ROOT);
    let entry = app
        .store
        .audit_entry(r.seq)
        .await?
        .ok_or_else(|| StoreError::Corrupt(format!("entry {} missing", r.seq)))?;
    if r.format == Some(ProofFormat::TlogProof) {
        // The file proves against a signed checkpoint, so one must exist.
        let checkpoint = note.ok_or_else(no_checkpoint)?;
        let file = credlog::proof::TlogProof {
            extra: entry,
            index: r.seq,
            proof: hashes,
            checkpoint,
        };
        return Ok(Reply {
            status: StatusCode::OK,
            body: Value::Null,
            raw: Some((TLOG_PROOF, Bytes::from(file.encode()))),
        });
    }
    Ok(Reply::ok(json!({
        "seq": r.seq,
        "tree_size": size,
        "entry": String::from_utf8_lossy(&entry),
        "proof": b64_all(&hashes),
        "root": encode_hash(&root),
        "checkpoint": note,
    })))
}

pub(super) async fn consistency(app: &App, r: ConsistencyRequest) -> Result<Reply, ApiError> {
    let (new_size, new_note) = tree_size(app, r.new_size).await?;
    if r.old_size > new_size {
        return Err(invalid_range(format!(
            "old_size {} is larger than new_size {new_size}",
            r.old_size
        ))
        .with(json!({"old_size": r.old_size, "new_size": new_size})));
    }
    let mut ranges = merkle::consistency_ranges(r.old_size, new_size)
        .map_err(|e| invalid_range(e.to_string()))?;
    let proof_len = ranges.len();
    ranges.push((0, r.old_size));
    ranges.push((0, new_size));
    let hashes = hash_ranges(app, &ranges).await?;
    let old_note = match r.old_size {
        0 => None,
        n => app.store.checkpoint(Some(n)).await?.map(|(_, note)| note),
    };
    Ok(Reply::ok(json!({
        "old_size": r.old_size,
        "new_size": new_size,
        "proof": b64_all(&hashes[..proof_len]),
        "old_root": encode_hash(&hashes[proof_len]),
        "new_root": encode_hash(&hashes[proof_len + 1]),
        "old_checkpoint": old_note,
        "new_checkpoint": new_note,
    })))
}

pub(super) async fn checkpoint(app: &App) -> Result<Reply, ApiError> {
    let latest = app.store.checkpoint(None).await?;
    Ok(Reply::ok(json!({
        "checkpoint": latest.as_ref().map(|(_, note)| note),
        "tree_size": latest.map(|(size, _)| size),
        "verifier_key": app.checkpoint_verifier_key,
    })))
}

// ------------------------------------------------------------ reports

pub(super) async fn report(app: &App, r: ReportRequest) -> Result<Reply, ApiError> {
    let (from, to) = time_range(r.from, r.to, Some(24))?;
    let (from, to) = (from.unwrap_or_default(), to.unwrap_or_default());
    let top = match r.top.unwrap_or(10) {
        n @ 1..=MAX_TOP => n,
        _ => {
            return Err(invalid(format!("top must be between 1 and {MAX_TOP}"))
                .with(json!({"field": "top"})));
        }
    };
    let store = &app.store;
    let volume = store.audit_volume(&from, &to).await?;
    let denied = store.audit_denied(&from, &to).await?;
    let subjects = store.audit_top_subjects(&from, &to, top).await?;
    let hours = store.audit_org_hours(&from, &to).await?;

    let mut names: HashMap<String, Option<String>> = HashMap::new();
    let mut name = |org: &Option<String>| -> Value {
        match org {
            None => Value::Null,
            Some(o) => json!(
                names
                    .entry(o.clone())
                    .or_insert_with(|| org_name(app, o))
                    .clone()
            ),
        }
    };
    let anomalies = &app.metrics.anomalies;
    let limits = anomalies.limits();
    let quota = |code: &str| -> Option<u32> {
        match CreditCode::parse(code)
            .ok()
            .and_then(|c| app.policy.organisation(&c).cloned())
        {
            Some(o) => anomalies.quota_of(&o),
            None => limits.default_distinct_subjects_per_hour,
        }
    };
    let volume: Vec<Value> = volume
        .iter()
        .map(|v| {
            json!({"org": v.org, "name": name(&v.org), "total": v.total, "ok": v.ok,
                "partly_refused": v.partly_refused, "refused": v.refused})
        })
        .collect();
    let denied: Vec<Value> = denied
        .iter()
        .map(|d| {
            json!({"org": d.org, "name": name(&d.org), "outcome": d.outcome, "count": d.count, "refused_fields": d.refused_fields})
        })
        .collect();
    let subjects: Vec<Value> = subjects
        .iter()
        .map(|s| json!({"subject": s.subject, "queries": s.queries, "organisations": s.orgs}))
        .collect();
    let mut hourly = Vec::new();
    for h in &hours {
        let org = Some(h.org.clone());
        if let Some(limit) = quota(&h.org)
            && (h.distinct_subjects > i64::from(limit) || h.quota_refused > 0)
        {
            hourly.push(json!({
                "org": h.org, "name": name(&org), "hour": h.hour, "kind": "distinct_subjects",
                "value": h.distinct_subjects, "limit": limit, "refused": h.quota_refused,
            }));
        }
        if h.denied > i64::from(limits.denied_per_hour) {
            hourly.push(json!({
                "org": h.org, "name": name(&org), "hour": h.hour, "kind": "denied_attempts",
                "value": h.denied, "limit": limits.denied_per_hour,
            }));
        }
    }
    let this_node: Vec<Value> = anomalies
        .snapshot(quota)
        .iter()
        .map(|s| {
            let mut flags = Vec::new();
            if s.quota_flag() {
                flags.push("distinct_subjects");
            }
            if anomalies.denied_flag(s) {
                flags.push("denied_attempts");
            }
            json!({
                "org": s.org, "name": name(&Some(s.org.clone())), "quota": s.quota,
                "distinct_subjects": s.distinct_subjects, "over_quota": s.over_quota,
                "denied": s.denied, "refused_total": s.refused_total, "flags": flags,
            })
        })
        .collect();
    Ok(Reply::ok(json!({
        "from": from,
        "to": to,
        "volume": volume,
        "denied": denied,
        "top_subjects": subjects,
        "anomalies": {
            "limits": {
                "default_distinct_subjects_per_hour": limits.default_distinct_subjects_per_hour,
                "quota_enforced": limits.enforce_quota,
                "denied_per_hour": limits.denied_per_hour,
            },
            "hourly": hourly,
            "this_node": this_node,
        },
    })))
}

// ------------------------------------------------------------ export

pub(super) async fn export(app: &App, r: ExportRequest) -> Result<Reply, ApiError> {
    let format = r.format.unwrap_or(ExportFormat::Jsonl);
    let by_time = r.from.is_some() || r.to.is_some();
    if by_time && (r.from_seq.is_some() || r.to_seq.is_some()) {
        return Err(invalid("give a time range or a seq range, not both"));
    }
    let (from, to) = time_range(r.from, r.to, None)?;
    let (size, note) = match tree_size(app, r.tree_size).await? {
        (size, Some(note)) => (size, note),
        (_, None) => return Err(no_checkpoint()),
    };
    let (start, end) = if by_time {
        let from = from.unwrap_or_else(|| "0000".to_owned());
        let to = to.unwrap_or_else(|| "9999".to_owned());
        app.store
            .audit_seq_span(&from, &to, size)
            .await?
            .unwrap_or((0, 0))
    } else {
        (r.from_seq.unwrap_or(0), r.to_seq.unwrap_or(size))
    };
    if start > end || end > size {
        return Err(invalid_range(format!(
            "the range must satisfy from_seq <= to_seq <= tree_size ({size})"
        ))
        .with(json!({"from_seq": start, "to_seq": end, "tree_size": size})));
    }
    if end - start > MAX_EXPORT_ENTRIES {
        return Err(ApiError::bad_request(
            "range_too_large",
            format!(
                "an export holds at most {MAX_EXPORT_ENTRIES} entries; export the range in parts"
            ),
        )
        .with(json!({"max": MAX_EXPORT_ENTRIES, "requested": end - start})));
    }
    if r.consistency_from.is_some_and(|m| m > size) {
        return Err(invalid_range(format!(
            "consistency_from must not exceed tree_size ({size})"
        )));
    }
    let plan = ExportPlan {
        tree_size: size,
        checkpoint: note,
        start,
        end,
        consistency_from: r.consistency_from,
    };
    let bytes = export::write_export(&app.store, &plan, format, Vec::new())
        .await
        .map_err(|e| match e {
            export::ExportError::Store(s) => ApiError::from(s),
            other => {
                tracing::error!(error = %other, "export failed");
                ApiError::internal()
            }
        })?;
    Ok(Reply {
        status: StatusCode::OK,
        body: Value::Null,
        raw: Some((format.content_type(), Bytes::from(bytes))),
    })
}

// ------------------------------------------------------------ portal

/// A subject's own access history: every query or submission about it, by
/// whom, when, why and with what decisions — and nothing about anyone else
/// (the search is by that subject's keyed hash only).
pub(super) async fn access_history(
    app: &App,
    _portal: &Arc<Organisation>,
    r: HistoryRequest,
    draft: &mut AuditDraft,
) -> Result<Reply, ApiError> {
    let subject = SubjectId::parse_at(&r.subject.kind, &r.subject.id, app.today())?;
    let limit = page(r.limit)?;
    let q = AuditQuery {
        // Under every configured subject key, so the history reaches back
        // across a rotation.
        subjects: app.hasher.hashes(&subject),
        actions: SUBJECT_VISIBLE_ACTIONS
            .iter()
            .map(|a| a.action().to_owned())
            .collect(),
        after: r.after,
        limit,
        ..AuditQuery::default()
    };
    draft.subject = Some(subject.clone());
    let rows = app.store.audit_query(&q).await?;
    let next_after = (rows.len() as u32 == limit)
        .then(|| rows.last().map(|r| r.seq))
        .flatten();
    let entries: Vec<Value> = rows
        .iter()
        .filter_map(|row| {
            let e = AuditEntry::parse(&row.entry).ok()?;
            let fields: Vec<Value> = e
                .fields
                .iter()
                .map(|f| json!({"field": f.field, "decision": f.decision, "reason": f.reason}))
                .collect();
            Some(json!({
                "seq": row.seq,
                "ts": e.ts,
                "request_id": e.request_id,
                "org": e.org,
                "org_name": e.org.as_deref().and_then(|o| org_name(app, o)),
                "action": e.action,
                "purpose": e.purpose,
                "consent": e.consent,
                "fields": fields,
                "records": e.records,
                "outcome": e.outcome,
            }))
        })
        .collect();
    Ok(Reply::ok(json!({
        "subject": {"type": subject.kind(), "id": subject.id()},
        "entries": entries,
        "next_after": next_after,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_normalised_and_strict() {
        assert_eq!(
            bound("from", "2026-11-23T02:30:00Z").unwrap(),
            "2026-11-23T02:30:00.000Z"
        );
        assert_eq!(
            bound("from", "2026-11-23T10:30:00.1234+08:00").unwrap(),
            "2026-11-23T02:30:00.124Z"
        );
        assert_eq!(
            bound("to", "2026-11-23T02:30:00.999Z").unwrap(),
            "2026-11-23T02:30:00.999Z"
        );
        for bad in [
            "",
            "yesterday",
            "2026-11-23",
            "2026-13-01T00:00:00Z",
            "2026-11-23T02:30:00",
            "9999-12-31T23:59:59.9999Z",
            &"9".repeat(100),
        ] {
            assert_eq!(bound("from", bad).unwrap_err().code, "invalid_timestamp");
        }
        assert!(
            time_range(
                Some("2026-01-02T00:00:00Z".into()),
                Some("2026-01-01T00:00:00Z".into()),
                None
            )
            .is_err()
        );
    }

    #[test]
    fn codes_and_hashes_are_strict() {
        assert!(code("purpose", Some("financing".into())).is_ok());
        for bad in [
            "",
            "Financing",
            "a b",
            "x'; DROP TABLE audit_log; --",
            &"a".repeat(65),
        ] {
            assert!(code("purpose", Some(bad.into())).is_err(), "{bad}");
        }
        let hex = "ab".repeat(32);
        assert_eq!(
            subject_hashes(Some(hex.clone())).unwrap(),
            vec![format!("k1:{hex}")]
        );
        assert!(subject_hashes(None).unwrap().is_empty());
        assert!(subject_hashes(Some("AB".repeat(32))).is_err());
        assert!(page(Some(0)).is_err());
        assert!(page(Some(MAX_PAGE + 1)).is_err());
        assert_eq!(page(None).unwrap(), DEFAULT_PAGE);
        assert_eq!(
            org_code(Some("bad".into())).unwrap_err().code,
            "invalid_identifier"
        );
    }
}

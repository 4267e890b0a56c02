//! The log search: the form (`GET /console/`) and its results
//! (`POST /console/search`), through the auditor API's search.

use std::fmt::Write as _;

use bytes::Bytes;
use serde_json::Value;

use super::form::{Form, local_time};
use super::html::{esc, hidden, input, label, page, row, select, select_required};
use super::org_name;
use crate::endpoint::Endpoint;
use crate::http::dto::{SearchRequest, SubjectDto};
use crate::http::{ApiError, App, AuditDraft, Reply, auditor};

/// Entries per page of search results.
pub const PAGE: u32 = 50;

/// The search form's fields.
pub const SEARCH_FIELDS: &[&str] = &[
    "org",
    "subject_type",
    "subject_id",
    "subject_hash",
    "purpose",
    "action",
    "decision",
    "outcome",
    "from",
    "to",
    "after",
];

const DECISIONS: [(&str, &str, &str); 5] = [
    ("returned", "已返回", "returned"),
    ("masked", "已脱敏", "masked"),
    ("withheld", "已扣留", "withheld"),
    ("accepted", "已接受", "accepted"),
    ("refused", "已拒绝", "refused"),
];

const SUBJECT_TYPES: [(&str, &str, &str); 2] = [
    ("legal_person", "法人", "legal person"),
    ("natural_person", "自然人", "natural person"),
];

/// The actions an entry can carry: every endpoint's and the pipeline's own.
fn actions() -> Vec<(&'static str, &'static str, &'static str)> {
    let mut v: Vec<_> = Endpoint::ALL.iter().map(|e| (e.action(), "", "")).collect();
    v.extend([
        ("malformed_http", "", ""),
        ("method_not_allowed", "", ""),
        ("unknown", "", ""),
    ]);
    v
}

/// The search form, filled with `f`'s values (never the subject id).
fn search_form(f: &Form) -> String {
    let g = |n: &str| f.get(n);
    let mut s = String::from(
        "<form method=\"post\" action=\"/console/search\" class=\"search\" id=\"search\">\n",
    );
    s += &row(
        "org",
        "机构代码",
        "Organisation code",
        &input(
            "org",
            "text",
            g("org").as_deref(),
            " maxlength=\"18\" placeholder=\"91370300164100001A\"",
        ),
    );
    s += &row(
        "subject_type",
        "主体类型",
        "Subject type",
        &select_required("subject_type", &SUBJECT_TYPES, g("subject_type").as_deref()),
    );
    s += &row(
        "subject_id",
        "主体标识（服务器端散列，不出现在网址中）",
        "Subject id (hashed by the gateway, never in a URL)",
        &input(
            "subject_id",
            "text",
            None,
            " maxlength=\"18\" autocomplete=\"off\"",
        ),
    );
    s += &row(
        "purpose",
        "用途",
        "Purpose",
        &input(
            "purpose",
            "text",
            g("purpose").as_deref(),
            " maxlength=\"64\"",
        ),
    );
    s += &row(
        "action",
        "操作",
        "Action",
        &select("action", &actions(), g("action").as_deref()),
    );
    s += &row(
        "decision",
        "字段决定",
        "Field decision",
        &select("decision", &DECISIONS, g("decision").as_deref()),
    );
    s += &row(
        "outcome",
        "结果",
        "Outcome",
        &input(
            "outcome",
            "text",
            g("outcome").as_deref(),
            " maxlength=\"64\" placeholder=\"ok / role_not_permitted\"",
        ),
    );
    s += &row(
        "from",
        "起（北京时间）",
        "From (China Standard Time)",
        &input("from", "datetime-local", g("from").as_deref(), ""),
    );
    s += &row(
        "to",
        "止（不含）",
        "To (exclusive)",
        &input("to", "datetime-local", g("to").as_deref(), ""),
    );
    let _ = write!(
        s,
        "<div class=\"row\"><button type=\"submit\" id=\"search-submit\">{}</button></div>\n</form>\n",
        label("检索", "Search")
    );
    s
}

/// `GET /console/`: the search form.
pub fn home() -> String {
    let intro = format!(
        "<p class=\"intro\">{}</p>\n",
        label(
            "按机构、主体、用途、操作、决定、结果和时间检索审计日志。",
            "Search the audit log by organisation, subject, purpose, action, decision, outcome and time."
        )
    );
    page(
        ("日志检索", "Log search"),
        "/console/",
        &(intro + &search_form(&Form::default())),
    )
}

/// `POST /console/search`: the results, through the auditor API's search.
pub async fn search(app: &App, body: &Bytes, draft: &mut AuditDraft) -> Result<Reply, ApiError> {
    let f = Form::parse(body, SEARCH_FIELDS)?;
    f.choice("subject_type", &["legal_person", "natural_person"])?;
    let subject = f.get("subject_id").map(|id| SubjectDto {
        kind: f
            .get("subject_type")
            .unwrap_or_else(|| "legal_person".to_owned()),
        id,
    });
    let req = SearchRequest {
        org: f.get("org"),
        subject,
        subject_hash: f.get("subject_hash"),
        purpose: f.get("purpose"),
        action: f.get("action"),
        outcome: f.get("outcome"),
        decision: f.get("decision"),
        denied: None,
        from: local_time(f.get("from")),
        to: local_time(f.get("to")),
        after: f.number("after")?,
        limit: Some(PAGE),
    };
    let reply = auditor::search(app, req, draft).await?;
    // The subject as the next page names it: its hashes under every
    // configured key (entries from before a key rotation match too), never
    // the id.
    let hash = match &draft.subject {
        Some(s) => Some(app.hasher.hashes(s).join(" ")),
        None => f.get("subject_hash"),
    };
    let entries = reply.body["entries"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut main = search_form(&f);
    let _ = writeln!(
        main,
        "<h2>{} <span class=\"count\" id=\"result-count\">{}</span></h2>",
        label("结果", "Results"),
        entries.len()
    );
    if let Some(h) = &hash {
        let _ = writeln!(
            main,
            "<p>{} <code>{}</code></p>",
            label("主体散列", "Subject hash"),
            esc(h)
        );
    }
    if entries.is_empty() {
        let _ = writeln!(
            main,
            "<p class=\"empty\">{}</p>",
            label("没有符合条件的记录。", "No entries match.")
        );
    } else {
        main += &results_table(app, &entries);
    }
    if let Some(next) = reply.body["next_after"].as_u64() {
        main += "<form method=\"post\" action=\"/console/search\" class=\"next\">";
        for name in SEARCH_FIELDS {
            if !matches!(
                *name,
                "subject_id" | "subject_type" | "subject_hash" | "after"
            ) {
                main += &hidden(name, f.get(name).as_deref());
            }
        }
        main += &hidden("subject_hash", hash.as_deref());
        main += &hidden("after", Some(&next.to_string()));
        let _ = writeln!(
            main,
            "<button type=\"submit\" id=\"next-page\">{}</button></form>",
            label("下一页", "Next page")
        );
    }
    Ok(super::page(page(
        ("日志检索", "Log search"),
        "/console/",
        &main,
    )))
}

fn results_table(app: &App, entries: &[Value]) -> String {
    let mut t = format!(
        "<table class=\"results\" id=\"results\"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>\n",
        label("序号", "Seq"),
        label("时间 (UTC)", "Time (UTC)"),
        label("机构", "Organisation"),
        label("操作", "Action"),
        label("主体散列", "Subject hash"),
        label("用途", "Purpose"),
        label("字段决定", "Field decisions"),
        label("状态 / 结果", "Status / outcome"),
    );
    for row in entries {
        let seq = row["seq"].as_u64().unwrap_or(0);
        let e = &row["entry"];
        let s = |k: &str| e[k].as_str().unwrap_or("").to_owned();
        let org = s("org");
        let name = org_name(app, &org);
        let subject = s("subject");
        let short = subject.get(..12).unwrap_or(&subject);
        let _ = writeln!(
            t,
            "<tr><td><a href=\"/console/entries/{seq}\" class=\"entry-link\">{seq}</a></td><td>{}</td><td>{}<br><small>{}</small></td><td>{}</td><td><code title=\"{}\">{}</code></td><td>{}</td><td>{}</td><td>{} {}</td></tr>",
            esc(&s("ts")),
            esc(&org),
            esc(&name),
            esc(&s("action")),
            esc(&subject),
            esc(short),
            esc(&s("purpose")),
            esc(&decision_summary(e)),
            e["status"],
            esc(&s("outcome")),
        );
    }
    t + "</tbody></table>\n"
}

/// "2 returned · 1 refused".
fn decision_summary(e: &Value) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for f in e["fields"].as_array().into_iter().flatten() {
        let d = f["decision"].as_str().unwrap_or("").to_owned();
        match counts.iter_mut().find(|(k, _)| *k == d) {
            Some((_, n)) => *n += 1,
            None => counts.push((d, 1)),
        }
    }
    counts
        .iter()
        .map(|(d, n)| format!("{n} {d}"))
        .collect::<Vec<_>>()
        .join(" · ")
}

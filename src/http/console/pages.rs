//! The console's entry, overdue objections and export pages.

use std::fmt::Write as _;

use bytes::Bytes;

use super::form::{Form, local_time};
use super::html::{esc, input, label, page, row, select_required};
use super::{DOWNLOAD_CSV, DOWNLOAD_JSONL, org_name, raw};
use crate::audit::AuditEntry;
use crate::audit::export::ExportFormat;
use crate::http::dto::ExportRequest;
use crate::http::{ApiError, App, Reply, auditor};
use crate::policy::Organisation;

/// `GET /console/entries/{seq}`: the entry, and the panel `console.js`
/// fills with the proof's verdict.
pub async fn entry(app: &App, seq: &str) -> Result<Reply, ApiError> {
    let missing = || ApiError::not_found("not_found", "no such audit entry");
    if seq.is_empty() || seq.len() > 19 || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return Err(missing());
    }
    let seq: u64 = seq.parse().map_err(|_| missing())?;
    let bytes = app.store.audit_entry(seq).await?.ok_or_else(missing)?;
    let canonical = String::from_utf8_lossy(&bytes).into_owned();
    let e = AuditEntry::parse(&bytes).ok();
    let mut main = String::new();
    if let Some(e) = &e {
        main += "<table class=\"entry\" id=\"entry\"><tbody>\n";
        let opt = |v: &Option<String>| v.clone().unwrap_or_default();
        let org = opt(&e.org);
        let name = org_name(app, &org);
        for (zh, en, v) in [
            ("序号", "Seq", seq.to_string()),
            ("时间 (UTC)", "Time (UTC)", e.ts.clone()),
            ("请求编号", "Request id", e.request_id.clone()),
            ("网关节点", "Gateway node", e.gateway.clone()),
            ("机构", "Organisation", format!("{org} {name}")),
            ("证书指纹", "Certificate fingerprint", opt(&e.cert_fp)),
            ("操作", "Action", e.action.clone()),
            ("主体类型", "Subject type", opt(&e.subject_type)),
            ("主体散列", "Subject hash", opt(&e.subject)),
            ("用途", "Purpose", opt(&e.purpose)),
            ("授权", "Consent", opt(&e.consent)),
            ("记录数", "Records", e.records.to_string()),
            ("状态", "Status", e.status.to_string()),
            ("结果", "Outcome", e.outcome.clone()),
        ] {
            let _ = writeln!(
                main,
                "<tr><th>{}</th><td>{}</td></tr>",
                label(zh, en),
                esc(&v)
            );
        }
        main += "</tbody></table>\n";
        if !e.fields.is_empty() {
            let _ = writeln!(
                main,
                "<h2>{}</h2><table class=\"fields\"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>",
                label("字段决定", "Field decisions"),
                label("字段", "Field"),
                label("决定", "Decision"),
                label("理由", "Reason"),
                label("说明", "Detail"),
            );
            for f in &e.fields {
                let _ = writeln!(
                    main,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&f.field),
                    esc(&f.decision),
                    esc(&f.reason),
                    esc(f.detail.as_deref().unwrap_or(""))
                );
            }
            main += "</tbody></table>\n";
        }
    }
    let _ = write!(
        main,
        "<h2>{}</h2>\n<section id=\"verify\" class=\"verify pending\" data-seq=\"{seq}\">\
<p id=\"verify-status\">{}</p><ol id=\"verify-steps\"></ol></section>\n\
<form id=\"pin\" class=\"pin\" hidden><label for=\"pin-key\">{}</label>\
<input type=\"text\" id=\"pin-key\" size=\"70\" autocomplete=\"off\" spellcheck=\"false\">\
<button type=\"submit\" id=\"pin-save\">{}</button></form>\n\
<h2>{}</h2>\n<pre id=\"canonical\">{}</pre>\n",
        label("包含证明", "Inclusion proof"),
        label(
            "本页在浏览器中用 WebCrypto 验证包含证明与签名检查点；需要启用 JavaScript。未启用时可导出后离线验证（credgate audit verify）。",
            "This page verifies the inclusion proof and the signed checkpoint in the browser with WebCrypto; that needs JavaScript. Without it, export and verify offline (credgate audit verify)."
        ),
        label(
            "固定验证密钥（您线下获得的密钥；留空则使用网关公布的密钥）",
            "Pin the verifier key (the one you were given out of band; empty: the gateway's published key)"
        ),
        label("保存", "Save"),
        label(
            "规范文本（其哈希即树叶）",
            "Canonical text (its hash is the leaf)"
        ),
        esc(&canonical),
    );
    Ok(super::page(page(
        ("日志条目", "Log entry"),
        "/console/",
        &main,
    )))
}

/// `GET /console/objections/overdue`: through the lifecycle handler, so the
/// policy's scope for the auditor applies.
pub async fn overdue(app: &App, org: &Organisation) -> Result<Reply, ApiError> {
    let reply = crate::http::lifecycle::objections::overdue(app, org).await?;
    let b = &reply.body;
    let list = b["overdue"].as_array().cloned().unwrap_or_default();
    let mut main = format!(
        "<p>{} <strong id=\"as-of\">{}</strong> · {} <strong id=\"overdue-count\">{}</strong></p>\n",
        label("截至", "As of"),
        esc(b["as_of"].as_str().unwrap_or("")),
        label("逾期异议数", "Overdue objections"),
        list.len()
    );
    if list.is_empty() {
        let _ = writeln!(
            main,
            "<p class=\"empty\">{}</p>",
            label("没有逾期异议。", "No objection is past its deadline.")
        );
    } else {
        let _ = writeln!(
            main,
            "<table class=\"results\" id=\"overdue\"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>",
            label("异议编号", "Objection"),
            label("记录", "Record"),
            label("信息项", "Item"),
            label("提供部门", "Provider"),
            label("主体", "Subject"),
            label("提出日期", "Filed on"),
            label("应答期限", "Due on"),
            label("逾期天数", "Days overdue"),
        );
        for o in &list {
            let subject = &o["subject"];
            let who = subject["id"]
                .as_str()
                .or(subject["hash"].as_str())
                .unwrap_or("");
            let _ = writeln!(
                main,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} <code>{}</code></td><td>{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
                o["objection_id"],
                o["record_id"],
                esc(o["item"].as_str().unwrap_or("")),
                esc(o["provider"].as_str().unwrap_or("")),
                esc(subject["type"].as_str().unwrap_or("")),
                esc(who.get(..16).unwrap_or(who)),
                esc(o["filed_on"].as_str().unwrap_or("")),
                esc(o["due_on"].as_str().unwrap_or("")),
                o["days_overdue"],
            );
        }
        main += "</tbody></table>\n";
    }
    Ok(super::page(page(
        ("逾期异议", "Overdue objections"),
        "/console/objections/overdue",
        &main,
    )))
}

/// The export form's fields.
pub const EXPORT_FIELDS: &[&str] = &["format", "from", "to", "from_seq", "to_seq"];

/// `GET /console/export`: the form.
pub fn export_form() -> String {
    let mut s = format!(
        "<p class=\"intro\">{}</p>\n<form method=\"post\" action=\"/console/export\" id=\"export\">\n",
        label(
            "导出的每一条目都附包含证明和签名检查点，可用 credgate audit verify 离线验证。按时间或按序号选择范围（只选一种）。",
            "Every exported entry carries its inclusion proof and the signed checkpoint; verify offline with credgate audit verify. Choose a time range or a sequence range (one of them)."
        )
    );
    s += &row(
        "format",
        "格式",
        "Format",
        &select_required(
            "format",
            &[("jsonl", "JSON Lines", ""), ("csv", "CSV", "")],
            None,
        ),
    );
    s += &row(
        "from",
        "起（北京时间）",
        "From (China Standard Time)",
        &input("from", "datetime-local", None, ""),
    );
    s += &row(
        "to",
        "止（不含）",
        "To (exclusive)",
        &input("to", "datetime-local", None, ""),
    );
    s += &row(
        "from_seq",
        "起始序号",
        "First seq",
        &input("from_seq", "number", None, " min=\"0\""),
    );
    s += &row(
        "to_seq",
        "结束序号（不含）",
        "End seq (exclusive)",
        &input("to_seq", "number", None, " min=\"0\""),
    );
    let _ = write!(
        s,
        "<div class=\"row\"><button type=\"submit\" id=\"export-submit\">{}</button></div>\n</form>\n",
        label("下载", "Download")
    );
    page(("导出", "Export"), "/console/export", &s)
}

/// `POST /console/export`: the auditor API's export, as an attachment.
pub async fn export(app: &App, body: &Bytes) -> Result<Reply, ApiError> {
    let f = Form::parse(body, EXPORT_FIELDS)?;
    let format = match f.choice("format", &["jsonl", "csv"])? {
        Some("csv") => ExportFormat::Csv,
        _ => ExportFormat::Jsonl,
    };
    let req = ExportRequest {
        format: Some(format),
        from_seq: f.number("from_seq")?,
        to_seq: f.number("to_seq")?,
        from: local_time(f.get("from")),
        to: local_time(f.get("to")),
        tree_size: None,
        consistency_from: None,
    };
    let reply = auditor::export(app, req).await?;
    let bytes = reply.raw.map(|(_, b)| b).unwrap_or_default();
    let ctype = match format {
        ExportFormat::Csv => DOWNLOAD_CSV,
        ExportFormat::Jsonl => DOWNLOAD_JSONL,
    };
    Ok(raw(ctype, bytes))
}

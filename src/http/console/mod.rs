//! The auditor's web console at `/console/`: server-rendered HTML over the
//! auditor API, for an ordinary browser presenting the auditor's client
//! certificate.
//!
//! Every console route is a row of the endpoint table (`console_*` actions)
//! and goes through the one pipeline: the access policy admits the auditor
//! role only (`policies/access.toml`), each request is audited like any
//! other, and the pages are built from the same handlers the JSON API uses
//! ([`super::auditor`], the overdue objections of
//! [`super::lifecycle::objections`]). Errors carry the API's stable codes:
//! as the JSON envelope, or — when the request asks for `text/html` in
//! `Accept`, as a browser does — as a small HTML page showing the same
//! status, code, message and request id ([`wants_html`], [`error_page`];
//! on console paths only, the API stays JSON). Refusals before routing
//! (401, 403, 404, 405) on a console path are pages too.
//!
//! | page | what |
//! |---|---|
//! | `GET /console` | 308 to `/console/` (a row of the endpoint table like any page: admitted and audited) |
//! | `GET /console/`, `POST /console/search` | log search; the subject id travels in the form body and is hashed server-side, never in a URL; pages by form too ([`search`]) |
//! | `GET /console/entries/{seq}` | one entry; `console.js` fetches its inclusion proof and the checkpoint and verifies both with WebCrypto |
//! | `GET /console/reports`, `POST /console/reports` | volume per organisation over time, denials, anomalies and quota refusals, most-queried subjects, as SVG drawn here ([`reports`]) |
//! | `GET /console/objections/overdue` | objections past their deadline |
//! | `GET /console/export`, `POST /console/export` | an export download (JSON Lines or CSV, with proofs) |
//! | `GET /console/assets/{console.js,console.css,favicon.svg}` | the script, style sheet and icon, embedded with `include_str!` |
//!
//! The search needs no JavaScript; only the in-browser proof check does.
//! Assets are compiled into the binary (no CDN, works offline) and every
//! page is sent with [`CSP`]: scripts and styles from the gateway itself
//! only, no inline script, no inline style, no framing.

mod form;
mod html;
mod pages;
mod reports;
mod search;

use std::sync::Arc;

use bytes::Bytes;
use hyper::StatusCode;
use hyper::header::{
    CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_SECURITY_POLICY, HeaderMap, HeaderValue,
    REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use serde_json::Value;

use super::{ApiError, App, AuditDraft, Reply};
use crate::endpoint::{Endpoint, Routed};
use crate::policy::Organisation;

/// The content type the console's forms are sent as.
pub(super) const FORM_TYPE: &str = "application/x-www-form-urlencoded";

/// The Content-Security-Policy of every console response.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// Content type of the pages.
pub(super) const HTML: &str = "text/html; charset=utf-8";
/// Content type of the script.
const JS: &str = "text/javascript; charset=utf-8";
/// Content type of the style sheet.
const CSS: &str = "text/css; charset=utf-8";
/// Content type of the icon.
const SVG: &str = "image/svg+xml";
/// Content type of a JSON Lines export download (the API's own export is
/// `application/x-ndjson` without the parameter, and is not an attachment).
const DOWNLOAD_JSONL: &str = "application/x-ndjson; charset=utf-8";
/// Content type of a CSV export download (RFC 4180's `header` parameter).
const DOWNLOAD_CSV: &str = "text/csv; charset=utf-8; header=present";

const SCRIPT: &str = include_str!("../../../console/console.js");
const STYLE: &str = include_str!("../../../console/console.css");
const ICON: &str = include_str!("../../../console/favicon.svg");

/// Add the console's headers to a raw response, by its content type (called
/// for every raw response; others are left alone).
pub(super) fn headers(ctype: &str, h: &mut HeaderMap) {
    let disposition = match ctype {
        HTML | JS | CSS | SVG => None,
        DOWNLOAD_JSONL => Some("attachment; filename=\"credgate-audit.jsonl\""),
        DOWNLOAD_CSV => Some("attachment; filename=\"credgate-audit.csv\""),
        _ => return,
    };
    h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Pages and downloads hold log data: never cached. The assets change
    // with the binary: revalidated.
    let cache = if matches!(ctype, JS | CSS | SVG) {
        "no-cache"
    } else {
        "no-store"
    };
    h.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Some(d) = disposition {
        h.insert(CONTENT_DISPOSITION, HeaderValue::from_static(d));
    }
}

fn raw(ctype: &'static str, bytes: impl Into<Bytes>) -> Reply {
    Reply {
        status: StatusCode::OK,
        body: Value::Null,
        raw: Some((ctype, bytes.into())),
    }
}

/// A rendered page.
fn page(html: String) -> Reply {
    raw(HTML, html)
}

/// A 308 to `to` (same method, permanent), with a link for the rare
/// client that does not follow it; `App::handle` sends `body.location` as
/// the `Location` header.
fn redirect(to: &'static str) -> Reply {
    let link = format!(
        "<!DOCTYPE html>\n<html lang=\"zh-CN\">\n<head>\n<meta charset=\"utf-8\">\n<title>credgate</title>\n</head>\n\
<body><p><a href=\"{to}\">{to}</a></p></body>\n</html>\n"
    );
    Reply {
        status: StatusCode::PERMANENT_REDIRECT,
        body: serde_json::json!({ "location": to }),
        raw: Some((HTML, link.into())),
    }
}

/// Whether an error on this request is answered as an HTML page: a console
/// path (`/console` or under `/console/`) and an `Accept` header naming
/// `text/html` with a non-zero quality (a browser). Everything else — the
/// API, and console clients that do not ask for HTML — gets the JSON
/// envelope.
pub(super) fn wants_html(path: &str, headers: &HeaderMap) -> bool {
    if path != "/console" && !path.starts_with("/console/") {
        return false;
    }
    headers
        .get_all(hyper::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|range| {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("");
            let q_zero = parts.any(|p| {
                p.strip_prefix("q=")
                    .is_some_and(|q| q.parse::<f32>().is_ok_and(|q| q <= 0.0))
            });
            media.eq_ignore_ascii_case("text/html") && !q_zero
        })
}

/// The HTML page for a refusal on a console path: the status, the stable
/// code (the same as the JSON envelope's, and the audit entry's outcome),
/// the message and the request id to quote.
pub(super) fn error_page(e: &ApiError, request_id: &str) -> (&'static str, Bytes) {
    let status = e.status.as_u16();
    let reason = e.status.canonical_reason().unwrap_or("");
    let main = format!(
        "<h1>{status} {reason}</h1>\n<dl class=\"error\">\n\
<dt>{}</dt><dd><code class=\"code\">{}</code></dd>\n\
<dt>{}</dt><dd>{}</dd>\n\
<dt>{}</dt><dd><code>{}</code></dd>\n</dl>\n",
        html::label("错误代码", "Code"),
        html::esc(e.code),
        html::label("说明", "Message"),
        html::esc(&e.message),
        html::label("请求编号", "Request id"),
        html::esc(request_id),
    );
    let title = format!("{status} {reason}");
    (HTML, Bytes::from(html::page(("错误", &title), "", &main)))
}

/// Serve one console endpoint; the pipeline has admitted the caller.
pub(super) async fn serve(
    app: &App,
    org: &Arc<Organisation>,
    r: &Routed<'_>,
    body: &Bytes,
    draft: &mut AuditDraft,
) -> Result<Reply, ApiError> {
    match r.endpoint {
        Endpoint::ConsoleRoot => Ok(redirect("/console/")),
        Endpoint::ConsoleHome => Ok(page(search::home())),
        Endpoint::ConsoleSearch => search::search(app, body, draft).await,
        Endpoint::ConsoleEntry => pages::entry(app, r.param("seq")).await,
        Endpoint::ConsoleReports => reports::reports(app, None).await,
        Endpoint::ConsoleReportsRange => reports::reports(app, Some(body)).await,
        Endpoint::ConsoleOverdue => pages::overdue(app, org).await,
        Endpoint::ConsoleExportForm => Ok(page(pages::export_form())),
        Endpoint::ConsoleExport => pages::export(app, body).await,
        Endpoint::ConsoleAsset => match r.param("name") {
            "console.js" => Ok(raw(JS, Bytes::from_static(SCRIPT.as_bytes()))),
            "console.css" => Ok(raw(CSS, Bytes::from_static(STYLE.as_bytes()))),
            "favicon.svg" => Ok(raw(SVG, Bytes::from_static(ICON.as_bytes()))),
            _ => Err(ApiError::not_found("not_found", "no such console asset")),
        },
        _ => Err(ApiError::not_found("not_found", "no such console page")),
    }
}

/// The name of the registered organisation with this code ("" when unknown).
pub(super) fn org_name(app: &App, code: &str) -> String {
    crate::ids::CreditCode::parse(code)
        .ok()
        .and_then(|c| app.policy.organisation(&c).map(|o| o.name.clone()))
        .unwrap_or_default()
}

//! The auditor console (`/console/`) over real mutual TLS, on SQLite or
//! PostgreSQL (`CREDGATE_TEST_DATABASE_URL`): auditor only, HTML with a
//! strict Content-Security-Policy, the search by form with the subject
//! hashed server-side and paginated by form, hostile forms refused with
//! stable codes and audited, the entry page, reports, overdue objections,
//! and an export download that verifies offline. The same flows in a real
//! browser, with the proof verified in the page: `tests/console/browser.mjs`.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use credgate::audit::checkpoint::CheckpointVerifier;
use serde_json::json;

const FORM: &str = "application/x-www-form-urlencoded";
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

async fn form(gw: &TestGateway, who: &str, path: &str, body: &str) -> Resp {
    gw.client(who)
        .send("POST", path, Bytes::from(body.to_owned()), Some(FORM))
        .await
        .unwrap()
}

fn text(r: &Resp) -> String {
    String::from_utf8(r.bytes.to_vec()).unwrap()
}

/// The value of `<input type="hidden" name="NAME" value="…">` in `html`.
fn hidden(html: &str, name: &str) -> Option<String> {
    let marker = format!("<input type=\"hidden\" name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    Some(html[start..start + html[start..].find('"')?].to_owned())
}

async fn bank_queries(gw: &TestGateway, n: usize) {
    let c = gw.client("bank");
    for _ in 0..n {
        let q = query(
            "legal_person",
            ids::CERAMICS,
            "financing",
            &["enterprise_name"],
        );
        assert_eq!(c.post("/v1/query", &q).await.status, 200);
    }
}

async fn wait_for_checkpoint(gw: &TestGateway, size: u64) {
    for _ in 0..200 {
        let r = gw.client("auditor").get("/v1/audit/checkpoint").await;
        if r.body["tree_size"].as_u64().unwrap_or(0) >= size {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no checkpoint of size {size}");
}

#[tokio::test]
async fn console_pages_are_html_for_the_auditor_only_with_a_strict_csp() {
    let gw = TestGateway::start().await;
    let pages = [
        ("/console/", "console_home"),
        ("/console/entries/0", "console_entry"),
        ("/console/reports", "console_reports"),
        ("/console/objections/overdue", "console_overdue"),
        ("/console/export", "console_export_form"),
        ("/console/assets/console.js", "console_asset"),
        ("/console/assets/console.css", "console_asset"),
        ("/console/assets/favicon.svg", "console_asset"),
    ];
    let before = audit_entries(&gw.store).await.len();
    for (path, _) in pages {
        let r = gw.client("auditor").get(path).await;
        assert_eq!(r.status, 200, "{path}: {}", text(&r));
        let ctype = r.headers["content-type"].to_str().unwrap();
        let want = match path.rsplit_once('.').map(|(_, x)| x) {
            Some("js") => "text/javascript; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            Some("svg") => "image/svg+xml",
            _ => "text/html; charset=utf-8",
        };
        assert_eq!(ctype, want, "{path}");
        assert_eq!(r.headers["content-security-policy"], CSP, "{path}");
        assert_eq!(r.headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(r.headers["x-frame-options"], "DENY", "{path}");
        let body = text(&r);
        if want.starts_with("text/html") {
            assert_eq!(r.headers["cache-control"], "no-store", "{path}");
            assert!(body.starts_with("<!DOCTYPE html>"), "{path}");
            assert!(body.contains("审计控制台") && body.contains("auditor console"));
            assert!(!body.contains("<script>"), "{path}: inline script");
            assert!(!body.contains("style="), "{path}: inline style");
            assert!(
                !body.contains("http://") && !body.contains("https://"),
                "{path}: external reference"
            );
        }
    }
    let entries = audit_entries(&gw.store).await;
    let mine = &entries[before..];
    assert_eq!(mine.len(), pages.len(), "one entry per page");
    for ((path, action), e) in pages.iter().zip(mine) {
        assert_eq!((e.action.as_str(), e.status), (*action, 200), "{path}");
        assert_eq!(e.org.as_deref(), Some("113703000043000036"), "{path}");
    }

    // Every other role gets 403 role_not_permitted on every console route,
    // each audited under the route's action.
    let before = audit_entries(&gw.store).await.len();
    let mut sent = 0;
    for who in ["bank", "department", "agency", "portal"] {
        for (path, action) in pages {
            let r = gw.client(who).get(path).await;
            assert_eq!(r.status, 403, "{who} {path}");
            assert_eq!(
                r.body["error"]["code"], "role_not_permitted",
                "{who} {path}"
            );
            sent += 1;
            let e = audit_entries(&gw.store).await.pop().unwrap();
            assert_eq!((e.action.as_str(), e.status), (action, 403));
            assert_eq!(e.outcome, "role_not_permitted");
        }
        let r = form(&gw, who, "/console/search", "").await;
        assert_eq!(
            (r.status, r.body["error"]["code"].as_str()),
            (403, Some("role_not_permitted"))
        );
        sent += 1;
    }
    let r = gw.client("unregistered").get("/console/").await;
    assert_eq!(r.body["error"]["code"], "unregistered_organisation");
    sent += 1;
    assert_eq!(audit_entries(&gw.store).await.len() - before, sent);

    // No certificate: refused at the handshake, nothing audited.
    let before = audit_entries(&gw.store).await.len();
    let anon = Client::new(gw.addr, None);
    assert!(
        anon.send("GET", "/console/", Bytes::new(), None)
            .await
            .is_err()
    );
    assert_eq!(audit_entries(&gw.store).await.len(), before);
    gw.stop().await;
}

#[tokio::test]
async fn the_search_hashes_the_subject_server_side_and_pages_by_form() {
    let gw = TestGateway::start().await;
    bank_queries(&gw, 55).await;
    let subject_hash = audit_entries(&gw.store)
        .await
        .iter()
        .find(|e| e.action == "query")
        .and_then(|e| e.subject.clone())
        .unwrap();

    let body = format!(
        "org={}&subject_type=legal_person&subject_id={}&purpose=&action=query&decision=returned&outcome=ok&from=2000-01-01T00%3A00&to=",
        ids::BANK,
        ids::CERAMICS
    );
    let r = form(&gw, "auditor", "/console/search", &body).await;
    assert_eq!(r.status, 200, "{}", text(&r));
    let html = text(&r);
    assert!(html.contains("id=\"result-count\">50<"), "a page holds 50");
    assert_eq!(html.matches("class=\"entry-link\"").count(), 50);
    assert!(html.contains(&subject_hash), "the page shows the hash");
    assert!(
        !html.contains(ids::CERAMICS),
        "the page never repeats the subject id"
    );
    // The next page's form carries the hash and the cursor, not the id.
    assert_eq!(
        hidden(&html, "subject_hash").as_deref(),
        Some(&*subject_hash)
    );
    let after = hidden(&html, "after").unwrap();
    let mut next = form_urlencoded::Serializer::new(String::new());
    for name in [
        "org",
        "action",
        "decision",
        "outcome",
        "from",
        "subject_hash",
        "after",
    ] {
        if let Some(v) = hidden(&html, name) {
            next.append_pair(name, &v.replace("&amp;", "&"));
        }
    }
    let r = form(&gw, "auditor", "/console/search", &next.finish()).await;
    assert_eq!(r.status, 200, "{}", text(&r));
    let page2 = text(&r);
    assert!(
        page2.contains("id=\"result-count\">5<"),
        "the rest: {after}"
    );
    assert!(
        !page2.contains("id=\"next-page\""),
        "no page after the last"
    );

    // Both look-ups are audited, the first with the subject (hashed).
    let entries = audit_entries(&gw.store).await;
    let searches: Vec<_> = entries
        .iter()
        .filter(|e| e.action == "console_search")
        .collect();
    assert_eq!(searches.len(), 2);
    assert_eq!(searches[0].subject.as_deref(), Some(&*subject_hash));
    assert_eq!(searches[0].subject_type.as_deref(), Some("legal_person"));
    assert!(
        searches
            .iter()
            .all(|e| e.status == 200 && e.outcome == "ok")
    );
    gw.stop().await;
}

#[tokio::test]
async fn hostile_forms_are_refused_with_stable_codes_and_audited() {
    let gw = TestGateway::start().await;
    let long = format!("org={}", "A".repeat(257));
    #[rustfmt::skip]
    let cases: Vec<(&str, String, Option<&str>, u16, &str)> = vec![
        ("/console/search", "".into(), Some(FORM), 400, "malformed_form"),
        ("/console/export", "".into(), Some(FORM), 400, "malformed_form"),
        ("/console/search", "org=a&org=b".into(), Some(FORM), 400, "duplicate_form_field"),
        ("/console/search", "action=&action=".into(), Some(FORM), 400, "duplicate_form_field"),
        ("/console/search", "limit=1000".into(), Some(FORM), 400, "unknown_form_field"),
        ("/console/search", "subject=x".into(), Some(FORM), 400, "unknown_form_field"),
        ("/console/search", "org=\u{5c71}".into(), Some(FORM), 400, "malformed_form"),
        ("/console/search", "org=%FF%FE".into(), Some(FORM), 400, "malformed_form"),
        ("/console/search", long, Some(FORM), 400, "invalid_request"),
        ("/console/search", "{\"org\":\"x\"}".into(), Some("application/json"), 415, "unsupported_media_type"),
        ("/console/search", "org=91370300164100001B".into(), Some(FORM), 400, "invalid_identifier"),
        ("/console/search", "subject_id=123".into(), Some(FORM), 400, "invalid_identifier"),
        ("/console/search", "subject_type=robot&subject_id=x".into(), Some(FORM), 400, "invalid_request"),
        ("/console/search", "decision=maybe".into(), Some(FORM), 400, "invalid_request"),
        ("/console/search", "action=DROP%20TABLE".into(), Some(FORM), 400, "invalid_request"),
        ("/console/search", "from=yesterday".into(), Some(FORM), 400, "invalid_timestamp"),
        ("/console/search", "from=2026-11-24T00%3A00&to=2026-11-23T00%3A00".into(), Some(FORM), 400, "invalid_range"),
        ("/console/search", "after=-1".into(), Some(FORM), 400, "invalid_request"),
        ("/console/search", "after=%20".into(), Some(FORM), 400, "invalid_request"),
        ("/console/reports", "top=5".into(), Some(FORM), 400, "unknown_form_field"),
        ("/console/reports", "from=2026-11-23".into(), Some(FORM), 400, "invalid_timestamp"),
        ("/console/export", "format=xml".into(), Some(FORM), 400, "invalid_request"),
        ("/console/export", "from_seq=0&from=2026-11-23T00%3A00".into(), Some(FORM), 400, "invalid_request"),
        ("/console/export", "to_seq=99999999".into(), Some(FORM), 400, "invalid_range"),
    ];
    // The export cases need a signed checkpoint to get past.
    assert_eq!(gw.client("auditor").get("/console/").await.status, 200);
    wait_for_checkpoint(&gw, 1).await;
    let before = audit_entries(&gw.store).await.len();
    for (i, (path, body, ctype, status, code)) in cases.iter().enumerate() {
        let r = gw
            .client("auditor")
            .send("POST", path, Bytes::from(body.clone()), *ctype)
            .await
            .unwrap();
        assert_eq!(r.status, *status, "case {i} {path} {body}: {}", r.body);
        assert_eq!(r.body["error"]["code"], *code, "case {i} {path} {body}");
        let e = audit_entries(&gw.store).await.pop().unwrap();
        assert_eq!((e.status, e.outcome.as_str()), (*status, *code), "case {i}");
        assert!(e.action.starts_with("console_"), "case {i}: {}", e.action);
    }
    // A query string, a page that does not exist.
    let r = gw.client("auditor").get("/console/?subject_id=1").await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (400, Some("invalid_request"))
    );
    for path in [
        "/console/entries/999999",
        "/console/entries/abc",
        "/console/entries/-1",
    ] {
        let r = gw.client("auditor").get(path).await;
        assert_eq!(
            (r.status, r.body["error"]["code"].as_str()),
            (404, Some("not_found")),
            "{path}"
        );
    }
    let r = gw.client("auditor").get("/console/assets/secret.txt").await;
    assert_eq!(r.status, 404);
    // One entry per request, nothing else written.
    assert_eq!(
        audit_entries(&gw.store).await.len() - before,
        cases.len() + 5
    );
    gw.stop().await;
}

#[tokio::test]
async fn entry_reports_overdue_and_an_export_that_verifies() {
    let gw = TestGateway::start().await;
    bank_queries(&gw, 3).await;
    let entries = audit_entries(&gw.store).await;
    let first = gw.store.audit_entry(0).await.unwrap().unwrap();
    let canonical = String::from_utf8(first).unwrap();

    // The entry page holds the exact canonical text (escaped) the leaf hashes.
    let r = gw.client("auditor").get("/console/entries/0").await;
    let html = text(&r);
    let escaped = canonical.replace('&', "&amp;").replace('"', "&quot;");
    assert!(html.contains(&format!("<pre id=\"canonical\">{escaped}</pre>")));
    assert!(html.contains("data-seq=\"0\""));
    assert!(html.contains(&entries[0].request_id));

    let r = gw.client("auditor").get("/console/reports").await;
    let html = text(&r);
    for id in ["chart-timeline", "chart-volume", "chart-subjects"] {
        assert!(html.contains(&format!("<svg id=\"{id}\"")), "{id}");
    }
    assert!(html.contains(ids::BANK), "the bank is in the volume chart");
    let r = form(
        &gw,
        "auditor",
        "/console/reports",
        "from=2026-01-01T00%3A00&to=",
    )
    .await;
    assert_eq!(r.status, 200, "{}", text(&r));
    let r = gw
        .client("auditor")
        .get("/console/objections/overdue")
        .await;
    assert_eq!(r.status, 200);
    assert!(text(&r).contains("id=\"overdue-count\""));

    let size = audit_entries(&gw.store).await.len() as u64;
    wait_for_checkpoint(&gw, size).await;
    let verifier = CheckpointVerifier::from_verifier_key(&gw.verifier_key).unwrap();
    for (format, ctype, file) in [
        (
            "jsonl",
            "application/x-ndjson; charset=utf-8",
            "credgate-audit.jsonl",
        ),
        (
            "csv",
            "text/csv; charset=utf-8; header=present",
            "credgate-audit.csv",
        ),
    ] {
        let r = form(
            &gw,
            "auditor",
            "/console/export",
            &format!("format={format}&from_seq=0"),
        )
        .await;
        assert_eq!(r.status, 200, "{}", text(&r));
        assert_eq!(r.headers["content-type"], ctype);
        assert_eq!(
            r.headers["content-disposition"],
            format!("attachment; filename=\"{file}\"").as_str()
        );
        assert_eq!(r.headers["cache-control"], "no-store");
        let report = credgate::audit::verify::verify_export(&r.bytes[..], &verifier, None)
            .unwrap_or_else(|e| panic!("{format}: {e}"));
        assert_eq!(report.start, 0);
        assert!(report.end >= size, "{format}: {} < {size}", report.end);
    }
    let exports: Vec<_> = audit_entries(&gw.store)
        .await
        .into_iter()
        .filter(|e| e.action == "console_export")
        .collect();
    assert_eq!(exports.len(), 2);
    // The JSON API answers the same entries the page shows.
    let r = gw
        .client("auditor")
        .post("/v1/audit/search", &json!({"action": "console_export"}))
        .await;
    assert_eq!(r.body["entries"].as_array().unwrap().len(), 2);
    gw.stop().await;
}

/// A request as a browser sends it: `Accept: text/html,…`, or `accept`.
async fn browser(
    gw: &TestGateway,
    who: &str,
    method: &str,
    path: &str,
    form_body: Option<&str>,
    accept: &str,
) -> (u16, hyper::HeaderMap, String) {
    use http_body_util::{BodyExt, Full};
    let c = certs();
    let (cert, key) = (
        c.join(format!("{who}.pem")),
        c.join(format!("{who}-key.pem")),
    );
    let tls =
        credgate::tls::client_config(&c.join("ca.pem"), Some((cert.as_path(), key.as_path())))
            .unwrap();
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .unwrap();
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .header("accept", accept);
    if form_body.is_some() {
        req = req.header("content-type", FORM);
    }
    let body = Bytes::from(form_body.unwrap_or_default().to_owned());
    let resp = send
        .send_request(req.body(Full::new(body)).unwrap())
        .await
        .unwrap();
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8(bytes.to_vec()).unwrap())
}

/// Who, method, path, form body, status, code.
type Case = (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    u16,
    &'static str,
);

/// `/console` redirects (308) to `/console/`, admitted and audited like any
/// console page; a browser's refusals on console paths are small HTML pages
/// with the same stable code (and the request id of their entry), while
/// clients that do not ask for HTML, and the API, keep the JSON envelope.
#[tokio::test]
async fn console_errors_are_pages_for_browsers_and_the_bare_path_redirects() {
    let gw = TestGateway::start().await;
    const BROWSER: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    let (status, h, _) = browser(&gw, "auditor", "GET", "/console", None, BROWSER).await;
    assert_eq!(
        (status, h["location"].to_str().unwrap()),
        (308, "/console/")
    );
    let e = audit_entries(&gw.store).await.pop().unwrap();
    assert_eq!((e.action.as_str(), e.status), ("console_root", 308));
    let r = gw.client("bank").get("/console").await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (403, Some("role_not_permitted"))
    );

    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("bank", "GET", "/console/", None, 403, "role_not_permitted"),
        ("bank", "GET", "/console", None, 403, "role_not_permitted"),
        ("unregistered", "GET", "/console/reports", None, 403, "unregistered_organisation"),
        ("auditor", "GET", "/console/nope", None, 404, "not_found"),
        ("auditor", "GET", "/console/entries/999999", None, 404, "not_found"),
        ("auditor", "DELETE", "/console/", None, 405, "method_not_allowed"),
        ("auditor", "POST", "/console/search", Some("subject=x"), 400, "unknown_form_field"),
        ("auditor", "POST", "/console/search", Some("org=a&org=b"), 400, "duplicate_form_field"),
    ];
    for (who, method, path, body, status, code) in cases {
        let (s, h, page) = browser(&gw, who, method, path, body, BROWSER).await;
        let what = format!("{who} {method} {path}");
        assert_eq!(s, status, "{what}: {page}");
        assert_eq!(h["content-type"], "text/html; charset=utf-8", "{what}");
        assert_eq!(h["content-security-policy"], CSP, "{what}");
        assert_eq!(h["cache-control"], "no-store", "{what}");
        assert!(page.starts_with("<!DOCTYPE html>"), "{what}: {page}");
        assert!(
            page.contains(&format!("<code class=\"code\">{code}</code>")),
            "{what}: {page}"
        );
        assert!(
            !page.contains("<script>") && !page.contains("style="),
            "{what}"
        );
        let e = audit_entries(&gw.store).await.pop().unwrap();
        assert_eq!((e.status, e.outcome.as_str()), (status, code), "{what}");
        let id = h["x-request-id"].to_str().unwrap();
        assert_eq!(e.request_id, id, "{what}");
        assert!(page.contains(id), "{what}: the page shows the request id");
        assert!(h["x-audit-seq"].to_str().unwrap().parse::<u64>().is_ok());
    }
    // No HTML asked for (or refused with q=0): JSON, as before; the API
    // stays JSON whatever the Accept header says.
    for (path, accept) in [
        ("/console/nope", "application/json"),
        ("/console/nope", "text/html;q=0, application/json"),
        ("/v1/nope", BROWSER),
    ] {
        let (s, h, body) = browser(&gw, "auditor", "GET", path, None, accept).await;
        assert_eq!(
            (s, h["content-type"].to_str().unwrap()),
            (404, "application/json"),
            "{path} {accept}"
        );
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["code"], "not_found");
    }
    gw.stop().await;
}

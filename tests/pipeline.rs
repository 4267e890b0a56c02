//! The request pipeline's promise, tried as an attacker and a clumsy client
//! would: every request after the handshake gets exactly one audit entry,
//! whatever the client does, and nothing a request changes is stored
//! without its entry.
//!
//! Over real mTLS, on SQLite or (with `CREDGATE_TEST_DATABASE_URL`)
//! PostgreSQL. The long hang-up drill is `--ignored`.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use credgate::audit::AuditEntry;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn fingerprint_of(pem_path: &Path) -> String {
    let pem = std::fs::read(pem_path).unwrap();
    let der = rustls_pki_types::pem::PemObject::from_pem_slice(&pem)
        .map(|c: rustls_pki_types::CertificateDer<'static>| c.to_vec())
        .unwrap();
    credgate::identity::fingerprint(&der)
}

async fn log_size(gw: &TestGateway) -> u64 {
    gw.store.log_head().await.unwrap().0
}

/// Wait until the log and the record count stop changing (detached request
/// tasks and rejections audited after the connection closed), then return
/// the log size.
///
/// A drill can leave a backlog of detached requests longer than the
/// store's pool timeout (900 hang-ups of 200 records each, 180,000 inserts
/// through four connections, take about 30 s in a debug build): a count
/// that times out waiting for a connection means "not settled yet", until
/// an overall deadline.
async fn settle(gw: &TestGateway) -> u64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    let mut last = (u64::MAX, -1);
    loop {
        let size = log_size(gw).await;
        match gw.store.record_count().await {
            Ok(n) if (size, n) == last => return size,
            Ok(n) => last = (size, n),
            Err(e) => assert!(
                std::time::Instant::now() < deadline,
                "the store stayed busy past the deadline: {e}"
            ),
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the log never settled"
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// [`settle`], once the log holds at least `size` entries: a quiet spell
/// of 150 ms alone can come before the first entry on a slow disk (the
/// first group commit also writes the WAL's preallocated zeros), and the
/// drill then read an empty log. Extra entries still show: `settle` waits
/// for the log to stop growing.
async fn settle_at_least(gw: &TestGateway, size: u64) -> u64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    while log_size(gw).await < size {
        assert!(
            std::time::Instant::now() < deadline,
            "the log never reached {size} entries"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    settle(gw).await
}

async fn entries_after(gw: &TestGateway, size: u64) -> Vec<AuditEntry> {
    audit_entries(&gw.store)
        .await
        .into_iter()
        .skip(size as usize)
        .collect()
}

/// Send raw bytes on a fresh HTTP/1.1 mTLS connection and read what comes
/// back until the server closes (or 3 s pass).
async fn raw_exchange(gw: &TestGateway, who: &str, bytes: &[u8]) -> String {
    let mut s = connect_tls(gw.addr, tls_config(who, &[b"http/1.1"])).await;
    let _ = s.write_all(bytes).await;
    let _ = s.flush().await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A header of the first response head in `resp`.
fn header_of<'a>(resp: &'a str, name: &str) -> Option<&'a str> {
    let head = resp.split("\r\n\r\n").next()?;
    head.split("\r\n").skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

fn status_line(resp: &str) -> u16 {
    resp.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn requests_the_http_layer_refuses_are_each_audited_once() {
    let gw = TestGateway::start().await;
    let fp = fingerprint_of(&certs().join("bank.pem"));
    let big_header = format!(
        "GET /v1/query HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(500 << 10)
    );
    let many_headers = format!(
        "GET /v1/query HTTP/1.1\r\nhost: x\r\n{}\r\n",
        (0..150)
            .map(|i| format!("x-h{i}: v\r\n"))
            .collect::<String>()
    );
    let long_uri = format!("GET /{} HTTP/1.1\r\nhost: x\r\n\r\n", "a".repeat(70 << 10));
    #[rustfmt::skip]
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("bad request line", b"GARBAGE\r\n\r\n".to_vec(), 400, "invalid_method"),
        ("500 KB header", big_header.into_bytes(), 431, "headers_too_large"),
        ("150 headers", many_headers.into_bytes(), 431, "headers_too_large"),
        ("70 KB URI", long_uri.into_bytes(), 414, "uri_too_long"),
        ("two content-lengths", b"POST /v1/query HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\n{}".to_vec(), 400, "invalid_content_length"),
        ("content-length abc", b"POST /v1/query HTTP/1.1\r\nhost: x\r\ncontent-length: abc\r\n\r\n".to_vec(), 400, "invalid_content_length"),
        ("transfer-encoding xchunked", b"POST /v1/query HTTP/1.1\r\nhost: x\r\ntransfer-encoding: xchunked\r\n\r\n".to_vec(), 400, "invalid_transfer_encoding"),
        ("NUL in a header", b"GET /v1/query HTTP/1.1\r\nhost: x\r\nx-a: a\0b\r\n\r\n".to_vec(), 400, "invalid_header"),
        ("obs-fold", b"GET /v1/query HTTP/1.1\r\nhost: x\r\nx-a: a\r\n b\r\n\r\n".to_vec(), 400, "invalid_header"),
        ("HTTP/2 preface on HTTP/1.1", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(), 0, "http2_preface_on_http1"),
    ];
    for (what, bytes, status, outcome) in cases {
        let before = settle(&gw).await;
        let resp = raw_exchange(&gw, "bank", &bytes).await;
        assert_eq!(
            status_line(&resp),
            status,
            "{what}: status sent: {resp:.200}"
        );
        let after = settle(&gw).await;
        assert_eq!(after, before + 1, "{what}: exactly one entry");
        let e = &entries_after(&gw, before).await[0];
        assert_eq!(e.action, "malformed_http", "{what}");
        assert_eq!(e.outcome, outcome, "{what}");
        assert_eq!(e.status, status, "{what}");
        assert_eq!(e.cert_fp.as_deref(), Some(fp.as_str()), "{what}");
        assert_eq!(e.org.as_deref(), Some(ids::BANK), "{what}");
        // The id the client can quote is the one the log holds.
        let sent = header_of(&resp, "x-request-id");
        if status == 0 {
            assert_eq!(sent, None, "{what}");
        } else {
            assert_eq!(sent, Some(e.request_id.as_str()), "{what}: {resp:.300}");
        }
    }
    // On a keep-alive connection after an answered request: that one keeps
    // its own id, the refused one gets the rejection's.
    let before = settle(&gw).await;
    let mut s = connect_tls(gw.addr, tls_config("bank", &[b"http/1.1"])).await;
    s.write_all(b"GET /v1/nope HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.write_all(b"GARBAGE\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out)).await;
    let resp = String::from_utf8_lossy(&out).into_owned();
    assert_eq!(settle(&gw).await, before + 2, "{resp:.300}");
    let two = entries_after(&gw, before).await;
    let (first, second) = resp.split_at(resp.rfind("HTTP/1.1 400").expect("a 400 after the 404"));
    assert_eq!(status_line(first), 404, "{first:.300}");
    assert_eq!(
        header_of(first, "x-request-id"),
        Some(two[0].request_id.as_str())
    );
    assert_eq!(two[1].outcome, "invalid_method");
    assert_eq!(
        header_of(second, "x-request-id"),
        Some(two[1].request_id.as_str())
    );
    // Pipelined: the refused head arrives with the answered request (one
    // read) and is still one entry, with the id hyper's 400 carries.
    let before = settle(&gw).await;
    let resp = raw_exchange(
        &gw,
        "bank",
        b"GET /v1/nope HTTP/1.1\r\nhost: x\r\n\r\nGARBAGE\r\n\r\n",
    )
    .await;
    assert_eq!(settle(&gw).await, before + 2, "{resp:.300}");
    let two = entries_after(&gw, before).await;
    let (first, second) = resp.split_at(resp.rfind("HTTP/1.1 400").expect("a 400 after the 404"));
    assert_eq!(
        header_of(first, "x-request-id"),
        Some(two[0].request_id.as_str())
    );
    assert_eq!(
        (two[1].action.as_str(), two[1].outcome.as_str()),
        ("malformed_http", "invalid_method")
    );
    assert_eq!(
        header_of(second, "x-request-id"),
        Some(two[1].request_id.as_str())
    );
    let (_, metrics) = gw.admin_get("/metrics").await;
    assert!(
        metrics.contains("credgate_http_rejections_total{reason=\"uri_too_long\"} 1"),
        "{metrics}"
    );
    // A connection that sends nothing and closes is not a request.
    let before = settle(&gw).await;
    let mut s = connect_tls(gw.addr, tls_config("bank", &[])).await;
    s.shutdown().await.unwrap();
    drop(s);
    assert_eq!(settle(&gw).await, before);
    gw.stop().await;
}

#[tokio::test]
async fn stalled_heads_and_bodies_time_out_and_are_audited() {
    let gw = TestGateway::start_with(
        |c| {
            c.server.header_timeout_ms = 300;
            c.server.body_timeout_ms = 300;
            c.server.idle_timeout_ms = 60_000;
        },
        true,
    )
    .await;
    // A body that never arrives: 408, audited, connection closed.
    let before = settle(&gw).await;
    let started = std::time::Instant::now();
    let resp = raw_exchange(
        &gw,
        "bank",
        b"POST /v1/query HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"subject\":",
    )
    .await;
    assert_eq!(status_line(&resp), 408, "{resp}");
    assert!(
        resp.to_ascii_lowercase().contains("connection: close"),
        "{resp}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(settle(&gw).await, before + 1);
    let e = &entries_after(&gw, before).await[0];
    assert_eq!(
        (e.action.as_str(), e.outcome.as_str(), e.status),
        ("query", "body_timeout", 408)
    );

    // A head that never completes, on the first request and on a keep-alive
    // one: the connection is closed and the attempt audited.
    for keep_alive_first in [false, true] {
        let before = settle(&gw).await;
        let mut s = connect_tls(gw.addr, tls_config("bank", &[b"http/1.1"])).await;
        if keep_alive_first {
            let q = query(
                "legal_person",
                ids::CERAMICS,
                "financing",
                &["enterprise_name"],
            )
            .to_string();
            s.write_all(format!("POST /v1/query HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{q}", q.len()).as_bytes()).await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).await.unwrap();
            assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        }
        s.write_all(b"GET /v1/query HTTP/1.1\r\nhost: x\r\nx-slow: ")
            .await
            .unwrap();
        let mut out = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        assert!(closed.is_ok(), "the stalled head is cut off");
        let want = before + 1 + u64::from(keep_alive_first);
        assert_eq!(settle(&gw).await, want);
        let last = entries_after(&gw, want - 1).await.remove(0);
        assert_eq!(
            (last.action.as_str(), last.outcome.as_str()),
            ("malformed_http", "header_timeout")
        );
    }
    gw.stop().await;
}

#[tokio::test]
async fn a_panicking_handler_is_answered_500_and_audited() {
    let dir = TempDir::new("panic");
    let (url, pg) = test_database(&dir.0).await;
    let cfg = config(&dir.0, &url);
    let gw = TestGateway::start_prepared(cfg, dir, pg, true, |g| {
        g.app()
            .fault_injection
            .store(true, std::sync::atomic::Ordering::Relaxed);
    })
    .await;
    let before = settle(&gw).await;
    let mut s = connect_tls(gw.addr, tls_config("bank", &[b"http/1.1"])).await;
    s.write_all(b"GET /v1/query HTTP/1.1\r\nhost: x\r\nx-credgate-fault: panic\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    let resp = String::from_utf8_lossy(&buf[..n]);
    assert!(resp.starts_with("HTTP/1.1 500"), "{resp}");
    assert!(resp.contains("internal_error"), "{resp}");
    assert!(resp.to_ascii_lowercase().contains("x-audit-seq"), "{resp}");
    assert_eq!(settle(&gw).await, before + 1);
    let e = &entries_after(&gw, before).await[0];
    assert_eq!((e.status, e.outcome.as_str()), (500, "internal_error"));
    // The gateway keeps serving.
    let r = gw
        .client("bank")
        .post(
            "/v1/query",
            &query(
                "legal_person",
                ids::CERAMICS,
                "financing",
                &["enterprise_name"],
            ),
        )
        .await;
    assert_eq!(r.status, 200);
    let (_, metrics) = gw.admin_get("/metrics").await;
    assert!(
        metrics.contains("credgate_handler_panics_total 1"),
        "{metrics}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn duplicate_keys_are_refused_in_every_body_and_nothing_is_stored() {
    let gw = TestGateway::start().await;
    let rec = |fields: Value| {
        format!(
            r#"{{"subject":{{"type":"legal_person","id":"{}"}},"item":"admin_licence","fields":{fields}}}"#,
            ids::CHEM
        )
    };
    let smuggle = format!(
        r#"{{"records":[{}],"records":[{}]}}"#,
        rec(json!({"licence_no": "X1", "religion": "x"})),
        rec(json!({"licence_no": "X2"}))
    );
    let nested = format!(
        r#"{{"records":[{}]}}"#,
        rec(json!({"licence_no": "X3"})).replace(
            r#""licence_no":"X3""#,
            r#""licence_no":"X3","licence_no":"X4""#
        )
    );
    let cases: Vec<(&str, &str, String, &str)> = vec![
        ("department", "/v1/records", smuggle, "records"),
        ("department", "/v1/records", nested, "licence_no"),
        (
            "bank",
            "/v1/query",
            format!(
                r#"{{"subject":{{"type":"legal_person","id":"{0}","id":"{0}"}},"purpose":"financing","fields":["enterprise_name"]}}"#,
                ids::CERAMICS
            ),
            "id",
        ),
        (
            "auditor",
            "/v1/audit/search",
            r#"{"limit":1,"limit":2}"#.into(),
            "limit",
        ),
        (
            "portal",
            "/v1/objections",
            r#"{"record_id":1,"record_id":2,"reason":"x"}"#.into(),
            "record_id",
        ),
    ];
    let records = gw.store.record_count().await.unwrap();
    for (who, path, body, key) in cases {
        let before = settle(&gw).await;
        let r = gw
            .client(who)
            .send("POST", path, Bytes::from(body), Some("application/json"))
            .await
            .unwrap();
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        assert_eq!(r.body["error"]["code"], "duplicate_key", "{path}");
        assert_eq!(r.body["error"]["details"]["key"], key, "{path}");
        assert_eq!(settle(&gw).await, before + 1, "{path}: audited once");
        let e = &entries_after(&gw, before).await[0];
        assert_eq!((e.status, e.outcome.as_str()), (400, "duplicate_key"));
    }
    assert_eq!(
        gw.store.record_count().await.unwrap(),
        records,
        "nothing stored"
    );
    gw.stop().await;
}

#[tokio::test]
async fn http2_by_alpn_multiplexes_with_one_entry_per_request() {
    let gw = TestGateway::start().await;
    let before = settle(&gw).await;
    let s = connect_tls(gw.addr, tls_config("bank", &[b"h2", b"http/1.1"])).await;
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(s))
        .await
        .unwrap();
    tokio::spawn(conn);
    let body = query(
        "legal_person",
        ids::CERAMICS,
        "financing",
        &["enterprise_name"],
    )
    .to_string();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let mut send = send.clone();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let req = hyper::Request::post("https://localhost/v1/query")
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body)))
                .unwrap();
            let resp = send.send_request(req).await.unwrap();
            assert_eq!(resp.version(), hyper::Version::HTTP_2);
            let status = resp.status().as_u16();
            let seq = resp.headers()["x-audit-seq"].to_str().unwrap().to_owned();
            let b = resp.into_body().collect().await.unwrap().to_bytes();
            let v: Value = serde_json::from_slice(&b).unwrap();
            (status, seq, v)
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        let (status, seq, v) = t.await.unwrap();
        assert_eq!(status, 200, "{v}");
        assert_eq!(
            decisions(&v),
            vec![(
                "enterprise_name".into(),
                "returned".into(),
                "authorised".into()
            )]
        );
        seqs.push(seq);
    }
    seqs.sort();
    seqs.dedup();
    assert_eq!(seqs.len(), 20, "one distinct entry per stream");
    assert_eq!(settle(&gw).await, before + 20);
    gw.stop().await;
}

#[tokio::test]
async fn a_certificate_without_an_organisation_gets_401_with_its_fingerprint() {
    let gw = TestGateway::start().await;
    let dir = TempDir::new("noorg");
    let c = certs();
    let ca_key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(c.join("ca-key.pem")).unwrap()).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(
        &std::fs::read_to_string(c.join("ca.pem")).unwrap(),
        ca_key,
    )
    .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Display Name Only");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.0.join("noorg.pem"), cert.pem()).unwrap();
    std::fs::write(dir.0.join("noorg-key.pem"), key.serialize_pem()).unwrap();
    let cfg = Arc::new(
        (*credgate::tls::client_config(
            &c.join("ca.pem"),
            Some((
                dir.0.join("noorg.pem").as_path(),
                dir.0.join("noorg-key.pem").as_path(),
            )),
        )
        .unwrap())
        .clone(),
    );
    let before = settle(&gw).await;
    let mut s = connect_tls(gw.addr, cfg).await;
    s.write_all(b"GET /v1/query HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 401"));
    assert_eq!(settle(&gw).await, before + 1);
    let e = &entries_after(&gw, before).await[0];
    assert_eq!(e.outcome, "no_identity");
    assert_eq!(e.org, None);
    assert_eq!(e.cert_fp, Some(fingerprint_of(&dir.0.join("noorg.pem"))));
    gw.stop().await;
}

/// How the client leaves after sending its complete request.
#[derive(Debug, Clone, Copy)]
enum HangUp {
    /// TCP FIN without close_notify.
    Fin,
    /// TCP RST (SO_LINGER 0).
    Rst,
    /// TLS close_notify, then FIN.
    CloseNotify,
}

async fn hang_up_drill(attempts: usize, per_batch: usize) {
    let gw = TestGateway::start().await;
    let cfg = tls_config("department", &[b"http/1.1"]);
    let kinds = [HangUp::Fin, HangUp::Rst, HangUp::CloseNotify];
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..attempts {
        let batch = i + 1;
        let records: Vec<Value> = (0..per_batch)
            .map(|r| {
                json!({"subject": {"type": "legal_person", "id": ids::CHEM},
                       "item": "admin_licence", "fields": {"licence_no": format!("H{batch}-{r}")}})
            })
            .collect();
        let body = json!({ "records": records }).to_string();
        let req = format!(
            "POST /v1/records HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let kind = kinds[i % 3];
        let delay = Duration::from_micros((i as u64 * 7919) % 10_000);
        let mut s = connect_tls(gw.addr, cfg.clone()).await;
        tasks.spawn(async move {
            s.write_all(req.as_bytes()).await.unwrap();
            s.flush().await.unwrap();
            tokio::time::sleep(delay).await;
            match kind {
                HangUp::CloseNotify => {
                    let _ = s.shutdown().await;
                }
                HangUp::Fin => {
                    let (mut tcp, _) = s.into_inner();
                    let _ = tcp.shutdown().await;
                }
                HangUp::Rst => {
                    let (tcp, _) = s.into_inner();
                    let _ = tcp.set_zero_linger();
                    drop(tcp);
                }
            }
        });
        // A few in flight at once, as a busy department would have.
        while tasks.len() >= 8 {
            tasks.join_next().await;
        }
    }
    while tasks.join_next().await.is_some() {}
    settle_at_least(&gw, attempts as u64).await;
    let stored: HashMap<String, i64> = gw
        .store
        .records_per_request()
        .await
        .unwrap()
        .into_iter()
        .collect();
    let entries = audit_entries(&gw.store).await;
    let mut by_request: HashMap<&str, Vec<&AuditEntry>> = HashMap::new();
    for e in &entries {
        by_request.entry(e.request_id.as_str()).or_default().push(e);
    }
    assert!(
        by_request.values().all(|v| v.len() == 1),
        "a request id with two entries"
    );
    // Every stored record has exactly one entry, an ok submission naming its count.
    let seeded = stored
        .keys()
        .filter(|k| !by_request.contains_key(k.as_str()))
        .count();
    assert!(
        seeded <= 1,
        "records without an audit entry: {seeded} request ids"
    );
    for (rid, n) in &stored {
        if let Some(es) = by_request.get(rid.as_str()) {
            let e = es[0];
            assert_eq!(
                (e.action.as_str(), e.outcome.as_str()),
                ("submit_records", "ok"),
                "{rid}"
            );
            assert_eq!(i64::from(e.records), *n, "{rid}");
        }
    }
    // Every ok submission entry has its records stored.
    let subs: Vec<&AuditEntry> = entries
        .iter()
        .filter(|e| e.action == "submit_records")
        .collect();
    for e in &subs {
        if e.outcome == "ok" {
            assert_eq!(
                stored.get(&e.request_id).copied(),
                Some(i64::from(e.records)),
                "{}",
                e.request_id
            );
        } else {
            assert!(!stored.contains_key(&e.request_id));
        }
    }
    // Each attempt is exactly one entry: its submission, or, where the
    // client's RST destroyed bytes the server had not read yet, the
    // incomplete request.
    let rest: Vec<&AuditEntry> = entries
        .iter()
        .filter(|e| e.action != "submit_records")
        .collect();
    assert!(
        rest.iter()
            .all(|e| e.action == "malformed_http" && e.outcome == "incomplete_request"),
        "{:?}",
        rest.iter()
            .map(|e| (&e.action, &e.outcome))
            .collect::<Vec<_>>()
    );
    assert_eq!(entries.len(), attempts, "one entry per attempt");
    assert!(
        subs.len() * 3 >= attempts * 2,
        "most submissions arrived whole: {}",
        subs.len()
    );
    gw.stop().await;
}

#[tokio::test]
async fn hang_ups_after_the_body_never_leave_records_without_entries() {
    hang_up_drill(300, 20).await;
}

#[tokio::test]
#[ignore = "long drill: cargo test --test pipeline -- --ignored (DRILL_HANGUPS=3000 for more)"]
async fn hang_up_drill_long() {
    let attempts = std::env::var("DRILL_HANGUPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(900);
    hang_up_drill(attempts, 200).await;
}

#[tokio::test]
async fn refusals_come_in_one_order_and_roles_are_policy_data() {
    // A copy of the sample policies where banks may no longer query.
    let pol = TempDir::new("access");
    for entry in std::fs::read_dir(policies()).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, pol.0.join(p.file_name().unwrap())).unwrap();
    }
    let access = pol.0.join("access.toml");
    let text = std::fs::read_to_string(&access).unwrap();
    std::fs::write(
        &access,
        text.replacen(
            r#"query = ["department", "bank", "credit_agency", "portal"]"#,
            r#"query = ["department", "credit_agency", "portal"]"#,
            1,
        ),
    )
    .unwrap();
    let dir = pol.0.clone();
    let gw = TestGateway::start_with(move |c| c.policy.dir = dir, true).await;
    let q = Bytes::from(
        query(
            "legal_person",
            ids::CERAMICS,
            "financing",
            &["enterprise_name"],
        )
        .to_string(),
    );
    let send = |who: &'static str, method: &'static str, path: &'static str| {
        let c = gw.client(who);
        let q = q.clone();
        async move {
            c.send(method, path, q, Some("application/json"))
                .await
                .unwrap()
        }
    };
    // 404 before 405 before the role; 401/403 identity first (unregistered
    // organisations are tested in tests/gateway.rs).
    let r = send("bank", "GET", "/v1/nothing").await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let r = send("bank", "DELETE", "/v1/query").await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (405, Some("method_not_allowed"))
    );
    assert_eq!(r.headers["allow"], "POST");
    let r = send("auditor", "GET", "/v1/lists/red").await;
    assert_eq!(r.status, 405, "405 comes before the role check");
    assert_eq!(r.headers["allow"], "POST");
    let r = send("bank", "POST", "/v1/query").await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (403, Some("role_not_permitted"))
    );
    assert_eq!(
        r.body["error"]["message"],
        "this endpoint is for department or credit_agency or portal"
    );
    let r = send("department", "POST", "/v1/query").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = send("auditor", "GET", "/v1/audit/checkpoint?x=1").await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (400, Some("invalid_request"))
    );
    let entries = audit_entries(&gw.store).await;
    let got: Vec<(&str, &str, u16)> = entries
        .iter()
        .map(|e| (e.action.as_str(), e.outcome.as_str(), e.status))
        .collect();
    assert_eq!(
        got,
        vec![
            ("unknown", "not_found", 404),
            ("method_not_allowed", "method_not_allowed", 405),
            ("method_not_allowed", "method_not_allowed", 405),
            ("query", "role_not_permitted", 403),
            ("query", "ok", 200),
            ("audit_checkpoint", "invalid_request", 400),
        ]
    );
    gw.stop().await;
}

/// What a crash between a change's commit and its log append leaves behind
/// (records plus their outbox row, no entry) is audited at the next start,
/// once; an outbox row whose entry did reach the log is not appended again.
#[tokio::test]
async fn a_crash_between_commit_and_append_is_audited_at_restart() {
    use credgate::store::{AuditIntent, NewRecord};
    let dir = TempDir::new("outbox");
    let (url, pg) = test_database(&dir.0).await;
    let cfg = config(&dir.0, &url);
    let entry = |rid: &str| AuditEntry {
        v: credgate::audit::ENTRY_VERSION,
        ts: "2026-12-01T08:00:00.000Z".into(),
        request_id: rid.into(),
        gateway: cfg.server.gateway_id.clone(),
        org: Some(ids::DEPARTMENT.into()),
        cert_fp: Some("ab".repeat(32)),
        action: "submit_records".into(),
        subject_type: Some("legal_person".into()),
        subject: Some(format!("k1:{}", "cd".repeat(32))),
        purpose: None,
        consent: None,
        fields: vec![],
        records: 1,
        status: 201,
        outcome: "ok".into(),
        policy: Some("0123456789abcdef0123456789abcdef".into()),
    };
    let record = || NewRecord {
        subject: credgate::ids::SubjectId::parse("legal_person", ids::CHEM).unwrap(),
        item: "admin_licence".into(),
        provider: ids::DEPARTMENT.into(),
        data: serde_json::from_value(json!({"licence_no": "C1"})).unwrap(),
        terms: None,
    };
    let listeners = || async {
        (
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        )
    };
    // First life: two submissions commit; only the second reaches the log
    // before the "crash" (the first's append never happens).
    let gw = credgate::server::Gateway::build(&cfg).await.unwrap();
    let store = gw.app().store.clone();
    let lost = entry("r-lost");
    let kept = entry("r-kept");
    for e in [&lost, &kept] {
        let intent = AuditIntent::new(&e.request_id, 0, e.canonical());
        store
            .insert_records(&[record()], &intent, &e.ts)
            .await
            .unwrap();
    }
    gw.app().audit.append(&kept).await.unwrap();
    assert_eq!(store.outbox_pending().await.unwrap().len(), 2);
    let (l, a) = listeners().await;
    credgate::server::run(l, a, gw, async {}).await.unwrap();

    // Second life: recovery before serving.
    let gw = credgate::server::Gateway::build(&cfg).await.unwrap();
    let store = gw.app().store.clone();
    let entries = audit_entries(&store).await;
    let ids_logged: Vec<&str> = entries.iter().map(|e| e.request_id.as_str()).collect();
    assert_eq!(
        ids_logged,
        ["r-kept", "r-lost"],
        "each change has exactly one entry"
    );
    assert_eq!(
        entries[1], lost,
        "the entry written with the change, unchanged"
    );
    assert!(store.outbox_pending().await.unwrap().is_empty());
    let per_request: HashMap<String, i64> = store
        .records_per_request()
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(per_request.get("r-lost"), Some(&1));
    let (l, a) = listeners().await;
    credgate::server::run(l, a, gw, async {}).await.unwrap();
    drop_test_database(pg).await;
}

/// An embedded store is served by one process at a time (its lock), so a
/// row left by the store's earlier process is recovered whatever gateway
/// name its entry carries (`server.gateway_id` renamed after a crash). On
/// a shared PostgreSQL store another node's row may belong to a request
/// that node is handling: it stays for that node.
#[tokio::test]
async fn an_embedded_store_recovers_rows_left_under_another_gateway_name() {
    use credgate::store::{AuditIntent, NewRecord};
    let dir = TempDir::new("outbox-renamed");
    let (url, pg) = test_database(&dir.0).await;
    let cfg = config(&dir.0, &url);
    let earlier = AuditEntry {
        v: credgate::audit::ENTRY_VERSION,
        ts: "2026-12-01T08:00:00.000Z".into(),
        request_id: "r-renamed".into(),
        gateway: "credgate-before-the-rename".into(),
        org: Some(ids::DEPARTMENT.into()),
        cert_fp: Some("ab".repeat(32)),
        action: "submit_records".into(),
        subject_type: Some("legal_person".into()),
        subject: Some(format!("k1:{}", "cd".repeat(32))),
        purpose: None,
        consent: None,
        fields: vec![],
        records: 1,
        status: 201,
        outcome: "ok".into(),
        policy: Some("0123456789abcdef0123456789abcdef".into()),
    };
    assert_ne!(earlier.gateway, cfg.server.gateway_id);
    let listeners = || async {
        (
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        )
    };
    // First life, under the earlier name: the change commits, the "crash"
    // comes before its append.
    let gw = credgate::server::Gateway::build(&cfg).await.unwrap();
    let store = gw.app().store.clone();
    let record = NewRecord {
        subject: credgate::ids::SubjectId::parse("legal_person", ids::CHEM).unwrap(),
        item: "admin_licence".into(),
        provider: ids::DEPARTMENT.into(),
        data: serde_json::from_value(json!({"licence_no": "R1"})).unwrap(),
        terms: None,
    };
    let intent = AuditIntent::new(&earlier.request_id, 0, earlier.canonical());
    store
        .insert_records(&[record], &intent, &earlier.ts)
        .await
        .unwrap();
    let (l, a) = listeners().await;
    credgate::server::run(l, a, gw, async {}).await.unwrap();

    // Second life, under this config's name.
    let gw = credgate::server::Gateway::build(&cfg).await.unwrap();
    let store = gw.app().store.clone();
    let logged: Vec<AuditEntry> = audit_entries(&store)
        .await
        .into_iter()
        .filter(|e| e.request_id == earlier.request_id)
        .collect();
    let pending = store.outbox_pending().await.unwrap();
    if url.starts_with("postgres") {
        assert!(
            logged.is_empty(),
            "another node's row is that node's to recover"
        );
        assert_eq!(pending.len(), 1);
    } else {
        assert_eq!(logged, [earlier], "the change has its one entry, unchanged");
        assert!(pending.is_empty());
    }
    let (l, a) = listeners().await;
    credgate::server::run(l, a, gw, async {}).await.unwrap();
    drop_test_database(pg).await;
}

/// Every committed submission leaves no outbox row behind once answered.
#[tokio::test]
async fn answered_submissions_leave_the_outbox_empty() {
    let gw = TestGateway::start().await;
    let body = json!({"records": [{"subject": {"type": "legal_person", "id": ids::CHEM},
        "item": "admin_licence", "fields": {"licence_no": "OB1"}}]});
    let r = gw.client("department").post("/v1/records", &body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let seq: u64 = r.headers["x-audit-seq"].to_str().unwrap().parse().unwrap();
    let e = &audit_entries(&gw.store).await[seq as usize];
    assert_eq!(
        (e.action.as_str(), e.records, e.status),
        ("submit_records", 1, 201)
    );
    assert!(outbox_empties(&gw).await);
    gw.stop().await;
}

/// An idle HTTP/2 connection is closed by the idle deadline like an
/// HTTP/1.1 one (the server sends no PINGs that would keep it alive).
#[tokio::test]
async fn idle_http2_connections_are_closed() {
    let gw = TestGateway::start_with(|c| c.server.idle_timeout_ms = 400, true).await;
    let s = connect_tls(gw.addr, tls_config("bank", &[b"h2"])).await;
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(s))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let req = hyper::Request::get("https://localhost/v1/openapi.json")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let _ = resp.into_body().collect().await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(5), conn).await;
    assert!(closed.is_ok(), "the idle h2 connection stays open");
    gw.stop().await;
}

/// A gateway on a fresh store, and a handle to its audit log (for the
/// debug-only fault hooks). Drop the handle before `gw.stop()`.
#[cfg(debug_assertions)]
async fn gateway_and_log(tag: &str) -> (TestGateway, credgate::audit::AuditLog) {
    let dir = TempDir::new(tag);
    let (url, pg_db) = test_database(&dir.0).await;
    let cfg = config(&dir.0, &url);
    let mut audit = None;
    let gw = TestGateway::start_prepared(cfg, dir, pg_db, true, |g| {
        audit = Some(g.app().audit.clone());
    })
    .await;
    (gw, audit.unwrap())
}

/// Submit one record while the log refuses the batch that would hold its
/// entry: 503 `audit_unavailable`, `details.stored`, no `x-audit-seq`.
/// Returns the request id.
#[cfg(debug_assertions)]
async fn submit_refused_by_the_log(gw: &TestGateway, licence: &str) -> String {
    let body = json!({"records": [{"subject": {"type": "legal_person", "id": ids::CHEM},
        "item": "admin_licence", "fields": {"licence_no": licence}}]});
    let r = gw.client("department").post("/v1/records", &body).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (503, Some("audit_unavailable")),
        "{}",
        r.body
    );
    assert_eq!(r.body["error"]["details"]["stored"], true, "{}", r.body);
    assert!(r.headers.get("x-audit-seq").is_none());
    r.headers["x-request-id"].to_str().unwrap().to_owned()
}

/// Whether the outbox is empty within a bounded wait (for a loaded machine).
async fn outbox_empties(gw: &TestGateway) -> bool {
    for _ in 0..100 {
        if gw.store.outbox_pending().await.unwrap().is_empty() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// A change that commits while the log cannot take its entry (here the
/// writer panics on the batch holding it) is answered 503 with
/// `details.stored`, and its entry is appended once the log recovers, by
/// the running gateway and not only at the next start: exactly one entry,
/// the change's, and its outbox row cleared (so the next start has nothing
/// to recover and appends nothing twice).
#[cfg(debug_assertions)]
#[tokio::test]
async fn a_change_whose_entry_failed_is_logged_once_the_log_recovers() {
    let (gw, audit) = gateway_and_log("late-entry").await;
    let before = audit_entries(&gw.store).await.len();
    audit.inject_writer_panic();
    let rid = submit_refused_by_the_log(&gw, "LATE-1").await;

    // No further traffic: the sequencer's probe finds the log writable and
    // the deferred entry is appended (bounded wait for a loaded machine).
    let mut logged = Vec::new();
    for _ in 0..100 {
        logged = audit_entries(&gw.store).await;
        if logged.iter().any(|e| e.request_id == rid) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mine: Vec<&AuditEntry> = logged.iter().filter(|e| e.request_id == rid).collect();
    assert_eq!(mine.len(), 1, "the stored change has no entry: {rid}");
    assert_eq!(
        (
            mine[0].action.as_str(),
            mine[0].outcome.as_str(),
            mine[0].status,
            mine[0].records
        ),
        ("submit_records", "ok", 201, 1)
    );
    assert_eq!(logged.len(), before + 1, "only the late entry was added");
    assert!(outbox_empties(&gw).await, "the outbox row of {rid} stays");
    let (_, metrics) = gw.admin_get("/metrics").await;
    assert!(
        metrics.contains("credgate_audit_late_appended_total 1\n"),
        "{metrics}"
    );
    assert!(metrics.contains("credgate_audit_late_waiting_entries 0\n"));

    drop(audit);
    gw.stop().await;
}

/// A commit reported as failed may have been durable all the same (a
/// PostgreSQL `COMMIT` whose answer was lost; here the writer panics after
/// its batch is written and synced): the stored change's entry is then in
/// the log already, and the running gateway must not append it a second
/// time when the log recovers.
#[cfg(debug_assertions)]
#[tokio::test]
async fn a_change_whose_failed_commit_was_durable_is_not_logged_twice() {
    let (gw, audit) = gateway_and_log("late-durable").await;
    audit.inject_writer_panic_after_commit();
    let rid = submit_refused_by_the_log(&gw, "LATE-2").await;
    // The deferred entry is resolved (found in the log) once the log
    // recovers: its outbox row goes.
    assert!(outbox_empties(&gw).await, "the outbox row of {rid} stays");
    let logged = audit_entries(&gw.store).await;
    assert_eq!(
        logged.iter().filter(|e| e.request_id == rid).count(),
        1,
        "the change's entry is in the log once"
    );
    let (_, metrics) = gw.admin_get("/metrics").await;
    assert!(
        metrics.contains("credgate_audit_late_appended_total 0\n"),
        "{metrics}"
    );
    drop(audit);
    gw.stop().await;
}

/// A panic on the audit writer's blocking thread (debug-only fault hook)
/// fails the batch it held closed; the sequencer reopens the writer, so the
/// next requests are served and logged again, and `/readyz` recovers.
#[cfg(debug_assertions)]
#[tokio::test]
async fn a_panicking_audit_writer_is_reopened_and_serving_resumes() {
    let (gw, audit) = gateway_and_log("writer-panic").await;
    let q = query(
        "legal_person",
        ids::CERAMICS,
        "financing",
        &["enterprise_name"],
    );
    let bank = gw.client("bank");
    assert_eq!(bank.post("/v1/query", &q).await.status, 200);
    let before = audit_entries(&gw.store).await.len();

    audit.inject_writer_panic();
    let r = bank.post("/v1/query", &q).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (503, Some("audit_unavailable")),
        "{}",
        r.body
    );
    // Not one restart: the next requests are served and audited. (The next
    // one reopens the writer; bounded retries only guard a loaded machine.)
    let mut served = 0;
    for _ in 0..100 {
        let r = bank.post("/v1/query", &q).await;
        if r.status == 200 {
            served += 1;
            if served == 3 {
                break;
            }
        } else {
            assert_eq!(r.body["error"]["code"], "audit_unavailable", "{}", r.body);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert_eq!(
        served, 3,
        "serving did not resume after the writer panicked"
    );
    let mut ready = false;
    for _ in 0..100 {
        if gw.admin_get("/readyz").await.0 == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "/readyz did not recover");
    // The log goes on without a gap: the failed request has no entry, the
    // three served after it have theirs, in sequence.
    let entries = audit_entries(&gw.store).await;
    assert_eq!(entries.len(), before + 3);
    assert!(
        entries[before..]
            .iter()
            .all(|e| e.action == "query" && e.outcome == "ok")
    );
    // The sequencer stops with its last handle.
    drop(audit);
    gw.stop().await;
}

/// A gateway closed without serving (`quickstart --no-serve` calls
/// `Gateway::close`) commits its entries, leaves the search index covering
/// the whole log and signs a checkpoint for it, on both stores. (Dropped
/// instead, it ended the runtime under the indexer: a "task … was
/// cancelled" warning, and an index and checkpoint behind the log.)
#[tokio::test]
async fn a_gateway_closed_without_serving_leaves_its_log_indexed_and_signed() {
    let dir = TempDir::new("close");
    let (url, pg) = test_database(&dir.0).await;
    let cfg = config(&dir.0, &url);
    let entry = |rid: String| AuditEntry {
        v: credgate::audit::ENTRY_VERSION,
        ts: "2026-12-01T08:00:00.000Z".into(),
        request_id: rid,
        gateway: cfg.server.gateway_id.clone(),
        org: Some(ids::BANK.into()),
        cert_fp: Some("ab".repeat(32)),
        action: "query".into(),
        subject_type: Some("legal_person".into()),
        subject: Some(format!("k1:{}", "cd".repeat(32))),
        purpose: Some("financing".into()),
        consent: None,
        fields: vec![],
        records: 0,
        status: 200,
        outcome: "ok".into(),
        policy: Some("0123456789abcdef0123456789abcdef".into()),
    };
    let gw = credgate::server::Gateway::build(&cfg).await.unwrap();
    {
        let app = gw.app();
        for i in 0..5 {
            app.audit
                .append(&entry(format!("r-close-{i}")))
                .await
                .unwrap();
        }
    }
    gw.close().await;
    let store = credgate::store::Store::connect_config(&cfg).await.unwrap();
    let (size, _) = store.log_head().await.unwrap();
    assert_eq!(size, 5);
    assert_eq!(
        store.index_pending(0).await.unwrap(),
        (5, 5),
        "the index covers the whole log"
    );
    let (signed, _) = store.checkpoint(None).await.unwrap().expect("a checkpoint");
    assert_eq!(signed, 5, "the last checkpoint signs the whole log");
    store.close().await;
    drop_test_database(pg).await;
}

/// `request` as the auditor over HTTP/1.1, on a socket with a receive
/// buffer of `rcvbuf` bytes, reading the answer `pace` apart after waiting
/// `first` before the first read: the bytes received before the server
/// closed the connection.
async fn read_slowly(
    gw: &TestGateway,
    request: &[u8],
    rcvbuf: u32,
    first: Duration,
    pace: Duration,
) -> usize {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(rcvbuf).unwrap();
    let tcp = sock.connect(gw.addr).await.unwrap();
    let mut s = tokio_rustls::TlsConnector::from(tls_config("auditor", &[b"http/1.1"]))
        .connect(
            rustls_pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    s.write_all(request).await.unwrap();
    tokio::time::sleep(first).await;
    let mut total = 0;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return total,
            Ok(Ok(n)) => total += n,
            Err(_) => panic!("the connection neither sent nor closed for 10 s after {total} bytes"),
        }
        tokio::time::sleep(pace).await;
    }
}

/// A client that stops reading its response (its TCP window full, the
/// kernel's send buffer full behind it) is disconnected once no byte has
/// been taken for `idle_timeout`: it cannot hold a connection slot for as
/// long as it likes. One that reads steadily gets the whole response even
/// when that takes longer than `idle_timeout` (it was cut: by the idle
/// deadline, which counted only reads, and by hyper's header timeout,
/// which ran from the end of the request). The response is an export of
/// some 6 MB, larger than the send buffer the kernel gives a loopback
/// socket (`tcp_wmem`: at most 4 MiB here), read at about 1.8 MB/s.
#[tokio::test]
async fn a_client_that_stops_reading_its_response_is_disconnected() {
    let gw = TestGateway::start_with(|c| c.server.idle_timeout_ms = 1_500, true).await;
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let gw = &gw;
            async move { keep_alive_queries(gw, "bank", 1_500).await }
        })
        .collect();
    for answers in futures_util::future::join_all(tasks).await {
        assert!(answers.iter().all(|(status, _)| *status == 200));
    }
    let body = r#"{"format":"jsonl"}"#;
    let request = format!(
        "POST /v1/audit/export HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let fast = read_slowly(
        &gw,
        request.as_bytes(),
        1 << 20,
        Duration::ZERO,
        Duration::ZERO,
    )
    .await;
    assert!(fast > 5_000_000, "the export is only {fast} bytes");
    let steady = read_slowly(
        &gw,
        request.as_bytes(),
        1 << 16,
        Duration::ZERO,
        Duration::from_millis(35),
    )
    .await;
    assert!(
        steady >= fast,
        "a steady reader got {steady} of {fast} bytes"
    );
    let stalled = read_slowly(
        &gw,
        request.as_bytes(),
        4096,
        Duration::from_secs(4),
        Duration::ZERO,
    )
    .await;
    assert!(
        stalled < fast,
        "a stalled reader still got all {stalled} bytes"
    );
    gw.stop().await;
}

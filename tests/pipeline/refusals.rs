//! Requests refused before or by the handler: each audited once (HTTP-layer refusals, stalled heads and bodies, a panicking handler, duplicate keys, a certificate without an organisation), in one order, with roles as policy data.

use super::*;

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

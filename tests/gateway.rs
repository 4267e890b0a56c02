//! Gateway core, end to end over real mTLS: identity at the handshake,
//! field decisions, the prohibited-data floor, all-or-nothing submissions,
//! hostile input, and one audit entry per request.

mod common;

use bytes::Bytes;
use common::*;
use serde_json::json;

#[tokio::test]
async fn bank_gets_field_decisions_and_only_permitted_values() {
    let gw = TestGateway::start().await;
    let r = gw
        .client("bank")
        .post(
            "/v1/query",
            &query(
                "legal_person",
                ids::CERAMICS,
                "financing",
                &[
                    "enterprise_name",
                    "penalty_content",
                    "tax_paid_annual",
                    "religion",
                    "shoe_size",
                ],
            ),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        decisions(&r.body),
        vec![
            (
                "enterprise_name".into(),
                "returned".into(),
                "authorised".into()
            ),
            (
                "penalty_content".into(),
                "returned".into(),
                "authorised".into()
            ),
            (
                "tax_paid_annual".into(),
                "withheld".into(),
                "consent_required".into()
            ),
            ("religion".into(), "withheld".into(), "prohibited".into()),
            (
                "shoe_size".into(),
                "withheld".into(),
                "not_in_catalog".into()
            ),
        ]
    );
    let text = r.body["records"].to_string();
    assert!(text.contains("淄博鲁瓷陶瓷有限公司"));
    assert!(text.contains("罚款人民币5000元"));
    // Withheld and unrequested values never leave.
    assert!(!text.contains("1286000"), "tax paid leaked: {text}");
    assert!(!text.contains("王建国"), "unrequested field leaked: {text}");
    assert!(r.headers.get("x-audit-seq").is_some());

    let entries = audit_entries(&gw.store).await;
    assert_eq!(entries.len(), 1);
    let e = &entries[0];
    assert_eq!(e.org.as_deref(), Some(ids::BANK));
    assert_eq!(e.purpose.as_deref(), Some("financing"));
    assert_eq!(e.fields.len(), 5);
    assert_eq!(e.fields[3].field, "prohibited:religion");
    let raw =
        String::from_utf8(gw.store.audit_range(0, 10).await.unwrap()[0].entry.clone()).unwrap();
    assert!(!raw.contains(ids::CERAMICS), "clear subject id in the log");
    assert!(!raw.contains("淄博鲁瓷"), "a value in the log");
    gw.stop().await;
}

#[tokio::test]
async fn masking_follows_grants() {
    let gw = TestGateway::start().await;
    let r = gw
        .client("agency")
        .post(
            "/v1/query",
            &query(
                "natural_person",
                ids::PERSON,
                "credit_report",
                &["person_name", "birth_date", "monthly_income"],
            ),
        )
        .await;
    assert_eq!(r.status, 200);
    let fields = &r.body["records"][0]["fields"];
    assert_eq!(fields["person_name"], "张*");
    assert_eq!(fields["birth_date"], "1985");
    assert!(!r.body.to_string().contains("18500"));
    gw.stop().await;
}

#[tokio::test]
async fn handshake_refuses_bad_certificates() {
    let gw = TestGateway::start().await;
    let body = query(
        "legal_person",
        ids::CERAMICS,
        "financing",
        &["enterprise_name"],
    );
    for who in [None, Some("foreign"), Some("expired"), Some("revoked")] {
        let client = if who == Some("foreign") {
            // The foreign certificate is signed by another CA.
            Client::new(gw.addr, who)
        } else {
            Client::new(gw.addr, who)
        };
        let r = client
            .send(
                "POST",
                "/v1/query",
                Bytes::from(body.to_string()),
                Some("application/json"),
            )
            .await;
        assert!(r.is_err(), "{who:?} was let through: {r:?}");
    }
    // Refused handshakes never reach HTTP, so they are not audited as requests,
    // but they are counted.
    assert!(audit_entries(&gw.store).await.is_empty());
    let (_, metrics) = gw.admin_get("/metrics").await;
    let failures: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("credgate_handshake_failures_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(failures >= 4, "{metrics}");
    // The same client code with a good certificate works.
    assert_eq!(gw.client("bank").post("/v1/query", &body).await.status, 200);
    gw.stop().await;
}

#[tokio::test]
async fn unregistered_organisation_gets_403_and_an_audit_entry() {
    let gw = TestGateway::start().await;
    let r = gw
        .client("unregistered")
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
    assert_eq!(r.status, 403);
    assert_eq!(r.body["error"]["code"], "unregistered_organisation");
    let entries = audit_entries(&gw.store).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].org.as_deref(), Some("91370300MA3C00099X"));
    assert_eq!(entries[0].outcome, "unregistered_organisation");
    assert_eq!(entries[0].status, 403);
    gw.stop().await;
}

#[tokio::test]
async fn roles_come_from_the_registry() {
    let gw = TestGateway::start().await;
    let rec = json!({"records": [{"subject": {"type": "legal_person", "id": ids::CHEM},
        "item": "admin_licence", "fields": {"licence_no": "X1"}}]});
    let r = gw.client("bank").post("/v1/records", &rec).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (403, Some("role_not_permitted"))
    );
    let r = gw
        .client("auditor")
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
    assert_eq!(r.status, 403);
    gw.stop().await;
}

#[tokio::test]
async fn prohibited_submissions_are_refused_whole_and_nothing_is_stored() {
    let gw = TestGateway::start().await;
    let dept = gw.client("department");
    let before = gw.store.record_count().await.unwrap();
    let good = json!({"subject": {"type": "legal_person", "id": ids::CHEM}, "item": "admin_licence",
        "fields": {"licence_no": "JY1", "licence_name": "食品经营许可"}});
    let cases = [
        (json!({"licence_no": "A", "宗教信仰": "x"}), "religion"),
        (json!({"licence_no": "A", "religion": "x"}), "religion"),
        (json!({"licence_no": "A", "Blood_Type": "A"}), "blood_type"),
        (
            json!({"licence_no": "A", "ｆｉｎｇｅｒｐｒｉｎｔ": "..."}),
            "fingerprint",
        ),
        (
            json!({"licence_no": "A", "licence_name": {"holder": {"disease": "x"}}}),
            "disease",
        ),
        (
            json!({"licence_no": "A", "licence_name": [{"ok": 1}, {"faceImage": "..."}]}),
            "biometric",
        ),
    ];
    for (i, (fields, category)) in cases.into_iter().enumerate() {
        let bad = json!({"subject": {"type": "legal_person", "id": ids::CHEM}, "item": "admin_licence", "fields": fields});
        let r = dept
            .post("/v1/records", &json!({"records": [good.clone(), bad]}))
            .await;
        assert_eq!(r.status, 422, "case {i}: {}", r.body);
        assert_eq!(r.body["error"]["code"], "prohibited_field");
        assert_eq!(r.body["error"]["details"]["record"], 1, "case {i}");
        assert_eq!(r.body["error"]["details"]["category"], category, "case {i}");
    }
    assert_eq!(
        gw.store.record_count().await.unwrap(),
        before,
        "a refused batch stored something"
    );
    let entries = audit_entries(&gw.store).await;
    assert_eq!(entries.len(), 6);
    assert!(
        entries
            .iter()
            .all(|e| e.outcome == "prohibited_field" && e.status == 422)
    );
    // No raw prohibited name (which might carry data) is logged.
    assert!(
        entries
            .iter()
            .all(|e| e.fields.iter().all(|f| f.field.starts_with("prohibited:")))
    );

    // Unknown fields are refused too, naming record and field.
    let unknown = json!({"subject": {"type": "legal_person", "id": ids::CHEM}, "item": "admin_licence",
        "fields": {"licence_no": "A", "favourite_colour": "red"}});
    let r = dept
        .post("/v1/records", &json!({"records": [good.clone(), unknown]}))
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.body["error"]["code"], "unknown_field");
    assert_eq!(
        r.body["error"]["details"],
        json!({"record": 1, "field": "favourite_colour"})
    );
    assert_eq!(gw.store.record_count().await.unwrap(), before);

    // And a clean batch is stored and then visible.
    let r = dept.post("/v1/records", &json!({"records": [good]})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(gw.store.record_count().await.unwrap(), before + 1);
    let q = gw
        .client("bank")
        .post(
            "/v1/query",
            &query("legal_person", ids::CHEM, "financing", &["licence_name"]),
        )
        .await;
    assert!(q.body["records"].to_string().contains("食品经营许可"));
    gw.stop().await;
}

#[tokio::test]
async fn hostile_input_gets_stable_4xx_codes() {
    let gw = TestGateway::start().await;
    let bank = gw.client("bank");
    let dept = gw.client("department");
    let send = |c: &Client, path: &'static str, body: Vec<u8>| {
        let c = c.clone();
        async move {
            c.send("POST", path, Bytes::from(body), Some("application/json"))
                .await
                .unwrap()
        }
    };
    let cases: Vec<(&Client, &str, Vec<u8>, u16, &str)> = vec![
        (&bank, "/v1/query", b"{not json".to_vec(), 400, "malformed_json"),
        (&bank, "/v1/query", b"".to_vec(), 400, "malformed_json"),
        (&bank, "/v1/query", br#"{"subject":{"type":"legal_person","id":5},"purpose":"financing","fields":[]}"#.to_vec(), 400, "invalid_request"),
        (&bank, "/v1/query", br#"{"subject":{"type":"legal_person","id":"91370300MA3CXQ001R"},"purpose":"financing","fields":"x"}"#.to_vec(), 400, "invalid_request"),
        (&bank, "/v1/query", br#"{"subject":{"type":"alien","id":"91370300MA3CXQ001R"},"purpose":"financing","fields":["a"]}"#.to_vec(), 400, "unknown_subject_type"),
        (&bank, "/v1/query", br#"{"subject":{"type":"legal_person","id":"91370300MA3CXQ001T"},"purpose":"financing","fields":["a"]}"#.to_vec(), 400, "invalid_identifier"),
        (&bank, "/v1/query", br#"{"subject":{"type":"natural_person","id":"370303198502300011"},"purpose":"financing","fields":["a"]}"#.to_vec(), 400, "invalid_identifier"),
        (&bank, "/v1/query", br#"{"subject":{"type":"legal_person","id":"91370300MA3CXQ001R"},"purpose":"curiosity","fields":["a"]}"#.to_vec(), 400, "unknown_purpose"),
        (&bank, "/v1/query", br#"{"subject":{"type":"legal_person","id":"91370300MA3CXQ001R"},"purpose":"financing","fields":["a"],"extra":1}"#.to_vec(), 400, "invalid_request"),
        (&bank, "/v1/query", vec![b'['; 100_000], 400, "too_deep"),
        (&dept, "/v1/records", vec![b'['; 100_000], 400, "too_deep"),
        (&bank, "/v1/query", vec![b' '; 20 << 20], 413, "body_too_large"),
        (&dept, "/v1/records", br#"{"records":[{"subject":{"type":"legal_person","id":"91370300MA3CXQ001R"},"item":"registration","fields":{"registered_capital":"lots"}}]}"#.to_vec(), 400, "invalid_value"),
        (&dept, "/v1/records", br#"{"records":[{"subject":{"type":"legal_person","id":"91370300MA3CXQ001R"},"item":"no_such_item","fields":{"a":1}}]}"#.to_vec(), 422, "unknown_item"),
        (&dept, "/v1/records", br#"{"records":[{"subject":{"type":"legal_person","id":"91370300MA3CXQ001R"},"item":"person_basic","fields":{"person_name":"x"}}]}"#.to_vec(), 422, "subject_type_mismatch"),
        (&dept, "/v1/records", br#"{"records":[]}"#.to_vec(), 400, "invalid_request"),
    ];
    let before = gw.store.record_count().await.unwrap();
    let n = cases.len();
    for (i, (c, path, body, status, code)) in cases.into_iter().enumerate() {
        let r = send(c, path, body).await;
        assert_eq!(
            (r.status, r.body["error"]["code"].as_str()),
            (status, Some(code)),
            "case {i}: {}",
            r.body
        );
        assert!(
            r.body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    // Details name the failed identifier check.
    let r = bank
        .post(
            "/v1/query",
            &query(
                "legal_person",
                "91370300MA3CXQ001T",
                "financing",
                &["enterprise_name"],
            ),
        )
        .await;
    assert_eq!(r.body["error"]["details"]["check"], "check_character");
    assert_eq!(gw.store.record_count().await.unwrap(), before);
    // Every one of them was audited.
    assert_eq!(audit_entries(&gw.store).await.len(), n + 1);
    // Wrong content type, unknown path, wrong method.
    let r = bank
        .send(
            "POST",
            "/v1/query",
            Bytes::from_static(b"{}"),
            Some("text/plain"),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 415);
    assert_eq!(bank.get("/v2/nothing").await.status, 404);
    assert_eq!(bank.get("/v1/query").await.status, 405);
    gw.stop().await;
}

#[tokio::test]
async fn every_request_gets_exactly_one_audit_entry_with_contiguous_seq() {
    let gw = TestGateway::start().await;
    let bank = gw.client("bank");
    let mut tasks = Vec::new();
    for i in 0..40 {
        let bank = bank.clone();
        tasks.push(tokio::spawn(async move {
            let field = if i % 2 == 0 {
                "enterprise_name"
            } else {
                "religion"
            };
            bank.post(
                "/v1/query",
                &query("legal_person", ids::CERAMICS, "financing", &[field]),
            )
            .await
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, 200);
        seqs.push(
            r.headers["x-audit-seq"]
                .to_str()
                .unwrap()
                .parse::<u64>()
                .unwrap(),
        );
    }
    seqs.sort();
    assert_eq!(seqs, (0..40).collect::<Vec<_>>());
    let entries = audit_entries(&gw.store).await;
    assert_eq!(entries.len(), 40);
    let mut ids: Vec<_> = entries.iter().map(|e| e.request_id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 40, "one entry per request");
    gw.stop().await;
}

#[tokio::test]
async fn readiness_and_health() {
    let gw = TestGateway::start().await;
    assert_eq!(gw.admin_get("/healthz").await.0, 200);
    assert_eq!(gw.admin_get("/readyz").await, (200, "ready\n".into()));
    gw.stop().await;
}

/// The SQLite read cache must never serve rows older than the last write:
/// query, write, query again.
#[tokio::test]
async fn reads_see_every_committed_write() {
    let gw = TestGateway::start().await;
    let bank = gw.client("bank");
    let dept = gw.client("department");
    let q = query("legal_person", ids::CHEM, "financing", &["licence_no"]);
    for n in 0..3 {
        let before = bank.post("/v1/query", &q).await;
        assert_eq!(before.body["records"].as_array().unwrap().len(), n);
        let rec = json!({"records": [{"subject": {"type": "legal_person", "id": ids::CHEM},
            "item": "admin_licence", "fields": {"licence_no": format!("JY{n}")}}]});
        assert_eq!(dept.post("/v1/records", &rec).await.status, 201);
        let after = bank.post("/v1/query", &q).await;
        assert_eq!(after.body["records"].as_array().unwrap().len(), n + 1);
        assert!(
            after.body["records"]
                .to_string()
                .contains(&format!("JY{n}"))
        );
    }
    gw.stop().await;
}

/// Issue 13 item 5 over the API: the region code is checked, a full-width
/// digit is named as such, and a number with a registered birth year of 1880
/// is a valid identifier (its subject simply has no records here).
#[tokio::test]
async fn identifier_checks_name_what_is_wrong() {
    let gw = TestGateway::start().await;
    let bank = gw.client("bank");
    let ask = |id: &str| query("natural_person", id, "financing", &["person_name"]);
    let n = audit_entries(&gw.store).await.len();
    for (id, check, message) in [
        (
            "000303198503150011",
            "region",
            "invalid subject identifier: address code (positions 1-6) does not start with a \
             province-level code of GB/T 2260 (got 00)",
        ),
        (
            "37030319850315001５",
            "charset",
            "invalid subject identifier: character 18 (U+FF15) is not allowed here, a \
             full-width digit: use ASCII 0-9",
        ),
        (
            "８10000198503150011",
            "charset",
            "invalid subject identifier: character 1 (U+FF18) is not allowed here, a \
             full-width digit: use ASCII 0-9",
        ),
        (
            "440524184901010014",
            "birth_date",
            "invalid subject identifier: birth date (positions 7-14) is before 1850-01-01, \
             earlier than any card holder's",
        ),
    ] {
        let r = bank.post("/v1/query", &ask(id)).await;
        assert_eq!(
            (r.status, r.body["error"]["code"].as_str()),
            (400, Some("invalid_identifier")),
            "{id}: {}",
            r.body
        );
        assert_eq!(r.body["error"]["details"]["check"], check, "{id}");
        assert_eq!(r.body["error"]["message"], message, "{id}");
    }
    // Born 1880, valid check digit: a valid identifier, answered normally.
    let r = bank.post("/v1/query", &ask("440524188001010014")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["records"], json!([]));
    // Every one audited: refusals with their code.
    let entries = audit_entries(&gw.store).await;
    let outcomes: Vec<&str> = entries[n..].iter().map(|e| e.outcome.as_str()).collect();
    assert_eq!(
        outcomes,
        [
            "invalid_identifier",
            "invalid_identifier",
            "invalid_identifier",
            "invalid_identifier",
            "ok"
        ]
    );
    gw.stop().await;
}

/// Issue 13 item 9: a client certificate issued by a `CA:TRUE` intermediate
/// is refused at the handshake by default (`tls.max_chain_depth = 0`),
/// unaudited but counted; a chain through a root without a path length
/// constraint is accepted where the configuration allows one intermediate,
/// and the identity is the leaf's; a chain through the dev CA, whose own
/// `pathlen:0` webpki does not apply to a trust anchor, is still refused.
#[tokio::test]
async fn client_chains_longer_than_max_chain_depth_are_refused_at_the_handshake() {
    use credgate::devcerts::{ChainRoot, DevOrg, issue_chained};
    let org = |stem: &str| DevOrg {
        file_stem: stem.into(),
        org_code: ids::BANK.into(),
        name: "Bank, certificate from an intermediate CA".into(),
    };
    issue_chained(certs(), ChainRoot::Dev, &org("bank-via-intermediate"), 1).unwrap();
    issue_chained(
        certs(),
        ChainRoot::Unconstrained,
        &org("bank-via-delegating-root"),
        1,
    )
    .unwrap();
    let body = query(
        "legal_person",
        ids::CERAMICS,
        "financing",
        &["enterprise_name"],
    );
    let failures = |metrics: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("credgate_handshake_failures_total "))
            .unwrap()
            .parse()
            .unwrap()
    };

    // The chain through the dev CA's intermediate, refused at the handshake.
    let refused = |gw: &TestGateway| {
        let client = gw.client("bank-via-intermediate");
        let body = Bytes::from(body.to_string());
        async move {
            let r = client
                .send("POST", "/v1/query", body, Some("application/json"))
                .await;
            assert!(r.is_err(), "chained certificate let through: {r:?}");
        }
    };

    let gw = TestGateway::start().await;
    assert_eq!(gw.config.tls.max_chain_depth, 0);
    refused(&gw).await;
    assert!(audit_entries(&gw.store).await.is_empty());
    assert_eq!(failures(&gw.admin_get("/metrics").await.1), 1);
    gw.stop().await;

    // One intermediate allowed, and a second root that delegates to
    // intermediates trusted beside the dev CA. The config file round-trips
    // the setting (what `credgate serve` reads).
    let cas = TempDir::new("two-cas");
    let both = cas.0.join("cas.pem");
    std::fs::write(
        &both,
        std::fs::read_to_string(certs().join("ca.pem")).unwrap()
            + &std::fs::read_to_string(certs().join("chain-ca.pem")).unwrap(),
    )
    .unwrap();
    let gw = TestGateway::start_with(
        |c| {
            c.tls.max_chain_depth = 1;
            c.tls.ca = both.clone();
        },
        true,
    )
    .await;
    let file = write_config_file(&gw.config, &gw.dir.0.join("credgate.toml"));
    let loaded = credgate::config::Config::load(&file).unwrap();
    assert_eq!(loaded.tls.max_chain_depth, 1);
    let r = gw
        .client("bank-via-delegating-root")
        .post("/v1/query", &body)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let entries = audit_entries(&gw.store).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].org.as_deref(), Some(ids::BANK));
    assert_eq!(failures(&gw.admin_get("/metrics").await.1), 0);
    // The dev CA's own pathlen:0 still refuses its chain.
    refused(&gw).await;
    assert_eq!(audit_entries(&gw.store).await.len(), 1);
    assert_eq!(failures(&gw.admin_get("/metrics").await.1), 1);
    gw.stop().await;
}

/// The value of one series line (`name{labels} value`) in a scrape.
fn series(metrics: &str, line_prefix: &str) -> Option<u64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(line_prefix)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn refused_handshakes_are_counted_by_reason() {
    let gw = TestGateway::start().await;
    let reason = |r: &str| format!("credgate_handshake_refusals_total{{reason=\"{r}\"}}");
    let (_, before) = gw.admin_get("/metrics").await;
    // Every reason is exported from the start.
    for r in credgate::metrics::HANDSHAKE_REFUSALS {
        assert_eq!(series(&before, &reason(r)), Some(0), "{r}: {before}");
    }
    let cases = [
        (None, "no_certificate"),
        (Some("expired"), "certificate_expired"),
        (Some("revoked"), "certificate_revoked"),
        (Some("foreign"), "certificate_untrusted"),
    ];
    for (who, _) in cases {
        let r = Client::new(gw.addr, who)
            .send(
                "POST",
                "/v1/query",
                Bytes::from_static(b"{}"),
                Some("application/json"),
            )
            .await;
        assert!(r.is_err(), "{who:?} was let through: {r:?}");
    }
    // The server side finishes its refusal on its own task: wait for it
    // (bounded), then every reason has its count.
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = gw.admin_get("/metrics").await.1;
        if cases
            .iter()
            .all(|(_, r)| series(&metrics, &reason(r)) == Some(1))
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for (who, r) in cases {
        assert_eq!(
            series(&metrics, &reason(r)),
            Some(1),
            "{who:?} → {r}: {metrics}"
        );
    }
    assert_eq!(series(&metrics, &reason("timeout")), Some(0));
    assert_eq!(
        series(&metrics, "credgate_handshake_failures_total"),
        Some(4),
        "{metrics}"
    );
    // Not requests: nothing audited.
    assert!(audit_entries(&gw.store).await.is_empty());
    gw.stop().await;
}

#[tokio::test]
async fn a_full_store_pool_answers_503_after_the_acquire_timeout_and_recovers() {
    let gw = TestGateway::start_with(
        |c| {
            c.store.max_connections = 1;
            c.store.acquire_timeout_ms = 300;
        },
        true,
    )
    .await;
    let dept = gw.client("department");
    let rec = json!({"records": [{"subject": {"type": "legal_person", "id": ids::CHEM},
        "item": "admin_licence", "fields": {"licence_no": "POOL1"}}]});
    let before = gw.store.record_count().await.unwrap();
    let held = gw.store.hold_connection().await.unwrap();
    let started = std::time::Instant::now();
    let r = dept.post("/v1/records", &rec).await;
    let waited = started.elapsed();
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (503, Some("store_unavailable")),
        "{}",
        r.body
    );
    // Answered after the configured wait, not sqlx's 30 s.
    assert!(
        waited >= std::time::Duration::from_millis(250),
        "{waited:?}"
    );
    assert!(waited < std::time::Duration::from_secs(5), "{waited:?}");
    drop(held);
    assert_eq!(gw.store.record_count().await.unwrap(), before);
    // The refusal is audited like any other answer.
    let entries = audit_entries(&gw.store).await;
    let last = entries.last().unwrap();
    assert_eq!(
        (last.action.as_str(), last.outcome.as_str(), last.status),
        ("submit_records", "store_unavailable", 503)
    );
    // With the connection back, the same batch is stored.
    assert_eq!(dept.post("/v1/records", &rec).await.status, 201);
    assert_eq!(gw.store.record_count().await.unwrap(), before + 1);
    gw.stop().await;
}

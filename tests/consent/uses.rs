//! Consent uses: `max_uses` enforced atomically across two nodes, and a use given back when the audit log refuses the entry.

use super::*;

#[tokio::test]
async fn max_uses_is_enforced_atomically_across_two_gateway_nodes() {
    let gw = TestGateway::start().await;
    // A second node on the same database: PostgreSQL serves several nodes;
    // an embedded SQLite store serves one process, so there the second
    // gateway is refused and the concurrent uses all go to the first.
    let node2 = if gw.config.store.url.starts_with("postgres") {
        Some(TestGateway::start_config(gw.config.clone(), TempDir::new("node2"), None, false).await)
    } else {
        let refused = credgate::server::Gateway::build(&gw.config).await;
        assert!(
            matches!(refused, Err(credgate::server::StartError::Locked(_))),
            "a second gateway on one SQLite store must be refused"
        );
        None
    };
    let dev = gw.consent_issuer();
    let mut c = claims(&dev, ids::PERSON, ids::BANK, "financing", &["income"]);
    c["max_uses"] = json!(3);
    let id = c["jti"].as_str().unwrap().to_owned();
    let t = token(&dev, &c);
    let ask = q(
        "natural_person",
        ids::PERSON,
        "financing",
        &["monthly_income"],
        Some(&t),
    );
    let mut tasks = Vec::new();
    for i in 0..12 {
        let client = match &node2 {
            Some(n) if i % 2 == 1 => n.client("bank"),
            _ => gw.client("bank"),
        };
        let ask = ask.clone();
        tasks.push(tokio::spawn(
            async move { client.post("/v1/query", &ask).await },
        ));
    }
    let mut got = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        got.push(decision_of(&r.body, "monthly_income"));
    }
    assert_eq!(
        got.iter().filter(|d| **d == returned()).count(),
        3,
        "{got:?}"
    );
    assert_eq!(
        got.iter().filter(|d| **d == invalid("exhausted")).count(),
        9,
        "{got:?}"
    );
    let s = status(&gw, &id).await;
    assert_eq!(
        (s.body["state"].clone(), s.body["uses"].clone()),
        (json!("exhausted"), json!(3))
    );
    if let Some(n) = node2 {
        n.stop().await;
    }
    gw.stop().await;
}

/// A use counts only for a request answered with the data. A `max_uses =
/// 1` consent opens `monthly_income`, but that query's audit entry cannot
/// be made durable (the log's writer fails the batch holding it, the
/// debug-build fault hook `tests/pipeline.rs` uses): 503 `audit_unavailable`,
/// nothing released, no entry — and the use is given back, the consent
/// still `active` with 0 uses. Once the log recovers, the same token is
/// answered with the income (200), its entry names the consent, and the
/// registry shows the one use that reached the bank (`exhausted`, 1). A
/// refund arriving after a revocation leaves the consent revoked.
#[cfg(debug_assertions)]
#[tokio::test]
async fn a_use_is_given_back_when_the_audit_log_refuses_the_entry() {
    let dir = TempDir::new("consent-giveback");
    let (url, pg_db) = test_database(&dir.0).await;
    let cfg = config(&dir.0, &url);
    let mut audit = None;
    let gw = TestGateway::start_prepared(cfg, dir, pg_db, true, |g| {
        g.app()
            .set_clock(std::sync::Arc::new(|| time::macros::date!(2026 - 11 - 23)));
        audit = Some(g.app().audit.clone());
    })
    .await;
    let audit = audit.unwrap();
    let dev = gw.consent_issuer();
    let bank = gw.client("bank");
    let mut c = claims(&dev, ids::PERSON, ids::BANK, "financing", &["income"]);
    c["max_uses"] = json!(1);
    let id = c["jti"].as_str().unwrap().to_owned();
    let ask = q(
        "natural_person",
        ids::PERSON,
        "financing",
        &["monthly_income"],
        Some(&token(&dev, &c)),
    );
    let registry = |jti: String| {
        let store = gw.store.clone();
        async move { store.consent_status(&jti, now_unix()).await.unwrap() }
    };
    let logged = audit_entries(&gw.store).await.len();

    // The log refuses this request's entry: 503, no data, no entry, no use.
    audit.inject_writer_panic();
    let r = bank.post("/v1/query", &ask).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (503, Some("audit_unavailable")),
        "{}",
        r.body
    );
    assert!(!r.body.to_string().contains(INCOME), "{}", r.body);
    assert!(r.headers.get("x-audit-seq").is_none());
    let failed_request = r.headers["x-request-id"].to_str().unwrap().to_owned();
    let row = registry(id.clone()).await.expect("registered by the spend");
    assert_eq!(
        (row.state.as_str(), row.uses, row.max_uses, row.last_used_at),
        ("active", 0, Some(1), None),
        "the use of an unanswered request was given back"
    );
    assert_eq!(audit_entries(&gw.store).await.len(), logged);

    // The log recovers by itself (the sequencer reopens its writer).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (status, body) = gw.admin_get("/readyz").await;
        if status == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/readyz still {status}: {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // The same token now opens the income, once.
    let r = bank.post("/v1/query", &ask).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(decision_of(&r.body, "monthly_income"), returned());
    assert_eq!(released(&r.body)["monthly_income"], json!(18500));
    let seq: u64 = r.headers["x-audit-seq"].to_str().unwrap().parse().unwrap();
    let row = registry(id.clone()).await.unwrap();
    assert_eq!((row.state.as_str(), row.uses), ("exhausted", 1));
    assert!(row.last_used_at.is_some());
    let s = status(&gw, &id).await;
    assert_eq!(s.status, 200, "{}", s.body);
    assert_eq!(
        (s.body["state"].clone(), s.body["uses"].clone()),
        (json!("exhausted"), json!(1))
    );
    let r = bank.post("/v1/query", &ask).await;
    assert_eq!(decision_of(&r.body, "monthly_income"), invalid("exhausted"));
    assert!(!r.body.to_string().contains(INCOME));
    assert_eq!(registry(id.clone()).await.unwrap().uses, 1);

    // The log: no entry for the refused request; the answered query's entry
    // (at the sequence number it was answered with) names the consent and
    // the returned field; then the status read and the exhausted query.
    let entries = audit_entries(&gw.store).await;
    assert_eq!(entries.len(), logged + 3);
    assert!(entries.iter().all(|e| e.request_id != failed_request));
    let answered = &entries[usize::try_from(seq).unwrap()];
    assert_eq!(
        (
            answered.action.as_str(),
            answered.outcome.as_str(),
            answered.status
        ),
        ("query", "ok", 200)
    );
    assert_eq!(answered.consent.as_deref(), Some(id.as_str()));
    assert!(
        answered
            .fields
            .iter()
            .any(|f| f.field == "monthly_income" && f.decision == "returned"),
        "{answered:?}"
    );
    assert_eq!(entries[logged + 1].action, "consent_status");
    assert!(
        entries[logged + 2]
            .fields
            .iter()
            .any(|f| f.field == "monthly_income" && f.detail.as_deref() == Some("exhausted")),
        "{:?}",
        entries[logged + 2]
    );

    // A refund landing after a revocation gives the use back but leaves the
    // consent revoked; one of another binding, or with no use left, changes
    // nothing.
    let r = revoke(&gw, &id, "natural_person", ids::PERSON).await;
    assert_eq!((r.status, &r.body["state"]), (200, &json!("revoked")));
    let subject = gw.store.consent_subject(&id).await.unwrap().unwrap();
    let exp = c["exp"].as_u64().unwrap();
    let u = credgate::store::ConsentUse {
        jti: &id,
        iss: &dev.iss,
        subject: &subject,
        grantee: ids::BANK,
        purpose: "financing",
        exp,
        max_uses: Some(1),
        notice: None,
    };
    let other = credgate::store::ConsentUse {
        grantee: ids::BANK2,
        ..u
    };
    assert_eq!(gw.store.give_back_consent(&other).await.unwrap(), None);
    assert_eq!(gw.store.give_back_consent(&u).await.unwrap(), Some(0));
    assert_eq!(gw.store.give_back_consent(&u).await.unwrap(), None);
    let row = registry(id.clone()).await.unwrap();
    assert_eq!((row.state.as_str(), row.uses), ("revoked", 0));
    let r = bank.post("/v1/query", &ask).await;
    assert_eq!(decision_of(&r.body, "monthly_income"), invalid("revoked"));
    // The sequencer stops with its last handle.
    drop(audit);
    gw.stop().await;
}

//! Policy reloads: a changed grant applies at the next request, a broken policy is refused and audited, racing queries decided under one policy, a consent issuer key pinned by a reload.

use super::*;

#[tokio::test]
async fn a_changed_grant_applies_at_the_next_request_and_a_broken_policy_is_refused_and_audited() {
    let m = Material::new("reload-policy");
    let gw = TestGateway::start_with(|c| m.apply(c, 86_400), true).await;
    let old_hash = m.policy_hash(&gw.config);
    let mut open = Conn::open(gw.addr, &m.certs, "bank").await.unwrap();
    let (status, body) = open.post("/v1/query", &bank_query()).await.unwrap();
    assert_eq!(
        (status, decision_of(&body)),
        (200, "returned".into()),
        "{body}"
    );

    m.withhold_field_from_banks();
    let new_hash = m.policy_hash(&gw.config);
    assert_ne!(new_hash, old_hash);
    let (status, report) = admin_post(gw.admin, "/reload").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["policy"], "loaded", "{report}");
    assert_eq!(report["policy_hash"], new_hash.as_str(), "{report}");

    // Next request, on the same connection and on a new one: withheld.
    let (status, body) = open.post("/v1/query", &bank_query()).await.unwrap();
    assert_eq!(
        (status, decision_of(&body)),
        (200, "withheld".into()),
        "{body}"
    );
    let mut fresh = Conn::open(gw.addr, &m.certs, "bank").await.unwrap();
    let (_, body) = fresh.post("/v1/query", &bank_query()).await.unwrap();
    assert_eq!(decision_of(&body), "withheld", "{body}");

    // A broken file: refused with its file and line, the policy in force
    // keeps serving.
    let (line, good) = m.break_grants();
    let broken_hash = m.policy_hash(&gw.config);
    let (status, report) = admin_post(gw.admin, "/reload").await;
    assert_eq!(status, 422, "{report}");
    assert_eq!(report["applied"], false, "{report}");
    assert_eq!(report["policy"], "refused", "{report}");
    assert_eq!(report["policy_hash"], new_hash.as_str(), "{report}");
    let error = report["error"].as_str().unwrap();
    assert!(error.contains(&format!("grants.toml:{line}")), "{error}");
    let (status, body) = open.post("/v1/query", &bank_query()).await.unwrap();
    assert_eq!(
        (status, decision_of(&body)),
        (200, "withheld".into()),
        "{body}"
    );

    // The log: every query names the policy it was decided under; both
    // reloads are there, the refusal with its reason and the refused hash.
    let entries = common::audit_entries(&gw.store).await;
    let queries: Vec<&AuditEntry> = entries.iter().filter(|e| e.action == "query").collect();
    let hashes: Vec<&str> = queries
        .iter()
        .map(|e| e.policy.as_deref().unwrap())
        .collect();
    assert_eq!(hashes, [&old_hash, &new_hash, &new_hash, &new_hash]);
    assert!(
        queries
            .iter()
            .all(|e| e.v == credgate::audit::ENTRY_VERSION)
    );
    let r = reloads(&entries);
    assert_eq!(r.len(), 2, "{r:?}");
    assert_eq!(
        (r[0].outcome.as_str(), r[0].policy.as_deref()),
        ("ok", Some(new_hash.as_str()))
    );
    assert_eq!(field(r[0], "policy").decision, "loaded");
    assert_eq!(
        field(r[0], "policy").detail.as_deref(),
        Some(new_hash.as_str())
    );
    assert_eq!(r[1].outcome, "reload_refused");
    assert_eq!(r[1].status, 422);
    assert_eq!(r[1].policy.as_deref(), Some(new_hash.as_str()));
    assert_eq!(field(r[1], "policy").decision, "refused");
    assert_eq!(
        field(r[1], "policy").detail.as_deref(),
        Some(broken_hash.as_str())
    );
    assert_eq!(field(r[1], "error").reason, "invalid_policy");
    assert!(
        field(r[1], "error")
            .detail
            .as_deref()
            .unwrap()
            .contains(&format!("grants.toml:{line}")),
        "{:?}",
        r[1]
    );
    // The reload entry precedes every entry decided under the new policy.
    let first_new = entries
        .iter()
        .position(|e| e.policy.as_deref() == Some(new_hash.as_str()));
    assert_eq!(
        entries[first_new.unwrap()].action,
        "policy_reload",
        "the first entry under the new policy is its reload"
    );

    // Deregistering an organisation takes effect at its open connection's
    // next request.
    m.write_grants(&good);
    let mut bank2 = Conn::open(gw.addr, &m.certs, "bank2").await.unwrap();
    assert_eq!(bank2.post("/v1/query", &bank_query()).await.unwrap().0, 200);
    m.deregister(ids::BANK2);
    let (status, report) = admin_post(gw.admin, "/reload").await;
    assert_eq!(status, 200, "{report}");
    let (status, body) = bank2.post("/v1/query", &bank_query()).await.unwrap();
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "unregistered_organisation", "{body}");
    assert_eq!(open.post("/v1/query", &bank_query()).await.unwrap().0, 200);

    let (_, text) = gw.admin_get("/metrics").await;
    assert_eq!(
        metric(
            &text,
            r#"credgate_reloads_total{what="policy",outcome="ok"}"#
        ),
        2.0,
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            r#"credgate_reloads_total{what="policy",outcome="refused"}"#
        ),
        1.0,
        "{text}"
    );
    gw.stop().await;
}

/// Reloads while queries run: every query is decided and logged under one
/// policy — its entry's hash says withheld exactly when its decision was.
#[tokio::test]
async fn queries_racing_reloads_are_each_decided_and_logged_under_one_policy() {
    let m = Material::new("reload-race");
    let gw = TestGateway::start_with(|c| m.apply(c, 86_400), true).await;
    let grants = m.policies.join("grants.toml");
    let returned_text = std::fs::read_to_string(&grants).unwrap();
    let hash_returned = m.policy_hash(&gw.config);
    m.withhold_field_from_banks();
    let withheld_text = std::fs::read_to_string(&grants).unwrap();
    let hash_withheld = m.policy_hash(&gw.config);
    m.write_grants(&returned_text);

    // The workers query until the reloads are over (at least 40 each, at
    // most 2000), so the reloads happen while queries are in flight.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|i| {
            let (addr, certs, done) = (gw.addr, m.certs.clone(), done.clone());
            tokio::spawn(async move {
                let who = if i % 2 == 0 { "bank" } else { "bank2" };
                let mut c = Conn::open(addr, &certs, who).await.unwrap();
                let mut seen = Vec::new();
                while seen.len() < 2000
                    && !(seen.len() >= 40 && done.load(std::sync::atomic::Ordering::SeqCst))
                {
                    let (status, body) = c.post("/v1/query", &bank_query()).await.unwrap();
                    assert_eq!(status, 200, "{body}");
                    seen.push(decision_of(&body));
                }
                seen
            })
        })
        .collect();
    for round in 0..10 {
        let text = if round % 2 == 0 {
            &withheld_text
        } else {
            &returned_text
        };
        m.write_grants(text);
        let (status, report) = admin_post(gw.admin, "/reload").await;
        assert_eq!(status, 200, "{report}");
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut answered = 0;
    for w in workers {
        answered += w.await.unwrap().len();
    }
    let entries = common::audit_entries(&gw.store).await;
    let queries: Vec<&AuditEntry> = entries.iter().filter(|e| e.action == "query").collect();
    assert_eq!(queries.len(), answered);
    let mut under = [0, 0];
    for e in &queries {
        let decision = &*field(e, FIELD).decision;
        let hash = e.policy.as_deref().unwrap();
        if hash == hash_returned {
            assert_eq!(decision, "returned", "{e:?}");
            under[0] += 1;
        } else {
            assert_eq!(hash, hash_withheld, "{e:?}");
            assert_eq!(decision, "withheld", "{e:?}");
            under[1] += 1;
        }
    }
    assert_eq!(under[0] + under[1], answered);
    assert_eq!(reloads(&entries).len(), 10);
    gw.stop().await;
}

#[tokio::test]
async fn a_consent_issuer_key_pinned_by_a_reload_is_trusted_from_the_next_request() {
    use credgate::consent::token::KeyAlg;
    use credgate::consent::tool::{IssueParams, issue, keygen};
    let m = Material::new("reload-consent");
    let gw = TestGateway::start_with(|c| m.apply(c, 86_400), true).await;
    let key = m.policies.join("..").join("new-issuer.key");
    let block = keygen(&key, KeyAlg::EdDSA, "reload-test-issuer", "k-2026").unwrap();
    let token = issue(
        &IssueParams {
            issuer_key: key,
            kid: "k-2026".into(),
            iss: "reload-test-issuer".into(),
            sub: ids::PERSON.into(),
            grantee: ids::BANK.into(),
            purpose: "financing".into(),
            scope: vec!["monthly_income".into()],
            ttl: 3600,
            max_uses: None,
            written: true,
            notice_text: Some("如未按约定履行还款义务，相关信息将被记入信用档案。".into()),
            aud: gw.config.server.gateway_id.clone(),
            jti: None,
        },
        credgate::consent::now_unix(),
    )
    .unwrap();
    let ask = || {
        let mut q = query(
            "natural_person",
            ids::PERSON,
            "financing",
            &["monthly_income"],
        );
        q["consent_token"] = json!(token);
        q
    };
    let income = |body: &Value| {
        common::decisions(body)
            .into_iter()
            .find(|(f, _, _)| f == "monthly_income")
            .map(|(_, d, r)| (d, r))
            .unwrap()
    };
    let mut open = Conn::open(gw.addr, &m.certs, "bank").await.unwrap();
    let (status, body) = open.post("/v1/query", &ask()).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(income(&body), ("withheld".into(), "consent_invalid".into()));

    let p = m.policies.join("consent.toml");
    let text = std::fs::read_to_string(&p).unwrap();
    write_atomically(&p, format!("{text}\n{block}").as_bytes());
    let (status, report) = admin_post(gw.admin, "/reload").await;
    assert_eq!(
        (status, &report["policy"]),
        (200, &json!("loaded")),
        "{report}"
    );
    let (status, body) = open.post("/v1/query", &ask()).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        income(&body),
        ("returned".into(), "authorised".into()),
        "{body}"
    );
    gw.stop().await;
}

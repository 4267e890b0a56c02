//! Who reaches the audit API (auditors only, every call audited), search by subject, hostile auditor input, and the portal's own-history view.

use super::*;

#[tokio::test]
async fn only_auditors_reach_the_audit_api_and_every_call_is_audited() {
    let gw = TestGateway::start().await;
    let calls: [(&str, &str, Option<Value>, &str); 7] = [
        ("POST", "/v1/audit/search", Some(json!({})), "audit_search"),
        (
            "POST",
            "/v1/audit/proof/inclusion",
            Some(json!({"seq": 0})),
            "audit_inclusion_proof",
        ),
        (
            "POST",
            "/v1/audit/proof/consistency",
            Some(json!({"old_size": 0})),
            "audit_consistency_proof",
        ),
        ("GET", "/v1/audit/checkpoint", None, "audit_checkpoint"),
        ("POST", "/v1/audit/report", Some(json!({})), "audit_report"),
        ("POST", "/v1/audit/export", Some(json!({})), "audit_export"),
        (
            "POST",
            "/v1/portal/access-history",
            Some(json!({"subject": {"type": "legal_person", "id": ids::CERAMICS}})),
            "access_history",
        ),
    ];
    let mut expected_entries = Vec::new();
    for (method, path, body, action) in &calls {
        let allowed = if *action == "access_history" {
            "portal"
        } else {
            "auditor"
        };
        for who in [
            "bank",
            "department",
            "agency",
            "portal",
            "auditor",
            "unregistered",
        ] {
            if who == allowed {
                continue;
            }
            let r = raw(
                gw.addr,
                who,
                method,
                path,
                body.as_ref().map(|b| b.to_string().into_bytes()),
            )
            .await
            .unwrap();
            let code = if who == "unregistered" {
                "unregistered_organisation"
            } else {
                "role_not_permitted"
            };
            assert_eq!(
                (r.status, r.json()["error"]["code"].as_str()),
                (403, Some(code)),
                "{who} {path}"
            );
            expected_entries.push((action.to_string(), code.to_string()));
        }
    }
    // The right role with the wrong method.
    let r = raw(gw.addr, "auditor", "GET", "/v1/audit/search", None)
        .await
        .unwrap();
    assert_eq!(r.status, 405);
    let r = raw(
        gw.addr,
        "auditor",
        "GET",
        "/v1/audit/checkpoint?size=1",
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 400);
    let r = raw(gw.addr, "auditor", "GET", "/v1/audit/nothing", None)
        .await
        .unwrap();
    assert_eq!(r.status, 404);
    let entries = audit_entries(&gw.store).await;
    let got: Vec<(String, String)> = entries
        .iter()
        .take(expected_entries.len())
        .map(|e| (e.action.clone(), e.outcome.clone()))
        .collect();
    assert_eq!(got, expected_entries, "every refused call is audited");
    assert_eq!(entries.len(), expected_entries.len() + 3);
    // A method the path does not allow is not a call of that endpoint: the
    // entry names the refusal (uniformly for every path, see http::route).
    assert_eq!(entries[entries.len() - 3].action, "method_not_allowed");
    assert_eq!(entries[entries.len() - 3].outcome, "method_not_allowed");
    gw.stop().await;
}

#[tokio::test]
async fn search_by_subject_finds_exactly_that_subjects_entries() {
    let gw = TestGateway::start().await;
    let hasher = credgate::audit::SubjectHasher::new(
        &std::fs::read(gw.config.audit.subject_key_file.as_ref().unwrap()).unwrap(),
    );
    let ceramics = credgate::ids::SubjectId::parse("legal_person", ids::CERAMICS).unwrap();
    assert_eq!(
        bank_query(&gw, "bank", "legal_person", ids::CERAMICS)
            .await
            .status,
        200
    );
    assert_eq!(
        bank_query(&gw, "bank", "legal_person", ids::CHEM)
            .await
            .status,
        200
    );
    assert_eq!(
        bank_query(&gw, "bank2", "legal_person", ids::CERAMICS)
            .await
            .status,
        200
    );
    let r = gw
        .client("agency")
        .post(
            "/v1/query",
            &query(
                "natural_person",
                ids::PERSON,
                "credit_report",
                &["person_name"],
            ),
        )
        .await;
    assert_eq!(r.status, 200);
    // A failed query about the same subject (unknown purpose).
    let r = gw
        .client("bank")
        .post(
            "/v1/query",
            &query(
                "legal_person",
                ids::CERAMICS,
                "curiosity",
                &["enterprise_name"],
            ),
        )
        .await;
    assert_eq!(r.status, 400);

    let search = |body: Value| post(&gw, "auditor", "/v1/audit/search", body);
    let r = search(json!({"subject": {"type": "legal_person", "id": ids::CERAMICS}})).await;
    assert_eq!(r.status, 200, "{}", r.json());
    let found = r.json()["entries"].as_array().unwrap().clone();
    let seqs: Vec<u64> = found.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![0, 2, 4]);
    let all = audit_entries(&gw.store).await;
    let want_hash = hasher.hash(&ceramics);
    for (i, e) in all.iter().enumerate().take(5) {
        assert_eq!(
            seqs.contains(&(i as u64)),
            e.subject.as_deref() == Some(want_hash.as_str()),
            "seq {i}"
        );
    }
    for e in &found {
        assert_eq!(e["entry"]["subject"], want_hash);
    }
    // The same by hash, and the subject look-up itself is on the record.
    let r = search(json!({"subject_hash": want_hash})).await;
    assert_eq!(
        r.json()["entries"].as_array().unwrap().len(),
        4,
        "3 + the search"
    );
    let last = audit_entries(&gw.store).await;
    let lookup = &last[5];
    assert_eq!(lookup.action, "audit_search");
    assert_eq!(lookup.subject.as_deref(), Some(want_hash.as_str()));

    // Other filters.
    let count = |r: &Raw| r.json()["entries"].as_array().map(Vec::len).unwrap_or(99);
    let r = search(json!({"org": ids::BANK, "action": "query"})).await;
    assert_eq!(count(&r), 3);
    let r = search(json!({"org": ids::BANK2})).await;
    assert_eq!(count(&r), 1);
    let r = search(json!({"purpose": "credit_report"})).await;
    assert_eq!(count(&r), 1);
    let r = search(json!({"outcome": "unknown_purpose"})).await;
    assert_eq!(count(&r), 1);
    let r = search(json!({"decision": "withheld", "action": "query"})).await;
    assert_eq!(count(&r), 3, "tax_paid_annual is withheld from banks");
    // Denied attempts are refusals: the unknown purpose, not the consent
    // a bank did not present for tax_paid_annual.
    let r = search(json!({"denied": true, "action": "query"})).await;
    assert_eq!(count(&r), 1);
    let r =
        search(json!({"from": "2000-01-01T00:00:00Z", "to": "2000-01-02T00:00:00+08:00"})).await;
    assert_eq!(count(&r), 0);
    let r = search(json!({"from": "2000-01-01T00:00:00Z", "action": "query"})).await;
    assert_eq!(count(&r), 5);
    // Pagination.
    let r = search(json!({"action": "query", "limit": 2})).await;
    assert_eq!(count(&r), 2);
    let next = r.json()["next_after"].as_u64().unwrap();
    let r = search(json!({"action": "query", "limit": 2, "after": next})).await;
    assert_eq!(count(&r), 2);
    let next = r.json()["next_after"].as_u64().unwrap();
    let r = search(json!({"action": "query", "limit": 2, "after": next})).await;
    assert_eq!(count(&r), 1);
    assert!(r.json()["next_after"].is_null());
    gw.stop().await;
}

#[tokio::test]
async fn hostile_auditor_input_gets_stable_400s_and_is_audited() {
    let gw = TestGateway::start().await;
    bank_query(&gw, "bank", "legal_person", ids::CERAMICS).await;
    let (size, _) = checkpoint_now(&gw).await;
    let before = gw.store.log_head().await.unwrap().0;
    let records = gw.store.record_count().await.unwrap();
    #[rustfmt::skip]
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        ("auditor", "/v1/audit/search", b"{not json".to_vec(), 400, "malformed_json"),
        ("auditor", "/v1/audit/search", b"".to_vec(), 400, "malformed_json"),
        ("auditor", "/v1/audit/search", br#"{"sql":"DROP TABLE audit_log"}"#.to_vec(), 400, "invalid_request"),
        ("auditor", "/v1/audit/search", br#"{"limit":0}"#.to_vec(), 400, "invalid_request"),
        ("auditor", "/v1/audit/search", br#"{"limit":100000}"#.to_vec(), 400, "invalid_request"),
        ("auditor", "/v1/audit/search", br#"{"limit":-1}"#.to_vec(), 400, "invalid_request"),
        ("auditor", "/v1/audit/search", br#"{"after":1e99}"#.to_vec(), 400, "invalid_request"),
        ("auditor", "/v1/audit/search", br#"{"after":18446744073709551615}"#.to_vec(), 200, ""),
        ("auditor", "/v1/audit/search", br#"{"org":"91370300164100001B"}"#.to_vec(), 400, "invalid_identifier"),
        ("auditor", "/v1/audit/search", br#"{"subject":{"type":"legal_person","id":"91370300MA3CXQ001T"}}"#.to_vec(), 400, "invalid_identifier"),
        ("auditor", "/v1/audit/search", br#"{"subject":{"type":"alien","id":"x"}}"#.to_vec(), 400, "unknown_subject_type"),
        ("auditor", "/v1/audit/search", br#"{"subject_hash":"' OR 1=1 --"}"#.to_vec(), 400, "invalid_request"),
        ("auditor", "/v1/audit/search", br#"{"purpose":"x' OR '1'='1"}"#.to_vec(), 400, "invalid_request"),
        ("auditor", "/v1/audit/search", br#"{"decision":"maybe"}"#.to_vec(), 400, "invalid_request"),
        ("auditor", "/v1/audit/search", br#"{"from":"yesterday"}"#.to_vec(), 400, "invalid_timestamp"),
        ("auditor", "/v1/audit/search", br#"{"from":"2026-02-30T00:00:00Z"}"#.to_vec(), 400, "invalid_timestamp"),
        ("auditor", "/v1/audit/search", br#"{"from":"2026-01-02T00:00:00Z","to":"2026-01-01T00:00:00Z"}"#.to_vec(), 400, "invalid_range"),
        ("auditor", "/v1/audit/search", vec![b'['; 100_000], 400, "too_deep"),
        ("auditor", "/v1/audit/proof/inclusion", br#"{"seq":999}"#.to_vec(), 400, "invalid_range"),
        ("auditor", "/v1/audit/proof/inclusion", br#"{"seq":0,"tree_size":0}"#.to_vec(), 400, "invalid_range"),
        ("auditor", "/v1/audit/proof/inclusion", br#"{"seq":0,"tree_size":18446744073709551615}"#.to_vec(), 400, "invalid_range"),
        ("auditor", "/v1/audit/proof/inclusion", br#"{"seq":"0"}"#.to_vec(), 400, "invalid_request"),
        ("auditor", "/v1/audit/proof/consistency", br#"{"old_size":5,"new_size":2}"#.to_vec(), 400, "invalid_range"),
        ("auditor", "/v1/audit/proof/consistency", br#"{"old_size":18446744073709551615}"#.to_vec(), 400, "invalid_range"),
        ("auditor", "/v1/audit/report", br#"{"top":0}"#.to_vec(), 400, "invalid_request"),
        ("auditor", "/v1/audit/report", br#"{"from":"2026-01-01T00:00:00"}"#.to_vec(), 400, "invalid_timestamp"),
        ("auditor", "/v1/audit/export", br#"{"format":"xml"}"#.to_vec(), 400, "invalid_request"),
        ("auditor", "/v1/audit/export", br#"{"from_seq":1,"to_seq":0}"#.to_vec(), 400, "invalid_range"),
        ("auditor", "/v1/audit/export", br#"{"to_seq":99999999}"#.to_vec(), 400, "invalid_range"),
        ("auditor", "/v1/audit/export", br#"{"from_seq":0,"from":"2026-01-01T00:00:00Z"}"#.to_vec(), 400, "invalid_request"),
        ("auditor", "/v1/audit/export", br#"{"tree_size":999999}"#.to_vec(), 400, "invalid_range"),
        ("auditor", "/v1/audit/export", br#"{"consistency_from":999999}"#.to_vec(), 400, "invalid_range"),
        ("portal", "/v1/portal/access-history", br#"{"subject":{"type":"natural_person","id":"370303198502300011"}}"#.to_vec(), 400, "invalid_identifier"),
        ("portal", "/v1/portal/access-history", br#"{"subject":{"type":"legal_person","id":"91370300MA3CXQ001R"},"limit":5000}"#.to_vec(), 400, "invalid_request"),
        ("portal", "/v1/portal/access-history", br#"{}"#.to_vec(), 400, "invalid_request"),
    ];
    let n = cases.len() as u64;
    for (i, (who, path, body, status, code)) in cases.into_iter().enumerate() {
        let r = raw(gw.addr, who, "POST", path, Some(body)).await.unwrap();
        let v = r.json();
        assert_eq!(r.status, status, "case {i} {path}: {v}");
        if status != 200 {
            assert_eq!(v["error"]["code"], code, "case {i}: {v}");
            assert!(
                v["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty())
            );
        }
        assert!(r.headers.contains_key("x-audit-seq"), "case {i} audited");
    }
    // Nothing stored but the audit entries of the calls themselves.
    assert_eq!(gw.store.record_count().await.unwrap(), records);
    assert_eq!(gw.store.log_head().await.unwrap().0, before + n);
    assert!(size >= 1);
    gw.stop().await;
}

#[tokio::test]
async fn portal_shows_a_subject_its_own_access_history_only() {
    let gw = TestGateway::start().await;
    let agency = gw.client("agency");
    let r = agency
        .post(
            "/v1/query",
            &query(
                "natural_person",
                ids::PERSON,
                "credit_report",
                &["person_name", "religion"],
            ),
        )
        .await;
    assert_eq!(r.status, 200);
    agency
        .post(
            "/v1/query",
            &query(
                "natural_person",
                ids::PERSON2,
                "credit_report",
                &["person_name"],
            ),
        )
        .await;
    bank_query(&gw, "bank", "legal_person", ids::CERAMICS).await;
    // An auditor looking the person up is not an access to their data.
    post(
        &gw,
        "auditor",
        "/v1/audit/search",
        json!({"subject": {"type": "natural_person", "id": ids::PERSON}}),
    )
    .await;

    let r = post(
        &gw,
        "portal",
        "/v1/portal/access-history",
        json!({"subject": {"type": "natural_person", "id": ids::PERSON}}),
    )
    .await;
    let v = r.json();
    assert_eq!(r.status, 200, "{v}");
    let entries = v["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{v}");
    let e = &entries[0];
    assert_eq!(e["org"], "91370300MA3C00001U");
    assert!(e["org_name"].as_str().unwrap().contains("信用服务"));
    assert_eq!(e["purpose"], "credit_report");
    assert_eq!(e["action"], "query");
    assert_eq!(e["outcome"], "ok");
    assert_eq!(e["fields"][0]["field"], "person_name");
    assert_eq!(e["fields"][1]["field"], "prohibited:religion");
    assert_eq!(e["fields"][1]["decision"], "withheld");
    assert!(e["ts"].as_str().unwrap().ends_with('Z'));
    assert_eq!(v["subject"]["id"], ids::PERSON);
    let text = v.to_string();
    assert!(!text.contains(ids::PERSON2) && !text.contains(ids::CERAMICS));

    // The history request is audited under the subject.
    let last = audit_entries(&gw.store).await.pop().unwrap();
    assert_eq!(last.action, "access_history");
    assert_eq!(last.org.as_deref(), Some(ids::PORTAL));
    assert!(last.subject.is_some());
    // And it is the portal's alone.
    let r = post(
        &gw,
        "bank",
        "/v1/portal/access-history",
        json!({"subject": {"type": "natural_person", "id": ids::PERSON}}),
    )
    .await;
    assert_eq!(r.status, 403);
    gw.stop().await;
}

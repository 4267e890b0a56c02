//! 应查必查 checks and the 信易贷 financing profile, sample quotas, the access history, and hostile input to every lifecycle endpoint.

use super::*;

#[tokio::test]
async fn financing_profile_has_a_summary_of_what_was_released() {
    let (gw, clock) = start(date!(2026 - 11 - 23)).await;
    let bank = gw.client("bank");
    let profile =
        |id: &str| json!({"subject": lp(id), "purpose": "financing", "view": "financing_profile"});
    let r = bank.post("/v1/query", &profile(ids::CERAMICS)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["view"], "financing_profile");
    let summary = &r.body["summary"];
    assert_eq!(
        *summary,
        json!({"active_penalties": 1, "broken_commitments": 0, "dishonest_debtor": false, "arrears": false, "black_listed": false,
               "red_listed": false, "focus_listed": false, "disputed_items": 0, "as_of": "2026-11-23"})
    );
    // Enterprise-authorised data is withheld without consent, and no value leaks.
    let d = decisions(&r.body);
    for f in [
        "tax_paid_annual",
        "insured_employees",
        "utilities_paid_annual",
    ] {
        assert!(
            d.contains(&(f.into(), "withheld".into(), "consent_required".into())),
            "{f}: {d:?}"
        );
    }
    assert!(d.contains(&(
        "penalty_content".into(),
        "returned".into(),
        "authorised".into()
    )));
    assert!(!r.body.to_string().contains("1286000"));
    // The seeded penalty has no recorded terms: catalog default (general) and
    // its penalty_date apply.
    let pen = r.body["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["item"] == "admin_penalty")
        .unwrap()
        .clone();
    assert_eq!(
        pen["terms"],
        json!({"tier": "general", "decision_date": "2026-05-12", "disclosed_until": "2027-05-12", "recorded": false})
    );

    // A dispute and a listing show up; arrears of the other enterprise too.
    let pid = pen["record_id"].as_i64().unwrap();
    let r = gw
        .client("portal")
        .post(
            "/v1/objections",
            &json!({"subject": lp(ids::CERAMICS), "record_id": pid, "grounds": "标识已整改"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    gw.client("department")
        .post(
            "/v1/lists/focus",
            &json!({"subject": lp(ids::CERAMICS), "basis": "重点监管"}),
        )
        .await;
    let r = bank.post("/v1/query", &profile(ids::CERAMICS)).await;
    assert_eq!(r.body["summary"]["disputed_items"], 1);
    assert_eq!(r.body["summary"]["active_penalties"], 1);
    assert_eq!(r.body["summary"]["focus_listed"], true);
    let r = bank.post("/v1/query", &profile(ids::CHEM)).await;
    assert_eq!(r.body["summary"]["arrears"], true);
    assert_eq!(r.body["summary"]["active_penalties"], 0);
    // After the period the penalty is no longer counted.
    clock.set(date!(2027 - 05 - 12));
    let r = bank.post("/v1/query", &profile(ids::CERAMICS)).await;
    assert_eq!(r.body["summary"]["active_penalties"], 0);
    assert_eq!(r.body["summary"]["disputed_items"], 0);

    // A view is bound to its purpose.
    let r = gw
        .client("portal")
        .post("/v1/query", &json!({"subject": lp(ids::CERAMICS), "purpose": "self_inquiry", "view": "financing_profile"}))
        .await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (400, Some("view_purpose_mismatch"))
    );
    gw.stop().await;
}

#[tokio::test]
async fn hostile_input_to_every_new_endpoint_is_a_clear_4xx_stores_nothing_and_is_audited() {
    let s = code(40);
    let (gw, _clock) = start(date!(2026 - 11 - 23)).await;
    let ids = submit(
        &gw,
        "department",
        vec![penalty(&s, "general", "2026-10-01", "罚款")],
    )
    .await;
    let rec = ids[0];
    let c = check(&gw, "department", &s, "franchise").await;
    let check_id = c["check_id"].as_i64().unwrap();
    let base = audit_entries(&gw.store).await.len();
    let before = gw.store.lifecycle_row_count().await.unwrap();

    let big = "字".repeat(501);
    let fb_path = format!("/v1/checks/{check_id}/feedback");
    let hist_path = format!("/v1/records/{rec}/history");
    let obj = |extra: Value| {
        let mut b = json!({"subject": lp(&s), "record_id": rec, "grounds": "理由"});
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                b.as_object_mut().unwrap().remove(k);
            } else {
                b[k] = v.clone();
            }
        }
        b.to_string().into_bytes()
    };
    let p = |s: &str| s.as_bytes().to_vec();
    let rec_body = |r: Value| json!({"records": [r]}).to_string().into_bytes();
    let future_penalty = penalty(&s, "general", "2026-11-24", "x");
    let mut mismatch = penalty(&s, "general", "2026-10-01", "x");
    mismatch["decision_date"] = json!("2026-10-02");
    let mut no_terms = penalty(&s, "general", "2026-10-01", "x");
    no_terms.as_object_mut().unwrap().remove("tier");
    let mut bad_tier = penalty(&s, "general", "2026-10-01", "x");
    bad_tier["tier"] = json!("catastrophic");
    let mut bad_date = penalty(&s, "general", "2026-10-01", "x");
    bad_date["decision_date"] = json!("2026-13-01");
    let cases: Vec<Case<'_>> = vec![
        // objections
        ("portal", "POST", "/v1/objections", p("{not json"), 400, "malformed_json"),
        ("portal", "POST", "/v1/objections", p(""), 400, "malformed_json"),
        ("portal", "POST", "/v1/objections", vec![b'['; 100_000], 400, "too_deep"),
        ("portal", "POST", "/v1/objections", p("[]"), 400, "invalid_request"),
        ("portal", "POST", "/v1/objections", obj(json!({"extra": 1})), 400, "invalid_request"),
        ("portal", "POST", "/v1/objections", obj(json!({"grounds": null})), 400, "invalid_request"),
        ("portal", "POST", "/v1/objections", obj(json!({"evidence": {"血型": "A"}})), 422, "prohibited_field"),
        ("portal", "POST", "/v1/objections", obj(json!({"Fingerprint_Image": "..."})), 422, "prohibited_field"),
        ("portal", "POST", "/v1/objections", obj(json!({"record_id": 0})), 400, "invalid_id"),
        ("portal", "POST", "/v1/objections", obj(json!({"record_id": -7})), 400, "invalid_id"),
        ("portal", "POST", "/v1/objections", obj(json!({"record_id": 1e30})), 400, "invalid_request"),
        ("portal", "POST", "/v1/objections", obj(json!({"record_id": "1"})), 400, "invalid_request"),
        ("portal", "POST", "/v1/objections", obj(json!({"record_id": 987654})), 404, "record_not_found"),
        ("portal", "POST", "/v1/objections", obj(json!({"record_id": 1})), 404, "record_not_found"),
        ("portal", "POST", "/v1/objections", obj(json!({"grounds": "   "})), 400, "invalid_text"),
        ("portal", "POST", "/v1/objections", obj(json!({"grounds": big})), 400, "invalid_text"),
        ("portal", "POST", "/v1/objections", obj(json!({"grounds": "a\u{0000}b"})), 400, "invalid_text"),
        ("portal", "POST", "/v1/objections", obj(json!({"subject": lp("91370300MA3CXQ001T")})), 400, "invalid_identifier"),
        ("portal", "POST", "/v1/objections", obj(json!({"subject": {"type": "alien", "id": "x"}})), 400, "unknown_subject_type"),
        ("bank", "POST", "/v1/objections", obj(json!({})), 403, "role_not_permitted"),
        ("portal", "PUT", "/v1/objections", obj(json!({})), 405, "method_not_allowed"),
        ("department", "POST", "/v1/objections/abc/resolution", p(r#"{"outcome":"upheld"}"#), 400, "invalid_id"),
        ("department", "POST", "/v1/objections/0/resolution", p(r#"{"outcome":"upheld"}"#), 400, "invalid_id"),
        ("department", "POST", "/v1/objections/99999999999999999999/resolution", p(r#"{"outcome":"upheld"}"#), 400, "invalid_id"),
        ("department", "POST", "/v1/objections/424242/resolution", p(r#"{"outcome":"upheld"}"#), 404, "objection_not_found"),
        ("department", "POST", "/v1/objections/1/resolution", p(r#"{"outcome":"upheld","fields":{"religion":"x"}}"#), 422, "prohibited_field"),
        ("department", "POST", "/v1/objections/1/resolution", p(r#"{"outcome":7}"#), 400, "invalid_request"),
        ("portal", "POST", "/v1/objections/1/resolution", p(r#"{"outcome":"upheld"}"#), 403, "role_not_permitted"),
        ("portal", "GET", "/v1/objections/overdue", vec![], 403, "role_not_permitted"),
        ("auditor", "POST", "/v1/objections/overdue", p("{}"), 405, "method_not_allowed"),
        ("department", "GET", "/v1/objections/1/2/3", vec![], 404, "not_found"),
        // repairs
        ("portal", "POST", "/v1/repairs", p("{"), 400, "malformed_json"),
        ("portal", "POST", "/v1/repairs", obj(json!({"record_id": 987654})), 404, "record_not_found"),
        ("portal", "POST", "/v1/repairs", obj(json!({"grounds": 5})), 400, "invalid_request"),
        ("portal", "POST", "/v1/repairs", obj(json!({})), 409, "repair_too_early"),
        ("department", "POST", "/v1/repairs", obj(json!({})), 403, "role_not_permitted"),
        ("department", "POST", "/v1/repairs/x/decision", p(r#"{"decision":"approve"}"#), 400, "invalid_id"),
        ("department", "POST", "/v1/repairs/5/decision", p(r#"{"decision":"maybe"}"#), 400, "unknown_decision"),
        ("department", "POST", "/v1/repairs/5/decision", p(r#"{"decision":"approve"}"#), 404, "repair_not_found"),
        ("department", "POST", "/v1/repairs/5/decision", p(r#"{"decision":"approve","note":""}"#), 400, "invalid_text"),
        // lists
        ("department", "POST", "/v1/lists/grey", p("{}"), 404, "not_found"),
        ("department", "GET", "/v1/lists/red", vec![], 405, "method_not_allowed"),
        ("bank", "POST", "/v1/lists/black", p("{}"), 403, "role_not_permitted"),
        ("department", "POST", "/v1/lists/red", p(r#"{"subject":{"type":"legal_person","id":"91370300MA3CXQ001R"}}"#), 400, "invalid_request"),
        ("department", "POST", "/v1/lists/red", json!({"subject": lp(&s), "basis": ""}).to_string().into_bytes(), 400, "invalid_text"),
        ("department", "POST", "/v1/lists/red", json!({"subject": lp(&s), "basis": "b", "effective_from": "2026-02-30"}).to_string().into_bytes(), 400, "invalid_date"),
        ("department", "POST", "/v1/lists/red", json!({"subject": lp(&s), "basis": "b", "effective_to": "2026-11-23"}).to_string().into_bytes(), 400, "invalid_date"),
        ("department", "POST", "/v1/lists/black", json!({"subject": lp(&s), "basis": "b", "basis_record_id": 1}).to_string().into_bytes(), 422, "unknown_basis_record"),
        ("department", "POST", "/v1/lists/black", json!({"subject": lp(&s), "basis": "b", "basis_record_id": 0}).to_string().into_bytes(), 400, "invalid_id"),
        ("department", "POST", "/v1/lists/black", json!({"subject": lp(&s), "basis": "b", "face_image": "x"}).to_string().into_bytes(), 422, "prohibited_field"),
        ("department", "POST", "/v1/lists/entries/77/exit", p(r#"{"reason":"r"}"#), 404, "list_entry_not_found"),
        ("department", "POST", "/v1/lists/entries/77/exit", p(r#"{"reason":"r","exit_date":"2099-01-01"}"#), 400, "invalid_exit_date"),
        ("department", "POST", "/v1/lists/entries/77/exit", p("{}"), 400, "invalid_request"),
        ("department", "POST", "/v1/lists/entries/-1/exit", p(r#"{"reason":"r"}"#), 400, "invalid_id"),
        // checks
        ("department", "POST", "/v1/checks", json!({"subject": lp(&s), "matter": "moon_landing"}).to_string().into_bytes(), 400, "unknown_matter"),
        ("department", "POST", "/v1/checks", json!({"matter": "franchise"}).to_string().into_bytes(), 400, "invalid_request"),
        ("bank", "POST", "/v1/checks", json!({"subject": lp(&s), "matter": "franchise"}).to_string().into_bytes(), 403, "role_not_permitted"),
        ("department", "POST", "/v1/checks/424242/feedback", p(r#"{"applied":[]}"#), 404, "check_not_found"),
        ("tax", "POST", &fb_path, p(r#"{"applied":[]}"#), 404, "check_not_found"),
        ("department", "POST", &fb_path, p(r#"{"applied":"all"}"#), 400, "invalid_request"),
        ("department", "POST", &fb_path, p(r#"{"applied":["nope"]}"#), 422, "unknown_measure"),
        ("department", "POST", &fb_path, p(r#"{"not_applied":[{"measure":"nope","reason":""}]}"#), 422, "unknown_measure"),
        // history
        ("department", "GET", "/v1/records/abc/history", vec![], 400, "invalid_id"),
        ("department", "GET", "/v1/records/987654/history", vec![], 404, "record_not_found"),
        ("tax", "GET", &hist_path, vec![], 404, "record_not_found"),
        ("bank", "GET", &hist_path, vec![], 403, "role_not_permitted"),
        ("department", "DELETE", &hist_path, vec![], 405, "method_not_allowed"),
        // submissions and queries
        ("department", "POST", "/v1/records", rec_body(no_terms), 400, "lifecycle_terms_required"),
        ("department", "POST", "/v1/records", rec_body(bad_tier), 400, "unknown_tier"),
        ("department", "POST", "/v1/records", rec_body(bad_date), 400, "invalid_date"),
        ("department", "POST", "/v1/records", rec_body(future_penalty), 400, "future_decision_date"),
        ("department", "POST", "/v1/records", rec_body(mismatch), 400, "decision_date_mismatch"),
        ("department", "POST", "/v1/records", rec_body(json!({"subject": lp(&s), "item": "admin_licence", "tier": "minor", "fields": {"licence_no": "1"}})), 400, "lifecycle_terms_not_applicable"),
        ("department", "POST", "/v1/records", rec_body(json!({"subject": lp(&s), "item": "list_status", "fields": {"black_listed": true}})), 422, "item_not_submittable"),
        ("bank", "POST", "/v1/query", json!({"subject": lp(&s), "purpose": "financing", "view": "everything"}).to_string().into_bytes(), 400, "unknown_view"),
        ("bank", "POST", "/v1/query", json!({"subject": lp(&s), "purpose": "financing", "view": "financing_profile", "fields": ["penalty_content"]}).to_string().into_bytes(), 400, "invalid_request"),
        ("agency", "POST", "/v1/query", json!({"subject": lp(&s), "purpose": "credit_report", "view": "financing_profile"}).to_string().into_bytes(), 400, "view_purpose_mismatch"),
        ("bank", "POST", "/v1/query", json!({"subject": {"type": "natural_person", "id": ids::PERSON}, "purpose": "financing", "view": "financing_profile"}).to_string().into_bytes(), 400, "view_subject_mismatch"),
        ("bank", "POST", "/v1/query", json!({"subject": lp(&s), "purpose": "financing", "view": 3}).to_string().into_bytes(), 400, "invalid_request"),
        // size and media type
        ("portal", "POST", "/v1/objections", vec![b' '; 20 << 20], 413, "body_too_large"),
    ];
    let n = cases.len();
    for (i, (who, method, path, body, status, code)) in cases.into_iter().enumerate() {
        let r = gw
            .client(who)
            .send(method, path, Bytes::from(body), Some("application/json"))
            .await
            .unwrap();
        assert_eq!(
            (r.status, r.body["error"]["code"].as_str()),
            (status, Some(code)),
            "case {i} {method} {path}: {}",
            r.body
        );
        assert!(
            r.body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "case {i}"
        );
    }
    let r = gw
        .client("portal")
        .send(
            "POST",
            "/v1/objections",
            Bytes::from(obj(json!({}))),
            Some("text/plain"),
        )
        .await
        .unwrap();
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (415, Some("unsupported_media_type"))
    );
    // Nothing stored, every request audited, the prohibited names only as categories.
    assert_eq!(gw.store.lifecycle_row_count().await.unwrap(), before);
    let entries = audit_entries(&gw.store).await;
    assert_eq!(entries.len(), base + n + 1);
    let hostile = &entries[base..];
    assert!(
        hostile
            .iter()
            .all(|e| e.status >= 400 && e.status < 500 && e.outcome != "ok")
    );
    let text: String = hostile
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect();
    assert!(
        !text.contains("血型")
            && !text.contains("Fingerprint_Image")
            && !text.contains("face_image")
    );
    assert!(text.contains("prohibited:blood_type") && text.contains("prohibited:fingerprint"));
    // The department check still works: the store is fine.
    check(&gw, "department", &s, "franchise").await;
    gw.stop().await;
}

/// The sample policies set per-role quotas (`[role_quota]` in
/// `policies/organisations.toml`), so a credit agency sweeping subjects is
/// stopped; denied attempts are refusals only, never the lifecycle
/// withholdings of an ordinary review; the report's categories are
/// disjoint and add up to the total.
#[tokio::test]
async fn sample_quotas_apply_and_only_refusals_count_as_denied_attempts() {
    let s = code(80);
    let (gw, clock) = start(date!(2025 - 12 - 01)).await;
    let p = submit(
        &gw,
        "department",
        vec![penalty(&s, "minor", "2025-11-30", "警告")],
    )
    .await[0];
    clock.set(date!(2026 - 03 - 01));
    for _ in 0..5 {
        let recs = records(&gw, "bank", "financing", &s, &["penalty_content"]).await;
        assert!(ids_of(&recs).is_empty(), "expired: {recs:?}");
    }
    let last = audited(&gw, "query").await.pop().unwrap();
    assert!(
        has_field(&last, &format!("record:{p}"), "withheld", "expired"),
        "{last:?}"
    );
    // A field the bank may not have for this purpose, and a bad identifier.
    let bank = gw.client("bank");
    let r = bank
        .post(
            "/v1/query",
            &query("legal_person", &s, "credit_report", &["enterprise_name"]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        decisions(&r.body).contains(&(
            "enterprise_name".into(),
            "withheld".into(),
            "not_authorised".into()
        )),
        "{}",
        r.body
    );
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
    assert_eq!(r.status, 400, "{}", r.body);

    let r = gw
        .client("auditor")
        .post("/v1/audit/report", &json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    for v in r.body["volume"].as_array().unwrap() {
        let n = |k: &str| v[k].as_i64().unwrap();
        assert_eq!(
            n("ok") + n("partly_refused") + n("refused"),
            n("total"),
            "{v}"
        );
    }
    let vol = r.body["volume"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["org"] == ids::BANK)
        .unwrap();
    assert_eq!(
        (
            &vol["total"],
            &vol["ok"],
            &vol["partly_refused"],
            &vol["refused"]
        ),
        (&json!(7), &json!(5), &json!(1), &json!(1)),
        "{vol}"
    );
    let node = r.body["anomalies"]["this_node"].as_array().unwrap();
    let b = node.iter().find(|o| o["org"] == ids::BANK).unwrap();
    assert_eq!(b["denied"], 2, "{b}");
    assert_eq!(b["quota"], 300, "the bank role's sample quota");
    let refused: Vec<&Value> = r.body["denied"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["org"] == ids::BANK)
        .collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
    let search = gw
        .client("auditor")
        .post(
            "/v1/audit/search",
            &json!({"org": ids::BANK, "denied": true}),
        )
        .await;
    assert_eq!(
        search.body["entries"].as_array().unwrap().len(),
        2,
        "{}",
        search.body
    );

    // A credit agency gets 100 distinct subjects an hour, then 429.
    let agency = gw.client("agency");
    for n in 0..100 {
        let r = agency
            .post(
                "/v1/query",
                &query(
                    "legal_person",
                    &code(1000 + n),
                    "credit_report",
                    &["enterprise_name"],
                ),
            )
            .await;
        assert_eq!(r.status, 200, "{n}: {}", r.body);
    }
    let r = agency
        .post(
            "/v1/query",
            &query(
                "legal_person",
                &code(1100),
                "credit_report",
                &["enterprise_name"],
            ),
        )
        .await;
    assert_eq!(
        (
            r.status,
            r.body["error"]["code"].as_str(),
            &r.body["error"]["details"]["limit"]
        ),
        (429, Some("quota_exceeded"), &json!(100)),
        "{}",
        r.body
    );
    gw.stop().await;
}

/// The subject's access history shows every access to its data
/// (个人信息保护法 第四十四、四十五条): queries, submissions, checks and their
/// feedback, record history reads, list changes, objections and repairs.
#[tokio::test]
async fn the_access_history_shows_every_access_to_the_subjects_data() {
    let s = code(90);
    let (gw, clock) = start(date!(2026 - 11 - 23)).await;
    let dept = gw.client("department");
    let p = submit(
        &gw,
        "department",
        vec![penalty(&s, "general", "2026-08-01", "罚款人民币1000元")],
    )
    .await[0];
    records(&gw, "bank", "financing", &s, &["penalty_content"]).await;
    assert_eq!(
        dept.get(&format!("/v1/records/{p}/history")).await.status,
        200
    );
    let c = check(&gw, "department", &s, "franchise").await;
    let id = c["check_id"].as_i64().unwrap();
    let r = dept
        .post(
            &format!("/v1/checks/{id}/feedback"),
            &json!({"not_applied": []}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = dept
        .post(
            "/v1/lists/focus",
            &json!({"subject": lp(&s), "basis": "重点监管"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let entry = r.body["entry_id"].as_i64().unwrap();
    let r = dept
        .post(
            &format!("/v1/lists/entries/{entry}/exit"),
            &json!({"reason": "整改完成"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let portal = gw.client("portal");
    let filing = json!({"subject": lp(&s), "record_id": p, "grounds": "金额有误"});
    let o = portal.post("/v1/objections", &filing).await.body["objection_id"]
        .as_i64()
        .unwrap();
    let r = dept
        .post(
            &format!("/v1/objections/{o}/resolution"),
            &json!({"outcome": "upheld"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    clock.set(date!(2026 - 11 - 30));
    let r = portal.post("/v1/repairs", &filing).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let rid = r.body["repair_id"].as_i64().unwrap();
    let r = dept
        .post(
            &format!("/v1/repairs/{rid}/decision"),
            &json!({"decision": "reject"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    let r = portal
        .post("/v1/portal/access-history", &json!({"subject": lp(&s)}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let seen: std::collections::BTreeSet<String> = r.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    for action in [
        "submit_records",
        "query",
        "record_history",
        "check",
        "check_feedback",
        "list_add",
        "list_exit",
        "objection_file",
        "objection_resolve",
        "repair_apply",
        "repair_decide",
    ] {
        assert!(seen.contains(action), "{action} missing from {seen:?}");
    }
    let orgs: Vec<&str> = r.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "record_history")
        .map(|e| e["org"].as_str().unwrap())
        .collect();
    assert_eq!(orgs, [ids::DEPARTMENT]);
    // Another subject's history holds none of it.
    let r = portal
        .post(
            "/v1/portal/access-history",
            &json!({"subject": lp(&code(91))}),
        )
        .await;
    assert_eq!(r.body["entries"], json!([]));
    gw.stop().await;
}

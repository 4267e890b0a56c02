//! Objections: filing, suspension, resolution by correction or withdrawal, validation of corrections, and what the portal and other callers may see of them.

use super::*;

#[tokio::test]
async fn objections_dispute_suspend_and_resolve_with_every_step_audited() {
    let s = code(10);
    let (gw, clock) = start(date!(2026 - 11 - 23)).await;
    let dept = gw.client("department");
    let portal = gw.client("portal");
    let ids = submit(
        &gw,
        "department",
        vec![
            penalty(&s, "general", "2026-10-01", "罚款人民币8000元"),
            penalty(&s, "minor", "2026-11-01", "警告"),
        ],
    )
    .await;
    let (p1, p2) = (ids[0], ids[1]);
    let r = dept
        .post(
            "/v1/lists/black",
            &json!({"subject": lp(&s), "basis": "淄市监罚〔2026〕101号 严重违法失信", "basis_record_id": p1}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let c = check(&gw, "tax", &s, "government_procurement").await;
    assert_eq!(
        measure(&c, "black_public_resource_restriction")["status"],
        "applies"
    );
    assert_eq!(c["punishment_suspended"], false);

    // Filed: disputed to the bank, punishment suspended in the check.
    let r = portal
        .post(
            "/v1/objections",
            &json!({"subject": lp(&s), "record_id": p1, "grounds": "处罚决定已被行政复议撤销"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["due_on"], "2026-12-13");
    let o1 = r.body["objection_id"].as_i64().unwrap();
    let recs = records(&gw, "bank", "financing", &s, &["penalty_content"]).await;
    assert_eq!(status_of(&recs, p1).as_deref(), Some("disputed"));
    assert_eq!(status_of(&recs, p2).as_deref(), Some("normal"));
    let c = check(&gw, "tax", &s, "government_procurement").await;
    assert_eq!(c["punishment_suspended"], true, "{c}");
    let m = measure(&c, "black_public_resource_restriction");
    assert_eq!(
        (m["status"].as_str(), m["reason"].as_str()),
        (Some("suspended"), Some("disputed"))
    );
    assert_eq!(c["lists"]["black"][0]["basis_state"], "disputed");
    assert!(
        c["records"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["record_id"] == p1 && r["status"] == "disputed")
    );
    // Applying a suspended measure is refused; incomplete or unknown feedback too.
    let fb = |body: Value| {
        let dept = gw.client("tax");
        let id = c["check_id"].as_i64().unwrap();
        async move { dept.post(&format!("/v1/checks/{id}/feedback"), &body).await }
    };
    let r = fb(json!({"applied": ["black_public_resource_restriction"]})).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (409, Some("measure_not_applicable"))
    );
    let r = fb(json!({"applied": ["moon_base"]})).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (422, Some("unknown_measure"))
    );
    let r = fb(json!({"not_applied": []})).await;
    assert_eq!(
        r.status, 200,
        "no measure applies while suspended: {}",
        r.body
    );
    let r = fb(json!({"not_applied": []})).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (409, Some("feedback_recorded"))
    );

    // One open objection per record.
    let r = portal
        .post(
            "/v1/objections",
            &json!({"subject": lp(&s), "record_id": p1, "grounds": "again"}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (409, Some("objection_open"))
    );

    // Overdue after the 20th day: the providing department and the auditor see it.
    clock.set(date!(2026 - 12 - 13));
    assert_eq!(
        dept.get("/v1/objections/overdue").await.body["overdue"],
        json!([])
    );
    clock.set(date!(2026 - 12 - 14));
    let r = dept.get("/v1/objections/overdue").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["overdue"][0]["objection_id"], o1);
    assert_eq!(r.body["overdue"][0]["days_overdue"], 1);
    assert_eq!(r.body["overdue"][0]["subject"]["id"], s.as_str());
    assert_eq!(
        gw.client("tax").get("/v1/objections/overdue").await.body["overdue"],
        json!([])
    );
    let r = gw.client("auditor").get("/v1/objections/overdue").await;
    assert_eq!(r.body["overdue"][0]["objection_id"], o1);
    assert!(r.body["overdue"][0]["subject"]["hash"].is_string());
    assert!(
        !r.body.to_string().contains(&s),
        "clear subject id to an auditor"
    );
    assert_eq!(
        gw.client("bank").get("/v1/objections/overdue").await.status,
        403
    );

    // Only the provider answers. Upheld: back to normal, punishment applies.
    let r = gw
        .client("tax")
        .post(
            &format!("/v1/objections/{o1}/resolution"),
            &json!({"outcome": "upheld"}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (404, Some("objection_not_found"))
    );
    let r = dept
        .post(
            &format!("/v1/objections/{o1}/resolution"),
            &json!({"outcome": "upheld", "note": "经复核，处罚决定有效"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = dept
        .post(
            &format!("/v1/objections/{o1}/resolution"),
            &json!({"outcome": "withdrawn"}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (409, Some("objection_closed"))
    );
    let recs = records(&gw, "bank", "financing", &s, &["penalty_content"]).await;
    assert_eq!(status_of(&recs, p1).as_deref(), Some("normal"));
    let c = check(&gw, "tax", &s, "government_procurement").await;
    assert_eq!(c["punishment_suspended"], false);
    assert_eq!(
        measure(&c, "black_public_resource_restriction")["status"],
        "applies"
    );
    assert!(
        dept.get("/v1/objections/overdue").await.body["overdue"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // Withdrawn: no longer shared, and the listing based on it lapses.
    let r = portal
        .post(
            "/v1/objections",
            &json!({"subject": lp(&s), "record_id": p1, "grounds": "复议决定书已送达"}),
        )
        .await;
    let o2 = r.body["objection_id"].as_i64().unwrap();
    let r = dept
        .post(
            &format!("/v1/objections/{o2}/resolution"),
            &json!({"outcome": "withdrawn"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let recs = records(&gw, "bank", "financing", &s, &["penalty_content"]).await;
    assert_eq!(ids_of(&recs), [p2]);
    let last = audited(&gw, "query").await.pop().unwrap();
    assert!(
        has_field(&last, &format!("record:{p1}"), "withheld", "withdrawn"),
        "{last:?}"
    );
    // The listing based on it was exited with it: no black measure at all.
    let c = check(&gw, "tax", &s, "government_procurement").await;
    assert_eq!(c["lists"]["black"], json!([]), "{c}");
    assert!(
        !c["measures"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "black_public_resource_restriction")
    );
    let r = portal
        .post(
            "/v1/objections",
            &json!({"subject": lp(&s), "record_id": p1, "grounds": "x"}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (409, Some("record_withdrawn"))
    );

    // Corrected: a new version, the old one kept but never shared.
    let r = portal
        .post(
            "/v1/objections",
            &json!({"subject": lp(&s), "record_id": p2, "grounds": "处罚内容记录有误"}),
        )
        .await;
    let o3 = r.body["objection_id"].as_i64().unwrap();
    let r = dept
        .post(
            &format!("/v1/objections/{o3}/resolution"),
            &json!({"outcome": "corrected", "fields": {"penalty_content": "警告（更正）", "penalty_date": "2026-11-01"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let p3 = r.body["new_record_id"].as_i64().unwrap();
    let recs = records(&gw, "bank", "financing", &s, &["penalty_content"]).await;
    assert_eq!(ids_of(&recs), [p3]);
    assert_eq!(recs[0]["supersedes"], p2);
    assert_eq!(recs[0]["fields"]["penalty_content"], "警告（更正）");
    assert_eq!(recs[0]["terms"]["tier"], "minor", "terms carried over");
    let h = dept.get(&format!("/v1/records/{p2}/history")).await;
    assert_eq!(
        (h.body["state"].as_str(), h.body["superseded_by"].as_i64()),
        (Some("superseded"), Some(p3))
    );
    assert_eq!(h.body["objections"][0]["status"], "corrected");

    // Every step is in the audit log.
    let filed = audited(&gw, "objection_file").await;
    assert_eq!(filed.iter().filter(|e| e.outcome == "ok").count(), 3);
    assert!(has_field(
        &filed[0],
        &format!("record:{p1}"),
        "disputed",
        "objection_filed"
    ));
    assert!(filed[0].subject.is_some());
    let resolved = audited(&gw, "objection_resolve").await;
    assert!(resolved.iter().any(|e| has_field(
        e,
        &format!("record:{p1}"),
        "upheld",
        "objection_upheld"
    )));
    assert!(resolved.iter().any(|e| has_field(
        e,
        &format!("record:{p1}"),
        "withdrawn",
        "withdrawn"
    )));
    assert!(resolved.iter().any(|e| has_field(
        e,
        &format!("record:{p2}"),
        "corrected",
        "superseded"
    )));
    assert!(
        resolved
            .iter()
            .any(|e| e.outcome == "objection_not_found" && e.status == 404)
    );
    assert!(!audited(&gw, "objection_overdue").await.is_empty());
    let checks = audited(&gw, "check").await;
    assert!(checks.iter().any(|e| has_field(
        e,
        "measure:black_public_resource_restriction",
        "suspended",
        "disputed"
    )));
    assert!(
        checks
            .iter()
            .all(|e| e.purpose.as_deref() == Some("administrative_review"))
    );
    assert!(!audited(&gw, "check_feedback").await.is_empty());
    gw.stop().await;
}

/// Corrections are decided by the same policy function as submissions, so
/// they are refused with the same codes; only the provider gets that far.
/// Feedback must name every measure that applies, each once.
#[tokio::test]
async fn corrections_are_validated_like_submissions_and_feedback_must_be_complete() {
    let s = code(50);
    let (gw, _clock) = start(date!(2026 - 11 - 23)).await;
    let rec = submit(
        &gw,
        "department",
        vec![penalty(&s, "general", "2026-10-01", "罚款")],
    )
    .await[0];
    let r = gw
        .client("portal")
        .post(
            "/v1/objections",
            &json!({"subject": lp(&s), "record_id": rec, "grounds": "金额有误"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let objection = r.body["objection_id"].as_i64().unwrap();
    let resolve = |who: &'static str, body: Value| {
        let c = gw.client(who);
        async move {
            c.post(&format!("/v1/objections/{objection}/resolution"), &body)
                .await
        }
    };
    let error = |r: &Resp| {
        (
            r.status,
            r.body["error"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            r.body["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            r.body["error"]["details"].clone(),
        )
    };
    // Another department is refused before its correction is looked at.
    let r = resolve(
        "tax",
        json!({"outcome": "corrected", "fields": {"nope": 1}}),
    )
    .await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (404, Some("objection_not_found"))
    );
    let r = resolve(
        "department",
        json!({"outcome": "corrected", "fields": {"monthly_income": 1}}),
    )
    .await;
    assert_eq!(
        error(&r),
        (
            422,
            "unknown_field".into(),
            "'monthly_income' is not a field of item 'admin_penalty'".into(),
            json!({"field": "monthly_income"})
        )
    );
    let r = resolve(
        "department",
        json!({"outcome": "corrected", "fields": {"penalty_date": 20261001}}),
    )
    .await;
    assert_eq!(
        error(&r),
        (
            400,
            "invalid_value".into(),
            "field 'penalty_date' must be a date (YYYY-MM-DD, year 0001 or later)".into(),
            json!({"field": "penalty_date", "expected": "date"})
        )
    );
    let r = resolve("department", json!({"outcome": "corrected", "fields": {}})).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (400, Some("invalid_request"))
    );
    let r = resolve(
        "department",
        json!({"outcome": "corrected", "fields": {"penalty_content": "警告"}, "tier": "grave", "decision_date": "2026-10-01"}),
    )
    .await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (400, Some("unknown_tier"))
    );
    // The same refusals for a submission carry the record index.
    let r = gw
        .client("department")
        .post(
            "/v1/records",
            &json!({"records": [penalty(&s, "general", "2026-10-01", "x"), {"subject": lp(&s), "item": "admin_licence", "fields": {"licence_no": 7}}]}),
        )
        .await;
    assert_eq!(
        error(&r),
        (
            400,
            "invalid_value".into(),
            "record 1: field 'licence_no' must be a string without control characters".into(),
            json!({"record": 1, "field": "licence_no", "expected": "string"})
        )
    );
    let r = resolve(
        "department",
        json!({"outcome": "corrected", "fields": {"penalty_content": "警告（更正）"}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);

    // A black listing makes measures apply; feedback must report them all.
    let r = gw
        .client("department")
        .post(
            "/v1/lists/black",
            &json!({"subject": lp(&s), "basis": "严重失信"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let c = check(&gw, "department", &s, "government_procurement").await;
    assert_eq!(
        measure(&c, "black_public_resource_restriction")["status"],
        "applies"
    );
    let fb = |body: Value| {
        let dept = gw.client("department");
        let id = c["check_id"].as_i64().unwrap();
        async move { dept.post(&format!("/v1/checks/{id}/feedback"), &body).await }
    };
    let r = fb(json!({"applied": ["black_public_resource_restriction"]})).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (400, Some("feedback_incomplete"))
    );
    assert!(
        r.body["error"]["details"]["missing"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m == "black_close_supervision"),
        "{}",
        r.body
    );
    let r = fb(json!({"applied": ["black_public_resource_restriction"], "not_applied": [{"measure": "black_public_resource_restriction", "reason": "r"}]})).await;
    assert_eq!(
        error(&r),
        (
            400,
            "invalid_request".into(),
            "measure 'black_public_resource_restriction' is named twice".into(),
            Value::Null
        )
    );
    let applies: Vec<&str> = c["measures"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["status"] == "applies")
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    let r = fb(json!({"applied": applies})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    gw.stop().await;
}

/// The objector gets the answer (征信业管理条例 第二十五条): the portal
/// reads an objection's status, outcome, note, dates and deadline, and a
/// repair application's decision (a rejection too), bound to the subject
/// named in the body; another subject's id is the same 404 as a missing one.
#[tokio::test]
async fn the_portal_reads_answers_to_objections_and_repairs_for_their_subject_only() {
    let (s, other) = (code(60), code(61));
    let (gw, clock) = start(date!(2026 - 11 - 23)).await;
    let ids = submit(
        &gw,
        "department",
        vec![
            penalty(&s, "general", "2026-10-01", "罚款人民币5000元"),
            penalty(&s, "minor", "2026-11-01", "警告"),
        ],
    )
    .await;
    let (p1, p2) = (ids[0], ids[1]);
    let p3 = submit(
        &gw,
        "department",
        vec![penalty(&other, "general", "2026-10-01", "罚款")],
    )
    .await[0];
    let portal = gw.client("portal");
    let file = |subject: &str, record: i64| {
        let c = portal.clone();
        let body = json!({"subject": lp(subject), "record_id": record, "grounds": "处罚决定有误"});
        async move { c.post("/v1/objections", &body).await }
    };
    let o1 = file(&s, p1).await.body["objection_id"].as_i64().unwrap();
    let o2 = file(&s, p2).await.body["objection_id"].as_i64().unwrap();
    let o3 = file(&other, p3).await.body["objection_id"]
        .as_i64()
        .unwrap();
    let status = |path: String, subject: String| {
        let c = gw.client("portal");
        async move { c.post(&path, &json!({"subject": lp(&subject)})).await }
    };
    let r = status(format!("/v1/objections/{o1}/status"), s.clone()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (
            &r.body["status"],
            &r.body["outcome"],
            &r.body["due_on"],
            &r.body["overdue"]
        ),
        (
            &json!("open"),
            &Value::Null,
            &json!("2026-12-13"),
            &json!(false)
        )
    );
    assert_eq!(r.body["record_id"], p1);
    assert_eq!(r.body["provider"], ids::DEPARTMENT);
    assert_eq!(r.body["subject"], lp(&s));

    // Another subject's objection and a missing id: the same 404, body for body.
    let theirs = status(format!("/v1/objections/{o3}/status"), s.clone()).await;
    let missing = status("/v1/objections/424242/status".into(), s.clone()).await;
    assert_eq!(theirs.status, 404, "{}", theirs.body);
    assert_eq!(theirs.body, missing.body);
    assert_eq!(theirs.body["error"]["code"], "objection_not_found");
    assert!(!theirs.body.to_string().contains(&other));
    let r = gw
        .client("department")
        .post(
            &format!("/v1/objections/{o1}/status"),
            &json!({"subject": lp(&s)}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (403, Some("role_not_permitted"))
    );
    let r = portal
        .post(&format!("/v1/objections/{o1}/status"), &json!({}))
        .await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (400, Some("invalid_request"))
    );

    // Answered: the outcome and the provider's note reach the objector.
    let r = gw
        .client("department")
        .post(
            &format!("/v1/objections/{o1}/resolution"),
            &json!({"outcome": "upheld", "note": "经复核，处罚决定有效"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = status(format!("/v1/objections/{o1}/status"), s.clone()).await;
    assert_eq!(
        (
            r.body["status"].as_str(),
            r.body["outcome"].as_str(),
            r.body["note"].as_str(),
            r.body["resolved_on"].as_str()
        ),
        (
            Some("upheld"),
            Some("upheld"),
            Some("经复核，处罚决定有效"),
            Some("2026-11-23")
        )
    );
    // Past its deadline, an unanswered objection says so.
    clock.set(date!(2026 - 12 - 14));
    let r = status(format!("/v1/objections/{o2}/status"), s.clone()).await;
    assert_eq!(
        (&r.body["status"], &r.body["overdue"]),
        (&json!("open"), &json!(true))
    );

    // A rejected repair application is visible to its subject with the note.
    clock.set(date!(2027 - 01 - 01));
    let r = portal
        .post(
            "/v1/repairs",
            &json!({"subject": lp(&s), "record_id": p1, "grounds": "已履行并作出信用承诺"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let rid = r.body["repair_id"].as_i64().unwrap();
    let r = status(format!("/v1/repairs/{rid}/status"), s.clone()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (&r.body["status"], &r.body["decided_on"]),
        (&json!("pending"), &Value::Null)
    );
    let r = gw
        .client("department")
        .post(
            &format!("/v1/repairs/{rid}/decision"),
            &json!({"decision": "reject", "note": "未提交履行证明"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = status(format!("/v1/repairs/{rid}/status"), s.clone()).await;
    assert_eq!(
        (
            r.body["status"].as_str(),
            r.body["note"].as_str(),
            r.body["decided_on"].as_str(),
            r.body["applied_on"].as_str()
        ),
        (
            Some("rejected"),
            Some("未提交履行证明"),
            Some("2027-01-01"),
            Some("2027-01-01")
        )
    );
    assert_eq!(r.body["repaired_on"], Value::Null);
    let theirs = status(format!("/v1/repairs/{rid}/status"), other.clone()).await;
    let missing = status("/v1/repairs/424242/status".into(), other.clone()).await;
    assert_eq!(theirs.status, 404, "{}", theirs.body);
    assert_eq!(theirs.body, missing.body);
    assert_eq!(theirs.body["error"]["code"], "repair_not_found");

    // Each read is one entry about the subject.
    let reads = audited(&gw, "objection_status").await;
    assert_eq!(reads.len(), 7);
    assert!(
        reads
            .iter()
            .filter(|e| e.status != 403 && e.status != 400)
            .all(|e| e.subject.is_some())
    );
    assert!(reads.iter().any(|e| e.outcome == "ok"
        && has_field(e, &format!("record:{p1}"), "status", "upheld")));
    assert_eq!(audited(&gw, "repair_status").await.len(), 4);
    gw.stop().await;
}

/// No existence oracle: a department that may not see a record, objection
/// or repair application gets exactly the 404 an id that does not exist
/// gets (`GET /v1/records/{id}/history`, objection resolution, repair
/// decision), while the provider still gets its answers.
#[tokio::test]
async fn ids_the_caller_may_not_see_are_answered_like_ids_that_do_not_exist() {
    let s = code(70);
    let (gw, clock) = start(date!(2026 - 11 - 23)).await;
    let p = submit(
        &gw,
        "department",
        vec![penalty(&s, "general", "2026-10-01", "罚款人民币2000元")],
    )
    .await[0];
    let portal = gw.client("portal");
    let body = json!({"subject": lp(&s), "record_id": p, "grounds": "金额有误"});
    let o = portal.post("/v1/objections", &body).await.body["objection_id"]
        .as_i64()
        .unwrap();
    let r = gw
        .client("department")
        .post(
            &format!("/v1/objections/{o}/resolution"),
            &json!({"outcome": "upheld"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    clock.set(date!(2027 - 01 - 01));
    let r = portal.post("/v1/repairs", &body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let rid = r.body["repair_id"].as_i64().unwrap();
    let o2 = portal.post("/v1/objections", &body).await.body["objection_id"]
        .as_i64()
        .unwrap();
    // A list entry and a check of the department, one already exited.
    let dept = gw.client("department");
    let listing = json!({"subject": lp(&s), "basis": "严重违法", "basis_record_id": p});
    let entry = dept.post("/v1/lists/black", &listing).await.body["entry_id"]
        .as_i64()
        .unwrap();
    let focus = dept
        .post(
            "/v1/lists/focus",
            &json!({"subject": lp(&s), "basis": "重点监管"}),
        )
        .await
        .body["entry_id"]
        .as_i64()
        .unwrap();
    let r = dept
        .post(
            &format!("/v1/lists/entries/{focus}/exit"),
            &json!({"reason": "整改完成"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let c = dept
        .post(
            "/v1/checks",
            &json!({"subject": lp(&s), "matter": "franchise"}),
        )
        .await;
    assert_eq!(c.status, 200, "{}", c.body);
    let check_id = c.body["check_id"].as_i64().unwrap();

    let tax = gw.client("tax");
    let missing = 424242;
    let pairs = [
        (
            "GET",
            format!("/v1/records/{p}/history"),
            format!("/v1/records/{missing}/history"),
            json!(null),
            "record_not_found",
        ),
        (
            "POST",
            format!("/v1/objections/{o2}/resolution"),
            format!("/v1/objections/{missing}/resolution"),
            json!({"outcome": "upheld"}),
            "objection_not_found",
        ),
        // Closed already: still not a 409 to a stranger.
        (
            "POST",
            format!("/v1/objections/{o}/resolution"),
            format!("/v1/objections/{missing}/resolution"),
            json!({"outcome": "withdrawn"}),
            "objection_not_found",
        ),
        (
            "POST",
            format!("/v1/repairs/{rid}/decision"),
            format!("/v1/repairs/{missing}/decision"),
            json!({"decision": "approve"}),
            "repair_not_found",
        ),
        (
            "POST",
            format!("/v1/lists/entries/{entry}/exit"),
            format!("/v1/lists/entries/{missing}/exit"),
            json!({"reason": "信用修复完成"}),
            "list_entry_not_found",
        ),
        // Exited already: still not a 409 to a stranger.
        (
            "POST",
            format!("/v1/lists/entries/{focus}/exit"),
            format!("/v1/lists/entries/{missing}/exit"),
            json!({"reason": "信用修复完成"}),
            "list_entry_not_found",
        ),
        (
            "POST",
            format!("/v1/checks/{check_id}/feedback"),
            format!("/v1/checks/{missing}/feedback"),
            json!({"applied": [], "not_applied": []}),
            "check_not_found",
        ),
    ];
    for (method, existing, absent, body, code) in pairs {
        let send = |path: String| {
            let (c, body) = (tax.clone(), body.clone());
            async move {
                match method {
                    "GET" => c.get(&path).await,
                    _ => c.post(&path, &body).await,
                }
            }
        };
        let (a, b) = (send(existing.clone()).await, send(absent).await);
        assert_eq!(
            (a.status, a.body["error"]["code"].as_str()),
            (404, Some(code)),
            "{existing}: {}",
            a.body
        );
        assert_eq!(a.body, b.body, "{existing}");
        assert_eq!(a.headers.get("allow"), b.headers.get("allow"));
    }
    // Nothing changed; the provider and the auditor still get their answers.
    let h = gw
        .client("department")
        .get(&format!("/v1/records/{p}/history"))
        .await;
    assert_eq!(h.status, 200, "{}", h.body);
    assert_eq!(h.body["repairs"][0]["status"], "pending");
    assert_eq!(h.body["objections"][1]["status"], "open");
    let listed = h.body["list_entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["entry_id"] == entry)
        .unwrap_or_else(|| panic!("entry {entry} in {}", h.body));
    assert!(listed["exited_on"].is_null(), "{listed}");
    // Its black measures are suspended (open objection): nothing to apply.
    let r = dept
        .post(
            &format!("/v1/checks/{check_id}/feedback"),
            &json!({"applied": [], "not_applied": []}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let h = gw
        .client("auditor")
        .get(&format!("/v1/records/{p}/history"))
        .await;
    assert_eq!(h.status, 200, "{}", h.body);
    let r = gw
        .client("department")
        .post(
            &format!("/v1/repairs/{rid}/decision"),
            &json!({"decision": "approve"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    gw.stop().await;
}

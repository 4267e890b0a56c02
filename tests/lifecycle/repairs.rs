//! Credit repair: hidden from agencies, seen by the auditor, never approved after the record expired.

use super::*;

#[tokio::test]
async fn repair_hides_the_record_from_agencies_and_the_auditor_sees_it() {
    let s = code(30);
    let (gw, clock) = start(date!(2026 - 11 - 23)).await;
    let ids = submit(
        &gw,
        "department",
        vec![
            penalty(&s, "general", "2026-10-01", "罚款人民币3000元"),
            json!({"subject": lp(&s), "item": "registration", "fields": {"enterprise_name": "淄博测试修复有限公司"}}),
        ],
    )
    .await;
    let (p, reg) = (ids[0], ids[1]);
    let tax_ids = submit(
        &gw,
        "tax",
        vec![json!({"subject": lp(&s), "item": "arrears", "tier": "general", "decision_date": "2026-08-31",
            "fields": {"tax_arrears_amount": 1200, "arrears_as_of": "2026-08-31"}})],
    )
    .await;
    let arrears = tax_ids[0];
    gw.client("department")
        .post(
            "/v1/lists/black",
            &json!({"subject": lp(&s), "basis": "严重违法", "basis_record_id": p}),
        )
        .await;
    let portal = gw.client("portal");
    let apply = |record: i64| {
        let c = portal.clone();
        let body = json!({"subject": lp(&s), "record_id": record, "grounds": "已履行处罚决定并作出信用承诺"});
        async move { c.post("/v1/repairs", &body).await }
    };
    // Too early: a general record is shown at least 3 months.
    let r = apply(p).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (409, Some("repair_too_early")),
        "{}",
        r.body
    );
    assert_eq!(r.body["error"]["details"]["opens_on"], "2027-01-01");
    let r = apply(reg).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (422, Some("not_negative"))
    );
    clock.set(date!(2027 - 01 - 01));
    let r = apply(p).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let rid = r.body["repair_id"].as_i64().unwrap();
    let r = apply(p).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (409, Some("repair_pending"))
    );
    let decide = |who: &str, id: i64, d: &str| {
        let c = gw.client(who);
        let body = json!({"decision": d, "note": "符合修复条件"});
        async move { c.post(&format!("/v1/repairs/{id}/decision"), &body).await }
    };
    let r = decide("tax", rid, "approve").await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (404, Some("repair_not_found"))
    );
    let r = decide("department", rid, "approve").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["repaired_on"], "2027-01-01");
    let r = decide("department", rid, "reject").await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (409, Some("repair_closed"))
    );

    // Credit agencies no longer see it; banks neither (catalog default);
    // departments and the portal see it flagged "repaired".
    let f = ["penalty_content"];
    assert!(ids_of(&records(&gw, "agency", "credit_report", &s, &f).await).is_empty());
    let agency_entry = audited(&gw, "query").await.pop().unwrap();
    assert!(
        has_field(
            &agency_entry,
            &format!("record:{p}"),
            "withheld",
            "repaired"
        ),
        "{agency_entry:?}"
    );
    assert!(ids_of(&records(&gw, "bank", "financing", &s, &f).await).is_empty());
    let recs = records(&gw, "department", "administrative_review", &s, &f).await;
    assert_eq!(status_of(&recs, p).as_deref(), Some("repaired"));
    let recs = records(&gw, "portal", "self_inquiry", &s, &f).await;
    assert_eq!(status_of(&recs, p).as_deref(), Some("repaired"));
    // It no longer triggers the check: the black listing based on it was
    // exited with the repair.
    let c = check(&gw, "tax", &s, "franchise").await;
    assert_eq!(c["lists"]["black"], json!([]), "{c}");
    assert!(
        !c["measures"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "black_franchise_restriction")
    );
    assert_eq!(c["punishment_suspended"], false);
    let r = apply(p).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (409, Some("already_repaired"))
    );

    // Per-item rule: repaired arrears stay visible to banks, never to agencies.
    let r = apply(arrears).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = decide("tax", r.body["repair_id"].as_i64().unwrap(), "approve").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let recs = records(&gw, "bank", "financing", &s, &["tax_arrears_amount"]).await;
    assert_eq!(status_of(&recs, arrears).as_deref(), Some("repaired"));
    assert!(
        ids_of(&records(&gw, "agency", "credit_report", &s, &["tax_arrears_amount"]).await)
            .is_empty()
    );

    // The auditor sees the repair in the log (never the values).
    let decided = audited(&gw, "repair_decide").await;
    let ok: Vec<_> = decided.iter().filter(|e| e.outcome == "ok").collect();
    assert_eq!(ok.len(), 2);
    assert!(has_field(
        ok[0],
        &format!("record:{p}"),
        "approved",
        "repaired"
    ));
    assert!(ok[0].subject.is_some());
    assert_eq!(ok[0].org.as_deref(), Some(ids::DEPARTMENT));
    let applied = audited(&gw, "repair_apply").await;
    assert!(applied.iter().any(|e| e.outcome == "repair_too_early"));
    assert!(
        applied.iter().any(|e| e.outcome == "ok"
            && has_field(e, &format!("record:{p}"), "applied", "repair_applied"))
    );
    let h = gw
        .client("auditor")
        .get(&format!("/v1/records/{p}/history"))
        .await;
    assert_eq!(h.body["state"], "repaired");
    assert_eq!(h.body["repairs"][0]["status"], "approved");
    assert!(!h.body.to_string().contains("3000元"));
    gw.stop().await;
}

/// A repair applied for while its record was disclosed cannot be approved
/// once the record's disclosure period has passed (it is shared with
/// nobody; there is nothing left to repair): 409 `record_expired`, audited,
/// the record not marked repaired. A rejection still closes the case.
#[tokio::test]
async fn a_repair_is_not_approved_after_its_record_expired() {
    let s = code(31);
    let (gw, clock) = start(date!(2026 - 11 - 23)).await;
    let p = submit(
        &gw,
        "department",
        vec![penalty(&s, "general", "2026-10-01", "罚款人民币3000元")],
    )
    .await[0];
    // Opens 2027-01-01 (3 months); disclosed until 2027-10-01 (12 months).
    clock.set(date!(2027 - 09 - 30));
    let body =
        json!({"subject": lp(&s), "record_id": p, "grounds": "已履行处罚决定并作出信用承诺"});
    let r = gw.client("portal").post("/v1/repairs", &body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let rid = r.body["repair_id"].as_i64().unwrap();

    clock.set(date!(2027 - 10 - 01));
    let decide = |d: &str| {
        let c = gw.client("department");
        let body = json!({"decision": d, "note": "符合修复条件"});
        async move { c.post(&format!("/v1/repairs/{rid}/decision"), &body).await }
    };
    let r = decide("approve").await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (409, Some("record_expired")),
        "{}",
        r.body
    );
    let e = audited(&gw, "repair_decide").await.pop().unwrap();
    assert_eq!((e.outcome.as_str(), e.status), ("record_expired", 409));
    // Still pending, not approved.
    let r = gw
        .client("portal")
        .post(
            &format!("/v1/repairs/{rid}/status"),
            &json!({"subject": lp(&s)}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (&r.body["status"], &r.body["decided_on"]),
        (&json!("pending"), &Value::Null)
    );
    let r = decide("reject").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let e = audited(&gw, "repair_decide").await.pop().unwrap();
    assert_eq!(e.outcome, "ok");
    gw.stop().await;
}

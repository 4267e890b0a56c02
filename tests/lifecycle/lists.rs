//! Red, black and focus lists: conflicts, lapsing with their basis, and exits never written for an expired basis.

use super::*;

#[tokio::test]
async fn black_listing_removes_red_entries_and_red_listing_a_black_listed_subject_conflicts() {
    let s = code(20);
    let (gw, clock) = start(date!(2026 - 11 - 23)).await;
    let (dept, tax) = (gw.client("department"), gw.client("tax"));
    let add = |who: &Client, list: &str, body: Value| {
        let c = who.clone();
        let path = format!("/v1/lists/{list}");
        async move { c.post(&path, &body).await }
    };
    let entry = |basis: &str| json!({"subject": lp(&s), "basis": basis});
    let r1 = add(&dept, "red", entry("2026年度守信企业")).await;
    assert_eq!(r1.status, 201, "{}", r1.body);
    let r2 = add(&tax, "red", entry("纳税信用A级")).await;
    assert_eq!(r2.status, 201, "{}", r2.body);
    let dup = add(&tax, "red", entry("纳税信用A级")).await;
    assert_eq!(
        (dup.status, dup.body["error"]["code"].as_str()),
        (409, Some("already_listed"))
    );
    let lists = ["red_listed", "black_listed", "focus_listed"];
    let recs = records(&gw, "bank", "financing", &s, &lists).await;
    assert_eq!(
        recs[0]["fields"],
        json!({"red_listed": true, "black_listed": false, "focus_listed": false})
    );
    assert_eq!(recs[0]["derived_from"], "lists");
    let c = check(&gw, "department", &s, "administrative_licensing").await;
    assert_eq!(measure(&c, "red_green_channel")["status"], "applies");

    // Black listing exits both red entries in the same transaction.
    let b = add(&tax, "black", entry("重大税收违法失信主体")).await;
    assert_eq!(b.status, 201, "{}", b.body);
    let reds = [
        r1.body["entry_id"].as_i64().unwrap(),
        r2.body["entry_id"].as_i64().unwrap(),
    ];
    assert_eq!(b.body["removed_red_entries"], json!(reds));
    let request_id = b.headers["x-request-id"].to_str().unwrap();
    let exited = gw
        .store
        .count_raw(&format!(
            "SELECT COUNT(*) FROM list_entries WHERE list = 'red' AND exit_reason = 'black_listed' \
             AND exited_on = '2026-11-23' AND exit_request = '{request_id}'"
        ))
        .await
        .unwrap();
    assert_eq!(exited, 2);
    let recs = records(&gw, "bank", "financing", &s, &lists).await;
    assert_eq!(
        recs[0]["fields"],
        json!({"red_listed": false, "black_listed": true, "focus_listed": false})
    );
    let last = audited(&gw, "list_add").await.pop().unwrap();
    assert!(has_field(
        &last,
        &format!("list_entry:{}", reds[0]),
        "exited",
        "black_listed"
    ));

    // Red listing a black-listed subject: 409, nothing stored.
    let before = gw.store.lifecycle_row_count().await.unwrap();
    let r = add(&dept, "red", entry("再次申报守信")).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (409, Some("conflict_black_listed")),
        "{}",
        r.body
    );
    assert_eq!(
        r.body["error"]["details"]["black_entries"],
        json!([b.body["entry_id"]])
    );
    assert_eq!(gw.store.lifecycle_row_count().await.unwrap(), before);
    assert_eq!(
        audited(&gw, "list_add").await.last().unwrap().outcome,
        "conflict_black_listed"
    );

    // Exit (移出) by the issuer only, with date and reason; then red is possible again.
    let bid = b.body["entry_id"].as_i64().unwrap();
    let exit = |who: &Client, body: Value| {
        let c = who.clone();
        async move {
            c.post(&format!("/v1/lists/entries/{bid}/exit"), &body)
                .await
        }
    };
    let r = exit(&dept, json!({"reason": "x"})).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (404, Some("list_entry_not_found"))
    );
    let r = exit(
        &tax,
        json!({"reason": "信用修复完成", "exit_date": "2026-11-24"}),
    )
    .await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (400, Some("invalid_exit_date"))
    );
    clock.set(date!(2026 - 12 - 01));
    let r = exit(&tax, json!({"reason": "信用修复完成，移出名单"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["exited_on"], "2026-12-01");
    let r = exit(&tax, json!({"reason": "again"})).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (409, Some("already_exited"))
    );
    assert_eq!(add(&dept, "red", entry("重新认定守信")).await.status, 201);
    let f = add(
        &dept,
        "focus",
        json!({"subject": lp(&s), "basis": "经营异常", "effective_to": "2027-06-01"}),
    )
    .await;
    assert_eq!(f.status, 201, "{}", f.body);
    let c = check(&gw, "department", &s, "fiscal_funding").await;
    assert_eq!(measure(&c, "focus_spot_checks")["status"], "applies");
    assert_eq!(
        measure(&c, "red_priority_consideration")["status"],
        "applies"
    );
    assert_eq!(c["lists"]["black"], json!([]));
    // A focus entry past its end is no longer in force.
    clock.set(date!(2027 - 06 - 01));
    let recs = records(&gw, "bank", "financing", &s, &lists).await;
    assert_eq!(recs[0]["fields"]["focus_listed"], false);

    // Racing red and black listings of fresh subjects never leave both in force.
    let mut tasks = Vec::new();
    for n in 0..6 {
        let subject = code(200 + n);
        for (who, list) in [("department", "red"), ("tax", "black")] {
            let c = gw.client(who);
            let body = json!({"subject": lp(&subject), "basis": "并发测试"});
            tasks.push(tokio::spawn(async move {
                c.post(&format!("/v1/lists/{list}"), &body).await.status
            }));
        }
    }
    for t in tasks {
        assert!([201, 409].contains(&t.await.unwrap()));
    }
    for n in 0..6 {
        let recs = records(&gw, "bank", "financing", &code(200 + n), &lists).await;
        let f = &recs[0]["fields"];
        assert_eq!(f["black_listed"], true);
        assert_eq!(f["red_listed"], false, "{}: {f}", code(200 + n));
    }
    gw.stop().await;
}

/// A list entry lapses with its basis record: repaired or withdrawn, the
/// entries based on it are exited in the same transaction (audited);
/// expired, they stop counting at once (the query's entry says why). The
/// list status banks see and the 应查必查 check always agree.
#[tokio::test]
async fn list_entries_lapse_with_their_basis_and_list_status_agrees_with_checks() {
    let (s, s2, s3) = (code(100), code(101), code(102));
    let (gw, clock) = start(date!(2026 - 11 - 23)).await;
    let dept = gw.client("department");
    let mut ids = Vec::new();
    for r in [
        penalty(&s, "general", "2026-08-01", "罚款人民币9000元"),
        penalty(&s2, "minor", "2026-11-01", "警告"),
        penalty(&s3, "general", "2026-10-01", "罚款"),
    ] {
        ids.extend(submit(&gw, "department", vec![r]).await);
    }
    let (p, p2, p3) = (ids[0], ids[1], ids[2]);
    let list = |who: &'static str, kind: &'static str, body: Value| {
        let c = gw.client(who);
        async move {
            let r = c.post(&format!("/v1/lists/{kind}"), &body).await;
            assert_eq!(r.status, 201, "{}", r.body);
            r.body["entry_id"].as_i64().unwrap()
        }
    };
    let b1 = list(
        "department",
        "black",
        json!({"subject": lp(&s), "basis": "严重失信", "basis_record_id": p}),
    )
    .await;
    let b2 = list(
        "tax",
        "black",
        json!({"subject": lp(&s), "basis": "联合惩戒", "basis_record_id": p}),
    )
    .await;
    list(
        "department",
        "focus",
        json!({"subject": lp(&s), "basis": "重点监管"}),
    )
    .await;
    let e2 = list(
        "department",
        "black",
        json!({"subject": lp(&s2), "basis": "严重失信", "basis_record_id": p2}),
    )
    .await;
    let e3 = list(
        "department",
        "black",
        json!({"subject": lp(&s3), "basis": "严重失信", "basis_record_id": p3}),
    )
    .await;
    let flags = ["black_listed", "focus_listed"];
    let status = |subject: String| {
        let gw = &gw;
        async move {
            let recs = records(gw, "bank", "financing", &subject, &flags).await;
            recs.iter().find(|r| r["derived_from"] == "lists").unwrap()["fields"].clone()
        }
    };
    assert_eq!(status(s.clone()).await["black_listed"], true);

    // Repaired: both black entries on it exit at once, the focus entry stays.
    let r = gw
        .client("portal")
        .post(
            "/v1/repairs",
            &json!({"subject": lp(&s), "record_id": p, "grounds": "已整改"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let rid = r.body["repair_id"].as_i64().unwrap();
    let r = dept
        .post(
            &format!("/v1/repairs/{rid}/decision"),
            &json!({"decision": "approve"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["exited_list_entries"], json!([b1, b2]));
    assert_eq!(
        status(s.clone()).await,
        json!({"black_listed": false, "focus_listed": true})
    );
    let c = check(&gw, "tax", &s, "government_procurement").await;
    assert_eq!(c["lists"]["black"], json!([]), "{c}");
    let h = dept.get(&format!("/v1/records/{p}/history")).await;
    assert!(
        h.body["list_entries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["exit_reason"] == "basis_repaired" && e["exited_on"] == "2026-11-23"),
        "{}",
        h.body
    );
    let decided = audited(&gw, "repair_decide").await.pop().unwrap();
    for e in [b1, b2] {
        assert!(
            has_field(
                &decided,
                &format!("list_entry:{e}"),
                "exited",
                "basis_repaired"
            ),
            "{decided:?}"
        );
    }

    // Withdrawn after an objection: the entry exits with it.
    let r = gw
        .client("portal")
        .post(
            "/v1/objections",
            &json!({"subject": lp(&s3), "record_id": p3, "grounds": "处罚已撤销"}),
        )
        .await;
    let o = r.body["objection_id"].as_i64().unwrap();
    let r = dept
        .post(
            &format!("/v1/objections/{o}/resolution"),
            &json!({"outcome": "withdrawn"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["exited_list_entries"], json!([e3]));
    assert_eq!(status(s3.clone()).await["black_listed"], false);
    let resolved = audited(&gw, "objection_resolve").await.pop().unwrap();
    assert!(has_field(
        &resolved,
        &format!("list_entry:{e3}"),
        "exited",
        "basis_withdrawn"
    ));

    // Expired (minor: 3 months): no write happens, but the entry stops
    // counting the same day for banks and checks alike.
    clock.set(date!(2027 - 01 - 31));
    assert_eq!(status(s2.clone()).await["black_listed"], true);
    clock.set(date!(2027 - 02 - 01));
    assert_eq!(status(s2.clone()).await["black_listed"], false);
    let q = audited(&gw, "query").await.pop().unwrap();
    assert!(
        has_field(&q, &format!("list_entry:{e2}"), "lapsed", "expired"),
        "{q:?}"
    );
    let c = check(&gw, "tax", &s2, "government_procurement").await;
    let m = measure(&c, "black_public_resource_restriction");
    assert_eq!(
        (m["status"].as_str(), m["reason"].as_str()),
        (Some("lapsed"), Some("expired"))
    );
    gw.stop().await;
}

/// A list entry whose basis record expired lapsed on that day, at read
/// time; a repair approved or a withdrawal answered after the expiry writes
/// no exit for it (it would be dated on an unrelated later day and name the
/// wrong reason). While the basis still counts, the same steps do exit it.
#[tokio::test]
async fn an_expired_basis_is_never_written_as_an_exit() {
    let s = code(90);
    let (gw, clock) = start(date!(2025 - 12 - 01)).await;
    let dept = gw.client("department");
    let portal = gw.client("portal");
    // Two general penalties, shown until 2026-12-01; a black entry on each,
    // and a third on a penalty shown until 2027-06-01 (the control).
    let ids = submit(
        &gw,
        "department",
        vec![
            penalty(&s, "general", "2025-12-01", "罚款人民币1000元"),
            penalty(&s, "general", "2025-12-01", "罚款人民币2000元"),
            penalty(&s, "general", "2025-12-01", "罚款人民币3000元"),
        ],
    )
    .await;
    let (to_repair, to_withdraw) = (ids[0], ids[1]);
    clock.set(date!(2026 - 06 - 01));
    let control = submit(
        &gw,
        "department",
        vec![penalty(&s, "general", "2026-06-01", "罚款人民币4000元")],
    )
    .await[0];
    let mut entries = Vec::new();
    for (list, basis) in [
        ("black", to_repair),
        ("focus", to_withdraw),
        ("focus", ids[2]),
    ] {
        let r = gw
            .client(if basis == ids[2] { "tax" } else { "department" })
            .post(
                &format!("/v1/lists/{list}"),
                &json!({"subject": lp(&s), "basis": "严重违法失信", "basis_record_id": basis}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        entries.push(r.body["entry_id"].as_i64().unwrap());
    }
    // While shown: a repair application and an objection, left undecided.
    let r = portal
        .post(
            "/v1/repairs",
            &json!({"subject": lp(&s), "record_id": to_repair, "grounds": "已履行并作出信用修复承诺"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let rid = r.body["repair_id"].as_i64().unwrap();
    let r = portal
        .post(
            "/v1/objections",
            &json!({"subject": lp(&s), "record_id": to_withdraw, "grounds": "处罚已撤销"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let oid = r.body["objection_id"].as_i64().unwrap();

    // The bases expire: the entries no longer count, for checks and list status.
    clock.set(date!(2026 - 12 - 01));
    let lapsed_by_expiry = |c: &Value| {
        let m = c["measures"].as_array().unwrap();
        !m.is_empty()
            && m.iter()
                .all(|m| m["status"] == "lapsed" && m["reason"] == "expired")
    };
    let c = check(&gw, "tax", &s, "franchise").await;
    assert!(lapsed_by_expiry(&c), "{c}");
    let recs = records(
        &gw,
        "bank",
        "financing",
        &s,
        &["black_listed", "focus_listed"],
    )
    .await;
    let status = recs
        .iter()
        .find(|r| r["item"] == "list_status")
        .unwrap_or_else(|| panic!("{recs:?}"));
    assert_eq!(status["fields"]["black_listed"], false);
    assert_eq!(status["fields"]["focus_listed"], false);

    // After the expiry the approval is refused (nothing is left to
    // repair) and the withdrawal allowed: nothing exited.
    let r = dept
        .post(
            &format!("/v1/repairs/{rid}/decision"),
            &json!({"decision": "approve"}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (409, Some("record_expired")),
        "{}",
        r.body
    );
    let r = dept
        .post(
            &format!("/v1/objections/{oid}/resolution"),
            &json!({"outcome": "withdrawn"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.get("exited_list_entries").is_none(), "{}", r.body);
    for (record, entry) in [(to_repair, entries[0]), (to_withdraw, entries[1])] {
        let h = dept.get(&format!("/v1/records/{record}/history")).await;
        assert_eq!(h.status, 200, "{}", h.body);
        let e = &h.body["list_entries"][0];
        assert_eq!(e["entry_id"], entry, "{}", h.body);
        assert!(e["exited_on"].is_null(), "{e}");
        assert!(e["exit_reason"].is_null(), "{e}");
    }
    let decided = audited(&gw, "repair_decide").await;
    assert!(
        !decided[0]
            .fields
            .iter()
            .any(|f| f.field.starts_with("list_entry:")),
        "{:?}",
        decided[0]
    );
    let resolved = audited(&gw, "objection_resolve").await;
    assert!(
        !resolved[0]
            .fields
            .iter()
            .any(|f| f.field.starts_with("list_entry:"))
    );
    // The check still shows them, lapsed, not exited.
    let c = check(&gw, "tax", &s, "franchise").await;
    assert!(
        c["measures"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["status"] == "lapsed"),
        "{c}"
    );
    assert_eq!(c["lists"]["black"][0]["entry_id"], entries[0], "{c}");

    // A new entry on a lapsed basis would never count: refused with the
    // record's state, nothing written, audited.
    for (basis, code) in [
        (to_repair, "record_expired"),
        (to_withdraw, "record_withdrawn"),
    ] {
        let r = dept
            .post(
                "/v1/lists/black",
                &json!({"subject": lp(&s), "basis": "严重违法失信", "basis_record_id": basis}),
            )
            .await;
        assert_eq!(
            (r.status, r.body["error"]["code"].as_str()),
            (409, Some(code)),
            "{}",
            r.body
        );
    }
    let adds = audited(&gw, "list_add").await;
    assert_eq!(
        adds.iter()
            .filter(|e| e.outcome == "record_expired" || e.outcome == "record_withdrawn")
            .count(),
        2
    );
    let h = dept.get(&format!("/v1/records/{to_repair}/history")).await;
    assert_eq!(h.body["list_entries"].as_array().unwrap().len(), 1);

    // The control: a basis still shown is exited by its withdrawal.
    let r = gw
        .client("tax")
        .post(
            "/v1/lists/black",
            &json!({"subject": lp(&s), "basis": "严重违法失信", "basis_record_id": control}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let live = r.body["entry_id"].as_i64().unwrap();
    let r = portal
        .post(
            "/v1/objections",
            &json!({"subject": lp(&s), "record_id": control, "grounds": "处罚已撤销"}),
        )
        .await;
    let oid = r.body["objection_id"].as_i64().unwrap();
    let r = dept
        .post(
            &format!("/v1/objections/{oid}/resolution"),
            &json!({"outcome": "withdrawn"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["exited_list_entries"], json!([live]), "{}", r.body);
    gw.stop().await;
}

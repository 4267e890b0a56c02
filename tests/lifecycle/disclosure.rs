//! Disclosure periods at their exact boundaries, identifiers judged by the gateway's clock, values stored exactly, and one subject per batch.

use super::*;

#[tokio::test]
async fn every_tier_expires_exactly_at_its_boundary() {
    let decided = "2025-11-30";
    let (gw, clock) = start(date!(2025 - 12 - 01)).await;
    // (tier, subject, first day no longer shared): 3, 12 and 36 months.
    let cases = [
        ("minor", code(1), date!(2026 - 02 - 28)),
        ("general", code(2), date!(2026 - 11 - 30)),
        ("serious", code(3), date!(2028 - 11 - 30)),
    ];
    let mut ids = Vec::new();
    for (tier, subject, _) in &cases {
        ids.push(
            submit(
                &gw,
                "department",
                vec![penalty(subject, tier, decided, "秘密处罚内容")],
            )
            .await[0],
        );
    }
    let day = time::Duration::days(1);
    for ((tier, subject, end), id) in cases.iter().zip(&ids) {
        for (today, shared) in [(*end - day, true), (*end, false), (*end + day, false)] {
            clock.set(today);
            for (who, purpose) in [
                ("bank", "financing"),
                ("agency", "credit_report"),
                ("department", "administrative_review"),
            ] {
                let recs = records(
                    &gw,
                    who,
                    purpose,
                    subject,
                    &["penalty_content", "penalty_date"],
                )
                .await;
                assert_eq!(
                    ids_of(&recs) == [*id],
                    shared,
                    "{tier} on {today} for {who}: {recs:?}"
                );
                if shared {
                    let terms = &recs[0]["terms"];
                    assert_eq!(terms["tier"], *tier);
                    assert_eq!(terms["decision_date"], decided);
                    assert_eq!(terms["disclosed_until"], end.to_string());
                    assert_eq!(recs[0]["status"], "normal");
                }
            }
        }
        // The audit entry of the last query says why: expired.
        let last = audited(&gw, "query").await.pop().unwrap();
        assert!(
            has_field(&last, &format!("record:{id}"), "withheld", "expired"),
            "{last:?}"
        );
        // Not deleted: the provider and the auditors still see its history.
        let h = gw
            .client("department")
            .get(&format!("/v1/records/{id}/history"))
            .await;
        assert_eq!(
            (h.status, h.body["state"].as_str()),
            (200, Some("expired")),
            "{}",
            h.body
        );
        assert_eq!(h.body["subject_id"], subject.as_str());
        let h = gw
            .client("auditor")
            .get(&format!("/v1/records/{id}/history"))
            .await;
        assert_eq!(h.status, 200, "{}", h.body);
        assert_eq!(h.body["state"], "expired");
        assert!(
            h.body.get("subject_id").is_none(),
            "clear subject id to an auditor"
        );
        assert!(h.body["subject_hash"].is_string());
        assert!(
            !h.body.to_string().contains("秘密"),
            "a field value reached the auditor"
        );
        // Another department: as if the record did not exist.
        assert_eq!(
            gw.client("tax")
                .get(&format!("/v1/records/{id}/history"))
                .await
                .body["error"]["code"],
            "record_not_found"
        );
    }
    // The responses never revealed an expired record: no "expired" anywhere.
    clock.set(date!(2030 - 01 - 01));
    let r = gw
        .client("bank")
        .post(
            "/v1/query",
            &query(
                "legal_person",
                &cases[0].1,
                "financing",
                &["penalty_content"],
            ),
        )
        .await;
    assert_eq!(r.body["records"], json!([]));
    assert!(!r.body.to_string().contains("expired"));
    gw.stop().await;
}

/// Values never change on the way in: a NUL in text is refused naming the
/// field; an amount too long for a float is refused as a JSON number and
/// stored exactly as a decimal string.
#[tokio::test]
async fn values_are_stored_exactly_or_refused_naming_the_field() {
    let s = code(95);
    let (gw, _clock) = start(date!(2026 - 11 - 23)).await;
    let arrears = |amount: &str| {
        format!(
            r#"{{"records": [{{"subject": {{"type": "legal_person", "id": "{s}"}}, "item": "arrears", "tier": "general",
                "decision_date": "2026-08-31", "fields": {{"tax_arrears_amount": {amount}, "arrears_as_of": "2026-08-31"}}}}]}}"#
        )
    };
    let send = |who: &'static str, path: &'static str, body: String| {
        let c = gw.client(who);
        async move {
            c.send("POST", path, Bytes::from(body), Some("application/json"))
                .await
                .unwrap()
        }
    };
    let before = gw.store.lifecycle_row_count().await.unwrap();
    let r = send(
        "tax",
        "/v1/records",
        arrears("123456789012345678901234567890"),
    )
    .await;
    assert_eq!(
        (
            r.status,
            r.body["error"]["code"].as_str(),
            &r.body["error"]["details"]
        ),
        (
            400,
            Some("invalid_value"),
            &json!({"record": 0, "field": "tax_arrears_amount", "expected": "decimal"})
        ),
        "{}",
        r.body
    );
    let r = send("tax", "/v1/records", arrears("1200.5")).await;
    assert_eq!(
        r.body["error"]["details"]["field"], "tax_arrears_amount",
        "{}",
        r.body
    );
    let mut nul = penalty(&s, "general", "2026-10-01", "x");
    nul["fields"]["penalty_content"] = json!("罚款\u{0}人民币");
    let r = gw
        .client("department")
        .post("/v1/records", &json!({"records": [nul]}))
        .await;
    assert_eq!(
        (
            r.status,
            r.body["error"]["code"].as_str(),
            r.body["error"]["details"]["field"].as_str()
        ),
        (400, Some("invalid_value"), Some("penalty_content")),
        "{}",
        r.body
    );
    assert_eq!(gw.store.lifecycle_row_count().await.unwrap(), before);

    // As a decimal string it is stored and returned exactly.
    let r = send(
        "tax",
        "/v1/records",
        arrears(r#""123456789012345678901234567890.25""#),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let recs = records(&gw, "bank", "financing", &s, &["tax_arrears_amount"]).await;
    assert_eq!(
        recs[0]["fields"]["tax_arrears_amount"],
        "123456789012345678901234567890.25"
    );
    let r = gw
        .client("bank")
        .post(
            "/v1/query",
            &json!({"subject": lp(&s), "purpose": "financing", "view": "financing_profile"}),
        )
        .await;
    assert_eq!(r.body["summary"]["arrears"], true, "{}", r.body);

    // A correction is held to the same rules.
    let p = submit(
        &gw,
        "department",
        vec![penalty(&s, "general", "2026-10-01", "罚款")],
    )
    .await[0];
    let o = gw
        .client("portal")
        .post(
            "/v1/objections",
            &json!({"subject": lp(&s), "record_id": p, "grounds": "有误"}),
        )
        .await
        .body["objection_id"]
        .as_i64()
        .unwrap();
    let r = gw
        .client("department")
        .post(
            &format!("/v1/objections/{o}/resolution"),
            &json!({"outcome": "corrected", "fields": {"penalty_content": "\u{0}"}}),
        )
        .await;
    assert_eq!(
        (
            r.status,
            r.body["error"]["code"].as_str(),
            r.body["error"]["details"]["field"].as_str()
        ),
        (400, Some("invalid_value"), Some("penalty_content")),
        "{}",
        r.body
    );
    gw.stop().await;
}

/// A submission's audit entry names its subject, so the subject's access
/// history shows it; a batch about several subjects would be recorded about
/// none of them and is refused whole (400 `mixed_subjects`, nothing stored,
/// audited).
#[tokio::test]
async fn a_batch_is_about_one_subject_and_its_entry_names_it() {
    let (a, b) = (code(95), code(96));
    let (gw, _clock) = start(date!(2026 - 11 - 23)).await;
    let dept = gw.client("department");
    let reg = |s: &str, name: &str| json!({"subject": lp(s), "item": "registration", "fields": {"enterprise_name": name}});
    let r = dept
        .post(
            "/v1/records",
            &json!({"records": [reg(&a, "甲公司"), penalty(&a, "minor", "2026-11-01", "警告"),
                                reg(&b, "乙公司")]}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (400, Some("mixed_subjects")),
        "{}",
        r.body
    );
    assert_eq!(r.body["error"]["details"]["record"], 2);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("record 2:")
    );
    // Nothing of it was stored, for either subject.
    for s in [&a, &b] {
        let recs = records(
            &gw,
            "department",
            "administrative_review",
            s,
            &["enterprise_name", "penalty_content"],
        )
        .await;
        assert!(recs.is_empty(), "{s}: {recs:?}");
    }
    let refused = audited(&gw, "submit_records").await;
    assert_eq!(
        (
            refused[0].outcome.as_str(),
            refused[0].status,
            refused[0].records
        ),
        ("mixed_subjects", 400, 0)
    );
    // One subject per batch: stored, and the entry names the subject, as
    // the query about it does (same keyed hash).
    let ids_a = submit(
        &gw,
        "department",
        vec![
            reg(&a, "甲公司"),
            penalty(&a, "minor", "2026-11-01", "警告"),
        ],
    )
    .await;
    submit(&gw, "department", vec![reg(&b, "乙公司")]).await;
    assert_eq!(ids_a.len(), 2);
    let subs = audited(&gw, "submit_records").await;
    let ok: Vec<_> = subs.iter().filter(|e| e.outcome == "ok").collect();
    assert_eq!(ok.len(), 2);
    let q = records(&gw, "bank", "financing", &a, &["enterprise_name"]).await;
    assert_eq!(q.len(), 1);
    let query_entry = audited(&gw, "query").await.pop().unwrap();
    assert!(ok[0].subject.is_some());
    assert_eq!(ok[0].subject, query_entry.subject);
    assert_ne!(ok[0].subject, ok[1].subject);
    assert_eq!(ok[0].records, 2);
    // Each subject's access history holds its own submission only.
    for (s, n) in [(&a, 1), (&b, 1)] {
        let r = gw
            .client("portal")
            .post("/v1/portal/access-history", &json!({"subject": lp(s)}))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let submissions = r.body["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == "submit_records")
            .count();
        assert_eq!(submissions, n, "{s}: {}", r.body);
    }
    gw.stop().await;
}

/// A resident ID number's birth date is judged against the gateway's
/// clock, the one every other decision of the request uses, not the
/// system clock: under a clock pinned in 2101 a person born on 2101-01-01
/// exists, and one born the day after today is refused.
#[tokio::test]
async fn id_numbers_are_judged_by_the_gateways_clock() {
    let (gw, _clock) = start(date!(2101 - 01 - 10)).await;
    let person = |birth: &str| {
        let prefix = format!("110105{birth}001");
        format!(
            "{prefix}{}",
            credgate::ids::IdNumber::check_char(&prefix).unwrap()
        )
    };
    let np = |id: &str| json!({"type": "natural_person", "id": id});
    let (born, unborn) = (person("21010101"), person("21010111"));
    let bank = gw.client("bank");
    let portal = gw.client("portal");
    for (id, refused) in [(&born, false), (&unborn, true)] {
        let q = json!({"subject": np(id), "purpose": "financing", "fields": ["enterprise_name"]});
        let objection = json!({"subject": np(id), "record_id": 987654, "grounds": "记录有误"});
        let history = json!({"subject": np(id)});
        for r in [
            bank.post("/v1/query", &q).await,
            portal.post("/v1/objections", &objection).await,
            portal.post("/v1/portal/access-history", &history).await,
        ] {
            let code = r.body["error"]["code"].as_str();
            if refused {
                assert_eq!(
                    (r.status, code, r.body["error"]["details"]["check"].as_str()),
                    (400, Some("invalid_identifier"), Some("birth_date")),
                    "{id}: {}",
                    r.body
                );
            } else {
                assert_ne!(code, Some("invalid_identifier"), "{id}: {}", r.body);
            }
        }
    }
    gw.stop().await;
}

/// A subject with more withheld records than one entry can name (800
/// expired penalties: one `record:<id>` field each was about 71,000 bytes,
/// over the log's 65,535-byte slot, and every query about the subject
/// answered 503 `audit_unavailable`): the query is answered, and its entry
/// names the first `MAX_LISTED_ITEMS` records and counts the rest per
/// reason (`src/audit/items.rs`).
#[tokio::test]
async fn a_subject_with_many_withheld_records_is_still_queried_and_audited_within_one_entry() {
    use credgate::audit::items::MAX_LISTED_ITEMS;
    const EXPIRED: usize = 800;
    let s = code(400);
    let (gw, clock) = start(date!(2025 - 12 - 01)).await;
    // Minor penalties (shared for 3 months), then one to be withdrawn and
    // one serious penalty still shared after them.
    let mut batch: Vec<Value> = (0..EXPIRED)
        .map(|i| penalty(&s, "minor", "2025-11-30", &format!("警告{i}")))
        .collect();
    batch.push(penalty(&s, "general", "2025-11-30", "罚款"));
    batch.push(penalty(&s, "serious", "2025-11-30", "吊销许可证"));
    let ids = submit(&gw, "department", batch).await;
    let (expired, withdrawn, shared) = (&ids[..EXPIRED], ids[EXPIRED], ids[EXPIRED + 1]);
    let r = gw
        .client("portal")
        .post(
            "/v1/objections",
            &json!({"subject": lp(&s), "record_id": withdrawn, "grounds": "处罚决定已撤销"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let o = r.body["objection_id"].as_i64().unwrap();
    let r = gw
        .client("department")
        .post(
            &format!("/v1/objections/{o}/resolution"),
            &json!({"outcome": "withdrawn"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    clock.set(date!(2026 - 03 - 01));

    let r = gw
        .client("bank")
        .post(
            "/v1/query",
            &query("legal_person", &s, "financing", &["penalty_content"]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let recs = r.body["records"].as_array().unwrap();
    assert_eq!(ids_of(recs), [shared]);
    let seq: u64 = r.headers["x-audit-seq"].to_str().unwrap().parse().unwrap();
    let stored = gw.store.audit_range(seq, seq + 1).await.unwrap();
    let bytes = &stored[0].entry;
    assert!(
        bytes.len() < credlog::tiles::MAX_ENTRY_LEN,
        "{} bytes",
        bytes.len()
    );
    let e = credgate::audit::AuditEntry::parse(bytes).unwrap();
    assert_eq!(
        (e.action.as_str(), e.status, e.outcome.as_str(), e.records),
        ("query", 200, "ok", 1)
    );
    // The query's own decision, then the first records by name, in id order.
    assert_eq!(e.fields[0].field, "penalty_content");
    let named: Vec<_> = e.fields[1..=MAX_LISTED_ITEMS]
        .iter()
        .map(|f| {
            (
                f.field.clone(),
                f.decision.to_string(),
                f.reason.to_string(),
                f.detail.as_deref().map(str::to_owned),
            )
        })
        .collect();
    let want: Vec<_> = expired[..MAX_LISTED_ITEMS]
        .iter()
        .map(|id| {
            (
                format!("record:{id}"),
                "withheld".to_owned(),
                "expired".to_owned(),
                Some("admin_penalty".to_owned()),
            )
        })
        .collect();
    assert_eq!(named, want);
    // The rest counted, one field per reason; nothing else.
    let summary: Vec<_> = e.fields[MAX_LISTED_ITEMS + 1..]
        .iter()
        .map(|f| {
            (
                f.field.as_str(),
                &*f.decision,
                &*f.reason,
                f.detail.as_deref(),
            )
        })
        .collect();
    let rest = format!("{} more", EXPIRED - MAX_LISTED_ITEMS);
    assert_eq!(
        summary,
        [
            (
                "records_withheld",
                "withheld",
                "expired",
                Some(rest.as_str())
            ),
            ("records_withheld", "withheld", "withdrawn", Some("1 more")),
        ]
    );
    // No record beyond the first ones is named.
    assert!(!has_field(
        &e,
        &format!("record:{}", expired[MAX_LISTED_ITEMS]),
        "withheld",
        "expired"
    ));
    gw.stop().await;
}

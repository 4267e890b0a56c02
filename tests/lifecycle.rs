//! Credit-information lifecycle end to end, over real mTLS, on SQLite or
//! PostgreSQL: disclosure periods at their exact boundaries (fixed clock),
//! objections, credit repair, red/black/focus lists, 应查必查 checks with
//! feedback, the 信易贷 financing profile, and hostile input to every new
//! endpoint.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use bytes::Bytes;
use common::*;
use credgate::ids::CreditCode;
use serde_json::{Value, json};
use time::Date;
use time::macros::date;

/// A settable clock shared with the gateway.
#[derive(Clone)]
struct TestClock(Arc<AtomicI32>);

impl TestClock {
    fn new(d: Date) -> Self {
        TestClock(Arc::new(AtomicI32::new(d.to_julian_day())))
    }

    fn set(&self, d: Date) {
        self.0.store(d.to_julian_day(), Ordering::SeqCst);
    }

    fn clock(&self) -> credgate::http::Clock {
        let day = self.0.clone();
        Arc::new(move || Date::from_julian_day(day.load(Ordering::SeqCst)).unwrap())
    }
}

/// A seeded gateway whose clock reads `today` until set otherwise.
async fn start(today: Date) -> (TestGateway, TestClock) {
    let clock = TestClock::new(today);
    let dir = TempDir::new("lc");
    let (url, pg_db) = test_database(&dir.0).await;
    let cfg = config(&dir.0, &url);
    let c = clock.clock();
    let gw =
        TestGateway::start_prepared(cfg, dir, pg_db, true, move |g| g.app().set_clock(c)).await;
    (gw, clock)
}

/// A valid unified social credit code, distinct per `n`.
fn code(n: u32) -> String {
    let prefix = format!("91370300MA3L{n:05}");
    format!("{prefix}{}", CreditCode::check_char(&prefix).unwrap())
}

fn lp(id: &str) -> Value {
    json!({"type": "legal_person", "id": id})
}

fn penalty(subject: &str, tier: &str, decided: &str, content: &str) -> Value {
    json!({"subject": lp(subject), "item": "admin_penalty", "tier": tier, "decision_date": decided,
        "fields": {"penalty_decision_no": format!("淄市监罚〔{decided}〕号"), "penalty_content": content,
                   "penalty_date": decided, "penalty_authority": "淄博市市场监督管理局"}})
}

async fn submit(gw: &TestGateway, who: &str, records: Vec<Value>) -> Vec<i64> {
    let r = gw
        .client(who)
        .post("/v1/records", &json!({"records": records}))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["record_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect()
}

/// The records a caller gets for `fields`.
async fn records(
    gw: &TestGateway,
    who: &str,
    purpose: &str,
    subject: &str,
    fields: &[&str],
) -> Vec<Value> {
    let r = gw
        .client(who)
        .post(
            "/v1/query",
            &query("legal_person", subject, purpose, fields),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["records"].as_array().unwrap().clone()
}

fn ids_of(records: &[Value]) -> Vec<i64> {
    records
        .iter()
        .filter_map(|r| r["record_id"].as_i64())
        .collect()
}

fn status_of(records: &[Value], id: i64) -> Option<String> {
    records
        .iter()
        .find(|r| r["record_id"] == id)
        .map(|r| r["status"].as_str().unwrap().to_owned())
}

async fn check(gw: &TestGateway, who: &str, subject: &str, matter: &str) -> Value {
    let r = gw
        .client(who)
        .post(
            "/v1/checks",
            &json!({"subject": lp(subject), "matter": matter}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

fn measure<'a>(check: &'a Value, id: &str) -> &'a Value {
    check["measures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == id)
        .unwrap_or_else(|| panic!("no measure {id} in {check}"))
}

/// Audit entries of `action`.
async fn audited(gw: &TestGateway, action: &str) -> Vec<credgate::audit::AuditEntry> {
    audit_entries(&gw.store)
        .await
        .into_iter()
        .filter(|e| e.action == action)
        .collect()
}

fn has_field(e: &credgate::audit::AuditEntry, field: &str, decision: &str, reason: &str) -> bool {
    e.fields
        .iter()
        .any(|f| f.field == field && f.decision == decision && f.reason == reason)
}

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

/// (client, method, path, body, status, code).
type Case<'a> = (&'a str, &'a str, &'a str, Vec<u8>, u16, &'a str);

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

//! The catalog categories of the national basic catalog (全国公共信用信息基础
//! 目录 2021/2024) end to end, over real mTLS, on SQLite or PostgreSQL
//! (`CREDGATE_TEST_DATABASE_URL`): credit commitments and broken ones,
//! honours, administrative compulsory measures and enforcement,
//! confirmations, rewards, inspections and failed inspections, credit
//! evaluation results. Each is submitted, queried by every role under its
//! grants, and the negative ones are objected to, repaired and expire with
//! their tier.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use common::*;
use credgate::ids::CreditCode;
use serde_json::{Value, json};
use time::Date;
use time::macros::date;

/// A settable clock shared with the gateway.
#[derive(Clone)]
struct TestClock(Arc<AtomicI32>);

impl TestClock {
    fn set(&self, d: Date) {
        self.0.store(d.to_julian_day(), Ordering::SeqCst);
    }
}

/// A seeded gateway whose clock reads `today` until set otherwise.
async fn start(today: Date) -> (TestGateway, TestClock) {
    let clock = TestClock(Arc::new(AtomicI32::new(today.to_julian_day())));
    let dir = TempDir::new("cat");
    let (url, pg_db) = test_database(&dir.0).await;
    let cfg = config(&dir.0, &url);
    let day = clock.0.clone();
    let c: credgate::http::Clock =
        Arc::new(move || Date::from_julian_day(day.load(Ordering::SeqCst)).unwrap());
    let gw =
        TestGateway::start_prepared(cfg, dir, pg_db, true, move |g| g.app().set_clock(c)).await;
    (gw, clock)
}

/// A valid unified social credit code, distinct per `n`.
fn code(n: u32) -> String {
    let prefix = format!("91370300MA3K{n:05}");
    format!("{prefix}{}", CreditCode::check_char(&prefix).unwrap())
}

fn lp(id: &str) -> Value {
    json!({"type": "legal_person", "id": id})
}

/// One record of each new legal-person item for `s`; negative ones decided
/// on `decided` with `tier`.
fn new_items(s: &str, tier: &str, decided: &str) -> Vec<Value> {
    vec![
        json!({"subject": lp(s), "item": "credit_commitment", "fields": {
            "commitment_type": "信用修复型", "commitment_matter": "行政处罚信用修复",
            "commitment_content": "按期履行处罚决定，一年内不再发生同类违法行为",
            "commitment_authority": "淄博市市场监督管理局", "commitment_date": "2026-09-01",
            "commitment_fulfilment": "已履约", "commitment_fulfilled_date": "2026-10-15"}}),
        json!({"subject": lp(s), "item": "commitment_breach", "tier": tier, "decision_date": decided,
            "fields": {"breach_commitment_matter": "告知承诺制办理食品经营许可",
            "breach_facts": "承诺具备的冷藏条件经核查不存在", "breach_authority": "淄博市市场监督管理局",
            "breach_determined_date": decided}}),
        json!({"subject": lp(s), "item": "honour", "fields": {
            "honour_name": "山东省守合同重信用企业", "honour_grantor": "山东省市场监督管理局",
            "honour_level": "省级", "honour_date": "2025-06-30"}}),
        json!({"subject": lp(s), "item": "admin_compulsory_measure", "fields": {
            "measure_decision_no": "淄市监强〔2026〕7号", "measure_kind": "扣押",
            "measure_authority": "淄博市市场监督管理局", "measure_date": "2026-08-03"}}),
        json!({"subject": lp(s), "item": "admin_enforcement", "tier": tier, "decision_date": decided,
            "fields": {"enforcement_decision_no": "淄市监执〔2026〕3号",
            "enforcement_obligation": "限期拆除违法广告设施", "enforcement_method": "代履行",
            "enforcement_authority": "淄博市市场监督管理局", "enforcement_decision_date": decided}}),
        json!({"subject": lp(s), "item": "admin_confirmation", "fields": {
            "confirmation_matter": "高新技术企业认定", "confirmation_result": "认定",
            "confirmation_authority": "山东省科学技术厅", "confirmation_date": "2025-12-20"}}),
        json!({"subject": lp(s), "item": "admin_reward", "fields": {
            "reward_name": "淄博市市长质量奖", "reward_content": "奖金人民币500000元",
            "reward_authority": "淄博市人民政府", "reward_date": "2025-11-11"}}),
        json!({"subject": lp(s), "item": "admin_inspection", "fields": {
            "inspection_matter": "食品经营许可事项", "inspection_method": "双随机抽查",
            "inspection_result": "发现问题已责令整改", "inspection_authority": "淄博市市场监督管理局",
            "inspection_date": decided}}),
        json!({"subject": lp(s), "item": "inspection_failure", "tier": "minor", "decision_date": decided,
            "fields": {"failure_matter": "食品经营许可事项", "failure_findings": "冷藏设施不符合要求",
            "failure_authority": "淄博市市场监督管理局", "failure_date": decided}}),
        json!({"subject": lp(s), "item": "credit_evaluation", "fields": {
            "evaluation_scheme": "公共信用综合评价", "evaluation_grade": "B",
            "evaluation_authority": "淄博市发展和改革委员会", "evaluation_date": "2026-07-01",
            "evaluation_valid_until": "2027-06-30"}}),
    ]
}

const ITEMS: [&str; 10] = [
    "credit_commitment",
    "commitment_breach",
    "honour",
    "admin_compulsory_measure",
    "admin_enforcement",
    "admin_confirmation",
    "admin_reward",
    "admin_inspection",
    "inspection_failure",
    "credit_evaluation",
];

/// One field of each new item, in `ITEMS` order.
const FIELDS: [&str; 10] = [
    "commitment_fulfilment",
    "breach_facts",
    "honour_name",
    "measure_kind",
    "enforcement_method",
    "confirmation_result",
    "reward_content",
    "inspection_result",
    "failure_findings",
    "evaluation_grade",
];

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

/// The query response a caller gets for `fields` of a legal person.
async fn ask(gw: &TestGateway, who: &str, purpose: &str, subject: &str, fields: &[&str]) -> Value {
    let r = gw
        .client(who)
        .post(
            "/v1/query",
            &query("legal_person", subject, purpose, fields),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

/// Items of the records in a query response.
fn items_of(body: &Value) -> Vec<String> {
    let mut v: Vec<String> = body["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["item"].as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

fn record(body: &Value, id: i64) -> Option<&Value> {
    body["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["record_id"] == id)
}

fn decision(body: &Value, field: &str) -> (String, String) {
    decisions(body)
        .into_iter()
        .find(|(f, _, _)| f == field)
        .map(|(_, d, r)| (d, r))
        .unwrap_or_else(|| panic!("no decision for {field}: {body}"))
}

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

fn sorted(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

#[tokio::test]
async fn every_new_item_is_stored_and_shared_by_role_and_purpose() {
    let s = code(1);
    let (gw, _clock) = start(date!(2026 - 11 - 23)).await;
    let ids = submit(&gw, "department", new_items(&s, "general", "2026-10-01")).await;
    assert_eq!(ids.len(), ITEMS.len());
    // The submission's entry names every field it accepted.
    let entry = audited(&gw, "submit_records").await.pop().unwrap();
    assert_eq!(entry.outcome, "ok");
    for f in FIELDS {
        assert!(has_field(&entry, f, "accepted", "authorised"), "{f}");
    }

    // Departments (administrative review) see everything.
    let d = ask(&gw, "department", "administrative_review", &s, &FIELDS).await;
    assert_eq!(items_of(&d), sorted(&ITEMS));
    for f in FIELDS {
        assert_eq!(
            decision(&d, f),
            ("returned".into(), "authorised".into()),
            "{f}"
        );
    }
    let measure = record(&d, ids[3]).unwrap();
    assert_eq!(measure["fields"]["measure_kind"], "扣押");
    // Negative items carry their terms; the others none.
    let breach = record(&d, ids[1]).unwrap();
    assert_eq!(
        breach["terms"],
        json!({"tier": "general", "decision_date": "2026-10-01", "disclosed_until": "2027-10-01", "recorded": true})
    );
    assert_eq!(
        record(&d, ids[8]).unwrap()["terms"]["disclosed_until"],
        "2027-01-01"
    );
    assert!(
        record(&d, ids[0])
            .unwrap()
            .get("terms")
            .is_none_or(Value::is_null)
    );

    // Banks (信易贷): evaluation results yes, compulsory measures never.
    let b = ask(&gw, "bank", "financing", &s, &FIELDS).await;
    assert_eq!(
        decision(&b, "measure_kind"),
        ("withheld".into(), "not_authorised".into())
    );
    assert_eq!(
        decision(&b, "evaluation_grade"),
        ("returned".into(), "authorised".into())
    );
    assert!(!items_of(&b).contains(&"admin_compulsory_measure".to_owned()));
    assert!(!b.to_string().contains("扣押"));
    // Credit agencies: neither measures nor evaluation results; negative and
    // public information yes.
    let a = ask(&gw, "agency", "credit_report", &s, &FIELDS).await;
    for f in ["measure_kind", "evaluation_grade"] {
        assert_eq!(
            decision(&a, f),
            ("withheld".into(), "not_authorised".into()),
            "{f}"
        );
    }
    for f in [
        "breach_facts",
        "enforcement_method",
        "honour_name",
        "reward_content",
    ] {
        assert_eq!(
            decision(&a, f),
            ("returned".into(), "authorised".into()),
            "{f}"
        );
    }
    assert!(!a.to_string().contains("公共信用综合评价"));
    let agency_entry = audited(&gw, "query").await.pop().unwrap();
    assert!(has_field(
        &agency_entry,
        "evaluation_grade",
        "withheld",
        "not_authorised"
    ));
    // The subject, through the portal, sees its whole file.
    let p = ask(&gw, "portal", "self_inquiry", &s, &FIELDS).await;
    assert_eq!(items_of(&p), sorted(&ITEMS));

    // A negative new item must state its tier and decision date; its
    // decision date must match its own date field; an undeclared field is
    // refused; nothing of a refused batch is stored.
    let bad = [
        (
            json!({"subject": lp(&s), "item": "admin_enforcement",
                "fields": {"enforcement_method": "代履行", "enforcement_decision_date": "2026-10-01"}}),
            "lifecycle_terms_required",
        ),
        (
            json!({"subject": lp(&s), "item": "commitment_breach", "tier": "general", "decision_date": "2026-10-01",
                "fields": {"breach_facts": "x", "breach_determined_date": "2026-09-30"}}),
            "decision_date_mismatch",
        ),
        (
            json!({"subject": lp(&s), "item": "honour", "fields": {"honour_name": "x", "honour_score": 5}}),
            "unknown_field",
        ),
        (
            json!({"subject": lp(&s), "item": "honour", "tier": "minor", "decision_date": "2026-10-01",
                "fields": {"honour_name": "x"}}),
            "lifecycle_terms_not_applicable",
        ),
    ];
    let before = ask(&gw, "department", "administrative_review", &s, &FIELDS).await["records"]
        .as_array()
        .unwrap()
        .len();
    for (rec, want) in bad {
        let batch = json!({"records": [new_items(&s, "general", "2026-10-01")[2].clone(), rec]});
        let r = gw.client("department").post("/v1/records", &batch).await;
        assert!(
            (400..500).contains(&r.status),
            "{want}: {} {}",
            r.status,
            r.body
        );
        assert_eq!(r.body["error"]["code"], want, "{}", r.body);
    }
    let after = ask(&gw, "department", "administrative_review", &s, &FIELDS).await["records"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(before, after);
    let refused = audited(&gw, "submit_records").await;
    assert_eq!(refused.iter().filter(|e| e.outcome != "ok").count(), 4);

    // Natural persons: honours and broken commitments.
    let r = gw
        .client("department")
        .post(
            "/v1/records",
            &json!({"records": [
                {"subject": {"type": "natural_person", "id": ids::PERSON2}, "item": "person_honour",
                 "fields": {"person_honour_name": "淄博市诚信之星", "person_honour_grantor": "淄博市文明办",
                            "person_honour_date": "2025-12-01"}},
                {"subject": {"type": "natural_person", "id": ids::PERSON2}, "item": "person_commitment_breach",
                 "tier": "minor", "decision_date": "2026-10-10",
                 "fields": {"person_breach_commitment_matter": "助学贷款还款承诺", "person_breach_facts": "逾期未还",
                            "person_breach_authority": "淄博市教育局", "person_breach_determined_date": "2026-10-10"}}
            ]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = gw
        .client("bank")
        .post(
            "/v1/query",
            &query(
                "natural_person",
                ids::PERSON2,
                "financing",
                &["person_honour_name", "person_breach_facts"],
            ),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        items_of(&r.body),
        ["person_commitment_breach", "person_honour"]
    );
    let breach = r.body["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["item"] == "person_commitment_breach")
        .unwrap();
    assert_eq!(breach["terms"]["disclosed_until"], "2027-01-10");
    gw.stop().await;
}

#[tokio::test]
async fn negative_new_items_are_disputed_repaired_and_expire_with_their_tier() {
    let s = code(2);
    let (gw, clock) = start(date!(2026 - 11 - 23)).await;
    let ids = submit(&gw, "department", new_items(&s, "general", "2026-10-01")).await;
    let (commitment, breach, honour, enforcement, failure) =
        (ids[0], ids[1], ids[2], ids[4], ids[8]);
    let portal = gw.client("portal");
    let dept = gw.client("department");
    // The broken commitment is the basis of a black-list entry.
    let r = dept
        .post(
            "/v1/lists/black",
            &json!({"subject": lp(&s), "basis": "虚假承诺 严重失信", "basis_record_id": breach}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let entry = r.body["entry_id"].as_i64().unwrap();
    let listed = ask(&gw, "bank", "financing", &s, &["black_listed"]).await;
    assert_eq!(listed["records"][0]["fields"]["black_listed"], true);

    // Objection on the broken commitment: disputed to the bank; corrected by
    // the provider, the correction supersedes it with the terms carried over.
    let r = portal
        .post(
            "/v1/objections",
            &json!({"subject": lp(&s), "record_id": breach, "grounds": "冷藏条件已具备，认定事实有误"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let o = r.body["objection_id"].as_i64().unwrap();
    let b = ask(&gw, "bank", "financing", &s, &["breach_facts"]).await;
    assert_eq!(record(&b, breach).unwrap()["status"], "disputed");
    let r = dept
        .post(
            &format!("/v1/objections/{o}/resolution"),
            &json!({"outcome": "corrected", "note": "部分事实更正",
                    "fields": {"breach_facts": "承诺的冷藏条件部分不具备"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let corrected = r.body["new_record_id"].as_i64().unwrap();
    let b = ask(&gw, "bank", "financing", &s, &["breach_facts"]).await;
    assert!(record(&b, breach).is_none());
    let c = record(&b, corrected).unwrap();
    assert_eq!(c["fields"]["breach_facts"], "承诺的冷藏条件部分不具备");
    assert_eq!(c["terms"]["tier"], "general");
    assert_eq!(c["supersedes"], breach);
    let r = portal
        .post(
            &format!("/v1/objections/{o}/status"),
            &json!({"subject": lp(&s)}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["status"].as_str()),
        (200, Some("corrected")),
        "{}",
        r.body
    );

    // Non-negative new items cannot be repaired; an objection on them is
    // fine (an honour recorded wrongly is disputed too).
    let apply = |record: i64| {
        let c = portal.clone();
        let body = json!({"subject": lp(&s), "record_id": record,
                          "grounds": format!("已作出信用修复承诺并履约（信用承诺记录 {commitment}）")});
        async move { c.post("/v1/repairs", &body).await }
    };
    for rec in [commitment, honour] {
        let r = apply(rec).await;
        assert_eq!(
            (r.status, r.body["error"]["code"].as_str()),
            (422, Some("not_negative")),
            "{}",
            r.body
        );
    }
    let r = portal
        .post(
            "/v1/objections",
            &json!({"subject": lp(&s), "record_id": honour, "grounds": "荣誉名称有误"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);

    // Repair of the enforcement and of the corrected broken commitment, once
    // the general tier's minimum disclosure (3 months) has passed.
    let r = apply(enforcement).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (409, Some("repair_too_early"))
    );
    assert_eq!(r.body["error"]["details"]["opens_on"], "2027-01-01");
    clock.set(date!(2027 - 01 - 01));
    let mut repaired = Vec::new();
    for rec in [enforcement, corrected] {
        let r = apply(rec).await;
        assert_eq!(r.status, 201, "{}", r.body);
        let rid = r.body["repair_id"].as_i64().unwrap();
        let r = dept
            .post(
                &format!("/v1/repairs/{rid}/decision"),
                &json!({"decision": "approve", "note": "信用修复承诺已履行"}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        repaired.push(r.body.clone());
    }
    // Repairing the list's basis exited the black-list entry with it.
    assert_eq!(repaired[1]["exited_list_entries"], json!([entry]));
    let listed = ask(&gw, "bank", "financing", &s, &["black_listed"]).await;
    assert_eq!(listed["records"][0]["fields"]["black_listed"], false);
    let fields = ["enforcement_method", "breach_facts"];
    let a = ask(&gw, "agency", "credit_report", &s, &fields).await;
    assert!(record(&a, enforcement).is_none() && record(&a, corrected).is_none());
    let last = audited(&gw, "query").await.pop().unwrap();
    assert!(has_field(
        &last,
        &format!("record:{enforcement}"),
        "withheld",
        "repaired"
    ));
    let d = ask(&gw, "department", "administrative_review", &s, &fields).await;
    assert_eq!(record(&d, enforcement).unwrap()["status"], "repaired");
    let decided = audited(&gw, "repair_decide").await;
    assert!(decided.iter().any(|e| has_field(
        e,
        &format!("record:{corrected}"),
        "approved",
        "repaired"
    ) && has_field(
        e,
        &format!("list_entry:{entry}"),
        "exited",
        "basis_repaired"
    )));

    // The failed inspection (minor: 3 months) stopped being shared on
    // 2027-01-01, with everyone; its provider still reads its history.
    let f = ask(
        &gw,
        "department",
        "administrative_review",
        &s,
        &["failure_findings"],
    )
    .await;
    assert!(record(&f, failure).is_none(), "{f}");
    let last = audited(&gw, "query").await.pop().unwrap();
    assert!(has_field(
        &last,
        &format!("record:{failure}"),
        "withheld",
        "expired"
    ));
    clock.set(date!(2026 - 12 - 31));
    let f = ask(&gw, "agency", "credit_report", &s, &["failure_findings"]).await;
    assert!(record(&f, failure).is_some());
    let h = dept.get(&format!("/v1/records/{failure}/history")).await;
    assert_eq!(h.status, 200, "{}", h.body);
    gw.stop().await;
}

#[tokio::test]
async fn the_financing_profile_counts_broken_commitments_and_carries_the_new_items() {
    let s = code(3);
    let (gw, clock) = start(date!(2026 - 11 - 23)).await;
    let ids = submit(&gw, "department", new_items(&s, "serious", "2026-10-01")).await;
    let profile = json!({"subject": lp(&s), "purpose": "financing", "view": "financing_profile"});
    let r = gw.client("bank").post("/v1/query", &profile).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["summary"]["broken_commitments"], 1, "{}", r.body);
    for item in [
        "commitment_breach",
        "admin_enforcement",
        "credit_evaluation",
        "honour",
    ] {
        assert!(items_of(&r.body).contains(&item.to_owned()), "{item}");
    }
    // Not in the view, so not returned.
    assert!(!items_of(&r.body).contains(&"admin_compulsory_measure".to_owned()));
    // A serious broken commitment is shown 36 months.
    assert_eq!(
        record(&r.body, ids[1]).unwrap()["terms"]["disclosed_until"],
        "2029-10-01"
    );
    clock.set(date!(2029 - 10 - 01));
    let r = gw.client("bank").post("/v1/query", &profile).await;
    assert_eq!(r.body["summary"]["broken_commitments"], 0, "{}", r.body);
    assert!(record(&r.body, ids[1]).is_none());
    gw.stop().await;
}

//! Credit-information lifecycle end to end, over real mTLS, on SQLite or
//! PostgreSQL: disclosure periods at their exact boundaries (fixed clock),
//! objections, credit repair, red/black/focus lists, 应查必查 checks with
//! feedback, the 信易贷 financing profile, and hostile input to every new
//! endpoint.

mod checks;
#[path = "../common/mod.rs"]
mod common;
mod disclosure;
mod lists;
mod objections;
mod repairs;

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

/// (client, method, path, body, status, code).
type Case<'a> = (&'a str, &'a str, &'a str, Vec<u8>, u16, &'a str);

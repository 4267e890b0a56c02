//! The audit outbox: a crash between commit and append audited at restart, rows of another gateway name, a change whose entry failed logged once the log recovers, a panicking writer reopened, and a gateway closed without serving.

use super::*;
use credgate::store::{AuditIntent, NewRecord};

/// The entry of a one-record submission `rid` by the department, as
/// gateway `gateway` writes it into the outbox.
fn submission_entry(rid: &str, gateway: &str) -> AuditEntry {
    AuditEntry {
        v: credgate::audit::ENTRY_VERSION,
        ts: "2026-12-01T08:00:00.000Z".into(),
        request_id: rid.into(),
        gateway: gateway.into(),
        org: Some(ids::DEPARTMENT.into()),
        cert_fp: Some("ab".repeat(32)),
        action: "submit_records".into(),
        subject_type: Some("legal_person".into()),
        subject: Some(format!("k1:{}", "cd".repeat(32))),
        purpose: None,
        consent: None,
        fields: vec![],
        records: 1,
        status: 201,
        outcome: "ok".into(),
        policy: Some("0123456789abcdef0123456789abcdef".into()),
    }
}

/// A licence record of the chemical company with number `licence`.
fn licence_record(licence: &str) -> NewRecord {
    NewRecord {
        subject: credgate::ids::SubjectId::parse("legal_person", ids::CHEM).unwrap(),
        item: "admin_licence".into(),
        provider: ids::DEPARTMENT.into(),
        data: serde_json::from_value(json!({"licence_no": licence})).unwrap(),
        terms: None,
    }
}

/// A listener and an admin listener on free loopback ports.
async fn listeners() -> (tokio::net::TcpListener, tokio::net::TcpListener) {
    (
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    )
}

/// What a crash between a change's commit and its log append leaves behind
/// (records plus their outbox row, no entry) is audited at the next start,
/// once; an outbox row whose entry did reach the log is not appended again.
#[tokio::test]
async fn a_crash_between_commit_and_append_is_audited_at_restart() {
    let dir = TempDir::new("outbox");
    let (url, pg) = test_database(&dir.0).await;
    let cfg = config(&dir.0, &url);
    let entry = |rid: &str| submission_entry(rid, &cfg.server.gateway_id);
    let record = || licence_record("C1");
    // First life: two submissions commit; only the second reaches the log
    // before the "crash" (the first's append never happens).
    let gw = credgate::server::Gateway::build(&cfg).await.unwrap();
    let store = gw.app().store.clone();
    let lost = entry("r-lost");
    let kept = entry("r-kept");
    for e in [&lost, &kept] {
        let intent = AuditIntent::new(&e.request_id, 0, e.canonical());
        store
            .insert_records(&[record()], &intent, &e.ts)
            .await
            .unwrap();
    }
    gw.app().audit.append(&kept).await.unwrap();
    assert_eq!(store.outbox_pending().await.unwrap().len(), 2);
    let (l, a) = listeners().await;
    credgate::server::run(l, a, gw, async {}).await.unwrap();

    // Second life: recovery before serving.
    let gw = credgate::server::Gateway::build(&cfg).await.unwrap();
    let store = gw.app().store.clone();
    let entries = audit_entries(&store).await;
    let ids_logged: Vec<&str> = entries.iter().map(|e| e.request_id.as_str()).collect();
    assert_eq!(
        ids_logged,
        ["r-kept", "r-lost"],
        "each change has exactly one entry"
    );
    assert_eq!(
        entries[1], lost,
        "the entry written with the change, unchanged"
    );
    assert!(store.outbox_pending().await.unwrap().is_empty());
    let per_request: HashMap<String, i64> = store
        .records_per_request()
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(per_request.get("r-lost"), Some(&1));
    let (l, a) = listeners().await;
    credgate::server::run(l, a, gw, async {}).await.unwrap();
    drop_test_database(pg).await;
}

/// An embedded store is served by one process at a time (its lock), so a
/// row left by the store's earlier process is recovered whatever gateway
/// name its entry carries (`server.gateway_id` renamed after a crash). On
/// a shared PostgreSQL store another node's row may belong to a request
/// that node is handling: it stays for that node.
#[tokio::test]
async fn an_embedded_store_recovers_rows_left_under_another_gateway_name() {
    let dir = TempDir::new("outbox-renamed");
    let (url, pg) = test_database(&dir.0).await;
    let cfg = config(&dir.0, &url);
    let earlier = submission_entry("r-renamed", "credgate-before-the-rename");
    assert_ne!(earlier.gateway, cfg.server.gateway_id);
    // First life, under the earlier name: the change commits, the "crash"
    // comes before its append.
    let gw = credgate::server::Gateway::build(&cfg).await.unwrap();
    let store = gw.app().store.clone();
    let intent = AuditIntent::new(&earlier.request_id, 0, earlier.canonical());
    store
        .insert_records(&[licence_record("R1")], &intent, &earlier.ts)
        .await
        .unwrap();
    let (l, a) = listeners().await;
    credgate::server::run(l, a, gw, async {}).await.unwrap();

    // Second life, under this config's name.
    let gw = credgate::server::Gateway::build(&cfg).await.unwrap();
    let store = gw.app().store.clone();
    let logged: Vec<AuditEntry> = audit_entries(&store)
        .await
        .into_iter()
        .filter(|e| e.request_id == earlier.request_id)
        .collect();
    let pending = store.outbox_pending().await.unwrap();
    if url.starts_with("postgres") {
        assert!(
            logged.is_empty(),
            "another node's row is that node's to recover"
        );
        assert_eq!(pending.len(), 1);
    } else {
        assert_eq!(logged, [earlier], "the change has its one entry, unchanged");
        assert!(pending.is_empty());
    }
    let (l, a) = listeners().await;
    credgate::server::run(l, a, gw, async {}).await.unwrap();
    drop_test_database(pg).await;
}

/// Every committed submission leaves no outbox row behind once answered.
#[tokio::test]
async fn answered_submissions_leave_the_outbox_empty() {
    let gw = TestGateway::start().await;
    let body = json!({"records": [{"subject": {"type": "legal_person", "id": ids::CHEM},
        "item": "admin_licence", "fields": {"licence_no": "OB1"}}]});
    let r = gw.client("department").post("/v1/records", &body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let seq: u64 = r.headers["x-audit-seq"].to_str().unwrap().parse().unwrap();
    let e = &audit_entries(&gw.store).await[seq as usize];
    assert_eq!(
        (e.action.as_str(), e.records, e.status),
        ("submit_records", 1, 201)
    );
    assert!(outbox_empties(&gw).await);
    gw.stop().await;
}

/// A gateway on a fresh store, and a handle to its audit log (for the
/// debug-only fault hooks). Drop the handle before `gw.stop()`.
#[cfg(debug_assertions)]
async fn gateway_and_log(tag: &str) -> (TestGateway, credgate::audit::AuditLog) {
    let dir = TempDir::new(tag);
    let (url, pg_db) = test_database(&dir.0).await;
    let cfg = config(&dir.0, &url);
    let mut audit = None;
    let gw = TestGateway::start_prepared(cfg, dir, pg_db, true, |g| {
        audit = Some(g.app().audit.clone());
    })
    .await;
    (gw, audit.unwrap())
}

/// Submit one record while the log refuses the batch that would hold its
/// entry: 503 `audit_unavailable`, `details.stored`, no `x-audit-seq`.
/// Returns the request id.
#[cfg(debug_assertions)]
async fn submit_refused_by_the_log(gw: &TestGateway, licence: &str) -> String {
    let body = json!({"records": [{"subject": {"type": "legal_person", "id": ids::CHEM},
        "item": "admin_licence", "fields": {"licence_no": licence}}]});
    let r = gw.client("department").post("/v1/records", &body).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (503, Some("audit_unavailable")),
        "{}",
        r.body
    );
    assert_eq!(r.body["error"]["details"]["stored"], true, "{}", r.body);
    assert!(r.headers.get("x-audit-seq").is_none());
    r.headers["x-request-id"].to_str().unwrap().to_owned()
}

/// Whether the outbox is empty within a bounded wait (for a loaded machine).
async fn outbox_empties(gw: &TestGateway) -> bool {
    for _ in 0..100 {
        if gw.store.outbox_pending().await.unwrap().is_empty() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// A change that commits while the log cannot take its entry (here the
/// writer panics on the batch holding it) is answered 503 with
/// `details.stored`, and its entry is appended once the log recovers, by
/// the running gateway and not only at the next start: exactly one entry,
/// the change's, and its outbox row cleared (so the next start has nothing
/// to recover and appends nothing twice).
#[cfg(debug_assertions)]
#[tokio::test]
async fn a_change_whose_entry_failed_is_logged_once_the_log_recovers() {
    let (gw, audit) = gateway_and_log("late-entry").await;
    let before = audit_entries(&gw.store).await.len();
    audit.inject_writer_panic();
    let rid = submit_refused_by_the_log(&gw, "LATE-1").await;

    // No further traffic: the sequencer's probe finds the log writable and
    // the deferred entry is appended (bounded wait for a loaded machine).
    let mut logged = Vec::new();
    for _ in 0..100 {
        logged = audit_entries(&gw.store).await;
        if logged.iter().any(|e| e.request_id == rid) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mine: Vec<&AuditEntry> = logged.iter().filter(|e| e.request_id == rid).collect();
    assert_eq!(mine.len(), 1, "the stored change has no entry: {rid}");
    assert_eq!(
        (
            mine[0].action.as_str(),
            mine[0].outcome.as_str(),
            mine[0].status,
            mine[0].records
        ),
        ("submit_records", "ok", 201, 1)
    );
    assert_eq!(logged.len(), before + 1, "only the late entry was added");
    assert!(outbox_empties(&gw).await, "the outbox row of {rid} stays");
    let (_, metrics) = gw.admin_get("/metrics").await;
    assert!(
        metrics.contains("credgate_audit_late_appended_total 1\n"),
        "{metrics}"
    );
    assert!(metrics.contains("credgate_audit_late_waiting_entries 0\n"));

    drop(audit);
    gw.stop().await;
}

/// A commit reported as failed may have been durable all the same (a
/// PostgreSQL `COMMIT` whose answer was lost; here the writer panics after
/// its batch is written and synced): the stored change's entry is then in
/// the log already, and the running gateway must not append it a second
/// time when the log recovers.
#[cfg(debug_assertions)]
#[tokio::test]
async fn a_change_whose_failed_commit_was_durable_is_not_logged_twice() {
    let (gw, audit) = gateway_and_log("late-durable").await;
    audit.inject_writer_panic_after_commit();
    let rid = submit_refused_by_the_log(&gw, "LATE-2").await;
    // The deferred entry is resolved (found in the log) once the log
    // recovers: its outbox row goes.
    assert!(outbox_empties(&gw).await, "the outbox row of {rid} stays");
    let logged = audit_entries(&gw.store).await;
    assert_eq!(
        logged.iter().filter(|e| e.request_id == rid).count(),
        1,
        "the change's entry is in the log once"
    );
    let (_, metrics) = gw.admin_get("/metrics").await;
    assert!(
        metrics.contains("credgate_audit_late_appended_total 0\n"),
        "{metrics}"
    );
    drop(audit);
    gw.stop().await;
}

/// A panic on the audit writer's blocking thread (debug-only fault hook)
/// fails the batch it held closed; the sequencer reopens the writer, so the
/// next requests are served and logged again, and `/readyz` recovers.
#[cfg(debug_assertions)]
#[tokio::test]
async fn a_panicking_audit_writer_is_reopened_and_serving_resumes() {
    let (gw, audit) = gateway_and_log("writer-panic").await;
    let q = query(
        "legal_person",
        ids::CERAMICS,
        "financing",
        &["enterprise_name"],
    );
    let bank = gw.client("bank");
    assert_eq!(bank.post("/v1/query", &q).await.status, 200);
    let before = audit_entries(&gw.store).await.len();

    audit.inject_writer_panic();
    let r = bank.post("/v1/query", &q).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (503, Some("audit_unavailable")),
        "{}",
        r.body
    );
    // Not one restart: the next requests are served and audited. (The next
    // one reopens the writer; bounded retries only guard a loaded machine.)
    let mut served = 0;
    for _ in 0..100 {
        let r = bank.post("/v1/query", &q).await;
        if r.status == 200 {
            served += 1;
            if served == 3 {
                break;
            }
        } else {
            assert_eq!(r.body["error"]["code"], "audit_unavailable", "{}", r.body);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert_eq!(
        served, 3,
        "serving did not resume after the writer panicked"
    );
    let mut ready = false;
    for _ in 0..100 {
        if gw.admin_get("/readyz").await.0 == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "/readyz did not recover");
    // The log goes on without a gap: the failed request has no entry, the
    // three served after it have theirs, in sequence.
    let entries = audit_entries(&gw.store).await;
    assert_eq!(entries.len(), before + 3);
    assert!(
        entries[before..]
            .iter()
            .all(|e| e.action == "query" && e.outcome == "ok")
    );
    // The sequencer stops with its last handle.
    drop(audit);
    gw.stop().await;
}

/// A gateway closed without serving (`quickstart --no-serve` calls
/// `Gateway::close`) commits its entries, leaves the search index covering
/// the whole log and signs a checkpoint for it, on both stores. (Dropped
/// instead, it ended the runtime under the indexer: a "task … was
/// cancelled" warning, and an index and checkpoint behind the log.)
#[tokio::test]
async fn a_gateway_closed_without_serving_leaves_its_log_indexed_and_signed() {
    let dir = TempDir::new("close");
    let (url, pg) = test_database(&dir.0).await;
    let cfg = config(&dir.0, &url);
    let entry = |rid: String| AuditEntry {
        v: credgate::audit::ENTRY_VERSION,
        ts: "2026-12-01T08:00:00.000Z".into(),
        request_id: rid,
        gateway: cfg.server.gateway_id.clone(),
        org: Some(ids::BANK.into()),
        cert_fp: Some("ab".repeat(32)),
        action: "query".into(),
        subject_type: Some("legal_person".into()),
        subject: Some(format!("k1:{}", "cd".repeat(32))),
        purpose: Some("financing".into()),
        consent: None,
        fields: vec![],
        records: 0,
        status: 200,
        outcome: "ok".into(),
        policy: Some("0123456789abcdef0123456789abcdef".into()),
    };
    let gw = credgate::server::Gateway::build(&cfg).await.unwrap();
    {
        let app = gw.app();
        for i in 0..5 {
            app.audit
                .append(&entry(format!("r-close-{i}")))
                .await
                .unwrap();
        }
    }
    gw.close().await;
    let store = credgate::store::Store::connect_config(&cfg).await.unwrap();
    let (size, _) = store.log_head().await.unwrap();
    assert_eq!(size, 5);
    assert_eq!(
        store.index_pending(0).await.unwrap(),
        (5, 5),
        "the index covers the whole log"
    );
    let (signed, _) = store.checkpoint(None).await.unwrap().expect("a checkpoint");
    assert_eq!(signed, 5, "the last checkpoint signs the whole log");
    store.close().await;
    drop_test_database(pg).await;
}

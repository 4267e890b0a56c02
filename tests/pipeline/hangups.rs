//! Clients hanging up mid-request never leave records without entries (and the long drill).

use super::*;

async fn hang_up_drill(attempts: usize, per_batch: usize) {
    let gw = TestGateway::start().await;
    let cfg = tls_config("department", &[b"http/1.1"]);
    let kinds = [HangUp::Fin, HangUp::Rst, HangUp::CloseNotify];
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..attempts {
        let batch = i + 1;
        let records: Vec<Value> = (0..per_batch)
            .map(|r| {
                json!({"subject": {"type": "legal_person", "id": ids::CHEM},
                       "item": "admin_licence", "fields": {"licence_no": format!("H{batch}-{r}")}})
            })
            .collect();
        let body = json!({ "records": records }).to_string();
        let req = format!(
            "POST /v1/records HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let kind = kinds[i % 3];
        let delay = Duration::from_micros((i as u64 * 7919) % 10_000);
        let mut s = connect_tls(gw.addr, cfg.clone()).await;
        tasks.spawn(async move {
            s.write_all(req.as_bytes()).await.unwrap();
            s.flush().await.unwrap();
            tokio::time::sleep(delay).await;
            match kind {
                HangUp::CloseNotify => {
                    let _ = s.shutdown().await;
                }
                HangUp::Fin => {
                    let (mut tcp, _) = s.into_inner();
                    let _ = tcp.shutdown().await;
                }
                HangUp::Rst => {
                    let (tcp, _) = s.into_inner();
                    let _ = tcp.set_zero_linger();
                    drop(tcp);
                }
            }
        });
        // A few in flight at once, as a busy department would have.
        while tasks.len() >= 8 {
            tasks.join_next().await;
        }
    }
    while tasks.join_next().await.is_some() {}
    settle_at_least(&gw, attempts as u64).await;
    let stored: HashMap<String, i64> = gw
        .store
        .records_per_request()
        .await
        .unwrap()
        .into_iter()
        .collect();
    let entries = audit_entries(&gw.store).await;
    let mut by_request: HashMap<&str, Vec<&AuditEntry>> = HashMap::new();
    for e in &entries {
        by_request.entry(e.request_id.as_str()).or_default().push(e);
    }
    assert!(
        by_request.values().all(|v| v.len() == 1),
        "a request id with two entries"
    );
    // Every stored record has exactly one entry, an ok submission naming its count.
    let seeded = stored
        .keys()
        .filter(|k| !by_request.contains_key(k.as_str()))
        .count();
    assert!(
        seeded <= 1,
        "records without an audit entry: {seeded} request ids"
    );
    for (rid, n) in &stored {
        if let Some(es) = by_request.get(rid.as_str()) {
            let e = es[0];
            assert_eq!(
                (e.action.as_str(), e.outcome.as_str()),
                ("submit_records", "ok"),
                "{rid}"
            );
            assert_eq!(i64::from(e.records), *n, "{rid}");
        }
    }
    // Every ok submission entry has its records stored.
    let subs: Vec<&AuditEntry> = entries
        .iter()
        .filter(|e| e.action == "submit_records")
        .collect();
    for e in &subs {
        if e.outcome == "ok" {
            assert_eq!(
                stored.get(&e.request_id).copied(),
                Some(i64::from(e.records)),
                "{}",
                e.request_id
            );
        } else {
            assert!(!stored.contains_key(&e.request_id));
        }
    }
    // Each attempt is exactly one entry: its submission, or, where the
    // client's RST destroyed bytes the server had not read yet, the
    // incomplete request.
    let rest: Vec<&AuditEntry> = entries
        .iter()
        .filter(|e| e.action != "submit_records")
        .collect();
    assert!(
        rest.iter()
            .all(|e| e.action == "malformed_http" && e.outcome == "incomplete_request"),
        "{:?}",
        rest.iter()
            .map(|e| (&e.action, &e.outcome))
            .collect::<Vec<_>>()
    );
    assert_eq!(entries.len(), attempts, "one entry per attempt");
    assert!(
        subs.len() * 3 >= attempts * 2,
        "most submissions arrived whole: {}",
        subs.len()
    );
    gw.stop().await;
}

#[tokio::test]
async fn hang_ups_after_the_body_never_leave_records_without_entries() {
    hang_up_drill(300, 20).await;
}

#[tokio::test]
#[ignore = "long drill: cargo test --test pipeline -- --ignored (DRILL_HANGUPS=3000 for more)"]
async fn hang_up_drill_long() {
    let attempts = std::env::var("DRILL_HANGUPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(900);
    hang_up_drill(attempts, 200).await;
}

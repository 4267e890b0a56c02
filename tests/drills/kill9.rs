//! kill -9 under load, repeatedly: no acknowledged request lost, the log verifies.

use super::*;

/// Queries back to back on a keep-alive connection until the gateway dies.
/// Anything but 200 before `killing` is set is a failure.
async fn load_worker(addr: SocketAddr, who: &'static str, killing: Arc<AtomicBool>) -> LoadReport {
    let tls = tls_for(who);
    let body = query(
        "legal_person",
        ids::CERAMICS,
        "financing",
        &["enterprise_name", "penalty_content"],
    )
    .to_string();
    let mut report = LoadReport::default();
    let mut conn: Option<Sender> = None;
    loop {
        if conn.is_none() {
            match open(addr, &tls).await {
                Ok(s) => conn = Some(s),
                Err(e) => {
                    if killing.load(Ordering::SeqCst) {
                        return report;
                    }
                    report.failures.push(e);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let send = conn.as_mut().unwrap();
        match ask(send, "POST", "/v1/query", &body).await {
            Ok(a) if a.status == 200 => {
                let rid = a.header("x-request-id").expect("x-request-id");
                let seq = a.header("x-audit-seq").expect("x-audit-seq");
                report.acked.push((rid, seq.parse().unwrap()));
            }
            Ok(a) => report.failures.push(format!("status {}", a.status)),
            Err(e) => {
                conn = None;
                if killing.load(Ordering::SeqCst) {
                    return report;
                }
                report.failures.push(e);
            }
        }
    }
}

/// Repeated `kill -9` under load. After each kill the gateway restarts on
/// the same SQLite file and stops gracefully; `credgate audit export` and
/// `credgate audit verify` (chained with `--previous`, so every export must
/// extend the one before) check the log offline, and every acknowledged
/// request must be in it at the sequence number it was told. Entries of
/// requests that were committed but never acknowledged (in flight at the
/// kill) are allowed, at most one per client connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn kill_9_under_load_repeatedly_loses_no_acknowledged_request() {
    let _serial = SERIAL.lock().await;
    const WORKERS: usize = 8;
    let repeat = env_u64("DRILL_REPEAT", 3);
    let load = Duration::from_millis(env_u64("DRILL_LOAD_MS", 1000));
    let started = Instant::now();
    let dir = TempDir::new("drill-kill9");
    // SQLite on purpose, whatever CREDGATE_TEST_DATABASE_URL says: the
    // embedded store is the one whose fsync discipline this checks.
    let url = format!("sqlite://{}/credgate.db", dir.0.display());
    let base = config(&dir.0, &url);
    seed_sqlite(&url).await;
    let (addr, admin) = (free_addr(), free_addr());
    let cfg = write_config(&dir.0, &base, addr, admin, &url, |_| {});
    let log = dir.0.join("gateway.log");
    let key = verifier_key(&base);
    let mut previous: Option<PathBuf> = None;
    let mut total_acked = 0;

    for rep in 0..repeat {
        let t0 = Instant::now();
        let mut gw = Gateway::spawn(&cfg, admin, &log, false);
        gw.wait_ready().await;
        let killing = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| {
                let who = ["bank", "bank2", "agency", "department"][w % 4];
                tokio::spawn(load_worker(addr, who, killing.clone()))
            })
            .collect();
        tokio::time::sleep(load).await;
        killing.store(true, Ordering::SeqCst);
        gw.kill9();
        let mut acked = Vec::new();
        let mut failures = Vec::new();
        for w in workers {
            let r = w.await.unwrap();
            acked.extend(r.acked);
            failures.extend(r.failures);
        }
        assert!(
            failures.is_empty(),
            "rep {rep}: requests failed before the kill: {:?}\n{}",
            &failures[..failures.len().min(5)],
            gw.log_tail()
        );
        assert!(
            acked.len() >= 20,
            "rep {rep}: too little load before the kill ({} acknowledged)",
            acked.len()
        );

        // Restart on the same file, then a graceful stop (final checkpoint).
        let mut gw = Gateway::spawn(&cfg, admin, &log, false);
        gw.wait_ready().await;
        let status = gw.terminate();
        assert!(
            status.success(),
            "graceful stop: {status}\n{}",
            gw.log_tail()
        );

        let out = dir.0.join(format!("export-{rep}.jsonl"));
        let (header, entries) = export_and_verify(&cfg, &out, &key, previous.as_deref());
        let store = Store::connect(&url, 1).await.unwrap();
        let (size, _) = store.log_head().await.unwrap();
        store.close().await;
        assert_eq!(header["tree_size"].as_u64(), Some(size), "export = log");
        assert_eq!(entries.len() as u64, size);
        let by_rid: HashMap<&str, (u64, &AuditEntry)> = entries
            .iter()
            .map(|(seq, e)| (e.request_id.as_str(), (*seq, e)))
            .collect();
        for (rid, seq) in &acked {
            let Some((logged_seq, e)) = by_rid.get(rid.as_str()) else {
                panic!("rep {rep}: acknowledged request {rid} (seq {seq}) is not in the log");
            };
            assert_eq!(logged_seq, seq, "rep {rep}: {rid} logged at another seq");
            assert_eq!((e.action.as_str(), e.status), ("query", 200), "{rid}");
        }
        // Request ids carry a per-process prefix: this process's entries.
        let prefix = format!("{}-", acked[0].0.split('-').next().unwrap());
        let logged = entries
            .iter()
            .filter(|(_, e)| e.request_id.starts_with(&prefix))
            .count();
        let unacked = logged
            .checked_sub(acked.len())
            .expect("fewer entries than acknowledgements");
        assert!(
            unacked <= WORKERS,
            "rep {rep}: {unacked} entries without acknowledgement; at most {WORKERS} can be in flight"
        );
        assert!(
            entries.iter().all(|(_, e)| e.status < 500),
            "a 5xx was logged"
        );
        let note = dir.0.join(format!("checkpoint-{rep}.note"));
        std::fs::write(&note, header["checkpoint"].as_str().unwrap()).unwrap();
        previous = Some(note);
        total_acked += acked.len();
        eprintln!(
            "kill -9 #{}: {} acknowledged, {unacked} committed in flight, log {size} entries, export verified ({:.1} s)",
            rep + 1,
            acked.len(),
            t0.elapsed().as_secs_f64()
        );
    }
    eprintln!(
        "kill -9 drill: {repeat} kills, {total_acked} acknowledged, none lost ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
}

#[derive(Default)]
struct LoadReport {
    acked: Vec<(String, u64)>,
    failures: Vec<String>,
}

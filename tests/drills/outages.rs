//! Storage refusing writes (SQLite without file space, PostgreSQL read-only): fail closed, recover, nothing unaudited.

use super::*;

fn prlimit_fsize(pid: u32, limit: &str) {
    let status = Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg(format!("--fsize={limit}"))
        .status()
        .expect("prlimit(1) (util-linux) is needed for the SQLite storage drill");
    assert!(status.success(), "prlimit --fsize={limit} failed");
}

fn terminate_sessions(db: &str) -> String {
    format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}' AND pid <> pg_backend_pid()"
    )
}

async fn pg_admin(url: &str, statements: &[&str]) {
    let admin = Store::connect_admin(url).await.unwrap();
    for s in statements {
        admin.execute_raw(s).await.unwrap();
    }
    admin.close().await;
}

/// (records, log size), read by this process: the records table, and the
/// log's durable head (its files beside SQLite, or its PostgreSQL head row).
async fn counts(url: &str) -> (i64, i64) {
    if url.starts_with("postgres") {
        // Store::connect would migrate, which a read-only database refuses.
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let records = sqlx::query_scalar("SELECT COUNT(*) FROM records")
            .fetch_one(&pool)
            .await
            .unwrap();
        let size = sqlx::query_scalar("SELECT size FROM tlog_head WHERE id = 1")
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        return (records, size);
    }
    let store = Store::connect(url, 1).await.unwrap();
    let records = store.record_count().await.unwrap();
    let (size, _) = store.log_head().await.unwrap();
    store.close().await;
    (records, size as i64)
}

/// Fail closed while the database refuses writes, recover when it takes
/// them again: during the outage queries (which the gateway can still
/// read data for) and submissions get 503 `audit_unavailable` with no data,
/// `/readyz` is 503 with the reason, nothing is written; once writes are
/// possible `/readyz` turns ready again by itself (no traffic needed: a
/// load balancer sends none to a node that is not ready), service resumes
/// at the next sequence number and the log verifies offline.
async fn storage_outage_drill(url: &str, outage: Outage, dir: TempDir) {
    let started = Instant::now();
    let base = config(&dir.0, url);
    {
        let store = Store::connect(url, 1).await.unwrap();
        credgate::cli::seed(&store).await.unwrap();
        store.close().await;
    }
    let (addr, admin) = (free_addr(), free_addr());
    let cfg = write_config(&dir.0, &base, addr, admin, url, |_| {});
    let mut gw = Gateway::spawn(
        &cfg,
        admin,
        &dir.0.join("gateway.log"),
        matches!(outage, Outage::SqliteNoWrites),
    );
    gw.wait_ready().await;

    let q = query(
        "legal_person",
        ids::CERAMICS,
        "financing",
        &["enterprise_name", "penalty_content"],
    );
    let secret = "淄博鲁瓷陶瓷有限公司"; // the enterprise_name the query returns
    let before = ask_once(addr, "bank", "/v1/query", &q).await;
    assert_eq!(before.status, 200);
    assert!(String::from_utf8_lossy(&before.body).contains(secret));
    let submission = json!({"records": [{
        "subject": {"type": "legal_person", "id": ids::CHEM},
        "item": "admin_licence",
        "fields": {"licence_no": "JY13703030099999", "licence_name": "食品经营许可"}}]});
    let (records0, size0) = counts(url).await;

    outage.begin(gw.pid()).await;
    let mut refused = 0;
    for i in 0..6 {
        let (who, path, body) = if i % 3 == 2 {
            ("department", "/v1/records", &submission)
        } else {
            ("bank", "/v1/query", &q)
        };
        let a = ask_once(addr, who, path, body).await;
        let text = String::from_utf8_lossy(&a.body).into_owned();
        assert_eq!(
            (a.status, a.json()["error"]["code"].as_str()),
            (503, Some("audit_unavailable")),
            "{path} during the outage: {text}, x-audit-seq {:?}\n{}",
            a.header("x-audit-seq"),
            gw.log_tail()
        );
        assert!(
            !text.contains(secret),
            "data sent without an audit entry: {text}"
        );
        assert!(a.json().get("records").is_none() && a.json().get("decisions").is_none());
        assert!(
            a.header("x-audit-seq").is_none(),
            "no audit position without an entry"
        );
        refused += 1;
    }
    let (status, reason) = gw.admin_get("/readyz").await;
    assert_eq!(status, 503, "/readyz during the outage: {reason}");
    assert!(
        reason.contains("audit log write failed"),
        "/readyz reason: {reason}"
    );
    let (status, _) = gw.admin_get("/healthz").await;
    assert_eq!(status, 200, "alive, only not ready");
    let m = gw.admin_get("/metrics").await.1;
    assert!(metric(&m, "credgate_audit_unavailable_total").unwrap_or(0.0) >= refused as f64);
    assert_eq!(
        counts(url).await,
        (records0, size0),
        "nothing written during the outage"
    );

    outage.end(gw.pid()).await;
    // Readiness must come back without API traffic.
    let restored = Instant::now();
    let deadline = restored + Duration::from_secs(10);
    let ready_after = loop {
        let (status, body) = gw.admin_get("/readyz").await;
        if status == 200 {
            break Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "/readyz still {status} 10 s after the database took writes again (and no traffic): {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let recovery = ready_after - restored;
    let after = ask_once(addr, "bank", "/v1/query", &q).await;
    assert_eq!(after.status, 200, "{:?}", after.json());
    assert!(String::from_utf8_lossy(&after.body).contains(secret));
    assert_eq!(
        after.header("x-audit-seq"),
        Some(size0.to_string()),
        "the first entry after the outage follows the last one before it"
    );
    let sub = ask_once(addr, "department", "/v1/records", &submission).await;
    assert_eq!(sub.status, 201, "{:?}", sub.json());
    assert_eq!(counts(url).await, (records0 + 1, size0 + 2));

    let status = gw.terminate();
    assert!(
        status.success(),
        "graceful stop: {status}\n{}",
        gw.log_tail()
    );
    let (_, entries) = export_and_verify(
        &cfg,
        &dir.0.join("export.jsonl"),
        &verifier_key(&base),
        None,
    );
    assert_eq!(entries.len() as i64, size0 + 2);
    assert!(entries.iter().all(|(_, e)| e.status != 503));
    eprintln!(
        "storage outage ({}): {refused} requests refused with 503 audit_unavailable, /readyz 503, nothing written; \
         ready again {:?} after writes returned; log of {} entries verifies ({:.1} s)",
        match outage {
            Outage::SqliteNoWrites => "SQLite, writes fail with EFBIG",
            Outage::PostgresReadOnly { .. } => "PostgreSQL read-only",
        },
        recovery,
        entries.len(),
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn sqlite_refusing_writes_fails_closed_and_recovers() {
    let _serial = SERIAL.lock().await;
    let dir = TempDir::new("drill-nowrite");
    let url = format!("sqlite://{}/credgate.db", dir.0.display());
    storage_outage_drill(&url, Outage::SqliteNoWrites, dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn postgres_read_only_fails_closed_and_recovers() {
    let _serial = SERIAL.lock().await;
    let admin_url = std::env::var("CREDGATE_DRILL_PG_URL")
        .or_else(|_| std::env::var("CREDGATE_TEST_DATABASE_URL"))
        .ok()
        .filter(|u| u.starts_with("postgres"))
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into());
    // No PostgreSQL is a failure, never a pass: scripts/test.sh starts one.
    if let Err(e) = Store::connect_admin(&admin_url).await {
        panic!(
            "postgres_read_only_fails_closed_and_recovers needs PostgreSQL at {admin_url} ({e}); \
             scripts/test.sh starts one, or set CREDGATE_DRILL_PG_URL"
        );
    }
    static N: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        "credgate_drill_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    pg_admin(
        &admin_url,
        &[
            &format!("DROP DATABASE IF EXISTS {name}"),
            &format!("CREATE DATABASE {name}"),
        ],
    )
    .await;
    let _guard = PgDatabase {
        admin_url: admin_url.clone(),
        name: name.clone(),
    };
    let (prefix, _) = admin_url.rsplit_once('/').unwrap();
    let url = format!("{prefix}/{name}");
    storage_outage_drill(
        &url,
        Outage::PostgresReadOnly {
            admin_url: admin_url.clone(),
            db: name,
        },
        TempDir::new("drill-readonly"),
    )
    .await;
}

/// How the drill takes the database's writes away and gives them back.
enum Outage {
    /// SQLite: `prlimit --fsize=0` on the gateway process (started with
    /// SIGXFSZ ignored): every write(2) to a regular file then fails with
    /// EFBIG, as on a full disk, while reads work. That covers the audit
    /// log's write-ahead file and tiles as much as the database.
    SqliteNoWrites,
    /// PostgreSQL: `default_transaction_read_only` on the database and the
    /// gateway's sessions terminated, so it reconnects read-only.
    PostgresReadOnly { admin_url: String, db: String },
}

impl Outage {
    async fn begin(&self, pid: u32) {
        match self {
            Outage::SqliteNoWrites => prlimit_fsize(pid, "0:"),
            Outage::PostgresReadOnly { admin_url, db } => {
                pg_admin(
                    admin_url,
                    &[
                        &format!("ALTER DATABASE {db} SET default_transaction_read_only = on"),
                        &terminate_sessions(db),
                    ],
                )
                .await
            }
        }
    }

    async fn end(&self, pid: u32) {
        match self {
            Outage::SqliteNoWrites => prlimit_fsize(pid, "unlimited:"),
            Outage::PostgresReadOnly { admin_url, db } => {
                pg_admin(
                    admin_url,
                    &[
                        &format!("ALTER DATABASE {db} RESET default_transaction_read_only"),
                        &terminate_sessions(db),
                    ],
                )
                .await
            }
        }
    }
}

/// Drops the drill's PostgreSQL database, also when the drill fails.
struct PgDatabase {
    admin_url: String,
    name: String,
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        // A thread of its own: Drop may run inside the test's runtime.
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(pg_admin(
                    &url,
                    &[&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")],
                ))
        })
        .join();
    }
}

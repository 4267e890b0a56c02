//! The audit sequencer alone, on the embedded (file) backend.
//!
//! * `sequencer_fs/batch_N` — [`credlog::Sequencer`] over
//!   [`credlog::fs::FsWriter`]: integrate N canonical entries into the
//!   tiles in memory and make them durable with one `fdatasync` of the
//!   write-ahead file. No async, no channel: the core's ceiling.
//! * `audit_log/appenders_2048` — the gateway's [`AuditLog`]: 2,048
//!   concurrent appenders (as under request load), group commit with the
//!   default `max_batch` 512, each append returning once its entry is
//!   durable, exactly as a request waits before its response leaves.
//! * `latency/append_to_durable` — one appender at a time (low load): the
//!   time from `append` to durable, per entry.
//! * `sqlite_blob/batch_512` — the alternative that was measured against
//!   the WAL file: one SQLite transaction per batch (`synchronous=FULL`,
//!   WAL mode) writing the batch's bundle blob, level-0 tile blob and head
//!   row, i.e. what a SQLite-blob backend has to commit per batch.
//!
//! Run: `cargo bench --bench audit` (release). Criterion reports entries/s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use credgate::audit::{AuditEntry, AuditField, AuditLog, ENTRY_VERSION};
use credgate::store::Store;
use credlog::Sequencer;
use credlog::fs::FsLog;
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};

fn entry(i: usize) -> AuditEntry {
    AuditEntry {
        v: ENTRY_VERSION,
        ts: "2026-11-23T02:30:00.123Z".into(),
        request_id: format!("bench-{i:x}"),
        gateway: "credgate-bench".into(),
        org: Some("91370300164100001A".into()),
        cert_fp: Some("ab".repeat(32)),
        action: "query".into(),
        subject_type: Some("legal_person".into()),
        subject: Some(format!("{i:064x}")),
        purpose: Some("financing".into()),
        consent: None,
        fields: ["enterprise_name", "penalty_content", "tax_paid_annual"]
            .iter()
            .map(|f| AuditField {
                field: (*f).into(),
                decision: "returned".into(),
                reason: "authorised".into(),
                detail: None,
            })
            .collect(),
        records: 3,
        status: 200,
        outcome: "ok".into(),
        policy: Some("0123456789abcdef0123456789abcdef".into()),
    }
}

fn temp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "credgate-bench-audit-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn sequencer_alone(c: &mut Criterion) {
    let mut group = c.benchmark_group("sequencer_fs");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    for batch in [512usize, 4096] {
        let dir = temp(&format!("seq-{batch}"));
        let log = FsLog::open(&dir.join("log")).expect("log");
        let mut seq = Sequencer::open(log.writer().expect("writer")).expect("sequencer");
        let entries: Vec<Vec<u8>> = (0..batch).map(|i| entry(i).canonical()).collect();
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(format!("batch_{batch}"), |b| {
            b.iter(|| seq.append(&entries).expect("append"))
        });
        eprintln!(
            "sequencer_fs batch_{batch}: log of {} entries, {} bytes/entry canonical",
            seq.state().size(),
            entries[0].len()
        );
        drop(seq);
        let _ = std::fs::remove_dir_all(&dir);
    }
    group.finish();
}

fn gateway_log(c: &mut Criterion) {
    const ENTRIES: usize = 16_384;
    const APPENDERS: usize = 2048;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let entries: Arc<Vec<AuditEntry>> = Arc::new((0..ENTRIES).map(entry).collect());
    let dir = temp("log");
    let url = format!("sqlite://{}/bench.db", dir.display());
    let (log, task, store) = rt.block_on(async {
        let store = Store::connect(&url, 4).await.expect("store");
        let (log, task) = AuditLog::start(store.clone(), 512)
            .await
            .expect("sequencer");
        (log, task, store)
    });
    let mut group = c.benchmark_group("audit_log");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(ENTRIES as u64));
    group.bench_function(format!("appenders_{APPENDERS}"), |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let mut tasks = Vec::with_capacity(APPENDERS);
                    for a in 0..APPENDERS {
                        let log = log.clone();
                        let entries = entries.clone();
                        tasks.push(tokio::spawn(async move {
                            for e in entries.iter().skip(a).step_by(APPENDERS) {
                                log.append(e).await.expect("append");
                            }
                        }));
                    }
                    for t in tasks {
                        t.await.expect("appender");
                    }
                }
                start.elapsed()
            })
        })
    });
    group.finish();
    let h = log.health();
    let (batches, committed) = (
        h.batches.load(std::sync::atomic::Ordering::Relaxed),
        h.committed.load(std::sync::atomic::Ordering::Relaxed),
    );
    eprintln!(
        "audit_log: {committed} entries in {batches} commits ({:.1} entries/commit)",
        committed as f64 / batches.max(1) as f64
    );

    let mut group = c.benchmark_group("latency");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    let one = entry(7);
    group.bench_function("append_to_durable", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    log.append(&one).await.expect("append");
                }
                start.elapsed()
            })
        })
    });
    group.finish();
    drop(log);
    rt.block_on(async {
        let _ = task.await;
        store.close().await;
    });
    let _ = std::fs::remove_dir_all(&dir);
}

fn sqlite_blob(c: &mut Criterion) {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
    use std::str::FromStr;
    const BATCH: usize = 512;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = temp("blob");
    let url = format!("sqlite://{}/blob.db", dir.display());
    let pool = rt.block_on(async {
        let opts = SqliteConnectOptions::from_str(&url)
            .expect("url")
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full);
        let pool = sqlx::SqlitePool::connect_with(opts).await.expect("pool");
        for ddl in [
            "CREATE TABLE bundles (idx INTEGER PRIMARY KEY, data BLOB NOT NULL)",
            "CREATE TABLE tiles (level INTEGER, idx INTEGER, data BLOB NOT NULL, PRIMARY KEY (level, idx))",
            "CREATE TABLE head (id INTEGER PRIMARY KEY, size INTEGER, root BLOB)",
            "INSERT INTO head VALUES (1, 0, x'')",
        ] {
            sqlx::query(ddl).execute(&pool).await.expect("ddl");
        }
        pool
    });
    let entries: Vec<Vec<u8>> = (0..BATCH).map(|i| entry(i).canonical()).collect();
    let mut state = credlog::TreeState::new();
    let mut group = c.benchmark_group("sqlite_blob");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(BATCH as u64));
    group.bench_function(format!("batch_{BATCH}"), |b| {
        b.iter(|| {
            let done = state.integrate(&entries).expect("integrate");
            rt.block_on(async {
                let mut tx = pool.begin().await.expect("begin");
                for (i, bytes) in &done.full_bundles {
                    sqlx::query("INSERT OR REPLACE INTO bundles VALUES ($1, $2)")
                        .bind(*i as i64)
                        .bind(bytes.as_slice())
                        .execute(&mut *tx)
                        .await
                        .expect("bundle");
                }
                sqlx::query("INSERT OR REPLACE INTO bundles VALUES ($1, $2)")
                    .bind(state.bundle_index() as i64)
                    .bind(state.partial_bundle())
                    .execute(&mut *tx)
                    .await
                    .expect("partial bundle");
                for (id, hs) in state.edge_tiles() {
                    sqlx::query("INSERT OR REPLACE INTO tiles VALUES ($1, $2, $3)")
                        .bind(i64::from(id.level))
                        .bind(id.index as i64)
                        .bind(credlog::tiles::encode_tile(hs))
                        .execute(&mut *tx)
                        .await
                        .expect("tile");
                }
                sqlx::query("UPDATE head SET size = $1, root = $2 WHERE id = 1")
                    .bind(state.size() as i64)
                    .bind(state.root().to_vec())
                    .execute(&mut *tx)
                    .await
                    .expect("head");
                tx.commit().await.expect("commit");
            })
        })
    });
    group.finish();
    rt.block_on(pool.close());
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, sequencer_alone, gateway_log, sqlite_blob);
criterion_main!(benches);

//! Audited throughput of the audit sequencer on SQLite: many concurrent
//! appenders (as under request load), with group commit (`max_batch` 512,
//! the default) versus one commit — one WAL fsync — per entry
//! (`max_batch` 1). Each append returns only once its entry is durable,
//! exactly as a request waits before its response leaves.
//!
//! Run: `cargo bench --bench audit` (release). Criterion reports entries/s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use credgate::audit::{AuditEntry, AuditField, AuditLog, ENTRY_VERSION};
use credgate::store::Store;
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};

/// Entries appended per measured iteration.
const ENTRIES: usize = 2_000;
/// Concurrent appenders (in-flight requests).
const APPENDERS: usize = 64;

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
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let entries: Arc<Vec<AuditEntry>> = Arc::new((0..ENTRIES).map(entry).collect());
    let mut group = c.benchmark_group("audit_append_sqlite");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(ENTRIES as u64));
    for (name, max_batch) in [("group_commit", 512), ("commit_per_entry", 1)] {
        let dir = std::env::temp_dir().join(format!(
            "credgate-bench-audit-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let url = format!("sqlite://{}/bench.db", dir.display());
        let (log, task, store) = rt.block_on(async {
            let store = Store::connect(&url, 4).await.expect("store");
            let (log, task) = AuditLog::start(store.clone(), max_batch)
                .await
                .expect("sequencer");
            (log, task, store)
        });
        group.bench_function(name, |b| {
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
        let batches = log
            .health()
            .batches
            .load(std::sync::atomic::Ordering::Relaxed);
        let committed = log
            .health()
            .committed
            .load(std::sync::atomic::Ordering::Relaxed);
        eprintln!(
            "{name}: {committed} entries in {batches} commits ({:.1} entries/commit)",
            committed as f64 / batches.max(1) as f64
        );
        drop(log);
        rt.block_on(async {
            let _ = task.await;
            store.close().await;
        });
        let _ = std::fs::remove_dir_all(&dir);
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

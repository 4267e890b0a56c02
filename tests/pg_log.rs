//! The audit log's PostgreSQL rows (`src/store/tlog.rs`, migration 0010):
//! two writers on one database catch up on each other's batches and keep
//! one log whose tiles and bundles are exactly the reference bytes; a log
//! written in the layout before 0010 reads back the same after it and
//! keeps growing.
//!
//! Uses `CREDGATE_TEST_DATABASE_URL`, else
//! `postgres://postgres@127.0.0.1:5432/test`, and fails if it is not
//! reachable.

mod common;

use std::path::Path;

use credgate::audit::{AuditEntry, AuditField, AuditLog, ENTRY_VERSION, merkle};
use credgate::store::Store;
use credlog::tiles::{self, TileId};

async fn drop_pg(name: &str) {
    let admin = Store::connect_admin(&common::pg_base_url()).await.unwrap();
    let _ = admin
        .execute_raw(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await;
    admin.close().await;
}

fn entry(i: usize) -> AuditEntry {
    AuditEntry {
        v: ENTRY_VERSION,
        ts: "2026-11-23T02:30:00.123Z".into(),
        request_id: format!("pg-log-{i:x}"),
        gateway: "credgate-test".into(),
        org: Some("91370300164100001A".into()),
        cert_fp: Some("ab".repeat(32)),
        action: "query".into(),
        subject_type: Some("legal_person".into()),
        subject: Some(format!("{i:064x}")),
        purpose: Some("financing".into()),
        consent: None,
        fields: vec![AuditField {
            field: "enterprise_name".into(),
            decision: "returned".into(),
            reason: "authorised".into(),
            detail: None,
        }],
        records: 1,
        status: 200,
        outcome: "ok".into(),
        policy: Some("0123456789abcdef0123456789abcdef".into()),
    }
}

/// The log must hold exactly `log` (in order): head, every bundle and every
/// level-0 and level-1 tile, byte for byte, and the rows of the layout.
async fn assert_log_is(store: &Store, url: &str, log: &[Vec<u8>]) {
    let n = log.len();
    let leaves: Vec<_> = log.iter().map(|e| merkle::leaf_hash(e)).collect();
    let (size, root) = store.log_head().await.unwrap();
    assert_eq!(size, n as u64);
    assert_eq!(root, merkle::root_of(&leaves));
    for (i, chunk) in log.chunks(256).enumerate() {
        let i = i as u64;
        let bundle = store.read_bundle(i).await.unwrap();
        assert_eq!(
            bundle,
            Some(tiles::encode_bundle(chunk).unwrap()),
            "bundle {i}"
        );
        let tile = store
            .read_tile(TileId { level: 0, index: i })
            .await
            .unwrap();
        let want = tiles::encode_tile(&leaves[i as usize * 256..(i as usize * 256 + chunk.len())]);
        assert_eq!(tile, Some(want), "tile 0/{i}");
    }
    let level1: Vec<_> = leaves
        .chunks_exact(256)
        .map(merkle::root_of)
        .collect::<Vec<_>>();
    if !level1.is_empty() {
        let tile = store
            .read_tile(TileId { level: 1, index: 0 })
            .await
            .unwrap();
        assert_eq!(tile, Some(tiles::encode_tile(&level1)), "tile 1/0");
    }
    // Served the same way: the audit reads.
    let back = store.audit_range(0, n as u64).await.unwrap();
    assert_eq!(back.len(), n);
    assert!(back.iter().zip(log).all(|(a, e)| &a.entry == e));
    // The layout: batch rows only in the partial bundle, no partial bundle
    // or level-0 tile row.
    let partial = (n / 256) as i64;
    let sql = format!(
        "SELECT (SELECT COUNT(*) FROM tlog_batches WHERE first < {p}) \
         + (SELECT COUNT(*) FROM tlog_bundles WHERE idx >= {partial}) \
         + (SELECT COUNT(*) FROM tlog_tiles WHERE level = 0 AND idx >= {partial})",
        p = partial * 256
    );
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let stray: i64 = sqlx::query_scalar(&sql).fetch_one(&pool).await.unwrap();
    assert_eq!(stray, 0, "{sql}");
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_writers_on_one_database_keep_one_log() {
    let (url, name) = common::pg_test_database(&common::pg_base_url()).await;
    let a = Store::connect(&url, 4).await.unwrap();
    let b = Store::connect(&url, 4).await.unwrap();
    let (log_a, task_a) = AuditLog::start(a.clone(), 64).await.unwrap();
    let (log_b, task_b) = AuditLog::start(b.clone(), 64).await.unwrap();
    let logs = std::sync::Arc::new([log_a, log_b]);
    // Waves of concurrent appends through both writers: their batches
    // interleave, so each mostly finds the head moved by the other.
    let n = 1500;
    let mut seqs = vec![None; n];
    for wave in (0..n).collect::<Vec<_>>().chunks(100) {
        let tasks: Vec<_> = wave
            .iter()
            .map(|&i| {
                let logs = logs.clone();
                tokio::spawn(async move { (i, logs[i % 2].append(&entry(i)).await.unwrap()) })
            })
            .collect();
        for t in tasks {
            let (i, seq) = t.await.unwrap();
            seqs[i] = Some(seq as usize);
        }
    }
    drop(logs);
    task_a.await.unwrap();
    task_b.await.unwrap();
    let mut log = vec![Vec::new(); n];
    for (i, seq) in seqs.iter().enumerate() {
        let seq = seq.unwrap();
        assert!(log[seq].is_empty(), "seq {seq} twice");
        log[seq] = entry(i).canonical();
    }
    assert_log_is(&a, &url, &log).await;
    assert_log_is(&b, &url, &log).await;
    a.close().await;
    b.close().await;
    drop_pg(&name).await;
}

/// The rows the writer before migration 0010 left for `log`: full tiles
/// and bundles, and the partial bundle and edge tiles rewritten by each
/// batch.
async fn write_old_layout(pool: &sqlx::PgPool, log: &[Vec<u8>]) {
    let mut st = credlog::TreeState::new();
    let done = st.integrate(log).unwrap();
    let mut tx = pool.begin().await.unwrap();
    let tile_rows = done
        .full_tiles
        .iter()
        .map(|(id, hs)| (*id, tiles::encode_tile(hs)))
        .chain(st.edge_tiles().map(|(id, hs)| (id, tiles::encode_tile(hs))));
    for (id, data) in tile_rows {
        sqlx::query("INSERT INTO tlog_tiles (level, idx, data) VALUES ($1, $2, $3)")
            .bind(i16::from(id.level))
            .bind(id.index as i64)
            .bind(data)
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    let bundles = done
        .full_bundles
        .iter()
        .cloned()
        .chain([(st.bundle_index(), st.partial_bundle().to_vec())]);
    for (idx, data) in bundles {
        sqlx::query("INSERT INTO tlog_bundles (idx, data) VALUES ($1, $2)")
            .bind(idx as i64)
            .bind(data)
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    sqlx::query("UPDATE tlog_head SET size = $1, root = $2 WHERE id = 1")
        .bind(log.len() as i64)
        .bind(st.root().to_vec())
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_from_before_migration_0010_reads_the_same_and_grows() {
    let (url, name) = common::pg_test_database(&common::pg_base_url()).await;
    // The schema as the release before: migrations up to 0009.
    let dir = std::env::temp_dir().join(format!("credgate-pg-log-mig-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres");
    for f in std::fs::read_dir(&src).unwrap() {
        let f = f.unwrap().file_name();
        let f = f.to_str().unwrap();
        if f < "0010" {
            std::fs::copy(src.join(f), dir.join(f)).unwrap();
        }
    }
    let before = sqlx::migrate::Migrator::new(dir.as_path()).await.unwrap();
    assert_eq!(before.iter().map(|m| m.version).max(), Some(9));
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    before.run(&pool).await.unwrap();
    let mut log: Vec<Vec<u8>> = (0..300).map(|i| entry(i).canonical()).collect();
    write_old_layout(&pool, &log).await;
    pool.close().await;
    std::fs::remove_dir_all(&dir).unwrap();

    // This binary migrates it (0010) and reads the same bytes.
    let store = Store::connect(&url, 4).await.unwrap();
    assert_log_is(&store, &url, &log).await;
    // And appends after it, across the next bundle boundary.
    let (audit, task) = AuditLog::start(store.clone(), 64).await.unwrap();
    for i in 300..600 {
        assert_eq!(audit.append(&entry(i)).await.unwrap(), i as u64);
        log.push(entry(i).canonical());
    }
    drop(audit);
    task.await.unwrap();
    assert_log_is(&store, &url, &log).await;
    store.close().await;
    drop_pg(&name).await;
}

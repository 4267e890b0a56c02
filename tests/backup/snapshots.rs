//! The embedded log's snapshots under load and backups, and a backup taken while a snapshot is due.

use super::*;

/// A seeded SQLite gateway whose log snapshots every MiB
/// (`audit.wal_snapshot_mib = 1`): the gateway, its home (the store's
/// files), its configuration and its log directory.
async fn start_with_1mib_snapshots(tag: &str) -> (TestGateway, TempDir, Config, PathBuf) {
    let home = TempDir::new(tag);
    let url = format!("sqlite://{}/credgate.db", home.0.display());
    let mut cfg = config(&home.0, &url);
    cfg.audit.wal_snapshot_mib = Some(1);
    let log_dir = home.0.join("credgate.db.tlog");
    let gw =
        TestGateway::start_config(cfg.clone(), TempDir::new(&format!("{tag}-run")), None, true)
            .await;
    (gw, home, cfg, log_dir)
}

/// The WAL generation's base (the log size at its snapshot) from the
/// header of `<log dir>/wal`: `credwal1`, then a little-endian u64.
fn wal_base(log_dir: &Path) -> u64 {
    let head = std::fs::read(log_dir.join("wal")).unwrap();
    assert_eq!(&head[..8], b"credwal1");
    u64::from_le_bytes(head[8..16].try_into().unwrap())
}

/// The embedded log with a 1 MiB snapshot threshold
/// (`audit.wal_snapshot_mib = 1`) crosses several snapshots under query
/// load over real mTLS while backups are taken: every answered request's
/// entry is in the log exactly once, each backup restores and verifies,
/// the gateway restarts on the same files with the same head, and the
/// export of the whole log passes `credgate audit verify`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_embedded_log_crosses_snapshots_under_load_and_backups() {
    let (gw, _home, cfg, log_dir) = start_with_1mib_snapshots("snap").await;
    let key = gw.verifier_key.clone();
    let work = TempDir::new("snap-out");
    let before = gw.store.log_head().await.unwrap().0;

    // 8 connections of 450 queries (about 3.6 MiB of entries) while a
    // backup is taken every 150 ms.
    let gw = Arc::new(gw);
    let load: Vec<_> = (0..8)
        .map(|_| {
            let gw = gw.clone();
            tokio::spawn(async move { keep_alive_queries(&gw, "bank", 450).await })
        })
        .collect();
    let mut backups = Vec::new();
    while !load.iter().all(|t| t.is_finished()) && backups.len() < 40 {
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        let out = work.0.join(format!("b{}.credgate-backup", backups.len()));
        let m = backup::create(&gw.config, &out).await.unwrap().manifest;
        backups.push((out, m.tree_size));
    }
    let mut answered = Vec::new();
    for t in load {
        answered.extend(t.await.unwrap());
    }
    assert!(answered.iter().all(|(s, _)| *s == 200));
    assert_eq!(answered.len(), 8 * 450);

    let (size, root) = gw.store.log_head().await.unwrap();
    let entries = audit_entries(&gw.store).await;
    assert_eq!(entries.len() as u64, size);
    let mut seen: std::collections::HashMap<&str, usize> = Default::default();
    for e in &entries[before as usize..] {
        *seen.entry(e.request_id.as_str()).or_default() += 1;
    }
    for (_, id) in &answered {
        assert_eq!(seen.get(id.as_str()), Some(&1), "request {id}");
    }
    // A search across every bundle reads back exactly the bank's entries.
    let found = gw
        .store
        .audit_query(&credgate::store::AuditQuery {
            org: Some(ids::BANK.into()),
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap();
    let banks: Vec<(u64, &credgate::audit::AuditEntry)> = (0u64..)
        .zip(&entries)
        .filter(|(_, e)| e.org.as_deref() == Some(ids::BANK))
        .collect();
    assert!(banks.len() > 3_000);
    assert_eq!(found.len(), banks.len());
    for (f, (seq, e)) in found.iter().zip(&banks) {
        assert_eq!(f.seq, *seq);
        assert_eq!(credgate::audit::AuditEntry::parse(&f.entry).unwrap(), **e);
    }
    // Several generations: the current one began past two thresholds' worth
    // of entries.
    let mean = entries.iter().map(|e| e.canonical().len()).sum::<usize>() / entries.len();
    let base = wal_base(&log_dir);
    assert!(
        base as usize * mean >= 2 << 20,
        "base {base}, mean entry {mean} bytes: fewer than two snapshots"
    );

    // Each backup restores into a store that verifies (the restore checks
    // the log against its checkpoint).
    assert!(backups.len() >= 3, "only {} backups", backups.len());
    for (i, (file, tree_size)) in backups.iter().enumerate() {
        let to = work.0.join(format!("r{i}"));
        let rep = backup::restore(&RestoreOptions {
            from: file.clone(),
            to: to.clone(),
            keys: vec![key.clone()],
            not_before: vec![],
            replace: false,
        })
        .await
        .unwrap_or_else(|e| panic!("backup {i} (tree size {tree_size}): {e}"));
        assert_eq!(rep.manifest.tree_size, *tree_size);
    }

    // A restart on the same files: the same head, and it goes on.
    let gw = Arc::into_inner(gw).expect("load tasks are done");
    gw.stop().await;
    let gw = TestGateway::start_config(cfg, TempDir::new("snap-run2"), None, false).await;
    assert_eq!(gw.store.log_head().await.unwrap(), (size, root));
    let more = keep_alive_queries(&gw, "bank", 5).await;
    assert!(more.iter().all(|(s, _)| *s == 200));
    let _ = checkpoint_now(&gw).await;
    let file = work.0.join("all.jsonl");
    export(&gw.store, &file).await;
    let (ok, out) = verify_cli(&file, &[&key], None);
    assert!(ok, "{out}");
    assert!(out.contains(&format!("{} entries", size + 5)), "{out}");
    gw.stop().await;
}

/// A backup taken while a snapshot of the embedded log is under way —
/// `state` behind, `wal.prev` bridging it to the current write-ahead file —
/// holds `wal.prev` too: it restores into a log that verifies, with every
/// entry. (Snapshots are held unfinished with the debug-build hook
/// `Store::hold_log_snapshots`; without it one is due for milliseconds.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_taken_while_a_snapshot_is_due_restores_and_verifies() {
    let (gw, _home, _, log_dir) = start_with_1mib_snapshots("snap-due").await;
    let work = TempDir::new("snap-due-out");
    gw.store.hold_log_snapshots(true);
    let mut rounds = 0;
    while !(log_dir.join("wal.prev").exists() && wal_base(&log_dir) > 0) {
        assert!(rounds < 40, "no snapshot began after {rounds} rounds");
        let r = keep_alive_queries(&gw, "bank", 100).await;
        assert!(r.iter().all(|(s, _)| *s == 200));
        rounds += 1;
    }
    // More entries in the new generation, past the snapshot's start.
    keep_alive_queries(&gw, "bank", 20).await;
    assert!(log_dir.join("wal.prev").exists(), "the snapshot finished");
    let note = checkpoint_now(&gw).await;
    let (size, root) = gw.store.log_head().await.unwrap();
    assert_eq!(credgate::backup::note_size(&note), Some(size));
    let file = work.0.join("due.credgate-backup");
    let m = backup::create(&gw.config, &file).await.unwrap().manifest;
    assert_eq!(
        (m.tree_size, m.root.clone()),
        (size, credlog::export::encode_hash(&root))
    );
    gw.store.hold_log_snapshots(false);

    let to = work.0.join("restored");
    let rep = backup::restore(&RestoreOptions {
        from: file,
        to: to.clone(),
        keys: vec![gw.verifier_key.clone()],
        not_before: vec![],
        replace: false,
    })
    .await
    .unwrap();
    assert_eq!(rep.manifest.checkpoint_size, Some(size));
    let restored = Store::connect_with_log(
        &format!("sqlite://{}", to.join("credgate.db").display()),
        2,
        Some(&to.join("credgate.db.tlog")),
    )
    .await
    .unwrap();
    assert_eq!(restored.log_head().await.unwrap(), (size, root));
    assert_eq!(
        audit_entries(&restored).await.len() as u64,
        size,
        "every entry readable from the restored files"
    );
    restored.close().await;

    // Released, the next batches finish the snapshot.
    let mut rounds = 0;
    while log_dir.join("wal.prev").exists() {
        assert!(rounds < 50, "the released snapshot never finished");
        keep_alive_queries(&gw, "bank", 1).await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        rounds += 1;
    }
    gw.stop().await;
}

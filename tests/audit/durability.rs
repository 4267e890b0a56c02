//! Durability: acknowledged queries survive kill -9 of the gateway.

use super::*;

/// Start the real binary, drive concurrent queries, SIGKILL it mid-load,
/// restart it, and check that every acknowledged query is in the log, the
/// log is contiguous, the tree recomputed from all leaves matches the stored
/// head and every checkpoint verifies. Ignored by default (it spawns
/// processes and takes a few seconds); CI runs it with `--ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn acknowledged_queries_survive_kill_9() {
    let dir = TempDir::new("kill9");
    let (url, pg_db) = test_database(&dir.0).await;
    let cfg = config(&dir.0, &url);
    let (port, admin_port) = (free_port(), free_port());
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let cfg_path = write_config(
        &dir.0,
        &cfg,
        &addr.to_string(),
        &format!("127.0.0.1:{admin_port}"),
    );
    let log = std::fs::File::create(dir.0.join("gateway.log")).unwrap();
    let spawn = || {
        Command::new(bin())
            .args(["serve", "--config"])
            .arg(&cfg_path)
            .stdout(std::process::Stdio::null())
            .stderr(log.try_clone().unwrap())
            .spawn()
            .unwrap()
    };
    let mut child = spawn();
    wait_ready(addr).await;

    // Load: 12 workers, each sending queries back to back.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..12 {
        let stop = stop.clone();
        workers.push(tokio::spawn(async move {
            let who = ["bank", "bank2", "agency", "department"][w % 4];
            let body = query(
                "legal_person",
                ids::CERAMICS,
                "financing",
                &["enterprise_name"],
            );
            let mut acked = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match raw(
                    addr,
                    who,
                    "POST",
                    "/v1/query",
                    Some(body.to_string().into_bytes()),
                )
                .await
                {
                    Ok(r) if r.status < 500 => {
                        let seq: u64 = r.headers["x-audit-seq"].to_str().unwrap().parse().unwrap();
                        let rid = r.headers["x-request-id"].to_str().unwrap().to_owned();
                        acked.push((seq, rid));
                    }
                    Ok(r) => panic!("5xx under load: {}", r.status),
                    Err(_) => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
                }
            }
            acked
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut acked = Vec::new();
    for w in workers {
        acked.extend(w.await.unwrap());
    }
    assert!(
        acked.len() > 20,
        "too little load before the kill: {}",
        acked.len()
    );

    // Restart: the log continues where it stopped.
    let mut child = spawn();
    wait_ready(addr).await;
    for _ in 0..5 {
        let r = raw(
            addr,
            "bank",
            "POST",
            "/v1/query",
            Some(
                query("legal_person", ids::CHEM, "financing", &["enterprise_name"])
                    .to_string()
                    .into_bytes(),
            ),
        )
        .await
        .unwrap();
        assert_eq!(r.status, 200);
        let seq: u64 = r.headers["x-audit-seq"].to_str().unwrap().parse().unwrap();
        acked.push((seq, r.headers["x-request-id"].to_str().unwrap().to_owned()));
    }
    // Graceful stop this time: it writes a final checkpoint.
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    assert!(child.wait().unwrap().success());

    let store = Store::connect(&url, 2).await.unwrap();
    let (size, head_root) = store.log_head().await.unwrap();
    let rows = store.audit_leaves(0, size + 10).await.unwrap();
    assert_eq!(rows.len() as u64, size, "rows beyond the head or missing");
    let mut leaves = Vec::with_capacity(rows.len());
    let mut by_seq = HashMap::new();
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r.seq, i as u64, "seqs are contiguous");
        let leaf = merkle::leaf_hash(&r.entry);
        assert_eq!(r.leaf, leaf.to_vec(), "stored leaf hash of seq {i}");
        leaves.push(leaf);
        by_seq.insert(r.seq, AuditEntry::parse(&r.entry).unwrap().request_id);
    }
    for (seq, rid) in &acked {
        assert_eq!(
            by_seq.get(seq),
            Some(rid),
            "acknowledged seq {seq} lost or different"
        );
    }
    assert_eq!(
        merkle::root_of(&leaves),
        head_root,
        "tree recomputed from all leaves"
    );
    let verifier = CheckpointVerifier::from_verifier_key(
        &CheckpointSigner::from_pkcs8(
            &cfg.audit.origin,
            &std::fs::read(&cfg.audit.checkpoint_key_file).unwrap(),
        )
        .unwrap()
        .verifier_key(),
    )
    .unwrap();
    let sizes = store.checkpoint_sizes().await.unwrap();
    assert!(sizes.contains(&size), "final checkpoint at the head");
    for s in sizes {
        let (_, note) = store.checkpoint(Some(s)).await.unwrap().unwrap();
        let cp = verifier.verify(&note).unwrap();
        assert_eq!(cp.size, s);
        assert_eq!(
            cp.root,
            merkle::root_of(&leaves[..s as usize]),
            "checkpoint {s}"
        );
    }
    eprintln!(
        "kill -9: {} acknowledged, log size {size}, root {}",
        acked.len(),
        encode_hash(&head_root)
    );
    store.close().await;
    drop_test_database(pg_db).await;
}

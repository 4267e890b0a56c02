//! Verification without trusting the operator: proofs against signed checkpoints, a rewritten database caught, offline export verification with every tampering named, co-signed checkpoints during a key rotation, and a checkpoint from the first entry on.

use super::*;

#[tokio::test]
async fn proofs_verify_against_signed_checkpoints() {
    let gw = TestGateway::start().await;
    for i in 0..13 {
        let id = if i % 2 == 0 { ids::CERAMICS } else { ids::CHEM };
        bank_query(&gw, "bank", "legal_person", id).await;
    }
    let (size1, _) = checkpoint_now(&gw).await;
    assert_eq!(size1, 13);

    // The published checkpoint and key.
    let r = raw(gw.addr, "auditor", "GET", "/v1/audit/checkpoint", None)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["verifier_key"], gw.verifier_key);
    let verifier = CheckpointVerifier::from_verifier_key(&gw.verifier_key).unwrap();
    let cp1 = verifier.verify(v["checkpoint"].as_str().unwrap()).unwrap();
    assert_eq!((cp1.size, v["tree_size"].as_u64()), (13, Some(13)));

    for seq in 0..size1 {
        let r = post(
            &gw,
            "auditor",
            "/v1/audit/proof/inclusion",
            json!({"seq": seq, "tree_size": size1}),
        )
        .await;
        let v = r.json();
        assert_eq!(r.status, 200, "{v}");
        let note = verifier.verify(v["checkpoint"].as_str().unwrap()).unwrap();
        assert_eq!(note, cp1);
        let entry = v["entry"].as_str().unwrap();
        assert!(AuditEntry::parse(entry.as_bytes()).is_ok());
        let proof = hashes(&v["proof"]);
        assert_eq!(
            merkle::verify_inclusion(
                &merkle::leaf_hash(entry.as_bytes()),
                seq,
                size1,
                &proof,
                &cp1.root
            ),
            Ok(()),
            "seq {seq}"
        );
        // A proof for another entry does not fit this one.
        if seq > 0 {
            assert!(
                merkle::verify_inclusion(
                    &merkle::leaf_hash(b"forged"),
                    seq,
                    size1,
                    &proof,
                    &cp1.root
                )
                .is_err()
            );
        }
    }
    // Default: the latest checkpoint.
    let r = post(
        &gw,
        "auditor",
        "/v1/audit/proof/inclusion",
        json!({"seq": 3}),
    )
    .await;
    let v = r.json();
    assert!(v["tree_size"].as_u64().unwrap() >= size1);
    let cp = verifier.verify(v["checkpoint"].as_str().unwrap()).unwrap();
    assert_eq!(
        merkle::verify_inclusion(
            &merkle::leaf_hash(v["entry"].as_str().unwrap().as_bytes()),
            3,
            cp.size,
            &hashes(&v["proof"]),
            &cp.root
        ),
        Ok(())
    );

    // The log grows; the new checkpoint extends the old one.
    for _ in 0..7 {
        bank_query(&gw, "bank2", "legal_person", ids::CHEM).await;
    }
    let (size2, note2) = checkpoint_now(&gw).await;
    let cp2 = verifier.verify(&note2).unwrap();
    assert!(size2 > size1);
    let r = post(
        &gw,
        "auditor",
        "/v1/audit/proof/consistency",
        json!({"old_size": size1, "new_size": size2}),
    )
    .await;
    let v = r.json();
    assert_eq!(r.status, 200, "{v}");
    assert_eq!(
        verifier
            .verify(v["old_checkpoint"].as_str().unwrap())
            .unwrap(),
        cp1
    );
    assert_eq!(
        verifier
            .verify(v["new_checkpoint"].as_str().unwrap())
            .unwrap(),
        cp2
    );
    let proof = hashes(&v["proof"]);
    assert_eq!(
        merkle::verify_consistency(size1, size2, &cp1.root, &cp2.root, &proof),
        Ok(())
    );
    // Against a forged old head (the operator's story of a different past).
    let forged = merkle::leaf_hash(b"another history");
    assert!(merkle::verify_consistency(size1, size2, &forged, &cp2.root, &proof).is_err());
    // Every consistency proof between stored checkpoints verifies.
    let sizes = gw.store.checkpoint_sizes().await.unwrap();
    for (i, &a) in sizes.iter().enumerate() {
        for &b in &sizes[i..] {
            let v = post(
                &gw,
                "auditor",
                "/v1/audit/proof/consistency",
                json!({"old_size": a, "new_size": b}),
            )
            .await
            .json();
            let ca = verifier
                .verify(v["old_checkpoint"].as_str().unwrap())
                .unwrap();
            let cb = verifier
                .verify(v["new_checkpoint"].as_str().unwrap())
                .unwrap();
            assert_eq!(
                merkle::verify_consistency(a, b, &ca.root, &cb.root, &hashes(&v["proof"])),
                Ok(()),
                "{a} -> {b}"
            );
        }
    }
    gw.stop().await;
}

#[tokio::test]
async fn an_operator_rewriting_the_database_is_caught() {
    let gw = TestGateway::start().await;
    // Enough entries that seq 4 lies in a full entry bundle, the immutable
    // kind an operator could edit at rest.
    for _ in 0..260 {
        bank_query(&gw, "bank", "legal_person", ids::CERAMICS).await;
    }
    let (size, note) = checkpoint_now(&gw).await;
    let verifier = CheckpointVerifier::from_verifier_key(&gw.verifier_key).unwrap();
    let cp = verifier.verify(&note).unwrap();
    // Export before tampering: it verifies.
    let dir = TempDir::new("tamper-db");
    let body = json!({"tree_size": size});
    let before = post(&gw, "auditor", "/v1/audit/export", body.clone()).await;
    assert_eq!(before.status, 200);
    let f = dir.0.join("before.jsonl");
    std::fs::write(&f, &before.bytes).unwrap();
    let (ok, out) = verify_cli(&f, &gw.verifier_key, None);
    assert!(ok, "{out}");

    // The operator hides who made query 4: they rewrite entry 4 inside the
    // stored bundle (a file of the log directory, or its PostgreSQL row) and
    // leave the hash tiles alone (rewriting those too changes the root, see
    // the consistency tests).
    let bundle = gw.store.read_bundle(0).await.unwrap().unwrap();
    let mut entries: Vec<Vec<u8>> = credlog::tiles::decode_bundle(&bundle)
        .unwrap()
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect();
    assert_eq!(entries.len(), 256, "bundle 0 is full");
    let text = String::from_utf8(entries[4].clone()).unwrap();
    assert!(text.contains(ids::BANK));
    entries[4] = text.replace(ids::BANK, ids::BANK2).into_bytes();
    let forged = credlog::tiles::encode_bundle(&entries).unwrap();
    match gw.store.log_dir() {
        Some(dir) => std::fs::write(dir.join("tile/entries/000"), &forged).unwrap(),
        None => {
            let sql = format!(
                "UPDATE tlog_bundles SET data = '\\x{}' WHERE idx = 0",
                hex::encode(&forged)
            );
            assert_eq!(gw.store.execute_raw(&sql).await.unwrap(), 1);
        }
    }
    let rewritten = audit_entries(&gw.store).await;
    assert_eq!(rewritten[4].org.as_deref(), Some(ids::BANK2));

    for seq in 0..size.min(16) {
        let v = post(
            &gw,
            "auditor",
            "/v1/audit/proof/inclusion",
            json!({"seq": seq, "tree_size": size}),
        )
        .await
        .json();
        let leaf = merkle::leaf_hash(v["entry"].as_str().unwrap().as_bytes());
        let res = merkle::verify_inclusion(&leaf, seq, size, &hashes(&v["proof"]), &cp.root);
        assert_eq!(res.is_ok(), seq != 4, "seq {seq}: {res:?}");
    }
    // And the offline verifier names the rewritten entry.
    let after = post(&gw, "auditor", "/v1/audit/export", body).await;
    let f = dir.0.join("after.jsonl");
    std::fs::write(&f, &after.bytes).unwrap();
    let (ok, out) = verify_cli(&f, &gw.verifier_key, None);
    assert!(!ok);
    assert!(out.contains("line 6 (seq 4)"), "{out}");
    gw.stop().await;
}

#[tokio::test]
async fn exports_verify_offline_and_every_tampering_is_named() {
    let gw = TestGateway::start().await;
    for i in 0..10 {
        let who = if i % 3 == 0 { "bank2" } else { "bank" };
        bank_query(&gw, who, "legal_person", ids::CERAMICS).await;
    }
    let (size1, note1) = checkpoint_now(&gw).await;
    let dir = TempDir::new("export");
    let key = gw.verifier_key.clone();
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.0.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let prev = write("prev.note", note1.as_bytes());

    // More traffic, a newer checkpoint.
    for _ in 0..6 {
        bank_query(&gw, "bank", "legal_person", ids::CHEM).await;
    }
    let (size2, _) = checkpoint_now(&gw).await;

    for format in ["jsonl", "csv"] {
        let r = post(
            &gw,
            "auditor",
            "/v1/audit/export",
            json!({"format": format, "tree_size": size2}),
        )
        .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.bytes));
        let ctype = r.headers["content-type"].to_str().unwrap();
        assert!(ctype.contains(if format == "csv" { "csv" } else { "ndjson" }));
        let text = String::from_utf8(r.bytes.to_vec()).unwrap();
        let hdr = if format == "csv" { 2 } else { 1 };
        assert_eq!(text.lines().count() as u64, hdr as u64 + size2);
        let good = write(&format!("good.{format}"), text.as_bytes());
        let (ok, out) = verify_cli(&good, &key, None);
        assert!(ok, "{format}: {out}");
        assert!(out.contains(&format!("{size2} entries")), "{out}");
        // Consistent with the checkpoint saved before the log grew.
        let (ok, out) = verify_cli(&good, &key, Some(&prev));
        assert!(ok, "{out}");
        assert!(
            out.contains(&format!(
                "consistent with the previous checkpoint at tree size {size1}"
            )),
            "{out}"
        );

        // The line holding seq s.
        let line = |s: u64| hdr + 1 + s as usize;
        let cases: Vec<(&str, String, String)> = vec![
            (
                "flip one byte of an entry",
                edit(&text, |l| {
                    let i = line(3) - 1;
                    let pos = l[i].find("financing").unwrap();
                    let mut b = l[i].clone().into_bytes();
                    b[pos] ^= 0x01;
                    l[i] = String::from_utf8(b).unwrap();
                }),
                format!("line {} (seq 3)", line(3)),
            ),
            (
                "delete an entry",
                edit(&text, |l| {
                    l.remove(line(5) - 1);
                }),
                format!("line {} (seq 5)", line(5)),
            ),
            (
                "swap two entries",
                edit(&text, |l| l.swap(line(2) - 1, line(7) - 1)),
                format!("line {} (seq 2)", line(2)),
            ),
            (
                "truncate the tail",
                edit(&text, |l| l.truncate(line(size2 - 3))),
                format!("line {} (seq {})", line(size2 - 2), size2 - 2),
            ),
            (
                "replace the checkpoint with one signed by another key",
                {
                    let other = CheckpointSigner::from_pkcs8(
                        &gw.config.audit.origin,
                        &CheckpointSigner::generate_pkcs8().unwrap(),
                    )
                    .unwrap();
                    let cp = CheckpointVerifier::from_verifier_key(&key)
                        .unwrap()
                        .verify(&first_note(&text, format))
                        .unwrap();
                    let forged = other.sign(&cp).unwrap();
                    replace_note(&text, format, &forged)
                },
                format!("line {hdr}:"),
            ),
            (
                "alter the checkpoint",
                {
                    let note = first_note(&text, format);
                    let altered =
                        note.replacen(&format!("\n{size2}\n"), &format!("\n{}\n", size2 + 1), 1);
                    assert_ne!(altered, note);
                    replace_note(&text, format, &altered)
                },
                format!("line {hdr}:"),
            ),
        ];
        for (what, tampered, position) in cases {
            assert_ne!(tampered, text, "{what}");
            let p = write(&format!("tampered.{format}"), tampered.as_bytes());
            let (ok, out) = verify_cli(&p, &key, None);
            assert!(!ok, "{format}: {what} went unnoticed: {out}");
            assert!(
                out.contains(&position),
                "{format}: {what}: want '{position}' in: {out}"
            );
        }

        // A forged earlier checkpoint — even one signed with the real key,
        // as an operator rewriting history would — is not a prefix.
        let signer = signer_of(&gw);
        let forged = signer
            .sign(&Checkpoint {
                origin: gw.config.audit.origin.clone(),
                size: size1,
                root: merkle::leaf_hash(b"a different past"),
            })
            .unwrap();
        let forged = write("forged.note", forged.as_bytes());
        let (ok, out) = verify_cli(&good, &key, Some(&forged));
        assert!(!ok);
        assert!(out.contains("NOT consistent"), "{out}");
    }

    // A partial export carries a consistency proof on request.
    let r = post(
        &gw,
        "auditor",
        "/v1/audit/export",
        json!({"from_seq": size1 + 1, "to_seq": size2, "tree_size": size2, "consistency_from": size1}),
    )
    .await;
    let part = write("part.jsonl", &r.bytes);
    let (ok, out) = verify_cli(&part, &key, Some(&prev));
    assert!(ok, "{out}");
    let r = post(
        &gw,
        "auditor",
        "/v1/audit/export",
        json!({"from_seq": size1 + 1, "to_seq": size2, "tree_size": size2}),
    )
    .await;
    let part = write("part2.jsonl", &r.bytes);
    assert!(verify_cli(&part, &key, None).0);
    let (ok, out) = verify_cli(&part, &key, Some(&prev));
    assert!(!ok && out.contains("cannot check consistency"), "{out}");

    // By time range: the whole history so far.
    let r = post(
        &gw,
        "auditor",
        "/v1/audit/export",
        json!({"from": "2000-01-01T00:00:00Z", "to": "2999-01-01T00:00:00Z", "tree_size": size2}),
    )
    .await;
    let text = String::from_utf8(r.bytes.to_vec()).unwrap();
    let header: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(
        (header["start"].as_u64(), header["end"].as_u64()),
        (Some(0), Some(size2))
    );

    // The operator's export straight from the store verifies too.
    let cfg_path = write_config(&dir.0, &gw.config, "127.0.0.1:1", "127.0.0.1:2");
    let out_path = dir.0.join("store-export.csv");
    let mut cmd = Command::new(bin());
    cmd.args(["audit", "export", "--config"])
        .arg(&cfg_path)
        .arg("--out")
        .arg(&out_path)
        .args(["--format", "csv"]);
    let out = output(cmd).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (ok, out) = verify_cli(&out_path, &key, Some(&prev));
    assert!(ok, "{out}");
    gw.stop().await;
}

/// A checkpoint key rotation with co-signing
/// (`audit.checkpoint_cosign_key_files`): the gateway signs every
/// checkpoint with the new key and the previous one, so an auditor pinned
/// to either verifies the served checkpoint.
/// A co-signer that is the signing key itself, or a missing file, is
/// refused before anything starts.
#[tokio::test]
async fn checkpoints_are_co_signed_by_the_previous_key_during_a_rotation() {
    let keys = TempDir::new("cosign");
    let previous = keys.0.join("checkpoint-2026.key");
    std::fs::write(&previous, CheckpointSigner::generate_pkcs8().unwrap()).unwrap();
    let gw = TestGateway::start_with(
        |c| c.audit.checkpoint_cosign_key_files = vec![previous.clone()],
        true,
    )
    .await;
    let old =
        CheckpointSigner::from_pkcs8(&gw.config.audit.origin, &std::fs::read(&previous).unwrap())
            .unwrap();
    assert_eq!(
        bank_query(&gw, "bank", "legal_person", ids::CERAMICS)
            .await
            .status,
        200
    );
    let (size, _) = gw.store.log_head().await.unwrap();
    let note = served_checkpoint(&gw, size).await;
    assert_eq!(note.matches("\n\u{2014} ").count(), 2, "{note}");
    let by_old = CheckpointVerifier::from_verifier_key(&old.verifier_key())
        .unwrap()
        .verify(&note)
        .unwrap();
    let by_new = CheckpointVerifier::from_verifier_key(&gw.verifier_key)
        .unwrap()
        .verify(&note)
        .unwrap();
    assert_eq!(by_old, by_new);
    gw.stop().await;

    // Refused before anything starts: the signing key as its own
    // co-signer, and a file that does not exist.
    let dir = TempDir::new("cosign-bad");
    let (url, pg) = test_database(&dir.0).await;
    let mut cfg = config(&dir.0, &url);
    cfg.audit.checkpoint_cosign_key_files = vec![cfg.audit.checkpoint_key_file.clone()];
    let e = match credgate::server::Gateway::build(&cfg).await {
        Err(e) => e.to_string(),
        Ok(_) => panic!("the signing key co-signing itself was accepted"),
    };
    assert!(e.contains("audit.checkpoint_cosign_key_files"), "{e}");
    cfg.audit.checkpoint_cosign_key_files = vec![dir.0.join("no-such.key")];
    let e = cfg.validate().unwrap_err();
    assert!(e.contains("no-such.key"), "{e}");
    drop_test_database(pg).await;
}

#[tokio::test]
async fn a_checkpoint_and_the_index_follow_the_first_entry_promptly() {
    // The default interval (10 s): the first checkpoint must not wait for it.
    let gw = TestGateway::start_with(|c| c.audit.checkpoint_interval_secs = 10, true).await;
    let started = std::time::Instant::now();
    assert_eq!(
        bank_query(&gw, "bank", "legal_person", ids::CERAMICS)
            .await
            .status,
        200
    );
    let auditor = gw.client("auditor");
    loop {
        let r = auditor.get("/v1/audit/log/checkpoint").await;
        if r.status == 200 {
            let note = String::from_utf8(r.bytes.to_vec()).unwrap();
            let cp = CheckpointVerifier::from_verifier_key(&gw.verifier_key)
                .unwrap()
                .verify(&note)
                .unwrap();
            assert!(cp.size >= 1);
            break;
        }
        assert_eq!(r.body["error"]["code"], "no_checkpoint");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "no checkpoint {:?} after the first entry",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The indexer catches up off the request path and says so in /metrics.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, m) = gw.admin_get("/metrics").await;
        let lag = metric(&m, "credgate_audit_index_lag_entries");
        let indexed = metric(&m, "credgate_audit_indexed_entries").unwrap_or(0);
        if lag == Some(0) && indexed >= 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "index lag: {m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(gw.admin_get("/readyz").await.0, 200);
    gw.stop().await;
}

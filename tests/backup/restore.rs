//! Backup under load and verified restore; altered or foreign backups refused with nothing restored.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_under_load_restores_to_a_gateway_with_the_same_log_and_state() {
    let (gw, home) = start_sqlite("bk-load").await;
    let work = TempDir::new("bk-load-out");
    // Lifecycle state and a consent before the load: an objection by the
    // portal, a black-list entry, a consent used by a bank.
    let dept = gw.client("department");
    let s0 = subject(1);
    let r = dept.post("/v1/records", &json!({"records": [{"subject": {"type": "legal_person", "id": s0},
        "item": "admin_penalty", "tier": "general", "decision_date": "2026-10-01",
        "fields": {"penalty_decision_no": "淄市监罚〔2026〕201号", "penalty_content": "罚款人民币8000元",
                   "penalty_date": "2026-10-01", "penalty_authority": "淄博市市场监督管理局"}}]})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let p1 = r.body["record_ids"][0].as_i64().unwrap();
    let r = dept
        .post(
            "/v1/lists/black",
            &json!({"subject": {"type": "legal_person", "id": s0}, "basis": "淄市监罚〔2026〕201号 严重违法失信", "basis_record_id": p1}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = gw
        .client("portal")
        .post(
            "/v1/objections",
            &json!({"subject": {"type": "legal_person", "id": s0}, "record_id": p1, "grounds": "处罚决定已被行政复议撤销"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let objection = r.body["objection_id"].clone();
    let token = common::dev_income_token(&home.0, &format!("bk-{}-0", std::process::id()));
    let income = |t: &str| {
        let mut q = query(
            "natural_person",
            ids::PERSON,
            "financing",
            &["person_name", "monthly_income"],
        );
        q["consent_token"] = json!(t);
        q
    };
    let r = gw.client("bank").post("/v1/query", &income(&token)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        decisions(&r.body).contains(&(
            "monthly_income".into(),
            "returned".into(),
            "authorised".into()
        )),
        "{}",
        r.body
    );
    let objection_status = |c: Client| {
        let (o, s0) = (objection.as_i64().unwrap(), s0.clone());
        async move {
            c.post(
                &format!("/v1/objections/{o}/status"),
                &json!({"subject": {"type": "legal_person", "id": s0}}),
            )
            .await
        }
    };
    let source_objection = objection_status(gw.client("portal")).await;
    assert_eq!(source_objection.status, 200, "{}", source_objection.body);
    // The checkpoint an auditor saved before the backup.
    let held = checkpoint_now(&gw).await;
    let held_file = work.0.join("held.note");
    std::fs::write(&held_file, &held).unwrap();

    // Load over mTLS from 4 clients (submissions, consent queries, plain
    // queries): the backup starts once 8 requests have been answered, and
    // each client goes on until it has seen the backup finish and sent one
    // more request (at least 12, at most 300 each).
    let answered = Arc::new(tokio::sync::Semaphore::new(0));
    let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = tokio::task::JoinSet::new();
    for w in 0..4u32 {
        let (dept, bank) = (gw.client("department"), gw.client("bank"));
        let (answered, finished, token) = (answered.clone(), finished.clone(), token.clone());
        let q = income(&token);
        load.spawn(async move {
            let (mut statuses, mut submitted) = (Vec::new(), 0usize);
            for i in 0..300u32 {
                let after = finished.load(Ordering::Acquire);
                let r = match i % 3 {
                    0 => {
                        submitted += 1;
                        dept.post(
                            "/v1/records",
                            &licence(&subject(1000 + w * 1000 + i), w * 1000 + i),
                        )
                        .await
                    }
                    1 => bank.post("/v1/query", &q).await,
                    _ => {
                        bank.post(
                            "/v1/query",
                            &query(
                                "legal_person",
                                "91370300MA3CXQ001R",
                                "financing",
                                &["enterprise_name"],
                            ),
                        )
                        .await
                    }
                };
                statuses.push(r.status);
                answered.add_permits(1);
                if after && i >= 11 {
                    break;
                }
            }
            (statuses, submitted)
        });
    }
    let _ = answered.acquire_many(8).await.unwrap();
    let under_load = work.0.join("under-load.credgate-backup");
    let report = backup::create(&gw.config, &under_load).await.unwrap();
    finished.store(true, Ordering::Release);
    let m = report.manifest.clone();
    let mut submitted = 0;
    while let Some(r) = load.join_next().await {
        let (statuses, n) = r.unwrap();
        submitted += n;
        assert!(
            statuses.iter().all(|s| *s == 200 || *s == 201),
            "{statuses:?}"
        );
    }
    let (size_after, _) = gw.store.log_head().await.unwrap();
    // Requests were answered after the snapshot: it is a strict prefix.
    assert!(m.tree_size < size_after && m.tree_size > 0, "{m:?}");
    assert!(m.checkpoint_size.unwrap() >= credgate::backup::note_size(&held).unwrap());
    assert_eq!(m.schema_version, credgate::backup::known_schema_version());

    // A quiet backup, still online, once every entry is checkpointed.
    let quiet_note = checkpoint_now(&gw).await;
    let quiet = work.0.join("quiet.credgate-backup");
    let qm = backup::create(&gw.config, &quiet).await.unwrap().manifest;
    assert_eq!(qm.checkpoint.as_deref(), Some(quiet_note.as_str()));
    let source_db = home.0.join("credgate.db");
    let cfg = gw.config.clone();
    let key = gw.verifier_key.clone();
    gw.stop().await;
    let source = dump(&source_db).await;

    // The quiet backup restores to exactly the source's tables (the
    // checkpoint the shutdown wrote aside).
    let to_quiet = work.0.join("restored-quiet");
    let rep = backup::restore(&opts(&quiet, &to_quiet, &key, vec![held_file.clone()]))
        .await
        .unwrap();
    assert_eq!(rep.consistent_with.len(), 1);
    let restored = dump(&to_quiet.join("credgate.db")).await;
    for (table, rows) in &source {
        // The shutdown's checkpoint, and index rows the indexer wrote after
        // the backup, are the source's alone.
        if table == "audit_index_head" {
            continue; // one row: how far the index reached
        }
        if ["checkpoints", "audit_index"].contains(&table.as_str()) {
            assert!(restored[table].iter().all(|r| rows.contains(r)), "{table}");
        } else {
            assert_eq!(
                &restored[table], rows,
                "table {table} differs after restore"
            );
        }
    }
    assert_eq!(
        restored["records"].len(),
        12 + submitted + 1,
        "seeded, load and setup records"
    );
    assert!(!restored["consents"].is_empty() && !restored["objections"].is_empty());
    assert!(!restored["list_entries"].is_empty());

    // The backup under load: a gateway started from it has a log that
    // verifies against the held checkpoint, the source's checkpoints, and
    // an entry for every stored change (the outbox is recovered at start).
    let to_load = work.0.join("restored-load");
    let rep = backup::restore(&opts(&under_load, &to_load, &key, vec![held_file.clone()]))
        .await
        .unwrap();
    assert!(rep.to_string().contains("no roll-back"), "{rep}");
    let db = to_load.join("credgate.db");
    let part = dump(&db).await;
    for t in ["records", "list_entries"] {
        assert!(
            part[t].iter().all(|r| source[t].contains(r)),
            "restored {t} rows are source rows"
        );
    }
    assert!(
        part["checkpoints"]
            .iter()
            .all(|r| source["checkpoints"].contains(r))
    );
    // The invariant the lock buys (before any recovery): every stored
    // change has its entry in the backup's log or its row in the outbox.
    let snap = Store::connect(&format!("sqlite://{}", db.display()), 2)
        .await
        .unwrap();
    assert_eq!(snap.log_head().await.unwrap().0, m.tree_size);
    let in_log: std::collections::HashSet<String> = audit_entries(&snap)
        .await
        .into_iter()
        .map(|e| e.request_id)
        .collect();
    let pending: std::collections::HashSet<String> = snap
        .outbox_pending()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.request_id)
        .collect();
    for (rid, _) in snap.records_per_request().await.unwrap() {
        assert!(
            rid == "quickstart-seed" || in_log.contains(&rid) || pending.contains(&rid),
            "the backup holds records of {rid} with neither an entry nor an outbox row"
        );
    }
    snap.close().await;
    let gw2 =
        TestGateway::start_config(config_on(&cfg, &db), TempDir::new("bk-gw2"), None, false).await;
    let entries = audit_entries(&gw2.store).await;
    let logged: std::collections::HashSet<&str> =
        entries.iter().map(|e| e.request_id.as_str()).collect();
    for (rid, _) in gw2.store.records_per_request().await.unwrap() {
        assert!(
            rid == "quickstart-seed" || logged.contains(rid.as_str()),
            "record of {rid} without an entry"
        );
    }
    assert_eq!(
        gw2.store
            .count_raw("SELECT COUNT(*) FROM audit_outbox")
            .await
            .unwrap(),
        0
    );
    // The same objection, the same answers.
    let r = objection_status(gw2.client("portal")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, source_objection.body);
    let r = gw2.client("bank").post("/v1/query", &income(&token)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        decisions(&r.body).contains(&(
            "monthly_income".into(),
            "returned".into(),
            "authorised".into()
        )),
        "{}",
        r.body
    );
    let cp = checkpoint_now(&gw2).await;
    let file = work.0.join("restored.jsonl");
    export(&gw2.store, &file).await;
    let (ok, out) = verify_cli(&file, &[&key], Some(&held_file));
    assert!(ok, "{out}");
    assert!(
        out.contains("consistent with the previous checkpoint"),
        "{out}"
    );
    // The checkpoint in the manifest is the source's, byte for byte.
    let (s, note) = gw2
        .store
        .checkpoint(m.checkpoint_size)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (Some(s), Some(note)),
        (m.checkpoint_size, m.checkpoint.clone())
    );
    drop(cp);

    // Restoring into a directory a gateway serves from is refused.
    let e = backup::restore(&RestoreOptions {
        replace: true,
        ..opts(&quiet, &to_load, &key, vec![])
    })
    .await
    .unwrap_err();
    assert!(matches!(e, BackupError::Locked(_)), "{e}");
    assert!(
        e.to_string()
            .contains(&format!("pid {}", std::process::id())),
        "{e}"
    );
    gw2.stop().await;

    // Restoring the under-load backup over the quiet restore would go
    // behind the quiet store's checkpoint: refused, nothing replaced.
    let before = dump(&to_quiet.join("credgate.db")).await;
    let e = backup::restore(&RestoreOptions {
        replace: true,
        ..opts(&under_load, &to_quiet, &key, vec![])
    })
    .await;
    match (m.tree_size < qm.tree_size, e) {
        (true, Err(e)) => {
            assert!(matches!(e, BackupError::Rollback(_)), "{e}");
            assert!(e.to_string().contains("roll the log back"), "{e}");
        }
        (false, r) => panic!("the quiet backup must be larger: {r:?}"),
        (true, Ok(r)) => panic!("a roll-back was restored: {r}"),
    }
    assert_eq!(dump(&to_quiet.join("credgate.db")).await, before);
    // And so is a held checkpoint beyond the backup, into a new directory.
    let newer = work.0.join("newer.note");
    std::fs::write(&newer, &quiet_note).unwrap();
    let fresh = work.0.join("fresh");
    let e = backup::restore(&opts(&under_load, &fresh, &key, vec![newer]))
        .await
        .unwrap_err();
    assert!(matches!(e, BackupError::Rollback(_)), "{e}");
    assert!(!fresh.join("credgate.db").exists());
    // The restored store served on (gw2) and so is a fork of the source's
    // log after the backup: the quiet backup does not extend its checkpoint.
    let before = dump(&to_load.join("credgate.db")).await;
    let e = backup::restore(&RestoreOptions {
        replace: true,
        ..opts(&quiet, &to_load, &key, vec![])
    })
    .await
    .unwrap_err();
    assert!(matches!(e, BackupError::Rollback(_)), "{e}");
    assert!(e.to_string().contains("NOT consistent"), "{e}");
    assert_eq!(dump(&to_load.join("credgate.db")).await, before);
    // --replace of a store by a backup that extends it moves the old one aside.
    let rep = backup::restore(&RestoreOptions {
        replace: true,
        ..opts(&quiet, &to_quiet, &key, vec![])
    })
    .await
    .unwrap();
    let aside = rep.moved_aside.clone().unwrap();
    assert!(aside.join("credgate.db").is_file() && aside.join("credgate.db.tlog").is_dir());
    assert_eq!(
        dump(&to_quiet.join("credgate.db")).await,
        before_quiet(&aside).await
    );
    drop(home);
}

async fn before_quiet(aside: &Path) -> BTreeMap<String, Vec<String>> {
    dump(&aside.join("credgate.db")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altered_or_foreign_backups_are_refused_with_nothing_restored() {
    let (gw, _home) = start_sqlite("bk-bad").await;
    let work = TempDir::new("bk-bad-out");
    let r = gw
        .client("department")
        .post("/v1/records", &licence(&subject(7), 7))
        .await;
    assert_eq!(r.status, 201);
    checkpoint_now(&gw).await;
    // Through the real binary, beside the serving gateway.
    let file = work.0.join("b.credgate-backup");
    let cfg_file = write_config_file(&gw.config, &work.0.join("credgate.toml"));
    let mut cmd = Command::new(bin());
    cmd.args(["backup", "--config"])
        .arg(&cfg_file)
        .arg("--out")
        .arg(&file);
    let out = output(cmd).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("audit log of"), "{text}");
    // Never overwrites.
    let e = backup::create(&gw.config, &file).await.unwrap_err();
    assert!(e.to_string().contains("exists already"), "{e}");
    let key = gw.verifier_key.clone();

    // Unpack, alter one byte of the log's WAL, pack again.
    let unpacked = work.0.join("unpacked");
    tar::Archive::new(std::fs::File::open(&file).unwrap())
        .unpack(&unpacked)
        .unwrap();
    let wal = unpacked.join("credgate.db.tlog/wal");
    let mut bytes = std::fs::read(&wal).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&wal, bytes).unwrap();
    let altered = work.0.join("altered.credgate-backup");
    let mut b = tar::Builder::new(std::fs::File::create(&altered).unwrap());
    b.append_dir_all(".", &unpacked).unwrap();
    b.finish().unwrap();
    drop(b);
    let to = work.0.join("to-altered");
    let e = backup::restore(&opts(&altered, &to, &key, vec![]))
        .await
        .unwrap_err();
    assert!(matches!(e, BackupError::Invalid(_)), "{e}");
    assert!(e.to_string().contains("credgate.db.tlog/wal"), "{e}");
    assert!(!to.join("credgate.db").exists());

    // Another log's verifier key: the restored log is not trusted.
    let other = credgate::audit::checkpoint::CheckpointSigner::from_pkcs8(
        "credgate.test/audit",
        &credgate::audit::checkpoint::CheckpointSigner::generate_pkcs8().unwrap(),
    )
    .unwrap()
    .verifier_key();
    let to = work.0.join("to-other-key");
    let e = backup::restore(&opts(&file, &to, &other, vec![]))
        .await
        .unwrap_err();
    assert!(matches!(e, BackupError::Verify(_)), "{e}");

    // A link among the members (it could point anywhere) is refused.
    let linked = work.0.join("linked.credgate-backup");
    let mut b = tar::Builder::new(std::fs::File::create(&linked).unwrap());
    b.append_dir_all(".", &unpacked).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "credgate.db.tlog/tile/x", "/etc/passwd")
        .unwrap();
    b.finish().unwrap();
    drop(b);
    let to = work.0.join("to-linked");
    let e = backup::restore(&opts(&linked, &to, &key, vec![]))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("neither a file nor a directory"),
        "{e}"
    );
    assert!(!to.join("credgate.db").exists());

    // A manifest from a newer credgate, or with a duplicated key.
    let manifest = std::fs::read_to_string(unpacked.join("manifest.json")).unwrap();
    for (tag, text, want) in [
        (
            "newer",
            manifest.replacen("\"version\": 1,", "\"version\": 99, \"new_field\": 1,", 1),
            "version 99",
        ),
        (
            "dup",
            manifest.replacen("\"version\": 1,", "\"version\": 1, \"version\": 1,", 1),
            "duplicate",
        ),
    ] {
        assert_ne!(text, manifest);
        let dir = work.0.join(format!("m-{tag}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("manifest.json"), text).unwrap();
        let file = work.0.join(format!("{tag}.credgate-backup"));
        let mut b = tar::Builder::new(std::fs::File::create(&file).unwrap());
        b.append_dir_all(".", &dir).unwrap();
        b.finish().unwrap();
        drop(b);
        let e = backup::restore(&opts(
            &file,
            &work.0.join(format!("to-{tag}")),
            &key,
            vec![],
        ))
        .await
        .unwrap_err();
        assert!(matches!(e, BackupError::Invalid(_)), "{e}");
        assert!(e.to_string().to_lowercase().contains(want), "{e}");
    }

    // A held checkpoint that is not signed by the key is not silently ignored.
    let forged = work.0.join("forged.note");
    std::fs::write(
        &forged,
        "credgate.test/audit\n1\nAAAA\n\n— credgate.test/audit AAAA\n",
    )
    .unwrap();
    let to = work.0.join("to-forged");
    let e = backup::restore(&opts(&file, &to, &key, vec![forged]))
        .await
        .unwrap_err();
    assert!(matches!(e, BackupError::Verify(_)), "{e}");
    assert!(e.to_string().contains("held checkpoint"), "{e}");
    assert!(!to.join("credgate.db").exists());

    // Not a tar file at all.
    let junk = work.0.join("junk");
    std::fs::write(&junk, b"not a backup").unwrap();
    let e = backup::restore(&opts(&junk, &work.0.join("to-junk"), &key, vec![]))
        .await
        .unwrap_err();
    assert!(matches!(e, BackupError::Invalid(_)), "{e}");

    // The untouched backup restores, through the real binary too.
    let out = Command::new(bin())
        .args(["restore", "--from"])
        .arg(&file)
        .arg("--to")
        .arg(work.0.join("to-cli"))
        .args(["--key", &key])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("ok: audit log of"), "{text}");
    gw.stop().await;
}

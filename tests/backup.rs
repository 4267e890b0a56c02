//! Running for years: online backup and verified restore of the embedded
//! store (over real mTLS, under load), PostgreSQL dump and restore through
//! `credgate audit verify`, refusal of a store migrated by a newer version
//! on both backends, migrations pinned by checksum, and a rotation of the
//! checkpoint key across which `audit verify` passes with a verifier list.
//!
//! `credgate backup` is for SQLite stores, so its tests run on SQLite in
//! both suite runs; the PostgreSQL tests use `CREDGATE_TEST_DATABASE_URL`,
//! else `postgres://postgres@127.0.0.1:5432/test`, and fail if it is not
//! reachable.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::*;
use credgate::backup::{self, BackupError, RestoreOptions};
use credgate::config::Config;
use credgate::store::Store;
use serde_json::{Value, json};
use sqlx::{Connection as _, Row as _};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_credgate")
}

/// A gateway on SQLite whatever the suite's backend, and its directory
/// (database, keys, dev consent issuer), which outlives the gateway.
async fn start_sqlite(tag: &str) -> (TestGateway, TempDir) {
    let home = TempDir::new(tag);
    let url = format!("sqlite://{}/credgate.db", home.0.display());
    let cfg = config(&home.0, &url);
    let gw = TestGateway::start_config(cfg, TempDir::new("bk-run"), None, true).await;
    (gw, home)
}

async fn drop_pg(name: &str) {
    let admin = Store::connect_admin(&common::pg_base_url()).await.unwrap();
    let _ = admin
        .execute_raw(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await;
    admin.close().await;
}

/// Sign a checkpoint of the current head now; its note.
async fn checkpoint_now(gw: &TestGateway) -> String {
    let key = std::fs::read(&gw.config.audit.checkpoint_key_file).unwrap();
    let signer =
        credgate::audit::checkpoint::CheckpointSigner::from_pkcs8(&gw.config.audit.origin, &key)
            .unwrap();
    credgate::audit::checkpoint_once(&gw.store, &signer, &gw.config.audit.origin)
        .await
        .unwrap();
    let (size, _) = gw.store.log_head().await.unwrap();
    gw.store.checkpoint(Some(size)).await.unwrap().unwrap().1
}

fn subject(n: u32) -> String {
    let prefix = format!("91370300MA3B{n:05}");
    format!(
        "{prefix}{}",
        credgate::ids::CreditCode::check_char(&prefix).unwrap()
    )
}

fn licence(s: &str, n: u32) -> Value {
    json!({"records": [{"subject": {"type": "legal_person", "id": s}, "item": "admin_licence",
        "fields": {"licence_no": format!("JY1370303{n:07}"), "licence_name": "食品经营许可"}}]})
}

/// Every row of every table of a SQLite file, as text, by table.
async fn dump(db: &Path) -> BTreeMap<String, Vec<String>> {
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db)
        .read_only(true);
    let mut c = sqlx::SqliteConnection::connect_with(&opts).await.unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    let mut out = BTreeMap::new();
    for t in tables {
        let cols: Vec<String> = sqlx::query(&format!("PRAGMA table_info({t})"))
            .fetch_all(&mut c)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<String, _>("name"))
            .collect();
        let expr = cols
            .iter()
            .map(|c| format!("quote({c})"))
            .collect::<Vec<_>>()
            .join(" || '|' || ");
        let mut rows: Vec<String> = sqlx::query_scalar(&format!("SELECT {expr} FROM {t}"))
            .fetch_all(&mut c)
            .await
            .unwrap();
        rows.sort();
        out.insert(t, rows);
    }
    c.close().await.unwrap();
    out
}

fn opts(from: &Path, to: &Path, key: &str, not_before: Vec<PathBuf>) -> RestoreOptions {
    RestoreOptions {
        from: from.to_owned(),
        to: to.to_owned(),
        keys: vec![key.to_owned()],
        not_before,
        replace: false,
    }
}

/// `credgate audit verify FILE --key K… [--previous P]` with the real binary.
fn verify_cli(file: &Path, keys: &[&str], previous: Option<&Path>) -> (bool, String) {
    let mut cmd = Command::new(bin());
    cmd.args(["audit", "verify"]).arg(file);
    for k in keys {
        cmd.args(["--key", k]);
    }
    if let Some(p) = previous {
        cmd.arg("--previous").arg(p);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

async fn export(store: &Store, out: &Path) {
    credgate::audit::export::export_to_file(
        store,
        out,
        credgate::audit::export::ExportFormat::Jsonl,
    )
    .await
    .unwrap();
}

/// A configuration for a gateway on `db`, with `base`'s keys.
fn config_on(base: &Config, db: &Path) -> Config {
    let mut c = base.clone();
    c.store.url = format!("sqlite://{}", db.display());
    c
}

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

#[tokio::test]
async fn backup_of_a_postgresql_store_points_at_pg_dump() {
    let dir = TempDir::new("bk-pg-cfg");
    let cfg = config(&dir.0, "postgres://postgres@127.0.0.1:5432/whatever");
    let e = backup::create(&cfg, &dir.0.join("x")).await.unwrap_err();
    assert!(matches!(e, BackupError::Unsupported(_)), "{e}");
    assert!(e.to_string().contains("pg_dump"), "{e}");
    assert!(!dir.0.join("x").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgresql_dump_restored_into_a_fresh_database_passes_audit_verify() {
    let (url, name) = common::pg_test_database(&common::pg_base_url()).await;
    let dir = TempDir::new("bk-pg");
    let cfg = config(&dir.0, &url);
    let gw = TestGateway::start_config(cfg.clone(), dir, None, true).await;
    for i in 0..5 {
        let r = gw
            .client("department")
            .post("/v1/records", &licence(&subject(300 + i), 300 + i))
            .await;
        assert_eq!(r.status, 201);
    }
    let held = checkpoint_now(&gw).await;
    let work = TempDir::new("bk-pg-out");
    let held_file = work.0.join("held.note");
    std::fs::write(&held_file, &held).unwrap();
    let dumpfile = work.0.join("dump.sql");
    let out = Command::new("pg_dump")
        .args(["--no-owner", "--format=plain", "--file"])
        .arg(&dumpfile)
        .arg(&url)
        .output()
        .expect("pg_dump is installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = gw.verifier_key.clone();
    let records = gw.store.record_count().await.unwrap();
    gw.stop().await;
    drop_pg(&name).await;

    let (url2, name2) = common::pg_test_database(&common::pg_base_url()).await;
    let out = Command::new("psql")
        .args(["--quiet", "--set", "ON_ERROR_STOP=1", "--file"])
        .arg(&dumpfile)
        .arg(&url2)
        .output()
        .expect("psql is installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let store = Store::connect(&url2, 2).await.unwrap();
    assert_eq!(store.record_count().await.unwrap(), records);
    let file = work.0.join("export.jsonl");
    export(&store, &file).await;
    store.close().await;
    let (ok, text) = verify_cli(&file, &[&key], Some(&held_file));
    drop_pg(&name2).await;
    assert!(ok, "{text}");
    assert!(
        text.contains("consistent with the previous checkpoint"),
        "{text}"
    );
}

// ------------------------------------------------------------ schema versions

#[tokio::test]
async fn a_store_migrated_by_a_newer_version_is_refused_on_both_backends() {
    let known = credgate::backup::known_schema_version();
    let newer = 99_990_101i64;
    let dir = TempDir::new("bk-schema");
    let (pg_url, pg_name) = common::pg_test_database(&common::pg_base_url()).await;
    for url in [format!("sqlite://{}/credgate.db", dir.0.display()), pg_url] {
        let store = Store::connect(&url, 2).await.unwrap();
        assert_eq!(store.schema_version().await.unwrap(), known);
        let records = store.record_count().await.unwrap();
        store
            .execute_raw(&format!(
                "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
                 VALUES ({newer}, 'from the future', TRUE, X'00', 1)"
            ).replace("X'00'", if url.starts_with("postgres") { "'\\x00'::bytea" } else { "X'00'" }))
            .await
            .unwrap();
        store.close().await;
        let e = Store::connect(&url, 2).await.unwrap_err().to_string();
        assert!(
            e.contains(&newer.to_string()) && e.contains(&known.to_string()),
            "{e}"
        );
        assert!(e.contains("newer credgate"), "{e}");
        // Nothing was migrated or changed: the row is still there, alone.
        let mut cfg = config(&dir.0, &url);
        cfg.store.url = url.clone();
        let e = match credgate::server::Gateway::build(&cfg).await {
            Err(e) => e.to_string(),
            Ok(_) => panic!("a gateway started on a newer store ({url})"),
        };
        assert!(e.contains("newer credgate"), "{e}");
        let _ = records;
    }
    drop_pg(&pg_name).await;
}

/// Migrations are never edited after release: their checksums are pinned.
/// A new migration adds a line here (regenerate with
/// `CREDGATE_BLESS=1 cargo test --test backup migrations`).
#[test]
fn released_migrations_keep_their_checksums() {
    let mut text = String::new();
    for (backend, m) in [
        ("sqlite", &credgate::store::SQLITE_MIGRATIONS),
        ("postgres", &credgate::store::POSTGRES_MIGRATIONS),
    ] {
        for x in m.iter() {
            text.push_str(&format!(
                "{backend} {:04} {} {}\n",
                x.version,
                x.description,
                hex::encode(&x.checksum)
            ));
        }
    }
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/migrations.txt");
    if std::env::var_os("CREDGATE_BLESS").is_some() {
        std::fs::write(&golden, &text).unwrap();
    }
    let want = std::fs::read_to_string(&golden).unwrap();
    let want_lines: Vec<&str> = want.lines().collect();
    for line in &want_lines {
        assert!(
            text.lines().any(|l| l == *line),
            "a released migration changed or disappeared: {line}\nnow:\n{text}\nadd a new migration instead of editing one"
        );
    }
    assert_eq!(
        text,
        want,
        "a new migration: add its line to {}",
        golden.display()
    );
}

// ------------------------------------------------------------ checkpoint key rotation

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_passes_across_a_checkpoint_key_rotation_with_a_verifier_list() {
    let dir = TempDir::new("bk-rot");
    let (url, pg) = test_database(&dir.0).await;
    let cfg = config(&dir.0, &url);
    let work = TempDir::new("bk-rot-out");
    // Before: key A.
    let gw = TestGateway::start_config(cfg.clone(), TempDir::new("bk-rot-a"), None, true).await;
    let r = gw
        .client("department")
        .post("/v1/records", &licence(&subject(500), 500))
        .await;
    assert_eq!(r.status, 201);
    let old_note = checkpoint_now(&gw).await;
    let old_key = gw.verifier_key.clone();
    let old_file = work.0.join("old.note");
    std::fs::write(&old_file, &old_note).unwrap();
    gw.stop().await;
    // Rotate: a new key file, the same store; the old key is kept for verifiers.
    let mut rotated = cfg.clone();
    rotated.audit.checkpoint_key_file = work.0.join("checkpoint-2.key");
    std::fs::write(
        &rotated.audit.checkpoint_key_file,
        credgate::audit::checkpoint::CheckpointSigner::generate_pkcs8().unwrap(),
    )
    .unwrap();
    let gw = TestGateway::start_config(rotated, TempDir::new("bk-rot-b"), pg, false).await;
    let new_key = gw.verifier_key.clone();
    assert_ne!(new_key, old_key);
    let r = gw
        .client("department")
        .post("/v1/records", &licence(&subject(501), 501))
        .await;
    assert_eq!(r.status, 201);
    checkpoint_now(&gw).await;
    let file = work.0.join("after.jsonl");
    export(&gw.store, &file).await;
    gw.stop().await;

    let (ok, out) = verify_cli(&file, &[&new_key, &old_key], Some(&old_file));
    assert!(ok, "{out}");
    assert!(
        out.contains("consistent with the previous checkpoint"),
        "{out}"
    );
    // A file of verifier keys, one per line, works the same.
    let list = work.0.join("verifiers.txt");
    std::fs::write(
        &list,
        format!("# rotated 2026-12-01\n{new_key}\n{old_key}\n"),
    )
    .unwrap();
    let (ok, out) = verify_cli(&file, &[list.to_str().unwrap()], Some(&old_file));
    assert!(ok, "{out}");
    // Without the old key the previous checkpoint does not verify ...
    let (ok, out) = verify_cli(&file, &[&new_key], Some(&old_file));
    assert!(!ok, "{out}");
    assert!(out.contains("previous checkpoint does not verify"), "{out}");
    // ... and without the new key the export's own checkpoint does not.
    let (ok, out) = verify_cli(&file, &[&old_key], Some(&old_file));
    assert!(!ok, "{out}");
    assert!(out.contains("the checkpoint does not verify"), "{out}");
}

// ------------------------------------------------------------ consent issuer key overlap

/// A copy of `policies/` whose `consent.toml` pins `blocks` for the test issuer.
fn policies_with_issuer_keys(dir: &Path, blocks: &[(&str, &[u8])]) -> PathBuf {
    let to = dir.join("policies");
    std::fs::create_dir_all(&to).unwrap();
    for e in std::fs::read_dir(policies()).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
    let mut text = "leeway_secs = 30\nmax_lifetime_secs = 15552000\n".to_owned();
    for (kid, pkcs8) in blocks {
        text.push_str(&credgate::consent::policy::issuer_block(
            "https://consent.test/issuer",
            kid,
            credgate::consent::token::KeyAlg::EdDSA,
            &credgate::consent::token::ed25519_public_from_pkcs8(pkcs8).unwrap(),
        ));
    }
    std::fs::write(to.join("consent.toml"), text).unwrap();
    to
}

fn issuer_token(kid: &str, pkcs8: &[u8], n: u32) -> String {
    let now = credgate::consent::now_unix();
    let claims = credgate::consent::token::ConsentClaims {
        iss: "https://consent.test/issuer".into(),
        sub: ids::PERSON.into(),
        aud: "credgate-test".into(),
        grantee: ids::BANK.into(),
        purpose: "financing".into(),
        scope: vec!["income".into()],
        iat: now - 60,
        nbf: now - 60,
        exp: now + 3600,
        jti: format!("rot-{}-{n}", std::process::id()),
        max_uses: None,
        written: Some(true),
        notice: Some(hex::encode(ring::digest::digest(
            &ring::digest::SHA256,
            common::NOTICE.as_bytes(),
        ))),
    };
    credgate::consent::token::issue(kid, credgate::consent::token::KeyAlg::EdDSA, pkcs8, &claims)
        .unwrap()
}

fn income_decision(body: &Value) -> (String, String) {
    let d = body["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["field"] == "monthly_income")
        .unwrap();
    (
        d["reason"].as_str().unwrap().to_owned(),
        d["detail"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_tokens_under_both_pinned_keys_open_income_and_a_removed_key_does_not() {
    use credgate::consent::token::generate_ed25519_pkcs8;
    let home = TempDir::new("bk-consent");
    let (url, pg) = test_database(&home.0).await;
    let (old, new) = (
        generate_ed25519_pkcs8().unwrap(),
        generate_ed25519_pkcs8().unwrap(),
    );
    let mut cfg = config(&home.0, &url);
    cfg.policy.dir = policies_with_issuer_keys(
        &home.0.join("overlap"),
        &[("issuer-2026", &old), ("issuer-2027", &new)],
    );
    let ask = |t: &str| {
        let mut q = query(
            "natural_person",
            ids::PERSON,
            "financing",
            &["monthly_income"],
        );
        q["consent_token"] = json!(t);
        q
    };
    let (t_old, t_new) = (
        issuer_token("issuer-2026", &old, 1),
        issuer_token("issuer-2027", &new, 2),
    );
    // During the overlap both keys verify.
    let gw = TestGateway::start_config(cfg.clone(), TempDir::new("bk-consent-a"), None, true).await;
    for t in [&t_old, &t_new] {
        let r = gw.client("bank").post("/v1/query", &ask(t)).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(income_decision(&r.body).0, "authorised", "{}", r.body);
    }
    let registered = gw
        .store
        .count_raw("SELECT COUNT(*) FROM consents")
        .await
        .unwrap();
    assert_eq!(registered, 2, "each token is registered once it is used");
    gw.stop().await;
    // The old key removed from consent.toml: its token is refused, and the
    // refusal is what the audit entry records; the new key still works.
    cfg.policy.dir = policies_with_issuer_keys(&home.0.join("after"), &[("issuer-2027", &new)]);
    let gw = TestGateway::start_config(cfg, TempDir::new("bk-consent-b"), pg, false).await;
    let r = gw.client("bank").post("/v1/query", &ask(&t_old)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        income_decision(&r.body),
        ("consent_invalid".into(), "unknown_issuer".into()),
        "{}",
        r.body
    );
    assert!(
        r.body["records"]
            .as_array()
            .unwrap()
            .iter()
            .all(|rec| rec["fields"].get("monthly_income").is_none())
    );
    let seq: u64 = r.headers["x-audit-seq"].to_str().unwrap().parse().unwrap();
    let entries = audit_entries(&gw.store).await;
    let e = &entries[seq as usize];
    let text = serde_json::to_string(&e.fields).unwrap();
    assert!(text.contains("consent_invalid"), "{text}");
    let r = gw.client("bank").post("/v1/query", &ask(&t_new)).await;
    assert_eq!(income_decision(&r.body).0, "authorised", "{}", r.body);
    gw.stop().await;
}

#[test]
fn config_example_prints_the_tested_example() {
    let out = Command::new(bin())
        .args(["config", "example"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        credgate::config_example::EXAMPLE
    );
}

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

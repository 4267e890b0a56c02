//! PostgreSQL stores: `backup` points at pg_dump, and a dump restored into a fresh database passes `audit verify`.

use super::*;

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

//! Schema versions: a store migrated by a newer version refused, released migrations keep their checksums, the printed config example is the tested one.

use super::*;

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

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

#[path = "../common/mod.rs"]
mod common;
mod postgres;
mod restore;
mod rotation;
mod snapshots;
mod versions;

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

// ------------------------------------------------------------ schema versions

// ------------------------------------------------------------ checkpoint key rotation

// ------------------------------------------------------------ consent issuer key overlap

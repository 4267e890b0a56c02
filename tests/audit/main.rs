//! The audit log is verifiable by auditors without trusting the operator:
//! the auditor API (roles, search, proofs, reports, exports), the offline
//! verifier against tampered exports and a tampered database, the portal's
//! access history, quotas and anomaly flags, and (ignored by default, run
//! explicitly in CI) durability across `kill -9`.
//!
//! Runs on SQLite, or on PostgreSQL when `CREDGATE_TEST_DATABASE_URL` is set.

mod access;
#[path = "../common/mod.rs"]
mod common;
mod durability;
mod index;
mod quotas;
mod verification;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use credgate::audit::AuditEntry;
use credgate::audit::checkpoint::{Checkpoint, CheckpointSigner, CheckpointVerifier};
use credgate::audit::export::{decode_hash, encode_hash};
use credgate::audit::merkle::{self, Hash};
use credgate::store::Store;
use serde_json::{Value, json};

// ------------------------------------------------------------ helpers

/// A response with its raw body (exports are not JSON).
struct Raw {
    status: u16,
    headers: hyper::HeaderMap,
    bytes: Bytes,
}

impl Raw {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or(Value::Null)
    }
}

/// One mTLS request as `who`, keeping the raw body.
async fn raw(
    addr: std::net::SocketAddr,
    who: &str,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<Raw, String> {
    let ctype = body.as_ref().map(|_| "application/json");
    let r = Client::new(addr, Some(who))
        .send(method, path, Bytes::from(body.unwrap_or_default()), ctype)
        .await?;
    Ok(Raw {
        status: r.status,
        headers: r.headers,
        bytes: r.bytes,
    })
}

async fn post(gw: &TestGateway, who: &str, path: &str, body: Value) -> Raw {
    raw(
        gw.addr,
        who,
        "POST",
        path,
        Some(body.to_string().into_bytes()),
    )
    .await
    .unwrap()
}

fn signer_of(gw: &TestGateway) -> CheckpointSigner {
    let key = std::fs::read(&gw.config.audit.checkpoint_key_file).unwrap();
    CheckpointSigner::from_pkcs8(&gw.config.audit.origin, &key).unwrap()
}

/// Sign the current head now (instead of waiting for the checkpointer) and
/// return (size, note).
async fn checkpoint_now(gw: &TestGateway) -> (u64, String) {
    let signer = signer_of(gw);
    credgate::audit::checkpoint_once(&gw.store, &signer, &gw.config.audit.origin)
        .await
        .unwrap();
    let (size, _) = gw.store.log_head().await.unwrap();
    let (s, note) = gw.store.checkpoint(Some(size)).await.unwrap().unwrap();
    (s, note)
}

async fn bank_query(gw: &TestGateway, who: &str, kind: &str, id: &str) -> Resp {
    gw.client(who)
        .post(
            "/v1/query",
            &query(
                kind,
                id,
                "financing",
                &["enterprise_name", "tax_paid_annual"],
            ),
        )
        .await
}

fn hashes(v: &Value) -> Vec<Hash> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|h| decode_hash(h.as_str().unwrap()).unwrap())
        .collect()
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_credgate")
}

/// `credgate audit verify FILE --key KEY [--previous P]`: (success, stdout + stderr).
fn verify_cli(file: &Path, key: &str, previous: Option<&Path>) -> (bool, String) {
    let mut cmd = Command::new(bin());
    cmd.args(["audit", "verify"]).arg(file).args(["--key", key]);
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

/// A TOML config equivalent to `cfg`, for running the real binary.
fn write_config(dir: &Path, cfg: &credgate::config::Config, listen: &str, admin: &str) -> PathBuf {
    let mut c = cfg.clone();
    c.server.listen = listen.parse().unwrap();
    c.server.admin_listen = admin.parse().unwrap();
    c.server.shutdown_grace_ms = 2000;
    write_config_file(&c, &dir.join("credgate.toml"))
}

// ------------------------------------------------------------ roles

// ------------------------------------------------------------ search

// ------------------------------------------------------------ proofs

// ------------------------------------------------------------ exports

/// Rewrite the lines of an export file.
fn edit(text: &str, f: impl FnOnce(&mut Vec<String>)) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    f(&mut lines);
    lines.join("\n") + "\n"
}

/// The signed note in an export's header.
fn first_note(text: &str, format: &str) -> String {
    let header = header_json(text, format);
    header["checkpoint"].as_str().unwrap().to_owned()
}

fn header_json(text: &str, format: &str) -> Value {
    if format == "csv" {
        let line = text.lines().nth(1).unwrap();
        let cells = credgate::audit::export::parse_csv_line(line).unwrap();
        serde_json::from_str(&cells[11]).unwrap()
    } else {
        serde_json::from_str(text.lines().next().unwrap()).unwrap()
    }
}

fn replace_note(text: &str, format: &str, note: &str) -> String {
    let mut h = header_json(text, format);
    h["checkpoint"] = json!(note);
    let json = h.to_string();
    edit(text, |l| {
        if format == "csv" {
            l[1] = format!("export,,,,,,,,,,,\"{}\"", json.replace('"', "\"\""));
        } else {
            l[0] = json;
        }
    })
}

// ------------------------------------------------------------ portal

// ------------------------------------------------------------ quotas, anomalies, reports

fn metric(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

// ------------------------------------------------------------ durability

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_ready(addr: std::net::SocketAddr) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Ok(r) = raw(addr, "auditor", "GET", "/v1/audit/checkpoint", None).await
            && r.status == 200
        {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "gateway did not come up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

// ------------------------------------------------------------ log v2: index, checkpoints

/// Every search an auditor can make in this test, and the report.
async fn all_views(gw: &TestGateway) -> Vec<Value> {
    let a = gw.client("auditor");
    let mut out = Vec::new();
    for body in [
        json!({}),
        json!({"org": ids::BANK}),
        json!({"org": ids::BANK2, "limit": 3}),
        json!({"subject": {"type": "legal_person", "id": ids::CERAMICS}}),
        json!({"subject": {"type": "legal_person", "id": ids::CHEM}}),
        json!({"action": "query", "decision": "withheld"}),
        json!({"denied": true}),
        json!({"outcome": "not_found"}),
        json!({"after": 5, "limit": 7}),
    ] {
        let r = a.post("/v1/audit/search", &body).await;
        assert_eq!(r.status, 200, "{body}: {:?}", r.body);
        out.push(r.body["entries"].clone());
    }
    let r = a.post("/v1/audit/report", &json!({})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    out.push(r.body["volume"].clone());
    out.push(r.body["denied"].clone());
    out.push(r.body["top_subjects"].clone());
    out
}

/// Empty the search index behind every gateway's back, from a store of
/// its own: what `Store::reindex` in another process does first.
async fn empty_index(config: &credgate::config::Config) {
    let other = Store::connect_config(config).await.unwrap();
    other
        .execute_raw("UPDATE audit_index_head SET size = 0 WHERE id = 1")
        .await
        .unwrap();
    other.execute_raw("DELETE FROM audit_index").await.unwrap();
    other.close().await;
}

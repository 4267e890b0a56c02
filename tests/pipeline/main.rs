//! The request pipeline's promise, tried as an attacker and a clumsy client
//! would: every request after the handshake gets exactly one audit entry,
//! whatever the client does, and nothing a request changes is stored
//! without its entry.
//!
//! Over real mTLS, on SQLite or (with `CREDGATE_TEST_DATABASE_URL`)
//! PostgreSQL. The long hang-up drill is `--ignored`.

#[path = "../common/mod.rs"]
mod common;
mod connections;
mod hangups;
mod outbox;
mod refusals;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use credgate::audit::AuditEntry;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn fingerprint_of(pem_path: &Path) -> String {
    let pem = std::fs::read(pem_path).unwrap();
    let der = rustls_pki_types::pem::PemObject::from_pem_slice(&pem)
        .map(|c: rustls_pki_types::CertificateDer<'static>| c.to_vec())
        .unwrap();
    credgate::identity::fingerprint(&der)
}

async fn log_size(gw: &TestGateway) -> u64 {
    gw.store.log_head().await.unwrap().0
}

/// Wait until the log and the record count stop changing (detached request
/// tasks and rejections audited after the connection closed), then return
/// the log size.
///
/// A drill can leave a backlog of detached requests longer than the
/// store's pool timeout (900 hang-ups of 200 records each, 180,000 inserts
/// through four connections, take about 30 s in a debug build): a count
/// that times out waiting for a connection means "not settled yet", until
/// an overall deadline.
async fn settle(gw: &TestGateway) -> u64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    let mut last = (u64::MAX, -1);
    loop {
        let size = log_size(gw).await;
        match gw.store.record_count().await {
            Ok(n) if (size, n) == last => return size,
            Ok(n) => last = (size, n),
            Err(e) => assert!(
                std::time::Instant::now() < deadline,
                "the store stayed busy past the deadline: {e}"
            ),
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the log never settled"
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// [`settle`], once the log holds at least `size` entries: a quiet spell
/// of 150 ms alone can come before the first entry on a slow disk (the
/// first group commit also writes the WAL's preallocated zeros), and the
/// drill then read an empty log. Extra entries still show: `settle` waits
/// for the log to stop growing.
async fn settle_at_least(gw: &TestGateway, size: u64) -> u64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    while log_size(gw).await < size {
        assert!(
            std::time::Instant::now() < deadline,
            "the log never reached {size} entries"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    settle(gw).await
}

async fn entries_after(gw: &TestGateway, size: u64) -> Vec<AuditEntry> {
    audit_entries(&gw.store)
        .await
        .into_iter()
        .skip(size as usize)
        .collect()
}

/// Send raw bytes on a fresh HTTP/1.1 mTLS connection and read what comes
/// back until the server closes (or 3 s pass).
async fn raw_exchange(gw: &TestGateway, who: &str, bytes: &[u8]) -> String {
    let mut s = connect_tls(gw.addr, tls_config(who, &[b"http/1.1"])).await;
    let _ = s.write_all(bytes).await;
    let _ = s.flush().await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A header of the first response head in `resp`.
fn header_of<'a>(resp: &'a str, name: &str) -> Option<&'a str> {
    let head = resp.split("\r\n\r\n").next()?;
    head.split("\r\n").skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

fn status_line(resp: &str) -> u16 {
    resp.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// How the client leaves after sending its complete request.
#[derive(Debug, Clone, Copy)]
enum HangUp {
    /// TCP FIN without close_notify.
    Fin,
    /// TCP RST (SO_LINGER 0).
    Rst,
    /// TLS close_notify, then FIN.
    CloseNotify,
}

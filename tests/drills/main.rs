//! Reliability drills against the real `credgate` binary: repeated `kill -9`
//! under load followed by an offline verification with the real CLI, a
//! thousand slow clients (slowloris) next to a normal one, and storage that
//! refuses writes at runtime (SQLite through a file-size limit of 0, which
//! makes every write fail like a full disk; PostgreSQL switched read-only).
//!
//! All drills are `#[ignore]`d: they spawn processes and take a few seconds
//! each. `scripts/test.sh` runs them with `--ignored` in its SQLite pass. The
//! defaults are the quick CI variants; environment variables scale them up:
//!
//! | variable | default | drill |
//! |---|---|---|
//! | `DRILL_REPEAT` | 3 | kill -9 repetitions (the full drill: 10) |
//! | `DRILL_LOAD_MS` | 1000 | load before each kill |
//! | `DRILL_SLOW_SILENT` / `DRILL_SLOW_DRIBBLE` | 700 / 300 | slow clients of each kind |
//! | `DRILL_ATTACK_MS` | 3000 | how long the slow clients keep reconnecting |
//! | `DRILL_P99_MS` | unset | if set, the normal client's p99 must stay below it (ms); latency is otherwise only printed |
//! | `CREDGATE_DRILL_PG_URL` | `CREDGATE_TEST_DATABASE_URL`, else `postgres://postgres@127.0.0.1:5432/test` | PostgreSQL drill |
//!
//! Every child process is killed when its guard drops, also when an
//! assertion fails. Everything runs on loopback.

#[path = "../common/mod.rs"]
mod common;
mod kill9;
mod outages;
mod slow_clients;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use credgate::audit::AuditEntry;
use credgate::audit::checkpoint::CheckpointSigner;
use credgate::config::Config;
use credgate::store::Store;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

// ------------------------------------------------------------ helpers

/// The drills run one at a time (cargo runs a file's tests in parallel):
/// each measures the gateway on a 2-core machine and must not be disturbed
/// by another's load. No poisoning: a failed drill releases it.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_credgate")
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number")),
        Err(_) => default,
    }
}

/// A config file for the real binary: `base`'s keys and certificates, the
/// given listeners and store, and whatever `adjust` changes in `[server]`.
fn write_config(
    dir: &Path,
    base: &Config,
    addr: SocketAddr,
    admin: SocketAddr,
    url: &str,
    adjust: impl FnOnce(&mut credgate::config::ServerConfig),
) -> PathBuf {
    let mut c = base.clone();
    c.server.listen = addr;
    c.server.admin_listen = admin;
    c.server.gateway_id = "credgate-drill".into();
    c.server.shutdown_grace_ms = 2000;
    c.store.url = url.to_owned();
    c.store.max_connections = 4;
    adjust(&mut c.server);
    write_config_file(&c, &dir.join("credgate.toml"))
}

fn verifier_key(base: &Config) -> String {
    CheckpointSigner::from_pkcs8(
        &base.audit.origin,
        &std::fs::read(&base.audit.checkpoint_key_file).unwrap(),
    )
    .unwrap()
    .verifier_key()
}

/// The real binary serving `config`. Killed (SIGKILL) when dropped, so a
/// failing assertion never leaves a gateway behind.
struct Gateway {
    child: Child,
    admin: SocketAddr,
    log: PathBuf,
}

impl Gateway {
    /// `ignore_sigxfsz`: start through `sh` with SIGXFSZ ignored (an ignored
    /// disposition survives `exec`), so a file-size limit makes writes fail
    /// with EFBIG instead of killing the process.
    fn spawn(config: &Path, admin: SocketAddr, log: &Path, ignore_sigxfsz: bool) -> Gateway {
        let mut cmd = if ignore_sigxfsz {
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg(r#"trap '' XFSZ; exec "$0" "$@""#)
                .arg(bin());
            c
        } else {
            Command::new(bin())
        };
        cmd.args(["serve", "--config"])
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn credgate");
        // Copy stderr from this process: the gateway's own writes to a log
        // file would fail too once its file-size limit is 0.
        let mut err = child.stderr.take().unwrap();
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut err, &mut file);
        });
        Gateway {
            child,
            admin,
            log: log.to_owned(),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Wait until `/readyz` answers 200 (the gateway is serving).
    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "gateway exited ({status}) before ready:\n{}",
                    self.log_tail()
                );
            }
            if let Ok((200, _)) = admin_get(self.admin, "/readyz").await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "gateway not ready after 60 s:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// GET on the admin listener; a failure names the gateway's state and log.
    async fn admin_get(&mut self, path: &str) -> (u16, String) {
        match admin_get(self.admin, path).await {
            Ok(r) => r,
            Err(e) => panic!(
                "admin {path}: {e}; gateway {:?}\n{}",
                self.child.try_wait(),
                self.log_tail()
            ),
        }
    }

    fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    /// SIGTERM and wait (at most 30 s) for the graceful exit.
    fn terminate(&mut self) -> ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            if Instant::now() > deadline {
                self.kill9();
                panic!("no exit 30 s after SIGTERM:\n{}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill9();
        }
    }
}

/// Plain HTTP GET on the admin listener.
async fn admin_get(admin: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let tcp = TcpStream::connect(admin).await.map_err(|e| e.to_string())?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// A Prometheus series value (`name` including labels, if any).
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

async fn metrics(admin: SocketAddr) -> String {
    admin_get(admin, "/metrics").await.expect("metrics").1
}

fn tls_for(who: &str) -> Arc<rustls::ClientConfig> {
    let c = certs();
    credgate::tls::client_config(
        &c.join("ca.pem"),
        Some((
            &c.join(format!("{who}.pem")),
            &c.join(format!("{who}-key.pem")),
        )),
    )
    .unwrap()
}

async fn tls_connect(
    addr: SocketAddr,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// A keep-alive mTLS connection.
async fn open(addr: SocketAddr, tls: &Arc<rustls::ClientConfig>) -> Result<Sender, String> {
    let stream = tls_connect(addr, tls).await?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("http handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}

/// A response with its raw body.
struct Answer {
    status: u16,
    headers: hyper::HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }
}

async fn ask(send: &mut Sender, method: &str, path: &str, body: &str) -> Result<Answer, String> {
    send.ready().await.map_err(|e| format!("ready: {e}"))?;
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let resp = send
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// One request on a fresh connection.
async fn ask_once(addr: SocketAddr, who: &str, path: &str, body: &Value) -> Answer {
    let mut send = open(addr, &tls_for(who)).await.unwrap();
    ask(&mut send, "POST", path, &body.to_string())
        .await
        .unwrap()
}

/// `credgate <args>`: (success, stdout + stderr).
fn cli(args: &[&std::ffi::OsStr]) -> (bool, String) {
    let out = Command::new(bin()).args(args).output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `credgate audit export` then `credgate audit verify` (with `--previous`
/// when given): the parsed export, after asserting both succeeded.
fn export_and_verify(
    config: &Path,
    out: &Path,
    key: &str,
    previous: Option<&Path>,
) -> (Value, Vec<(u64, AuditEntry)>) {
    let (ok, text) = cli(&[
        "audit".as_ref(),
        "export".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
    assert!(ok, "credgate audit export failed: {text}");
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "audit".as_ref(),
        "verify".as_ref(),
        out.as_os_str(),
        "--key".as_ref(),
        key.as_ref(),
    ];
    if let Some(p) = previous {
        args.extend(["--previous".as_ref(), p.as_os_str()]);
    }
    let (ok, text) = cli(&args);
    assert!(
        ok && text.starts_with("ok: "),
        "credgate audit verify failed: {text}"
    );
    let file = std::fs::read_to_string(out).unwrap();
    let mut lines = file.lines();
    let header: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    let entries = lines
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["seq"].as_u64().unwrap(),
                AuditEntry::parse(v["entry"].as_str().unwrap().as_bytes()).unwrap(),
            )
        })
        .collect();
    (header, entries)
}

async fn seed_sqlite(url: &str) {
    let store = Store::connect(url, 1).await.unwrap();
    credgate::cli::seed(&store).await.unwrap();
    store.close().await;
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

// ------------------------------------------------------------ 1. kill -9

// ------------------------------------------------------------ 2. slow clients

// ------------------------------------------------------------ 3. storage refuses writes

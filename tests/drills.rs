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

mod common;

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

#[derive(Default)]
struct LoadReport {
    acked: Vec<(String, u64)>,
    failures: Vec<String>,
}

/// Queries back to back on a keep-alive connection until the gateway dies.
/// Anything but 200 before `killing` is set is a failure.
async fn load_worker(addr: SocketAddr, who: &'static str, killing: Arc<AtomicBool>) -> LoadReport {
    let tls = tls_for(who);
    let body = query(
        "legal_person",
        ids::CERAMICS,
        "financing",
        &["enterprise_name", "penalty_content"],
    )
    .to_string();
    let mut report = LoadReport::default();
    let mut conn: Option<Sender> = None;
    loop {
        if conn.is_none() {
            match open(addr, &tls).await {
                Ok(s) => conn = Some(s),
                Err(e) => {
                    if killing.load(Ordering::SeqCst) {
                        return report;
                    }
                    report.failures.push(e);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let send = conn.as_mut().unwrap();
        match ask(send, "POST", "/v1/query", &body).await {
            Ok(a) if a.status == 200 => {
                let rid = a.header("x-request-id").expect("x-request-id");
                let seq = a.header("x-audit-seq").expect("x-audit-seq");
                report.acked.push((rid, seq.parse().unwrap()));
            }
            Ok(a) => report.failures.push(format!("status {}", a.status)),
            Err(e) => {
                conn = None;
                if killing.load(Ordering::SeqCst) {
                    return report;
                }
                report.failures.push(e);
            }
        }
    }
}

/// Repeated `kill -9` under load. After each kill the gateway restarts on
/// the same SQLite file and stops gracefully; `credgate audit export` and
/// `credgate audit verify` (chained with `--previous`, so every export must
/// extend the one before) check the log offline, and every acknowledged
/// request must be in it at the sequence number it was told. Entries of
/// requests that were committed but never acknowledged (in flight at the
/// kill) are allowed, at most one per client connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn kill_9_under_load_repeatedly_loses_no_acknowledged_request() {
    let _serial = SERIAL.lock().await;
    const WORKERS: usize = 8;
    let repeat = env_u64("DRILL_REPEAT", 3);
    let load = Duration::from_millis(env_u64("DRILL_LOAD_MS", 1000));
    let started = Instant::now();
    let dir = TempDir::new("drill-kill9");
    // SQLite on purpose, whatever CREDGATE_TEST_DATABASE_URL says: the
    // embedded store is the one whose fsync discipline this checks.
    let url = format!("sqlite://{}/credgate.db", dir.0.display());
    let base = config(&dir.0, &url);
    seed_sqlite(&url).await;
    let (addr, admin) = (free_addr(), free_addr());
    let cfg = write_config(&dir.0, &base, addr, admin, &url, |_| {});
    let log = dir.0.join("gateway.log");
    let key = verifier_key(&base);
    let mut previous: Option<PathBuf> = None;
    let mut total_acked = 0;

    for rep in 0..repeat {
        let t0 = Instant::now();
        let mut gw = Gateway::spawn(&cfg, admin, &log, false);
        gw.wait_ready().await;
        let killing = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| {
                let who = ["bank", "bank2", "agency", "department"][w % 4];
                tokio::spawn(load_worker(addr, who, killing.clone()))
            })
            .collect();
        tokio::time::sleep(load).await;
        killing.store(true, Ordering::SeqCst);
        gw.kill9();
        let mut acked = Vec::new();
        let mut failures = Vec::new();
        for w in workers {
            let r = w.await.unwrap();
            acked.extend(r.acked);
            failures.extend(r.failures);
        }
        assert!(
            failures.is_empty(),
            "rep {rep}: requests failed before the kill: {:?}\n{}",
            &failures[..failures.len().min(5)],
            gw.log_tail()
        );
        assert!(
            acked.len() >= 20,
            "rep {rep}: too little load before the kill ({} acknowledged)",
            acked.len()
        );

        // Restart on the same file, then a graceful stop (final checkpoint).
        let mut gw = Gateway::spawn(&cfg, admin, &log, false);
        gw.wait_ready().await;
        let status = gw.terminate();
        assert!(
            status.success(),
            "graceful stop: {status}\n{}",
            gw.log_tail()
        );

        let out = dir.0.join(format!("export-{rep}.jsonl"));
        let (header, entries) = export_and_verify(&cfg, &out, &key, previous.as_deref());
        let store = Store::connect(&url, 1).await.unwrap();
        let (size, _) = store.log_head().await.unwrap();
        store.close().await;
        assert_eq!(header["tree_size"].as_u64(), Some(size), "export = log");
        assert_eq!(entries.len() as u64, size);
        let by_rid: HashMap<&str, (u64, &AuditEntry)> = entries
            .iter()
            .map(|(seq, e)| (e.request_id.as_str(), (*seq, e)))
            .collect();
        for (rid, seq) in &acked {
            let Some((logged_seq, e)) = by_rid.get(rid.as_str()) else {
                panic!("rep {rep}: acknowledged request {rid} (seq {seq}) is not in the log");
            };
            assert_eq!(logged_seq, seq, "rep {rep}: {rid} logged at another seq");
            assert_eq!((e.action.as_str(), e.status), ("query", 200), "{rid}");
        }
        // Request ids carry a per-process prefix: this process's entries.
        let prefix = format!("{}-", acked[0].0.split('-').next().unwrap());
        let logged = entries
            .iter()
            .filter(|(_, e)| e.request_id.starts_with(&prefix))
            .count();
        let unacked = logged
            .checked_sub(acked.len())
            .expect("fewer entries than acknowledgements");
        assert!(
            unacked <= WORKERS,
            "rep {rep}: {unacked} entries without acknowledgement; at most {WORKERS} can be in flight"
        );
        assert!(
            entries.iter().all(|(_, e)| e.status < 500),
            "a 5xx was logged"
        );
        let note = dir.0.join(format!("checkpoint-{rep}.note"));
        std::fs::write(&note, header["checkpoint"].as_str().unwrap()).unwrap();
        previous = Some(note);
        total_acked += acked.len();
        eprintln!(
            "kill -9 #{}: {} acknowledged, {unacked} committed in flight, log {size} entries, export verified ({:.1} s)",
            rep + 1,
            acked.len(),
            t0.elapsed().as_secs_f64()
        );
    }
    eprintln!(
        "kill -9 drill: {repeat} kills, {total_acked} acknowledged, none lost ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
}

// ------------------------------------------------------------ 2. slow clients

/// The soft open-files limit of this process (`ulimit -n`).
fn nofile_limit() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    line.split_whitespace().nth(3).unwrap().parse().unwrap()
}

/// Make sure this process (and the gateway it spawns, which inherits the
/// limit) may open `need` files: raise the soft limit with prlimit(1) if
/// the hard limit allows.
fn ensure_nofile(need: u64) {
    if nofile_limit() >= need {
        return;
    }
    let _ = Command::new("prlimit")
        .arg(format!("--pid={}", std::process::id()))
        .arg(format!("--nofile={need}:"))
        .status();
    let have = nofile_limit();
    assert!(
        have >= need,
        "the slow-client drill needs {need} open files but `ulimit -n` is {have} and could not be raised; run `ulimit -n 4096` before the tests"
    );
}

enum Slow {
    /// Closed by the server after this long (silent: from connect;
    /// dribbling: from the end of the handshake).
    Closed(Duration),
    /// Still open after the bound.
    NotClosed(Duration),
    /// The server answered (the first bytes).
    Answered(String),
    /// Could not connect or complete the handshake.
    Refused(String),
}

impl Slow {
    fn describe(&self) -> String {
        match self {
            Slow::Closed(d) => format!("closed by the server after {d:?}"),
            Slow::NotClosed(d) => format!("still open after {d:?}"),
            Slow::Answered(first) => format!("answered: {first:?}"),
            Slow::Refused(e) => format!("refused: {e}"),
        }
    }
}

/// TCP connects that never send a ClientHello; reconnect until `until`.
async fn silent_client(
    addr: SocketAddr,
    start: Duration,
    until: Instant,
    bound: Duration,
) -> Vec<Slow> {
    tokio::time::sleep(start).await;
    let mut out = Vec::new();
    while Instant::now() < until {
        let t0 = Instant::now();
        let mut tcp = match TcpStream::connect(addr).await {
            Ok(t) => t,
            Err(e) => {
                out.push(Slow::Refused(e.to_string()));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let mut buf = [0u8; 64];
        out.push(
            match tokio::time::timeout(bound, tcp.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => Slow::Closed(t0.elapsed()),
                Ok(Ok(n)) => Slow::Answered(format!("{:?}", &buf[..n])),
                Err(_) => Slow::NotClosed(t0.elapsed()),
            },
        );
    }
    out
}

/// Complete the mTLS handshake, then send a request header one byte per
/// second, never finishing it; reconnect until `until`.
async fn dribbling_client(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    start: Duration,
    until: Instant,
    bound: Duration,
) -> Vec<Slow> {
    tokio::time::sleep(start).await;
    let header = b"POST /v1/query HTTP/1.1\r\nhost: localhost\r\nx-slow: ";
    let mut out = Vec::new();
    while Instant::now() < until {
        let stream = match tls_connect(addr, &tls).await {
            Ok(s) => s,
            Err(e) => {
                out.push(Slow::Refused(e));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let t0 = Instant::now();
        let (mut rd, mut wr) = tokio::io::split(stream);
        let mut buf = [0u8; 64];
        let mut i = 0;
        let outcome = loop {
            let byte = header.get(i).copied().unwrap_or(b'a');
            i += 1;
            if wr.write_all(&[byte]).await.is_err() || wr.flush().await.is_err() {
                break Slow::Closed(t0.elapsed());
            }
            tokio::select! {
                r = rd.read(&mut buf) => break match r {
                    Ok(0) | Err(_) => Slow::Closed(t0.elapsed()),
                    Ok(n) => Slow::Answered(String::from_utf8_lossy(&buf[..n]).into_owned()),
                },
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            if t0.elapsed() > bound {
                break Slow::NotClosed(t0.elapsed());
            }
        };
        out.push(outcome);
    }
    out
}

/// 1,000 slow clients — silent TCP connects that never send a ClientHello
/// and mTLS clients that dribble a request header one byte per second, all
/// reconnecting as soon as they are dropped — while a normal client keeps
/// opening fresh mTLS connections and querying. The normal client must be
/// served every time within the latency target; every slow connection
/// must be cut by the handshake timeout or the header read timeout (not
/// earlier: that would mean it never held a slot); afterwards the gateway
/// holds no connections and serves normally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn a_thousand_slow_clients_do_not_starve_a_normal_one() {
    let _serial = SERIAL.lock().await;
    // The limits under test, explicit.
    const MAX_CONNECTIONS: u64 = 1100;
    const HANDSHAKE_MS: u64 = 1000;
    const IDLE_MS: u64 = 2000;
    let silent = env_u64("DRILL_SLOW_SILENT", 700);
    let dribble = env_u64("DRILL_SLOW_DRIBBLE", 300);
    let attack = Duration::from_millis(env_u64("DRILL_ATTACK_MS", 3000));
    // Latency is a benchmark figure, not a test assertion (the CI machine
    // may be loaded): the p99 is printed, and asserted only when
    // `DRILL_P99_MS` is set, e.g. `DRILL_P99_MS=200` on a quiet machine.
    let p99_target = std::env::var("DRILL_P99_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis);
    let slow = silent + dribble;
    assert!(slow < MAX_CONNECTIONS, "leave a slot for the normal client");
    ensure_nofile(slow + 256);
    let started = Instant::now();

    let dir = TempDir::new("drill-slow");
    let url = format!("sqlite://{}/credgate.db", dir.0.display());
    let base = config(&dir.0, &url);
    seed_sqlite(&url).await;
    let (addr, admin) = (free_addr(), free_addr());
    let cfg = write_config(&dir.0, &base, addr, admin, &url, |server| {
        server.max_connections = MAX_CONNECTIONS as usize;
        server.handshake_timeout_ms = HANDSHAKE_MS;
        server.idle_timeout_ms = IDLE_MS;
        // A dribbled request head is cut by the head deadline.
        server.header_timeout_ms = IDLE_MS;
    });
    let mut gw = Gateway::spawn(&cfg, admin, &dir.0.join("gateway.log"), false);
    gw.wait_ready().await;

    // Ramp the slow clients up over `ramp` (spreads the handshakes), then
    // keep them reconnecting for `attack`.
    let ramp = Duration::from_millis(1000);
    let until = Instant::now() + ramp + attack;
    let silent_bound = Duration::from_millis(HANDSHAKE_MS + 1500);
    let dribble_bound = Duration::from_millis(IDLE_MS + 2000);
    let mut tasks = Vec::new();
    for i in 0..silent {
        let start = ramp * i as u32 / silent as u32;
        tasks.push((
            "silent",
            tokio::spawn(silent_client(addr, start, until, silent_bound)),
        ));
    }
    let tls = tls_for("bank2");
    for i in 0..dribble {
        let start = ramp * i as u32 / dribble as u32;
        tasks.push((
            "dribbling",
            tokio::spawn(dribbling_client(
                addr,
                tls.clone(),
                start,
                until,
                dribble_bound,
            )),
        ));
    }
    tokio::time::sleep(ramp).await;

    // Sample the gateway's open connections while the normal client runs.
    let sampling = Arc::new(AtomicBool::new(true));
    let samples = {
        let sampling = sampling.clone();
        tokio::spawn(async move {
            let mut v = Vec::new();
            while sampling.load(Ordering::Relaxed) {
                if let Ok((_, m)) = admin_get(admin, "/metrics").await {
                    v.push(metric(&m, "credgate_connections_open").unwrap_or(0.0) as u64);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            v
        })
    };

    // The normal client: a fresh mTLS connection per request.
    let normal = Client::new(addr, Some("bank"));
    let body = Bytes::from(
        query(
            "legal_person",
            ids::CERAMICS,
            "financing",
            &["enterprise_name"],
        )
        .to_string(),
    );
    let mut latencies = Vec::new();
    let mut failures = Vec::new();
    while Instant::now() < until {
        let t0 = Instant::now();
        match normal
            .send("POST", "/v1/query", body.clone(), Some("application/json"))
            .await
        {
            Ok(r) if r.status == 200 => latencies.push(t0.elapsed()),
            Ok(r) => failures.push(format!("status {}", r.status)),
            Err(e) => failures.push(e),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sampling.store(false, Ordering::Relaxed);
    let samples = samples.await.unwrap();

    // Every slow client observes its connection being cut.
    let mut held = HashMap::<&str, Vec<Duration>>::new();
    let mut problems = Vec::new();
    for (kind, t) in tasks {
        for s in t.await.unwrap() {
            match s {
                Slow::Closed(d) => held.entry(kind).or_default().push(d),
                other => problems.push(format!("{kind}: {}", other.describe())),
            }
        }
    }
    let recovered_at = Instant::now();
    let deadline = recovered_at + Duration::from_millis(IDLE_MS + 3000);
    let open_after = loop {
        let m = metrics(admin).await;
        let open = metric(&m, "credgate_connections_open").unwrap_or(-1.0);
        if open == 0.0 || Instant::now() > deadline {
            break open;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let m = metrics(admin).await;
    let after = normal
        .send("POST", "/v1/query", body.clone(), Some("application/json"))
        .await
        .map(|r| r.status);

    latencies.sort();
    let p50 = percentile(&latencies, 0.5);
    let p99 = percentile(&latencies, 0.99);
    let (mut silent_held, mut dribble_held) = (
        held.remove("silent").unwrap_or_default(),
        held.remove("dribbling").unwrap_or_default(),
    );
    silent_held.sort();
    dribble_held.sort();
    let mut sorted = samples.clone();
    sorted.sort();
    let median_open = sorted.get(sorted.len() / 2).copied().unwrap_or(0);
    eprintln!(
        "slow clients: {silent} silent + {dribble} dribbling; gateway open connections median {median_open} (samples {samples:?}); \
         normal client {} requests, p50 {p50:?}, p99 {p99:?}, max {:?}; silent connections {} cut after {:?}..{:?}; \
         dribbling {} cut after {:?}..{:?}; handshake timeouts {:?}, rejected {:?}; open after {open_after} ({:.1} s total)",
        latencies.len(),
        latencies.last(),
        silent_held.len(),
        silent_held.first(),
        silent_held.last(),
        dribble_held.len(),
        dribble_held.first(),
        dribble_held.last(),
        metric(&m, "credgate_handshake_timeouts_total"),
        metric(&m, "credgate_connections_rejected_total"),
        started.elapsed().as_secs_f64()
    );

    // The normal client was served, every time, fast.
    assert!(
        failures.is_empty(),
        "normal client failed {} times: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(latencies.len() >= 20, "too few normal requests");
    if let Some(target) = p99_target {
        assert!(p99 < target, "normal client p99 {p99:?} >= {target:?}");
    }
    // The attack was real: the slow clients held their slots.
    assert!(
        median_open as f64 >= 0.9 * slow as f64,
        "the gateway held only {median_open} connections (median), expected ~{slow}"
    );
    assert!(
        problems.is_empty(),
        "{} slow clients misbehaved: {:?}",
        problems.len(),
        &problems[..problems.len().min(5)]
    );
    let hs = Duration::from_millis(HANDSHAKE_MS);
    let idle = Duration::from_millis(IDLE_MS);
    assert!(
        silent_held.len() as u64 >= silent,
        "every silent client connected"
    );
    assert!(
        silent_held[0] >= hs - Duration::from_millis(50),
        "a silent connection was cut before the handshake timeout: {:?}",
        silent_held[0]
    );
    assert!(
        dribble_held.len() as u64 >= dribble,
        "every dribbling client connected"
    );
    assert!(
        dribble_held[0] >= idle - Duration::from_millis(50),
        "a dribbling connection was cut before the header timeout: {:?}",
        dribble_held[0]
    );
    // Limits: nobody was turned away at the cap; silent ones hit the
    // handshake timeout (NotClosed above catches a missing header timeout).
    assert_eq!(metric(&m, "credgate_connections_rejected_total"), Some(0.0));
    assert!(
        metric(&m, "credgate_handshake_timeouts_total").unwrap_or(0.0) >= silent_held.len() as f64,
        "handshake timeouts not counted"
    );
    // Recovery.
    assert_eq!(open_after, 0.0, "connections still open after the attack");
    assert_eq!(after, Ok(200), "served after the attack");
    let status = gw.terminate();
    assert!(status.success(), "graceful stop: {status}");
}

// ------------------------------------------------------------ 3. storage refuses writes

/// How the drill takes the database's writes away and gives them back.
enum Outage {
    /// SQLite: `prlimit --fsize=0` on the gateway process (started with
    /// SIGXFSZ ignored): every write(2) to a regular file then fails with
    /// EFBIG, as on a full disk, while reads work. That covers the audit
    /// log's write-ahead file and tiles as much as the database.
    SqliteNoWrites,
    /// PostgreSQL: `default_transaction_read_only` on the database and the
    /// gateway's sessions terminated, so it reconnects read-only.
    PostgresReadOnly { admin_url: String, db: String },
}

impl Outage {
    async fn begin(&self, pid: u32) {
        match self {
            Outage::SqliteNoWrites => prlimit_fsize(pid, "0:"),
            Outage::PostgresReadOnly { admin_url, db } => {
                pg_admin(
                    admin_url,
                    &[
                        &format!("ALTER DATABASE {db} SET default_transaction_read_only = on"),
                        &terminate_sessions(db),
                    ],
                )
                .await
            }
        }
    }

    async fn end(&self, pid: u32) {
        match self {
            Outage::SqliteNoWrites => prlimit_fsize(pid, "unlimited:"),
            Outage::PostgresReadOnly { admin_url, db } => {
                pg_admin(
                    admin_url,
                    &[
                        &format!("ALTER DATABASE {db} RESET default_transaction_read_only"),
                        &terminate_sessions(db),
                    ],
                )
                .await
            }
        }
    }
}

fn prlimit_fsize(pid: u32, limit: &str) {
    let status = Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg(format!("--fsize={limit}"))
        .status()
        .expect("prlimit(1) (util-linux) is needed for the SQLite storage drill");
    assert!(status.success(), "prlimit --fsize={limit} failed");
}

fn terminate_sessions(db: &str) -> String {
    format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}' AND pid <> pg_backend_pid()"
    )
}

async fn pg_admin(url: &str, statements: &[&str]) {
    let admin = Store::connect_admin(url).await.unwrap();
    for s in statements {
        admin.execute_raw(s).await.unwrap();
    }
    admin.close().await;
}

/// (records, log size), read by this process: the records table, and the
/// log's durable head (its files beside SQLite, or its PostgreSQL head row).
async fn counts(url: &str) -> (i64, i64) {
    if url.starts_with("postgres") {
        // Store::connect would migrate, which a read-only database refuses.
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let records = sqlx::query_scalar("SELECT COUNT(*) FROM records")
            .fetch_one(&pool)
            .await
            .unwrap();
        let size = sqlx::query_scalar("SELECT size FROM tlog_head WHERE id = 1")
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        return (records, size);
    }
    let store = Store::connect(url, 1).await.unwrap();
    let records = store.record_count().await.unwrap();
    let (size, _) = store.log_head().await.unwrap();
    store.close().await;
    (records, size as i64)
}

/// Fail closed while the database refuses writes, recover when it takes
/// them again: during the outage queries (which the gateway can still
/// read data for) and submissions get 503 `audit_unavailable` with no data,
/// `/readyz` is 503 with the reason, nothing is written; once writes are
/// possible `/readyz` turns ready again by itself (no traffic needed: a
/// load balancer sends none to a node that is not ready), service resumes
/// at the next sequence number and the log verifies offline.
async fn storage_outage_drill(url: &str, outage: Outage, dir: TempDir) {
    let started = Instant::now();
    let base = config(&dir.0, url);
    {
        let store = Store::connect(url, 1).await.unwrap();
        credgate::cli::seed(&store).await.unwrap();
        store.close().await;
    }
    let (addr, admin) = (free_addr(), free_addr());
    let cfg = write_config(&dir.0, &base, addr, admin, url, |_| {});
    let mut gw = Gateway::spawn(
        &cfg,
        admin,
        &dir.0.join("gateway.log"),
        matches!(outage, Outage::SqliteNoWrites),
    );
    gw.wait_ready().await;

    let q = query(
        "legal_person",
        ids::CERAMICS,
        "financing",
        &["enterprise_name", "penalty_content"],
    );
    let secret = "淄博鲁瓷陶瓷有限公司"; // the enterprise_name the query returns
    let before = ask_once(addr, "bank", "/v1/query", &q).await;
    assert_eq!(before.status, 200);
    assert!(String::from_utf8_lossy(&before.body).contains(secret));
    let submission = json!({"records": [{
        "subject": {"type": "legal_person", "id": ids::CHEM},
        "item": "admin_licence",
        "fields": {"licence_no": "JY13703030099999", "licence_name": "食品经营许可"}}]});
    let (records0, size0) = counts(url).await;

    outage.begin(gw.pid()).await;
    let mut refused = 0;
    for i in 0..6 {
        let (who, path, body) = if i % 3 == 2 {
            ("department", "/v1/records", &submission)
        } else {
            ("bank", "/v1/query", &q)
        };
        let a = ask_once(addr, who, path, body).await;
        let text = String::from_utf8_lossy(&a.body).into_owned();
        assert_eq!(
            (a.status, a.json()["error"]["code"].as_str()),
            (503, Some("audit_unavailable")),
            "{path} during the outage: {text}, x-audit-seq {:?}\n{}",
            a.header("x-audit-seq"),
            gw.log_tail()
        );
        assert!(
            !text.contains(secret),
            "data sent without an audit entry: {text}"
        );
        assert!(a.json().get("records").is_none() && a.json().get("decisions").is_none());
        assert!(
            a.header("x-audit-seq").is_none(),
            "no audit position without an entry"
        );
        refused += 1;
    }
    let (status, reason) = gw.admin_get("/readyz").await;
    assert_eq!(status, 503, "/readyz during the outage: {reason}");
    assert!(
        reason.contains("audit log write failed"),
        "/readyz reason: {reason}"
    );
    let (status, _) = gw.admin_get("/healthz").await;
    assert_eq!(status, 200, "alive, only not ready");
    let m = gw.admin_get("/metrics").await.1;
    assert!(metric(&m, "credgate_audit_unavailable_total").unwrap_or(0.0) >= refused as f64);
    assert_eq!(
        counts(url).await,
        (records0, size0),
        "nothing written during the outage"
    );

    outage.end(gw.pid()).await;
    // Readiness must come back without API traffic.
    let restored = Instant::now();
    let deadline = restored + Duration::from_secs(10);
    let ready_after = loop {
        let (status, body) = gw.admin_get("/readyz").await;
        if status == 200 {
            break Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "/readyz still {status} 10 s after the database took writes again (and no traffic): {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let recovery = ready_after - restored;
    let after = ask_once(addr, "bank", "/v1/query", &q).await;
    assert_eq!(after.status, 200, "{:?}", after.json());
    assert!(String::from_utf8_lossy(&after.body).contains(secret));
    assert_eq!(
        after.header("x-audit-seq"),
        Some(size0.to_string()),
        "the first entry after the outage follows the last one before it"
    );
    let sub = ask_once(addr, "department", "/v1/records", &submission).await;
    assert_eq!(sub.status, 201, "{:?}", sub.json());
    assert_eq!(counts(url).await, (records0 + 1, size0 + 2));

    let status = gw.terminate();
    assert!(
        status.success(),
        "graceful stop: {status}\n{}",
        gw.log_tail()
    );
    let (_, entries) = export_and_verify(
        &cfg,
        &dir.0.join("export.jsonl"),
        &verifier_key(&base),
        None,
    );
    assert_eq!(entries.len() as i64, size0 + 2);
    assert!(entries.iter().all(|(_, e)| e.status != 503));
    eprintln!(
        "storage outage ({}): {refused} requests refused with 503 audit_unavailable, /readyz 503, nothing written; \
         ready again {:?} after writes returned; log of {} entries verifies ({:.1} s)",
        match outage {
            Outage::SqliteNoWrites => "SQLite, writes fail with EFBIG",
            Outage::PostgresReadOnly { .. } => "PostgreSQL read-only",
        },
        recovery,
        entries.len(),
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn sqlite_refusing_writes_fails_closed_and_recovers() {
    let _serial = SERIAL.lock().await;
    let dir = TempDir::new("drill-nowrite");
    let url = format!("sqlite://{}/credgate.db", dir.0.display());
    storage_outage_drill(&url, Outage::SqliteNoWrites, dir).await;
}

/// Drops the drill's PostgreSQL database, also when the drill fails.
struct PgDatabase {
    admin_url: String,
    name: String,
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        // A thread of its own: Drop may run inside the test's runtime.
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(pg_admin(
                    &url,
                    &[&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")],
                ))
        })
        .join();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn postgres_read_only_fails_closed_and_recovers() {
    let _serial = SERIAL.lock().await;
    let admin_url = std::env::var("CREDGATE_DRILL_PG_URL")
        .or_else(|_| std::env::var("CREDGATE_TEST_DATABASE_URL"))
        .ok()
        .filter(|u| u.starts_with("postgres"))
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into());
    // No PostgreSQL is a failure, never a pass: scripts/test.sh starts one.
    if let Err(e) = Store::connect_admin(&admin_url).await {
        panic!(
            "postgres_read_only_fails_closed_and_recovers needs PostgreSQL at {admin_url} ({e}); \
             scripts/test.sh starts one, or set CREDGATE_DRILL_PG_URL"
        );
    }
    static N: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        "credgate_drill_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    pg_admin(
        &admin_url,
        &[
            &format!("DROP DATABASE IF EXISTS {name}"),
            &format!("CREATE DATABASE {name}"),
        ],
    )
    .await;
    let _guard = PgDatabase {
        admin_url: admin_url.clone(),
        name: name.clone(),
    };
    let (prefix, _) = admin_url.rsplit_once('/').unwrap();
    let url = format!("{prefix}/{name}");
    storage_outage_drill(
        &url,
        Outage::PostgresReadOnly {
            admin_url: admin_url.clone(),
            db: name,
        },
        TempDir::new("drill-readonly"),
    )
    .await;
}

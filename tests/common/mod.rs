//! Test harness: a real gateway on an ephemeral port, with real generated
//! certificates, a real database and a real mTLS client.
//!
//! The store is SQLite in a temporary directory, or — when
//! `CREDGATE_TEST_DATABASE_URL` is set to a PostgreSQL URL — a fresh
//! PostgreSQL database created for the test and dropped afterwards. `.ci/run`
//! runs the suite both ways.
#![allow(dead_code)]

pub mod process;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use credgate::config::{AuditConfig, Config, PolicyConfig, ServerConfig, StoreConfig, TlsConfig};
use credgate::server::{self, Gateway};
use credgate::store::Store;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Run a command to completion without blocking the test's runtime.
///
/// Tests run on a current-thread runtime that also drives the in-process
/// gateway. A blocking `Command::output` there freezes the gateway, and if
/// one of its tasks holds a transaction open at that moment (the indexer
/// does, every time the log grows) a CLI command that needs the SQLite
/// write lock waits out its busy timeout and fails with "database is
/// locked". Every CLI run beside a serving gateway goes through here.
pub async fn output(mut cmd: std::process::Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("the command's thread")
        .expect("the command runs")
}

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("credgate-it-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Certificates shared by every test of one binary (generated once).
pub fn certs() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let p = std::env::temp_dir().join(format!("credgate-it-certs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        credgate::cli::certs_init(&p).unwrap();
        p
    })
}

pub fn policies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")
}

/// The database for one test: a SQLite file, or a fresh PostgreSQL database.
pub async fn test_database(dir: &Path) -> (String, Option<String>) {
    match std::env::var("CREDGATE_TEST_DATABASE_URL") {
        Ok(base) if base.starts_with("postgres") => {
            let (url, name) = pg_test_database(&base).await;
            (url, Some(name))
        }
        _ => (format!("sqlite://{}/credgate.db", dir.display()), None),
    }
}

/// Drop the PostgreSQL database [`test_database`] made for a test, if it
/// made one (`None`: the test ran on SQLite in its temporary directory).
#[allow(dead_code)]
pub async fn drop_test_database(name: Option<String>) {
    let Some(db) = name else { return };
    // The server the database was made on: also when a test made one on
    // the local server without `CREDGATE_TEST_DATABASE_URL` set.
    let base = pg_base_url();
    let admin = credgate::store::Store::connect_admin(&base).await.unwrap();
    let _ = admin
        .execute_raw(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        .await;
    admin.close().await;
}

/// The PostgreSQL server the tests use: `CREDGATE_TEST_DATABASE_URL` if it
/// names one, else the local one `scripts/test.sh` starts.
#[allow(dead_code)]
pub fn pg_base_url() -> String {
    std::env::var("CREDGATE_TEST_DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"))
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A fresh database on the PostgreSQL server at `base`: `(url, name)`.
/// Panics when the server does not answer: a test that needs PostgreSQL
/// fails without it, it never passes by doing nothing.
pub async fn pg_test_database(base: &str) -> (String, String) {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = format!("credgate_t_{}_{}", std::process::id(), n);
    let admin = Store::connect_admin(base).await.unwrap_or_else(|e| {
        panic!("this test needs PostgreSQL at {base} ({e}); scripts/test.sh starts one")
    });
    admin
        .execute_raw(&format!("DROP DATABASE IF EXISTS {name}"))
        .await
        .unwrap();
    admin
        .execute_raw(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    admin.close().await;
    let (prefix, _) = base.rsplit_once('/').unwrap();
    (format!("{prefix}/{name}"), name)
}

pub fn config(dir: &Path, db_url: &str) -> Config {
    let c = certs();
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        if !p.exists() {
            std::fs::write(&p, bytes).unwrap();
        }
        p
    };
    let cp = credgate::audit::checkpoint::CheckpointSigner::generate_pkcs8().unwrap();
    let consent_issuer = credgate::consent::dev::DevIssuer::ensure(dir).unwrap();
    Config {
        server: ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            admin_listen: "127.0.0.1:0".parse().unwrap(),
            handshake_timeout_ms: 2_000,
            shutdown_grace_ms: 3_000,
            gateway_id: "credgate-test".into(),
            ..ServerConfig::default()
        },
        tls: TlsConfig {
            ca: c.join("ca.pem"),
            cert: c.join("server.pem"),
            key: c.join("server-key.pem"),
            crls: vec![c.join("crl.pem")],
            max_chain_depth: 0,
            crl_refresh_secs: 60,
        },
        policy: PolicyConfig {
            dir: policies(),
            mask_key_file: Some(write("mask.key", b"test-mask-key-0123456789abcdef")),
            mask_keys: vec![],
            extra_consent_issuers: Some(consent_issuer.issuers_file),
        },
        store: StoreConfig {
            url: db_url.to_owned(),
            max_connections: 4,
            acquire_timeout_ms: credgate::store::DEFAULT_ACQUIRE_TIMEOUT.as_millis() as u64,
        },
        audit: AuditConfig {
            subject_key_file: Some(write("subject.key", b"test-subject-key-0123456789abcd")),
            subject_keys: vec![],
            checkpoint_key_file: write("checkpoint.key", &cp),
            checkpoint_cosign_key_files: vec![],
            origin: "credgate.test/audit".into(),
            checkpoint_interval_secs: 1,
            max_batch: 512,
            log_dir: None,
            wal_snapshot_mib: None,
        },
    }
}

/// Write `cfg` as the TOML file the real binary reads (`credgate serve
/// --config`); returns the path.
pub fn write_config_file(cfg: &Config, path: &Path) -> PathBuf {
    std::fs::write(path, toml::to_string(cfg).expect("config serialises")).unwrap();
    path.to_owned()
}

/// A loopback address with a port that was free a moment ago.
pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A running gateway.
pub struct TestGateway {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub store: Store,
    pub config: Config,
    pub verifier_key: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    pg_db: Option<String>,
    pub dir: TempDir,
}

impl TestGateway {
    /// Start with sample data seeded.
    pub async fn start() -> Self {
        Self::start_with(|_| {}, true).await
    }

    /// Start after letting the caller adjust the config.
    pub async fn start_with(adjust: impl FnOnce(&mut Config), seed: bool) -> Self {
        let dir = TempDir::new("gw");
        let (url, pg_db) = test_database(&dir.0).await;
        let mut cfg = config(&dir.0, &url);
        adjust(&mut cfg);
        Self::start_config(cfg, dir, pg_db, seed).await
    }

    pub async fn start_config(
        cfg: Config,
        dir: TempDir,
        pg_db: Option<String>,
        seed: bool,
    ) -> Self {
        // Pinned calendar: the sample records' disclosure periods are judged
        // against a fixed day, so the suite does not change verdict with time.
        Self::start_prepared(cfg, dir, pg_db, seed, |g| {
            g.app()
                .set_clock(std::sync::Arc::new(|| time::macros::date!(2026 - 11 - 23)))
        })
        .await
    }

    /// Like [`TestGateway::start_config`], letting the caller prepare the
    /// built gateway before it serves (e.g. install a fixed clock).
    pub async fn start_prepared(
        cfg: Config,
        dir: TempDir,
        pg_db: Option<String>,
        seed: bool,
        prepare: impl FnOnce(&Gateway),
    ) -> Self {
        let gw = Gateway::build(&cfg).await.expect("gateway builds");
        prepare(&gw);
        let store = gw.app().store.clone();
        if seed {
            credgate::cli::seed(&store).await.unwrap();
        }
        let verifier_key = gw.checkpoint_verifier_key();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let admin_addr = admin.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server::run(listener, admin, gw, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        TestGateway {
            addr,
            admin: admin_addr,
            store,
            config: cfg,
            verifier_key,
            stop: Some(tx),
            task: Some(task),
            pg_db,
            dir,
        }
    }

    /// This deployment's development consent issuer (key in the temp dir).
    pub fn consent_issuer(&self) -> credgate::consent::dev::DevIssuer {
        credgate::consent::dev::DevIssuer::ensure(&self.dir.0).unwrap()
    }

    /// A client presenting `<who>.pem` from the dev certificates.
    pub fn client(&self, who: &str) -> Client {
        Client::new(self.addr, Some(who))
    }

    /// Graceful stop; waits for the audit log to flush.
    pub async fn stop(mut self) {
        self.shutdown().await;
    }

    /// Graceful stop that keeps the data: the directory and, on
    /// PostgreSQL, the database (drop it with [`drop_test_database`]).
    #[allow(dead_code)]
    pub async fn stop_keeping_data(mut self) -> (TempDir, Option<String>) {
        self.stop_serving().await;
        self.store.close().await;
        let pg_db = self.pg_db.take();
        let dir = std::mem::replace(&mut self.dir, TempDir(PathBuf::new()));
        (dir, pg_db)
    }

    async fn stop_serving(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
    }

    async fn shutdown(&mut self) {
        self.stop_serving().await;
        if let Some(db) = self.pg_db.take() {
            self.store.close().await;
            let base = std::env::var("CREDGATE_TEST_DATABASE_URL").unwrap();
            let admin = Store::connect_admin(&base).await.unwrap();
            let _ = admin
                .execute_raw(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                .await;
            admin.close().await;
        }
    }

    /// GET on the admin listener: (status, body).
    pub async fn admin_get(&self, path: &str) -> (u16, String) {
        let tcp = tokio::net::TcpStream::connect(self.admin).await.unwrap();
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = hyper::Request::get(path)
            .header("host", "localhost")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}

/// An mTLS client (one connection per request, so handshake outcomes are visible).
#[derive(Clone)]
pub struct Client {
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
}

/// A response: status, JSON body (Null if not JSON), headers.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub body: Value,
    pub headers: hyper::HeaderMap,
    /// The body as received (exports are not JSON).
    pub bytes: Bytes,
}

impl Client {
    pub fn new(addr: SocketAddr, who: Option<&str>) -> Self {
        Self::with_ca(addr, who, &certs().join("ca.pem"))
    }

    pub fn with_ca(addr: SocketAddr, who: Option<&str>, ca: &Path) -> Self {
        let c = certs();
        let cert = who.map(|w| (c.join(format!("{w}.pem")), c.join(format!("{w}-key.pem"))));
        let tls = credgate::tls::client_config(
            ca,
            cert.as_ref().map(|(a, b)| (a.as_path(), b.as_path())),
        )
        .unwrap();
        Client { addr, tls }
    }

    /// Send a request; Err if the TLS handshake or the connection fails.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Bytes,
        ctype: Option<&str>,
    ) -> Result<Resp, String> {
        let tcp = tokio::net::TcpStream::connect(self.addr)
            .await
            .map_err(|e| e.to_string())?;
        let connector = tokio_rustls::TlsConnector::from(self.tls.clone());
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost");
        if let Some(ct) = ctype {
            req = req.header("content-type", ct);
        }
        let req = req.body(Full::new(body)).unwrap();
        let resp = send
            .send_request(req)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Resp {
            status,
            body,
            headers,
            bytes,
        })
    }

    pub async fn post(&self, path: &str, body: &Value) -> Resp {
        self.send(
            "POST",
            path,
            Bytes::from(body.to_string()),
            Some("application/json"),
        )
        .await
        .unwrap()
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send("GET", path, Bytes::new(), None).await.unwrap()
    }
}

/// A client TLS configuration presenting `<who>.pem`, offering `alpn`.
pub fn tls_config(who: &str, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let c = certs();
    let mut cfg = (*credgate::tls::client_config(
        &c.join("ca.pem"),
        Some((
            c.join(format!("{who}.pem")).as_path(),
            c.join(format!("{who}-key.pem")).as_path(),
        )),
    )
    .unwrap())
    .clone();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

/// An mTLS connection to `addr` under `cfg` (for clients that keep one
/// connection: keep-alive, HTTP/2, raw bytes).
pub async fn connect_tls(
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    tokio_rustls::TlsConnector::from(cfg)
        .connect(
            rustls_pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap()
}

/// Sample identifiers.
pub mod ids {
    pub const CERAMICS: &str = "91370300MA3CXQ001R";
    pub const CHEM: &str = "91370300MA3DFR002A";
    pub const PERSON: &str = "370303198503150015";
    pub const PERSON2: &str = "370302199007220027";
    pub const BANK: &str = "91370300164100001A";
    pub const BANK2: &str = "91370300164100002D";
    pub const DEPARTMENT: &str = "113703000043000010";
    pub const PORTAL: &str = "123703000043000046";
}

pub fn query(subject_type: &str, id: &str, purpose: &str, fields: &[&str]) -> Value {
    serde_json::json!({
        "subject": {"type": subject_type, "id": id},
        "purpose": purpose,
        "fields": fields,
    })
}

/// Decisions of a query response as (field, decision, reason).
pub fn decisions(body: &Value) -> Vec<(String, String, String)> {
    body["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["field"].as_str().unwrap().to_owned(),
                d["decision"].as_str().unwrap().to_owned(),
                d["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// All audit entries, parsed.
pub async fn audit_entries(store: &Store) -> Vec<credgate::audit::AuditEntry> {
    store
        .audit_range(0, u64::MAX / 2)
        .await
        .unwrap()
        .into_iter()
        .map(|s| credgate::audit::AuditEntry::parse(&s.entry).unwrap())
        .collect()
}

/// The negative-information notice a written consent shows (as the
/// consent tests' issuer sends it).
pub const NOTICE: &str =
    "如未按约定履行还款义务，相关信息将被记入信用档案，可能影响您今后获得金融服务。";

/// A consent token from the dev issuer in `home`: the sample person lets
/// the sample bank read income for financing, an hour, up to 1,000 uses.
pub fn dev_income_token(home: &Path, jti: &str) -> String {
    let dev = credgate::consent::dev::DevIssuer::ensure(home).unwrap();
    let args = credgate::cli::IssueArgs {
        issuer_key: dev.key_file.clone(),
        kid: dev.kid.clone(),
        iss: dev.iss.clone(),
        sub: ids::PERSON.into(),
        grantee: ids::BANK.into(),
        purpose: "financing".into(),
        scope: vec!["income".into()],
        ttl: 3600,
        max_uses: Some(1000),
        written: true,
        notice_text: Some(NOTICE.into()),
        aud: "credgate-test".into(),
        jti: Some(jti.into()),
    };
    credgate::cli::consent_issue(&args, credgate::consent::now_unix()).unwrap()
}

/// Queries on keep-alive mTLS connections as `who`: each answer's status
/// and `x-request-id`.
pub async fn keep_alive_queries(gw: &TestGateway, who: &str, n: usize) -> Vec<(u16, String)> {
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::TokioIo;
    let tls = connect_tls(gw.addr, tls_config(who, &[b"http/1.1"])).await;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    // Six fields, as in the bench: an entry of about a kilobyte.
    let body = query(
        "legal_person",
        ids::CERAMICS,
        "financing",
        &[
            "enterprise_name",
            "business_status",
            "registered_capital",
            "penalty_content",
            "penalty_date",
            "tax_paid_annual",
        ],
    )
    .to_string();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let req = hyper::Request::post("/v1/query")
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(Full::new(bytes::Bytes::from(body.clone())))
            .unwrap();
        // The dispatcher takes the next request once it has finished
        // reading the last response.
        send.ready().await.unwrap();
        let resp = send.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
        resp.into_body().collect().await.unwrap();
        out.push((status, id));
    }
    out
}

/// The checkpoint `GET /v1/audit/log/checkpoint` serves, once it covers at
/// least `size` entries by the gateway's own key (bounded: 10 s).
pub async fn served_checkpoint(gw: &TestGateway, size: u64) -> String {
    use credgate::audit::checkpoint::CheckpointVerifier;
    let verifier = CheckpointVerifier::from_verifier_key(&gw.verifier_key).unwrap();
    let auditor = gw.client("auditor");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = auditor.get("/v1/audit/log/checkpoint").await;
        if r.status == 200 {
            let note = String::from_utf8(r.bytes.to_vec()).unwrap();
            if verifier.verify(&note).unwrap().size >= size {
                return note;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint of size {size} served"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

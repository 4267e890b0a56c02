//! Live reload over real mTLS: CRLs, the server certificate and
//! `policies/` change while the gateway serves (in-process gateways for the
//! admin `POST /reload` and the CRL timer; the real binary for SIGHUP and
//! `credgate reload`). SQLite, or PostgreSQL with
//! `CREDGATE_TEST_DATABASE_URL`.
//!
//! No timing assertions: where a change takes effect asynchronously (the
//! CRL timer, a signal) the tests poll with a generous bound and assert on
//! the outcome.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use common::process::Process;
use common::{TempDir, TestGateway, certs, drop_test_database, ids, query};
use credgate::audit::AuditEntry;
use credgate::store::Store;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

const FIELD: &str = "enterprise_name";

/// A private copy of the dev certificates and of `policies/`, which a test
/// may rewrite while its gateway serves.
struct Material {
    _dir: TempDir,
    certs: PathBuf,
    policies: PathBuf,
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

impl Material {
    fn new(tag: &str) -> Material {
        let dir = TempDir::new(tag);
        let certs_dir = dir.0.join("certs");
        let policies = dir.0.join("policies");
        copy_dir(certs(), &certs_dir);
        copy_dir(&common::policies(), &policies);
        Material {
            _dir: dir,
            certs: certs_dir,
            policies,
        }
    }

    fn apply(&self, c: &mut credgate::config::Config, crl_refresh_secs: u64) {
        c.tls.ca = self.certs.join("ca.pem");
        c.tls.cert = self.certs.join("server.pem");
        c.tls.key = self.certs.join("server-key.pem");
        c.tls.crls = vec![self.certs.join("crl.pem")];
        c.tls.crl_refresh_secs = crl_refresh_secs;
        c.policy.dir = self.policies.clone();
    }

    /// Re-issue `crl.pem` (signed by the dev CA) revoking `revoked.pem` and
    /// the certificates of `stems`; written by rename, so a reader never
    /// sees half a file.
    fn revoke(&self, stems: &[&str]) {
        self.revoke_until(stems, time::Duration::days(1));
    }

    /// [`Material::revoke`] with the CRL's `nextUpdate` `next` from now.
    fn revoke_until(&self, stems: &[&str], next: time::Duration) {
        use rcgen::{
            CertificateRevocationListParams, Issuer, KeyIdMethod, KeyPair, RevocationReason,
            RevokedCertParams, SerialNumber,
        };
        let read = |n: &str| std::fs::read_to_string(self.certs.join(n)).unwrap();
        let key = KeyPair::from_pem(&read("ca-key.pem")).unwrap();
        let issuer = Issuer::from_ca_cert_pem(&read("ca.pem"), key).unwrap();
        let now = time::OffsetDateTime::now_utc();
        let revoked_certs = ["revoked"]
            .iter()
            .chain(stems)
            .map(|stem| {
                let der = CertificateDer::from_pem_slice(read(&format!("{stem}.pem")).as_bytes())
                    .unwrap();
                let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
                RevokedCertParams {
                    serial_number: SerialNumber::from_slice(cert.tbs_certificate.raw_serial()),
                    revocation_time: now - time::Duration::minutes(1),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                }
            })
            .collect();
        let crl = CertificateRevocationListParams {
            this_update: now - time::Duration::minutes(1),
            next_update: now + next,
            crl_number: SerialNumber::from(
                u64::try_from(now.unix_timestamp_nanos() / 1000).unwrap(),
            ),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&issuer)
        .unwrap();
        write_atomically(&self.certs.join("crl.pem"), crl.pem().unwrap().as_bytes());
    }

    /// Take an organisation out of the registry.
    fn deregister(&self, code: &str) {
        let p = self.policies.join("organisations.toml");
        let text = std::fs::read_to_string(&p).unwrap();
        let block = text
            .split("[[organisation]]")
            .find(|b| b.contains(&format!("code = \"{code}\"")))
            .unwrap();
        let text = text.replace(&format!("[[organisation]]{block}"), "");
        write_atomically(&p, text.as_bytes());
    }

    /// Append a field grant that withholds [`FIELD`] from banks.
    fn withhold_field_from_banks(&self) {
        let p = self.policies.join("grants.toml");
        let mut text = std::fs::read_to_string(&p).unwrap();
        text.push_str(&format!(
            "\n[[grant]]\nrole = \"bank\"\npurpose = \"financing\"\nfield = \"{FIELD}\"\naction = \"deny\"\n"
        ));
        write_atomically(&p, text.as_bytes());
    }

    /// Break `grants.toml` at a known line; returns that line's number and
    /// the text before.
    fn break_grants(&self) -> (usize, String) {
        let p = self.policies.join("grants.toml");
        let before = std::fs::read_to_string(&p).unwrap();
        let mut text = before.clone();
        text.push_str("\n[[grant]]\nrole = \"bank\"\npurpose = \"financing\"\n");
        text.push_str("class = \"public\"\n");
        let line = text.lines().count() + 1;
        text.push_str("action = \"returnn\"\n");
        write_atomically(&p, text.as_bytes());
        (line, before)
    }

    fn write_grants(&self, text: &str) {
        write_atomically(&self.policies.join("grants.toml"), text.as_bytes());
    }

    /// The hash the gateway serving `cfg` computes for these policies.
    fn policy_hash(&self, cfg: &credgate::config::Config) -> String {
        credgate::reload::policy_hash(&self.policies, cfg.policy.extra_consent_issuers.as_deref())
            .unwrap()
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// One HTTP/2 connection over mTLS (ALPN `h2`).
struct H2 {
    send: hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    driver: JoinHandle<()>,
}

impl H2 {
    async fn open(addr: SocketAddr, certs: &Path, who: &str) -> H2 {
        let mut tls = (*credgate::tls::client_config(
            &certs.join("ca.pem"),
            Some((
                &certs.join(format!("{who}.pem")),
                &certs.join(format!("{who}-key.pem")),
            )),
        )
        .unwrap())
        .clone();
        tls.alpn_protocols = vec![b"h2".to_vec()];
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let stream = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls))
            .connect(name, tcp)
            .await
            .unwrap();
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (send, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            TokioIo::new(stream),
        )
        .await
        .unwrap();
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        H2 { send, driver }
    }

    async fn post(&mut self, path: &str, body: &Value) -> (u16, Value) {
        let req = hyper::Request::post(format!("https://localhost{path}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let resp = self.send.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }
}

/// One kept-alive HTTP/1.1 connection over mTLS.
struct Conn {
    send: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    driver: JoinHandle<()>,
    /// The certificate the server presented on this connection.
    server_cert: Vec<u8>,
}

impl Conn {
    async fn open(addr: SocketAddr, certs: &Path, who: &str) -> Result<Conn, String> {
        let tls = credgate::tls::client_config(
            &certs.join("ca.pem"),
            Some((
                &certs.join(format!("{who}.pem")),
                &certs.join(format!("{who}-key.pem")),
            )),
        )
        .unwrap();
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let server_cert = stream.get_ref().1.peer_certificates().unwrap()[0].to_vec();
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn {
            send,
            driver,
            server_cert,
        })
    }

    async fn post(&mut self, path: &str, body: &Value) -> Result<(u16, Value), String> {
        self.send
            .ready()
            .await
            .map_err(|e| format!("not ready: {e}"))?;
        let req = hyper::Request::post(path)
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let resp = self
            .send
            .send_request(req)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }

    /// The server closed this connection (bounded wait).
    async fn closed_by_server(self) -> bool {
        tokio::time::timeout(Duration::from_secs(30), self.driver)
            .await
            .is_ok()
    }
}

fn bank_query() -> Value {
    query("legal_person", ids::CERAMICS, "financing", &[FIELD])
}

fn decision_of(body: &Value) -> String {
    common::decisions(body)
        .into_iter()
        .find(|(f, _, _)| f == FIELD)
        .map(|(_, d, _)| d)
        .unwrap_or_else(|| panic!("no decision for {FIELD}: {body}"))
}

/// A fresh connection as `who` can make a request (false: refused, at the
/// handshake or, with TLS 1.3, at the first read after it).
async fn new_connection_works(addr: SocketAddr, certs: &Path, who: &str) -> bool {
    match Conn::open(addr, certs, who).await {
        // Served, not merely answered: a probe that completed its handshake
        // just before a reload is answered 401 `certificate_revoked`.
        Ok(mut c) => matches!(c.post("/v1/query", &bank_query()).await, Ok((200, _))),
        Err(_) => false,
    }
}

/// Poll until `cond` holds (at most `secs` seconds, 100 ms apart).
async fn eventually<F: std::future::Future<Output = bool>>(
    secs: u64,
    mut cond: impl FnMut() -> F,
) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

async fn admin_post(admin: SocketAddr, path: &str) -> (u16, Value) {
    let tcp = tokio::net::TcpStream::connect(admin).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::post(path)
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// The value of the metric line starting with `prefix` (0 if absent).
fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn reloads(entries: &[AuditEntry]) -> Vec<&AuditEntry> {
    entries
        .iter()
        .filter(|e| e.action == "policy_reload")
        .collect()
}

fn field<'a>(e: &'a AuditEntry, name: &str) -> &'a credgate::audit::AuditField {
    e.fields
        .iter()
        .find(|f| f.field == name)
        .unwrap_or_else(|| panic!("no {name} in {e:?}"))
}

fn bank_fingerprint(certs: &Path) -> String {
    let pem = std::fs::read(certs.join("bank.pem")).unwrap();
    credgate::identity::fingerprint(CertificateDer::from_pem_slice(&pem).unwrap().as_ref())
}

/// What the revocation tests check once the bank's certificate is revoked
/// and the gateway has noticed: a new connection is refused, another
/// bank still gets through, and the bank's open connection gets 401
/// `certificate_revoked` (audited with its certificate) and is closed.
async fn assert_revoked_everywhere(gw: &TestGateway, m: &Material, open: Conn) {
    assert!(!new_connection_works(gw.addr, &m.certs, "bank").await);
    assert!(new_connection_works(gw.addr, &m.certs, "bank2").await);
    let mut open = open;
    let before = common::audit_entries(&gw.store).await.len();
    let (status, body) = open.post("/v1/query", &bank_query()).await.unwrap();
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "certificate_revoked", "{body}");
    assert!(open.closed_by_server().await, "the connection stayed open");
    let entries = common::audit_entries(&gw.store).await;
    let refused: Vec<&AuditEntry> = entries[before..]
        .iter()
        .filter(|e| e.outcome == "certificate_revoked")
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    let e = refused[0];
    assert_eq!(e.action, "query");
    assert_eq!(e.status, 401);
    assert_eq!(e.org.as_deref(), Some(ids::BANK));
    assert_eq!(
        e.cert_fp.as_deref(),
        Some(bank_fingerprint(&m.certs).as_str())
    );
    assert!(e.fields.is_empty(), "nothing was decided: {e:?}");
}

#[tokio::test]
async fn a_revoked_certificate_is_refused_within_the_crl_refresh_interval() {
    let m = Material::new("reload-crl-timer");
    let gw = TestGateway::start_with(|c| m.apply(c, 1), true).await;
    let mut open = Conn::open(gw.addr, &m.certs, "bank").await.unwrap();
    let (status, body) = open.post("/v1/query", &bank_query()).await.unwrap();
    assert_eq!(
        (status, decision_of(&body)),
        (200, "returned".into()),
        "{body}"
    );

    m.revoke(&["bank"]);
    // The timer (1 s here) notices the new file; poll generously.
    let noticed = eventually(60, || async {
        let (_, text) = gw.admin_get("/metrics").await;
        metric(&text, r#"credgate_reloads_total{what="tls",outcome="ok"}"#) >= 1.0
    })
    .await;
    assert!(noticed, "the CRL timer never reloaded");
    assert_revoked_everywhere(&gw, &m, open).await;

    let entries = common::audit_entries(&gw.store).await;
    let r = reloads(&entries);
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].outcome, "ok");
    assert_eq!(field(r[0], "trigger").decision, "crl_refresh");
    assert_eq!(field(r[0], "tls").decision, "loaded");
    assert_eq!(field(r[0], "policy").decision, "skipped");
    assert_eq!(
        r[0].policy.as_deref(),
        Some(m.policy_hash(&gw.config).as_str())
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_broken_crl_is_refused_once_and_the_old_one_keeps_serving() {
    let m = Material::new("reload-crl-broken");
    let gw = TestGateway::start_with(|c| m.apply(c, 1), true).await;
    let refused_metric = r#"credgate_reloads_total{what="tls",outcome="refused"}"#;
    let ok_metric = r#"credgate_reloads_total{what="tls",outcome="ok"}"#;
    // A corrupted CRL file (its DER no longer parses).
    let crl = std::fs::read_to_string(m.certs.join("crl.pem")).unwrap();
    write_atomically(
        &m.certs.join("crl.pem"),
        crl.replace("MII", "MIJ").as_bytes(),
    );
    let refused = eventually(60, || async {
        let (_, text) = gw.admin_get("/metrics").await;
        metric(&text, refused_metric) >= 1.0
    })
    .await;
    assert!(refused, "the broken CRL was never refused");
    // Several more ticks of the 1 s timer: the same broken file is not
    // retried, so it is refused and audited once.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(new_connection_works(gw.addr, &m.certs, "bank").await);
    assert!(!new_connection_works(gw.addr, &m.certs, "revoked").await);

    // A good CRL again (now revoking the bank) is picked up.
    m.revoke(&["bank"]);
    let loaded = eventually(60, || async {
        let (_, text) = gw.admin_get("/metrics").await;
        metric(&text, ok_metric) >= 1.0
    })
    .await;
    assert!(loaded, "the fixed CRL was never loaded");
    assert!(!new_connection_works(gw.addr, &m.certs, "bank").await);
    let (_, text) = gw.admin_get("/metrics").await;
    assert_eq!(metric(&text, refused_metric), 1.0, "{text}");
    let entries = common::audit_entries(&gw.store).await;
    let r = reloads(&entries);
    let outcomes: Vec<(&str, &str)> = r
        .iter()
        .map(|e| (e.outcome.as_str(), &*field(e, "tls").decision))
        .collect();
    assert_eq!(outcomes, [("reload_refused", "refused"), ("ok", "loaded")]);
    assert_eq!(field(r[0], "error").reason, "invalid_tls");
    assert!(
        field(r[0], "error")
            .detail
            .as_deref()
            .unwrap()
            .contains("crl.pem"),
        "{:?}",
        r[0]
    );
    gw.stop().await;
}

#[tokio::test]
async fn an_admin_reload_revokes_at_once_and_swaps_the_server_certificate_without_dropping_connections()
 {
    let m = Material::new("reload-admin-tls");
    // The timer never fires during this test: only the reload does it.
    let gw = TestGateway::start_with(|c| m.apply(c, 86_400), true).await;
    let mut open = Conn::open(gw.addr, &m.certs, "bank").await.unwrap();
    let mut agency = Conn::open(gw.addr, &m.certs, "bank2").await.unwrap();
    let mut h2 = H2::open(gw.addr, &m.certs, "bank").await;
    assert_eq!(open.post("/v1/query", &bank_query()).await.unwrap().0, 200);
    assert_eq!(h2.post("/v1/query", &bank_query()).await.0, 200);
    let old_cert = open.server_cert.clone();

    // New server certificate (same CA), then the bank revoked: one reload.
    std::fs::remove_file(m.certs.join("server.pem")).unwrap();
    std::fs::remove_file(m.certs.join("server-key.pem")).unwrap();
    credgate::cli::certs_init(&m.certs).unwrap();
    let new_cert =
        CertificateDer::from_pem_slice(&std::fs::read(m.certs.join("server.pem")).unwrap())
            .unwrap()
            .to_vec();
    assert_ne!(new_cert, old_cert);
    m.revoke(&["bank"]);
    let (status, report) = admin_post(gw.admin, "/reload").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["applied"], true, "{report}");
    assert_eq!(report["tls"], "loaded", "{report}");
    assert_eq!(report["policy"], "unchanged", "{report}");

    // The open connection of a certificate still valid keeps working on
    // the old server certificate; new connections see the new one.
    let (status, body) = agency.post("/v1/query", &bank_query()).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(agency.server_cert, old_cert);
    let fresh = Conn::open(gw.addr, &m.certs, "bank2").await.unwrap();
    assert_eq!(fresh.server_cert, new_cert);
    assert_revoked_everywhere(&gw, &m, open).await;
    // HTTP/2 too: the next stream is refused and the connection closed (GOAWAY).
    let (status, body) = h2.post("/v1/query", &bank_query()).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("certificate_revoked"))
    );
    assert!(
        tokio::time::timeout(Duration::from_secs(30), h2.driver)
            .await
            .is_ok(),
        "the HTTP/2 connection stayed open"
    );

    // Nothing changed since: a second reload swaps nothing and says so.
    let (status, report) = admin_post(gw.admin, "/reload").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (&report["tls"], &report["policy"]),
        (&json!("unchanged"), &json!("unchanged"))
    );
    let entries = common::audit_entries(&gw.store).await;
    assert_eq!(
        entries
            .iter()
            .filter(|e| e.outcome == "certificate_revoked")
            .count(),
        2,
        "one per connection of the revoked certificate"
    );
    let r = reloads(&entries);
    assert_eq!(r.len(), 2, "{r:?}");
    assert_eq!(field(r[0], "trigger").decision, "admin");
    assert_eq!(field(r[0], "tls").decision, "loaded");
    assert_eq!(r[0].status, 200);
    assert_eq!(field(r[1], "tls").decision, "unchanged");

    // The admin endpoint takes POST only.
    let (status, _) = gw.admin_get("/reload").await;
    assert_eq!(status, 405);
    gw.stop().await;
}

#[tokio::test]
async fn a_changed_grant_applies_at_the_next_request_and_a_broken_policy_is_refused_and_audited() {
    let m = Material::new("reload-policy");
    let gw = TestGateway::start_with(|c| m.apply(c, 86_400), true).await;
    let old_hash = m.policy_hash(&gw.config);
    let mut open = Conn::open(gw.addr, &m.certs, "bank").await.unwrap();
    let (status, body) = open.post("/v1/query", &bank_query()).await.unwrap();
    assert_eq!(
        (status, decision_of(&body)),
        (200, "returned".into()),
        "{body}"
    );

    m.withhold_field_from_banks();
    let new_hash = m.policy_hash(&gw.config);
    assert_ne!(new_hash, old_hash);
    let (status, report) = admin_post(gw.admin, "/reload").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["policy"], "loaded", "{report}");
    assert_eq!(report["policy_hash"], new_hash.as_str(), "{report}");

    // Next request, on the same connection and on a new one: withheld.
    let (status, body) = open.post("/v1/query", &bank_query()).await.unwrap();
    assert_eq!(
        (status, decision_of(&body)),
        (200, "withheld".into()),
        "{body}"
    );
    let mut fresh = Conn::open(gw.addr, &m.certs, "bank").await.unwrap();
    let (_, body) = fresh.post("/v1/query", &bank_query()).await.unwrap();
    assert_eq!(decision_of(&body), "withheld", "{body}");

    // A broken file: refused with its file and line, the policy in force
    // keeps serving.
    let (line, good) = m.break_grants();
    let broken_hash = m.policy_hash(&gw.config);
    let (status, report) = admin_post(gw.admin, "/reload").await;
    assert_eq!(status, 422, "{report}");
    assert_eq!(report["applied"], false, "{report}");
    assert_eq!(report["policy"], "refused", "{report}");
    assert_eq!(report["policy_hash"], new_hash.as_str(), "{report}");
    let error = report["error"].as_str().unwrap();
    assert!(error.contains(&format!("grants.toml:{line}")), "{error}");
    let (status, body) = open.post("/v1/query", &bank_query()).await.unwrap();
    assert_eq!(
        (status, decision_of(&body)),
        (200, "withheld".into()),
        "{body}"
    );

    // The log: every query names the policy it was decided under; both
    // reloads are there, the refusal with its reason and the refused hash.
    let entries = common::audit_entries(&gw.store).await;
    let queries: Vec<&AuditEntry> = entries.iter().filter(|e| e.action == "query").collect();
    let hashes: Vec<&str> = queries
        .iter()
        .map(|e| e.policy.as_deref().unwrap())
        .collect();
    assert_eq!(hashes, [&old_hash, &new_hash, &new_hash, &new_hash]);
    assert!(
        queries
            .iter()
            .all(|e| e.v == credgate::audit::ENTRY_VERSION)
    );
    let r = reloads(&entries);
    assert_eq!(r.len(), 2, "{r:?}");
    assert_eq!(
        (r[0].outcome.as_str(), r[0].policy.as_deref()),
        ("ok", Some(new_hash.as_str()))
    );
    assert_eq!(field(r[0], "policy").decision, "loaded");
    assert_eq!(
        field(r[0], "policy").detail.as_deref(),
        Some(new_hash.as_str())
    );
    assert_eq!(r[1].outcome, "reload_refused");
    assert_eq!(r[1].status, 422);
    assert_eq!(r[1].policy.as_deref(), Some(new_hash.as_str()));
    assert_eq!(field(r[1], "policy").decision, "refused");
    assert_eq!(
        field(r[1], "policy").detail.as_deref(),
        Some(broken_hash.as_str())
    );
    assert_eq!(field(r[1], "error").reason, "invalid_policy");
    assert!(
        field(r[1], "error")
            .detail
            .as_deref()
            .unwrap()
            .contains(&format!("grants.toml:{line}")),
        "{:?}",
        r[1]
    );
    // The reload entry precedes every entry decided under the new policy.
    let first_new = entries
        .iter()
        .position(|e| e.policy.as_deref() == Some(new_hash.as_str()));
    assert_eq!(
        entries[first_new.unwrap()].action,
        "policy_reload",
        "the first entry under the new policy is its reload"
    );

    // Deregistering an organisation takes effect at its open connection's
    // next request.
    m.write_grants(&good);
    let mut bank2 = Conn::open(gw.addr, &m.certs, "bank2").await.unwrap();
    assert_eq!(bank2.post("/v1/query", &bank_query()).await.unwrap().0, 200);
    m.deregister(ids::BANK2);
    let (status, report) = admin_post(gw.admin, "/reload").await;
    assert_eq!(status, 200, "{report}");
    let (status, body) = bank2.post("/v1/query", &bank_query()).await.unwrap();
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "unregistered_organisation", "{body}");
    assert_eq!(open.post("/v1/query", &bank_query()).await.unwrap().0, 200);

    let (_, text) = gw.admin_get("/metrics").await;
    assert_eq!(
        metric(
            &text,
            r#"credgate_reloads_total{what="policy",outcome="ok"}"#
        ),
        2.0,
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            r#"credgate_reloads_total{what="policy",outcome="refused"}"#
        ),
        1.0,
        "{text}"
    );
    gw.stop().await;
}

/// Reloads while queries run: every query is decided and logged under one
/// policy — its entry's hash says withheld exactly when its decision was.
#[tokio::test]
async fn queries_racing_reloads_are_each_decided_and_logged_under_one_policy() {
    let m = Material::new("reload-race");
    let gw = TestGateway::start_with(|c| m.apply(c, 86_400), true).await;
    let grants = m.policies.join("grants.toml");
    let returned_text = std::fs::read_to_string(&grants).unwrap();
    let hash_returned = m.policy_hash(&gw.config);
    m.withhold_field_from_banks();
    let withheld_text = std::fs::read_to_string(&grants).unwrap();
    let hash_withheld = m.policy_hash(&gw.config);
    m.write_grants(&returned_text);

    // The workers query until the reloads are over (at least 40 each, at
    // most 2000), so the reloads happen while queries are in flight.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|i| {
            let (addr, certs, done) = (gw.addr, m.certs.clone(), done.clone());
            tokio::spawn(async move {
                let who = if i % 2 == 0 { "bank" } else { "bank2" };
                let mut c = Conn::open(addr, &certs, who).await.unwrap();
                let mut seen = Vec::new();
                while seen.len() < 2000
                    && !(seen.len() >= 40 && done.load(std::sync::atomic::Ordering::SeqCst))
                {
                    let (status, body) = c.post("/v1/query", &bank_query()).await.unwrap();
                    assert_eq!(status, 200, "{body}");
                    seen.push(decision_of(&body));
                }
                seen
            })
        })
        .collect();
    for round in 0..10 {
        let text = if round % 2 == 0 {
            &withheld_text
        } else {
            &returned_text
        };
        m.write_grants(text);
        let (status, report) = admin_post(gw.admin, "/reload").await;
        assert_eq!(status, 200, "{report}");
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut answered = 0;
    for w in workers {
        answered += w.await.unwrap().len();
    }
    let entries = common::audit_entries(&gw.store).await;
    let queries: Vec<&AuditEntry> = entries.iter().filter(|e| e.action == "query").collect();
    assert_eq!(queries.len(), answered);
    let mut under = [0, 0];
    for e in &queries {
        let decision = &*field(e, FIELD).decision;
        let hash = e.policy.as_deref().unwrap();
        if hash == hash_returned {
            assert_eq!(decision, "returned", "{e:?}");
            under[0] += 1;
        } else {
            assert_eq!(hash, hash_withheld, "{e:?}");
            assert_eq!(decision, "withheld", "{e:?}");
            under[1] += 1;
        }
    }
    assert_eq!(under[0] + under[1], answered);
    assert_eq!(reloads(&entries).len(), 10);
    gw.stop().await;
}

#[tokio::test]
async fn a_consent_issuer_key_pinned_by_a_reload_is_trusted_from_the_next_request() {
    use credgate::consent::token::KeyAlg;
    use credgate::consent::tool::{IssueParams, issue, keygen};
    let m = Material::new("reload-consent");
    let gw = TestGateway::start_with(|c| m.apply(c, 86_400), true).await;
    let key = m.policies.join("..").join("new-issuer.key");
    let block = keygen(&key, KeyAlg::EdDSA, "reload-test-issuer", "k-2026").unwrap();
    let token = issue(
        &IssueParams {
            issuer_key: key,
            kid: "k-2026".into(),
            iss: "reload-test-issuer".into(),
            sub: ids::PERSON.into(),
            grantee: ids::BANK.into(),
            purpose: "financing".into(),
            scope: vec!["monthly_income".into()],
            ttl: 3600,
            max_uses: None,
            written: true,
            notice_text: Some("如未按约定履行还款义务，相关信息将被记入信用档案。".into()),
            aud: gw.config.server.gateway_id.clone(),
            jti: None,
        },
        credgate::consent::now_unix(),
    )
    .unwrap();
    let ask = || {
        let mut q = query(
            "natural_person",
            ids::PERSON,
            "financing",
            &["monthly_income"],
        );
        q["consent_token"] = json!(token);
        q
    };
    let income = |body: &Value| {
        common::decisions(body)
            .into_iter()
            .find(|(f, _, _)| f == "monthly_income")
            .map(|(_, d, r)| (d, r))
            .unwrap()
    };
    let mut open = Conn::open(gw.addr, &m.certs, "bank").await.unwrap();
    let (status, body) = open.post("/v1/query", &ask()).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(income(&body), ("withheld".into(), "consent_invalid".into()));

    let p = m.policies.join("consent.toml");
    let text = std::fs::read_to_string(&p).unwrap();
    write_atomically(&p, format!("{text}\n{block}").as_bytes());
    let (status, report) = admin_post(gw.admin, "/reload").await;
    assert_eq!(
        (status, &report["policy"]),
        (200, &json!("loaded")),
        "{report}"
    );
    let (status, body) = open.post("/v1/query", &ask()).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        income(&body),
        ("returned".into(), "authorised".into()),
        "{body}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_crl_is_re_read_when_its_next_update_passes() {
    let m = Material::new("reload-next-update");
    // A CRL that promises its successor in 3 s; the timer is off (a day).
    m.revoke_until(&[], time::Duration::seconds(3));
    let gw = TestGateway::start_with(|c| m.apply(c, 86_400), true).await;
    let mut open = Conn::open(gw.addr, &m.certs, "bank").await.unwrap();
    assert_eq!(open.post("/v1/query", &bank_query()).await.unwrap().0, 200);
    // The successor, revoking the bank, is in place before nextUpdate.
    m.revoke(&["bank"]);
    let refused = eventually(60, || async {
        !new_connection_works(gw.addr, &m.certs, "bank").await
    })
    .await;
    assert!(refused, "the CRL was not re-read at its nextUpdate");
    assert_revoked_everywhere(&gw, &m, open).await;
    let entries = common::audit_entries(&gw.store).await;
    let r = reloads(&entries);
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(field(r[0], "trigger").decision, "crl_next_update");
    assert_eq!(field(r[0], "tls").decision, "loaded");
    gw.stop().await;
}

// ------------------------------------------------- the real binary: SIGHUP

fn credgate(args: &[&std::ffi::OsStr]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_credgate"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test]
async fn sighup_and_credgate_reload_on_the_real_binary() {
    let m = Material::new("reload-process");
    let dir = TempDir::new("reload-process-gw");
    let (url, pg_db) = common::test_database(&dir.0).await;
    let mut cfg = common::config(&dir.0, &url);
    m.apply(&mut cfg, 86_400);
    let (addr, admin) = (common::free_addr(), common::free_addr());
    cfg.server.listen = addr;
    cfg.server.admin_listen = admin;
    let config = common::write_config_file(&cfg, &dir.0.join("credgate.toml"));
    {
        let store = Store::connect_config(&cfg).await.unwrap();
        credgate::cli::seed(&store).await.unwrap();
        store.close().await;
    }
    let log = dir.0.join("gateway.log");
    let gw = Process::serve(&config, log);
    let ready = eventually(60, || async {
        Conn::open(addr, &m.certs, "bank2").await.is_ok()
    })
    .await;
    assert!(ready, "gateway never served:\n{}", gw.log());

    let mut open = Conn::open(addr, &m.certs, "bank").await.unwrap();
    let (status, body) = open.post("/v1/query", &bank_query()).await.unwrap();
    assert_eq!(
        (status, decision_of(&body)),
        (200, "returned".into()),
        "{body}"
    );

    // 1. Revoke the bank, SIGHUP: new connections refused, the open one's
    //    next request refused.
    m.revoke(&["bank"]);
    gw.signal("-HUP");
    let refused = eventually(60, || async {
        !new_connection_works(addr, &m.certs, "bank").await
    })
    .await;
    assert!(refused, "SIGHUP did not apply the CRL:\n{}", gw.log());
    let (status, body) = open.post("/v1/query", &bank_query()).await.unwrap();
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "certificate_revoked");
    assert!(open.closed_by_server().await);

    // 2. Withhold a field, SIGHUP: bank2 (same role) sees it withheld.
    m.withhold_field_from_banks();
    let new_hash = m.policy_hash(&cfg);
    gw.signal("-HUP");
    let withheld = eventually(60, || async {
        let mut c = Conn::open(addr, &m.certs, "bank2").await.unwrap();
        let q = query("legal_person", ids::CERAMICS, "financing", &[FIELD]);
        let (_, body) = c.post("/v1/query", &q).await.unwrap();
        decision_of(&body) == "withheld"
    })
    .await;
    assert!(withheld, "SIGHUP did not apply the grant:\n{}", gw.log());

    // 3. A broken policy through `credgate reload`: refused with file and
    //    line, non-zero exit; the policy in force keeps serving.
    let (line, good) = m.break_grants();
    let (ok, text) = credgate(&["reload".as_ref(), "--config".as_ref(), config.as_os_str()]);
    assert!(!ok, "{text}");
    assert!(text.contains(&format!("grants.toml:{line}")), "{text}");
    assert!(text.contains(&new_hash), "{text}");
    let mut c = Conn::open(addr, &m.certs, "bank2").await.unwrap();
    let (_, body) = c.post("/v1/query", &bank_query()).await.unwrap();
    assert_eq!(decision_of(&body), "withheld", "{body}");
    // …and once fixed, `credgate reload` applies it.
    m.write_grants(&format!("{good}\n# fixed\n"));
    let (ok, text) = credgate(&["reload".as_ref(), "--config".as_ref(), config.as_os_str()]);
    assert!(ok && text.starts_with("reloaded: policy loaded"), "{text}");
    drop(c);
    gw.stop();

    // The log, read after the process stopped.
    let store = Store::connect_config(&cfg).await.unwrap();
    let entries = common::audit_entries(&store).await;
    let r = reloads(&entries);
    let summary: Vec<(&str, &str, &str)> = r
        .iter()
        .map(|e| {
            (
                &*field(e, "trigger").decision,
                &*field(e, "policy").decision,
                e.outcome.as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("sighup", "unchanged", "ok"),
            ("sighup", "loaded", "ok"),
            ("admin", "refused", "reload_refused"),
            ("admin", "loaded", "ok"),
        ]
    );
    assert_eq!(field(r[0], "tls").decision, "loaded");
    assert_eq!(r[1].policy.as_deref(), Some(new_hash.as_str()));
    assert_eq!(r[2].policy.as_deref(), Some(new_hash.as_str()));
    let revoked: Vec<&AuditEntry> = entries
        .iter()
        .filter(|e| e.outcome == "certificate_revoked")
        .collect();
    // The open connection's request, and possibly one polling probe whose
    // handshake completed just before the SIGHUP took effect.
    assert!(
        (1..=2).contains(&revoked.len()),
        "certificate_revoked entries: {}",
        revoked.len()
    );
    assert!(revoked.iter().all(|e| e.status == 401));
    store.close().await;
    drop_test_database(pg_db).await;
}

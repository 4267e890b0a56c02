//! Live reload over real mTLS: CRLs, the server certificate and
//! `policies/` change while the gateway serves (in-process gateways for the
//! admin `POST /reload` and the CRL timer; the real binary for SIGHUP and
//! `credgate reload`). SQLite, or PostgreSQL with
//! `CREDGATE_TEST_DATABASE_URL`.
//!
//! No timing assertions: where a change takes effect asynchronously (the
//! CRL timer, a signal) the tests poll with a generous bound and assert on
//! the outcome.

mod binary;
mod certificates;
#[path = "../common/mod.rs"]
mod common;
mod policy;

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

// ------------------------------------------------- the real binary: SIGHUP

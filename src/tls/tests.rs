//! Handshakes against the server config, with real dev certificates.

use super::*;
use crate::devcerts::{self, DevOrg};
use crate::identity::{self, PeerIdentity};
use rustls_pki_types::ServerName;
use std::sync::atomic::{AtomicU32, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const BANK: &str = "91350100M000100Y43";
const AGENCY: &str = "11100000000013127G";

/// A fresh directory of dev certs, removed on drop.
struct Fixture {
    dir: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "credgate-tls-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let orgs = [
            DevOrg {
                file_stem: "bank".into(),
                org_code: BANK.into(),
                name: "Example Bank".into(),
            },
            DevOrg {
                file_stem: "agency".into(),
                org_code: AGENCY.into(),
                name: "Example Credit Agency".into(),
            },
        ];
        devcerts::init(&dir, &orgs).unwrap();
        Fixture { dir }
    }
    fn p(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
    fn paths(&self, with_crl: bool) -> TlsPaths {
        TlsPaths {
            ca: self.p("ca.pem"),
            cert: self.p("server.pem"),
            key: self.p("server-key.pem"),
            crls: if with_crl {
                vec![self.p("crl.pem")]
            } else {
                vec![]
            },
            max_chain_depth: 0,
        }
    }
    fn client(&self, stem: Option<&str>) -> Arc<ClientConfig> {
        match stem {
            None => client_config(&self.p("ca.pem"), None).unwrap(),
            Some(s) => {
                let (c, k) = (self.p(&format!("{s}.pem")), self.p(&format!("{s}-key.pem")));
                client_config(&self.p("ca.pem"), Some((&c, &k))).unwrap()
            }
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What the server side saw for one connection.
type ServerSide = Result<(PeerIdentity, Option<Vec<u8>>, rustls::HandshakeKind), String>;

/// One connection: the server accepts, extracts the identity, echoes one byte. The client
/// writes a byte and reads the echo, so a TLS 1.3 client-auth rejection (sent after the
/// client's Finished) reliably surfaces on the client as a read error / EOF.
async fn connect_with(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
) -> (ServerSide, Result<rustls::HandshakeKind, String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(server);
    let server_task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
        let (_, conn) = tls.get_ref();
        let id = identity::peer_identity_from_chain(conn.peer_certificates())
            .map_err(|e| e.to_string())?;
        let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
        let kind = conn.handshake_kind().unwrap();
        let mut b = [0u8; 1];
        tls.read_exact(&mut b).await.map_err(|e| e.to_string())?;
        tls.write_all(&b).await.map_err(|e| e.to_string())?;
        tls.shutdown().await.map_err(|e| e.to_string())?;
        Ok((id, alpn, kind))
    });

    let client_res = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = TlsConnector::from(client)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        tls.write_all(b"x")
            .await
            .map_err(|e| format!("write: {e}"))?;
        tls.flush().await.map_err(|e| format!("flush: {e}"))?;
        let mut b = [0u8; 1];
        match tls.read(&mut b).await {
            Ok(1) if b == *b"x" => {}
            Ok(n) => return Err(format!("read: got {n} bytes, no echo")),
            Err(e) => return Err(format!("read: {e}")),
        }
        Ok(tls.get_ref().1.handshake_kind().unwrap())
    })
    .await
    .expect("client hung");
    let server_res = tokio::time::timeout(std::time::Duration::from_secs(10), server_task)
        .await
        .expect("server task hung")
        .unwrap();
    (server_res, client_res)
}

async fn expect_ok(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
) -> (PeerIdentity, Option<Vec<u8>>, rustls::HandshakeKind) {
    let (s, c) = connect_with(server, client).await;
    c.expect("client side failed");
    s.expect("server side failed")
}

async fn expect_refused(server: Arc<ServerConfig>, client: Arc<ClientConfig>) -> String {
    let (s, c) = connect_with(server, client).await;
    let c_err = c.expect_err("client should have failed");
    let s_err = s.expect_err("server should have refused");
    format!("server: {s_err} / client: {c_err}")
}

#[tokio::test]
async fn valid_client_identified() {
    let f = Fixture::new();
    let server = server_config(&f.paths(true), &[b"http/1.1"]).unwrap();
    let mut client = (*f.client(Some("bank"))).clone();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    let (id, alpn, kind) = expect_ok(server.clone(), Arc::new(client)).await;
    let leaf = std::fs::read(f.p("bank.pem")).unwrap();
    let leaf = CertificateDer::from_pem_slice(&leaf).unwrap();
    assert_eq!(
        id,
        PeerIdentity {
            org_code: BANK.into(),
            fingerprint: identity::fingerprint(&leaf),
        }
    );
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(kind, rustls::HandshakeKind::Full);

    let (id, _, _) = expect_ok(server, f.client(Some("agency"))).await;
    assert_eq!(id.org_code, AGENCY);
}

#[tokio::test]
async fn resumption_keeps_identity() {
    let f = Fixture::new();
    let server = server_config(&f.paths(true), &[b"http/1.1"]).unwrap();
    let client = f.client(Some("bank"));
    let (first, _, kind) = expect_ok(server.clone(), client.clone()).await;
    assert_eq!(kind, rustls::HandshakeKind::Full);
    let (second, _, kind) = expect_ok(server, client).await;
    assert_eq!(kind, rustls::HandshakeKind::Resumed);
    assert_eq!(first, second);
}

#[tokio::test]
async fn tls12_client_works() {
    let f = Fixture::new();
    let server = server_config(&f.paths(true), &[b"http/1.1"]).unwrap();
    let client = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(load_roots(&f.p("ca.pem")).unwrap())
        .with_client_auth_cert(
            load_certs(&f.p("bank.pem")).unwrap(),
            load_key(&f.p("bank-key.pem")).unwrap(),
        )
        .unwrap();
    let (id, _, _) = expect_ok(server.clone(), Arc::new(client)).await;
    assert_eq!(id.org_code, BANK);

    // And a revoked cert is refused over TLS 1.2 too.
    let client = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(load_roots(&f.p("ca.pem")).unwrap())
        .with_client_auth_cert(
            load_certs(&f.p("revoked.pem")).unwrap(),
            load_key(&f.p("revoked-key.pem")).unwrap(),
        )
        .unwrap();
    expect_refused(server, Arc::new(client)).await;
}

#[tokio::test]
async fn no_client_cert_refused() {
    let f = Fixture::new();
    let server = server_config(&f.paths(true), &[b"http/1.1"]).unwrap();
    let e = expect_refused(server, f.client(None)).await;
    assert!(e.contains("server: peer sent no certificates"), "{e}");
}

#[tokio::test]
async fn foreign_ca_refused() {
    let f = Fixture::new();
    let server = server_config(&f.paths(true), &[b"http/1.1"]).unwrap();
    let e = expect_refused(server, f.client(Some("foreign"))).await;
    assert!(e.contains("UnknownIssuer"), "{e}");
}

#[tokio::test]
async fn expired_refused() {
    let f = Fixture::new();
    let server = server_config(&f.paths(true), &[b"http/1.1"]).unwrap();
    let e = expect_refused(server, f.client(Some("expired"))).await;
    assert!(e.contains("Expired"), "{e}");
}

#[tokio::test]
async fn revoked_refused_only_with_crl() {
    let f = Fixture::new();
    let with_crl = server_config(&f.paths(true), &[b"http/1.1"]).unwrap();
    let e = expect_refused(with_crl, f.client(Some("revoked"))).await;
    assert!(e.contains("Revoked"), "{e}");

    // Same certificate, no CRL configured: accepted, proving the CRL is what refuses it.
    let without = server_config(&f.paths(false), &[b"http/1.1"]).unwrap();
    let (id, _, _) = expect_ok(without, f.client(Some("revoked"))).await;
    assert_eq!(id.org_code, BANK);
}

fn with_depth(f: &Fixture, depth: usize) -> Arc<ServerConfig> {
    let mut paths = f.paths(true);
    paths.max_chain_depth = depth;
    server_config(&paths, &[b"http/1.1"]).unwrap()
}

/// [`with_depth`], trusting the dev CA and the unconstrained `chain-ca.pem`.
fn with_depth_both(f: &Fixture, depth: usize) -> Arc<ServerConfig> {
    let both = f.dir.join("both-cas.pem");
    let mut pem = std::fs::read_to_string(f.p("ca.pem")).unwrap();
    pem += &std::fs::read_to_string(f.p("chain-ca.pem")).unwrap();
    std::fs::write(&both, pem).unwrap();
    let mut paths = f.paths(true);
    paths.ca = both;
    paths.max_chain_depth = depth;
    server_config(&paths, &[b"http/1.1"]).unwrap()
}

/// A client presenting `chain` (leaf first) with `key`.
fn client_with(f: &Fixture, chain: Vec<CertificateDer<'static>>, key: &Path) -> Arc<ClientConfig> {
    Arc::new(
        ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(PROTOCOL_VERSIONS)
            .unwrap()
            .with_root_certificates(load_roots(&f.p("ca.pem")).unwrap())
            .with_client_auth_cert(chain, load_key(key).unwrap())
            .unwrap(),
    )
}

#[tokio::test]
async fn chain_depth_is_limited_at_the_handshake() {
    let f = Fixture::new();
    let org = |stem: &str| DevOrg {
        file_stem: stem.into(),
        org_code: BANK.into(),
        name: "Example Bank".into(),
    };
    use devcerts::ChainRoot::{Dev, Unconstrained};
    devcerts::issue_chained(&f.dir, Dev, &org("via-one"), 1).unwrap();
    devcerts::issue_chained(&f.dir, Unconstrained, &org("u-via-one"), 1).unwrap();
    devcerts::issue_chained(&f.dir, Unconstrained, &org("u-via-two"), 2).unwrap();
    assert_eq!(load_certs(&f.p("via-one.pem")).unwrap().len(), 2);
    assert_eq!(load_certs(&f.p("u-via-two.pem")).unwrap().len(), 3);

    // Default: the leaf must be issued by the CA itself.
    let e = expect_refused(with_depth_both(&f, 0), f.client(Some("u-via-one"))).await;
    assert!(e.contains("ChainTooDeep { max: 0, sent: 1 }"), "{e}");
    let e = expect_refused(with_depth_both(&f, 1), f.client(Some("u-via-two"))).await;
    assert!(e.contains("ChainTooDeep { max: 1, sent: 2 }"), "{e}");

    // Otherwise valid chains: accepted once the limit allows them, identity from the leaf.
    let (id, _, _) = expect_ok(with_depth_both(&f, 1), f.client(Some("u-via-one"))).await;
    assert_eq!(id.org_code, BANK);
    let (id, _, _) = expect_ok(with_depth_both(&f, 2), f.client(Some("u-via-two"))).await;
    assert_eq!(id.org_code, BANK);

    // The root's own path length applies too (webpki leaves a trust anchor's
    // constraints alone): the dev CA says pathlen:0, so a chain through it with one
    // intermediate is refused at any depth, beside a root that allows it.
    for depth in [1, 6] {
        let e = expect_refused(with_depth(&f, depth), f.client(Some("via-one"))).await;
        assert!(e.contains("ChainTooDeep"), "{depth}: {e}");
        let e = expect_refused(with_depth_both(&f, depth), f.client(Some("via-one"))).await;
        assert!(e.contains("ChainTooDeep"), "{depth}: {e}");
    }
    let (id, _, _) = expect_ok(with_depth_both(&f, 6), f.client(Some("bank"))).await;
    assert_eq!(id.org_code, BANK);

    // The limit is on the path, not on what was sent: a directly issued leaf sent
    // with a copy of the root, or with an unrelated intermediate, is fine at 0.
    let mut chain = load_certs(&f.p("bank.pem")).unwrap();
    chain.extend(load_certs(&f.p("ca.pem")).unwrap());
    chain.push(load_certs(&f.p("via-one.pem")).unwrap().remove(1));
    let client = client_with(&f, chain, &f.p("bank-key.pem"));
    let (id, _, _) = expect_ok(with_depth(&f, 0), client).await;
    assert_eq!(id.org_code, BANK);

    // Other refusals keep their own reason: a chained leaf from a foreign CA is
    // UnknownIssuer, not a depth problem.
    let mut chain = load_certs(&f.p("foreign.pem")).unwrap();
    chain.push(load_certs(&f.p("via-one.pem")).unwrap().remove(1));
    let client = client_with(&f, chain, &f.p("foreign-key.pem"));
    let e = expect_refused(with_depth(&f, 0), client).await;
    assert!(e.contains("UnknownIssuer"), "{e}");
}

/// rustls has no code for TLS ≤ 1.1; a hand-made TLS 1.1 ClientHello gets an alert.
#[tokio::test]
async fn tls11_client_hello_refused() {
    let f = Fixture::new();
    let server = server_config(&f.paths(true), &[b"http/1.1"]).unwrap();
    for suite in server.crypto_provider().cipher_suites.iter() {
        let v = suite.version().version;
        assert!(
            v == rustls::ProtocolVersion::TLSv1_3 || v == rustls::ProtocolVersion::TLSv1_2,
            "{v:?}"
        );
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(server);
    let server_task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        acceptor.accept(tcp).await.map(|_| ())
    });
    // ClientHello: legacy_version 3.2 (TLS 1.1), no supported_versions extension.
    let mut body = vec![0x03, 0x02];
    body.extend_from_slice(&[0x42; 32]); // random
    body.push(0); // session id
    body.extend_from_slice(&[0x00, 0x04, 0xc0, 0x13, 0x00, 0x2f]); // 2 suites
    body.extend_from_slice(&[0x01, 0x00]); // null compression
    let mut hs = vec![0x01, 0x00, 0x00, u8::try_from(body.len()).unwrap()];
    hs.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01, 0x00, u8::try_from(hs.len()).unwrap()];
    record.extend_from_slice(&hs);
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(&record).await.unwrap();
    let mut reply = Vec::new();
    tcp.read_to_end(&mut reply).await.unwrap();
    assert_eq!(
        reply.first(),
        Some(&0x15),
        "expected an alert record: {reply:?}"
    );
    assert!(server_task.await.unwrap().is_err());
}

#[test]
fn config_errors_name_files() {
    let f = Fixture::new();
    let mut paths = f.paths(true);
    paths.ca = f.p("missing.pem");
    let e = server_config(&paths, &[]).unwrap_err();
    assert!(matches!(e, TlsError::Read { .. }));
    assert!(e.to_string().contains("missing.pem"), "{e}");

    let mut paths = f.paths(true);
    paths.ca = f.p("ca-key.pem");
    let e = server_config(&paths, &[]).unwrap_err();
    assert!(matches!(e, TlsError::NoCertificates(_)), "{e}");
    assert!(e.to_string().contains("ca-key.pem"), "{e}");

    let mut paths = f.paths(true);
    paths.key = f.p("server.pem");
    let e = server_config(&paths, &[]).unwrap_err();
    assert!(matches!(e, TlsError::NoKey(_)), "{e}");

    let mut paths = f.paths(true);
    paths.key = f.p("bank-key.pem");
    let e = server_config(&paths, &[]).unwrap_err();
    assert!(matches!(e, TlsError::Rustls { .. }), "{e}");
    assert!(e.to_string().contains("bank-key.pem"), "{e}");

    let mut paths = f.paths(true);
    paths.crls = vec![f.p("ca.pem")];
    let e = server_config(&paths, &[]).unwrap_err();
    assert!(matches!(e, TlsError::BadCrl { .. }), "{e}");

    // A CRL signed by another CA would be silently ignored: refuse it up front.
    let other_crl = f.p("other-crl.pem");
    std::fs::write(&other_crl, foreign_crl_pem()).unwrap();
    let mut paths = f.paths(true);
    paths.crls = vec![other_crl];
    let e = server_config(&paths, &[]).unwrap_err();
    assert!(
        e.to_string().contains("not one of the configured CAs"),
        "{e}"
    );
}

/// A CRL issued by some unrelated self-signed CA.
fn foreign_crl_pem() -> String {
    use rcgen::{
        CertificateParams, CertificateRevocationListParams, DnType, Issuer, KeyIdMethod, KeyPair,
    };
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "Somebody Else's CA");
    let issuer = Issuer::new(params, key);
    let now = time::OffsetDateTime::now_utc();
    CertificateRevocationListParams {
        this_update: now,
        next_update: now + time::Duration::days(1),
        crl_number: 1u64.into(),
        issuing_distribution_point: None,
        revoked_certs: vec![],
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&issuer)
    .unwrap()
    .pem()
    .unwrap()
}

//! rustls configuration for the mutual-TLS gateway (ring provider only).
//!
//! Policy, fixed here so no call site can weaken it:
//! * TLS 1.3 and TLS 1.2 only (rustls cannot speak anything older at all).
//! * Client certificates are REQUIRED and must chain to the configured CA(s).
//! * CRLs: only the end-entity (leaf) certificate is checked. A certificate whose status
//!   no configured CRL covers is ALLOWED (unknown-status policy: allow) so that running
//!   without CRLs works; an expired CRL (past `nextUpdate`) is still honoured, never
//!   treated as "everything revoked" — re-issue it before it ages out.
//! * Chain depth: at most `max_chain_depth` intermediate CA certificates between a client's
//!   leaf and a configured CA (`tls.max_chain_depth`, default 0: the leaf must be issued
//!   directly by a CA in `tls.ca`), and never more than that CA's own `pathLenConstraint`.
//!   webpki enforces the path length constraints of intermediates but not those of a trust
//!   anchor — a `CA:TRUE` intermediate under a root saying `pathlen:0` would be accepted — so
//!   both limits are applied here, at the handshake: a chain is accepted only if a valid path
//!   exists among the certificates the client sent whose intermediates number at most
//!   `max_chain_depth` and at most its anchor's path length (extra certificates it does not
//!   need, such as a copy of the root, are harmless).
//! * Session resumption: rustls server defaults, i.e. a stateful in-memory session cache
//!   (256 entries); TLS 1.3 "tickets" are cache IDs. A resumed session skips certificate
//!   (and CRL) verification but rustls restores the original client chain, so
//!   `peer_certificates()` still works.
//! * Reload ([`crate::reload`]): [`load_server`] builds a whole new [`ServerTls`] from the
//!   files (a new config means a new, empty session cache, so no session established under
//!   the old CRLs can be resumed under the new ones) and [`Revoked`] is the loaded CRLs'
//!   revocation set, against which open connections re-check their leaf after a reload.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};

/// Where the server's PEM material lives; every path is reported verbatim in errors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsPaths {
    /// CA certificate(s) client certificates must chain to (PEM, one or more).
    pub ca: PathBuf,
    /// Server certificate chain, leaf first (PEM).
    pub cert: PathBuf,
    /// Server private key (PEM: PKCS#8, SEC1 or PKCS#1).
    pub key: PathBuf,
    /// Certificate revocation lists (PEM, each file may hold several); may be empty.
    pub crls: Vec<PathBuf>,
    /// Most intermediate CA certificates allowed between a client's leaf and a CA in `ca`
    /// (0: issued directly by one of them).
    pub max_chain_depth: usize,
}

/// Why a TLS configuration could not be built; messages name the offending file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// File that failed.
        path: PathBuf,
        /// Underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid PEM.
    #[error("invalid PEM in {}: {source}", path.display())]
    Pem {
        /// File that failed.
        path: PathBuf,
        /// Underlying PEM error.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// No `CERTIFICATE` block in a file that must contain one.
    #[error("no certificate found in {}", .0.display())]
    NoCertificates(PathBuf),
    /// No private key block in the key file.
    #[error("no private key found in {}", .0.display())]
    NoKey(PathBuf),
    /// A CA file holds a certificate rustls refuses as a trust anchor.
    #[error("unusable CA certificate in {}: {source}", path.display())]
    BadCa {
        /// File that failed.
        path: PathBuf,
        /// rustls' reason.
        #[source]
        source: rustls::Error,
    },
    /// A CA certificate's basic constraints cannot be read (its path length applies to
    /// every chain through it).
    #[error("cannot read the basic constraints of a CA certificate in {}: {reason}", path.display())]
    CaConstraints {
        /// File that failed.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A CRL file is empty, unparseable or not issued by any configured CA.
    #[error("bad CRL in {}: {reason}", path.display())]
    BadCrl {
        /// File that failed.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The client-certificate verifier could not be built.
    #[error("cannot build client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// rustls refused the configuration (e.g. key does not match certificate).
    #[error("{context}: {source}")]
    Rustls {
        /// What was being configured, naming the files involved.
        context: String,
        /// rustls' reason.
        #[source]
        source: rustls::Error,
    },
}

/// The only crypto provider credgate uses: rustls' ring provider, passed explicitly so the
/// process-wide default (which another dependency might install) never matters.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Protocol versions credgate speaks: TLS 1.3 and TLS 1.2, nothing else.
pub static PROTOCOL_VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Builds the gateway's server config: TLS 1.3/1.2 only, ring only, client certificates
/// required and verified against `paths.ca`, leaf revocation checked against `paths.crls`
/// (unknown status allowed), ALPN `alpn` (e.g. `&[b"http/1.1"]`), rustls' default
/// stateful session cache for resumption. See the module docs for the full policy.
pub fn server_config(paths: &TlsPaths, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, TlsError> {
    load_server(paths, alpn).map(|t| t.config)
}

/// Certificates revoked by the loaded CRLs: (issuer name DER, serial number bytes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revoked {
    serials: HashSet<(Vec<u8>, Vec<u8>)>,
}

impl Revoked {
    /// Whether the CRLs revoke the certificate `leaf` (DER). A certificate that does not
    /// parse is treated as revoked: it cannot have passed the handshake's verification.
    pub fn contains(&self, leaf: &[u8]) -> bool {
        if self.serials.is_empty() {
            return false;
        }
        match x509_parser::parse_x509_certificate(leaf) {
            Ok((_, cert)) => self.serials.contains(&(
                cert.issuer().as_raw().to_vec(),
                cert.tbs_certificate.raw_serial().to_vec(),
            )),
            Err(_) => true,
        }
    }

    /// How many certificates are revoked.
    pub fn len(&self) -> usize {
        self.serials.len()
    }

    /// No certificate is revoked.
    pub fn is_empty(&self) -> bool {
        self.serials.is_empty()
    }
}

/// A complete server-side TLS state, as loaded from the files at one moment.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// The rustls config new connections are accepted with.
    pub config: Arc<ServerConfig>,
    /// What the CRLs revoke (open connections re-check against it after a reload).
    pub revoked: Revoked,
    /// The earliest `nextUpdate` of the loaded CRLs: when the CA promises a newer one.
    pub crl_next_update: Option<SystemTime>,
    /// SHA-256 over the CRL files' bytes, in configuration order (tells a changed file).
    pub crl_digest: [u8; 32],
    /// SHA-256 over all the files (CA, certificate, key, CRLs): a reload with the same
    /// digest changes nothing.
    pub material_digest: [u8; 32],
}

/// SHA-256 over the bytes of the CRL files in `paths`, in order; what the CRL refresh
/// timer compares with [`ServerTls::crl_digest`] to notice a new CRL.
pub fn crl_digest(paths: &TlsPaths) -> Result<[u8; 32], TlsError> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for path in &paths.crls {
        let bytes = read(path)?;
        ctx.update(&(bytes.len() as u64).to_be_bytes());
        ctx.update(&bytes);
    }
    Ok(digest32(ctx.finish()))
}

fn digest32(d: ring::digest::Digest) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Like [`server_config`], also returning the revocation set and CRL metadata a reload
/// needs. Every file is read and validated before anything is returned.
pub fn load_server(paths: &TlsPaths, alpn: &[&[u8]]) -> Result<ServerTls, TlsError> {
    let provider = provider();
    let roots = load_roots(&paths.ca)?;
    let ca_subjects = roots.subjects();

    let crl_digest = crl_digest(paths)?;
    let mut crls = Vec::new();
    let mut revoked = Revoked::default();
    let mut crl_next_update: Option<SystemTime> = None;
    for path in &paths.crls {
        for crl in load_crls(path, &ca_subjects)? {
            let (_, parsed) =
                x509_parser::parse_x509_crl(crl.as_ref()).map_err(|e| TlsError::BadCrl {
                    path: path.clone(),
                    reason: format!("cannot parse: {e}"),
                })?;
            let issuer = parsed.issuer().as_raw().to_vec();
            for r in parsed.iter_revoked_certificates() {
                revoked
                    .serials
                    .insert((issuer.clone(), r.raw_serial().to_vec()));
            }
            if let Some(next) = parsed.next_update() {
                let at = SystemTime::UNIX_EPOCH
                    + std::time::Duration::from_secs(u64::try_from(next.timestamp()).unwrap_or(0));
                crl_next_update = Some(crl_next_update.map_or(at, |t| t.min(at)));
            }
            crls.push(crl);
        }
    }

    let anchors = anchor_limits(&paths.ca, paths.max_chain_depth)?;
    let roots = Arc::new(roots);
    let webpki = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .with_crls(crls)
        .only_check_end_entity_revocation()
        .allow_unknown_revocation_status()
        .build()?;
    let verifier = Arc::new(DepthLimited {
        inner: webpki,
        roots,
        algs: provider.signature_verification_algorithms.all,
        max_intermediates: paths.max_chain_depth,
        always_within: anchors.iter().map(|a| a.limit).min().unwrap_or(0),
        anchors,
    });

    let mut all = ring::digest::Context::new(&ring::digest::SHA256);
    for path in [&paths.ca, &paths.cert, &paths.key] {
        let bytes = read(path)?;
        all.update(&(bytes.len() as u64).to_be_bytes());
        all.update(&bytes);
    }
    all.update(&crl_digest);
    let material_digest = digest32(all.finish());
    let certs = load_certs(&paths.cert)?;
    let key = load_key(&paths.key)?;

    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .map_err(|source| TlsError::Rustls {
            context: "protocol versions".into(),
            source,
        })?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|source| TlsError::Rustls {
            context: format!(
                "server certificate {} / key {}",
                paths.cert.display(),
                paths.key.display()
            ),
            source,
        })?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(ServerTls {
        config: Arc::new(config),
        revoked,
        crl_next_update,
        crl_digest,
        material_digest,
    })
}

/// A client chain that verifies, but only through more intermediate CA certificates than
/// `tls.max_chain_depth` or the CA's own path length constraint allows.
#[derive(Debug, thiserror::Error)]
#[error(
    "client certificate chains to a configured CA only through more intermediate CA \
     certificates than allowed (tls.max_chain_depth = {max}, and no more than the CA's own \
     pathLenConstraint; the client sent {sent})"
)]
pub struct ChainTooDeep {
    /// `tls.max_chain_depth`.
    pub max: usize,
    /// Intermediates the client presented.
    pub sent: usize,
}

/// How many intermediates a path through one configured CA may have.
#[derive(Debug)]
struct AnchorLimit {
    /// The trust anchor as webpki holds it (a verified path names its anchor by these).
    subject: Vec<u8>,
    spki: Vec<u8>,
    /// `min(tls.max_chain_depth, the CA's pathLenConstraint)`.
    limit: usize,
}

/// Each CA certificate of `path` with the most intermediates a chain through it may have.
fn anchor_limits(path: &Path, max_chain_depth: usize) -> Result<Vec<AnchorLimit>, TlsError> {
    let bad = |reason: String| TlsError::CaConstraints {
        path: path.to_owned(),
        reason,
    };
    let mut out = Vec::new();
    for der in load_certs(path)? {
        let anchor = webpki::anchor_from_trusted_cert(&der).map_err(|e| bad(e.to_string()))?;
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
            .map_err(|e| bad(format!("cannot parse: {e}")))?;
        let pathlen = cert
            .basic_constraints()
            .map_err(|e| bad(e.to_string()))?
            .and_then(|bc| bc.value.path_len_constraint);
        let limit = pathlen.map_or(max_chain_depth, |p| {
            max_chain_depth.min(usize::try_from(p).unwrap_or(usize::MAX))
        });
        out.push(AnchorLimit {
            subject: anchor.subject.as_ref().to_vec(),
            spki: anchor.subject_public_key_info.as_ref().to_vec(),
            limit,
        });
    }
    Ok(out)
}

/// The webpki client verifier plus the chain-depth limits (see the module docs).
#[derive(Debug)]
struct DepthLimited {
    inner: Arc<dyn ClientCertVerifier>,
    roots: Arc<RootCertStore>,
    algs: &'static [&'static dyn rustls_pki_types::SignatureVerificationAlgorithm],
    /// `tls.max_chain_depth` (for the error).
    max_intermediates: usize,
    /// Per configured CA, its limit.
    anchors: Vec<AnchorLimit>,
    /// The smallest limit: a chain of at most this many intermediates is within every one.
    always_within: usize,
}

impl DepthLimited {
    /// The limit for a path ending at `anchor` (0 for an anchor not loaded from
    /// `tls.ca`, which cannot happen: the roots are those same certificates).
    fn limit_for(&self, anchor: &rustls_pki_types::TrustAnchor<'_>) -> usize {
        self.anchors
            .iter()
            .find(|a| {
                a.subject == anchor.subject.as_ref()
                    && a.spki == anchor.subject_public_key_info.as_ref()
            })
            .map_or(0, |a| a.limit)
    }
}

impl ClientCertVerifier for DepthLimited {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Everything else (signatures, validity, EKU, CRLs) first, with rustls' own errors.
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        // A path never uses more intermediates than were sent: nothing more to check. This
        // is every handshake of a well-configured client under the default limit of 0.
        if intermediates.len() <= self.always_within {
            return Ok(verified);
        }
        // Some path exists; is there one short enough? webpki keeps searching when the
        // callback refuses a candidate path, so this finds any path within the limit.
        let too_deep = || {
            rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
                Arc::new(ChainTooDeep {
                    max: self.max_intermediates,
                    sent: intermediates.len(),
                }),
            )))
        };
        let leaf = webpki::EndEntityCert::try_from(end_entity).map_err(|_| too_deep())?;
        let within = |p: &webpki::VerifiedPath<'_>| {
            if p.intermediate_certificates().count() <= self.limit_for(p.anchor()) {
                Ok(())
            } else {
                Err(webpki::Error::MaximumPathDepthExceeded)
            }
        };
        leaf.verify_for_usage(
            self.algs,
            &self.roots.roots,
            intermediates,
            now,
            webpki::KeyUsage::client_auth(),
            None,
            Some(&within),
        )
        .map(|_| verified)
        .map_err(|_| too_deep())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// For tests and the bench client: a client config trusting `ca` and presenting
/// `client = Some((cert, key))` (or no certificate). Same versions/provider as the server;
/// no ALPN is offered (set `alpn_protocols` on a clone if needed); rustls' default
/// client session cache is on, so reusing the config resumes sessions.
pub fn client_config(
    ca: &Path,
    client: Option<(&Path, &Path)>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let roots = load_roots(ca)?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .map_err(|source| TlsError::Rustls {
            context: "protocol versions".into(),
            source,
        })?
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let certs = load_certs(cert)?;
            let key_der = load_key(key)?;
            builder
                .with_client_auth_cert(certs, key_der)
                .map_err(|source| TlsError::Rustls {
                    context: format!(
                        "client certificate {} / key {}",
                        cert.display(),
                        key.display()
                    ),
                    source,
                })?
        }
    };
    Ok(Arc::new(config))
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn pem_err(path: &Path) -> impl FnOnce(rustls_pki_types::pem::Error) -> TlsError + '_ {
    move |source| TlsError::Pem {
        path: path.to_owned(),
        source,
    }
}

/// All certificates in a PEM file, in order; error if there are none.
fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_err(path))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificates(path.to_owned()));
    }
    Ok(certs)
}

/// The first private key in a PEM file.
fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    match PrivateKeyDer::from_pem_slice(&pem) {
        Ok(key) => Ok(key),
        Err(rustls_pki_types::pem::Error::NoItemsFound) => Err(TlsError::NoKey(path.to_owned())),
        Err(e) => Err(pem_err(path)(e)),
    }
}

fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert).map_err(|source| TlsError::BadCa {
            path: path.to_owned(),
            source,
        })?;
    }
    Ok(roots)
}

/// All CRLs in a PEM file. Each must parse and be issued by one of the CAs: a CRL from
/// another issuer would be silently ignored by webpki (unknown status → allowed), which
/// would make a misconfiguration look like working revocation.
fn load_crls(
    path: &Path,
    ca_subjects: &[rustls::DistinguishedName],
) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let bad = |reason: String| TlsError::BadCrl {
        path: path.to_owned(),
        reason,
    };
    let pem = read(path)?;
    let crls = CertificateRevocationListDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_err(path))?;
    if crls.is_empty() {
        return Err(bad("no X509 CRL block found".into()));
    }
    for crl in &crls {
        let (rest, parsed) = x509_parser::parse_x509_crl(crl.as_ref())
            .map_err(|e| bad(format!("cannot parse: {e}")))?;
        if !rest.is_empty() {
            return Err(bad("trailing bytes after CRL".into()));
        }
        // Both sides are the DER Name including its outer SEQUENCE; webpki matches
        // CRL issuer to certificate issuer by exactly these bytes.
        let issuer_raw = parsed.issuer().as_raw();
        let known = ca_subjects.iter().any(|dn| dn.as_ref() == issuer_raw);
        if !known {
            return Err(bad(format!(
                "issuer \"{}\" is not one of the configured CAs",
                parsed.issuer()
            )));
        }
    }
    Ok(crls)
}

#[cfg(test)]
mod tests {
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
    fn client_with(
        f: &Fixture,
        chain: Vec<CertificateDer<'static>>,
        key: &Path,
    ) -> Arc<ClientConfig> {
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
            CertificateParams, CertificateRevocationListParams, DnType, Issuer, KeyIdMethod,
            KeyPair,
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
}

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

use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

mod chain;
pub use chain::ChainTooDeep;
use chain::DepthLimited;

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
    let ca_certs = load_certs(&paths.ca)?;
    let roots = roots_of(&paths.ca, ca_certs.clone())?;
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

    let roots = Arc::new(roots);
    let webpki = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .with_crls(crls)
        .only_check_end_entity_revocation()
        .allow_unknown_revocation_status()
        .build()?;
    let verifier = Arc::new(DepthLimited::new(
        webpki,
        roots,
        provider.signature_verification_algorithms.all,
        (&paths.ca, &ca_certs),
        paths.max_chain_depth,
    )?);

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
    roots_of(path, load_certs(path)?)
}

/// The CA certificates `certs`, read from `path`, as trust anchors.
fn roots_of(path: &Path, certs: Vec<CertificateDer<'static>>) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certs {
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
mod tests;

//! Development/test PKI: a CA, a server certificate, one client certificate per
//! organisation, and deliberately bad certificates (expired, revoked, foreign CA) so the
//! refusal paths can be exercised. Backs `credgate certs init --dir DIR` and the tests.
//!
//! Never use these files in production: keys are unencrypted, the CA is throwaway.
//! All keys are ECDSA P-256 (cheap handshakes).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, DnValue, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    PublicKeyData, RevocationReason, RevokedCertParams, SanType, SerialNumber,
};
use ring::rand::SecureRandom;
use time::{Duration, OffsetDateTime};
use x509_parser::asn1_rs::Tag;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;

use crate::identity::{ORG_URI_PREFIX, is_org_code_syntax};

/// Lifetime of freshly issued certificates.
const VALIDITY: Duration = Duration::days(730);
/// Backdating of `not_before`, to tolerate clock skew between machines.
const BACKDATE: Duration = Duration::hours(1);
/// Marks every dev certificate so nobody mistakes it for a real one.
const DEV_O: &str = "credgate (DEVELOPMENT ONLY)";
/// File stems this module writes itself; org stems must not collide with them.
const RESERVED_STEMS: &[&str] = &[
    "ca", "server", "expired", "revoked", "crl", "other-ca", "foreign", "chain-ca",
];

/// One organisation that gets a client certificate (`<file_stem>.pem` + `<file_stem>-key.pem`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DevOrg {
    /// File name stem, e.g. `"bank"`: `[a-z0-9_-]`, must not end in `-key` nor be reserved.
    pub file_stem: String,
    /// 18-char unified social credit code, put in the CN and a `urn:credgate:org:` SAN URI.
    pub org_code: String,
    /// Human-readable organisation name (subject O).
    pub name: String,
}

/// What [`init`] did, so the CLI can tell the operator.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DevCertsSummary {
    /// Files created or overwritten by this run.
    pub written: Vec<PathBuf>,
    /// Files that already existed and were reused untouched.
    pub kept: Vec<PathBuf>,
}

impl fmt::Display for DevCertsSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.written {
            writeln!(f, "wrote {}", p.display())?;
        }
        for p in &self.kept {
            writeln!(f, "kept  {}", p.display())?;
        }
        Ok(())
    }
}

/// Why the dev PKI could not be produced; messages name the file involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DevCertError {
    /// The org list is unusable (empty, bad stem, bad code...).
    #[error("invalid dev org list: {0}")]
    InvalidOrg(String),
    /// Reading an existing file failed.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// File involved.
        path: PathBuf,
        /// Underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Creating the directory or writing a file failed.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// File involved.
        path: PathBuf,
        /// Underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// An existing file could not be used (bad PEM, unparseable certificate, ...).
    #[error("cannot use existing {}: {reason}", path.display())]
    Invalid {
        /// File involved.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A certificate exists but its private key file does not (delete both to regenerate).
    #[error("{} exists but its key {} is missing", cert.display(), key.display())]
    MissingKey {
        /// Existing certificate.
        cert: PathBuf,
        /// Missing key file.
        key: PathBuf,
    },
    /// An existing CA certificate and key file do not belong together.
    #[error("{} does not match certificate {}", key.display(), cert.display())]
    KeyMismatch {
        /// CA certificate.
        cert: PathBuf,
        /// CA key file.
        key: PathBuf,
    },
    /// rcgen failed to generate a key, certificate or CRL.
    #[error("cannot generate {what}: {source}")]
    Generate {
        /// What was being generated.
        what: String,
        /// rcgen's reason.
        #[source]
        source: rcgen::Error,
    },
}

/// Writes into `dir` (created if needed): `ca.pem`, `ca-key.pem`, `server.pem`,
/// `server-key.pem` (SAN localhost, 127.0.0.1, ::1), per org `<stem>.pem` + `<stem>-key.pem`
/// (CN = code, SAN URI `urn:credgate:org:<code>`, O = name, EKU clientAuth), and for the
/// FIRST org `expired.pem` (ended yesterday), `revoked.pem` (listed in `crl.pem`, a CA-signed
/// CRL valid a year) and `foreign.pem` (signed by `other-ca.pem`), each with its `-key.pem`.
///
/// Idempotent: existing files are kept; only missing ones are generated. An existing CA is
/// reused (key from `ca-key.pem`); if a CA key has to be generated afresh, everything it
/// signs is re-issued. A new `revoked.pem` also re-issues `crl.pem`. Missing keys are created
/// with mode 0600 (unix); keys are never overwritten.
pub fn init(dir: &Path, orgs: &[DevOrg]) -> Result<DevCertsSummary, DevCertError> {
    validate_orgs(orgs)?;
    let first = &orgs[0];
    std::fs::create_dir_all(dir).map_err(|source| DevCertError::Write {
        path: dir.to_owned(),
        source,
    })?;
    let mut out = DevCertsSummary::default();
    let now = OffsetDateTime::now_utc();

    let ca = ensure_ca(dir, "ca", "credgate development CA", Some(0), now, &mut out)?;
    let other = ensure_ca(
        dir,
        "other-ca",
        "credgate FOREIGN test CA",
        Some(0),
        now,
        &mut out,
    )?;

    let valid = (now - BACKDATE, now + VALIDITY);
    ensure_leaf(dir, "server", &ca, server_params(), valid, &mut out)?;
    for org in orgs {
        ensure_leaf(
            dir,
            &org.file_stem,
            &ca,
            client_params(org),
            valid,
            &mut out,
        )?;
    }
    let expired = (now - Duration::days(30), now - Duration::days(1));
    ensure_leaf(dir, "expired", &ca, client_params(first), expired, &mut out)?;
    let revoked_new = ensure_leaf(dir, "revoked", &ca, client_params(first), valid, &mut out)?;
    ensure_leaf(
        dir,
        "foreign",
        &other,
        client_params(first),
        valid,
        &mut out,
    )?;

    let crl_path = dir.join("crl.pem");
    if crl_path.exists() && !ca.fresh && !revoked_new {
        out.kept.push(crl_path);
    } else {
        let revoked_path = dir.join("revoked.pem");
        let revoked_der = read_cert_der(&revoked_path)?;
        let serial = parse_cert(&revoked_path, &revoked_der)?
            .tbs_certificate
            .raw_serial()
            .to_vec();
        let crl = CertificateRevocationListParams {
            this_update: now - BACKDATE,
            next_update: now + Duration::days(365),
            // Seconds since the epoch: monotonic across re-generations, as RFC 5280 wants.
            crl_number: SerialNumber::from(u64::try_from(now.unix_timestamp()).unwrap_or(1)),
            issuing_distribution_point: None,
            revoked_certs: vec![RevokedCertParams {
                serial_number: SerialNumber::from_slice(&serial),
                revocation_time: now - BACKDATE,
                reason_code: Some(RevocationReason::KeyCompromise),
                invalidity_date: None,
            }],
            key_identifier_method: ca.key_id.clone(),
        }
        .signed_by(&ca.issuer)
        .map_err(gen_err("crl.pem"))?;
        let pem = crl.pem().map_err(gen_err("crl.pem"))?;
        write_public(&crl_path, &pem, &mut out)?;
    }
    Ok(out)
}

/// The CA a chain made by [`issue_chained`] ends at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainRoot {
    /// The dev CA (`ca.pem`, from [`init`]). It says `pathlen:0`: no chain
    /// with an intermediate is accepted under it, whatever
    /// `tls.max_chain_depth` says.
    Dev,
    /// `chain-ca.pem` in the same directory (made on first use; no path
    /// length constraint), as a root that delegates to intermediates would
    /// be. Trusted only where `tls.ca` lists it.
    Unconstrained,
}

/// Writes `<org.file_stem>.pem` — a client certificate for `org` issued by a
/// chain of `intermediates` CA certificates (`CA:TRUE`, no path length
/// constraint) under `root` in `dir`, the leaf first and then each issuer
/// up to the one the root signed — and `<org.file_stem>-key.pem`.
/// Overwrites both: the chain is regenerated on every call. webpki applies
/// the intermediates' constraints but not the root's; the gateway applies
/// the root's `pathLenConstraint` and `tls.max_chain_depth`, and these
/// chains are what test both.
pub fn issue_chained(
    dir: &Path,
    root: ChainRoot,
    org: &DevOrg,
    intermediates: usize,
) -> Result<PathBuf, DevCertError> {
    validate_orgs(std::slice::from_ref(org))?;
    let ca_path = dir.join("ca.pem");
    if !ca_path.exists() {
        return Err(DevCertError::Read {
            path: ca_path,
            source: std::io::ErrorKind::NotFound.into(),
        });
    }
    let now = OffsetDateTime::now_utc();
    let mut ignored = DevCertsSummary::default();
    let ca = match root {
        ChainRoot::Dev => ensure_ca(
            dir,
            "ca",
            "credgate development CA",
            Some(0),
            now,
            &mut ignored,
        )?,
        ChainRoot::Unconstrained => ensure_ca(
            dir,
            "chain-ca",
            "credgate development CA for intermediates",
            None,
            now,
            &mut ignored,
        )?,
    };
    let not_after = (now + VALIDITY).min(ca.not_after);
    let cert_path = dir.join(format!("{}.pem", org.file_stem));
    let key_path = dir.join(format!("{}-key.pem", org.file_stem));
    let gen_key = || {
        KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(gen_err(&cert_path.display().to_string()))
    };
    let mut issuer = ca.issuer;
    let mut chain = Vec::with_capacity(intermediates);
    for i in 0..intermediates {
        let key = gen_key()?;
        let mut p = CertificateParams::default();
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(
            DnType::CommonName,
            format!("credgate development intermediate CA {}", i + 1),
        );
        p.distinguished_name.push(DnType::OrganizationName, DEV_O);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        p.serial_number = Some(random_serial());
        p.not_before = now - BACKDATE;
        p.not_after = not_after;
        p.use_authority_key_identifier_extension = true;
        let cert = p
            .signed_by(&key, &issuer)
            .map_err(gen_err(&cert_path.display().to_string()))?;
        chain.push(cert.pem());
        issuer = Issuer::new(p, key);
    }
    let key = gen_key()?;
    let mut p = client_params(org);
    p.not_before = now - BACKDATE;
    p.not_after = not_after;
    p.serial_number = Some(random_serial());
    p.use_authority_key_identifier_extension = true;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let leaf = p
        .signed_by(&key, &issuer)
        .map_err(gen_err(&cert_path.display().to_string()))?;
    let mut pem = leaf.pem();
    for c in chain.iter().rev() {
        pem.push_str(c);
    }
    for path in [&cert_path, &key_path] {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(DevCertError::Write {
                    path: path.clone(),
                    source: e,
                });
            }
            _ => {}
        }
    }
    write_private(&key_path, &key.serialize_pem())?;
    write_public(&cert_path, &pem, &mut ignored)?;
    Ok(cert_path)
}

/// A CA able to sign, whether loaded from disk or just made.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    key_id: KeyIdMethod,
    not_after: OffsetDateTime,
    /// True when the CA key was generated in this run: everything it signs must be re-issued.
    fresh: bool,
}

/// The CA `<stem>.pem` / `<stem>-key.pem` in `dir`, made (with `pathlen`
/// as its path length constraint, `None`: unconstrained) if missing.
fn ensure_ca(
    dir: &Path,
    stem: &str,
    cn: &str,
    pathlen: Option<u8>,
    now: OffsetDateTime,
    out: &mut DevCertsSummary,
) -> Result<Ca, DevCertError> {
    let cert_path = dir.join(format!("{stem}.pem"));
    let key_path = dir.join(format!("{stem}-key.pem"));
    if cert_path.exists() {
        if !key_path.exists() {
            return Err(DevCertError::MissingKey {
                cert: cert_path,
                key: key_path,
            });
        }
        let key = load_key(&key_path)?;
        let der = read_cert_der(&cert_path)?;
        let cert = parse_cert(&cert_path, &der)?;
        if cert.public_key().subject_public_key.data.as_ref() != key.der_bytes() {
            return Err(DevCertError::KeyMismatch {
                cert: cert_path,
                key: key_path,
            });
        }
        let params = issuer_params_from(&cert_path, &cert)?;
        let key_id = params.key_identifier_method.clone();
        let not_after = OffsetDateTime::from_unix_timestamp(cert.validity().not_after.timestamp())
            .map_err(|e| DevCertError::Invalid {
                path: cert_path.clone(),
                reason: format!("notAfter: {e}"),
            })?;
        out.kept.push(cert_path);
        out.kept.push(key_path);
        return Ok(Ca {
            issuer: Issuer::new(params, key),
            key_id,
            not_after,
            fresh: false,
        });
    }

    let (key, fresh) = ensure_key(&key_path, out)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params
        .distinguished_name
        .push(DnType::OrganizationName, DEV_O);
    params.is_ca = IsCa::Ca(pathlen.map_or(
        BasicConstraints::Unconstrained,
        BasicConstraints::Constrained,
    ));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(random_serial());
    params.not_before = now - BACKDATE;
    params.not_after = now + VALIDITY + Duration::days(30);
    let cert = params
        .self_signed(&key)
        .map_err(gen_err(&cert_path.display().to_string()))?;
    write_public(&cert_path, &cert.pem(), out)?;
    Ok(Ca {
        key_id: params.key_identifier_method.clone(),
        not_after: params.not_after,
        issuer: Issuer::new(params, key),
        fresh,
    })
}

/// Rebuilds what rcgen needs to sign as an existing CA: its exact subject name (webpki
/// chains by byte-equal names), key usages and subject key identifier.
fn issuer_params_from(
    path: &Path,
    cert: &X509Certificate<'_>,
) -> Result<CertificateParams, DevCertError> {
    let invalid = |reason: String| DevCertError::Invalid {
        path: path.to_owned(),
        reason,
    };
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    for rdn in cert.subject().iter() {
        if rdn.iter().count() != 1 {
            return Err(invalid("multi-valued RDN in CA subject".into()));
        }
        for attr in rdn.iter() {
            let oid: Vec<u64> = attr
                .attr_type()
                .iter()
                .ok_or_else(|| invalid("oversized OID in CA subject".into()))?
                .collect();
            let ty = DnType::from_oid(&oid);
            if params.distinguished_name.get(&ty).is_some() {
                return Err(invalid("repeated attribute in CA subject".into()));
            }
            let any = attr.attr_value();
            let utf8 = || {
                std::str::from_utf8(any.data)
                    .map(str::to_owned)
                    .map_err(|_| invalid("non-UTF-8 CA subject".into()))
            };
            let unsupported = || invalid(format!("unsupported string type {}", any.tag()));
            let value = match any.tag() {
                Tag::Utf8String => DnValue::Utf8String(utf8()?),
                Tag::PrintableString => {
                    DnValue::PrintableString(utf8()?.try_into().map_err(|_| unsupported())?)
                }
                Tag::Ia5String => {
                    DnValue::Ia5String(utf8()?.try_into().map_err(|_| unsupported())?)
                }
                _ => return Err(unsupported()),
            };
            params.distinguished_name.push(ty, value);
        }
    }
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => {
                params.key_identifier_method = KeyIdMethod::PreSpecified(id.0.to_vec());
            }
            ParsedExtension::KeyUsage(ku) => {
                let flags = [
                    (ku.digital_signature(), KeyUsagePurpose::DigitalSignature),
                    (ku.key_cert_sign(), KeyUsagePurpose::KeyCertSign),
                    (ku.crl_sign(), KeyUsagePurpose::CrlSign),
                ];
                params.key_usages = flags.into_iter().filter(|f| f.0).map(|f| f.1).collect();
            }
            _ => {}
        }
    }
    Ok(params)
}

fn server_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, "localhost");
    p.distinguished_name.push(DnType::OrganizationName, DEV_O);
    p.subject_alt_names = vec![
        SanType::DnsName("localhost".try_into().expect("ASCII")),
        SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)),
    ];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p
}

fn client_params(org: &DevOrg) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name
        .push(DnType::CommonName, org.org_code.as_str());
    p.distinguished_name
        .push(DnType::OrganizationName, org.name.as_str());
    let uri = format!("{ORG_URI_PREFIX}{}", org.org_code);
    // Validated by validate_orgs: the code is ASCII, so this is a valid IA5String.
    p.subject_alt_names = vec![SanType::URI(uri.try_into().expect("ASCII org code"))];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p
}

/// Issues `<stem>.pem` (and `<stem>-key.pem` if missing) unless the cert exists and its CA
/// was not regenerated. Returns whether the certificate was (re)written.
fn ensure_leaf(
    dir: &Path,
    stem: &str,
    ca: &Ca,
    mut params: CertificateParams,
    (not_before, not_after): (OffsetDateTime, OffsetDateTime),
    out: &mut DevCertsSummary,
) -> Result<bool, DevCertError> {
    let cert_path = dir.join(format!("{stem}.pem"));
    let key_path = dir.join(format!("{stem}-key.pem"));
    if cert_path.exists() && !ca.fresh {
        if !key_path.exists() {
            return Err(DevCertError::MissingKey {
                cert: cert_path,
                key: key_path,
            });
        }
        out.kept.push(cert_path);
        out.kept.push(key_path);
        return Ok(false);
    }
    let (key, _) = ensure_key(&key_path, out)?;
    params.not_before = not_before;
    params.not_after = not_after.min(ca.not_after);
    params.serial_number = Some(random_serial());
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let cert = params
        .signed_by(&key, &ca.issuer)
        .map_err(gen_err(&cert_path.display().to_string()))?;
    write_public(&cert_path, &cert.pem(), out)?;
    Ok(true)
}

/// Loads `path` if it exists, else generates a P-256 key and writes it 0600.
/// Returns the key and whether it was generated.
fn ensure_key(path: &Path, out: &mut DevCertsSummary) -> Result<(KeyPair, bool), DevCertError> {
    if path.exists() {
        let key = load_key(path)?;
        out.kept.push(path.to_owned());
        return Ok((key, false));
    }
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(gen_err(&path.display().to_string()))?;
    write_private(path, &key.serialize_pem())?;
    out.written.push(path.to_owned());
    Ok((key, true))
}

fn load_key(path: &Path) -> Result<KeyPair, DevCertError> {
    let pem = std::fs::read_to_string(path).map_err(|source| DevCertError::Read {
        path: path.to_owned(),
        source,
    })?;
    KeyPair::from_pem(&pem).map_err(|e| DevCertError::Invalid {
        path: path.to_owned(),
        reason: format!("not a PKCS#8 private key: {e}"),
    })
}

fn read_cert_der(path: &Path) -> Result<Vec<u8>, DevCertError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let pem = std::fs::read(path).map_err(|source| DevCertError::Read {
        path: path.to_owned(),
        source,
    })?;
    CertificateDer::from_pem_slice(&pem)
        .map(|c| c.to_vec())
        .map_err(|e| DevCertError::Invalid {
            path: path.to_owned(),
            reason: format!("no PEM certificate: {e}"),
        })
}

fn parse_cert<'a>(path: &Path, der: &'a [u8]) -> Result<X509Certificate<'a>, DevCertError> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, c)| c)
        .map_err(|e| DevCertError::Invalid {
            path: path.to_owned(),
            reason: format!("unparseable certificate: {e}"),
        })
}

fn write_public(path: &Path, pem: &str, out: &mut DevCertsSummary) -> Result<(), DevCertError> {
    std::fs::write(path, pem).map_err(|source| DevCertError::Write {
        path: path.to_owned(),
        source,
    })?;
    out.written.push(path.to_owned());
    Ok(())
}

/// Creates a new key file, readable by the owner only; fails rather than overwrite.
fn write_private(path: &Path, pem: &str) -> Result<(), DevCertError> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)
        .and_then(|mut f| f.write_all(pem.as_bytes()).and_then(|()| f.sync_all()))
        .map_err(|source| DevCertError::Write {
            path: path.to_owned(),
            source,
        })
}

/// 128 random bits, positive and without a leading zero byte (stable DER encoding).
fn random_serial() -> SerialNumber {
    let mut b = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .expect("system RNG unavailable");
    b[0] = (b[0] & 0x7f).max(1);
    SerialNumber::from_slice(&b)
}

fn gen_err(what: &str) -> impl FnOnce(rcgen::Error) -> DevCertError + '_ {
    move |source| DevCertError::Generate {
        what: what.to_owned(),
        source,
    }
}

fn validate_orgs(orgs: &[DevOrg]) -> Result<(), DevCertError> {
    let bad = |m: String| Err(DevCertError::InvalidOrg(m));
    if orgs.is_empty() {
        return bad(
            "at least one org is required (the first one owns expired/revoked/foreign)".into(),
        );
    }
    for (i, org) in orgs.iter().enumerate() {
        let s = org.file_stem.as_str();
        let stem_ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !stem_ok {
            return bad(format!(
                "file stem {s:?}: use [a-z0-9_-], starting alphanumeric"
            ));
        }
        if RESERVED_STEMS.contains(&s) || s.ends_with("-key") {
            return bad(format!("file stem {s:?} collides with a generated file"));
        }
        if orgs[..i].iter().any(|o| o.file_stem == s) {
            return bad(format!("duplicate file stem {s:?}"));
        }
        if !is_org_code_syntax(&org.org_code) {
            return bad(format!(
                "org code {:?} for {s:?} is not 18 chars of GB 32100",
                org.org_code
            ));
        }
        if org.name.trim().is_empty() {
            return bad(format!("empty name for {s:?}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    const BANK: &str = "91350100M000100Y43";

    fn tmp() -> PathBuf {
        static N: AtomicU32 = AtomicU32::new(0);
        let d = std::env::temp_dir().join(format!(
            "credgate-devcerts-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn orgs() -> Vec<DevOrg> {
        vec![DevOrg {
            file_stem: "bank".into(),
            org_code: BANK.into(),
            name: "Example Bank 示例银行".into(),
        }]
    }

    const ALL: &[&str] = &[
        "ca.pem",
        "ca-key.pem",
        "other-ca.pem",
        "other-ca-key.pem",
        "server.pem",
        "server-key.pem",
        "bank.pem",
        "bank-key.pem",
        "expired.pem",
        "expired-key.pem",
        "revoked.pem",
        "revoked-key.pem",
        "foreign.pem",
        "foreign-key.pem",
        "crl.pem",
    ];

    fn names(v: &[PathBuf]) -> Vec<String> {
        let mut n: Vec<_> = v
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    }

    fn sorted(v: &[&str]) -> Vec<String> {
        let mut n: Vec<_> = v.iter().map(|s| s.to_string()).collect();
        n.sort();
        n
    }

    fn cert_of(dir: &Path, name: &str) -> Vec<u8> {
        read_cert_der(&dir.join(name)).unwrap()
    }

    #[test]
    fn generates_everything_then_is_idempotent() {
        let dir = tmp();
        let s = init(&dir, &orgs()).unwrap();
        assert_eq!(names(&s.written), sorted(ALL));
        assert!(s.kept.is_empty());

        #[cfg(unix)]
        for f in ALL.iter().filter(|f| f.ends_with("-key.pem")) {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }

        // Contents.
        let bank = cert_of(&dir, "bank.pem");
        let id = crate::identity::peer_identity(&bank).unwrap();
        assert_eq!(id.org_code, BANK);
        let c = parse_cert(Path::new("bank.pem"), &bank).unwrap();
        let ca = cert_of(&dir, "ca.pem");
        let ca = parse_cert(Path::new("ca.pem"), &ca).unwrap();
        assert_eq!(c.issuer().as_raw(), ca.subject().as_raw());
        assert!(ca.is_ca());
        let eku = c.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        assert_eq!(
            c.subject()
                .iter_organization()
                .next()
                .unwrap()
                .as_str()
                .unwrap(),
            "Example Bank 示例银行"
        );
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let left = c.validity().not_after.timestamp() - now;
        assert!(left > 700 * 86400 && left <= 731 * 86400, "{left}");

        let exp = cert_of(&dir, "expired.pem");
        let exp = parse_cert(Path::new("expired.pem"), &exp).unwrap();
        assert!(exp.validity().not_after.timestamp() < now);
        assert!(exp.validity().not_before.timestamp() < now - 29 * 86400);

        let srv = cert_of(&dir, "server.pem");
        let srv = parse_cert(Path::new("server.pem"), &srv).unwrap();
        let san = srv.subject_alternative_name().unwrap().unwrap().value;
        assert_eq!(san.general_names.len(), 3);

        let fo = cert_of(&dir, "foreign.pem");
        let fo = parse_cert(Path::new("foreign.pem"), &fo).unwrap();
        assert_ne!(fo.issuer().as_raw(), ca.subject().as_raw());

        // Serials unique.
        let mut serials: Vec<Vec<u8>> = [
            "ca.pem",
            "server.pem",
            "bank.pem",
            "expired.pem",
            "revoked.pem",
        ]
        .iter()
        .map(|n| {
            let d = cert_of(&dir, n);
            parse_cert(Path::new(n), &d).unwrap().raw_serial().to_vec()
        })
        .collect();
        serials.sort();
        serials.dedup();
        assert_eq!(serials.len(), 5);

        // The CRL lists revoked.pem's serial and is issued by the CA.
        let rv = cert_of(&dir, "revoked.pem");
        let rv = parse_cert(Path::new("revoked.pem"), &rv).unwrap();
        let crl_pem = std::fs::read(dir.join("crl.pem")).unwrap();
        let crl_der = {
            use rustls_pki_types::pem::PemObject;
            rustls_pki_types::CertificateRevocationListDer::from_pem_slice(&crl_pem).unwrap()
        };
        let (_, crl) = x509_parser::parse_x509_crl(crl_der.as_ref()).unwrap();
        assert_eq!(crl.issuer().as_raw(), ca.subject().as_raw());
        let listed: Vec<_> = crl
            .iter_revoked_certificates()
            .map(|r| r.raw_serial().to_vec())
            .collect();
        assert_eq!(listed, vec![rv.raw_serial().to_vec()]);
        let next = crl.next_update().unwrap().timestamp() - now;
        assert!(next > 364 * 86400, "{next}");

        // Second run: nothing written.
        let s = init(&dir, &orgs()).unwrap();
        assert!(s.written.is_empty(), "{s}");
        assert_eq!(names(&s.kept), sorted(ALL));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reuses_existing_ca_for_missing_files() {
        let dir = tmp();
        init(&dir, &orgs()).unwrap();
        let ca_before = std::fs::read(dir.join("ca.pem")).unwrap();
        for f in ["bank.pem", "bank-key.pem", "revoked.pem", "crl.pem"] {
            std::fs::remove_file(dir.join(f)).unwrap();
        }
        let mut more = orgs();
        more.push(DevOrg {
            file_stem: "agency".into(),
            org_code: "11100000000013127G".into(),
            name: "Agency".into(),
        });
        let s = init(&dir, &more).unwrap();
        assert_eq!(
            names(&s.written),
            sorted(&[
                "agency.pem",
                "agency-key.pem",
                "bank.pem",
                "bank-key.pem",
                "revoked.pem",
                "crl.pem"
            ])
        );
        assert_eq!(std::fs::read(dir.join("ca.pem")).unwrap(), ca_before);
        // Newly issued cert chains to the reused CA by exact name and key id.
        let ca = cert_of(&dir, "ca.pem");
        let ca = parse_cert(Path::new("ca.pem"), &ca).unwrap();
        let new = cert_of(&dir, "agency.pem");
        let new = parse_cert(Path::new("agency.pem"), &new).unwrap();
        assert_eq!(new.issuer().as_raw(), ca.subject().as_raw());
        let ski = ca
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
                _ => None,
            });
        let aki = new
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(a) => {
                    a.key_identifier.as_ref().map(|k| k.0.to_vec())
                }
                _ => None,
            });
        assert!(ski.is_some());
        assert_eq!(ski, aki);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn fresh_ca_reissues_dependents() {
        let dir = tmp();
        init(&dir, &orgs()).unwrap();
        let key_before = std::fs::read(dir.join("bank-key.pem")).unwrap();
        std::fs::remove_file(dir.join("ca.pem")).unwrap();
        std::fs::remove_file(dir.join("ca-key.pem")).unwrap();
        let s = init(&dir, &orgs()).unwrap();
        let w = names(&s.written);
        for f in [
            "ca.pem",
            "ca-key.pem",
            "server.pem",
            "bank.pem",
            "expired.pem",
            "revoked.pem",
            "crl.pem",
        ] {
            assert!(w.contains(&f.to_string()), "{f} not rewritten: {w:?}");
        }
        assert!(!w.contains(&"foreign.pem".to_string()));
        // Leaf keys are never overwritten.
        assert_eq!(std::fs::read(dir.join("bank-key.pem")).unwrap(), key_before);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn errors() {
        let dir = tmp();
        let mut o = orgs();
        assert!(matches!(init(&dir, &[]), Err(DevCertError::InvalidOrg(_))));
        o[0].file_stem = "ca".into();
        assert!(matches!(init(&dir, &o), Err(DevCertError::InvalidOrg(_))));
        o[0].file_stem = "x-key".into();
        assert!(matches!(init(&dir, &o), Err(DevCertError::InvalidOrg(_))));
        o[0].file_stem = "../x".into();
        assert!(matches!(init(&dir, &o), Err(DevCertError::InvalidOrg(_))));
        let mut o = orgs();
        o[0].org_code = "bad".into();
        assert!(matches!(init(&dir, &o), Err(DevCertError::InvalidOrg(_))));
        let mut o = orgs();
        o.push(o[0].clone());
        assert!(matches!(init(&dir, &o), Err(DevCertError::InvalidOrg(_))));
        assert!(
            !dir.exists(),
            "validation must happen before touching the disk"
        );

        init(&dir, &orgs()).unwrap();
        std::fs::remove_file(dir.join("ca-key.pem")).unwrap();
        let e = init(&dir, &orgs()).unwrap_err();
        assert!(matches!(e, DevCertError::MissingKey { .. }), "{e}");
        std::fs::copy(dir.join("other-ca-key.pem"), dir.join("ca-key.pem")).unwrap();
        let e = init(&dir, &orgs()).unwrap_err();
        assert!(matches!(e, DevCertError::KeyMismatch { .. }), "{e}");
        assert!(e.to_string().contains("ca-key.pem"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

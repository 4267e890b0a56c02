//! Who is on the other end of a mutual-TLS connection.
//!
//! rustls has already verified the client chain (CA, validity, EKU, CRL) by the time the
//! handshake completes; this module only *reads* the verified leaf to find out which
//! organisation it was issued to. It never makes trust decisions of its own.

use rustls_pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;

/// Prefix of the SAN URI that carries an organisation code: `urn:credgate:org:<code>`.
///
/// Matched case-sensitively (our CA issues it lowercase; anything else is refused).
pub const ORG_URI_PREFIX: &str = "urn:credgate:org:";

/// Characters allowed in a unified social credit code (GB 32100: digits and upper-case
/// letters without I, O, S, V, Z).
const ORG_CODE_CHARSET: &[u8] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";

/// Length of a unified social credit code.
pub const ORG_CODE_LEN: usize = 18;

/// The verified peer, extracted once per connection from the client certificate chain
/// rustls already verified; everything downstream (authorisation, audit log) keys on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerIdentity {
    /// 18-char unified social credit code (syntax-checked only; the check digit is the
    /// caller's business).
    pub org_code: String,
    /// Lowercase hex SHA-256 of the leaf certificate DER, for audit trails and pinning.
    pub fingerprint: String,
}

/// Why no identity could be extracted; each variant is a reason to refuse the request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The peer presented no certificate (cannot happen when client auth is mandatory).
    #[error("peer presented no client certificate")]
    NoCertificate,
    /// The leaf is not a parseable X.509 certificate.
    #[error("client certificate cannot be parsed: {0}")]
    Unparseable(String),
    /// Neither a subject CN nor a `urn:credgate:org:` SAN URI is present.
    #[error(
        "client certificate carries no organisation code (no subject CN, no {ORG_URI_PREFIX} SAN URI)"
    )]
    NoOrgCode,
    /// The code found is not 18 characters of the GB 32100 alphabet.
    #[error("malformed organisation code {0:?} in client certificate")]
    MalformedOrgCode(String),
    /// The subject CN is a code but differs from the SAN URI code.
    #[error("client certificate subject CN {cn:?} conflicts with SAN URI org code {san:?}")]
    ConflictingOrgCodes {
        /// Code from the subject common name.
        cn: String,
        /// Code from the SAN URI.
        san: String,
    },
    /// Several distinct codes (several CNs, or several differing SAN URIs).
    #[error("client certificate carries several organisation codes: {0:?}")]
    MultipleOrgCodes(Vec<String>),
}

/// True when `code` has the shape of a unified social credit code (18 chars of
/// `0123456789ABCDEFGHJKLMNPQRTUWXY`); the check digit is NOT verified.
pub fn is_org_code_syntax(code: &str) -> bool {
    code.len() == ORG_CODE_LEN && code.bytes().all(|b| ORG_CODE_CHARSET.contains(&b))
}

/// Lowercase hex SHA-256 of a certificate's DER, the fingerprint format used everywhere.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, der))
}

/// Extracts the identity from the chain rustls reports (`peer_certificates()`); the leaf
/// is the first element. Convenience wrapper over [`peer_identity`].
pub fn peer_identity_from_chain(
    chain: Option<&[CertificateDer<'_>]>,
) -> Result<PeerIdentity, IdentityError> {
    match chain.and_then(|c| c.first()) {
        Some(leaf) => peer_identity(leaf.as_ref()),
        None => Err(IdentityError::NoCertificate),
    }
}

/// Org code = subject CN, or a SAN URI `urn:credgate:org:<code>`.
///
/// Rules: if a SAN URI is present it is authoritative; a subject CN that *looks like* a
/// code (right length/charset) must then equal it ([`IdentityError::ConflictingOrgCodes`]),
/// while a CN that is clearly a display name is ignored. Without a SAN URI the CN must be a
/// syntactically valid code. No case folding or trimming. Only syntax is checked here.
pub fn peer_identity(leaf_der: &[u8]) -> Result<PeerIdentity, IdentityError> {
    if leaf_der.is_empty() {
        return Err(IdentityError::NoCertificate);
    }
    let (rest, cert) = x509_parser::parse_x509_certificate(leaf_der)
        .map_err(|e| IdentityError::Unparseable(e.to_string()))?;
    if !rest.is_empty() {
        return Err(IdentityError::Unparseable(format!(
            "{} trailing bytes after certificate",
            rest.len()
        )));
    }

    let mut cns = Vec::new();
    for attr in cert.subject().iter_common_name() {
        let cn = attr
            .as_str()
            .map_err(|e| IdentityError::Unparseable(format!("subject CN is not a string: {e}")))?;
        push_unique(&mut cns, cn);
    }
    if cns.len() > 1 {
        return Err(IdentityError::MultipleOrgCodes(cns));
    }

    let mut sans = Vec::new();
    let san_ext = cert
        .subject_alternative_name()
        .map_err(|e| IdentityError::Unparseable(format!("subjectAltName: {e}")))?;
    if let Some(ext) = san_ext {
        for name in &ext.value.general_names {
            if let GeneralName::URI(uri) = name
                && let Some(code) = uri.strip_prefix(ORG_URI_PREFIX)
            {
                push_unique(&mut sans, code);
            }
        }
    }
    if sans.len() > 1 {
        return Err(IdentityError::MultipleOrgCodes(sans));
    }

    let cn = cns.pop();
    let org_code = match (sans.pop(), cn) {
        (Some(san), cn) => {
            if !is_org_code_syntax(&san) {
                return Err(IdentityError::MalformedOrgCode(san));
            }
            if let Some(cn) = cn
                && is_org_code_syntax(&cn)
                && cn != san
            {
                return Err(IdentityError::ConflictingOrgCodes { cn, san });
            }
            san
        }
        (None, Some(cn)) => {
            if !is_org_code_syntax(&cn) {
                return Err(IdentityError::MalformedOrgCode(cn));
            }
            cn
        }
        (None, None) => return Err(IdentityError::NoOrgCode),
    };

    Ok(PeerIdentity {
        org_code,
        fingerprint: fingerprint(leaf_der),
    })
}

fn push_unique(v: &mut Vec<String>, s: &str) {
    if !v.iter().any(|x| x == s) {
        v.push(s.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

    const CODE: &str = "91350100M000100Y43";
    const OTHER: &str = "11100000000013127G";

    fn leaf(cn: Option<&str>, uris: &[&str]) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::default();
        p.distinguished_name = DistinguishedName::new();
        if let Some(cn) = cn {
            p.distinguished_name.push(DnType::CommonName, cn);
        }
        p.distinguished_name
            .push(DnType::OrganizationName, "Test Org");
        p.subject_alt_names = uris
            .iter()
            .map(|u| SanType::URI((*u).try_into().unwrap()))
            .collect();
        p.self_signed(&key).unwrap().der().to_vec()
    }

    fn uri(code: &str) -> String {
        format!("{ORG_URI_PREFIX}{code}")
    }

    #[test]
    fn syntax() {
        assert!(is_org_code_syntax(CODE));
        assert!(!is_org_code_syntax("91350100M000100Y4")); // 17
        assert!(!is_org_code_syntax("91350100M000100Y4I")); // I not allowed
        assert!(!is_org_code_syntax("91350100m000100y43")); // lowercase
        assert!(!is_org_code_syntax("91350100M000100Y4３")); // non-ASCII
    }

    #[test]
    fn cn_only() {
        let der = leaf(Some(CODE), &[]);
        let id = peer_identity(&der).unwrap();
        assert_eq!(id.org_code, CODE);
        assert_eq!(id.fingerprint, fingerprint(&der));
        assert_eq!(id.fingerprint.len(), 64);
        assert!(
            id.fingerprint
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
    }

    #[test]
    fn san_only() {
        let der = leaf(None, &["https://example.com/x", &uri(CODE)]);
        assert_eq!(peer_identity(&der).unwrap().org_code, CODE);
    }

    #[test]
    fn san_wins_over_display_name_cn() {
        let der = leaf(Some("Bank of Example"), &[&uri(CODE)]);
        assert_eq!(peer_identity(&der).unwrap().org_code, CODE);
    }

    #[test]
    fn both_agreeing() {
        let der = leaf(Some(CODE), &[&uri(CODE), &uri(CODE)]);
        assert_eq!(peer_identity(&der).unwrap().org_code, CODE);
    }

    #[test]
    fn both_conflicting() {
        let der = leaf(Some(OTHER), &[&uri(CODE)]);
        match peer_identity(&der) {
            Err(IdentityError::ConflictingOrgCodes { cn, san }) => {
                assert_eq!((cn.as_str(), san.as_str()), (OTHER, CODE));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn two_san_codes() {
        let der = leaf(None, &[&uri(CODE), &uri(OTHER)]);
        assert!(matches!(
            peer_identity(&der),
            Err(IdentityError::MultipleOrgCodes(_))
        ));
    }

    #[test]
    fn malformed() {
        for bad in [
            "91350100M000100Y4",
            "91350100m000100y43",
            "91350100M000100Y4O",
            "",
        ] {
            let der = leaf(Some(bad), &[]);
            assert!(
                matches!(peer_identity(&der), Err(IdentityError::MalformedOrgCode(_))),
                "CN {bad:?}"
            );
            let der = leaf(None, &[&uri(bad)]);
            assert!(
                matches!(peer_identity(&der), Err(IdentityError::MalformedOrgCode(_))),
                "SAN {bad:?}"
            );
        }
    }

    #[test]
    fn nothing_or_garbage() {
        let der = leaf(None, &[]);
        assert!(matches!(peer_identity(&der), Err(IdentityError::NoOrgCode)));
        assert!(matches!(
            peer_identity(b""),
            Err(IdentityError::NoCertificate)
        ));
        assert!(matches!(
            peer_identity(b"\x30\x03\x02\x01\x00"),
            Err(IdentityError::Unparseable(_))
        ));
        let mut der = leaf(Some(CODE), &[]);
        der.push(0);
        assert!(matches!(
            peer_identity(&der),
            Err(IdentityError::Unparseable(_))
        ));
        assert!(matches!(
            peer_identity_from_chain(None),
            Err(IdentityError::NoCertificate)
        ));
        assert!(matches!(
            peer_identity_from_chain(Some(&[])),
            Err(IdentityError::NoCertificate)
        ));
    }
}

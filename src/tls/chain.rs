//! The chain-depth limits of client certificates (see the module docs of
//! [`crate::tls`]): `tls.max_chain_depth`, and each configured CA's own
//! `pathLenConstraint`, which webpki does not apply to a trust anchor.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore};
use rustls_pki_types::{CertificateDer, UnixTime};

use super::TlsError;

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

/// Each CA certificate (of the file `path`) with the most intermediates a chain through it
/// may have.
fn anchor_limits(
    path: &Path,
    certs: &[CertificateDer<'_>],
    max_chain_depth: usize,
) -> Result<Vec<AnchorLimit>, TlsError> {
    let bad = |reason: String| TlsError::CaConstraints {
        path: path.to_owned(),
        reason,
    };
    let mut out = Vec::new();
    for der in certs {
        let anchor = webpki::anchor_from_trusted_cert(der).map_err(|e| bad(e.to_string()))?;
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
pub(super) struct DepthLimited {
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
    /// `inner` (the webpki verifier over `roots`, made of the CA
    /// certificates `ca` = (file, its certificates)) with the chain-depth
    /// limits of those CAs and `max_chain_depth`.
    pub(super) fn new(
        inner: Arc<dyn ClientCertVerifier>,
        roots: Arc<RootCertStore>,
        algs: &'static [&'static dyn rustls_pki_types::SignatureVerificationAlgorithm],
        ca: (&Path, &[CertificateDer<'static>]),
        max_chain_depth: usize,
    ) -> Result<Self, TlsError> {
        let anchors = anchor_limits(ca.0, ca.1, max_chain_depth)?;
        Ok(Self {
            inner,
            roots,
            algs,
            max_intermediates: max_chain_depth,
            always_within: anchors.iter().map(|a| a.limit).min().unwrap_or(0),
            anchors,
        })
    }

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

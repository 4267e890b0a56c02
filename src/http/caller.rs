//! [`Caller`]: who is on the other end of a connection, resolved once per
//! connection against the registry; every endpoint's 401 or 403 for a
//! caller without a registered organisation comes from here.

use std::sync::Arc;

use super::ApiError;
use crate::identity::PeerIdentity;
use crate::ids::CreditCode;
use crate::policy::{Organisation, Policy};

/// Who is on the other end of a connection, resolved once at handshake.
#[derive(Debug, Clone)]
pub enum Caller {
    /// A registered organisation.
    Known {
        /// Its registry entry.
        org: Arc<Organisation>,
        /// Certificate fingerprint.
        fingerprint: String,
    },
    /// A valid certificate whose organisation is not in the registry → 403.
    Unregistered {
        /// The code the certificate carries.
        code: String,
        /// Certificate fingerprint.
        fingerprint: String,
    },
    /// A certificate revoked (by a CRL loaded after the connection's
    /// handshake) → 401 `certificate_revoked`, and the connection is closed.
    Revoked {
        /// The code the certificate carries, if any.
        code: Option<String>,
        /// Certificate fingerprint.
        fingerprint: String,
    },
    /// A valid certificate without a usable organisation code → 401.
    NoIdentity {
        /// Certificate fingerprint, if one was presented.
        fingerprint: Option<String>,
        /// Why.
        reason: String,
    },
}

impl Caller {
    /// Resolve the peer identity against the registry.
    ///
    /// `leaf_fingerprint` is the presented leaf certificate's fingerprint,
    /// kept even when no identity can be read from it, so a 401 entry still
    /// names the certificate.
    pub fn resolve(
        peer: Result<PeerIdentity, crate::identity::IdentityError>,
        leaf_fingerprint: Option<String>,
        policy: &Policy,
    ) -> Caller {
        match peer {
            Err(e) => Caller::NoIdentity {
                fingerprint: leaf_fingerprint,
                reason: e.to_string(),
            },
            Ok(p) => match CreditCode::parse(&p.org_code) {
                Err(e) => Caller::NoIdentity {
                    fingerprint: Some(p.fingerprint),
                    reason: format!("certificate organisation code is invalid: {e}"),
                },
                Ok(code) => match policy.organisation(&code) {
                    Some(org) => Caller::Known {
                        org: Arc::new(org.clone()),
                        fingerprint: p.fingerprint,
                    },
                    None => Caller::Unregistered {
                        code: code.to_string(),
                        fingerprint: p.fingerprint,
                    },
                },
            },
        }
    }

    pub(super) fn org_code(&self) -> Option<String> {
        match self {
            Caller::Known { org, .. } => Some(org.code.to_string()),
            Caller::Unregistered { code, .. } => Some(code.clone()),
            Caller::Revoked { code, .. } => code.clone(),
            Caller::NoIdentity { .. } => None,
        }
    }

    pub(super) fn fingerprint(&self) -> Option<String> {
        match self {
            Caller::Known { fingerprint, .. }
            | Caller::Unregistered { fingerprint, .. }
            | Caller::Revoked { fingerprint, .. } => Some(fingerprint.clone()),
            Caller::NoIdentity { fingerprint, .. } => fingerprint.clone(),
        }
    }

    /// The registered organisation, or the 401 (no usable identity) or 403
    /// (unregistered organisation) this caller gets on every endpoint.
    pub fn identified(&self) -> Result<&Arc<Organisation>, ApiError> {
        match self {
            Caller::NoIdentity { reason, .. } => Err(ApiError::unauthenticated(format!(
                "the client certificate does not identify an organisation: {reason}"
            ))),
            Caller::Revoked { .. } => Err(ApiError::certificate_revoked()),
            Caller::Unregistered { .. } => Err(ApiError::forbidden(
                "unregistered_organisation",
                "the organisation in the client certificate is not registered with this gateway",
            )),
            Caller::Known { org, .. } => Ok(org),
        }
    }
}

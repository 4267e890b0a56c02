//! HTTP layer: routing, body limits, the audit wrapper, responses.
//!
//! [`App::handle`] is the whole request lifecycle:
//!
//! 1. the connection's [`Caller`] (identity resolved once per connection);
//! 2. route and run the handler, which fills an [`AuditDraft`] as it learns
//!    the subject, purpose and field decisions;
//! 3. append the finished audit entry and wait until it is durable;
//! 4. only then send the response — or 503 `audit_unavailable` if the log
//!    could not be written (fail closed).
//!
//! Every request that reaches this point produces exactly one audit entry,
//! whatever the outcome.

mod api;
mod auditor;
mod consent;
pub mod dto;
pub mod error;
mod lifecycle;
mod tiles;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::Value;

use crate::audit::{AuditEntry, AuditField, AuditLog, ENTRY_VERSION, SubjectHasher, now_rfc3339};
use crate::consent::token::ConsentVerifier;
use crate::identity::PeerIdentity;
use crate::ids::{CreditCode, SubjectId};
use crate::metrics::Metrics;
use crate::policy::{Organisation, Policy, Role};
use crate::store::Store;
pub use error::ApiError;
pub use lifecycle::Clock;

/// Everything a request handler needs; shared by all connections.
pub struct App {
    /// Compiled policy.
    pub policy: Arc<Policy>,
    /// Database.
    pub store: Store,
    /// Audit sequencer handle.
    pub audit: AuditLog,
    /// Keyed hash for subject ids in the log.
    pub hasher: SubjectHasher,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// This node's name in audit entries (`server.node_id`, else
    /// `server.gateway_id`).
    pub gateway_id: String,
    /// Body size limit.
    pub max_body_bytes: usize,
    /// Public key auditors verify checkpoints with (C2SP verifier key),
    /// published by `GET /v1/audit/checkpoint`.
    pub checkpoint_verifier_key: String,
    /// Consent token verifier (issuer keys pinned by `policies/consent.toml`).
    pub consent: ConsentVerifier,
    /// Request id counter (combined with a per-process random prefix).
    next_request: AtomicU64,
    request_prefix: String,
    /// Today's date for lifecycle decisions (see [`App::set_clock`]).
    clock: std::sync::RwLock<Clock>,
}

impl App {
    /// Assemble the application state.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        policy: Arc<Policy>,
        store: Store,
        audit: AuditLog,
        hasher: SubjectHasher,
        metrics: Arc<Metrics>,
        gateway_id: String,
        max_body_bytes: usize,
        consent: ConsentVerifier,
    ) -> Self {
        let mut rnd = [0u8; 4];
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut rnd);
        App {
            policy,
            store,
            audit,
            hasher,
            metrics,
            gateway_id,
            max_body_bytes,
            checkpoint_verifier_key: String::new(),
            consent,
            next_request: AtomicU64::new(1),
            request_prefix: hex::encode(rnd),
            clock: std::sync::RwLock::new(lifecycle::system_clock()),
        }
    }
}

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
    pub fn resolve(
        peer: Result<PeerIdentity, crate::identity::IdentityError>,
        policy: &Policy,
    ) -> Caller {
        match peer {
            Err(e) => Caller::NoIdentity {
                fingerprint: None,
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

    fn org_code(&self) -> Option<String> {
        match self {
            Caller::Known { org, .. } => Some(org.code.to_string()),
            Caller::Unregistered { code, .. } => Some(code.clone()),
            Caller::NoIdentity { .. } => None,
        }
    }

    fn fingerprint(&self) -> Option<String> {
        match self {
            Caller::Known { fingerprint, .. } | Caller::Unregistered { fingerprint, .. } => {
                Some(fingerprint.clone())
            }
            Caller::NoIdentity { fingerprint, .. } => fingerprint.clone(),
        }
    }

    /// The registered organisation, or the 401/403 this caller gets.
    pub fn require(&self, roles: &[Role]) -> Result<&Arc<Organisation>, ApiError> {
        match self {
            Caller::NoIdentity { reason, .. } => Err(ApiError::unauthenticated(format!(
                "the client certificate does not identify an organisation: {reason}"
            ))),
            Caller::Unregistered { .. } => Err(ApiError::forbidden(
                "unregistered_organisation",
                "the organisation in the client certificate is not registered with this gateway",
            )),
            Caller::Known { org, .. } => {
                if roles.iter().any(|r| org.has_role(*r)) {
                    Ok(org)
                } else {
                    Err(ApiError::forbidden(
                        "role_not_permitted",
                        format!(
                            "this endpoint is for {}",
                            roles
                                .iter()
                                .map(|r| r.as_str())
                                .collect::<Vec<_>>()
                                .join(" or ")
                        ),
                    ))
                }
            }
        }
    }
}

/// The audit entry under construction while a request is handled.
#[derive(Debug, Default)]
pub struct AuditDraft {
    request_id: String,
    action: &'static str,
    subject: Option<SubjectId>,
    purpose: Option<String>,
    consent: Option<String>,
    fields: Vec<AuditField>,
    records: u32,
}

impl AuditDraft {
    fn field(&mut self, field: String, decision: &str, reason: &str, detail: Option<&str>) {
        self.fields.push(AuditField {
            field,
            decision: decision.to_owned(),
            reason: reason.to_owned(),
            detail: detail.map(str::to_owned),
        });
    }
}

/// A successful reply: status and JSON body.
pub struct Reply {
    status: StatusCode,
    body: Value,
    /// A non-JSON body (audit exports) and its content type, sent instead of `body`.
    raw: Option<(&'static str, Bytes)>,
}

impl Reply {
    fn ok(body: Value) -> Self {
        Self::with_status(StatusCode::OK, body)
    }

    /// An already serialised JSON body (200).
    fn json_bytes(bytes: Bytes) -> Self {
        Reply {
            status: StatusCode::OK,
            body: Value::Null,
            raw: Some(("application/json", bytes)),
        }
    }

    fn with_status(status: StatusCode, body: Value) -> Self {
        Reply {
            status,
            body,
            raw: None,
        }
    }
}

impl App {
    fn request_id(&self) -> String {
        format!(
            "{}-{:x}",
            self.request_prefix,
            self.next_request.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Handle one request on a connection from `caller` (see module docs).
    pub async fn handle(&self, caller: &Caller, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let request_id = self.request_id();
        let mut draft = AuditDraft {
            request_id: request_id.clone(),
            action: "unknown",
            ..AuditDraft::default()
        };
        let result = self.route(caller, req, &mut draft).await;
        let (status, body, outcome, raw) = match result {
            Ok(r) => (r.status, r.body, "ok", r.raw),
            Err(e) => (e.status, e.body(), e.code, None),
        };
        let entry = AuditEntry {
            v: ENTRY_VERSION,
            ts: now_rfc3339(),
            request_id: request_id.clone(),
            gateway: self.gateway_id.clone(),
            org: caller.org_code(),
            cert_fp: caller.fingerprint(),
            action: draft.action.to_owned(),
            subject_type: draft.subject.as_ref().map(|s| s.kind().as_str().to_owned()),
            subject: draft.subject.as_ref().map(|s| self.hasher.hash(s)),
            purpose: draft.purpose,
            consent: draft.consent,
            fields: draft.fields,
            records: draft.records,
            status: status.as_u16(),
            outcome: outcome.to_owned(),
        };
        self.metrics.request(draft.action, status.as_u16());
        if let Some(org) = &entry.org {
            let denied = outcome != "ok" || entry.fields.iter().any(|f| f.decision == "withheld");
            self.metrics.anomalies.record(org, denied);
        }
        match self.audit.append(&entry).await {
            Ok(seq) => match raw {
                Some((ctype, bytes)) => respond_raw(status, ctype, bytes, &request_id, seq),
                None => respond(status, &body, &request_id, Some(seq)),
            },
            Err(e) => {
                self.metrics.audit_failures.fetch_add(1, Ordering::Relaxed);
                let e = ApiError::from(e);
                respond(e.status, &e.body(), &request_id, None)
            }
        }
    }

    async fn route(
        &self,
        caller: &Caller,
        req: Request<Incoming>,
        draft: &mut AuditDraft,
    ) -> Result<Reply, ApiError> {
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        match (&method, path.as_str()) {
            (&Method::POST, "/v1/query") => {
                draft.action = "query";
                let org = caller.require(&[
                    Role::Bank,
                    Role::Department,
                    Role::CreditAgency,
                    Role::Portal,
                ])?;
                let body = self.body(req).await?;
                api::query(self, org, &body, draft).await
            }
            (&Method::POST, "/v1/records") => {
                draft.action = "submit_records";
                let org = caller.require(&[Role::Department])?;
                let body = self.body(req).await?;
                api::submit(self, org, &body, draft).await
            }
            (_, p) if p.starts_with("/v1/audit/") || p == auditor::ACCESS_HISTORY => {
                auditor::route(self, caller, req, draft).await
            }
            (_, "/v1/query" | "/v1/records") => {
                draft.action = "method_not_allowed";
                caller.require(&Role::ALL)?;
                Err(ApiError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    format!("{method} is not allowed here"),
                ))
            }
            (_, p) if lifecycle::handles(p) => {
                lifecycle::route(self, caller, req, &method, &path, draft).await
            }
            (_, p) if p.starts_with(consent::PREFIX) => {
                consent::route(self, caller, req, draft).await
            }
            _ => {
                caller.require(&Role::ALL)?;
                Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "no such endpoint",
                ))
            }
        }
    }

    /// Read a JSON body within the size limit.
    async fn body(&self, req: Request<Incoming>) -> Result<Bytes, ApiError> {
        let too_large = || {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("request body exceeds {} bytes", self.max_body_bytes),
            )
        };
        if let Some(len) = req.headers().get(CONTENT_LENGTH) {
            let len: usize = len
                .to_str()
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| ApiError::bad_request("invalid_request", "bad content-length"))?;
            if len > self.max_body_bytes {
                return Err(too_large());
            }
        }
        if let Some(ct) = req.headers().get(CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or("");
            if !ct.starts_with("application/json") {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "send application/json",
                ));
            }
        }
        match Limited::new(req.into_body(), self.max_body_bytes)
            .collect()
            .await
        {
            Ok(c) => Ok(c.to_bytes()),
            Err(e)
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                Err(too_large())
            }
            Err(_) => Err(ApiError::bad_request(
                "body_read_failed",
                "the request body could not be read",
            )),
        }
    }
}

fn respond_raw(
    status: StatusCode,
    ctype: &'static str,
    bytes: Bytes,
    request_id: &str,
    seq: u64,
) -> Response<Full<Bytes>> {
    let mut resp = respond(status, &Value::Null, request_id, Some(seq));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    tiles::cache_control(ctype, resp.headers_mut());
    *resp.body_mut() = Full::new(bytes);
    resp
}

fn respond(
    status: StatusCode,
    body: &Value,
    request_id: &str,
    seq: Option<u64>,
) -> Response<Full<Bytes>> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut resp = Response::new(Full::new(Bytes::from(bytes)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-request-id", v);
    }
    if let Some(seq) = seq {
        h.insert("x-audit-seq", HeaderValue::from(seq));
    }
    resp
}

//! HTTP layer: routing, body limits, the audit wrapper, responses.
//!
//! [`App::handle`] is the whole request lifecycle:
//!
//! 1. the connection's [`Caller`] (identity resolved once per connection);
//! 2. route and run the handler, which fills an [`AuditDraft`] as it learns
//!    the subject, purpose and field decisions;
//! 3. append the finished audit entry and wait until it is durable;
//! 4. only then send the response — or 503 `audit_unavailable` if the log
//!    could not be written (fail closed). A consent use the query spent
//!    counts only if the request is answered with the data: when the entry
//!    cannot be made durable or the handler failed after the spend, the use
//!    is given back first (`Store::give_back_consent`; see
//!    [`crate::consent`], "Binding and counting").
//!
//! Every request that reaches this point produces exactly one audit entry,
//! whatever the outcome.

mod api;
mod auditor;
mod caller;
mod consent;
mod console;
mod draft;
pub mod dto;
pub mod error;
mod lifecycle;
pub mod strict_json;
mod tiles;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::FutureExt as _;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body as _, Incoming};
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};
use serde_json::Value;

use crate::audit::{AuditEntry, AuditLog, ENTRY_VERSION, SubjectHasher, now_rfc3339};
use crate::connection::{InFlight, Rejection};
use crate::consent::token::ConsentVerifier;
use crate::endpoint::{self, Endpoint, RouteError, Routed};
use crate::metrics::Metrics;
use crate::policy::lifecycle::ListKind;
use crate::policy::{Organisation, Policy};
use crate::store::{AuditIntent, Store};
pub use caller::Caller;
pub use draft::AuditDraft;
pub use error::ApiError;
pub use lifecycle::Clock;

/// This API's OpenAPI 3.1 document, served at `GET /v1/openapi.json`
/// exactly as kept in the repository (`tests/openapi.rs` checks it against
/// the endpoint table and `policies/access.toml`).
pub const OPENAPI_DOCUMENT: &str = include_str!("../../docs/openapi.json");

/// Everything a request handler needs; shared by all connections.
///
/// One `App` per policy generation: a reload ([`crate::reload`]) builds a
/// new one with [`App::with_policy`] (everything else shared) and swaps it
/// in; a request runs wholly under the `App` it started with.
pub struct App {
    /// Compiled policy.
    pub policy: Arc<Policy>,
    /// Content hash of the policy files `policy` was loaded from, recorded
    /// in every audit entry ([`crate::reload::policy_hash`]).
    pub policy_hash: String,
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
    /// A request body must arrive within this long (else 408).
    pub body_timeout: Duration,
    /// Requests being handled, process-wide (shutdown waits for them).
    pub in_flight: Arc<InFlight>,
    /// Test hook: a request carrying `x-credgate-fault: panic` panics in its
    /// handler. Debug builds only; release builds do not contain it.
    #[cfg(debug_assertions)]
    pub fault_injection: Arc<AtomicBool>,
    /// Public key auditors verify checkpoints with (C2SP verifier key),
    /// published by `GET /v1/audit/checkpoint`.
    pub checkpoint_verifier_key: String,
    /// Consent token verifier (issuer keys pinned by `policies/consent.toml`).
    pub consent: ConsentVerifier,
    /// Request id counter (combined with a per-process random prefix).
    next_request: Arc<AtomicU64>,
    request_prefix: String,
    /// Today's date for lifecycle decisions (see [`App::set_clock`]).
    clock: Arc<std::sync::RwLock<Clock>>,
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
            policy_hash: String::new(),
            store,
            audit,
            hasher,
            metrics,
            gateway_id,
            max_body_bytes,
            body_timeout: Duration::from_secs(10),
            in_flight: Arc::default(),
            #[cfg(debug_assertions)]
            fault_injection: Arc::default(),
            checkpoint_verifier_key: String::new(),
            consent,
            next_request: Arc::new(AtomicU64::new(1)),
            request_prefix: hex::encode(rnd),
            clock: Arc::new(std::sync::RwLock::new(lifecycle::system_clock())),
        }
    }

    /// The same application under another policy and consent verifier
    /// (a reload): store, log, metrics, counters and clock are shared.
    pub fn with_policy(
        &self,
        policy: Arc<Policy>,
        consent: ConsentVerifier,
        policy_hash: String,
    ) -> App {
        App {
            policy,
            policy_hash,
            consent,
            store: self.store.clone(),
            audit: self.audit.clone(),
            hasher: self.hasher.clone(),
            metrics: self.metrics.clone(),
            gateway_id: self.gateway_id.clone(),
            max_body_bytes: self.max_body_bytes,
            body_timeout: self.body_timeout,
            in_flight: self.in_flight.clone(),
            #[cfg(debug_assertions)]
            fault_injection: self.fault_injection.clone(),
            checkpoint_verifier_key: self.checkpoint_verifier_key.clone(),
            next_request: self.next_request.clone(),
            request_prefix: self.request_prefix.clone(),
            clock: self.clock.clone(),
        }
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
    pub(crate) fn request_id(&self) -> String {
        format!(
            "{}-{:x}",
            self.request_prefix,
            self.next_request.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Handle one request on a connection from `caller` (see module docs).
    ///
    /// A panic in a handler is caught here and becomes a 500
    /// `internal_error` response with its entry, never a missing entry.
    pub async fn handle(
        &self,
        caller: &Caller,
        mut req: Request<Incoming>,
    ) -> Response<Full<Bytes>> {
        let started = std::time::Instant::now();
        let request_id = self.request_id();
        let mut draft = AuditDraft {
            request_id: request_id.clone(),
            action: "unknown",
            org: caller.org_code(),
            cert_fp: caller.fingerprint(),
            ..AuditDraft::default()
        };
        let has_body = !req.body().is_end_stream();
        // A browser on a console page gets its errors as an HTML page.
        let html_errors = console::wants_html(req.uri().path(), req.headers());
        let body_read = Arc::new(AtomicBool::new(false));
        req.extensions_mut().insert(BodyRead(body_read.clone()));
        let result = match AssertUnwindSafe(self.route(caller, req, &mut draft))
            .catch_unwind()
            .await
        {
            Ok(r) => r,
            Err(_) => {
                self.metrics.handler_panics.inc();
                tracing::error!(request_id = %request_id, action = draft.action, "handler panicked");
                Err(ApiError::internal())
            }
        };
        let mut allow = None;
        let (status, body, outcome, raw) = match result {
            Ok(r) => (r.status, r.body, "ok", r.raw),
            Err(e) => {
                allow = e.allow.clone();
                let page = html_errors.then(|| console::error_page(&e, &request_id));
                (e.status, e.body(), e.code, page)
            }
        };
        // A redirect's target travels in its (unsent) JSON body.
        let location = status
            .is_redirection()
            .then(|| {
                body["location"]
                    .as_str()
                    .and_then(|l| HeaderValue::from_str(l).ok())
            })
            .flatten();
        let pending = draft.pending.take();
        // An outbox row exists only if the change committed; clearing a
        // row that was never written is a no-op.
        let written = draft.outbox;
        let spent = std::mem::take(&mut draft.spent);
        let entry = match pending {
            // The entry went into the change's transaction; append the same.
            Some(e) if outcome == "ok" => e,
            // Refused after all (the transaction rolled back): the entry
            // is the refusal's.
            _ => self.entry(draft, status.as_u16(), outcome),
        };
        self.count(&entry);
        let appended = self.append(&entry).await;
        // A change that committed without its entry: its entry is appended
        // once the log recovers, and the client learns that it is stored
        // (a resubmission would store it twice). The consent uses it spent
        // stay spent, as the change stands.
        let late = written.filter(|_| outcome == "ok" && appended.is_err());
        // A consent use counts only for a request answered with the data it
        // opened: give it back before answering otherwise, so a retry finds
        // it (see `crate::consent`, "Binding and counting").
        if !spent.is_empty() && late.is_none() && (appended.is_err() || entry.outcome != "ok") {
            consent::give_back(self, &request_id, &spent).await;
        }
        if written.is_some() && appended.is_ok() {
            let store = self.store.clone();
            let request_id = entry.request_id.clone();
            // Off the response path; a row left behind is only re-checked
            // against the log at the next start.
            tokio::spawn(async move {
                if let Err(e) = store.outbox_done(&request_id).await {
                    tracing::warn!(error = %e, %request_id, "outbox row not cleared");
                }
            });
        }
        let appended = appended.map_err(|e| {
            if late.is_some() {
                error::stored_without_entry()
            } else {
                e
            }
        });
        let seq = appended.as_ref().ok().copied();
        let mut resp = match appended {
            Ok(seq) => match raw {
                Some((ctype, bytes)) => respond_raw(status, ctype, bytes, &request_id, Some(seq)),
                None => respond(status, &body, &request_id, Some(seq)),
            },
            Err(e) if html_errors => {
                let (ctype, bytes) = console::error_page(&e, &request_id);
                respond_raw(e.status, ctype, bytes, &request_id, None)
            }
            Err(e) => respond(e.status, &e.body(), &request_id, None),
        };
        if let Some(location) = location {
            resp.headers_mut().insert(hyper::header::LOCATION, location);
        }
        if let Some(allow) = allow.and_then(|a| HeaderValue::from_str(&a).ok()) {
            resp.headers_mut().insert(hyper::header::ALLOW, allow);
        }
        // A body left unread (refused before reading, or timed out) must not
        // be parsed as the next request: close the connection after this
        // response. (hyper drops the header on HTTP/2, where streams end
        // independently.)
        if has_body && !body_read.load(Ordering::Acquire) || status == StatusCode::REQUEST_TIMEOUT {
            resp.headers_mut()
                .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
        }
        let took = started.elapsed();
        let sent = resp.status().as_u16();
        self.metrics.request_latency(&entry.action, sent, took);
        // The per-request log line; debug level, so off under the default
        // `info` filter, where it costs one comparison (see docs/operator-guide.md).
        tracing::debug!(
            target: "credgate::request",
            request_id = %request_id,
            seq,
            action = %entry.action,
            status = sent,
            outcome = %entry.outcome,
            micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            "request"
        );
        if let Some(seq) = seq {
            self.store
                .remember_indexed(seq, crate::store::IndexRow::of(entry));
        } else if let Some(since) = late
            && !self.audit.defer(entry, since)
        {
            tracing::error!(%request_id, "too many stored changes wait for the audit log; this one's entry waits for the next start");
        }
        resp
    }

    /// The entry for a finished request.
    fn entry(&self, draft: AuditDraft, status: u16, outcome: &str) -> AuditEntry {
        let mut entry = AuditEntry {
            v: ENTRY_VERSION,
            ts: now_rfc3339(),
            request_id: draft.request_id,
            gateway: self.gateway_id.clone(),
            org: draft.org,
            cert_fp: draft.cert_fp,
            action: draft.action.to_owned(),
            subject_type: draft.subject.as_ref().map(|s| s.kind().as_str().to_owned()),
            subject: draft.subject.as_ref().map(|s| self.hasher.hash(s)),
            purpose: draft.purpose,
            consent: draft.consent,
            fields: draft.fields,
            records: draft.records,
            status,
            outcome: outcome.to_owned(),
            policy: Some(self.policy_hash.clone()),
        };
        crate::audit::items::bound_entry(&mut entry, draft.items);
        entry
    }

    /// Count a finished request in the metrics and anomaly counters.
    fn count(&self, entry: &AuditEntry) {
        self.metrics.request_action(&entry.action, entry.status);
        if let Some(org) = &entry.org {
            let denied = crate::policy::is_denied_attempt(
                &entry.outcome,
                entry.fields.iter().map(|f| (&*f.decision, &*f.reason)),
            );
            self.metrics.anomalies.record(org, denied);
        }
    }

    /// Fix this request's entry before it changes state: the handler's
    /// decisions are final, the outcome is `ok` with `status`. The store
    /// writes the returned intent in the change's own transaction (see
    /// [`crate::store::outbox`]); if the handler then succeeds, exactly this
    /// entry is appended to the log.
    pub(crate) async fn intend(
        &self,
        draft: &mut AuditDraft,
        status: StatusCode,
    ) -> Result<AuditIntent, ApiError> {
        let log_size = self.store.log_head().await?.0;
        let entry = self.entry(draft.snapshot(), status.as_u16(), "ok");
        let intent = AuditIntent::new(&entry.request_id, log_size, self.intent_bytes(&entry)?);
        draft.pending = Some(entry);
        draft.outbox = Some(log_size);
        Ok(intent)
    }

    /// Like [`App::intend`] for a change whose entry the handler completes
    /// only after the store answers (a new objection's id, the subject of
    /// the record it names, …): the intent holds the entry as known before
    /// the change, marked `audit_entry: recovered / entry_completed_at_restart`.
    /// It reaches the log only if the gateway stops between the commit and
    /// the append; otherwise the handler's complete entry is appended and
    /// the row cleared.
    pub(crate) async fn intend_provisional(
        &self,
        draft: &mut AuditDraft,
        status: StatusCode,
    ) -> Result<AuditIntent, ApiError> {
        let log_size = self.store.log_head().await?.0;
        let mut snapshot = draft.snapshot();
        snapshot.field(
            "audit_entry".into(),
            "recovered",
            "entry_completed_at_restart",
            None,
        );
        let entry = self.entry(snapshot, status.as_u16(), "ok");
        let bytes = self.intent_bytes(&entry)?;
        draft.outbox = Some(log_size);
        Ok(AuditIntent::new(&entry.request_id, log_size, bytes))
    }

    /// The canonical bytes of an outbox intent, refused (503, before the
    /// change's transaction) if the log could never take them.
    fn intent_bytes(&self, entry: &AuditEntry) -> Result<Vec<u8>, ApiError> {
        let bytes = entry.canonical();
        self.audit.check_len(&bytes, &entry.action).map_err(|e| {
            self.metrics.audit_failures.inc();
            ApiError::from(e)
        })?;
        Ok(bytes)
    }

    /// Append `entry` and wait until it is durable; the error is the 503
    /// the client gets instead of its answer.
    async fn append(&self, entry: &AuditEntry) -> Result<u64, ApiError> {
        self.audit.append(entry).await.map_err(|e| {
            self.metrics.audit_failures.inc();
            ApiError::from(e)
        })
    }

    /// Audit a request the HTTP layer refused before any handler ran
    /// (see [`crate::connection`]): action `malformed_http`, the caller's
    /// identity, the status sent (0 when the connection was closed without
    /// a response) and the rejection as the outcome. `request_id` is the
    /// id already sent in hyper's response (`x-request-id`), if one was.
    pub async fn audit_rejection(
        &self,
        caller: &Caller,
        rejection: Rejection,
        request_id: Option<String>,
    ) {
        self.metrics.rejection(rejection.outcome);
        let draft = AuditDraft {
            request_id: request_id.unwrap_or_else(|| self.request_id()),
            action: "malformed_http",
            org: caller.org_code(),
            cert_fp: caller.fingerprint(),
            ..AuditDraft::default()
        };
        let entry = self.entry(draft, rejection.status, rejection.outcome);
        self.count(&entry);
        match self.append(&entry).await {
            Ok(seq) => self
                .store
                .remember_indexed(seq, crate::store::IndexRow::of(entry)),
            Err(_) => tracing::error!(
                outcome = rejection.outcome,
                "rejected request could not be audited"
            ),
        }
    }

    /// Route and run one request, in the one order every endpoint shares:
    ///
    /// 1. 401 `no_identity` / 403 `unregistered_organisation` (the
    ///    connection's identity);
    /// 2. 404 `not_found` / 405 `method_not_allowed` with `Allow` (the
    ///    endpoint table, [`crate::endpoint`]);
    /// 3. 403 `role_not_permitted` (`policies/access.toml`, decided by
    ///    [`Policy::admit`]);
    /// 4. 400 for a query string (no endpoint takes one), then the body
    ///    through the one extractor ([`App::body`]);
    /// 5. the handler.
    ///
    /// The audit action is the endpoint's as soon as the path is known, so
    /// a refused call is logged under the endpoint it tried.
    async fn route(
        &self,
        caller: &Caller,
        req: Request<Incoming>,
        draft: &mut AuditDraft,
    ) -> Result<Reply, ApiError> {
        #[cfg(debug_assertions)]
        if self.fault_injection.load(Ordering::Relaxed)
            && req
                .headers()
                .get("x-credgate-fault")
                .is_some_and(|v| v == "panic")
        {
            panic!("fault injection: handler panic");
        }
        let path = req.uri().path().to_owned();
        let routed = endpoint::route(req.method(), &path);
        draft.action = match &routed {
            Ok(r) => r.endpoint.action(),
            Err(RouteError::MethodNotAllowed { .. }) => "method_not_allowed",
            Err(_) => "unknown",
        };
        let org = caller.identified()?;
        let routed = routed?;
        self.policy.admit(org, routed.endpoint)?;
        if req.uri().query().is_some() {
            return Err(ApiError::bad_request(
                "invalid_request",
                "no endpoint takes query parameters; send them in the JSON body",
            ));
        }
        let body = match routed.body {
            endpoint::Body::None => Bytes::new(),
            kind => self.body(req, kind).await?,
        };
        self.dispatch(org, &routed, &path, &body, draft).await
    }

    /// The handler of each endpoint. Exhaustive: an endpoint added to the
    /// table without a handler does not compile.
    async fn dispatch(
        &self,
        org: &Arc<Organisation>,
        r: &Routed<'_>,
        path: &str,
        body: &Bytes,
        draft: &mut AuditDraft,
    ) -> Result<Reply, ApiError> {
        use lifecycle::{checks, history, input::path_id, lists, objections, repairs};
        let id = || path_id(r.param("id"));
        match r.endpoint {
            Endpoint::Query => api::query(self, org, body, draft).await,
            Endpoint::SubmitRecords => api::submit(self, org, body, draft).await,
            Endpoint::RecordHistory => history::history(self, org, id()?, draft).await,
            Endpoint::ObjectionFile => objections::file_objection(self, org, body, draft).await,
            Endpoint::ObjectionOverdue => objections::overdue(self, org).await,
            Endpoint::ObjectionResolve => {
                objections::resolve_objection(self, org, id()?, body, draft).await
            }
            Endpoint::ObjectionStatus => {
                objections::objection_status(self, org, id()?, body, draft).await
            }
            Endpoint::RepairApply => repairs::apply_repair(self, org, body, draft).await,
            Endpoint::RepairDecide => repairs::decide_repair(self, org, id()?, body, draft).await,
            Endpoint::RepairStatus => repairs::repair_status(self, org, id()?, body, draft).await,
            Endpoint::ListAdd => {
                let list = ListKind::parse(r.param("list"))
                    .ok_or_else(|| ApiError::not_found("not_found", "no such list"))?;
                lists::add_list_entry(self, org, list, body, draft).await
            }
            Endpoint::ListExit => lists::exit_list_entry(self, org, id()?, body, draft).await,
            Endpoint::Check => checks::run_check(self, org, body, draft).await,
            Endpoint::CheckFeedback => checks::check_feedback(self, org, id()?, body, draft).await,
            Endpoint::ConsentStatus => consent::status(self, r.param("jti"), draft).await,
            Endpoint::ConsentRevoke => {
                consent::revoke(self, org, r.param("jti"), body, draft).await
            }
            Endpoint::AccessHistory => {
                auditor::access_history(self, org, auditor::parse(body)?, draft).await
            }
            Endpoint::AuditSearch => auditor::search(self, auditor::parse(body)?, draft).await,
            Endpoint::AuditInclusionProof => auditor::inclusion(self, auditor::parse(body)?).await,
            Endpoint::AuditConsistencyProof => {
                auditor::consistency(self, auditor::parse(body)?).await
            }
            Endpoint::AuditCheckpoint => auditor::checkpoint(self).await,
            Endpoint::AuditReport => auditor::report(self, auditor::parse(body)?).await,
            Endpoint::AuditExport => auditor::export(self, auditor::parse(body)?).await,
            Endpoint::AuditLogCheckpoint | Endpoint::AuditLogTile => tiles::serve(self, path).await,
            Endpoint::OpenApi => Ok(Reply::json_bytes(Bytes::from_static(
                OPENAPI_DOCUMENT.as_bytes(),
            ))),
            Endpoint::ConsoleRoot
            | Endpoint::ConsoleHome
            | Endpoint::ConsoleSearch
            | Endpoint::ConsoleEntry
            | Endpoint::ConsoleReports
            | Endpoint::ConsoleReportsRange
            | Endpoint::ConsoleOverdue
            | Endpoint::ConsoleExportForm
            | Endpoint::ConsoleExport
            | Endpoint::ConsoleAsset => console::serve(self, org, r, body, draft).await,
        }
    }

    /// Read a body: within the size limit and the body deadline, and for
    /// [`endpoint::Body::Json`] as `application/json` and strict JSON
    /// ([`strict_json`]: no duplicate keys at any depth, bounded nesting,
    /// valid UTF-8); for [`endpoint::Body::Form`] as
    /// `application/x-www-form-urlencoded` (parsed strictly by the console,
    /// [`console`]).
    async fn body(&self, req: Request<Incoming>, kind: endpoint::Body) -> Result<Bytes, ApiError> {
        if let Some(flag) = req.extensions().get::<BodyRead>() {
            flag.0.store(true, Ordering::Release);
        }
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
        let (want, send) = match kind {
            endpoint::Body::Form => (console::FORM_TYPE, "send application/x-www-form-urlencoded"),
            _ => (
                "application/json",
                "send application/json (charset, if any, utf-8)",
            ),
        };
        let unsupported = || {
            ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                send,
            )
        };
        let typed = req.headers().get(CONTENT_TYPE).is_some();
        if typed
            && !req
                .headers()
                .get_all(CONTENT_TYPE)
                .iter()
                .all(|ct| ct.to_str().is_ok_and(|ct| dto::media_type_is(ct, want)))
        {
            return Err(unsupported());
        }
        let read = Limited::new(req.into_body(), self.max_body_bytes).collect();
        let bytes = match tokio::time::timeout(self.body_timeout, read).await {
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "body_timeout",
                    format!(
                        "the request body did not arrive within {} ms",
                        self.body_timeout.as_millis()
                    ),
                ));
            }
            Ok(Ok(c)) => c.to_bytes(),
            Ok(Err(e))
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                return Err(too_large());
            }
            Ok(Err(_)) => {
                return Err(ApiError::bad_request(
                    "body_read_failed",
                    "the request body could not be read",
                ));
            }
        };
        // A body is sent with its media type.
        if !typed && !bytes.is_empty() {
            return Err(unsupported());
        }
        if kind == endpoint::Body::Json {
            strict_json::check(&bytes)?;
        }
        Ok(bytes)
    }
}

/// Set once a handler has taken the request body (see [`App::handle`]).
#[derive(Clone)]
struct BodyRead(Arc<AtomicBool>);

/// A bare 500 for the case where no handler result exists at all.
pub fn internal_error_response() -> Response<Full<Bytes>> {
    let e = ApiError::internal();
    respond(e.status, &e.body(), "", None)
}

fn respond_raw(
    status: StatusCode,
    ctype: &'static str,
    bytes: Bytes,
    request_id: &str,
    seq: Option<u64>,
) -> Response<Full<Bytes>> {
    let mut resp = respond(status, &Value::Null, request_id, seq);
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    tiles::cache_control(ctype, resp.headers_mut());
    console::headers(ctype, resp.headers_mut());
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

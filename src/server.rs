//! Startup, the accept loop and graceful shutdown.
//!
//! [`Gateway::build`] does everything that can fail before a socket is
//! bound: load and compile the policy, read keys, build the TLS config,
//! connect and migrate the store, start the audit sequencer. [`run`] is the
//! entry point shared by the binary and the integration tests: it takes bound
//! listeners and a shutdown future, like mini-redis's `server::run`.
//!
//! Per connection: a cap (a semaphore permit, taken at accept, so excess
//! connections are closed before any TLS work), a handshake timeout in the
//! connection's own task (a silent client blocks nobody), identity
//! resolution once, then HTTP/2 or HTTP/1.1 by ALPN ([`crate::connection`]).
//!
//! Reload ([`crate::reload`]): the application state and the TLS config
//! live in a [`Live`]; each connection takes the TLS config current at its
//! accept, each request the application current at its start. SIGHUP,
//! `POST /reload` on the admin listener and the CRL timer swap them.
//!
//! Shutdown: stop accepting, let in-flight requests finish (bounded by the
//! grace period), drop the last audit handle so the sequencer commits what
//! it holds and exits, write a final checkpoint, close the pool.

use std::convert::Infallible;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::audit::anomaly::AnomalyLimits;
use crate::audit::checkpoint::CheckpointSigner;
use crate::audit::{self, AuditLog, SubjectHasher};
use crate::config::Config;
use crate::connection::{self, ConnLimits};
use crate::datadir::DataDirLock;
use crate::http::App;
use crate::metrics::Metrics;
use crate::reload::{self, Live, Trigger};
use crate::store::Store;
use crate::{policy, tls};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A policy file is invalid.
    #[error("policy: {0}")]
    Policy(#[from] policy::LoadError),
    /// TLS material is unusable.
    #[error("tls: {0}")]
    Tls(#[from] tls::TlsError),
    /// The store could not be opened or migrated.
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    /// A key file is unreadable or invalid.
    #[error("key {path}: {message}")]
    Key {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// Another process serves from the same embedded store.
    #[error("{0}")]
    Locked(#[from] crate::datadir::LockError),
    /// A listener could not be bound or used.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// Read a key file; at least 16 bytes.
pub fn read_key(path: &Path) -> Result<Vec<u8>, StartError> {
    let bytes = std::fs::read(path).map_err(|e| StartError::Key {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    if bytes.len() < 16 {
        return Err(StartError::Key {
            path: path.display().to_string(),
            message: "key is shorter than 16 bytes".into(),
        });
    }
    Ok(bytes)
}

/// The checkpoint signer of `audit.checkpoint_key_file`, co-signed by the
/// keys of `audit.checkpoint_cosign_key_files`; errors name the file.
fn checkpoint_signer(audit: &crate::config::AuditConfig) -> Result<CheckpointSigner, StartError> {
    let load = |path: &Path| {
        CheckpointSigner::from_pkcs8(&audit.origin, &read_key(path)?).map_err(|e| StartError::Key {
            path: path.display().to_string(),
            message: e.to_string(),
        })
    };
    let cosigners = audit
        .checkpoint_cosign_key_files
        .iter()
        .map(|p| load(p))
        .collect::<Result<Vec<_>, _>>()?;
    load(&audit.checkpoint_key_file)?
        .with_cosigners(cosigners)
        .map_err(|e| StartError::Key {
            path: "audit.checkpoint_cosign_key_files".into(),
            message: e.to_string(),
        })
}

/// A key list's refusal ([`crate::config::read_key_list`]) as a
/// [`StartError::Key`] naming the file at fault (or the list).
fn key_list_error(e: crate::config::KeyListError) -> StartError {
    StartError::Key {
        path: e
            .file
            .as_ref()
            .map_or_else(|| e.list.clone(), |f| f.display().to_string()),
        message: format!("{}: {}", e.list, e.problem),
    }
}

/// A gateway ready to serve: everything validated and opened.
pub struct Gateway {
    live: Arc<Live>,
    audit_task: JoinHandle<()>,
    checkpoint_signer: Arc<CheckpointSigner>,
    settings: Config,
    /// Held while serving from an embedded store ([`crate::datadir`]).
    _lock: Option<DataDirLock>,
    /// The SIGHUP handler the binary installed before building
    /// ([`Gateway::with_hangup`]); `run` installs one if none was given.
    hangup: Option<reload::Hangup>,
}

impl Gateway {
    /// Validate and open everything `cfg` names. No socket is bound here.
    pub async fn build(cfg: &Config) -> Result<Gateway, StartError> {
        let mask_keys = cfg.policy.read_mask_keys().map_err(key_list_error)?;
        let mask_key = crate::policy::MaskKey::new(&mask_keys[0].id, &mask_keys[0].key);
        let sources = reload::Sources::from_config(cfg, mask_key);
        let loaded = reload::load_policy(&sources).map_err(|e| match e {
            reload::ReloadError::Policy(e) => StartError::Policy(e),
            reload::ReloadError::Tls(e) => StartError::Tls(e),
            other => StartError::Io(std::io::Error::other(other.to_string())),
        })?;
        reload::warn_extra_issuers(&loaded.consent);
        let (policy, consent, policy_hash) = (Arc::new(loaded.policy), loaded.consent, loaded.hash);
        let subject_keys = cfg.audit.read_subject_keys().map_err(key_list_error)?;
        let signer = checkpoint_signer(&cfg.audit)?;
        let tls_state = tls::load_server(&sources.tls, reload::ALPN)?;
        // Before the store is opened: a second process must not even
        // migrate or recover the first one's store.
        let lock = match crate::datadir::sqlite_path(&cfg.store.url) {
            Some(db) => Some(DataDirLock::acquire(&db)?),
            None => None,
        };
        let store = Store::connect_config(cfg).await?;
        let (audit_log, audit_task) = AuditLog::start(store.clone(), cfg.audit.max_batch).await?;
        let node_id = cfg
            .server
            .node_id
            .clone()
            .unwrap_or_else(|| cfg.server.gateway_id.clone());
        recover_outbox(&store, &audit_log, &node_id, lock.is_some()).await?;
        let limits = AnomalyLimits {
            default_distinct_subjects_per_hour: cfg.server.quota_distinct_subjects_per_hour,
            enforce_quota: cfg.server.quota_enforce,
            denied_per_hour: cfg.server.anomaly_denied_per_hour,
        };
        let metrics = Arc::new(Metrics::new(limits, audit_log.health().clone()));
        let mut app = App::new(
            policy,
            store,
            audit_log,
            SubjectHasher::with_keys(&subject_keys),
            metrics,
            node_id,
            cfg.server.max_body_bytes,
            consent.verifier,
        );
        app.checkpoint_verifier_key = signer.verifier_key();
        app.body_timeout = Duration::from_millis(cfg.server.body_timeout_ms);
        app.policy_hash = policy_hash;
        tracing::info!(policy_hash = %app.policy_hash, "policy loaded");
        let live = Arc::new(Live::new(Arc::new(app), tls_state, sources));
        Ok(Gateway {
            live,
            audit_task,
            checkpoint_signer: Arc::new(signer),
            settings: cfg.clone(),
            _lock: lock,
            hangup: None,
        })
    }

    /// The application state under the policy in force (tests use it to
    /// reach the store).
    pub fn app(&self) -> Arc<App> {
        self.live.app()
    }

    /// The swappable state (reload).
    pub fn live(&self) -> &Arc<Live> {
        &self.live
    }

    /// Serve with the SIGHUP handler installed at the process's start: a
    /// SIGHUP received while building is one reload once serving (see
    /// [`reload::Hangup`]).
    pub fn with_hangup(mut self, hangup: reload::Hangup) -> Gateway {
        self.hangup = Some(hangup);
        self
    }

    /// The checkpoint verifier key to publish.
    pub fn checkpoint_verifier_key(&self) -> String {
        self.checkpoint_signer.verifier_key()
    }

    /// Close a gateway that never served (`quickstart --no-serve`): the
    /// log commits what it holds, the search indexer catches up and stops,
    /// a checkpoint is signed, the store closes. Dropping it instead ended
    /// the runtime under the indexer (a spurious "audit index batch failed
    /// … was cancelled" warning, and an index left behind until the next
    /// start).
    pub async fn close(self) {
        let Gateway {
            live,
            audit_task,
            checkpoint_signer,
            settings,
            ..
        } = self;
        let store = live.app().store.clone();
        drop(live);
        finish(
            store,
            audit_task,
            &checkpoint_signer,
            &settings.audit.origin,
        )
        .await;
    }
}

/// The end of every gateway's life, once nothing else holds the
/// application: the sequencer exits when the last `AuditLog` handle is gone
/// (after committing what it holds) and the indexer catches up and stops;
/// then a final checkpoint is signed and the store closes.
async fn finish(
    store: crate::store::Store,
    audit_task: JoinHandle<()>,
    signer: &CheckpointSigner,
    origin: &str,
) {
    let _ = audit_task.await;
    if let Err(e) = audit::checkpoint_once(&store, signer, origin).await {
        tracing::warn!(error = %e, "final checkpoint failed");
    }
    store.close().await;
}

/// Append the entries of changes that committed before a crash cut their
/// requests off (see [`crate::store::outbox`]): each outbox row whose
/// request id the log's tail does not hold is appended, then every row is
/// cleared. Runs before any socket is bound.
///
/// With `exclusive` (an embedded store, held under its [`DataDirLock`]:
/// no other process serves from it) every row is recovered, whatever
/// gateway name its entry carries: one left by this store's earlier
/// process under another `server.gateway_id` or `server.node_id` would
/// otherwise wait forever. On a shared PostgreSQL store only this node's
/// rows are (the entry's `gateway` is `node_id`): another node's row may
/// belong to a request that node is still handling, and a crashed node's
/// rows are recovered when it restarts under its `server.node_id`; the
/// start warns about other nodes' rows, naming each node, so that one that
/// never returns is noticed.
pub async fn recover_outbox(
    store: &Store,
    log: &AuditLog,
    node_id: &str,
    exclusive: bool,
) -> Result<usize, StartError> {
    let corrupt = |rid: &str, what: String| {
        StartError::Store(crate::store::StoreError::Corrupt(format!(
            "outbox entry of {rid}: {what}"
        )))
    };
    let mut pending = Vec::new();
    let mut others = std::collections::BTreeMap::<String, usize>::new();
    for p in store.outbox_pending().await? {
        let entry = audit::AuditEntry::parse(&p.entry)
            .map_err(|e| corrupt(&p.request_id, format!("does not parse: {e}")))?;
        if exclusive || entry.gateway == node_id {
            pending.push((p, entry));
        } else {
            *others.entry(entry.gateway).or_default() += 1;
        }
    }
    for (node, rows) in &others {
        tracing::warn!(
            %node,
            rows,
            "audit outbox rows of another node (requests in flight there, or left by its crash): a crashed node's changes get their log entries when it starts again under the same server.node_id"
        );
    }
    let Some(first) = pending.iter().map(|(p, _)| p.log_size).min() else {
        return Ok(0);
    };
    let tail = store.audit_range(first, u64::MAX / 2).await?;
    let mut logged = std::collections::HashSet::new();
    for t in &tail {
        if let Ok(e) = audit::AuditEntry::parse(&t.entry) {
            logged.insert(e.request_id);
        }
    }
    let mut appended = 0;
    for (p, entry) in &pending {
        if !logged.contains(&p.request_id) {
            log.append(entry)
                .await
                .map_err(|e| corrupt(&p.request_id, format!("cannot be appended: {e}")))?;
            appended += 1;
        }
        store.outbox_done(&p.request_id).await?;
    }
    if appended > 0 {
        tracing::warn!(
            appended,
            "audited changes a crash had left without their log entry"
        );
    }
    Ok(appended)
}

/// Serve until `shutdown` resolves, then drain and flush.
pub async fn run(
    listener: TcpListener,
    admin: TcpListener,
    gateway: Gateway,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let Gateway {
        live,
        audit_task,
        checkpoint_signer,
        settings,
        _lock,
        hangup,
    } = gateway;
    let s = &settings.server;
    let (stop_tx, stop_rx) = watch::channel(false);
    // Told to connections when shutdown starts (they finish what they are
    // serving and close); `stop_tx` stops the background tasks after them.
    let (conn_stop_tx, conn_stop_rx) = watch::channel(false);
    let (store, metrics, in_flight) = {
        let app = live.app();
        (
            app.store.clone(),
            app.metrics.clone(),
            app.in_flight.clone(),
        )
    };
    let checkpointer = audit::spawn_checkpointer(
        store.clone(),
        checkpoint_signer.clone(),
        settings.audit.origin.clone(),
        Duration::from_secs(settings.audit.checkpoint_interval_secs),
        stop_rx.clone(),
    );
    let admin_task = tokio::spawn(serve_admin(
        admin,
        live.clone(),
        stop_rx.clone(),
        Duration::from_millis(s.shutdown_grace_ms),
        Duration::from_millis(s.header_timeout_ms),
    ));
    let triggers = reload::spawn_triggers(live.clone(), hangup, stop_rx.clone());
    tracing::info!(addr = %listener.local_addr()?, store = store.kind(), "credgate serving");

    let slots = Arc::new(Semaphore::new(s.max_connections));
    let mut conns = JoinSet::new();
    let limits = ConnLimits {
        handshake: s.handshake_timeout(),
        header: Duration::from_millis(s.header_timeout_ms),
        idle: Duration::from_millis(s.idle_timeout_ms),
        h2_max_streams: s.h2_max_streams,
    };
    tokio::pin!(shutdown);
    loop {
        while conns.try_join_next().is_some() {}
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics.connections_rejected.inc();
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (live, metrics, stop) = (live.clone(), metrics.clone(), conn_stop_rx.clone());
        conns.spawn(async move {
            let _slot = slot;
            metrics.connections_open.inc();
            connection::serve(live, tcp, peer, limits, stop).await;
            metrics.connections_open.dec();
        });
    }
    drop(listener);
    tracing::info!("shutting down: draining in-flight requests");
    let grace = Duration::from_millis(s.shutdown_grace_ms);
    let _ = conn_stop_tx.send(true);
    if tokio::time::timeout(grace, async { while conns.join_next().await.is_some() {} })
        .await
        .is_err()
    {
        tracing::warn!("grace period over; closing remaining connections");
    }
    conns.abort_all();
    while conns.join_next().await.is_some() {}
    // Aborting a connection hands its request's handling to a task of its
    // own (`connection::handoff`): wait for the ones still running (their entries must reach the log) before the
    // sequencer is allowed to stop.
    if tokio::time::timeout(grace, in_flight.drained())
        .await
        .is_err()
    {
        tracing::warn!(
            in_flight = in_flight.count(),
            "grace period over with requests still being handled"
        );
    }
    let _ = stop_tx.send(true);
    let _ = admin_task.await;
    let _ = checkpointer.await;
    let _ = triggers.await;
    drop(live);
    finish(
        store,
        audit_task,
        &checkpoint_signer,
        &settings.audit.origin,
    )
    .await;
    tracing::info!("credgate stopped");
    Ok(())
}

/// Concurrent connections on the admin listener; more are closed at accept.
/// Scrapers, probes and an operator's `curl` need a handful; the cap keeps
/// anything that can reach the port from holding file descriptors (and
/// application handles) without bound.
pub const ADMIN_MAX_CONNECTIONS: usize = 64;

/// The admin listener: plain HTTP/1.1, keep-alive. A request head must
/// arrive whole within `head_deadline` (`server.header_timeout_ms`), and
/// a keep-alive connection with no request closes after the same time:
/// the listener has no authentication, so a stalled client must not hold a
/// slot. At most [`ADMIN_MAX_CONNECTIONS`] at once. When `stop` turns true
/// (after the API's connections and requests have drained) it stops
/// accepting and shuts every admin connection down gracefully: a response
/// being written is finished, an idle keep-alive connection (a metrics
/// scraper's) is closed at once. What is still open after `grace` is
/// closed. Each connection holds the application, and so a handle on the
/// audit log: one left open would keep the sequencer, and the shutdown,
/// waiting.
async fn serve_admin(
    listener: TcpListener,
    live: Arc<Live>,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
    head_deadline: Duration,
) {
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = async { let _ = stop.wait_for(|s| *s).await; } => break,
        };
        if conns.len() >= ADMIN_MAX_CONNECTIONS {
            tracing::debug!(%peer, "admin connection refused: at the cap");
            drop(tcp);
            continue;
        }
        let (live, mut stop) = (live.clone(), stop.clone());
        conns.spawn(async move {
            let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                let live = live.clone();
                async move {
                    let resp = match req.uri().path() {
                        "/reload" => reload_response(&live, req.method(), peer).await,
                        path => admin_response(&live.app(), path).await,
                    };
                    Ok::<_, Infallible>(resp)
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(head_deadline)
                .serve_connection(TokioIo::new(tcp), svc);
            let _ = connection::drive(conn, &mut stop, &tokio::sync::Notify::new()).await;
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, async { while conns.join_next().await.is_some() {} })
        .await
        .is_err()
    {
        tracing::warn!("grace period over; closing remaining admin connections");
    }
    conns.abort_all();
    while conns.join_next().await.is_some() {}
}

/// Whether `POST /reload` is accepted from `peer`: loopback only (IPv4,
/// IPv6, and IPv4 mapped into IPv6).
fn reload_allowed_from(peer: std::net::SocketAddr) -> bool {
    match peer.ip() {
        std::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(v6.is_loopback(), |v4| v4.is_loopback()),
        ip => ip.is_loopback(),
    }
}

/// `POST /reload`: reload `policies/` and the TLS material; only from a
/// loopback peer (the admin listener may sit on a management network, and
/// it carries no identity). 200 with the report when applied, 422 when
/// refused (the previous policy and certificates keep serving).
async fn reload_response(
    live: &Live,
    method: &hyper::Method,
    peer: std::net::SocketAddr,
) -> Response<Full<Bytes>> {
    let (status, body) = if method != hyper::Method::POST {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            serde_json::json!({"error": "use POST /reload"}),
        )
    } else if !reload_allowed_from(peer) {
        (
            StatusCode::FORBIDDEN,
            serde_json::json!({"error": "reload is accepted from loopback only"}),
        )
    } else {
        let report = live.reload(Trigger::Admin).await;
        let status = if report.applied {
            StatusCode::OK
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        };
        (status, report.to_json())
    };
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    if status == StatusCode::METHOD_NOT_ALLOWED {
        r.headers_mut().insert(
            hyper::header::ALLOW,
            hyper::header::HeaderValue::from_static("POST"),
        );
    }
    r
}

async fn admin_response(app: &App, path: &str) -> Response<Full<Bytes>> {
    let (status, ctype, body) = match path {
        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
        "/readyz" => match (app.audit.health().status(), app.store.ping().await) {
            (Ok(()), Ok(())) => (StatusCode::OK, "text/plain", "ready\n".to_owned()),
            (Err(reason), _) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("not ready: {reason}\n"),
            ),
            (_, Err(e)) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("not ready: store unavailable: {e}\n"),
            ),
        },
        "/metrics" => (
            StatusCode::OK,
            crate::metrics::CONTENT_TYPE,
            app.metrics.render(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_owned(),
        ),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(ctype),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::reload_allowed_from;

    #[test]
    fn reload_is_accepted_from_loopback_only() {
        for ok in [
            "127.0.0.1:1",
            "127.8.9.10:1",
            "[::1]:1",
            "[::ffff:127.0.0.1]:1",
        ] {
            assert!(reload_allowed_from(ok.parse().unwrap()), "{ok}");
        }
        for no in [
            "10.0.0.1:1",
            "192.168.1.5:1",
            "0.0.0.0:1",
            "[::ffff:10.0.0.1]:1",
            "[fe80::1]:1",
            "[2001:db8::1]:1",
        ] {
            assert!(!reload_allowed_from(no.parse().unwrap()), "{no}");
        }
    }
}

//! Live reload of `policies/` and the TLS material (server certificate and
//! key, CA bundle, CRLs), without a restart.
//!
//! Triggers: SIGHUP; `POST /reload` on the admin listener (from a loopback
//! peer only; `credgate reload` sends it); for the CRLs also a timer
//! (`tls.crl_refresh_secs`) that reloads the TLS material when a CRL file
//! changed, and the moment a loaded CRL's `nextUpdate` passes.
//!
//! A reload reads and validates everything first — the policy files with
//! the loader's file:line errors, the consent issuers, and a complete new
//! rustls config — then appends its `policy_reload` entry to the audit log,
//! and only then swaps. It is all or nothing: if any part is refused, or the
//! entry cannot be written, nothing is swapped and the old policy and
//! certificates keep serving. The outcome is logged, counted
//! (`credgate_reloads_total{what,outcome}`) and audited, refusals included.
//!
//! What is swapped, and what the hot path pays:
//! * the [`App`] (one per policy generation, built by [`App::with_policy`]):
//!   each request loads it once from an [`ArcSwap`] (lock-free, no
//!   contention with the reloader) and runs wholly under it, so its
//!   decisions and its entry's `policy` hash always belong together;
//! * the TLS state ([`tls::ServerTls`]): each accepted connection loads the
//!   current rustls config, so new connections get the new certificate and
//!   CRLs; open connections keep theirs;
//! * a generation counter bumped after every swap. Each request compares it
//!   with the one its connection last saw; only when it changed does the
//!   connection re-check its leaf certificate against the new revocation
//!   set (and re-resolve its organisation against the new registry). A
//!   revoked certificate's next request is answered 401
//!   `certificate_revoked`, audited, and the connection is closed.
//!
//! The policy's content hash ([`policy_hash`]) is the first 128 bits of a
//! SHA-256, in hex, over the policy files in a fixed order; every audit
//! entry carries the hash of the policy it was decided under.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde_json::{Value, json};

use crate::audit::{self, AuditField};
use crate::config::Config;
use crate::consent::policy::ConsentPolicy;
use crate::http::App;
use crate::policy::{self, Policy};
use crate::tls::{self, ServerTls, TlsPaths};

mod triggers;
pub use triggers::{Hangup, spawn_triggers};

/// ALPN protocols the API listener offers.
pub const ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

/// Length of the policy hash in hex digits (128 bits of SHA-256).
pub const POLICY_HASH_HEX: usize = 32;

/// Name under which the additional consent issuers file
/// (`policy.extra_consent_issuers`) enters the policy hash.
pub const EXTRA_ISSUERS_NAME: &str = "policy.extra_consent_issuers";

/// Why a reload (or the start) could not load something.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// A policy file is invalid (the message names the file and line).
    #[error("policy: {0}")]
    Policy(#[from] policy::LoadError),
    /// The TLS material is unusable (the message names the file).
    #[error("tls: {0}")]
    Tls(#[from] tls::TlsError),
    /// The policy directory or a file in it cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// What could not be read.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The files changed between hashing and loading.
    #[error("policy files changed while they were being read; reload again")]
    Changed,
    /// The reload's audit entry could not be written (nothing was swapped).
    #[error("the audit log is unavailable: {0}")]
    Audit(String),
}

/// The content hash of a policy: SHA-256 over, for each file in order,
/// its name, a NUL byte, its length as 8 bytes big-endian and its bytes;
/// hex, first [`POLICY_HASH_HEX`] digits. The files: every `*.toml` file
/// directly in `dir`, ordered by name (bytewise), then `extra` (the
/// additional consent issuers file, if configured) under the name
/// [`EXTRA_ISSUERS_NAME`].
pub fn policy_hash(dir: &Path, extra: Option<&Path>) -> Result<String, ReloadError> {
    let read_err = |path: &Path| {
        let path = path.to_owned();
        move |source| ReloadError::Read { path, source }
    };
    let mut names = Vec::new();
    for e in std::fs::read_dir(dir).map_err(read_err(dir))? {
        let e = e.map_err(read_err(dir))?;
        let name = e.file_name().into_string().ok();
        if let Some(name) = name.filter(|n| n.ends_with(".toml"))
            && e.file_type().map_err(read_err(&e.path()))?.is_file()
        {
            names.push(name);
        }
    }
    names.sort();
    let mut files: Vec<(String, PathBuf)> = names
        .into_iter()
        .map(|n| (n.clone(), dir.join(n)))
        .collect();
    if let Some(extra) = extra {
        files.push((EXTRA_ISSUERS_NAME.into(), extra.to_owned()));
    }
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for (name, path) in files {
        let bytes = std::fs::read(&path).map_err(read_err(&path))?;
        ctx.update(name.as_bytes());
        ctx.update(&[0]);
        ctx.update(&(bytes.len() as u64).to_be_bytes());
        ctx.update(&bytes);
    }
    let mut hex = hex::encode(ctx.finish().as_ref());
    hex.truncate(POLICY_HASH_HEX);
    Ok(hex)
}

/// Where a reload reads from: the files named by the configuration (a
/// change to the configuration file itself needs a restart).
#[derive(Debug, Clone)]
pub struct Sources {
    /// `policy.dir`.
    pub policy_dir: PathBuf,
    /// `policy.extra_consent_issuers`.
    pub extra_consent_issuers: Option<PathBuf>,
    /// The consent audience (`server.gateway_id`).
    pub audience: String,
    /// The current mask key and its id (read once at start).
    pub mask_key: policy::MaskKey,
    /// The TLS files.
    pub tls: TlsPaths,
    /// `tls.crl_refresh_secs`.
    pub crl_refresh: Duration,
}

impl Sources {
    /// The sources `cfg` names, with the mask key already read.
    pub fn from_config(cfg: &Config, mask_key: policy::MaskKey) -> Sources {
        Sources {
            policy_dir: cfg.policy.dir.clone(),
            extra_consent_issuers: cfg.policy.extra_consent_issuers.clone(),
            audience: cfg.server.gateway_id.clone(),
            mask_key,
            tls: TlsPaths {
                ca: cfg.tls.ca.clone(),
                cert: cfg.tls.cert.clone(),
                key: cfg.tls.key.clone(),
                crls: cfg.tls.crls.clone(),
                max_chain_depth: cfg.tls.max_chain_depth.into(),
            },
            crl_refresh: Duration::from_secs(cfg.tls.crl_refresh_secs),
        }
    }
}

/// A policy and consent verifier loaded together, with their content hash.
pub struct LoadedPolicy {
    /// The compiled policy.
    pub policy: Policy,
    /// The consent issuers and verifier.
    pub consent: ConsentPolicy,
    /// [`policy_hash`] of the files both were loaded from.
    pub hash: String,
}

/// Load and validate `policies/` and the consent issuers. The files are
/// hashed before and after loading; if they changed in between, the load is
/// refused ([`ReloadError::Changed`]) rather than recorded under a hash
/// that does not match what was compiled.
pub fn load_policy(src: &Sources) -> Result<LoadedPolicy, ReloadError> {
    let extra = src.extra_consent_issuers.as_deref();
    let before = policy_hash(&src.policy_dir, extra)?;
    let policy = policy::load_with_mask(&src.policy_dir, src.mask_key.clone())?;
    let consent = crate::consent::policy::load(&src.policy_dir, extra, &src.audience)?;
    if policy_hash(&src.policy_dir, extra)? != before {
        return Err(ReloadError::Changed);
    }
    Ok(LoadedPolicy {
        policy,
        consent,
        hash: before,
    })
}

/// Warn about consent issuers pinned outside `policies/`.
pub fn warn_extra_issuers(consent: &ConsentPolicy) {
    for k in consent.keys.iter().filter(|k| k.extra) {
        tracing::warn!(iss = %k.iss, kid = %k.kid, file = %k.file.display(),
            "consent issuer pinned outside policies/ (policy.extra_consent_issuers): development only");
    }
}

/// What started a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// SIGHUP.
    Signal,
    /// `POST /reload` on the admin listener (`credgate reload`).
    Admin,
    /// The CRL refresh timer saw a changed CRL file.
    CrlRefresh,
    /// A loaded CRL's `nextUpdate` passed.
    CrlNextUpdate,
}

impl Trigger {
    /// As logged and audited.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Signal => "sighup",
            Trigger::Admin => "admin",
            Trigger::CrlRefresh => "crl_refresh",
            Trigger::CrlNextUpdate => "crl_next_update",
        }
    }
}

/// What happened to one part of a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// New content, validated and swapped in.
    Loaded,
    /// Same content as in force; nothing to swap.
    Unchanged,
    /// Invalid: refused (the reload as a whole was refused).
    Refused,
    /// Valid, but not swapped because another part (or the audit entry)
    /// was refused.
    NotApplied,
    /// Not part of this reload (the CRL timer reloads TLS only).
    Skipped,
}

impl Part {
    /// As logged, audited and counted.
    pub fn as_str(self) -> &'static str {
        match self {
            Part::Loaded => "loaded",
            Part::Unchanged => "unchanged",
            Part::Refused => "refused",
            Part::NotApplied => "not_applied",
            Part::Skipped => "skipped",
        }
    }

    fn metric(self) -> Option<&'static str> {
        match self {
            Part::Loaded => Some("ok"),
            Part::Unchanged => Some("unchanged"),
            Part::Refused | Part::NotApplied => Some("refused"),
            Part::Skipped => None,
        }
    }
}

/// The outcome of one reload.
#[derive(Debug, Clone)]
pub struct Report {
    /// Whatever was new is now serving (false: nothing was swapped).
    pub applied: bool,
    /// What happened to `policies/`.
    pub policy: Part,
    /// What happened to the TLS material.
    pub tls: Part,
    /// The policy hash in force after the reload.
    pub policy_hash: String,
    /// The hash of the policy files as read, when they could be read.
    pub read_hash: Option<String>,
    /// Why the reload was refused (file and line for a policy error).
    pub error: Option<String>,
    /// Sequence number of the `policy_reload` entry, if one was written.
    pub audit_seq: Option<u64>,
}

impl Report {
    /// The admin endpoint's JSON answer.
    pub fn to_json(&self) -> Value {
        json!({
            "applied": self.applied,
            "policy": self.policy.as_str(),
            "tls": self.tls.as_str(),
            "policy_hash": self.policy_hash,
            "read_policy_hash": self.read_hash,
            "error": self.error,
            "audit_seq": self.audit_seq,
        })
    }
}

/// The swappable state of a serving gateway.
pub struct Live {
    app: ArcSwap<App>,
    tls: ArcSwap<ServerTls>,
    generation: AtomicU64,
    sources: Arc<Sources>,
    lock: tokio::sync::Mutex<()>,
    /// What the CRL timer last found and could not load (the CRL files'
    /// digest, or why they could not be read): not retried, logged or
    /// audited again until the files change.
    timer_refused: std::sync::Mutex<Option<Result<[u8; 32], String>>>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("generation", &self.generation())
            .field("policy_hash", &self.app.load().policy_hash)
            .finish_non_exhaustive()
    }
}

impl Live {
    /// The state a gateway starts serving with.
    pub fn new(app: Arc<App>, tls: ServerTls, sources: Sources) -> Live {
        Live {
            app: ArcSwap::new(app),
            tls: ArcSwap::from_pointee(tls),
            generation: AtomicU64::new(0),
            sources: Arc::new(sources),
            lock: tokio::sync::Mutex::new(()),
            timer_refused: std::sync::Mutex::new(None),
        }
    }

    /// The application under the policy in force (one atomic load).
    #[inline]
    pub fn app(&self) -> Arc<App> {
        self.app.load_full()
    }

    /// The rustls config to accept a new connection with.
    pub fn tls_config(&self) -> Arc<rustls::ServerConfig> {
        self.tls.load().config.clone()
    }

    /// Bumped after every swap; connections compare it per request.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether the CRLs in force revoke `leaf` (DER).
    pub fn is_revoked(&self, leaf: &[u8]) -> bool {
        self.tls.load().revoked.contains(leaf)
    }

    /// The configured CRL refresh interval.
    pub fn crl_refresh(&self) -> Duration {
        self.sources.crl_refresh
    }

    /// Reload `policies/` and all TLS material (SIGHUP, `credgate reload`).
    pub async fn reload(&self, trigger: Trigger) -> Report {
        self.run(trigger, true).await
    }

    /// The CRL timer: reload the TLS material if a CRL file changed, or
    /// unconditionally for [`Trigger::CrlNextUpdate`]. `None` when nothing
    /// changed.
    pub async fn refresh_crls(&self, trigger: Trigger) -> Option<Report> {
        let probe = tls::crl_digest(&self.sources.tls).map_err(|e| e.to_string());
        let last_refused = || {
            self.timer_refused
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        if trigger == Trigger::CrlRefresh {
            if probe
                .as_ref()
                .is_ok_and(|d| *d == self.tls.load().crl_digest)
            {
                *last_refused() = None;
                return None;
            }
            // The same broken files as last time: refused (and audited) once.
            if last_refused().as_ref() == Some(&probe) {
                return None;
            }
        }
        let report = self.run(trigger, false).await;
        *last_refused() = (!report.applied).then_some(probe);
        if trigger == Trigger::CrlNextUpdate && report.tls == Part::Unchanged {
            tracing::warn!(
                "a CRL's nextUpdate has passed and no newer CRL is in place; the old one is still honoured"
            );
        }
        Some(report)
    }

    async fn run(&self, trigger: Trigger, with_policy: bool) -> Report {
        let _one_at_a_time = self.lock.lock().await;
        let sources = self.sources.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            let read_hash = policy_hash(
                &sources.policy_dir,
                sources.extra_consent_issuers.as_deref(),
            )
            .ok();
            let policy = with_policy.then(|| load_policy(&sources));
            let tls = tls::load_server(&sources.tls, ALPN);
            (read_hash, policy, tls)
        })
        .await;
        let cur_app = self.app.load_full();
        let cur_tls = self.tls.load_full();
        let (read_hash, policy, tls) = match loaded {
            Ok(x) => x,
            Err(e) => {
                let error = format!("the reload task failed: {e}");
                tracing::error!(trigger = trigger.as_str(), %error, "reload refused");
                return Report {
                    applied: false,
                    policy: Part::NotApplied,
                    tls: Part::NotApplied,
                    policy_hash: cur_app.policy_hash.clone(),
                    read_hash: None,
                    error: Some(error),
                    audit_seq: None,
                };
            }
        };
        let mut errors = Vec::new();
        let (mut policy_part, new_policy) = match policy {
            None => (Part::Skipped, None),
            Some(Ok(p)) if p.hash == cur_app.policy_hash => (Part::Unchanged, None),
            Some(Ok(p)) => (Part::Loaded, Some(p)),
            Some(Err(e)) => {
                errors.push(e.to_string());
                (Part::Refused, None)
            }
        };
        let (mut tls_part, new_tls) = match tls {
            Ok(t) if same_material(&t, &cur_tls) => (Part::Unchanged, None),
            Ok(t) => (Part::Loaded, Some(t)),
            Err(e) => {
                errors.push(format!("tls: {e}"));
                (Part::Refused, None)
            }
        };
        let mut refused = !errors.is_empty();
        let nothing_new = new_policy.is_none() && new_tls.is_none();
        // The timer audits only what it changed (a stale CRL past its
        // nextUpdate is logged as a warning by `refresh_crls`).
        if !refused
            && nothing_new
            && matches!(trigger, Trigger::CrlRefresh | Trigger::CrlNextUpdate)
        {
            return Report {
                applied: true,
                policy: policy_part,
                tls: tls_part,
                policy_hash: cur_app.policy_hash.clone(),
                read_hash,
                error: None,
                audit_seq: None,
            };
        }
        let not_applied = |p: Part| {
            if p == Part::Loaded {
                Part::NotApplied
            } else {
                p
            }
        };
        if refused {
            policy_part = not_applied(policy_part);
            tls_part = not_applied(tls_part);
        }
        let hash_after = match (&new_policy, refused) {
            (Some(p), false) => p.hash.clone(),
            _ => cur_app.policy_hash.clone(),
        };
        let mut error = (!errors.is_empty()).then(|| errors.join("; "));

        // The entry first: nothing is swapped unless its reload is audited.
        let status = if trigger == Trigger::Admin {
            if refused { 422 } else { 200 }
        } else {
            0
        };
        let entry = audit::reload_entry(
            cur_app.request_id(),
            &cur_app.gateway_id,
            &hash_after,
            reload_fields(
                trigger,
                policy_part,
                tls_part,
                read_hash.as_deref(),
                error.as_deref(),
            ),
            status,
            if refused { "reload_refused" } else { "ok" },
        );
        let audit_seq = match cur_app.audit.append(&entry).await {
            Ok(seq) => Some(seq),
            Err(e) => {
                cur_app.metrics.audit_failures.inc();
                if !refused {
                    refused = true;
                    policy_part = not_applied(policy_part);
                    tls_part = not_applied(tls_part);
                    error = Some(ReloadError::Audit(e.to_string()).to_string());
                }
                None
            }
        };
        let hash_after = if refused {
            cur_app.policy_hash.clone()
        } else {
            hash_after
        };
        if !refused {
            if let Some(p) = new_policy {
                warn_extra_issuers(&p.consent);
                let next = cur_app.with_policy(Arc::new(p.policy), p.consent.verifier, p.hash);
                self.app.store(Arc::new(next));
            }
            if let Some(t) = new_tls {
                self.tls.store(Arc::new(t));
            }
            if !nothing_new {
                self.generation.fetch_add(1, Ordering::AcqRel);
            }
        }
        for (what, part) in [("policy", policy_part), ("tls", tls_part)] {
            if let Some(outcome) = part.metric() {
                cur_app.metrics.reload(what, outcome);
            }
        }
        match &error {
            None => tracing::info!(
                trigger = trigger.as_str(),
                policy = policy_part.as_str(),
                tls = tls_part.as_str(),
                policy_hash = %hash_after,
                audit_seq,
                "reloaded"
            ),
            Some(error) => tracing::error!(
                trigger = trigger.as_str(),
                policy = policy_part.as_str(),
                tls = tls_part.as_str(),
                policy_hash = %hash_after,
                audit_seq,
                %error,
                "reload refused; the previous policy and certificates keep serving"
            ),
        }
        Report {
            applied: !refused,
            policy: policy_part,
            tls: tls_part,
            policy_hash: hash_after,
            read_hash,
            error,
            audit_seq,
        }
    }
}

fn same_material(a: &ServerTls, b: &ServerTls) -> bool {
    a.material_digest == b.material_digest
}

/// The `fields` of a `policy_reload` entry: the trigger, each part's
/// outcome (the policy's with the hash of the files as read), and on a
/// refusal the reason (file and line; at most 400 characters).
fn reload_fields(
    trigger: Trigger,
    policy: Part,
    tls: Part,
    read_hash: Option<&str>,
    error: Option<&str>,
) -> Vec<AuditField> {
    let f = |field: &str, decision: &str, reason: &str, detail: Option<String>| AuditField {
        field: field.into(),
        decision: decision.to_owned().into(),
        reason: reason.to_owned().into(),
        detail: detail.map(Into::into),
    };
    let mut fields = vec![
        f("trigger", trigger.as_str(), "requested", None),
        f(
            "policy",
            policy.as_str(),
            "content_hash",
            read_hash.map(str::to_owned),
        ),
        f("tls", tls.as_str(), "material", None),
    ];
    if let Some(e) = error {
        let reason = if policy == Part::Refused {
            "invalid_policy"
        } else if tls == Part::Refused {
            "invalid_tls"
        } else {
            "audit_unavailable"
        };
        let mut detail: String = e.chars().take(400).collect();
        if detail.len() < e.len() {
            detail.push('…');
        }
        fields.push(f("error", "refused", reason, Some(detail)));
    }
    fields
}

/// `credgate reload --config FILE`: ask the gateway serving with that
/// configuration to reload (`POST /reload` on its admin listener, over
/// loopback). The report on success; the reason, as an error, otherwise.
pub async fn request(config: &Path) -> Result<String, String> {
    use http_body_util::{BodyExt, Empty};
    let cfg = Config::load(config).map_err(|e| e.to_string())?;
    let mut addr = cfg.server.admin_listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let unreachable = |e: &dyn std::fmt::Display| {
        format!("cannot reach the admin listener at {addr} (server.admin_listen): {e}")
    };
    let tcp = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::TcpStream::connect(addr),
    )
    .await
    .map_err(|e| unreachable(&e))?
    .map_err(|e| unreachable(&e))?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .map_err(|e| unreachable(&e))?;
    tokio::spawn(conn);
    let req = hyper::Request::post("/reload")
        .header(hyper::header::HOST, addr.to_string())
        .body(Empty::<bytes::Bytes>::new())
        .map_err(|e| e.to_string())?;
    let answer = async {
        let resp = send.send_request(req).await.map_err(|e| unreachable(&e))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| unreachable(&e))?
            .to_bytes();
        Ok::<_, String>((status, body))
    };
    // A reload reads and compiles a few files; a minute is generous.
    let (status, body) = tokio::time::timeout(Duration::from_secs(60), answer)
        .await
        .map_err(|_| "the gateway did not answer the reload within 60 s".to_owned())??;
    let text = String::from_utf8_lossy(&body).into_owned();
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if status.is_success() {
        Ok(format!(
            "reloaded: policy {}, tls {}, policy hash {} (audit entry {})\n",
            v["policy"].as_str().unwrap_or("?"),
            v["tls"].as_str().unwrap_or("?"),
            v["policy_hash"].as_str().unwrap_or("?"),
            v["audit_seq"]
        ))
    } else {
        Err(match v["error"].as_str() {
            Some(e) => format!(
                "reload refused ({status}); the gateway keeps serving policy {}: {e}",
                v["policy_hash"].as_str().unwrap_or("?")
            ),
            None => format!("reload failed ({status}): {}", text.trim()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_hash_covers_every_policy_file_in_a_fixed_order() {
        let dir = std::env::temp_dir().join(format!("credgate-hash-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.toml"), "x = 1\n").unwrap();
        std::fs::write(dir.join("b.toml"), "y = 2\n").unwrap();
        std::fs::write(dir.join("README"), "not policy").unwrap();
        let h = policy_hash(&dir, None).unwrap();
        assert_eq!(h.len(), POLICY_HASH_HEX);
        assert!(h.chars().all(|c| c.is_ascii_hexdigit()));
        // Pinned: the definition in the docs, computed independently.
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        for (n, b) in [("a.toml", "x = 1\n"), ("b.toml", "y = 2\n")] {
            ctx.update(n.as_bytes());
            ctx.update(&[0]);
            ctx.update(&(b.len() as u64).to_be_bytes());
            ctx.update(b.as_bytes());
        }
        assert_eq!(h, hex::encode(ctx.finish().as_ref())[..POLICY_HASH_HEX]);
        // Non-policy files do not count; any byte of a policy file does.
        std::fs::write(dir.join("README"), "changed").unwrap();
        assert_eq!(policy_hash(&dir, None).unwrap(), h);
        std::fs::write(dir.join("b.toml"), "y = 3\n").unwrap();
        let h2 = policy_hash(&dir, None).unwrap();
        assert_ne!(h2, h);
        // Moving content between files changes it (names are hashed).
        std::fs::write(dir.join("a.toml"), "").unwrap();
        std::fs::write(dir.join("b.toml"), "x = 1\ny = 3\n").unwrap();
        assert_ne!(policy_hash(&dir, None).unwrap(), h2);
        // The extra issuers file counts.
        let extra = dir.join("extra.issuers");
        std::fs::write(&extra, "[[issuer]]\n").unwrap();
        assert_ne!(
            policy_hash(&dir, Some(&extra)).unwrap(),
            policy_hash(&dir, None).unwrap()
        );
        let e = policy_hash(&dir.join("missing"), None).unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_repository_policy_loads_with_its_hash() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        let certs = Path::new(env!("CARGO_MANIFEST_DIR")).join("certs");
        let src = Sources {
            policy_dir: dir.clone(),
            extra_consent_issuers: None,
            audience: "credgate-test".into(),
            mask_key: policy::MaskKey::new("k1", b"0123456789abcdef"),
            tls: TlsPaths {
                ca: certs.join("ca.pem"),
                cert: certs.join("server.pem"),
                key: certs.join("server-key.pem"),
                crls: vec![],
                max_chain_depth: 0,
            },
            crl_refresh: Duration::from_secs(60),
        };
        let p = load_policy(&src).unwrap();
        assert_eq!(p.hash, policy_hash(&dir, None).unwrap());
    }

    #[test]
    fn refusals_are_audited_with_their_reason() {
        let fields = reload_fields(
            Trigger::Signal,
            Part::Refused,
            Part::NotApplied,
            Some("abcd"),
            Some(&"policy: grants.toml:3: bad ".repeat(40)),
        );
        let names: Vec<&str> = fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(names, ["trigger", "policy", "tls", "error"]);
        assert_eq!(fields[0].decision, "sighup");
        assert_eq!(fields[1].decision, "refused");
        assert_eq!(fields[1].detail.as_deref(), Some("abcd"));
        assert_eq!(fields[2].decision, "not_applied");
        assert_eq!(fields[3].reason, "invalid_policy");
        let d = fields[3].detail.as_deref().unwrap();
        assert!(
            d.starts_with("policy: grants.toml:3:") && d.ends_with('…'),
            "{d}"
        );
        assert!(d.chars().count() <= 401);
    }
}

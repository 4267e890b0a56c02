//! The audit log: every request after the handshake, exactly once, durable
//! before its response leaves, in an RFC 6962 Merkle tree with signed
//! checkpoints.
//!
//! # Design
//!
//! * [`AuditEntry`] is the record; [`AuditEntry::canonical`] its frozen
//!   serialisation (the Merkle leaf data). Field values never enter it; the
//!   subject appears only as a keyed hash ([`SubjectHasher`]); the raw name of
//!   a prohibited field is replaced by its category.
//! * [`AuditLog`] is the handle request handlers hold. `append` hands the
//!   entry to a single sequencer task and waits until the batch holding it
//!   is committed. The sequencer drains whatever queued up while the previous
//!   commit was running (group commit: one fsync for many entries, without an
//!   artificial delay at low load).
//! * If a commit fails, every waiter gets an error (their responses become
//!   503 `audit_unavailable`: no data without an audit entry) and readiness
//!   reports the cause until a later commit succeeds. While failing and idle
//!   the sequencer probes with an empty commit every [`PROBE_INTERVAL`], so
//!   readiness recovers without traffic.
//! * A checkpointer signs the tree head ([`checkpoint`]) every few seconds
//!   while it grows, and once more at shutdown.

pub mod anomaly;
pub mod export;
pub use credlog::{checkpoint, merkle, verify};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use ring::hmac;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::ids::SubjectId;
use crate::store::{AuditRow, Store, StoreError};
use checkpoint::{Checkpoint, CheckpointSigner};

pub use credlog::entry::{AuditEntry, AuditField, ENTRY_VERSION};

/// Keyed hash of subject ids, so the log holds no clear ids while an auditor
/// presenting an id can still find its entries.
#[derive(Clone)]
pub struct SubjectHasher {
    key: hmac::Key,
}

impl std::fmt::Debug for SubjectHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SubjectHasher(..)")
    }
}

impl SubjectHasher {
    /// Build from the key bytes.
    pub fn new(key: &[u8]) -> Self {
        SubjectHasher {
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
        }
    }

    /// `hex(HMAC-SHA-256(key, "<type>:<id>"))`.
    pub fn hash(&self, subject: &SubjectId) -> String {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(subject.kind().as_str().as_bytes());
        ctx.update(b":");
        ctx.update(subject.id().as_bytes());
        hex::encode(ctx.sign().as_ref())
    }
}

/// Why an entry could not be made durable.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The commit failed; the entry is not in the log.
    #[error("audit log write failed")]
    WriteFailed,
    /// The sequencer has stopped (shutdown).
    #[error("audit log closed")]
    Closed,
}

struct Job {
    row: AuditRow,
    done: oneshot::Sender<Result<u64, AuditError>>,
}

/// Shared health and counters of the audit pipeline.
#[derive(Debug, Default)]
pub struct AuditHealth {
    failing: AtomicBool,
    last_error: std::sync::Mutex<Option<String>>,
    /// Entries committed by this process.
    pub committed: AtomicU64,
    /// Batches committed by this process.
    pub batches: AtomicU64,
    /// Entries that failed to commit.
    pub failed: AtomicU64,
}

impl AuditHealth {
    /// `Err(reason)` while the last commit failed.
    pub fn status(&self) -> Result<(), String> {
        if self.failing.load(Ordering::Acquire) {
            Err(self
                .last_error
                .lock()
                .map(|e| e.clone().unwrap_or_default())
                .unwrap_or_default())
        } else {
            Ok(())
        }
    }
}

/// Handle to the sequencer. Clone it freely; the sequencer stops when the
/// last handle is dropped, after committing what it holds.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Job>,
    health: Arc<AuditHealth>,
}

impl AuditLog {
    /// Load the tree frontier and start the sequencer.
    pub async fn start(
        store: Store,
        max_batch: usize,
    ) -> Result<(AuditLog, JoinHandle<()>), StoreError> {
        let frontier = store.load_frontier().await?;
        let (tx, rx) = mpsc::channel(max_batch * 8);
        let health = Arc::new(AuditHealth::default());
        let task = tokio::spawn(sequencer(store, rx, frontier, max_batch, health.clone()));
        Ok((AuditLog { tx, health }, task))
    }

    /// Append `entry`; resolves once it is committed, with its sequence number.
    pub async fn append(&self, entry: &AuditEntry) -> Result<u64, AuditError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Job {
                row: row_of(entry),
                done,
            })
            .await
            .map_err(|_| AuditError::Closed)?;
        wait.await.map_err(|_| AuditError::Closed)?
    }

    /// Health and counters.
    pub fn health(&self) -> &Arc<AuditHealth> {
        &self.health
    }
}

/// How often a failing sequencer probes the database while idle.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(500);

async fn sequencer(
    store: Store,
    mut rx: mpsc::Receiver<Job>,
    mut frontier: merkle::Frontier,
    max_batch: usize,
    health: Arc<AuditHealth>,
) {
    let mut jobs = Vec::with_capacity(max_batch);
    let mut rows = Vec::with_capacity(max_batch);
    loop {
        // While failing, probe the database with an empty commit when no
        // entry arrives: readiness must recover without traffic, since a
        // load balancer sends none to a node that is not ready.
        let first = if health.failing.load(Ordering::Acquire) {
            match tokio::time::timeout(PROBE_INTERVAL, rx.recv()).await {
                Ok(job) => job,
                Err(_) => {
                    if store.append_audit(&[], &mut frontier).await.is_ok() {
                        tracing::info!("audit log writable again");
                        health.failing.store(false, Ordering::Release);
                    }
                    continue;
                }
            }
        } else {
            rx.recv().await
        };
        let Some(first) = first else { break };
        jobs.push(first);
        while jobs.len() < max_batch {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        rows.extend(
            jobs.iter_mut()
                .map(|j| std::mem::replace(&mut j.row, empty_row())),
        );
        let n = jobs.len() as u64;
        match store.append_audit(&rows, &mut frontier).await {
            Ok(first_seq) => {
                health.failing.store(false, Ordering::Release);
                health.committed.fetch_add(n, Ordering::Relaxed);
                health.batches.fetch_add(1, Ordering::Relaxed);
                for (i, j) in jobs.drain(..).enumerate() {
                    let _ = j.done.send(Ok(first_seq + i as u64));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, entries = n, "audit commit failed; failing closed");
                if let Ok(mut last) = health.last_error.lock() {
                    *last = Some(format!("audit log write failed: {e}"));
                }
                health.failing.store(true, Ordering::Release);
                health.failed.fetch_add(n, Ordering::Relaxed);
                for j in jobs.drain(..) {
                    let _ = j.done.send(Err(AuditError::WriteFailed));
                }
                // Do not spin on a broken database.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        rows.clear();
    }
}

fn row_of(e: &AuditEntry) -> AuditRow {
    AuditRow {
        ts: e.ts.clone(),
        org: e.org.clone(),
        subject: e.subject.clone(),
        purpose: e.purpose.clone(),
        outcome: e.outcome.clone(),
        action: e.action.clone(),
        decisions: crate::store::decision_mask(&e.fields),
        entry: e.canonical(),
    }
}

fn empty_row() -> AuditRow {
    AuditRow {
        ts: String::new(),
        org: None,
        subject: None,
        purpose: None,
        outcome: String::new(),
        action: String::new(),
        decisions: 0,
        entry: Vec::new(),
    }
}

/// Sign the stored tree head if it grew since the last checkpoint.
pub async fn checkpoint_once(
    store: &Store,
    signer: &CheckpointSigner,
    origin: &str,
) -> Result<Option<u64>, StoreError> {
    let (size, root) = store.log_head().await?;
    if size == 0 {
        return Ok(None);
    }
    if let Some((last, _)) = store.checkpoint(None).await?
        && last >= size
    {
        return Ok(None);
    }
    let note = signer
        .sign(&Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
        })
        .map_err(|e| StoreError::Corrupt(format!("cannot sign checkpoint: {e}")))?;
    store
        .put_checkpoint(size, &root, &note, &now_rfc3339())
        .await?;
    Ok(Some(size))
}

/// Run [`checkpoint_once`] every `interval` until `shutdown` flips, then once more.
pub fn spawn_checkpointer(
    store: Store,
    signer: Arc<CheckpointSigner>,
    origin: String,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => break,
            }
            if let Err(e) = checkpoint_once(&store, &signer, &origin).await {
                tracing::warn!(error = %e, "checkpoint failed");
            }
        }
    })
}

/// Current time as RFC 3339 UTC with millisecond precision.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let ms = now.millisecond();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        ms
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_hash_is_keyed() {
        let s = SubjectId::parse("legal_person", "91350100M000100Y43").unwrap();
        let a = SubjectHasher::new(b"k1").hash(&s);
        assert_eq!(a.len(), 64);
        assert_ne!(a, SubjectHasher::new(b"k2").hash(&s));
        assert!(!a.contains("91350100M000100Y43"));
    }
}

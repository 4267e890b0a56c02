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
//! * A change that committed while its append failed is answered 503 with
//!   `details.stored: true`, and its entry is appended as soon as the log
//!   recovers ([`AuditLog::defer`], `late.rs`), not only at the next start.
//! * A checkpointer signs the tree head ([`checkpoint`]) every few seconds
//!   while it grows, and once more at shutdown.

pub mod anomaly;
pub mod export;
pub mod items;
mod late;
pub mod search;
pub use credlog::{checkpoint, merkle, verify};
pub use late::MAX_LATE;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ring::hmac;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::ids::SubjectId;
use crate::metrics::Histogram;
use crate::store::{Store, StoreError, Writer};
use checkpoint::{Checkpoint, CheckpointSigner};

pub use credlog::entry::{AuditEntry, AuditField, ENTRY_VERSION, LEGACY_KEY_ID};

/// Keyed hash of subject ids, so the log holds no clear ids while an auditor
/// presenting an id can still find its entries.
///
/// It holds every configured subject key, the current one first: new
/// entries carry the hash under the current key with its id (`k2:<hex>`,
/// entry version 3), and a search hashes the presented id under every key
/// ([`SubjectHasher::hashes`]), so entries under a retired key stay
/// searchable for as long as that key is configured.
#[derive(Clone)]
pub struct SubjectHasher {
    keys: Arc<[(String, hmac::Key)]>,
}

impl std::fmt::Debug for SubjectHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        write!(f, "SubjectHasher({ids:?})")
    }
}

impl SubjectHasher {
    /// One key, as key id `k1` (the single-file configuration).
    pub fn new(key: &[u8]) -> Self {
        Self::with_keys(&[crate::config::NamedKey {
            id: LEGACY_KEY_ID.to_owned(),
            key: key.to_vec(),
        }])
    }

    /// Several keys, the current one first. The list must not be empty
    /// (the configuration is validated to have at least one key).
    pub fn with_keys(keys: &[crate::config::NamedKey]) -> Self {
        assert!(!keys.is_empty(), "a subject hasher needs a key");
        SubjectHasher {
            keys: keys
                .iter()
                .map(|k| (k.id.clone(), hmac::Key::new(hmac::HMAC_SHA256, &k.key)))
                .collect(),
        }
    }

    /// The id of the key new entries are hashed under.
    pub fn current_id(&self) -> &str {
        &self.keys[0].0
    }

    fn bare_under(key: &hmac::Key, subject: &SubjectId) -> String {
        let mut out = String::with_capacity(64);
        Self::push_bare(&mut out, key, subject);
        out
    }

    /// Append the bare hex hash (lowercase, as `hex::encode` writes it:
    /// that crate collects a `String` char by char, a visible cost on
    /// every request that names a subject).
    fn push_bare(out: &mut String, key: &hmac::Key, subject: &SubjectId) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut ctx = hmac::Context::with_key(key);
        ctx.update(subject.kind().as_str().as_bytes());
        ctx.update(b":");
        ctx.update(subject.id().as_bytes());
        for b in ctx.sign().as_ref() {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }

    /// `<current key id>:hex(HMAC-SHA-256(key, "<type>:<id>"))`, the form
    /// an entry (version 3) carries.
    pub fn hash(&self, subject: &SubjectId) -> String {
        let (id, key) = &self.keys[0];
        let mut out = String::with_capacity(id.len() + 65);
        out.push_str(id);
        out.push(':');
        Self::push_bare(&mut out, key, subject);
        out
    }

    /// The subject's hash under every configured key, current first: what
    /// a search by subject id matches (the search index holds every hash
    /// in this keyed form, older entries' bare ones as `k1:`).
    pub fn hashes(&self, subject: &SubjectId) -> Vec<String> {
        self.keys
            .iter()
            .map(|(id, key)| format!("{id}:{}", Self::bare_under(key, subject)))
            .collect()
    }

    /// The bare hex hash under the current key: the consent registry's
    /// binding of a consent to its subject (not a public format).
    pub fn bare(&self, subject: &SubjectId) -> String {
        Self::bare_under(&self.keys[0].1, subject)
    }

    /// The bare hex hash under every configured key, current first.
    pub fn bare_all(&self, subject: &SubjectId) -> Vec<String> {
        self.keys
            .iter()
            .map(|(_, key)| Self::bare_under(key, subject))
            .collect()
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
    entry: Vec<u8>,
    done: oneshot::Sender<Result<(u64, Vec<u8>), AuditError>>,
    /// When the entry was handed to the sequencer.
    queued: Instant,
}

/// How far the search index may fall behind the log before `/readyz`
/// reports the node not ready.
pub const INDEX_LAG_LIMIT: u64 = 200_000;

/// Shared health and counters of the audit pipeline.
#[derive(Debug)]
pub struct AuditHealth {
    failing: AtomicBool,
    last_error: std::sync::Mutex<Option<String>>,
    /// Entries committed by this process.
    pub committed: AtomicU64,
    /// Batches committed by this process.
    pub batches: AtomicU64,
    /// Entries that failed to commit.
    pub failed: AtomicU64,
    /// Log entries the search index covers (as last seen by this node).
    pub indexed: AtomicU64,
    /// Durable log entries not yet in the search index.
    pub index_lag: AtomicU64,
    /// Index batches that failed.
    pub index_failures: AtomicU64,
    /// Entries of stored changes waiting for the log to recover
    /// ([`AuditLog::defer`]).
    pub late_waiting: AtomicU64,
    /// Deferred entries appended after the log recovered.
    pub late_appended: AtomicU64,
    /// Deferred entries beyond [`MAX_LATE`], left in the outbox for
    /// the next start.
    pub late_overflow: AtomicU64,
    /// Bytes of records in the embedded log's current write-ahead file.
    pub wal_bytes: AtomicU64,
    /// A snapshot of the embedded log is under way (`wal.prev` needed).
    pub snapshot_due: AtomicBool,
    /// From `append` handing an entry over to its batch being durable.
    pub durable_latency: Histogram,
    /// One group commit (the blocking write, fsync or transaction).
    pub commit_duration: Histogram,
    /// Entries per committed batch.
    pub batch_size: Histogram,
    /// Test hook: the next commit panics inside the writer, before it
    /// writes (1) or after its batch is durable (2)
    /// ([`AuditLog::inject_writer_panic`]). Debug builds only.
    #[cfg(debug_assertions)]
    panic_next_commit: std::sync::atomic::AtomicU8,
}

impl Default for AuditHealth {
    fn default() -> Self {
        AuditHealth {
            failing: AtomicBool::default(),
            last_error: std::sync::Mutex::default(),
            committed: AtomicU64::default(),
            batches: AtomicU64::default(),
            failed: AtomicU64::default(),
            indexed: AtomicU64::default(),
            index_lag: AtomicU64::default(),
            index_failures: AtomicU64::default(),
            late_waiting: AtomicU64::default(),
            late_appended: AtomicU64::default(),
            late_overflow: AtomicU64::default(),
            wal_bytes: AtomicU64::default(),
            snapshot_due: AtomicBool::default(),
            durable_latency: Histogram::durations(),
            commit_duration: Histogram::durations(),
            batch_size: Histogram::sizes(),
            #[cfg(debug_assertions)]
            panic_next_commit: Default::default(),
        }
    }
}

impl AuditHealth {
    /// `Err(reason)` while the last commit failed, or while the search
    /// index lags the log by more than [`INDEX_LAG_LIMIT`] entries.
    pub fn status(&self) -> Result<(), String> {
        if self.failing.load(Ordering::Acquire) {
            return Err(self
                .last_error
                .lock()
                .map(|e| e.clone().unwrap_or_default())
                .unwrap_or_default());
        }
        let lag = self.index_lag.load(Ordering::Acquire);
        if lag > INDEX_LAG_LIMIT {
            return Err(format!(
                "audit search index lags the log by {lag} entries (limit {INDEX_LAG_LIMIT})"
            ));
        }
        Ok(())
    }
}

impl AsRef<[u8]> for Job {
    fn as_ref(&self) -> &[u8] {
        &self.entry
    }
}

/// Handle to the sequencer. Clone it freely; the sequencer stops when the
/// last handle is dropped, after committing what it holds.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Job>,
    health: Arc<AuditHealth>,
    late: Arc<late::LateEntries>,
}

impl AuditLog {
    /// Open the log's writer (recovering the log after a crash) and start
    /// the sequencer and the search indexer.
    pub async fn start(
        store: Store,
        max_batch: usize,
    ) -> Result<(AuditLog, JoinHandle<()>), StoreError> {
        let s = store.clone();
        let writer = tokio::task::spawn_blocking(move || s.log_writer())
            .await
            .map_err(|e| StoreError::Log(e.to_string()))??;
        store.notify_durable(writer.size());
        let (tx, rx) = mpsc::channel(max_batch * 8);
        let health = Arc::new(AuditHealth::default());
        let indexer = spawn_indexer(store.clone(), health.clone());
        let h = health.clone();
        let (finished, sequenced) = oneshot::channel::<()>();
        let st = store.clone();
        // The PostgreSQL writer runs its statements on this runtime.
        let runtime = tokio::runtime::Handle::current();
        std::thread::Builder::new()
            .name("credgate-audit-sequencer".into())
            .spawn(move || {
                let _runtime = runtime.enter();
                sequencer(st, rx, writer, max_batch, h);
                let _ = finished.send(());
            })
            .map_err(|e| StoreError::Log(format!("cannot start the audit sequencer: {e}")))?;
        let task = tokio::spawn(async move {
            // The sequencer ends when the last handle is dropped, after
            // committing what it holds; the indexer then catches up and stops.
            let _ = sequenced.await;
            indexer.stop().await;
        });
        let late = Arc::new(late::LateEntries::default());
        late::spawn(store, tx.downgrade(), late.clone(), health.clone());
        Ok((AuditLog { tx, health, late }, task))
    }

    /// Append `entry`; resolves once it is durable, with its sequence number.
    ///
    /// An entry longer than a bundle can hold
    /// ([`credlog::tiles::MAX_ENTRY_LEN`], 65,535 bytes) is refused here,
    /// alone: its request fails closed (503) without failing the batch it
    /// would have joined.
    pub async fn append(&self, entry: &AuditEntry) -> Result<u64, AuditError> {
        let bytes = entry.canonical();
        self.check_len(&bytes, &entry.action)?;
        let (seq, _entry) = send(&self.tx, bytes).await?;
        Ok(seq)
    }

    /// Append `entry`, the entry of a change that committed although its
    /// append failed, as soon as the log takes entries again, unless the
    /// log holds it after all (a batch durable although its commit failed:
    /// the log from `since`, its outbox row's log size, is searched for
    /// its request id first), and clear its outbox row then (see
    /// `late.rs`). `false` if too many wait already: its row then waits
    /// for the next start.
    pub fn defer(&self, entry: AuditEntry, since: u64) -> bool {
        self.late.push(entry, since, &self.health)
    }

    /// Refuse `canonical` (an entry of `action`) if it is longer than a
    /// bundle slot ([`credlog::tiles::MAX_ENTRY_LEN`]): [`AuditLog::append`]
    /// checks every entry, and a change checks the entry it writes to the
    /// outbox *before* its transaction (`App::intend`), since an intent that
    /// could never be appended would stop the next start's outbox recovery.
    pub fn check_len(&self, canonical: &[u8], action: &str) -> Result<(), AuditError> {
        if canonical.len() > credlog::tiles::MAX_ENTRY_LEN {
            tracing::error!(len = canonical.len(), %action, "audit entry too large for the log");
            self.health.failed.fetch_add(1, Ordering::Relaxed);
            return Err(AuditError::WriteFailed);
        }
        Ok(())
    }

    /// Health and counters.
    pub fn health(&self) -> &Arc<AuditHealth> {
        &self.health
    }

    /// Test hook: make the next commit panic inside the writer (the
    /// sequencer then fails that batch closed and reopens the writer).
    /// Debug builds only; release builds do not contain it.
    #[cfg(debug_assertions)]
    pub fn inject_writer_panic(&self) {
        self.health.panic_next_commit.store(1, Ordering::Release);
    }

    /// Test hook: make the next commit panic inside the writer *after* its
    /// batch is durable, so that a batch reported as failed is in the log
    /// (what an ambiguous PostgreSQL `COMMIT` also does). Debug builds only.
    #[cfg(debug_assertions)]
    pub fn inject_writer_panic_after_commit(&self) {
        self.health.panic_next_commit.store(2, Ordering::Release);
    }
}

/// Hand `entry` (canonical bytes) to the sequencer and wait until it is
/// durable: its sequence number, and the buffer back.
async fn send(tx: &mpsc::Sender<Job>, entry: Vec<u8>) -> Result<(u64, Vec<u8>), AuditError> {
    let (done, wait) = oneshot::channel();
    tx.send(Job {
        entry,
        done,
        queued: Instant::now(),
    })
    .await
    .map_err(|_| AuditError::Closed)?;
    wait.await.map_err(|_| AuditError::Closed)?
}

/// A snapshot of the embedded log due longer than this is warned about,
/// and again after each further such interval (one takes seconds).
pub const SNAPSHOT_DUE_WARN: Duration = Duration::from_secs(60);

/// Watches the embedded log's snapshot from the sequencer: one that stays
/// due means its tile files keep failing to fsync, so no new write-ahead
/// generation begins and the file grows. The metric
/// (`credgate_audit_snapshot_due`) says so; this puts it in the log too.
#[derive(Debug, Default)]
struct SnapshotWatch {
    since: Option<Instant>,
    warned: Option<Instant>,
}

impl SnapshotWatch {
    /// Note the snapshot's state after a commit at `now`; `true` if a
    /// warning is due now.
    fn observe(&mut self, due: bool, now: Instant) -> bool {
        if !due {
            *self = Self::default();
            return false;
        }
        let since = *self.since.get_or_insert(now);
        let warn = now.duration_since(since) >= SNAPSHOT_DUE_WARN
            && self
                .warned
                .is_none_or(|w| now.duration_since(w) >= SNAPSHOT_DUE_WARN);
        if warn {
            self.warned = Some(now);
        }
        warn
    }
}

/// How often a failing sequencer probes the log's storage while idle.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// The sequencer: one OS thread that owns the log's writer, takes every
/// entry queued since its last commit as one batch, commits it (one
/// `fdatasync` or transaction) and answers each waiter.
///
/// A thread of its own rather than an async task handing each batch to
/// `spawn_blocking`: under load the runtime's workers are busy with
/// connections, and a task waiting for a worker (twice per batch: to
/// start the blocking commit and to answer after it) lengthened every
/// commit cycle, which is what bounds throughput at moderate concurrency
/// (`bench/RESULTS.md`). A blocked thread woken by the channel is scheduled
/// by the kernel directly.
///
/// A panic in the writer (a bug in a storage backend) fails that batch
/// closed like a storage error, and the writer is reopened from storage
/// before the next one, so one bad batch does not turn every later request
/// into a 503.
fn sequencer(
    store: Store,
    mut rx: mpsc::Receiver<Job>,
    writer: Writer,
    max_batch: usize,
    health: Arc<AuditHealth>,
) {
    let mut writer = Some(writer);
    let mut jobs: Vec<Job> = Vec::with_capacity(max_batch);
    let mut snapshot = SnapshotWatch::default();
    loop {
        // While failing, probe the storage with an empty commit when no
        // entry arrives: readiness must recover without traffic, since a
        // load balancer sends none to a node that is not ready.
        let first = if health.failing.load(Ordering::Acquire) {
            match recv_timeout(&mut rx, PROBE_INTERVAL) {
                Recv::Job(job) => Some(job),
                Recv::Closed => None,
                Recv::Timeout => {
                    if commit::<Job>(&store, &mut writer, &[], &health).is_ok() {
                        tracing::info!("audit log writable again");
                        health.failing.store(false, Ordering::Release);
                    }
                    continue;
                }
            }
        } else {
            rx.blocking_recv()
        };
        let Some(first) = first else { break };
        jobs.push(first);
        while jobs.len() < max_batch {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let n = jobs.len() as u64;
        let started = Instant::now();
        let r = commit(&store, &mut writer, &jobs, &health);
        match r {
            Ok((first_seq, size)) => {
                let durable = Instant::now();
                health
                    .commit_duration
                    .observe_duration(durable.duration_since(started));
                health.batch_size.observe(n);
                for j in &jobs {
                    health
                        .durable_latency
                        .observe_duration(durable.saturating_duration_since(j.queued));
                }
                health.failing.store(false, Ordering::Release);
                if snapshot.observe(health.snapshot_due.load(Ordering::Relaxed), durable) {
                    tracing::warn!(
                        wal_bytes = health.wal_bytes.load(Ordering::Relaxed),
                        "audit log snapshot due for over a minute: its tile files do not fsync (check the disk); the write-ahead file grows until it finishes"
                    );
                }
                health.committed.fetch_add(n, Ordering::Relaxed);
                health.batches.fetch_add(1, Ordering::Relaxed);
                // Each entry's buffer goes back to the request that made
                // it: freed on the thread that allocated it.
                for (i, j) in jobs.drain(..).enumerate() {
                    let _ = j.done.send(Ok((first_seq + i as u64, j.entry)));
                }
                store.notify_durable(size);
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
                // Do not spin on broken storage.
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// One batch: `(first sequence number, log size after)`. Without a writer
/// (the last one panicked) a new one is opened from storage first.
fn commit<E: AsRef<[u8]>>(
    store: &Store,
    writer: &mut Option<Writer>,
    entries: &[E],
    health: &AuditHealth,
) -> Result<(u64, u64), String> {
    #[cfg(debug_assertions)]
    let fault = health.panic_next_commit.swap(0, Ordering::AcqRel);
    let w = match writer {
        Some(w) => w,
        None => {
            let opened =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| store.log_writer()))
                    .map_err(|_| "reopening the audit log writer panicked".to_string())?;
            writer.insert(opened.map_err(|e| e.to_string())?)
        }
    };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        #[cfg(debug_assertions)]
        if fault == 1 {
            panic!("fault injection: audit writer panic");
        }
        let r = w.append(entries).map(|first| (first, w.size()));
        if let Some((bytes, due)) = w.wal_status() {
            health.wal_bytes.store(bytes, Ordering::Relaxed);
            health.snapshot_due.store(due, Ordering::Relaxed);
        }
        #[cfg(debug_assertions)]
        if fault == 2 {
            panic!("fault injection: audit writer panic after its commit");
        }
        r
    })) {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => {
            tracing::error!("audit writer panicked; reopening it before the next batch");
            *writer = None;
            Err("audit log writer failed".into())
        }
    }
}

enum Recv {
    Job(Job),
    Timeout,
    Closed,
}

/// `blocking_recv` with a timeout (tokio's channel has none): polls every
/// few milliseconds, which only happens while the log is failing.
fn recv_timeout(rx: &mut mpsc::Receiver<Job>, timeout: Duration) -> Recv {
    let until = Instant::now() + timeout;
    loop {
        match rx.try_recv() {
            Ok(j) => return Recv::Job(j),
            Err(mpsc::error::TryRecvError::Disconnected) => return Recv::Closed,
            Err(mpsc::error::TryRecvError::Empty) if Instant::now() >= until => {
                return Recv::Timeout;
            }
            Err(mpsc::error::TryRecvError::Empty) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// How long the indexer lets new entries accumulate before indexing them
/// (larger batches: one index transaction for many entries).
pub const INDEX_DELAY: Duration = Duration::from_millis(100);

struct Indexer {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Indexer {
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// The search indexer: after the log grows (this node's batches, or every
/// second for other nodes' on PostgreSQL), waits [`INDEX_DELAY`] and
/// indexes everything new in transactions of
/// [`crate::store::LIVE_INDEX_BATCH`] entries.
fn spawn_indexer(store: Store, health: Arc<AuditHealth>) -> Indexer {
    let (stop, mut stopped) = oneshot::channel::<()>();
    let mut durable = store.subscribe_durable();
    store.set_live_indexer(true);
    let task = tokio::spawn(async move {
        let mut last_round = false;
        loop {
            if !last_round {
                tokio::select! {
                    _ = durable.changed() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = &mut stopped => last_round = true,
                }
            }
            if !last_round {
                tokio::time::sleep(INDEX_DELAY).await;
            }
            loop {
                match store.index_pending(crate::store::LIVE_INDEX_BATCH).await {
                    Ok((done, size)) => {
                        health.indexed.store(done, Ordering::Relaxed);
                        health
                            .index_lag
                            .store(size.saturating_sub(done), Ordering::Release);
                        if done >= size {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "audit index batch failed");
                        health.index_failures.fetch_add(1, Ordering::Relaxed);
                        if let Ok((size, _)) = store.log_head().await {
                            health.index_lag.store(
                                size.saturating_sub(store.indexed_size()),
                                Ordering::Release,
                            );
                        }
                        break;
                    }
                }
            }
            if last_round {
                break;
            }
        }
        store.set_live_indexer(false);
    });
    Indexer { stop, task }
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

/// Sign checkpoints until `shutdown` flips: promptly after the log grows
/// (so a checkpoint exists from the first batch on), at most once per
/// `interval` while it keeps growing, and also every `interval` when idle
/// (other nodes' entries on PostgreSQL).
pub fn spawn_checkpointer(
    store: Store,
    signer: Arc<CheckpointSigner>,
    origin: String,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut durable = store.subscribe_durable();
        let mut last_signed: Option<tokio::time::Instant> = None;
        loop {
            match checkpoint_once(&store, &signer, &origin).await {
                Ok(Some(_)) => last_signed = Some(tokio::time::Instant::now()),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "checkpoint failed"),
            }
            tokio::select! {
                r = durable.changed() => if r.is_err() { break },
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.changed() => break,
            }
            if let Some(t) = last_signed {
                tokio::select! {
                    _ = tokio::time::sleep_until(t + interval) => {}
                    _ = shutdown.changed() => break,
                }
            }
        }
    })
}

/// The entry of one reload of `policies/` and the TLS material
/// ([`crate::reload`]): action `policy_reload`, no caller, `policy` the
/// content hash in force once the reload is over (the new one when it was
/// applied, the old one when it was refused); `fields` say what happened to
/// each part. `status` is the admin response's, 0 for a signal or a timer.
pub fn reload_entry(
    request_id: String,
    gateway: &str,
    policy_hash: &str,
    fields: Vec<AuditField>,
    status: u16,
    outcome: &str,
) -> AuditEntry {
    AuditEntry {
        v: ENTRY_VERSION,
        ts: now_rfc3339(),
        request_id,
        gateway: gateway.to_owned(),
        org: None,
        cert_fp: None,
        action: "policy_reload".into(),
        subject_type: None,
        subject: None,
        purpose: None,
        consent: None,
        fields,
        records: 0,
        status,
        outcome: outcome.to_owned(),
        policy: Some(policy_hash.to_owned()),
    }
}

/// Current time as RFC 3339 UTC with millisecond precision.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    // Digits written directly: `format!` here was about 1 % of a request.
    let (y, m, d) = (
        now.year().clamp(0, 9999) as u32,
        u8::from(now.month()),
        now.day(),
    );
    let mut out = String::with_capacity(24);
    let push = |out: &mut String, v: u32, width: u32, sep: char| {
        for i in (0..width).rev() {
            out.push(char::from(b'0' + (v / 10u32.pow(i) % 10) as u8));
        }
        out.push(sep);
    };
    push(&mut out, y, 4, '-');
    push(&mut out, u32::from(m), 2, '-');
    push(&mut out, u32::from(d), 2, 'T');
    push(&mut out, u32::from(now.hour()), 2, ':');
    push(&mut out, u32::from(now.minute()), 2, ':');
    push(&mut out, u32::from(now.second()), 2, '.');
    push(&mut out, u32::from(now.millisecond()), 3, 'Z');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_longer_than_a_bundle_slot_is_refused_before_it_is_queued() {
        let (tx, mut rx) = mpsc::channel(1);
        let log = AuditLog {
            tx,
            health: Arc::new(AuditHealth::default()),
            late: Arc::default(),
        };
        let max = credlog::tiles::MAX_ENTRY_LEN;
        assert!(log.check_len(&vec![b'x'; max], "query").is_ok());
        assert!(matches!(
            log.check_len(&vec![b'x'; max + 1], "submit"),
            Err(AuditError::WriteFailed)
        ));
        assert_eq!(log.health.failed.load(Ordering::Relaxed), 1);
        assert!(rx.try_recv().is_err(), "nothing reached the sequencer");
    }

    #[test]
    fn a_snapshot_due_for_a_minute_is_warned_about_once_a_minute() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut w = SnapshotWatch::default();
        assert!(!w.observe(true, at(0)));
        assert!(!w.observe(true, at(59)));
        assert!(w.observe(true, at(60)), "due for a minute");
        assert!(!w.observe(true, at(61)), "not again at once");
        assert!(w.observe(true, at(120)), "again a minute later");
        assert!(!w.observe(false, at(121)), "finished");
        assert!(
            !w.observe(true, at(122)),
            "a new snapshot starts the clock again"
        );
        assert!(!w.observe(true, at(181)));
        assert!(w.observe(true, at(182)));
    }

    #[test]
    fn subject_hash_is_keyed() {
        let s = SubjectId::parse("legal_person", "91350100M000100Y43").unwrap();
        let a = SubjectHasher::new(b"k1").hash(&s);
        assert_eq!(a.len(), 3 + 64);
        assert!(a.starts_with("k1:"), "{a}");
        assert_ne!(a, SubjectHasher::new(b"k2").hash(&s));
        assert!(!a.contains("91350100M000100Y43"));
        // The hex is HMAC-SHA-256 of "<type>:<id>", lowercase.
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"k1");
        let mac = hmac::sign(&key, b"legal_person:91350100M000100Y43");
        assert_eq!(a, format!("k1:{}", hex::encode(mac.as_ref())));
    }

    #[test]
    fn timestamps_have_the_one_fixed_layout() {
        let before = time::OffsetDateTime::now_utc();
        let ts = now_rfc3339();
        let after = time::OffsetDateTime::now_utc();
        let fmt = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        );
        let parsed = time::PrimitiveDateTime::parse(&ts, fmt)
            .unwrap()
            .assume_utc();
        assert_eq!(ts.len(), 24, "{ts}");
        let ms = time::Duration::milliseconds(1);
        assert!(parsed + ms > before && parsed <= after, "{ts}");
    }

    #[test]
    fn a_rotated_hasher_hashes_under_the_current_key_and_matches_under_all() {
        let s = SubjectId::parse("legal_person", "91350100M000100Y43").unwrap();
        let key = |id: &str, k: &[u8]| crate::config::NamedKey {
            id: id.into(),
            key: k.to_vec(),
        };
        let old = SubjectHasher::new(b"0123456789abcdef");
        let rotated = SubjectHasher::with_keys(&[
            key("k2", b"fedcba9876543210"),
            key("k1", b"0123456789abcdef"),
        ]);
        assert_eq!(rotated.current_id(), "k2");
        let h = rotated.hash(&s);
        assert!(h.starts_with("k2:"), "{h}");
        assert_eq!(rotated.hashes(&s), vec![h.clone(), old.hash(&s)]);
        // The bare form under k1 is what v1/v2 entries carry.
        assert_eq!(old.hash(&s), format!("k1:{}", old.bare(&s)));
        assert_eq!(rotated.bare_all(&s)[1], old.bare(&s));
        assert_eq!(format!("{rotated:?}"), r#"SubjectHasher(["k2", "k1"])"#);
    }
}

//! Late entries: the entries of changes that committed while the log could
//! not be written.
//!
//! A change writes its entry into its own transaction (the outbox,
//! [`crate::store::outbox`]), commits, then appends the entry to the log.
//! If that append fails (the log's storage refuses writes, the writer
//! panicked), the change is stored but its entry is not in the log, and the
//! client has been answered 503 `audit_unavailable` with
//! `details.stored: true`. Waiting for the next start's outbox recovery
//! would leave the stored change without its entry for as long as the
//! gateway keeps serving, which may be weeks.
//!
//! So the request hands its entry to [`AuditLog::defer`], and one task
//! appends the deferred entries, oldest first, as soon as the log takes
//! entries again, then clears their outbox rows. Every deferred entry
//! belongs to a request that has already been answered, so no handler can
//! append it too. A commit reported as failed may still have been durable
//! (a PostgreSQL `COMMIT` whose answer was lost, a writer that panicked
//! after its `fdatasync`), so before appending, the task searches the log
//! from the outbox row's log size for the request id, as the start's
//! recovery does (`server::recover_outbox`), and appends nothing if it is
//! there. A row whose entry is appended here and whose clearing fails is
//! found in the log's tail by the next start and not appended again. What is still queued when the
//! gateway stops stays in the outbox for the next start, as does what
//! exceeds [`MAX_LATE`].
//!
//! The window that remains: between the log's recovery and this task's
//! append (one group commit, normally), a query can read the stored change
//! before its entry is in the log.
//!
//! Test: `tests/pipeline.rs::a_change_whose_entry_failed_is_logged_once_the_log_recovers`.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, mpsc};

use super::{AuditEntry, AuditHealth, Job, PROBE_INTERVAL, send};
use crate::store::{IndexRow, Store, StoreError};

/// At most this many deferred entries wait in memory; the outbox rows of
/// any beyond them wait for the next start.
pub const MAX_LATE: usize = 10_000;

/// The deferred entries, oldest first, and the task's wake-up.
#[derive(Debug, Default)]
pub(super) struct LateEntries {
    /// Each entry with its outbox row's log size.
    queue: Mutex<VecDeque<(AuditEntry, u64)>>,
    wake: Notify,
}

impl LateEntries {
    /// Queue `entry`; `false` (left for the next start) when full.
    pub(super) fn push(&self, entry: AuditEntry, since: u64, health: &AuditHealth) -> bool {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() >= MAX_LATE {
            health.late_overflow.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        q.push_back((entry, since));
        health.late_waiting.store(q.len() as u64, Ordering::Relaxed);
        drop(q);
        self.wake.notify_one();
        true
    }

    fn front(&self) -> Option<(AuditEntry, u64)> {
        let q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        q.front().cloned()
    }

    fn pop(&self, health: &AuditHealth) {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        q.pop_front();
        health.late_waiting.store(q.len() as u64, Ordering::Relaxed);
    }
}

/// The task that appends deferred entries. It holds the sequencer's channel
/// weakly, so it never keeps the log open: it ends once every
/// [`super::AuditLog`] handle is gone.
pub(super) fn spawn(
    store: Store,
    tx: mpsc::WeakSender<Job>,
    late: Arc<LateEntries>,
    health: Arc<AuditHealth>,
) {
    tokio::spawn(async move {
        loop {
            let Some((entry, since)) = late.front() else {
                // Nothing deferred: wait for an entry, looking every probe
                // interval whether the log has closed.
                let woken = tokio::time::timeout(PROBE_INTERVAL, late.wake.notified()).await;
                if woken.is_err() && tx.strong_count() == 0 {
                    return;
                }
                continue;
            };
            // While the log fails, a try would only fail again (and count
            // as a failed entry): wait for the sequencer's probe to see it
            // writable.
            if health.failing.load(Ordering::Acquire) {
                tokio::time::sleep(PROBE_INTERVAL).await;
                if tx.strong_count() == 0 {
                    return;
                }
                continue;
            }
            match logged_since(&store, since, &entry.request_id).await {
                Ok(false) => {}
                Ok(true) => {
                    late.pop(&health);
                    tracing::warn!(
                        request_id = %entry.request_id,
                        "a stored change's entry was in the log after all; not appended again"
                    );
                    if let Err(e) = store.outbox_done(&entry.request_id).await {
                        tracing::warn!(error = %e, request_id = %entry.request_id, "outbox row not cleared");
                    }
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the log's tail; retrying");
                    tokio::time::sleep(PROBE_INTERVAL).await;
                    continue;
                }
            }
            let Some(sender) = tx.upgrade() else { return };
            let appended = send(&sender, entry.canonical()).await;
            drop(sender);
            match appended {
                Ok((seq, _)) => {
                    late.pop(&health);
                    health.late_appended.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        seq,
                        request_id = %entry.request_id,
                        action = %entry.action,
                        "audited a stored change after the log recovered"
                    );
                    if let Err(e) = store.outbox_done(&entry.request_id).await {
                        tracing::warn!(error = %e, request_id = %entry.request_id, "outbox row not cleared");
                    }
                    store.remember_indexed(seq, IndexRow::of(entry));
                }
                // Failing again: the sequencer marks the log failing, and
                // the next round waits for it to recover.
                Err(_) => tokio::time::sleep(PROBE_INTERVAL).await,
            }
        }
    });
}

/// Whether the log holds an entry of `request_id` at `since` or later.
async fn logged_since(store: &Store, since: u64, request_id: &str) -> Result<bool, StoreError> {
    Ok(store
        .audit_range(since, u64::MAX / 2)
        .await?
        .iter()
        .any(|t| AuditEntry::parse(&t.entry).is_ok_and(|e| e.request_id == request_id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Past [`MAX_LATE`] an entry is refused and counted: its outbox row
    /// waits for the next start instead of memory growing without bound.
    #[test]
    fn entries_beyond_the_bound_are_left_for_the_next_start() {
        let late = LateEntries::default();
        let health = AuditHealth::default();
        let entry =
            |i: usize| super::super::reload_entry(format!("r-{i}"), "gw", "h", vec![], 0, "ok");
        for i in 0..MAX_LATE {
            assert!(late.push(entry(i), 0, &health));
        }
        assert!(!late.push(entry(MAX_LATE), 0, &health));
        assert_eq!(health.late_waiting.load(Ordering::Relaxed), MAX_LATE as u64);
        assert_eq!(health.late_overflow.load(Ordering::Relaxed), 1);
        // Oldest first.
        assert_eq!(late.front().unwrap().0.request_id, "r-0");
        late.pop(&health);
        assert_eq!(late.front().unwrap().0.request_id, "r-1");
        assert_eq!(
            health.late_waiting.load(Ordering::Relaxed),
            MAX_LATE as u64 - 1
        );
    }
}

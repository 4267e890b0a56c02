//! The audit outbox: nothing a request changes becomes durable without its
//! audit entry.
//!
//! The log and the record store commit separately (the log is a sequencer
//! of its own). So a request that changes state writes its finished entry
//! *into the same transaction as the change*: an [`AuditIntent`], which
//! every mutating store method requires as a parameter, so that a write
//! path without its entry does not compile. After the commit the request
//! appends the same entry to the log, answers, and deletes the row.
//!
//! A crash between the commit and the append leaves the row behind;
//! [`Store::outbox_pending`] returns it at the next start, and the gateway
//! appends it unless the log's tail already holds its request id
//! (`server::recover_outbox`). Each change therefore has exactly one entry,
//! before or after a crash. A transaction that rolls back takes its intent
//! with it; the request then gets an entry for its refusal instead.

use super::{Backend, Store, StoreError};

/// A finished audit entry (canonical bytes) to be written with a change.
#[derive(Debug, Clone)]
pub struct AuditIntent {
    request_id: String,
    log_size: i64,
    entry: Vec<u8>,
}

impl AuditIntent {
    /// The entry of request `request_id`, canonical bytes, when the log held
    /// `log_size` entries (a lower bound of its sequence number).
    pub fn new(request_id: &str, log_size: u64, canonical_entry: Vec<u8>) -> Self {
        AuditIntent {
            request_id: request_id.to_owned(),
            log_size: i64::try_from(log_size).unwrap_or(i64::MAX),
            entry: canonical_entry,
        }
    }

    /// The request it belongs to.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }
}

/// Write `$intent` through `$exec` (the mutation's transaction).
macro_rules! write_intent {
    ($exec:expr, $intent:expr) => {{
        let i: &$crate::store::outbox::AuditIntent = $intent;
        sqlx::query("INSERT INTO audit_outbox (request_id, log_size, entry) VALUES ($1, $2, $3)")
            .bind(i.request_id())
            .bind(i.log_size_raw())
            .bind(i.entry_raw())
            .execute($exec)
            .await?;
    }};
}
pub(crate) use write_intent;

impl AuditIntent {
    pub(crate) fn log_size_raw(&self) -> i64 {
        self.log_size
    }

    pub(crate) fn entry_raw(&self) -> &[u8] {
        &self.entry
    }
}

/// An outbox row left at start: `(request_id, log_size, entry)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingEntry {
    /// The request.
    pub request_id: String,
    /// Log size when it was written.
    pub log_size: u64,
    /// Canonical entry bytes.
    pub entry: Vec<u8>,
}

impl Store {
    /// Rows whose entry may not have reached the log (oldest first).
    pub async fn outbox_pending(&self) -> Result<Vec<PendingEntry>, StoreError> {
        let rows: Vec<(String, i64, Vec<u8>)> = dispatch!(self, p => {
            sqlx::query_as("SELECT request_id, log_size, entry FROM audit_outbox ORDER BY log_size, request_id")
                .fetch_all(p)
                .await?
        });
        Ok(rows
            .into_iter()
            .map(|(request_id, log_size, entry)| PendingEntry {
                request_id,
                log_size: u64::try_from(log_size).unwrap_or(0),
                entry,
            })
            .collect())
    }

    /// The entry of `request_id` is in the log: forget the row.
    pub async fn outbox_done(&self, request_id: &str) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        dispatch!(self, p => {
            sqlx::query("DELETE FROM audit_outbox WHERE request_id = $1")
                .bind(request_id)
                .execute(p)
                .await?;
        });
        Ok(())
    }
}

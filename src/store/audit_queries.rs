//! The audit search index and the queries auditors, the portal and reports
//! run on it.
//!
//! The index (`audit_index`) is derived from the log: the indexer
//! ([`Store::index_pending`]) reads newly durable entries back from the
//! tiles and writes their search columns in large batches, off the request
//! path. Every query first brings the index up to the log's current head
//! ([`Store::ensure_indexed`]), so a search never misses an entry that was
//! durable when it started; every search result is the entry read back from
//! the log by its sequence number, never a copy kept in SQL. Every query is
//! the same SQL text on SQLite and PostgreSQL (through the `dispatch!` macro). Timestamps are compared as
//! text, which is sound because every stored `ts` has the one fixed layout
//! `YYYY-MM-DDTHH:MM:SS.mmmZ` (callers normalise their bounds to it).

use std::collections::HashMap;

use sqlx::QueryBuilder;

use super::{Backend, Store, StoreError, StoredAudit};
use credlog::entry::{AuditEntry, AuditField, keyed_subject_hash};
use credlog::merkle::{Hash, NodeId};

/// Rows per `INSERT INTO audit_index` statement, largest first. A batch is
/// written as statements of these sizes only, so the indexer runs at most
/// four distinct SQL texts, each prepared once per connection and cached.
/// A statement built per batch (one `VALUES` row per entry) was prepared
/// anew every time: SQLite's parser was then about 10,000 instructions per
/// indexed entry, the largest single cost of the indexer
/// (`bench/RESULTS.md`, "Instructions per request").
const INDEX_CHUNKS: [usize; 4] = [64, 16, 4, 1];

/// The insert statement for the largest chunk of [`INDEX_CHUNKS`] that
/// fits `remaining` rows, and that chunk's size.
///
/// PostgreSQL needs numbered placeholders (`$1`); SQLite gets anonymous
/// ones (`?`, numbered by position). sqlx asks SQLite for each
/// parameter's name when binding, and for a named parameter SQLite finds
/// it by a linear scan of the statement's parameter list: binding the 512
/// parameters of a 64-row insert cost O(n²), about 10 % of the gateway's
/// CPU under load (`bench/RESULTS.md`, "CPU per request, fourth session").
fn index_insert(remaining: usize, numbered: bool) -> (&'static str, usize) {
    fn build(numbered: bool) -> Vec<String> {
        INDEX_CHUNKS
            .iter()
            .map(|&n| {
                let mut sql = String::from(
                    "INSERT INTO audit_index (seq, ts, org, subject, purpose, outcome, action, decisions) VALUES ",
                );
                for r in 0..n {
                    if r > 0 {
                        sql.push_str(", ");
                    }
                    sql.push('(');
                    for c in 0..INDEX_COLUMNS {
                        if c > 0 {
                            sql.push_str(", ");
                        }
                        if numbered {
                            sql.push('$');
                            sql.push_str(&(r * INDEX_COLUMNS + c + 1).to_string());
                        } else {
                            sql.push('?');
                        }
                    }
                    sql.push(')');
                }
                sql
            })
            .collect()
    }
    static NUMBERED: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| build(true));
    static ANONYMOUS: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| build(false));
    debug_assert!(remaining > 0);
    let i = INDEX_CHUNKS
        .iter()
        .position(|&n| n <= remaining)
        .unwrap_or(INDEX_CHUNKS.len() - 1);
    let sql = if numbered { &NUMBERED } else { &ANONYMOUS };
    (sql[i].as_str(), INDEX_CHUNKS[i])
}

/// The `[start, end)` seq ranges to read back from the log for the rows
/// `take_remembered` lacks: each run of missing rows, with runs less than a
/// bundle apart merged, so that no bundle is read twice in one round.
fn missing_spans(rows: &[(u64, Option<IndexRow>)]) -> Vec<(u64, u64)> {
    let mut spans: Vec<(u64, u64)> = Vec::new();
    for (seq, row) in rows {
        if row.is_some() {
            continue;
        }
        match spans.last_mut() {
            Some((_, end)) if *seq < *end + credlog::tiles::TILE_WIDTH => *end = seq + 1,
            _ => spans.push((*seq, seq + 1)),
        }
    }
    spans
}

/// Columns bound per row by [`index_insert`]'s statements.
const INDEX_COLUMNS: usize = 8;

/// Bit in the `decisions` column: some field was `returned`.
pub const DECISION_RETURNED: i32 = 1;
/// Bit: some field was `masked`.
pub const DECISION_MASKED: i32 = 2;
/// Bit: some field was `withheld`.
pub const DECISION_WITHHELD: i32 = 4;
/// Bit: some submitted field was `accepted`.
pub const DECISION_ACCEPTED: i32 = 8;
/// Bit: some submitted field was `refused`.
pub const DECISION_REFUSED: i32 = 16;

/// Bit: some field was withheld or refused for a refusal reason
/// ([`crate::policy::is_refused_field`]: `not_authorised`,
/// `consent_invalid`, `prohibited`). Entries indexed before this bit
/// existed lack it until `credgate audit reindex`.
pub const DECISION_REFUSAL: i32 = 32;

/// SQL predicate for a *denied attempt* ([`crate::policy::is_denied_attempt`]):
/// the request failed, or a field was refused. Used by searches, reports
/// and anomaly counts alike.
const DENIED: &str = "(outcome <> 'ok' OR (decisions & 32) <> 0)";

/// The `decisions` column value for an entry's fields: one bit per decision
/// kind present, so searches and reports by decision need no JSON parsing.
pub fn decision_mask(fields: &[AuditField]) -> i32 {
    fields
        .iter()
        .fold(0, |m, f| m | decision_bits(&f.decision, &f.reason))
}

/// The `decisions` bits of one field's decision and reason.
fn decision_bits(decision: &str, reason: &str) -> i32 {
    let refusal = if crate::policy::is_refused_field(decision, reason) {
        DECISION_REFUSAL
    } else {
        0
    };
    refusal
        | match decision {
            "returned" => DECISION_RETURNED,
            "masked" => DECISION_MASKED,
            "withheld" => DECISION_WITHHELD,
            "accepted" => DECISION_ACCEPTED,
            "refused" => DECISION_REFUSED,
            _ => 0,
        }
}

/// The indexed columns of an entry, borrowed from its bytes: the indexer
/// reads thousands of entries per batch and needs neither the field names
/// nor owned strings (the entry itself stays in the log; searches read it
/// back from there). Fields it does not index are skipped, so any entry
/// version with these keys indexes alike.
#[derive(serde::Deserialize)]
struct IndexedColumns<'a> {
    #[serde(borrow)]
    ts: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    org: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    subject: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    purpose: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    outcome: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    action: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    fields: Vec<IndexedDecision<'a>>,
}

#[derive(serde::Deserialize)]
struct IndexedDecision<'a> {
    #[serde(borrow)]
    decision: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    reason: std::borrow::Cow<'a, str>,
}

impl From<IndexedColumns<'_>> for IndexRow {
    fn from(c: IndexedColumns<'_>) -> Self {
        IndexRow {
            decisions: c
                .fields
                .iter()
                .fold(0, |m, f| m | decision_bits(&f.decision, &f.reason)),
            ts: c.ts.into_owned(),
            org: c.org.map(std::borrow::Cow::into_owned),
            subject: c.subject.map(|h| keyed_subject_hash(&h).into_owned()),
            purpose: c.purpose.map(std::borrow::Cow::into_owned),
            outcome: c.outcome.into_owned(),
            action: c.action.into_owned(),
        }
    }
}

/// One entry's row in the search index.
///
/// The subject column holds the keyed form `<key id>:<hex>` whatever the
/// entry's version (a v1 or v2 entry's bare hash as `k1:<hex>`, as
/// migration 0009 rewrote the rows indexed before it), so one search by
/// the hashes of a subject under every configured key finds entries of
/// every version.
///
/// The indexer reads entries back from the durable log, except those this
/// gateway appended itself: it already holds them, and gives their rows to
/// the indexer when they are durable ([`Store::remember_indexed`]), which
/// spares it reading and parsing them again (most of its cost). Both ways
/// give the same row (`credgate audit reindex`, which reads the log, is
/// tested to give identical search results).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexRow {
    ts: String,
    org: Option<String>,
    subject: Option<String>,
    purpose: Option<String>,
    outcome: String,
    action: String,
    decisions: i32,
}

impl IndexRow {
    /// The row of `entry` (taking its strings).
    pub fn of(entry: AuditEntry) -> Self {
        IndexRow {
            decisions: decision_mask(&entry.fields),
            ts: entry.ts,
            org: entry.org,
            subject: entry.subject.map(|h| {
                if h.contains(':') {
                    h
                } else {
                    keyed_subject_hash(&h).into_owned()
                }
            }),
            purpose: entry.purpose,
            outcome: entry.outcome,
            action: entry.action,
        }
    }
}

/// At most this many rows wait for the indexer ([`Store::remember_indexed`]);
/// past that (an indexer far behind) entries are read back from the log.
pub const REMEMBERED_ROWS: usize = 65_536;

/// Entries indexed per transaction by `credgate audit reindex`, which has
/// the database to itself.
pub const INDEX_BATCH: u64 = 20_000;

/// Entries the live indexer writes per transaction. On SQLite a transaction
/// holds the database's one write lock, and request writes (a department's
/// submission, a consent use, a checkpoint) queue behind it at the write
/// gate (`write_gate.rs`): a write waits for at most one index transaction
/// of this size, not for the indexer's backlog. With 20,000 rows and no
/// gate a submission waited up to 4.8 s under c=1,000 query load; with
/// 2,048 rows and the gate, up to 0.8 s (`bench/submit-under-load.sh`,
/// `bench/RESULTS.md`). 512 rows measured no better (the wait is then the
/// write's own commits on saturated cores). Per-transaction overhead (the
/// head's read and update, the commit) stays small against 2,048 rows.
pub const LIVE_INDEX_BATCH: u64 = 2_048;

/// A process without a live indexer of its own (`credgate audit search`)
/// that finds the index lagging waits for another process's indexer while
/// the stored index head keeps moving; this long without a move, it
/// indexes itself. Several times a live indexer's delay after a batch
/// (100 ms) plus its round, so that a busy gateway beside the tool is not
/// mistaken for none.
pub const OTHER_INDEXER_STALL: std::time::Duration = std::time::Duration::from_millis(1_500);

/// The longest such a process waits for another's indexer in all.
pub const OTHER_INDEXER_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// How often the waiting process reads the stored index head.
const OTHER_INDEXER_POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// Length of the subject-hash prefix the `audit_subject` index covers
/// (the `12` in its migration; with the key id, `k2:` and 9 hex digits).
const SUBJECT_INDEX_PREFIX: usize = 12;

/// Filters of an audit search; every present filter must match.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Caller org code.
    pub org: Option<String>,
    /// Keyed subject hashes (`<key id>:<hex>`): an entry matches if its
    /// subject is any of them (the subject's hash under each configured
    /// key). Empty: any subject.
    pub subjects: Vec<String>,
    /// Purpose.
    pub purpose: Option<String>,
    /// Only these actions (empty: any).
    pub actions: Vec<String>,
    /// Outcome code.
    pub outcome: Option<String>,
    /// Entries having at least one field with this decision bit.
    pub decision: Option<i32>,
    /// Only denied attempts (`true`) or only clean successes (`false`).
    pub denied: Option<bool>,
    /// Inclusive lower bound on `ts` (normalised RFC 3339).
    pub from: Option<String>,
    /// Exclusive upper bound on `ts`.
    pub to: Option<String>,
    /// Start after this seq (pagination cursor).
    pub after: Option<u64>,
    /// Page size (clamped to 1..=10,000).
    pub limit: u32,
}

/// An entry with the leaf hash stored when it was appended.
#[derive(Debug, Clone)]
pub struct StoredLeaf {
    /// Position in the log.
    pub seq: u64,
    /// Canonical entry bytes as stored.
    pub entry: Vec<u8>,
    /// Leaf hash as stored (32 bytes unless the row was tampered with).
    pub leaf: Vec<u8>,
}

/// Requests per organisation over a time range, in disjoint categories:
/// `total = ok + partly_refused + refused`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgVolume {
    /// Org code (`None`: callers without a usable certificate identity).
    pub org: Option<String>,
    /// All requests.
    pub total: i64,
    /// Answered (`ok`) with no field refused (lifecycle withholdings and
    /// missing optional consent are ordinary answers).
    pub ok: i64,
    /// Answered (`ok`) with at least one field refused
    /// ([`DECISION_REFUSAL`]).
    pub partly_refused: i64,
    /// Not answered: any outcome but `ok` (refusals and errors).
    pub refused: i64,
}

/// Denied attempts of one organisation with one outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeniedCount {
    /// Org code.
    pub org: Option<String>,
    /// Outcome code (`ok` here means: answered with a refused field).
    pub outcome: String,
    /// Number of entries.
    pub count: i64,
    /// Of those, entries with at least one refused field.
    pub refused_fields: i64,
}

/// A subject (by keyed hash) and how often it was queried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectCount {
    /// Keyed subject hash.
    pub subject: String,
    /// Queries naming it.
    pub queries: i64,
    /// Distinct organisations that queried it.
    pub orgs: i64,
}

/// One organisation in one clock hour (UTC), for anomaly reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgHour {
    /// Org code.
    pub org: String,
    /// `YYYY-MM-DDTHH` (UTC).
    pub hour: String,
    /// Distinct subjects queried (admitted queries only).
    pub distinct_subjects: i64,
    /// Denied attempts.
    pub denied: i64,
    /// Queries refused with `quota_exceeded`.
    pub quota_refused: i64,
}

impl Store {
    /// Index the entries after the index head, at most `max` of them, in
    /// one transaction under the index-head lock (so several nodes never
    /// index an entry twice). Returns (indexed size, log size).
    pub async fn index_pending(&self, max: u64) -> Result<(u64, u64), StoreError> {
        let _turn = self.write_turn().await;
        let (size, _) = self.log_head().await?;
        let done = dispatch!(self, p => {
            let mut tx = p.begin().await?;
            let indexed: i64 = match &self.backend {
                Backend::Postgres(_) => {
                    sqlx::query_scalar("SELECT size FROM audit_index_head WHERE id = 1 FOR UPDATE")
                        .fetch_one(&mut *tx)
                        .await?
                }
                Backend::Sqlite(_) => {
                    sqlx::query_scalar("UPDATE audit_index_head SET size = size WHERE id = 1 RETURNING size")
                        .fetch_one(&mut *tx)
                        .await?
                }
            };
            let from = indexed as u64;
            let to = size.min(from.saturating_add(max));
            if to > from {
                let (mut rows, missing) = self.take_remembered(from, to);
                if missing {
                    // Only what is not remembered is read back from the log,
                    // one read per stretch (`missing_spans`): typically the
                    // last few entries, made durable after this round began
                    // and not handed over yet (reading the whole round's
                    // range for them read every full bundle in it again).
                    for (a, b) in missing_spans(&rows) {
                        let entries = self.audit_range(a, b).await?;
                        if entries.len() as u64 != b - a {
                            return Err(StoreError::Corrupt(format!("log lacks entries in [{a}, {b})")));
                        }
                        let slots = &mut rows[(a - from) as usize..(b - from) as usize];
                        for (slot, e) in slots.iter_mut().zip(&entries) {
                            if slot.1.is_none() {
                                let parsed: IndexedColumns<'_> = serde_json::from_slice(&e.entry).map_err(|err| {
                                    StoreError::Corrupt(format!("entry {} does not parse: {err}", e.seq))
                                })?;
                                slot.1 = Some(parsed.into());
                            }
                        }
                    }
                }
                let rows: Vec<(u64, IndexRow)> = rows
                    .into_iter()
                    .filter_map(|(seq, r)| r.map(|r| (seq, r)))
                    .collect();
                // The rows' strings are moved into the statements: bound
                // by reference, each would be copied again (sqlx owns its
                // arguments).
                let mut rest = rows.into_iter();
                while rest.len() > 0 {
                    let (sql, n) = index_insert(
                        rest.len(),
                        matches!(self.backend, Backend::Postgres(_)),
                    );
                    let mut q = sqlx::query(sql);
                    for (seq, e) in rest.by_ref().take(n) {
                        q = q
                            .bind(seq as i64)
                            .bind(e.ts)
                            .bind(e.org)
                            .bind(e.subject)
                            .bind(e.purpose)
                            .bind(e.outcome)
                            .bind(e.action)
                            .bind(e.decisions);
                    }
                    q.execute(&mut *tx).await?;
                }
                sqlx::query("UPDATE audit_index_head SET size = $1 WHERE id = 1")
                    .bind(to as i64)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            self.audit.indexed_here.fetch_add(to.saturating_sub(from), std::sync::atomic::Ordering::Relaxed);
            to.max(from)
        });
        // Stored, not maximised: the stored head is the truth, and it goes
        // down when another process rebuilds the index (`reindex`). A view
        // below the truth costs one more round; above it, a search would
        // miss what the rebuild has not reached yet.
        self.audit
            .indexed
            .store(done, std::sync::atomic::Ordering::Release);
        Ok((done, size))
    }

    /// This gateway's own entry `seq` is durable: keep its row for the
    /// indexer (see [`IndexRow`]). Bounded by [`REMEMBERED_ROWS`].
    pub fn remember_indexed(&self, seq: u64, row: IndexRow) {
        if seq
            < self
                .audit
                .indexed
                .load(std::sync::atomic::Ordering::Acquire)
        {
            return;
        }
        let mut m = self
            .audit
            .remembered
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if m.len() < REMEMBERED_ROWS {
            m.insert(seq, row);
        }
    }

    /// The remembered rows of `[from, to)` in order (`None` where the entry
    /// must be read from the log) and whether any is missing; rows before
    /// `to` are dropped (indexed now, or by another node).
    fn take_remembered(&self, from: u64, to: u64) -> (Vec<(u64, Option<IndexRow>)>, bool) {
        let mut m = self
            .audit
            .remembered
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // Ordered by seq: everything before `to` leaves the map in one
        // split (a `retain` over a hash map scanned all remembered rows,
        // up to 65,536, under the lock every request takes).
        let rest = m.split_off(&to);
        let mut taken = std::mem::replace(&mut *m, rest).into_iter().peekable();
        drop(m);
        let rows: Vec<(u64, Option<IndexRow>)> = (from..to)
            .map(|seq| {
                while taken.next_if(|(s, _)| *s < seq).is_some() {}
                (seq, taken.next_if(|(s, _)| *s == seq).map(|(_, r)| r))
            })
            .collect();
        let missing = rows.iter().any(|(_, r)| r.is_none());
        (rows, missing)
    }

    /// Bring the index up to the log's current head.
    ///
    /// Another process may have indexed the entries already (the gateway
    /// beside `credgate audit search`, another node): the stored index head
    /// is read first, without its lock, and the lock is taken only when the
    /// index really lags. A process that runs no live indexer of its own (a
    /// CLI tool) then first waits for the one that does, as long as the
    /// stored head keeps moving ([`OTHER_INDEXER_STALL`], at most
    /// [`OTHER_INDEXER_WAIT`]): a read-only tool beside a busy gateway never
    /// competes with it for the SQLite write lock, and indexes itself only
    /// when no one else is (no gateway running, or a stuck one).
    pub async fn ensure_indexed(&self) -> Result<(), StoreError> {
        let (size, _) = self.log_head().await?;
        // Read every time (one small query per search): another process
        // may have emptied the index to rebuild it since this one last
        // looked.
        self.read_stored_index_head().await?;
        if self.indexed_size() < size
            && !self
                .audit
                .live_indexer
                .load(std::sync::atomic::Ordering::Acquire)
        {
            self.wait_for_other_indexer(size).await?;
        }
        while self
            .audit
            .indexed
            .load(std::sync::atomic::Ordering::Acquire)
            < size
        {
            let (done, _) = self.index_pending(INDEX_BATCH).await?;
            if done >= size {
                break;
            }
        }
        Ok(())
    }

    /// The stored index head (read without its lock), which becomes this
    /// process's view; returns it.
    async fn read_stored_index_head(&self) -> Result<u64, StoreError> {
        let stored: i64 = dispatch!(self, p => {
            sqlx::query_scalar("SELECT size FROM audit_index_head WHERE id = 1")
                .fetch_one(p)
                .await?
        });
        self.audit
            .indexed
            .store(stored as u64, std::sync::atomic::Ordering::Release);
        Ok(stored as u64)
    }

    /// Wait while another process's indexer brings the stored index head
    /// towards `size`: until it gets there, stops moving for
    /// [`OTHER_INDEXER_STALL`], or [`OTHER_INDEXER_WAIT`] has passed.
    async fn wait_for_other_indexer(&self, size: u64) -> Result<(), StoreError> {
        let started = tokio::time::Instant::now();
        let mut moved = started;
        let mut last = self.indexed_size();
        while last < size
            && moved.elapsed() < OTHER_INDEXER_STALL
            && started.elapsed() < OTHER_INDEXER_WAIT
        {
            tokio::time::sleep(OTHER_INDEXER_POLL).await;
            let now = self.read_stored_index_head().await?;
            if now > last {
                last = now;
                moved = tokio::time::Instant::now();
            }
        }
        Ok(())
    }

    /// This process runs the live indexer (`AuditLog::start`): its own
    /// searches index at once instead of waiting for another process.
    pub fn set_live_indexer(&self, running: bool) {
        self.audit
            .live_indexer
            .store(running, std::sync::atomic::Ordering::Release);
    }

    /// Entries this process indexed itself (rather than finding them
    /// indexed by another process).
    pub fn indexed_here(&self) -> u64 {
        self.audit
            .indexed_here
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Drop the index and rebuild it from the log (`credgate audit reindex`).
    /// Returns the number of entries indexed.
    pub async fn reindex(&self) -> Result<u64, StoreError> {
        {
            let _turn = self.write_turn().await;
            dispatch!(self, p => {
                let mut tx = p.begin().await?;
                sqlx::query("UPDATE audit_index_head SET size = 0 WHERE id = 1").execute(&mut *tx).await?;
                sqlx::query("DELETE FROM audit_index").execute(&mut *tx).await?;
                tx.commit().await?;
            });
        }
        self.audit
            .indexed
            .store(0, std::sync::atomic::Ordering::Release);
        let (size, _) = self.log_head().await?;
        loop {
            let (done, _) = self.index_pending(INDEX_BATCH).await?;
            if done >= size {
                return Ok(done);
            }
        }
    }

    /// Entries the index covers, as this process last saw it.
    pub fn indexed_size(&self) -> u64 {
        self.audit
            .indexed
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// The sequence span `[first, last + 1)` of entries with `from <= ts < to`
    /// among the first `size` entries; `None` when there are none.
    pub async fn audit_seq_span(
        &self,
        from: &str,
        to: &str,
        size: u64,
    ) -> Result<Option<(u64, u64)>, StoreError> {
        self.ensure_indexed().await?;
        let size = i64::try_from(size).unwrap_or(i64::MAX);
        let (lo, hi): (Option<i64>, Option<i64>) = dispatch!(self, p => {
            sqlx::query_as(
                "SELECT MIN(seq), MAX(seq) FROM audit_index WHERE ts >= $1 AND ts < $2 AND seq < $3",
            )
            .bind(from)
            .bind(to)
            .bind(size)
            .fetch_one(p)
            .await?
        });
        Ok(match (lo, hi) {
            (Some(lo), Some(hi)) => Some((lo as u64, hi as u64 + 1)),
            _ => None,
        })
    }

    /// Search by the index columns, in seq order after the cursor.
    pub async fn audit_query(&self, q: &AuditQuery) -> Result<Vec<StoredAudit>, StoreError> {
        self.ensure_indexed().await?;
        let rows: Vec<i64> = dispatch!(self, p => {
            // SQLite: with a subject filter, `+` keeps the planner off the
            // rowid range (which would scan the log) and stops it from
            // propagating `subject = ?` into the indexed expression, so the
            // `audit_subject` prefix index is used. PostgreSQL needs neither.
            let sqlite = matches!(self.backend, Backend::Sqlite(_));
            let plus = if sqlite && !q.subjects.is_empty() { "+" } else { "" };
            let mut qb = QueryBuilder::new(format!("SELECT seq FROM audit_index WHERE {plus}seq >= "));
            // A cursor beyond any stored seq selects nothing (seqs fit in i64).
            qb.push_bind(q.after.map_or(0, |a| i64::try_from(a).map_or(i64::MAX, |a| a.saturating_add(1))));
            if let Some(v) = &q.org { qb.push(" AND org = ").push_bind(v.as_str()); }
            if !q.subjects.is_empty() {
                // The prefixes match the `audit_subject` expression index.
                qb.push(" AND substr(subject, 1, 12) IN (");
                let mut sep = qb.separated(", ");
                for v in &q.subjects {
                    sep.push_bind(v.chars().take(SUBJECT_INDEX_PREFIX).collect::<String>());
                }
                qb.push(format!(") AND {plus}subject IN ("));
                let mut sep = qb.separated(", ");
                for v in &q.subjects {
                    sep.push_bind(v.as_str());
                }
                qb.push(")");
            }
            if let Some(v) = &q.purpose { qb.push(" AND purpose = ").push_bind(v.as_str()); }
            if let Some(v) = &q.outcome { qb.push(" AND outcome = ").push_bind(v.as_str()); }
            if let Some(v) = &q.from { qb.push(" AND ts >= ").push_bind(v.as_str()); }
            if let Some(v) = &q.to { qb.push(" AND ts < ").push_bind(v.as_str()); }
            if let Some(bit) = q.decision {
                qb.push(" AND (decisions & ").push_bind(bit).push(") <> 0");
            }
            match q.denied {
                Some(true) => { qb.push(" AND ").push(DENIED); }
                Some(false) => { qb.push(" AND NOT ").push(DENIED); }
                None => {}
            }
            if !q.actions.is_empty() {
                qb.push(" AND action IN (");
                let mut sep = qb.separated(", ");
                for a in &q.actions {
                    sep.push_bind(a.as_str());
                }
                qb.push(")");
            }
            qb.push(" ORDER BY seq LIMIT ").push_bind(i64::from(q.limit.clamp(1, 10_000)));
            qb.build_query_scalar().fetch_all(p).await?
        });
        let seqs: Vec<u64> = rows.into_iter().map(|s| s as u64).collect();
        self.audit_entries_at(&seqs).await
    }

    /// Requests per organisation with `from <= ts < to`.
    pub async fn audit_volume(&self, from: &str, to: &str) -> Result<Vec<OrgVolume>, StoreError> {
        self.ensure_indexed().await?;
        let sql = format!(
            "SELECT org, COUNT(*), \
             COALESCE(SUM(CASE WHEN NOT {DENIED} THEN 1 ELSE 0 END), 0), \
             COALESCE(SUM(CASE WHEN outcome = 'ok' AND {DENIED} THEN 1 ELSE 0 END), 0), \
             COALESCE(SUM(CASE WHEN outcome <> 'ok' THEN 1 ELSE 0 END), 0) \
             FROM audit_index WHERE ts >= $1 AND ts < $2 GROUP BY org ORDER BY org"
        );
        let rows: Vec<(Option<String>, i64, i64, i64, i64)> = dispatch!(self, p => {
            sqlx::query_as(&sql).bind(from).bind(to).fetch_all(p).await?
        });
        Ok(rows
            .into_iter()
            .map(|(org, total, ok, partly_refused, refused)| OrgVolume {
                org,
                total,
                ok,
                partly_refused,
                refused,
            })
            .collect())
    }

    /// Requests per organisation in each bin `edges[i] <= ts < edges[i + 1]`
    /// (ascending edges), in one query: `(bin, org, count)` ordered by bin
    /// and org, bins without entries absent. The console's volume chart
    /// (one query for the whole chart, not one per bin).
    pub async fn audit_volume_bins(
        &self,
        edges: &[String],
    ) -> Result<Vec<(usize, Option<String>, i64)>, StoreError> {
        let Some(last) = edges.len().checked_sub(1).filter(|&n| n > 0) else {
            return Ok(Vec::new());
        };
        self.ensure_indexed().await?;
        let rows: Vec<(i64, Option<String>, i64)> = dispatch!(self, p => {
            let mut qb = QueryBuilder::new("SELECT bin, org, COUNT(*) FROM (SELECT CASE");
            for (i, edge) in edges[1..].iter().enumerate() {
                qb.push(" WHEN ts < ")
                    .push_bind(edge.as_str())
                    .push(format!(" THEN CAST({i} AS BIGINT)"));
            }
            qb.push(" END AS bin, org FROM audit_index WHERE ts >= ")
                .push_bind(edges[0].as_str())
                .push(" AND ts < ")
                .push_bind(edges[last].as_str())
                .push(") AS binned GROUP BY bin, org ORDER BY bin, org");
            qb.build_query_as().fetch_all(p).await?
        });
        Ok(rows
            .into_iter()
            .map(|(bin, org, n)| (bin as usize, org, n))
            .collect())
    }

    /// Denied attempts per organisation and outcome with `from <= ts < to`.
    pub async fn audit_denied(&self, from: &str, to: &str) -> Result<Vec<DeniedCount>, StoreError> {
        self.ensure_indexed().await?;
        let sql = format!(
            "SELECT org, outcome, COUNT(*), \
             COALESCE(SUM(CASE WHEN (decisions & 32) <> 0 THEN 1 ELSE 0 END), 0) \
             FROM audit_index WHERE ts >= $1 AND ts < $2 AND {DENIED} \
             GROUP BY org, outcome ORDER BY org, outcome"
        );
        let rows: Vec<(Option<String>, String, i64, i64)> = dispatch!(self, p => {
            sqlx::query_as(&sql).bind(from).bind(to).fetch_all(p).await?
        });
        Ok(rows
            .into_iter()
            .map(|(org, outcome, count, refused_fields)| DeniedCount {
                org,
                outcome,
                count,
                refused_fields,
            })
            .collect())
    }

    /// The `top` most-queried subjects (by keyed hash) with `from <= ts < to`.
    pub async fn audit_top_subjects(
        &self,
        from: &str,
        to: &str,
        top: u32,
    ) -> Result<Vec<SubjectCount>, StoreError> {
        self.ensure_indexed().await?;
        let rows: Vec<(String, i64, i64)> = dispatch!(self, p => {
            sqlx::query_as(
                "SELECT subject, COUNT(*), COUNT(DISTINCT org) FROM audit_index \
                 WHERE ts >= $1 AND ts < $2 AND subject IS NOT NULL AND action = 'query' \
                 GROUP BY subject ORDER BY 2 DESC, 1 LIMIT $3",
            )
            .bind(from)
            .bind(to)
            .bind(i64::from(top))
            .fetch_all(p)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(subject, queries, orgs)| SubjectCount {
                subject,
                queries,
                orgs,
            })
            .collect())
    }

    /// Per organisation and UTC clock hour: distinct subjects queried and
    /// denied attempts, for anomaly reports across all gateway nodes.
    pub async fn audit_org_hours(&self, from: &str, to: &str) -> Result<Vec<OrgHour>, StoreError> {
        self.ensure_indexed().await?;
        let sql = format!(
            "SELECT org, substr(ts, 1, 13), \
             COUNT(DISTINCT CASE WHEN action = 'query' AND outcome <> 'quota_exceeded' THEN subject END), \
             COALESCE(SUM(CASE WHEN {DENIED} THEN 1 ELSE 0 END), 0), \
             COALESCE(SUM(CASE WHEN outcome = 'quota_exceeded' THEN 1 ELSE 0 END), 0) \
             FROM audit_index WHERE ts >= $1 AND ts < $2 AND org IS NOT NULL \
             GROUP BY org, substr(ts, 1, 13) ORDER BY 1, 2"
        );
        let rows: Vec<(String, String, i64, i64, i64)> = dispatch!(self, p => {
            sqlx::query_as(&sql).bind(from).bind(to).fetch_all(p).await?
        });
        Ok(rows
            .into_iter()
            .map(
                |(org, hour, distinct_subjects, denied, quota_refused)| OrgHour {
                    org,
                    hour,
                    distinct_subjects,
                    denied,
                    quota_refused,
                },
            )
            .collect())
    }

    /// Sizes of all stored checkpoints, ascending: what a verifier walks
    /// to check every signed head against the leaves.
    pub async fn checkpoint_sizes(&self) -> Result<Vec<u64>, StoreError> {
        let rows: Vec<i64> = dispatch!(self, p => {
            sqlx::query_scalar("SELECT size FROM checkpoints ORDER BY size")
                .fetch_all(p)
                .await?
        });
        Ok(rows.into_iter().map(|s| s as u64).collect())
    }
}

/// Index nodes by id for [`credlog::merkle::assemble`].
pub fn node_map(nodes: Vec<(NodeId, Hash)>) -> HashMap<NodeId, Hash> {
    nodes.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_inserts_bind_eight_columns_per_row_in_each_dialect() {
        for &n in &INDEX_CHUNKS {
            let (pg, rows) = index_insert(n, true);
            assert_eq!(rows, n);
            assert_eq!(pg.matches('$').count(), n * INDEX_COLUMNS);
            assert!(pg.ends_with(&format!("${})", n * INDEX_COLUMNS)), "{pg}");
            assert!(!pg.contains('?'));
            let (lite, rows) = index_insert(n, false);
            assert_eq!(rows, n);
            // Anonymous placeholders only: a named one makes SQLite's
            // parameter lookup (which sqlx calls per bind) a linear scan.
            assert_eq!(lite.matches('?').count(), n * INDEX_COLUMNS);
            assert!(!lite.contains('$'));
        }
        // The largest chunk that fits, down to single rows.
        assert_eq!(index_insert(100, false).1, 64);
        assert_eq!(index_insert(63, false).1, 16);
        assert_eq!(index_insert(5, true).1, 4);
        assert_eq!(index_insert(3, true).1, 1);
    }

    #[test]
    fn only_missing_stretches_are_read_back() {
        let row = || {
            Some(IndexRow {
                ts: String::new(),
                org: None,
                subject: None,
                purpose: None,
                outcome: "ok".into(),
                action: "query".into(),
                decisions: 0,
            })
        };
        let rows = |missing: &[u64]| -> Vec<(u64, Option<IndexRow>)> {
            (1000..2000)
                .map(|s| (s, if missing.contains(&s) { None } else { row() }))
                .collect()
        };
        assert!(missing_spans(&rows(&[])).is_empty());
        // The usual case: the last few, not handed over yet.
        assert_eq!(missing_spans(&rows(&[1997, 1998, 1999])), [(1997, 2000)]);
        // Runs within a bundle's width are read once.
        assert_eq!(missing_spans(&rows(&[1000, 1100, 1101])), [(1000, 1102)]);
        // Runs farther apart are read separately.
        assert_eq!(
            missing_spans(&rows(&[1000, 1600])),
            [(1000, 1001), (1600, 1601)]
        );
    }
}

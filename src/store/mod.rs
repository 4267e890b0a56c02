//! Persistence through sqlx: SQLite (embedded default) or PostgreSQL.
//!
//! Both backends run the same SQL text (`$n` placeholders work in both) and
//! the same code: [`dispatch!`] expands each method body once per backend, so
//! there is no trait object and no `Any` driver on the hot path. Where the
//! dialects differ (row locks) the match arms differ.
//!
//! The read path for credit data, [`Store::read_shared`], takes a
//! [`Permit`]: the store never hands back a field the policy did not release,
//! nor a record the lifecycle rules withhold. Lifecycle persistence
//! (objections, repairs, lists, checks) lives in `lifecycle.rs`, a second
//! `impl Store` block using the same [`dispatch!`].

use serde_json::{Map, Value};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection as _, PgPool, Row, SqlitePool};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use crate::audit::merkle::{self, Frontier, Hash, NodeId};
use crate::ids::SubjectId;
use crate::policy::{Permit, Policy};

/// Store failures. Never shown to clients in detail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database refused or failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// Schema migration failed.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Stored data violates an invariant (e.g. a missing Merkle node).
    #[error("store corrupt: {0}")]
    Corrupt(String),
    /// Unsupported URL.
    #[error("unsupported database url (use sqlite:… or postgres://…)")]
    Url,
}

#[derive(Clone, Debug)]
enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Handle to the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    backend: Backend,
    /// Per-subject cache of record rows; SQLite only (see [`SubjectCache`]).
    cache: Option<Arc<SubjectCache>>,
}

/// Cache of each subject's record rows, parsed, for the query hot path.
///
/// Reading a subject's records through sqlx's SQLite driver costs more than
/// the rest of a query together (policy, audit, TLS), so one SQLite gateway
/// keeps the rows it has read. Validity is a global generation counter:
/// every write that can change what `read_shared` returns bumps it *after*
/// its commit, and a reader records the generation *before* it reads, so a
/// row set read concurrently with a write is never served after that write.
/// Writes are rare (submissions, objections, repairs, lists) next to reads.
///
/// Only for SQLite, where this process is the only writer. With PostgreSQL
/// several gateway nodes write, so every read goes to the database.
#[derive(Debug, Default)]
pub(crate) struct SubjectCache {
    generation: std::sync::atomic::AtomicU64,
    map: std::sync::Mutex<HashMap<SubjectKey, (u64, CachedRows)>>,
}

/// (subject type, subject id).
type SubjectKey = (String, String);
/// A subject's parsed rows, shared between the cache and readers.
type CachedRows = Arc<Vec<lifecycle::CachedRow>>;

/// Most subjects kept; the cache is emptied when it is full (the cheapest
/// bounded policy that still makes a hot subject cheap).
const CACHE_SUBJECTS: usize = 50_000;

impl SubjectCache {
    fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    fn get(&self, key: &SubjectKey) -> Option<CachedRows> {
        let gen_now = self.generation();
        let map = self.map.lock().ok()?;
        map.get(key)
            .filter(|(g, _)| *g == gen_now)
            .map(|(_, rows)| rows.clone())
    }

    fn put(&self, key: SubjectKey, read_at: u64, rows: CachedRows) {
        if let Ok(mut map) = self.map.lock() {
            if map.len() >= CACHE_SUBJECTS {
                map.clear();
            }
            map.insert(key, (read_at, rows));
        }
    }

    fn invalidate(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Run the same body against whichever pool backs the store.
/// Defined before the submodules so they can use it too.
macro_rules! dispatch {
    ($self:expr, $pool:ident => $body:expr) => {
        match &$self.backend {
            Backend::Sqlite($pool) => $body,
            Backend::Postgres($pool) => $body,
        }
    };
}

/// Insert one validated record through `$exec` (a transaction) and yield
/// its id. Every write path uses it, so none can forget a column.
macro_rules! insert_record {
    ($exec:expr, $r:expr, $request_id:expr, $now:expr) => {{
        let r: &NewRecord = $r;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO records (subject_type, subject_id, item, provider, data, recorded_at, request_id, tier, decision_date) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        )
        .bind(r.subject.kind().as_str())
        .bind(r.subject.id())
        .bind(&r.item)
        .bind(&r.provider)
        .bind(Value::Object(r.data.clone()).to_string())
        .bind($now)
        .bind($request_id)
        .bind(r.terms.map(|t| t.tier.as_str()))
        .bind(r.terms.map(|t| crate::policy::lifecycle::format_date(t.decision_date)))
        .fetch_one($exec)
        .await?;
        id
    }};
}

// After `dispatch!` and `insert_record!`: macro_rules scoping is textual.
mod consent;
pub mod outbox;
pub use consent::{ConsentStatus, ConsentUse, UseOutcome};
pub use outbox::{AuditIntent, PendingEntry};
mod lifecycle;
pub use lifecycle::{
    Application, CheckInputs, CheckRow, History, ListAdded, ListEntryView, NewListEntry,
    ObjectionRow, ObjectionTarget, Refusal, Resolution, SharedRead, SharedRecord, Step,
    SubjectRecord, WithheldRecord,
};
// After the macro, so the read-side queries can use it.
mod audit_queries;
pub use audit_queries::*;

/// A record to insert (already validated against the catalog).
#[derive(Debug, Clone)]
pub struct NewRecord {
    /// Whose record.
    pub subject: SubjectId,
    /// Catalog item id.
    pub item: String,
    /// Providing organisation's code.
    pub provider: String,
    /// Catalog fields of the item.
    pub data: Map<String, Value>,
    /// Tier and decision date; `Some` exactly for negative items.
    pub terms: Option<crate::policy::lifecycle::RecordTerms>,
}

/// A record as released to a caller: only permitted fields, masked as granted.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReleasedRecord {
    /// Stable record id.
    pub record_id: i64,
    /// Catalog item.
    pub item: String,
    /// Providing organisation.
    pub provided_by: String,
    /// When it was recorded (RFC 3339).
    pub recorded_at: String,
    /// Released fields.
    pub fields: Map<String, Value>,
}

/// One audit entry ready to append, with the columns auditors search by.
#[derive(Debug, Clone)]
pub struct AuditRow {
    /// Timestamp (RFC 3339 UTC).
    pub ts: String,
    /// Caller's org code.
    pub org: Option<String>,
    /// Keyed hash of the subject id.
    pub subject: Option<String>,
    /// Purpose named.
    pub purpose: Option<String>,
    /// Outcome code (`ok` or an error code).
    pub outcome: String,
    /// Action name (`query`, `audit_search`, …).
    pub action: String,
    /// Which field decisions occur ([`decision_mask`]).
    pub decisions: i32,
    /// Canonical entry bytes (Merkle leaf data).
    pub entry: Vec<u8>,
}

/// A stored audit entry.
#[derive(Debug, Clone)]
pub struct StoredAudit {
    /// Position in the log.
    pub seq: u64,
    /// Canonical entry bytes.
    pub entry: Vec<u8>,
}

impl Store {
    /// Connect and migrate. `sqlite:` URLs create the file if missing and use
    /// WAL with `synchronous=FULL`: an acknowledged commit survives a crash.
    ///
    /// A connection that sqlx still counts as inside a transaction when it
    /// is released (its COMMIT *and* the ROLLBACK on drop failed, e.g. on a
    /// disk I/O error) is closed instead of pooled: sqlx would turn the next
    /// `begin`/`commit` on it into `SAVEPOINT`/`RELEASE` inside the dead
    /// transaction, so "committed" audit entries would never reach the disk
    /// and its write lock would block every other writer
    /// (`tests/drills.rs`, storage outage drill).
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store, StoreError> {
        let backend = if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true);
            let pool = SqlitePoolOptions::new()
                .max_connections(max_connections)
                .after_release(|conn, _| Box::pin(async move { Ok(!conn.is_in_transaction()) }))
                .connect_with(opts)
                .await?;
            sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
            Backend::Sqlite(pool)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let opts = PgConnectOptions::from_str(url)?;
            let pool = PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(Duration::from_secs(10))
                .after_release(|conn, _| Box::pin(async move { Ok(!conn.is_in_transaction()) }))
                .connect_with(opts)
                .await?;
            sqlx::migrate!("./migrations/postgres").run(&pool).await?;
            Backend::Postgres(pool)
        } else {
            return Err(StoreError::Url);
        };
        let cache = matches!(backend, Backend::Sqlite(_)).then(Arc::default);
        Ok(Store { backend, cache })
    }

    /// Forget cached record rows; called after every commit that changes
    /// what a query could return.
    pub(crate) fn invalidate(&self) {
        if let Some(c) = &self.cache {
            c.invalidate();
        }
    }

    /// Connect to a PostgreSQL server without migrating (tests use it to
    /// create and drop per-test databases).
    #[doc(hidden)]
    pub async fn connect_admin(url: &str) -> Result<Store, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(PgConnectOptions::from_str(url)?)
            .await?;
        Ok(Store {
            backend: Backend::Postgres(pool),
            cache: None,
        })
    }

    /// Which backend, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Close the pool (flushes SQLite's WAL on the last connection).
    pub async fn close(&self) {
        dispatch!(self, p => p.close().await)
    }

    /// Cheap liveness probe for `/readyz`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        dispatch!(self, p => {
            sqlx::query("SELECT 1").execute(p).await?;
        });
        Ok(())
    }

    /// Insert a whole batch in one transaction: all or nothing.
    pub async fn insert_records(
        &self,
        batch: &[NewRecord],
        intent: &AuditIntent,
        now: &str,
    ) -> Result<Vec<i64>, StoreError> {
        let request_id = intent.request_id();
        dispatch!(self, p => {
            let mut tx = p.begin().await?;
            let mut ids = Vec::with_capacity(batch.len());
            for r in batch {
                ids.push(insert_record!(&mut *tx, r, request_id, now));
            }
            outbox::write_intent!(&mut *tx, intent);
            tx.commit().await?;
            self.invalidate();
            Ok(ids)
        })
    }

    /// Store sample records outside any request (`quickstart`, `seed`):
    /// development data, tagged with `label` as their request id, with no
    /// audit entry because no request made them. Never reachable from the
    /// API, which only writes through [`Store::insert_records`].
    pub async fn insert_seed_records(
        &self,
        batch: &[NewRecord],
        label: &str,
        now: &str,
    ) -> Result<Vec<i64>, StoreError> {
        dispatch!(self, p => {
            let mut tx = p.begin().await?;
            let mut ids = Vec::with_capacity(batch.len());
            for r in batch {
                ids.push(insert_record!(&mut *tx, r, label, now));
            }
            tx.commit().await?;
            self.invalidate();
            Ok(ids)
        })
    }

    /// Number of stored records (all subjects). Counts only: tests and
    /// metrics use it to prove that a refused batch stored nothing.
    pub async fn record_count(&self) -> Result<i64, StoreError> {
        dispatch!(self, p => Ok(sqlx::query_scalar("SELECT COUNT(*) FROM records").fetch_one(p).await?))
    }

    /// How many records each request stored, by request id (drills and
    /// tests check every stored record against its audit entry).
    pub async fn records_per_request(&self) -> Result<Vec<(String, i64)>, StoreError> {
        dispatch!(self, p => Ok(sqlx::query_as(
            "SELECT request_id, COUNT(*) FROM records GROUP BY request_id ORDER BY request_id",
        )
        .fetch_all(p)
        .await?))
    }

    /// Read a subject's records, releasing only what `permit` allows.
    #[deprecated(
        note = "ignores disclosure periods, repairs, withdrawals and objections; use Store::read_shared"
    )]
    pub async fn read_released(
        &self,
        subject: &SubjectId,
        permit: &Permit,
        policy: &Policy,
    ) -> Result<Vec<ReleasedRecord>, StoreError> {
        if permit.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<(i64, String, String, String, String)> = dispatch!(self, p => {
            sqlx::query_as(
                "SELECT id, item, provider, data, recorded_at FROM records \
                 WHERE subject_id = $1 AND subject_type = $2 ORDER BY id",
            )
            .bind(subject.id())
            .bind(subject.kind().as_str())
            .fetch_all(p)
            .await?
        });
        let mut out = Vec::new();
        for (id, item, provider, data, recorded_at) in rows {
            let Ok(Value::Object(map)) = serde_json::from_str::<Value>(&data) else {
                return Err(StoreError::Corrupt(format!(
                    "record {id} is not a JSON object"
                )));
            };
            if let Some(fields) = permit.release(policy, &item, &map) {
                out.push(ReleasedRecord {
                    record_id: id,
                    item,
                    provided_by: provider,
                    recorded_at,
                    fields,
                });
            }
        }
        Ok(out)
    }

    // ------------------------------------------------------------------ audit

    /// Load the tree frontier for the stored head.
    pub async fn load_frontier(&self) -> Result<Frontier, StoreError> {
        dispatch!(self, p => {
            let mut conn = p.acquire().await?;
            let size: i64 = sqlx::query_scalar("SELECT size FROM log_head WHERE id = 1")
                .fetch_one(&mut *conn)
                .await?;
            let ids = merkle::range_nodes(0, size as u64);
            let mut hashes = Vec::with_capacity(ids.len());
            for id in ids {
                let h: Vec<u8> = sqlx::query_scalar("SELECT hash FROM merkle_nodes WHERE level = $1 AND idx = $2")
                    .bind(i32::from(id.level))
                    .bind(id.index as i64)
                    .fetch_optional(&mut *conn)
                    .await?
                    .ok_or_else(|| StoreError::Corrupt(format!("missing node {id:?}")))?;
                hashes.push(to_hash(&h)?);
            }
            Frontier::from_nodes(size as u64, &hashes).map_err(|e| StoreError::Corrupt(e.to_string()))
        })
    }

    /// Append a batch in one transaction under the tree-head lock.
    ///
    /// If another node advanced the head since `frontier` was loaded, the
    /// frontier is reloaded inside the transaction first, so several gateway
    /// processes on one PostgreSQL share one totally ordered log. Returns the
    /// sequence number of the first entry. On error `frontier` is unchanged.
    pub async fn append_audit(
        &self,
        rows: &[AuditRow],
        frontier: &mut Frontier,
    ) -> Result<u64, StoreError> {
        let mut work = frontier.clone();
        let first = dispatch!(self, p => {
            let mut tx = p.begin().await?;
            let size: i64 = match &self.backend {
                Backend::Postgres(_) => {
                    sqlx::query_scalar("SELECT size FROM log_head WHERE id = 1 FOR UPDATE")
                        .fetch_one(&mut *tx)
                        .await?
                }
                // SQLite: a write takes the database lock before we read.
                Backend::Sqlite(_) => {
                    sqlx::query_scalar("UPDATE log_head SET size = size WHERE id = 1 RETURNING size")
                        .fetch_one(&mut *tx)
                        .await?
                }
            };
            if size as u64 != work.size() {
                let ids = merkle::range_nodes(0, size as u64);
                let mut hashes = Vec::with_capacity(ids.len());
                for id in ids {
                    let h: Vec<u8> = sqlx::query_scalar("SELECT hash FROM merkle_nodes WHERE level = $1 AND idx = $2")
                        .bind(i32::from(id.level))
                        .bind(id.index as i64)
                        .fetch_one(&mut *tx)
                        .await?;
                    hashes.push(to_hash(&h)?);
                }
                work = Frontier::from_nodes(size as u64, &hashes)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            }
            let first = work.size();
            let mut nodes: Vec<(NodeId, Hash)> = Vec::with_capacity(rows.len() * 2);
            for chunk in rows.chunks(256) {
                let mut qb = sqlx::QueryBuilder::new(
                    "INSERT INTO audit_log (seq, ts, org, subject, purpose, outcome, action, decisions, entry, leaf) ",
                );
                let base = work.size();
                let mut leaves = Vec::with_capacity(chunk.len());
                for r in chunk {
                    let leaf = merkle::leaf_hash(&r.entry);
                    nodes.extend(work.push(leaf).map_err(|e| StoreError::Corrupt(e.to_string()))?);
                    leaves.push(leaf);
                }
                qb.push_values(chunk.iter().zip(leaves).enumerate(), |mut b, (i, (r, leaf))| {
                    b.push_bind((base + i as u64) as i64)
                        .push_bind(r.ts.as_str())
                        .push_bind(r.org.as_deref())
                        .push_bind(r.subject.as_deref())
                        .push_bind(r.purpose.as_deref())
                        .push_bind(r.outcome.as_str())
                        .push_bind(r.action.as_str())
                        .push_bind(r.decisions)
                        .push_bind(r.entry.as_slice())
                        .push_bind(leaf.to_vec());
                });
                qb.build().execute(&mut *tx).await?;
            }
            for chunk in nodes.chunks(512) {
                let mut qb = sqlx::QueryBuilder::new("INSERT INTO merkle_nodes (level, idx, hash) ");
                qb.push_values(chunk, |mut b, (id, h)| {
                    b.push_bind(i32::from(id.level)).push_bind(id.index as i64).push_bind(h.to_vec());
                });
                qb.build().execute(&mut *tx).await?;
            }
            sqlx::query("UPDATE log_head SET size = $1, root = $2 WHERE id = 1")
                .bind(work.size() as i64)
                .bind(work.root().to_vec())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            first
        });
        *frontier = work;
        Ok(first)
    }

    /// The stored tree head (size, root).
    pub async fn log_head(&self) -> Result<(u64, Hash), StoreError> {
        let (size, root): (i64, Vec<u8>) = dispatch!(self, p => {
            sqlx::query_as("SELECT size, root FROM log_head WHERE id = 1").fetch_one(p).await?
        });
        Ok((size as u64, to_hash(&root)?))
    }

    /// Fetch perfect-subtree nodes by id (for proofs).
    pub async fn merkle_nodes(&self, ids: &[NodeId]) -> Result<Vec<(NodeId, Hash)>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        dispatch!(self, p => {
            let mut conn = p.acquire().await?;
            for id in ids {
                let h: Option<Vec<u8>> =
                    sqlx::query_scalar("SELECT hash FROM merkle_nodes WHERE level = $1 AND idx = $2")
                        .bind(i32::from(id.level))
                        .bind(id.index as i64)
                        .fetch_optional(&mut *conn)
                        .await?;
                if let Some(h) = h {
                    out.push((*id, to_hash(&h)?));
                }
            }
        });
        Ok(out)
    }

    /// Audit entries in `[from, to)` by sequence number.
    pub async fn audit_range(&self, from: u64, to: u64) -> Result<Vec<StoredAudit>, StoreError> {
        let rows: Vec<(i64, Vec<u8>)> = dispatch!(self, p => {
            sqlx::query_as("SELECT seq, entry FROM audit_log WHERE seq >= $1 AND seq < $2 ORDER BY seq")
                .bind(from as i64)
                .bind(to as i64)
                .fetch_all(p)
                .await?
        });
        Ok(rows
            .into_iter()
            .map(|(seq, entry)| StoredAudit {
                seq: seq as u64,
                entry,
            })
            .collect())
    }

    /// Store a signed checkpoint.
    pub async fn put_checkpoint(
        &self,
        size: u64,
        root: &Hash,
        note: &str,
        now: &str,
    ) -> Result<(), StoreError> {
        dispatch!(self, p => {
            sqlx::query(
                "INSERT INTO checkpoints (size, root, note, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (size) DO NOTHING",
            )
            .bind(size as i64)
            .bind(root.to_vec())
            .bind(note)
            .bind(now)
            .execute(p)
            .await?;
        });
        Ok(())
    }

    /// The latest checkpoint, or the one at exactly `size`.
    pub async fn checkpoint(&self, size: Option<u64>) -> Result<Option<(u64, String)>, StoreError> {
        let row: Option<(i64, String)> = dispatch!(self, p => {
            match size {
                Some(s) => sqlx::query_as("SELECT size, note FROM checkpoints WHERE size = $1")
                    .bind(s as i64)
                    .fetch_optional(p)
                    .await?,
                None => sqlx::query_as("SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1")
                    .fetch_optional(p)
                    .await?,
            }
        });
        Ok(row.map(|(s, n)| (s as u64, n)))
    }

    /// Raw SQL access for tests that must tamper with or inspect storage.
    #[doc(hidden)]
    pub async fn execute_raw(&self, sql: &str) -> Result<u64, StoreError> {
        let n = dispatch!(self, p => sqlx::query(sql).execute(p).await?.rows_affected());
        self.invalidate();
        Ok(n)
    }

    /// Run a scalar count query (tests, reports).
    #[doc(hidden)]
    pub async fn count_raw(&self, sql: &str) -> Result<i64, StoreError> {
        dispatch!(self, p => Ok(sqlx::query(sql).fetch_one(p).await?.try_get::<i64, _>(0)?))
    }
}

fn to_hash(v: &[u8]) -> Result<Hash, StoreError> {
    v.try_into()
        .map_err(|_| StoreError::Corrupt(format!("hash of {} bytes", v.len())))
}

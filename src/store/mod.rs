//! Persistence through sqlx: SQLite (embedded default) or PostgreSQL.
//!
//! Both backends run the same SQL text (`$n` placeholders work in both) and
//! the same code: `dispatch!` expands each method body once per backend, so
//! there is no trait object and no `Any` driver on the hot path. Where the
//! dialects differ (row locks) the match arms differ.
//!
//! The read path for credit data, [`Store::read_shared`], takes a
//! [`Permit`]: the store never hands back a field the policy did not release,
//! nor a record the lifecycle rules withhold. Lifecycle persistence
//! (objections, repairs, lists, checks) lives in `lifecycle.rs`, a second
//! `impl Store` block using the same `dispatch!`.

use serde_json::{Map, Value};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection as _, PgPool, Row, SqlitePool};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use crate::ids::SubjectId;
use crate::policy::{Permit, Policy};
use credlog::merkle::Hash;

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
    /// The audit log's storage failed (e.g. its directory refuses writes).
    #[error("audit log: {0}")]
    Log(String),
    /// The store was migrated by a newer credgate: this binary does not
    /// know its latest schema version and must not run on it.
    #[error(
        "the store's schema is at version {store}, but this credgate ({binary}) knows schema versions up to {known}: it was migrated by a newer credgate. Run that version (or newer), or restore a backup taken before the upgrade; a downgrade in place is not supported"
    )]
    SchemaTooNew {
        /// Highest version recorded in the store's `_sqlx_migrations`.
        store: i64,
        /// Highest version this binary's migrations reach.
        known: i64,
        /// This binary's package version.
        binary: &'static str,
    },
}

/// The SQLite schema this binary knows (`migrations/sqlite`).
pub static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
/// The PostgreSQL schema this binary knows (`migrations/postgres`).
pub static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Highest migration version of `m`.
pub fn latest_schema_version(m: &sqlx::migrate::Migrator) -> i64 {
    m.iter().map(|x| x.version).max().unwrap_or(0)
}

/// Refuse a store whose recorded migrations go beyond `known` (see
/// [`StoreError::SchemaTooNew`]); called before migrating, so nothing is
/// written to a newer store. `applied` lists the versions in
/// `_sqlx_migrations` (empty for a new store).
fn check_schema(applied: &[i64], known: &sqlx::migrate::Migrator) -> Result<(), StoreError> {
    let latest = latest_schema_version(known);
    match applied.iter().copied().filter(|v| *v > latest).max() {
        Some(store) => Err(StoreError::SchemaTooNew {
            store,
            known: latest,
            binary: env!("CARGO_PKG_VERSION"),
        }),
        None => Ok(()),
    }
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
    /// The audit log's tiles (files or rows, see `tlog.rs`).
    log: tlog::Log,
    /// Shared between clones: the indexer's progress and the sequencer's
    /// durable size.
    audit: Arc<AuditShared>,
    /// Per-subject cache of record rows; SQLite only (see [`SubjectCache`]).
    cache: Option<Arc<SubjectCache>>,
    /// Writers' turns; SQLite only (see [`write_gate`]).
    gate: Option<Arc<write_gate::WriteGate>>,
    /// The embedded log's snapshot threshold in bytes
    /// (`audit.wal_snapshot_mib`); `None`: credlog's default.
    wal_snapshot: Option<u64>,
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
    ObjectionRow, ObjectionStatus, ObjectionTarget, Refusal, RepairStatus, Resolution, SharedRead,
    SharedRecord, Step, SubjectRecord, WithheldRecord,
};
// After the macro, so the read-side queries can use it.
mod audit_queries;
pub use audit_queries::*;
mod tlog;
mod write_gate;
pub(crate) use tlog::Writer;
pub use tlog::default_log_dir;

/// Audit state shared by all clones of a [`Store`].
#[derive(Debug)]
pub(crate) struct AuditShared {
    /// Log size the search index is known to cover (this process's view;
    /// another node may have indexed further).
    pub(crate) indexed: std::sync::atomic::AtomicU64,
    /// Log size after this process's last durable batch.
    pub(crate) durable: tokio::sync::watch::Sender<u64>,
    /// Rows of this process's own durable entries, for the indexer
    /// ([`audit_queries::IndexRow`]).
    pub(crate) remembered:
        std::sync::Mutex<std::collections::BTreeMap<u64, audit_queries::IndexRow>>,
    /// This process runs the live indexer (a gateway; not a CLI tool).
    pub(crate) live_indexer: std::sync::atomic::AtomicBool,
    /// Entries this process indexed itself (not another process's work).
    pub(crate) indexed_here: std::sync::atomic::AtomicU64,
}

/// How long a request waits for a free pool connection by default
/// (`store.acquire_timeout_ms`); sqlx's own default is 30 s.
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// A store migrated by a newer credgate (`_sqlx_migrations` holds a
    /// version beyond this binary's migrations) is refused before anything
    /// is written: [`StoreError::SchemaTooNew`] names both versions.
    ///
    /// A connection that sqlx still counts as inside a transaction when it
    /// is released (its COMMIT *and* the ROLLBACK on drop failed, e.g. on a
    /// disk I/O error) is closed instead of pooled: sqlx would turn the next
    /// `begin`/`commit` on it into `SAVEPOINT`/`RELEASE` inside the dead
    /// transaction, so "committed" audit entries would never reach the disk
    /// and its write lock would block every other writer
    /// (`tests/drills.rs`, storage outage drill).
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store, StoreError> {
        Self::connect_with_log(url, max_connections, None).await
    }

    /// Connect as configured: `store.url`, `store.max_connections`,
    /// `store.acquire_timeout_ms`, `audit.log_dir`, `audit.wal_snapshot_mib`.
    pub async fn connect_config(cfg: &crate::config::Config) -> Result<Store, StoreError> {
        Self::connect_pool(
            &cfg.store.url,
            cfg.store.max_connections,
            Duration::from_millis(cfg.store.acquire_timeout_ms),
            cfg.audit.log_dir.as_deref(),
            cfg.audit.wal_snapshot_mib.map(|m| m * 1024 * 1024),
        )
        .await
    }

    /// [`Store::connect`] with the audit log directory of a SQLite store
    /// (`audit.log_dir`; default [`default_log_dir`] of the database file).
    /// PostgreSQL keeps the log in the database and takes no directory.
    ///
    /// Opening the directory recovers the log if this process can take its
    /// writer lock (a torn last batch is cut off); otherwise the store sees
    /// the log as it was when opened (read-only tools beside a running
    /// gateway).
    pub async fn connect_with_log(
        url: &str,
        max_connections: u32,
        log_dir: Option<&std::path::Path>,
    ) -> Result<Store, StoreError> {
        Self::connect_pool(url, max_connections, DEFAULT_ACQUIRE_TIMEOUT, log_dir, None).await
    }

    /// Test hook: while `held`, the embedded log begins snapshots but does
    /// not finish them (see `credlog::fs::FsLog::hold_snapshots`); nothing
    /// on PostgreSQL. Debug builds only.
    #[cfg(debug_assertions)]
    #[doc(hidden)]
    pub fn hold_log_snapshots(&self, held: bool) {
        if let tlog::Log::Files(f) = &self.log {
            f.hold_snapshots(held);
        }
    }

    /// Test hook: take one pool connection and hold it until the returned
    /// guard is dropped (to fill the pool). Debug builds only.
    #[cfg(debug_assertions)]
    #[doc(hidden)]
    pub async fn hold_connection(&self) -> Result<Box<dyn std::any::Any + Send>, StoreError> {
        Ok(match &self.backend {
            Backend::Sqlite(p) => Box::new(p.acquire().await?),
            Backend::Postgres(p) => Box::new(p.acquire().await?),
        })
    }

    /// [`Store::connect_with_log`] with how long a caller may wait for a
    /// free pool connection (`store.acquire_timeout_ms`).
    async fn connect_pool(
        url: &str,
        max_connections: u32,
        acquire_timeout: Duration,
        log_dir: Option<&std::path::Path>,
        wal_snapshot: Option<u64>,
    ) -> Result<Store, StoreError> {
        let mut log = tlog::Log::Postgres;
        let backend = if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true);
            let pool = SqlitePoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(acquire_timeout)
                .after_release(|conn, _| Box::pin(async move { Ok(!conn.is_in_transaction()) }))
                .connect_with(opts.clone())
                .await?;
            let has: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
            )
            .fetch_one(&pool)
            .await?;
            let applied: Vec<i64> = if has > 0 {
                sqlx::query_scalar("SELECT version FROM _sqlx_migrations")
                    .fetch_all(&pool)
                    .await?
            } else {
                Vec::new()
            };
            check_schema(&applied, &SQLITE_MIGRATIONS)?;
            SQLITE_MIGRATIONS.run(&pool).await?;
            let dir = match log_dir {
                Some(d) => d.to_owned(),
                None if opts.get_filename() == std::path::Path::new(":memory:") => {
                    return Err(StoreError::Log(
                        "an in-memory database needs audit.log_dir".into(),
                    ));
                }
                None => default_log_dir(opts.get_filename()),
            };
            let dir2 = dir.clone();
            let fs_log = tokio::task::spawn_blocking(move || credlog::fs::FsLog::open(&dir2))
                .await
                .map_err(|e| StoreError::Log(e.to_string()))?
                .map_err(|e| StoreError::Log(format!("{}: {e}", dir.display())))?;
            log = tlog::Log::Files(fs_log);
            Backend::Sqlite(pool)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let opts = PgConnectOptions::from_str(url)?;
            let pool = PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(acquire_timeout)
                .after_release(|conn, _| Box::pin(async move { Ok(!conn.is_in_transaction()) }))
                .connect_with(opts)
                .await?;
            let has: bool =
                sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
                    .fetch_one(&pool)
                    .await?;
            let applied: Vec<i64> = if has {
                sqlx::query_scalar("SELECT version FROM _sqlx_migrations")
                    .fetch_all(&pool)
                    .await?
            } else {
                Vec::new()
            };
            check_schema(&applied, &POSTGRES_MIGRATIONS)?;
            POSTGRES_MIGRATIONS.run(&pool).await?;
            if log_dir.is_some() {
                return Err(StoreError::Log(
                    "audit.log_dir is for SQLite; PostgreSQL keeps the log in the database".into(),
                ));
            }
            Backend::Postgres(pool)
        } else {
            return Err(StoreError::Url);
        };
        let cache = matches!(backend, Backend::Sqlite(_)).then(Arc::default);
        let gate = matches!(backend, Backend::Sqlite(_)).then(Arc::default);
        let store = Store {
            backend,
            log,
            audit: Arc::new(AuditShared {
                indexed: Default::default(),
                durable: tokio::sync::watch::channel(0).0,
                remembered: Default::default(),
                live_indexer: Default::default(),
                indexed_here: Default::default(),
            }),
            cache,
            gate,
            wal_snapshot,
        };
        // Checkpoints are signed heads of the log: one beyond the log means
        // the log's storage lost entries (or belongs to another database).
        let (size, _) = store.log_head().await?;
        if let Some((cp, _)) = store.checkpoint(None).await?
            && cp > size
        {
            return Err(StoreError::Corrupt(format!(
                "a checkpoint signs {cp} entries but the audit log holds {size}{}",
                store
                    .log_dir()
                    .map(|d| format!(" (log directory {})", d.display()))
                    .unwrap_or_default()
            )));
        }
        store.audit.durable.send_replace(size);
        Ok(store)
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
            log: tlog::Log::Postgres,
            audit: Arc::new(AuditShared {
                indexed: Default::default(),
                durable: tokio::sync::watch::channel(0).0,
                remembered: Default::default(),
                live_indexer: Default::default(),
                indexed_here: Default::default(),
            }),
            cache: None,
            gate: None,
            wal_snapshot: None,
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
        let _turn = self.write_turn().await;
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
        let _turn = self.write_turn().await;
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

    /// Store a signed checkpoint.
    pub async fn put_checkpoint(
        &self,
        size: u64,
        root: &Hash,
        note: &str,
        now: &str,
    ) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
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
        if let tlog::Log::Files(f) = &self.log {
            let (f, note) = (f.clone(), note.to_owned());
            tokio::task::spawn_blocking(move || f.put_checkpoint(&note))
                .await
                .map_err(|e| StoreError::Log(e.to_string()))??;
        }
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

    /// Highest schema version recorded in the store (`_sqlx_migrations`).
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        dispatch!(self, p => Ok(sqlx::query_scalar::<_, Option<i64>>(
            "SELECT MAX(version) FROM _sqlx_migrations",
        )
        .fetch_one(p)
        .await?
        .unwrap_or(0)))
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

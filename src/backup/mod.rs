//! Online backup of an embedded (SQLite) store, and its restore.
//!
//! A backup is one tar file:
//!
//! ```text
//! manifest.json          format, version, schema version, tree size and root,
//!                        the latest signed checkpoint, SHA-256 of every file
//! credgate.db            the database, from `VACUUM INTO`
//! credgate.db.tlog/      the audit log's files: state, wal (and wal.prev
//!                        while a snapshot is under way), checkpoint,
//!                        tile/… (no lock file)
//! ```
//!
//! # Consistency: the order of the two snapshots
//!
//! The records and the log commit separately (ARCHITECTURE.md, invariant
//! 15): a change writes its entry into the outbox inside its own
//! transaction, then appends it to the log, then clears the outbox row. The
//! backup takes the log directory's writer lock (`<log>/lock`, the `flock`
//! every batch is written under) and, *while holding it*, copies the log's
//! mutable files and runs `VACUUM INTO`. With the log frozen at size `L`:
//!
//! * every entry in the log at `L` was appended after its change committed,
//!   so the database snapshot holds that change;
//! * a change committed before the database snapshot whose entry is not in
//!   the log at `L` could not have had its outbox row cleared (clearing
//!   follows the append, which is blocked), so the snapshot holds its
//!   outbox row, and `server::recover_outbox` appends the entry when a
//!   gateway first starts on the restored store;
//! * every checkpoint in the database signs at most `L` entries.
//!
//! The two other orders each lose something: database first, then log,
//! gives entries for changes the database lacks; log first, then database,
//! gives changes whose outbox rows were already cleared and whose entries
//! the log lacks (and checkpoints beyond the log, which the store refuses).
//!
//! The price is that audit appends wait while `VACUUM INTO` runs (requests
//! are slower, not refused). Full tiles and bundles are written once and
//! never change, so they are copied before the lock is taken, and only the
//! ones completed meanwhile are copied under it.
//!
//! PostgreSQL stores are not backed up by this module: use `pg_dump` or
//! `pg_basebackup` with WAL archiving (docs/operator-guide.md, "Backup and
//! restore").

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sqlx::Connection as _;

use crate::store::{SQLITE_MIGRATIONS, latest_schema_version};

mod restore;
pub use restore::{RestoreOptions, RestoreReport, restore};

/// `format` of a backup manifest.
pub const BACKUP_FORMAT: &str = "credgate-backup";
/// Current manifest version.
pub const BACKUP_VERSION: u32 = 1;
/// Name of the database inside a backup (and of a restored data directory's).
pub const DB_NAME: &str = "credgate.db";
/// Name of the log directory inside a backup.
pub const LOG_NAME: &str = "credgate.db.tlog";
const MANIFEST: &str = "manifest.json";

/// What a backup holds; `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`BACKUP_FORMAT`].
    pub format: String,
    /// [`BACKUP_VERSION`] of the writer.
    pub version: u32,
    /// The credgate version that wrote it.
    pub credgate_version: String,
    /// When the snapshot was taken (RFC 3339, UTC).
    pub created_at: String,
    /// Highest schema (migration) version of the database.
    pub schema_version: i64,
    /// Audit log size at the snapshot.
    pub tree_size: u64,
    /// Root hash at `tree_size` (base64).
    pub root: String,
    /// Tree size of the latest signed checkpoint in the backup.
    pub checkpoint_size: Option<u64>,
    /// That checkpoint's signed note.
    pub checkpoint: Option<String>,
    /// Number of credit records in the database.
    pub records: i64,
    /// Every file in the backup but the manifest: relative path → SHA-256 (hex).
    pub files: std::collections::BTreeMap<String, String>,
}

/// Why a backup or restore failed. Shown to the operator as it is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The database refused.
    #[error("database: {0}")]
    Db(String),
    /// The store's log could not be opened or read.
    #[error("audit log: {0}")]
    Log(String),
    /// Not something this command can back up or restore.
    #[error("{0}")]
    Unsupported(String),
    /// The backup file is not a valid backup, or was altered.
    #[error("backup {0}")]
    Invalid(String),
    /// Restoring would roll the log back past a checkpoint an auditor may
    /// hold, or replace a log with a different one.
    #[error("refused: {0}")]
    Rollback(String),
    /// The restored log did not verify.
    #[error("the restored audit log does not verify: {0}")]
    Verify(String),
    /// The target store is in use.
    #[error("{0}")]
    Locked(#[from] crate::datadir::LockError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What [`create`] wrote.
#[derive(Debug, Clone)]
pub struct BackupReport {
    /// The manifest stored in the file.
    pub manifest: Manifest,
    /// The backup file.
    pub out: PathBuf,
}

impl std::fmt::Display for BackupReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = &self.manifest;
        writeln!(
            f,
            "backup {}: {} records, audit log of {} entries (root {}), checkpoint at tree size {}, schema version {}",
            self.out.display(),
            m.records,
            m.tree_size,
            m.root,
            m.checkpoint_size
                .map(|s| s.to_string())
                .unwrap_or_else(|| "none".into()),
            m.schema_version
        )
    }
}

/// `credgate backup`: snapshot the store `cfg` names into `out` (which
/// must not exist) while a gateway may be serving from it.
pub async fn create(cfg: &crate::config::Config, out: &Path) -> Result<BackupReport, BackupError> {
    let db = crate::datadir::sqlite_path(&cfg.store.url).ok_or_else(|| {
        BackupError::Unsupported(
            "credgate backup is for SQLite stores; back up PostgreSQL with pg_dump or pg_basebackup and WAL archiving (docs/operator-guide.md, \"Backup and restore\")"
                .into(),
        )
    })?;
    let log_dir = cfg
        .audit
        .log_dir
        .clone()
        .unwrap_or_else(|| crate::store::default_log_dir(&db));
    create_from(&db, &log_dir, out).await
}

/// [`create`] for a database file and its log directory.
pub async fn create_from(
    db: &Path,
    log_dir: &Path,
    out: &Path,
) -> Result<BackupReport, BackupError> {
    if !db.is_file() {
        return Err(BackupError::Unsupported(format!(
            "{}: no database there",
            db.display()
        )));
    }
    if !log_dir.join("lock").is_file() {
        return Err(BackupError::Unsupported(format!(
            "{}: no audit log directory there",
            log_dir.display()
        )));
    }
    if out.exists() {
        return Err(BackupError::Unsupported(format!(
            "{}: exists already; a backup never overwrites a file",
            out.display()
        )));
    }
    let staging = sibling(out, ".partial");
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir_all(staging.join(LOG_NAME)).map_err(io(&staging))?;
    let r = snapshot_into(db, log_dir, &staging).await;
    let r = match r {
        Ok(()) => finish(&staging, out).await,
        Err(e) => Err(e),
    };
    let _ = fs::remove_dir_all(&staging);
    r
}

/// `path` with `suffix` appended to its file name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

async fn snapshot_into(db: &Path, log_dir: &Path, staging: &Path) -> Result<(), BackupError> {
    let to_log = staging.join(LOG_NAME);
    // Full tiles and bundles never change once written: copy what exists
    // now without holding up the gateway.
    copy_tiles(log_dir, &to_log)?;
    let lock_path = log_dir.join("lock");
    // Read-only is enough for an flock, and the backup writes nothing there.
    let lock = File::options()
        .read(true)
        .open(&lock_path)
        .map_err(io(&lock_path))?;
    let lock = tokio::task::spawn_blocking(move || lock.lock().map(|()| lock))
        .await
        .map_err(|e| BackupError::Log(e.to_string()))?
        .map_err(io(&lock_path))?;
    // The log is frozen from here until `lock` is dropped (see the module docs).
    let r = async {
        copy_tiles(log_dir, &to_log)?;
        // `wal.prev` exists while a snapshot is under way: `state` is
        // then older than `wal`, and the two together are the log.
        for name in ["state", "wal", "wal.prev", "checkpoint"] {
            let from = log_dir.join(name);
            match fs::copy(&from, to_log.join(name)) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&from)(e)),
            }
        }
        vacuum_into(db, &staging.join(DB_NAME)).await
    }
    .await;
    drop(lock);
    r
}

/// Copy every full tile and bundle under `from/tile` not yet in `to`.
fn copy_tiles(from: &Path, to: &Path) -> Result<(), BackupError> {
    let mut stack = vec![PathBuf::from("tile")];
    while let Some(rel) = stack.pop() {
        let dir = from.join(&rel);
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io(&dir)(e)),
        };
        fs::create_dir_all(to.join(&rel)).map_err(io(to))?;
        for e in rd {
            let e = e.map_err(io(&dir))?;
            let name = e.file_name();
            let child = rel.join(&name);
            let ty = e.file_type().map_err(io(&dir))?;
            if ty.is_dir() {
                stack.push(child);
            } else if ty.is_file()
                // credlog's temporary files: a tile being renamed into place.
                && !name.to_string_lossy().contains(".tmp.")
                && !to.join(&child).exists()
            {
                fs::copy(from.join(&child), to.join(&child)).map_err(io(&from.join(&child)))?;
            }
        }
    }
    Ok(())
}

async fn vacuum_into(db: &Path, out: &Path) -> Result<(), BackupError> {
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db)
        .create_if_missing(false)
        .busy_timeout(std::time::Duration::from_secs(30));
    let mut conn = sqlx::SqliteConnection::connect_with(&opts)
        .await
        .map_err(|e| BackupError::Db(format!("{}: {e}", db.display())))?;
    let r = sqlx::query("VACUUM INTO $1")
        .bind(out.to_string_lossy().into_owned())
        .execute(&mut conn)
        .await
        .map_err(|e| BackupError::Db(format!("VACUUM INTO {}: {e}", out.display())));
    let _ = conn.close().await;
    r.map(|_| ())
}

/// Read the staged copy back, write the manifest, pack the tar file.
async fn finish(staging: &Path, out: &Path) -> Result<BackupReport, BackupError> {
    // Opening the staged log replays its WAL (and writes any full tile the
    // live log had not written yet): its head is the snapshot's.
    let log_dir = staging.join(LOG_NAME);
    let ld = log_dir.clone();
    let (size, root, note) = tokio::task::spawn_blocking(move || {
        let log = credlog::fs::FsLog::open(&ld)?;
        let (size, root) = log.head()?;
        Ok::<_, credlog::sequencer::StorageError>((size, root, log.checkpoint()?))
    })
    .await
    .map_err(|e| BackupError::Log(e.to_string()))?
    .map_err(|e| BackupError::Log(e.to_string()))?;
    let _ = fs::remove_file(log_dir.join("lock"));
    let (schema_version, records, db_checkpoint) = db_facts(&staging.join(DB_NAME)).await?;
    // The checkpointer stores a checkpoint in the database, then in the
    // log's file, without the log lock: the database snapshot may hold a
    // newer one than the copied file. The store's latest (the database's)
    // is the backup's; the staged file is brought up to it.
    let file_size = note.as_deref().and_then(note_size);
    let (checkpoint_size, note) = match db_checkpoint {
        Some((s, n)) if Some(s) >= file_size => {
            if Some(s) > file_size {
                fs::write(log_dir.join("checkpoint"), &n).map_err(io(&log_dir))?;
            }
            (Some(s), Some(n))
        }
        Some(_) | None if file_size.is_some() => {
            return Err(BackupError::Log(format!(
                "the log's checkpoint file is at tree size {file_size:?}, beyond the database's latest checkpoint"
            )));
        }
        _ => (None, None),
    };
    if checkpoint_size.is_some_and(|s| s > size) {
        return Err(BackupError::Log(format!(
            "the checkpoint signs {checkpoint_size:?} entries but the log snapshot holds {size}"
        )));
    }
    let manifest = Manifest {
        format: BACKUP_FORMAT.into(),
        version: BACKUP_VERSION,
        credgate_version: env!("CARGO_PKG_VERSION").into(),
        created_at: crate::audit::now_rfc3339(),
        schema_version,
        tree_size: size,
        root: credlog::export::encode_hash(&root),
        checkpoint_size,
        checkpoint: note,
        records,
        files: file_sums(staging)?,
    };
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| BackupError::Log(e.to_string()))?;
    fs::write(staging.join(MANIFEST), json).map_err(io(staging))?;
    let tmp = sibling(out, ".tmp");
    let r = (|| {
        let f = File::create(&tmp).map_err(io(&tmp))?;
        let mut tar = tar::Builder::new(f);
        tar.mode(tar::HeaderMode::Deterministic);
        tar.follow_symlinks(false);
        tar.append_path_with_name(staging.join(MANIFEST), MANIFEST)
            .map_err(io(&tmp))?;
        for rel in manifest.files.keys() {
            tar.append_path_with_name(staging.join(rel), rel)
                .map_err(io(&tmp))?;
        }
        let f = tar.into_inner().map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        fs::rename(&tmp, out).map_err(io(out))
    })();
    if r.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    r?;
    Ok(BackupReport {
        manifest,
        out: out.to_owned(),
    })
}

/// Tree size of a checkpoint note (its second line), without verifying it.
pub fn note_size(note: &str) -> Option<u64> {
    note.lines().nth(1)?.parse().ok()
}

/// Schema version, record count and latest checkpoint of a database file.
async fn db_facts(db: &Path) -> Result<(i64, i64, Option<(u64, String)>), BackupError> {
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db)
        .create_if_missing(false)
        .read_only(true);
    let err = |e: sqlx::Error| BackupError::Db(format!("{}: {e}", db.display()));
    let mut conn = sqlx::SqliteConnection::connect_with(&opts)
        .await
        .map_err(err)?;
    let schema: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
        .fetch_one(&mut conn)
        .await
        .map_err(err)?;
    let records: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM records")
        .fetch_one(&mut conn)
        .await
        .map_err(err)?;
    let cp: Option<(i64, String)> =
        sqlx::query_as("SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1")
            .fetch_optional(&mut conn)
            .await
            .map_err(err)?;
    let _ = conn.close().await;
    Ok((schema.unwrap_or(0), records, cp.map(|(s, n)| (s as u64, n))))
}

/// SHA-256 of every file under `root` except the manifest, by relative
/// path with `/` separators.
fn file_sums(root: &Path) -> Result<std::collections::BTreeMap<String, String>, BackupError> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        for e in fs::read_dir(&dir).map_err(io(&dir))? {
            let e = e.map_err(io(&dir))?;
            let child = rel.join(e.file_name());
            if e.file_type().map_err(io(&dir))?.is_dir() {
                stack.push(child);
            } else if child != Path::new(MANIFEST) {
                let key = child
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                out.insert(key, sha256_file(&root.join(&child))?);
            }
        }
    }
    Ok(out)
}

fn sha256_file(path: &Path) -> Result<String, BackupError> {
    let mut f = File::open(path).map_err(io(path))?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    Ok(hex::encode(ctx.finish()))
}

/// The schema version this binary migrates SQLite stores to.
pub fn known_schema_version() -> i64 {
    latest_schema_version(&SQLITE_MIGRATIONS)
}

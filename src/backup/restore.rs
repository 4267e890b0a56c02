//! `credgate restore`: a backup into a data directory, verified before it
//! is used.
//!
//! In order: the target is locked (a serving gateway's store is refused);
//! the tar file is unpacked beside it and every file checked against the
//! manifest's SHA-256; the schema version must be one this binary knows;
//! every checkpoint an auditor may hold (`--not-before`, and the target's
//! own checkpoint when it is replaced) must verify and must not be beyond
//! the backup's log — restoring would roll the log back past it, which is
//! refused; the files are moved into place; the store is opened (which
//! migrates an older schema and replays the log), its head must be the
//! manifest's, and an export of the restored log must verify against the
//! verifier keys, against the manifest's checkpoint and as an extension of
//! every held checkpoint.

use std::fs;
use std::path::{Path, PathBuf};

use credlog::checkpoint::CheckpointVerifier;

use super::{BACKUP_FORMAT, BACKUP_VERSION, BackupError, DB_NAME, LOG_NAME, MANIFEST, Manifest};
use super::{file_sums, io, known_schema_version, note_size};

use crate::store::Store;

/// What to restore where.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// The backup file.
    pub from: PathBuf,
    /// The data directory to restore into (created if missing).
    pub to: PathBuf,
    /// Checkpoint verifier keys (or files of them): the current key, and
    /// the older ones if the checkpoint key was rotated.
    pub keys: Vec<String>,
    /// Signed checkpoints auditors may hold: the restored log must extend
    /// each of them.
    pub not_before: Vec<PathBuf>,
    /// Replace a store already in `to` (moved aside to
    /// `to/pre-restore-<unix time>/`, never deleted).
    pub replace: bool,
}

/// What a restore established.
#[derive(Debug, Clone)]
pub struct RestoreReport {
    /// The backup's manifest.
    pub manifest: Manifest,
    /// The restored database.
    pub database: PathBuf,
    /// Tree sizes of the held checkpoints the restored log was shown to extend.
    pub consistent_with: Vec<u64>,
    /// Where a replaced store was moved.
    pub moved_aside: Option<PathBuf>,
}

impl std::fmt::Display for RestoreReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = &self.manifest;
        if let Some(p) = &self.moved_aside {
            writeln!(f, "moved the store that was there to {}", p.display())?;
        }
        writeln!(
            f,
            "restored {} ({} records, schema version {}) from the backup of {}",
            self.database.display(),
            m.records,
            m.schema_version,
            m.created_at
        )?;
        writeln!(
            f,
            "ok: audit log of {} entries, root {}, verified against the checkpoint at tree size {}",
            m.tree_size,
            m.root,
            m.checkpoint_size
                .map(|s| s.to_string())
                .unwrap_or_else(|| "none (no checkpoint was ever signed)".into())
        )?;
        for s in &self.consistent_with {
            writeln!(
                f,
                "ok: extends the held checkpoint at tree size {s} (no roll-back)"
            )?;
        }
        writeln!(
            f,
            "point store.url at sqlite://{} and start the gateway with the same server.node_id: it appends the entries of changes the backup caught between commit and log (outbox)",
            self.database.display()
        )
    }
}

/// Restore `opts.from` into `opts.to` (see the module docs).
pub async fn restore(opts: &RestoreOptions) -> Result<RestoreReport, BackupError> {
    let verifiers =
        credlog::verify::parse_verifier_keys(&opts.keys).map_err(BackupError::Unsupported)?;
    let to = &opts.to;
    fs::create_dir_all(to).map_err(io(to))?;
    let to = fs::canonicalize(to).map_err(io(to))?;
    let db = to.join(DB_NAME);
    let log = to.join(LOG_NAME);
    // Held until the restore is done: no gateway starts on a half-restored store.
    let _lock = crate::datadir::DataDirLock::acquire(&db)?;
    let mut held: Vec<(String, String)> = Vec::new();
    for p in &opts.not_before {
        let note = fs::read_to_string(p).map_err(io(p))?;
        held.push((p.display().to_string(), note));
    }
    let existing = db.exists() || log.exists();
    if existing {
        if !opts.replace {
            return Err(BackupError::Unsupported(format!(
                "{} holds a store already; restore into a new directory, or pass --replace to move it aside (its checkpoint then bounds the restore)",
                to.display()
            )));
        }
        // The store being replaced published checkpoints: never go behind them.
        if let Ok(note) = fs::read_to_string(log.join("checkpoint")) {
            held.push((format!("{} (the replaced store's)", log.display()), note));
        }
    }
    let staging = to.join(format!(".restore-{}", std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    let r = async {
        let manifest = unpack(&opts.from, &staging)?;
        let mut held_sizes = Vec::new();
        for (what, note) in &held {
            let (cp, _) = CheckpointVerifier::verify_any(&verifiers, note).map_err(|e| {
                BackupError::Verify(format!(
                    "the held checkpoint {what} does not verify with the given key(s): {e}"
                ))
            })?;
            if cp.size > manifest.tree_size {
                return Err(BackupError::Rollback(format!(
                    "the backup's audit log holds {} entries, but the checkpoint {what} signs {}: restoring it would roll the log back past a checkpoint an auditor may hold, and auditors would see entries disappear. Restore a newer backup",
                    manifest.tree_size, cp.size
                )));
            }
            held_sizes.push(cp.size);
        }
        // Verified where it was unpacked: a backup that fails leaves the
        // target as it was.
        let consistent_with = verify_restored(
            &staging.join(DB_NAME),
            &staging.join(LOG_NAME),
            &manifest,
            &verifiers,
            &held,
        )
        .await?;
        debug_assert_eq!(consistent_with.len(), held_sizes.len());
        let moved_aside = if existing {
            Some(move_aside(&to)?)
        } else {
            None
        };
        for name in [
            DB_NAME.to_owned(),
            format!("{DB_NAME}-wal"),
            format!("{DB_NAME}-shm"),
            LOG_NAME.to_owned(),
        ] {
            match fs::rename(staging.join(&name), to.join(&name)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && name != DB_NAME => {}
                Err(e) => return Err(io(&to.join(&name))(e)),
            }
        }
        Ok(RestoreReport {
            manifest,
            database: db.clone(),
            consistent_with,
            moved_aside,
        })
    }
    .await;
    let _ = fs::remove_dir_all(&staging);
    r
}

/// Unpack and check the backup file into `staging`; its manifest.
fn unpack(from: &Path, staging: &Path) -> Result<Manifest, BackupError> {
    let f = fs::File::open(from).map_err(io(from))?;
    let mut ar = tar::Archive::new(f);
    ar.set_preserve_permissions(false);
    ar.set_overwrite(false);
    let bad = |e: std::io::Error| {
        BackupError::Invalid(format!("{}: not a readable tar file: {e}", from.display()))
    };
    fs::create_dir_all(staging).map_err(io(staging))?;
    for entry in ar.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_dir()) {
            return Err(BackupError::Invalid(format!(
                "{}: {} is neither a file nor a directory (links are never part of a backup)",
                from.display(),
                entry
                    .path()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            )));
        }
        // `unpack_in` refuses paths that would land outside `staging`.
        if !entry.unpack_in(staging).map_err(bad)? {
            return Err(BackupError::Invalid(format!(
                "{}: a member's path leaves the backup",
                from.display()
            )));
        }
    }
    let text = fs::read_to_string(staging.join(MANIFEST))
        .map_err(|e| BackupError::Invalid(format!("{}: no manifest.json: {e}", from.display())))?;
    // Format and version first, so a newer manifest (with fields this
    // version does not know) is named as newer, not as malformed.
    // Strict JSON: a duplicated key could make a reader see another value.
    crate::http::strict_json::check(text.as_bytes())
        .map_err(|e| BackupError::Invalid(format!("{}: manifest.json: {e}", from.display())))?;
    let head: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| BackupError::Invalid(format!("{}: manifest.json: {e}", from.display())))?;
    let (format, version) = (head["format"].as_str(), head["version"].as_u64());
    if format != Some(BACKUP_FORMAT) || version.is_none_or(|v| v > u64::from(BACKUP_VERSION)) {
        return Err(BackupError::Invalid(format!(
            "{}: format {} version {}; this credgate reads {BACKUP_FORMAT} up to version {BACKUP_VERSION}",
            from.display(),
            format.unwrap_or("?"),
            version.map(|v| v.to_string()).unwrap_or_else(|| "?".into())
        )));
    }
    let m: Manifest = serde_json::from_value(head)
        .map_err(|e| BackupError::Invalid(format!("{}: manifest.json: {e}", from.display())))?;
    let known = known_schema_version();
    if m.schema_version > known {
        return Err(BackupError::Unsupported(format!(
            "the backup's schema is at version {}, but this credgate ({}) knows schema versions up to {known}: restore it with the credgate that wrote it ({}) or newer",
            m.schema_version,
            env!("CARGO_PKG_VERSION"),
            m.credgate_version
        )));
    }
    let found = file_sums(staging)?;
    if found != m.files {
        let bad: Vec<&String> = m
            .files
            .iter()
            .filter(|(k, v)| found.get(*k) != Some(*v))
            .map(|(k, _)| k)
            .chain(found.keys().filter(|k| !m.files.contains_key(*k)))
            .collect();
        return Err(BackupError::Invalid(format!(
            "{}: files altered, missing or added since the backup was taken: {}",
            from.display(),
            bad.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    if m.checkpoint.as_deref().and_then(note_size) != m.checkpoint_size {
        return Err(BackupError::Invalid(format!(
            "{}: the manifest's checkpoint_size does not match its checkpoint",
            from.display()
        )));
    }
    Ok(m)
}

/// Move the store in `to` into `to/pre-restore-<unix>/`.
fn move_aside(to: &Path) -> Result<PathBuf, BackupError> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let aside = to.join(format!("pre-restore-{secs}"));
    fs::create_dir(&aside).map_err(io(&aside))?;
    for name in [
        DB_NAME.to_owned(),
        format!("{DB_NAME}-wal"),
        format!("{DB_NAME}-shm"),
        LOG_NAME.to_owned(),
    ] {
        match fs::rename(to.join(&name), aside.join(&name)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&to.join(&name))(e)),
        }
    }
    Ok(aside)
}

/// Open the restored store and prove its log is the backup's log.
async fn verify_restored(
    db: &Path,
    log: &Path,
    m: &Manifest,
    verifiers: &[CheckpointVerifier],
    held: &[(String, String)],
) -> Result<Vec<u64>, BackupError> {
    let url = format!("sqlite://{}", db.display());
    let store = Store::connect_with_log(&url, 2, Some(log))
        .await
        .map_err(|e| BackupError::Verify(e.to_string()))?;
    let r = verify_store(&store, db, m, verifiers, held).await;
    store.close().await;
    r
}

async fn verify_store(
    store: &Store,
    db: &Path,
    m: &Manifest,
    verifiers: &[CheckpointVerifier],
    held: &[(String, String)],
) -> Result<Vec<u64>, BackupError> {
    let (size, root) = store
        .log_head()
        .await
        .map_err(|e| BackupError::Verify(e.to_string()))?;
    let root = credlog::export::encode_hash(&root);
    if (size, root.as_str()) != (m.tree_size, m.root.as_str()) {
        return Err(BackupError::Verify(format!(
            "the restored log's head is {size} entries, root {root}; the manifest says {}, root {}",
            m.tree_size, m.root
        )));
    }
    let cp = store
        .checkpoint(None)
        .await
        .map_err(|e| BackupError::Verify(e.to_string()))?;
    if cp.as_ref().map(|(_, n)| n.as_str()) != m.checkpoint.as_deref() {
        return Err(BackupError::Verify(
            "the restored database's latest checkpoint is not the manifest's".into(),
        ));
    }
    if cp.is_none() {
        return if held.iter().all(|(_, n)| note_size(n) == Some(0)) {
            Ok(held.iter().map(|_| 0).collect())
        } else {
            Err(BackupError::Verify(
                "the backup has no signed checkpoint, so it cannot be shown to extend the held ones"
                    .into(),
            ))
        };
    }
    let export = sibling_file(db, ".restore-verify.jsonl");
    let r = async {
        crate::audit::export::export_to_file(
            store,
            &export,
            crate::audit::export::ExportFormat::Jsonl,
        )
        .await
        .map_err(BackupError::Verify)?;
        let mut sizes = Vec::new();
        let mut checks: Vec<Option<&str>> = vec![None];
        checks.extend(held.iter().map(|(_, n)| Some(n.as_str())));
        for previous in checks {
            let f = fs::File::open(&export).map_err(io(&export))?;
            let rep = credlog::verify::verify_export_keys(
                std::io::BufReader::new(f),
                verifiers,
                previous,
            )
            .map_err(|e| {
                if previous.is_some() && e.message.contains("NOT consistent") {
                    BackupError::Rollback(format!(
                        "the backup's log is not an extension of a held checkpoint: {e}"
                    ))
                } else {
                    BackupError::Verify(e.to_string())
                }
            })?;
            if let Some(s) = rep.consistent_with {
                sizes.push(s);
            }
        }
        Ok(sizes)
    }
    .await;
    let _ = fs::remove_file(&export);
    r
}

fn sibling_file(path: &Path, suffix: &str) -> PathBuf {
    super::sibling(path, suffix)
}

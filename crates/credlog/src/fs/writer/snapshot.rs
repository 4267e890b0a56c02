//! Snapshots of the file backend, from the writer's side: beginning a new
//! WAL generation without copying (`wal.next.<pid>` → `wal`, the old file
//! kept as `wal.prev`), the next generation's zeros prepared in the
//! background, the background fsync of the full tiles and bundles, and
//! finishing (`state` replaced, `wal.prev` removed). The protocol and its
//! crash cases are in the module docs of [`crate::fs`], "Snapshots".

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::sequencer::StorageError;
use crate::tiles::{self, TILE_WIDTH, TileId, bundle_path, tile_path};

use super::super::files::{encode_state, remove_if_exists, write_atomic};
use super::super::wal::write_zeros;
use super::super::{SnapshotDue, WAL_HEADER, WAL_MAGIC, WAL_PREV};
use super::FsWriter;

/// How long a snapshot whose files failed to fsync waits before it is tried
/// again.
const SNAPSHOT_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

const SNAP_RUNNING: u8 = 0;
const SNAP_READY: u8 = 1;
const SNAP_FAILED: u8 = 2;

/// The next WAL generation's file, being filled with zeros in the
/// background (see the module docs of [`super`], "Snapshots").
#[derive(Debug)]
pub(super) struct NextWal {
    /// Its length once filled.
    len: u64,
    status: Arc<std::sync::atomic::AtomicU8>,
}

/// Zeros per write and `fdatasync` while preparing the next WAL: its
/// writeback is spread out instead of queued ahead of commits at once.
const PREPARE_CHUNK: u64 = 1024 * 1024;

/// The background fsync of a due snapshot's full tiles and bundles.
#[derive(Debug)]
pub(super) struct Snapshot {
    /// The generation whose snapshot it is (the log size it ends at).
    size: u64,
    status: Arc<std::sync::atomic::AtomicU8>,
}

/// Paths of the full tiles and bundles completed while the log grew from
/// `from` to `to` entries, and their directories.
fn full_files_between(dir: &Path, from: u64, to: u64) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = std::collections::BTreeSet::new();
    let mut push = |rel: String| {
        let p = dir.join(rel);
        if let Some(d) = p.parent() {
            dirs.insert(d.to_owned());
        }
        out.push(p);
    };
    for i in from / TILE_WIDTH..to / TILE_WIDTH {
        push(bundle_path(i, TILE_WIDTH));
    }
    for level in 0..=tiles::MAX_TILE_LEVEL {
        let shift = u32::from(level) * 8;
        let (a, b) = (from >> shift, to >> shift);
        if b < TILE_WIDTH {
            break;
        }
        for i in a / TILE_WIDTH..b / TILE_WIDTH {
            push(tile_path(TileId { level, index: i }, TILE_WIDTH));
        }
    }
    out.extend(dirs);
    out
}

/// fsync every path (files, then directories); a missing one fails.
fn sync_files(paths: &[PathBuf]) -> std::io::Result<()> {
    for p in paths {
        File::open(p)?.sync_all()?;
    }
    Ok(())
}

impl FsWriter {
    /// Begin a snapshot at the current size (under the lock, after a
    /// durable batch): a new WAL generation starts here, and the old file
    /// stays as `wal.prev` until the snapshot is finished. Nothing is
    /// copied: a small header is written and fsynced, `wal` is linked to
    /// `wal.prev`, the new file renamed over `wal`, and the directory
    /// fsynced, so the log has a `wal` at every instant and a crash at any
    /// step leaves either generation complete.
    fn begin_snapshot(&mut self) -> Result<(), StorageError> {
        self.flush_pending()?;
        let (state, from) = {
            let s = self.log.shared.read().unwrap_or_else(|e| e.into_inner());
            if s.snapshot_due.is_some() {
                return Ok(());
            }
            // With no snapshot due, `state` holds the generation's base.
            (s.state.clone(), s.base)
        };
        let dir = self.log.dir.clone();
        let size = state.size();
        let next = dir.join(super::super::wal_next_name());
        let mut header = WAL_MAGIC.to_vec();
        header.extend_from_slice(&size.to_le_bytes());
        let prepared = match self
            .next_wal
            .as_ref()
            .map(|n| n.status.load(Ordering::Acquire))
        {
            // Not filled yet: the WAL runs on past the limit meanwhile.
            Some(SNAP_RUNNING) => return Ok(()),
            Some(SNAP_READY) => self.next_wal.take().map(|n| n.len),
            _ => {
                self.next_wal = None;
                None
            }
        };
        // Used now (or failed): a repair may remove a leftover from here on.
        self.log.preparing.store(false, Ordering::Release);
        // The prepared file (overwriting its first zeros), or else an empty
        // one (another process's repair may have removed it).
        let opened = match prepared {
            Some(len) => OpenOptions::new()
                .read(true)
                .write(true)
                .open(&next)
                .ok()
                .map(|f| (f, len)),
            None => None,
        };
        let (f, alloc) = match opened {
            Some((f, len)) => {
                use std::os::unix::fs::FileExt;
                f.write_all_at(&header, 0)?;
                f.sync_data()?;
                (f, len)
            }
            None => {
                let mut f = OpenOptions::new()
                    .create(true)
                    .truncate(true)
                    .read(true)
                    .write(true)
                    .open(&next)?;
                f.write_all(&header)?;
                f.sync_all()?;
                (f, WAL_HEADER)
            }
        };
        // A `wal.prev` here is stale: no snapshot is due.
        remove_if_exists(&dir.join(WAL_PREV))?;
        fs::hard_link(dir.join("wal"), dir.join(WAL_PREV))?;
        fs::rename(&next, dir.join("wal"))?;
        // From here on `wal` is the new file, whatever else fails.
        {
            let mut s = self.log.shared.write().unwrap_or_else(|e| e.into_inner());
            s.base = size;
            s.wal_seen = WAL_HEADER;
            s.snapshot_due = Some(SnapshotDue { from, state });
        }
        self.wal = Some(f);
        self.wal_alloc = alloc;
        self.broken = false;
        self.keep_tail = false;
        self.dir_unsynced = true;
        self.sync_dir()
    }

    /// The due snapshot's range `[from, size)`, if one is due.
    fn due_range(&self) -> Option<(u64, u64)> {
        let s = self.log.shared.read().unwrap_or_else(|e| e.into_inner());
        s.snapshot_due.as_ref().map(|d| (d.from, d.state.size()))
    }

    /// fsync the directory if a new generation's name is not yet durable.
    pub(super) fn sync_dir(&mut self) -> Result<(), StorageError> {
        if self.dir_unsynced {
            File::open(&self.log.dir)?.sync_all()?;
            self.dir_unsynced = false;
        }
        Ok(())
    }

    /// Start filling `wal.next` with zeros in the background.
    fn prepare_next_wal(&mut self) -> Result<(), StorageError> {
        let len = self.wal_limit + self.wal_prealloc + 4;
        let path = self.log.dir.join(super::super::wal_next_name());
        let status = Arc::new(std::sync::atomic::AtomicU8::new(SNAP_RUNNING));
        let (st, preparing) = (status.clone(), self.log.preparing.clone());
        preparing.store(true, Ordering::Release);
        let spawned = std::thread::Builder::new()
            .name("credlog-wal-prep".into())
            .spawn(move || {
                let r = (|| -> Result<(), StorageError> {
                    let f = OpenOptions::new()
                        .create(true)
                        .truncate(true)
                        .write(true)
                        .open(&path)?;
                    let mut at = 0;
                    while at < len {
                        let to = (at + PREPARE_CHUNK).min(len);
                        write_zeros(&f, at, to)?;
                        f.sync_data()?;
                        at = to;
                    }
                    f.sync_all()?;
                    Ok(())
                })();
                st.store(
                    if r.is_ok() { SNAP_READY } else { SNAP_FAILED },
                    Ordering::Release,
                );
                if r.is_err() {
                    preparing.store(false, Ordering::Release);
                }
            });
        if let Err(e) = spawned {
            self.log.preparing.store(false, Ordering::Release);
            return Err(e.into());
        }
        self.next_wal = Some(NextWal { len, status });
        Ok(())
    }

    /// Start the background fsync of the due snapshot's full tiles and
    /// bundles (hundreds of files: off the commit path).
    fn spawn_snapshot_sync(&mut self, from: u64, size: u64) -> Result<(), StorageError> {
        self.flush_pending()?;
        let files = full_files_between(&self.log.dir, from, size);
        let status = Arc::new(std::sync::atomic::AtomicU8::new(SNAP_RUNNING));
        let st = status.clone();
        std::thread::Builder::new()
            .name("credlog-snapshot".into())
            .spawn(move || {
                let ok = sync_files(&files).is_ok();
                st.store(if ok { SNAP_READY } else { SNAP_FAILED }, Ordering::Release);
            })?;
        self.snap = Some(Snapshot { size, status });
        Ok(())
    }

    /// Finish the due snapshot whose files are durable: replace `state`
    /// (temp, fsync, rename, fsync of the directory) and remove `wal.prev`.
    /// Under the lock.
    fn finish_snapshot(&mut self) -> Result<(), StorageError> {
        let Some(snap) = self.snap.take() else {
            return Ok(());
        };
        let due = {
            let s = self.log.shared.read().unwrap_or_else(|e| e.into_inner());
            match &s.snapshot_due {
                // Still this generation's (another process may have moved on).
                Some(d) if d.state.size() == snap.size && s.base == snap.size => d.state.clone(),
                _ => return Ok(()),
            }
        };
        write_atomic(&self.log.dir, "state", &encode_state(&due)?, true)?;
        remove_if_exists(&self.log.dir.join(WAL_PREV))?;
        self.log
            .shared
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .snapshot_due = None;
        Ok(())
    }

    /// After a durable batch: move a snapshot along (begin one past
    /// [`WAL_LIMIT`], fsync its files in the background, finish it).
    /// Failures are left for a later batch: the WALs still hold everything.
    pub(super) fn advance_snapshot(&mut self, seen: u64) {
        match self.snap.as_ref().map(|s| s.status.load(Ordering::Acquire)) {
            Some(SNAP_READY) => {
                if !self.log.hold_snapshots.load(Ordering::Acquire) {
                    let _ = self.finish_snapshot();
                }
            }
            Some(SNAP_FAILED) => {
                self.snap = None;
                self.snap_retry = Some(std::time::Instant::now() + SNAPSHOT_RETRY);
            }
            Some(_) => {}
            None => {
                if self
                    .snap_retry
                    .is_some_and(|t| std::time::Instant::now() < t)
                {
                    return;
                }
                let due = self.due_range();
                if due.is_none() && self.next_wal.is_none() && seen > self.wal_limit / 2 {
                    let _ = self.prepare_next_wal();
                }
                let due = match due {
                    Some(d) => Some(d),
                    None if seen > self.wal_limit => {
                        if self.begin_snapshot().is_err() {
                            self.snap_retry = Some(std::time::Instant::now() + SNAPSHOT_RETRY);
                        }
                        self.due_range()
                    }
                    None => None,
                };
                if let Some((from, size)) = due
                    && self.spawn_snapshot_sync(from, size).is_err()
                {
                    self.snap_retry = Some(std::time::Instant::now() + SNAPSHOT_RETRY);
                }
            }
        }
    }

    /// Snapshot now and wait for it (tests, tools).
    pub fn snapshot(&mut self) -> Result<(), StorageError> {
        self.log.lock.lock()?;
        self.locked = true;
        let r = (|| {
            let refresh = self.log.refresh.clone();
            self.log.sync_view(true)?;
            let _view = refresh.lock().unwrap_or_else(|e| e.into_inner());
            self.sync_dir()?;
            self.wait_for_next_wal();
            self.begin_snapshot()?;
            let Some((from, size)) = self.due_range() else {
                return Ok(());
            };
            self.spawn_snapshot_sync(from, size)?;
            while self
                .snap
                .as_ref()
                .is_some_and(|s| s.status.load(Ordering::Acquire) == SNAP_RUNNING)
            {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            match self.snap.as_ref().map(|s| s.status.load(Ordering::Acquire)) {
                Some(SNAP_READY) => self.finish_snapshot(),
                _ => Err(StorageError::Backend("snapshot fsync failed".into())),
            }
        })();
        self.unlock();
        r
    }

    /// Wait until a `wal.next` being prepared is filled (or failed).
    fn wait_for_next_wal(&self) {
        while self
            .next_wal
            .as_ref()
            .is_some_and(|n| n.status.load(Ordering::Acquire) == SNAP_RUNNING)
        {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// Whether a prepared `wal.next` is filled and waits for the next
    /// snapshot (tests).
    #[cfg(test)]
    pub(in crate::fs) fn next_wal_ready(&self) -> bool {
        self.next_wal
            .as_ref()
            .is_some_and(|n| n.status.load(Ordering::Acquire) == SNAP_READY)
    }

    /// Begin a snapshot and leave it due, as a crash after the new
    /// generation was renamed into place would (tests).
    #[cfg(test)]
    pub(in crate::fs) fn begin_snapshot_only(&mut self) -> Result<(), StorageError> {
        self.log.lock.lock()?;
        self.locked = true;
        self.wait_for_next_wal();
        let r = self
            .log
            .sync_view(true)
            .and_then(|()| self.begin_snapshot());
        self.unlock();
        r
    }
}

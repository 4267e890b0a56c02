//! [`FsWriter`]: the one writer of a log directory per process — a batch
//! per WAL record under the directory's `flock`, the preallocated zeros,
//! full tiles and bundles after the fsync, and the background snapshot.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::sequencer::{Batch, LogStorage, StorageError, TreeState};
use crate::tiles::{self, TILE_WIDTH, TileId, bundle_path, tile_path};

use super::files::{encode_state, write_atomic, write_file};
use super::wal::write_zeros;
use super::{FsLog, SnapshotDue, WAL_HEADER, WAL_LIMIT, WAL_MAGIC, WAL_PREALLOC, WAL_PREV};

/// How long a snapshot whose files failed to fsync waits before it is tried
/// again.
const SNAPSHOT_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

pub(super) const SNAP_RUNNING: u8 = 0;
pub(super) const SNAP_READY: u8 = 1;
pub(super) const SNAP_FAILED: u8 = 2;

/// The next WAL generation's file, being filled with zeros in the
/// background (see the module docs of [`super`], "Snapshots").
#[derive(Debug)]
struct NextWal {
    /// Its length once filled.
    len: u64,
    status: Arc<std::sync::atomic::AtomicU8>,
}

/// Zeros per write and `fdatasync` while preparing the next WAL: its
/// writeback is spread out instead of queued ahead of commits at once.
const PREPARE_CHUNK: u64 = 1024 * 1024;

/// The background fsync of a due snapshot's full tiles and bundles.
#[derive(Debug)]
struct Snapshot {
    /// The generation whose snapshot it is (the log size it ends at).
    size: u64,
    status: Arc<std::sync::atomic::AtomicU8>,
}

/// Paths of the full tiles and bundles completed while the log grew from
/// `from` to `to` entries, and their directories.
pub(super) fn full_files_between(dir: &Path, from: u64, to: u64) -> Vec<PathBuf> {
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
pub(super) fn sync_files(paths: &[PathBuf]) -> std::io::Result<()> {
    for p in paths {
        File::open(p)?.sync_all()?;
    }
    Ok(())
}

/// This process's writer of a log directory.
#[derive(Debug)]
pub struct FsWriter {
    log: FsLog,
    wal: Option<File>,
    locked: bool,
    /// The file may hold bytes past what is durable (a failed write or
    /// fsync): cut them off and re-sync before the next record.
    broken: bool,
    /// The fsync of a due snapshot's files, in progress.
    snap: Option<Snapshot>,
    /// The next generation's file, prepared ahead of the snapshot.
    next_wal: Option<NextWal>,
    /// A failed snapshot fsync is retried from here on.
    snap_retry: Option<std::time::Instant>,
    /// A new WAL generation was renamed into place but the directory's
    /// fsync failed: no record may go into it until one succeeds.
    dir_unsynced: bool,
    /// WAL size that starts a snapshot ([`WAL_LIMIT`]).
    wal_limit: u64,
    /// Zeros kept ahead of the last record ([`WAL_PREALLOC`]).
    wal_prealloc: u64,
    /// The WAL file's length: records, then zeros up to here.
    wal_alloc: u64,
    /// Reopen the WAL keeping what follows the records: set when only
    /// another process's batches made the handle stale (their zeros stay;
    /// a torn tail was already cut by the view's repair), never after a
    /// failed write of our own.
    keep_tail: bool,
    /// Times this writer wrote zeros ahead of its records (tests).
    pub(super) zero_fills: u64,
    /// Fail the next commit's `fdatasync` after its record was written
    /// (tests: no file system here makes a real one fail on demand).
    #[cfg(test)]
    pub(super) fail_next_sync: bool,
    buf: Vec<u8>,
    known_dirs: std::collections::HashSet<PathBuf>,
}

impl Drop for FsWriter {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // A panic may have left this view between a durable batch and
            // its publication: make the next look at the directory read the
            // state and the WAL from disk instead of trusting it.
            let mut s = self.log.shared.write().unwrap_or_else(|e| e.into_inner());
            s.base = u64::MAX;
        }
        self.unlock();
        self.log.preparing.store(false, Ordering::Release);
        self.log.has_writer.store(false, Ordering::Release);
    }
}

impl FsWriter {
    /// The writer of `log` (its view holds the one-writer flag).
    pub(super) fn new(log: FsLog) -> Self {
        Self {
            log,
            wal: None,
            locked: false,
            broken: true,
            snap: None,
            snap_retry: None,
            next_wal: None,
            dir_unsynced: false,
            wal_limit: WAL_LIMIT,
            wal_prealloc: WAL_PREALLOC,
            wal_alloc: 0,
            keep_tail: false,
            zero_fills: 0,
            #[cfg(test)]
            fail_next_sync: false,
            buf: Vec::new(),
            known_dirs: Default::default(),
        }
    }

    /// The reading side.
    pub fn log(&self) -> &FsLog {
        &self.log
    }

    fn unlock(&mut self) {
        if self.locked {
            let _ = self.log.lock.unlock();
            self.locked = false;
        }
    }

    fn wal_seen(&self) -> (u64, u64) {
        let s = self.log.shared.read().unwrap_or_else(|e| e.into_inner());
        (s.base, s.wal_seen)
    }

    /// The WAL positioned at the end of what is durable, with a header.
    fn wal_file(&mut self) -> Result<&mut File, StorageError> {
        if self.broken || self.wal.is_none() {
            self.wal = None;
            let (base, seen) = self.wal_seen();
            let mut f = OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .open(self.log.dir.join("wal"))?;
            if seen < WAL_HEADER {
                f.set_len(0)?;
                f.write_all(WAL_MAGIC)?;
                f.write_all(&base.to_le_bytes())?;
                f.sync_all()?;
                self.log
                    .shared
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .wal_seen = WAL_HEADER;
                self.wal_alloc = WAL_HEADER;
            } else if self.keep_tail {
                // Only zeros follow the records (another process's).
                self.wal_alloc = f.metadata()?.len().max(seen);
            } else {
                // Whatever follows the durable records (zeros, or bytes of
                // a failed write) goes; zeros are written again as needed.
                f.set_len(seen)?;
                f.sync_all()?;
                self.wal_alloc = seen;
            }
            self.wal = Some(f);
            self.broken = false;
            self.keep_tail = false;
        }
        let (_, seen) = self.wal_seen();
        let f = self
            .wal
            .as_mut()
            .ok_or_else(|| StorageError::Backend("wal not open".into()))?;
        f.seek(SeekFrom::Start(seen))?;
        Ok(f)
    }

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
        let next = dir.join(super::wal_next_name());
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
        match fs::remove_file(dir.join(WAL_PREV)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
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

    /// fsync the directory if a new generation's name is not yet durable.
    fn sync_dir(&mut self) -> Result<(), StorageError> {
        if self.dir_unsynced {
            File::open(&self.log.dir)?.sync_all()?;
            self.dir_unsynced = false;
        }
        Ok(())
    }

    /// Start filling `wal.next` with zeros in the background.
    fn prepare_next_wal(&mut self) -> Result<(), StorageError> {
        let len = self.wal_limit + self.wal_prealloc + 4;
        let path = self.log.dir.join(super::wal_next_name());
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
        match fs::remove_file(self.log.dir.join(WAL_PREV)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
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
    fn advance_snapshot(&mut self, seen: u64) {
        match self.snap.as_ref().map(|s| s.status.load(Ordering::Acquire)) {
            Some(SNAP_READY) => {
                let _ = self.finish_snapshot();
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
                let due = {
                    let s = self.log.shared.read().unwrap_or_else(|e| e.into_inner());
                    s.snapshot_due.as_ref().map(|d| (d.from, d.state.size()))
                };
                if due.is_none() && self.next_wal.is_none() && seen > self.wal_limit / 2 {
                    let _ = self.prepare_next_wal();
                }
                let due = match due {
                    Some(d) => Some(d),
                    None if seen > self.wal_limit => {
                        if self.begin_snapshot().is_err() {
                            self.snap_retry = Some(std::time::Instant::now() + SNAPSHOT_RETRY);
                        }
                        let s = self.log.shared.read().unwrap_or_else(|e| e.into_inner());
                        s.snapshot_due.as_ref().map(|d| (d.from, d.state.size()))
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

    /// Change the WAL size that starts a snapshot (tests).
    #[doc(hidden)]
    pub fn set_wal_limit(&mut self, bytes: u64) {
        self.wal_limit = bytes;
    }

    /// Change how many zeros are kept ahead of the last record (tests).
    #[doc(hidden)]
    pub fn set_wal_prealloc(&mut self, bytes: u64) {
        self.wal_prealloc = bytes;
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
            let (from, size) = {
                let s = self.log.shared.read().unwrap_or_else(|e| e.into_inner());
                match &s.snapshot_due {
                    Some(d) => (d.from, d.state.size()),
                    None => return Ok(()),
                }
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
    pub(super) fn next_wal_ready(&self) -> bool {
        self.next_wal
            .as_ref()
            .is_some_and(|n| n.status.load(Ordering::Acquire) == SNAP_READY)
    }

    /// Begin a snapshot and leave it due, as a crash after the new
    /// generation was renamed into place would (tests).
    #[cfg(test)]
    pub(super) fn begin_snapshot_only(&mut self) -> Result<(), StorageError> {
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

    /// Write pending full files (left over from an earlier failure).
    fn flush_pending(&mut self) -> Result<(), StorageError> {
        let (tiles_p, bundles_p) = {
            let s = self.log.shared.read().unwrap_or_else(|e| e.into_inner());
            (s.pending_tiles.clone(), s.pending_bundles.clone())
        };
        for (id, bytes) in tiles_p {
            write_file(
                &self.log.dir,
                &tile_path(id, TILE_WIDTH),
                &bytes,
                &mut self.known_dirs,
            )?;
            let mut s = self.log.shared.write().unwrap_or_else(|e| e.into_inner());
            s.pending_tiles.remove(&id);
        }
        for (i, bytes) in bundles_p {
            write_file(
                &self.log.dir,
                &bundle_path(i, TILE_WIDTH),
                &bytes,
                &mut self.known_dirs,
            )?;
            let mut s = self.log.shared.write().unwrap_or_else(|e| e.into_inner());
            s.pending_bundles.remove(&i);
        }
        Ok(())
    }
}

impl LogStorage for FsWriter {
    fn load(&mut self) -> Result<TreeState, StorageError> {
        self.log.lock.lock()?;
        self.locked = true;
        let r = self.log.sync_view(true);
        self.unlock();
        r?;
        self.broken = true;
        Ok(self
            .log
            .shared
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .state
            .clone())
    }

    fn begin(&mut self, known_size: u64) -> Result<Option<TreeState>, StorageError> {
        self.log.lock.lock()?;
        self.locked = true;
        let (base, seen) = self.wal_seen();
        if let Err(e) = self.log.sync_view(true) {
            self.unlock();
            return Err(e);
        }
        if self.wal_seen() != (base, seen) {
            // Another process wrote: our file handle may be stale (a new
            // generation replaces the file). Its zeros are kept unless our
            // own last write failed.
            self.keep_tail = !self.broken;
            self.broken = true;
        }
        let s = self.log.shared.read().unwrap_or_else(|e| e.into_inner());
        Ok((s.state.size() != known_size).then(|| s.state.clone()))
    }

    fn commit<E: AsRef<[u8]>>(&mut self, batch: &Batch<'_, E>) -> Result<(), StorageError> {
        let r = self.commit_locked(batch);
        self.unlock();
        r
    }

    fn abort(&mut self) {
        self.unlock();
    }
}

impl FsWriter {
    fn commit_locked<E: AsRef<[u8]>>(&mut self, batch: &Batch<'_, E>) -> Result<(), StorageError> {
        // Readers of this view must not replay our record between the
        // fsync and the publish below.
        let refresh = self.log.refresh.clone();
        let _view = refresh.lock().unwrap_or_else(|e| e.into_inner());
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        buf.extend_from_slice(&[0; 4]);
        buf.extend_from_slice(&batch.first.to_le_bytes());
        buf.extend_from_slice(&(batch.entries.len() as u32).to_le_bytes());
        for e in batch.entries {
            tiles::push_bundle_entry(&mut buf, e.as_ref())?;
        }
        buf.extend_from_slice(&batch.after.root());
        let len = (buf.len() - 4) as u32;
        buf[..4].copy_from_slice(&len.to_le_bytes());
        // Where the record starts, once the WAL is open (opening may start
        // a new generation).
        let mut at = None;
        let res = (|| {
            self.sync_dir()?;
            self.wal_file()?;
            let (_, seen) = self.wal_seen();
            at = Some(seen);
            let end = seen + buf.len() as u64;
            if end > self.wal_alloc || self.wal_alloc - end < 4 {
                // Zeros ahead of the record, written once per
                // `wal_prealloc` bytes; this batch's fdatasync covers them.
                let to = end + self.wal_prealloc + 4;
                let f = self
                    .wal
                    .as_ref()
                    .ok_or_else(|| StorageError::Backend("wal not open".into()))?;
                write_zeros(f, self.wal_alloc.max(seen), to)?;
                self.wal_alloc = to;
                self.zero_fills += 1;
            }
            #[cfg(test)]
            let fail_sync = std::mem::take(&mut self.fail_next_sync);
            let f = self.wal_file()?;
            f.write_all(&buf)?;
            #[cfg(test)]
            if fail_sync {
                return Err(StorageError::Backend("fdatasync failed (test)".into()));
            }
            f.sync_data()?;
            Ok::<(), StorageError>(())
        })();
        let n = buf.len() as u64;
        self.buf = buf;
        if let Err(e) = res {
            // The batch is answered as failed, but a record whose
            // `fdatasync` failed is still complete in the page cache (and
            // may reach the disk later): the next look at the WAL, by this
            // process or another, would read it back as a valid batch and
            // log entries for requests that were refused. Overwrite it with
            // zeros, the end-of-records mark, before anyone can look (the
            // directory lock is still held). Best effort: if even that
            // write fails the storage is gone and the view is reloaded.
            if let (Some(f), Some(at)) = (self.wal.as_ref(), at) {
                let _ = write_zeros(f, at, at + n);
            }
            self.broken = true;
            return Err(e);
        }
        // Durable from here on: nothing below may fail the batch.
        let mut pending = (HashMap::new(), HashMap::new());
        for (id, hs) in &batch.integrated.full_tiles {
            let bytes = tiles::encode_tile(hs);
            match write_file(
                &self.log.dir,
                &tile_path(*id, TILE_WIDTH),
                &bytes,
                &mut self.known_dirs,
            ) {
                Ok(_) => {}
                Err(_) => {
                    pending.0.insert(*id, bytes);
                }
            }
        }
        for (i, bytes) in &batch.integrated.full_bundles {
            match write_file(
                &self.log.dir,
                &bundle_path(*i, TILE_WIDTH),
                bytes,
                &mut self.known_dirs,
            ) {
                Ok(_) => {}
                Err(_) => {
                    pending.1.insert(*i, bytes.clone());
                }
            }
        }
        let seen = {
            let mut s = self.log.shared.write().unwrap_or_else(|e| e.into_inner());
            s.wal_seen += n;
            s.pending_tiles.extend(pending.0);
            s.pending_bundles.extend(pending.1);
            s.publish_newer(batch.after);
            s.wal_seen
        };
        self.advance_snapshot(seen);
        Ok(())
    }
}

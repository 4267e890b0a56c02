//! [`FsWriter`]: the one writer of a log directory per process — a batch
//! per WAL record under the directory's `flock`, the preallocated zeros,
//! full tiles and bundles after the fsync; snapshots in [`snapshot`].

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use crate::sequencer::{Batch, LogStorage, StorageError, TreeState};
use crate::tiles::{self, TILE_WIDTH, bundle_path, tile_path};

use super::files::write_file;
use super::wal::write_zeros;
use super::{FsLog, MIN_WAL_LIMIT, WAL_HEADER, WAL_LIMIT, WAL_MAGIC, WAL_PREALLOC};

mod snapshot;

use snapshot::{NextWal, Snapshot};

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

    /// Take a snapshot once the WAL holds `bytes` of records (default
    /// [`WAL_LIMIT`], at least [`MIN_WAL_LIMIT`]). Smaller: less disk
    /// (the WAL, its previous generation and the next one prepared are up to
    /// about three times this) and less to read at start-up; larger: fewer
    /// snapshots. The zeros kept ahead of the last record shrink with it
    /// (a sixteenth, at most [`WAL_PREALLOC`]).
    pub fn set_snapshot_threshold(&mut self, bytes: u64) {
        self.wal_limit = bytes.max(MIN_WAL_LIMIT);
        self.wal_prealloc = (self.wal_limit / 16).clamp(4096, WAL_PREALLOC);
    }

    /// Change the WAL size that starts a snapshot, with no lower bound
    /// (tests of tiny generations).
    #[doc(hidden)]
    pub fn set_wal_limit(&mut self, bytes: u64) {
        self.wal_limit = bytes;
    }

    /// Change how many zeros are kept ahead of the last record (tests).
    #[doc(hidden)]
    pub fn set_wal_prealloc(&mut self, bytes: u64) {
        self.wal_prealloc = bytes;
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

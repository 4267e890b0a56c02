//! The embedded backend: the log as files in one directory, one `fdatasync`
//! per batch.
//!
//! ```text
//! <dir>/wal                    batches since the last snapshot (append-only)
//! <dir>/state                  snapshot: size, partial edge tiles, partial bundle
//! <dir>/tile/<L>/<N>           full hash tiles, written once, never changed
//! <dir>/tile/entries/<N>       full entry bundles, written once, never changed
//! <dir>/checkpoint             the latest signed checkpoint
//! <dir>/lock                   held (flock) by the one writing process
//! ```
//!
//! # Why a write-ahead file
//!
//! A batch must be durable with one fsync. Writing its tiles and bundles in
//! place (as Tessera's POSIX driver does) costs one fsync per file plus the
//! directories, about 4–6 per batch. Instead each batch is appended to `wal`
//! as one record and `fdatasync`ed once; that record *is* the commit. Full
//! tiles and bundles the batch completed are then written to their final
//! paths (temp file + rename, so readers never see a torn file) without an
//! fsync of their own: after a crash the WAL replay writes them again. The
//! partial tiles and the partial bundle live in memory (served from there)
//! and in the snapshot.
//!
//! When `wal` exceeds [`WAL_LIMIT`] bytes, a *snapshot* starts: a background
//! thread fsyncs the full tiles and bundles completed since the WAL's
//! generation began; the next commit after that replaces `state`
//! atomically (temp, fsync, rename, fsync of the directory) and starts a new
//! WAL generation holding only the records after the snapshot. A restart
//! therefore replays little more than [`WAL_LIMIT`] bytes. Per entry the
//! durable cost is one share of one `fdatasync` plus 1/256 of a file write;
//! the snapshot's fsyncs are amortised over [`WAL_LIMIT`] bytes of entries
//! and are off the commit path.
//!
//! Several processes may write one directory: each batch runs under an
//! exclusive `flock` on `lock`; a writer that finds records it has not seen
//! (or a new WAL generation, named in the WAL's header) reads them in first,
//! so sequence numbers stay contiguous.
//!
//! # Why files, and not SQLite blobs
//!
//! Measured (`benches/audit.rs`, `bench/RESULTS.md`): a SQLite transaction
//! per batch holding the bundle and tile blobs commits about as fast as, or
//! faster than, this backend on its own. Files were kept because in the
//! gateway SQLite also carries every other write and the search index
//! behind one write lock, which is what made the v1 log slow; because a
//! log directory is the published layout (servable and mirrorable by any
//! static tool); and because recovery is simple enough to test exhaustively
//! here. The cost is that entries are written twice (WAL, then bundle).
//!
//! # Record format
//!
//! ```text
//! u32 LE   length of the rest of the record
//! u64 LE   sequence number of the first entry
//! u32 LE   number of entries
//! …        the entries, each uint16 BE length + bytes (bundle encoding)
//! [32]     the tree root after the batch
//! ```
//!
//! The root is the checksum: replay recomputes it from the entries. A record
//! that is short, or whose root does not match, at the *end* of the file is
//! a torn write of a batch that was never acknowledged and is cut off. A bad
//! record followed by more data is corruption and refuses to load.
//!
//! # Why the WAL is preallocated
//!
//! The records end at the first length prefix of zero: the writer keeps
//! [`WAL_PREALLOC`] bytes of zeros written ahead of the last record and
//! overwrites them. An `fdatasync` of an append changes the file's size, so
//! ext4 must commit its journal, which also flushes every other file's
//! pending metadata and ordered data (the search index's SQLite writes,
//! tile renames): measured here, that made each commit several times
//! slower than the disk's own flush. Overwriting blocks that are already
//! written needs no journal commit (PostgreSQL pre-zeroes its WAL segments
//! for the same reason). The zeros are written once per [`WAL_PREALLOC`]
//! bytes, in the commit that needs them. Readers never read the zeros: they
//! read record by record and stop at a zero length.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use ring::digest;

use crate::merkle::Hash;
use crate::sequencer::{Batch, LogStorage, StorageError, TileReader, TreeState};
use crate::tiles::{self, TILE_WIDTH, TileId, bundle_path, tile_path};

/// Size of `wal` beyond which a snapshot is taken.
pub const WAL_LIMIT: u64 = 64 * 1024 * 1024;

/// Zeros the writer keeps written ahead of the last record (see the module
/// docs, "Why the WAL is preallocated").
pub const WAL_PREALLOC: u64 = 4 * 1024 * 1024;

const STATE_MAGIC: &[u8] = b"credlog-state v1\n";
/// `wal` starts with this magic and the log size at its snapshot (its
/// generation: a reader that sees another one reloads).
const WAL_MAGIC: &[u8; 8] = b"credwal1";
const WAL_HEADER: u64 = 16;

/// What readers see: the durable right edge, already encoded.
#[derive(Debug, Default)]
struct Shared {
    /// The state as of `wal_seen` bytes of the WAL of generation `base`.
    state: TreeState,
    base: u64,
    wal_seen: u64,
    /// Encoded partial edge tiles.
    edge: HashMap<TileId, Vec<u8>>,
    /// Full tiles and bundles not (yet) readable from their files.
    pending_tiles: HashMap<TileId, Vec<u8>>,
    pending_bundles: HashMap<u64, Vec<u8>>,
}

impl Shared {
    fn publish(&mut self, state: TreeState) -> Result<(), StorageError> {
        self.state = state;
        self.encode_edge();
        Ok(())
    }

    /// Publish a later state of the same log, copying only what changed
    /// ([`TreeState::catch_up`]).
    fn publish_newer(&mut self, state: &TreeState) {
        self.state.catch_up(state);
        self.encode_edge();
    }

    fn encode_edge(&mut self) {
        // The partial bundle is served from the state itself.
        self.edge = self
            .state
            .edge_tiles()
            .map(|(id, hs)| (id, tiles::encode_tile(hs)))
            .collect();
    }
}

/// A log directory: the reading side, cheap to clone. [`FsLog::writer`]
/// gives this process's writer.
///
/// Several processes may open the same directory (two gateways on one
/// SQLite file, or a CLI tool beside a gateway): each batch is written
/// under an exclusive `flock` on `lock`, and a writer that finds the WAL
/// advanced by someone else first reads those records in (like SQLite's own
/// locking). Readers pick up other processes' batches when they look at the
/// head.
#[derive(Clone, Debug)]
pub struct FsLog {
    dir: PathBuf,
    shared: Arc<RwLock<Shared>>,
    lock: Arc<File>,
    has_writer: Arc<AtomicBool>,
    /// Serialises refreshes of this view.
    refresh: Arc<Mutex<()>>,
}

impl FsLog {
    /// Open (creating) the directory and recover the log under the lock:
    /// a torn last batch is cut off, tiles a crash lost are written again.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        fs::create_dir_all(dir)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("lock"))?;
        let log = Self {
            dir: dir.to_owned(),
            shared: Arc::default(),
            lock: Arc::new(lock),
            has_writer: Arc::default(),
            refresh: Arc::default(),
        };
        log.lock.lock()?;
        let r = log.sync_view(true);
        let _ = log.lock.unlock();
        r?;
        Ok(log)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Durable size and root, including other processes' batches.
    pub fn head(&self) -> Result<(u64, Hash), StorageError> {
        self.sync_view(false)?;
        let s = self.shared.read().unwrap_or_else(|e| e.into_inner());
        Ok((s.state.size(), s.state.root()))
    }

    /// This process's writer (at most one per process).
    pub fn writer(&self) -> Result<FsWriter, StorageError> {
        if self.has_writer.swap(true, Ordering::AcqRel) {
            return Err(StorageError::Locked);
        }
        Ok(FsWriter {
            log: self.clone(),
            wal: None,
            locked: false,
            broken: true,
            snap: None,
            wal_limit: WAL_LIMIT,
            wal_prealloc: WAL_PREALLOC,
            wal_alloc: 0,
            keep_tail: false,
            zero_fills: 0,
            buf: Vec::new(),
            known_dirs: Default::default(),
        })
    }

    /// Replace `checkpoint` atomically with `note` (fsynced), unless the
    /// stored one is for a larger tree (checkpointers of several processes
    /// may race).
    pub fn put_checkpoint(&self, note: &str) -> Result<(), StorageError> {
        let size_of = |n: &str| n.lines().nth(1).and_then(|l| l.parse::<u64>().ok());
        let _one = self.refresh.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = self.checkpoint()?
            && size_of(&old) > size_of(note)
        {
            return Ok(());
        }
        write_atomic(&self.dir, "checkpoint", note.as_bytes(), true)
    }

    /// The stored `checkpoint` file, if any.
    pub fn checkpoint(&self) -> Result<Option<String>, StorageError> {
        match fs::read_to_string(self.dir.join("checkpoint")) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Bring this view up to the files: read records appended since it
    /// last looked (all of them after a snapshot changed the WAL's
    /// generation). With `repair` (only under the lock) a torn tail is cut
    /// off and lost full tiles are written again; without, a torn tail is
    /// simply not read yet.
    fn sync_view(&self, repair: bool) -> Result<(), StorageError> {
        let _one = self.refresh.lock().unwrap_or_else(|e| e.into_inner());
        self.sync_view_locked(repair)
    }

    fn sync_view_locked(&self, repair: bool) -> Result<(), StorageError> {
        let wal_path = self.dir.join("wal");
        let mut file = match File::open(&wal_path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e.into()),
        };
        let len = match &file {
            Some(f) => f.metadata()?.len(),
            None => 0,
        };
        let mut header = [0u8; WAL_HEADER as usize];
        let base = match file.as_mut() {
            Some(f) if len >= WAL_HEADER => {
                f.read_exact(&mut header)?;
                (&header[..8] == WAL_MAGIC)
                    .then(|| u64::from_le_bytes(header[8..16].try_into().unwrap_or_default()))
            }
            _ => None,
        };
        // Without a valid header (empty, or torn while being created) the
        // WAL holds no records.
        let body_start = if base.is_some() { WAL_HEADER } else { len };
        let base = base.unwrap_or(0);
        let (mut state, start) = {
            let s = self.shared.read().unwrap_or_else(|e| e.into_inner());
            if s.base == base && s.wal_seen >= body_start && s.wal_seen <= len {
                // Nothing new: no record starts where this view stopped
                // (the end of the file, or the preallocated zeros).
                if s.pending_tiles.is_empty()
                    && s.pending_bundles.is_empty()
                    && file
                        .as_ref()
                        .map_or(Ok(0), |f| record_len_at(f, s.wal_seen, len))?
                        == 0
                {
                    return Ok(());
                }
                (s.state.clone(), s.wal_seen)
            } else {
                (read_state(&self.dir)?, body_start)
            }
        };
        let data = match file.as_ref() {
            Some(f) if start < len => read_records(f, start, len)?,
            _ => Vec::new(),
        };
        let start = start as usize;
        if state.size() < base {
            return Err(StorageError::Corrupt(format!(
                "wal continues a snapshot of {base} entries, state holds {}",
                state.size()
            )));
        }
        let mut done_tiles = HashMap::new();
        let mut done_bundles = HashMap::new();
        let mut torn = false;
        let mut pos = 0usize;
        while pos < data.len() {
            let Some((len, first, entries, root)) = parse_record(&data[pos..]) else {
                torn = true;
                break;
            };
            let end = first + entries.len() as u64;
            // Records wholly inside the snapshot (a crash between writing
            // `state` and restarting the WAL leaves them) are skipped; so are
            // empty ones (probes) from before it.
            let skip = if entries.is_empty() {
                first < state.size()
            } else {
                end <= state.size()
            };
            if !skip {
                if first != state.size() {
                    return Err(StorageError::Corrupt(format!(
                        "wal record at byte {} starts at {first}, log has {}",
                        start + pos,
                        state.size()
                    )));
                }
                let mut next = state.clone();
                let done = next.integrate(&entries)?;
                if next.root() != root {
                    if pos + len == data.len() {
                        torn = true;
                        break;
                    }
                    return Err(StorageError::Corrupt(format!(
                        "wal record at byte {} does not match its root",
                        start + pos
                    )));
                }
                state = next;
                for (id, hs) in done.full_tiles {
                    done_tiles.insert(id, tiles::encode_tile(&hs));
                }
                done_bundles.extend(done.full_bundles);
            }
            pos += len;
        }
        if repair {
            if torn {
                let f = OpenOptions::new().write(true).open(&wal_path)?;
                f.set_len((start + pos) as u64)?;
                f.sync_all()?;
            }
            let mut dirs = Default::default();
            for (id, bytes) in done_tiles.drain() {
                write_file(&self.dir, &tile_path(id, TILE_WIDTH), &bytes, &mut dirs)?;
            }
            for (i, bytes) in done_bundles.drain() {
                write_file(&self.dir, &bundle_path(i, TILE_WIDTH), &bytes, &mut dirs)?;
            }
        }
        let mut s = self.shared.write().unwrap_or_else(|e| e.into_inner());
        s.base = base;
        s.wal_seen = (start + pos) as u64;
        s.pending_tiles.extend(done_tiles);
        s.pending_bundles.extend(done_bundles);
        // Another process's full files, once it has written them, are read
        // from disk like all others.
        let dir = &self.dir;
        s.pending_tiles
            .retain(|id, _| !dir.join(tile_path(*id, TILE_WIDTH)).exists());
        s.pending_bundles
            .retain(|i, _| !dir.join(bundle_path(*i, TILE_WIDTH)).exists());
        s.publish(state)
    }

    fn read_full(&self, rel: &str) -> Result<Option<Vec<u8>>, StorageError> {
        match fs::read(self.dir.join(rel)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

impl TileReader for FsLog {
    fn read_tile(&self, id: TileId) -> Result<Option<Vec<u8>>, StorageError> {
        let s = self.shared.read().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = s.edge.get(&id).or_else(|| s.pending_tiles.get(&id)) {
            return Ok(Some(b.clone()));
        }
        if tiles::tile_width(id, s.state.size()) < TILE_WIDTH {
            return Ok(None);
        }
        drop(s);
        self.read_full(&tile_path(id, TILE_WIDTH))
    }

    fn read_bundle(&self, index: u64) -> Result<Option<Vec<u8>>, StorageError> {
        let s = self.shared.read().unwrap_or_else(|e| e.into_inner());
        if !s.state.partial_bundle().is_empty() && s.state.bundle_index() == index {
            return Ok(Some(s.state.partial_bundle().to_vec()));
        }
        if let Some(b) = s.pending_bundles.get(&index) {
            return Ok(Some(b.clone()));
        }
        if tiles::bundle_width(index, s.state.size()) < TILE_WIDTH {
            return Ok(None);
        }
        drop(s);
        self.read_full(&bundle_path(index, TILE_WIDTH))
    }
}

const SNAP_RUNNING: u8 = 0;
const SNAP_READY: u8 = 1;
const SNAP_FAILED: u8 = 2;

/// A snapshot whose files a background thread is making durable.
#[derive(Debug)]
struct Snapshot {
    /// Encoded `state` file.
    state: Vec<u8>,
    size: u64,
    /// WAL generation and the offset in it up to which `size` reaches.
    base: u64,
    wal_offset: u64,
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

/// This process's writer of a log directory.
#[derive(Debug)]
pub struct FsWriter {
    log: FsLog,
    wal: Option<File>,
    locked: bool,
    /// The file may hold bytes past what is durable (a failed write or
    /// fsync): cut them off and re-sync before the next record.
    broken: bool,
    /// A snapshot in progress.
    snap: Option<Snapshot>,
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
    zero_fills: u64,
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
        self.log.has_writer.store(false, Ordering::Release);
    }
}

impl FsWriter {
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

    /// Start a snapshot of the current state: a background thread fsyncs
    /// the full tiles and bundles completed since the WAL's generation
    /// began (off the commit path: that is hundreds of fsyncs); a later
    /// commit then finishes it ([`FsWriter::finish_snapshot`]). Under the lock.
    fn start_snapshot(&mut self) -> Result<(), StorageError> {
        self.flush_pending()?;
        let (state, base, seen) = {
            let s = self.log.shared.read().unwrap_or_else(|e| e.into_inner());
            (s.state.clone(), s.base, s.wal_seen)
        };
        let files = full_files_between(&self.log.dir, base, state.size());
        let status = Arc::new(std::sync::atomic::AtomicU8::new(SNAP_RUNNING));
        let st = status.clone();
        std::thread::Builder::new()
            .name("credlog-snapshot".into())
            .spawn(move || {
                let ok = sync_files(&files).is_ok();
                st.store(if ok { SNAP_READY } else { SNAP_FAILED }, Ordering::Release);
            })?;
        self.snap = Some(Snapshot {
            state: encode_state(&state)?,
            size: state.size(),
            base,
            wal_offset: seen,
            status,
        });
        Ok(())
    }

    /// Finish a snapshot whose files are durable: replace `state`, start a
    /// new WAL generation holding the records after it. Under the lock.
    fn finish_snapshot(&mut self) -> Result<(), StorageError> {
        let Some(snap) = self.snap.take() else {
            return Ok(());
        };
        let (base, seen) = self.wal_seen();
        if base != snap.base || seen < snap.wal_offset {
            return Ok(()); // another writer took one meanwhile
        }
        write_atomic(&self.log.dir, "state", &snap.state, true)?;
        let mut wal = WAL_MAGIC.to_vec();
        wal.extend_from_slice(&snap.size.to_le_bytes());
        let mut f = File::open(self.log.dir.join("wal"))?;
        f.seek(SeekFrom::Start(snap.wal_offset))?;
        f.take(seen - snap.wal_offset).read_to_end(&mut wal)?;
        write_atomic(&self.log.dir, "wal", &wal, true)?;
        {
            let mut s = self.log.shared.write().unwrap_or_else(|e| e.into_inner());
            s.base = snap.size;
            s.wal_seen = wal.len() as u64;
        }
        self.wal = None; // the old file was replaced
        Ok(())
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
            self.log.sync_view(true)?;
            self.start_snapshot()?;
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
        let res = (|| {
            self.wal_file()?;
            let (_, seen) = self.wal_seen();
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
            let f = self.wal_file()?;
            f.write_all(&buf)?;
            f.sync_data()?;
            Ok::<(), StorageError>(())
        })();
        let n = buf.len() as u64;
        self.buf = buf;
        if let Err(e) = res {
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
        // A failed snapshot is retried later; the WAL still holds everything.
        match self.snap.as_ref().map(|s| s.status.load(Ordering::Acquire)) {
            Some(SNAP_READY) => {
                let _ = self.finish_snapshot();
            }
            Some(SNAP_FAILED) => self.snap = None,
            Some(_) => {}
            None if seen > self.wal_limit => {
                let _ = self.start_snapshot();
            }
            None => {}
        }
        Ok(())
    }
}

/// The length prefix of the record at `pos` (0: none starts there, at the
/// end of the file or in the preallocated zeros).
fn record_len_at(f: &File, pos: u64, file_len: u64) -> Result<u32, StorageError> {
    let mut b = [0u8; 4];
    let n = file_len.saturating_sub(pos).min(4) as usize;
    f.read_exact_at(&mut b[..n], pos)?;
    if n < 4 {
        // Fewer than four bytes: a torn prefix if any is non-zero.
        return Ok(u32::from(b.iter().any(|&x| x != 0)));
    }
    Ok(u32::from_le_bytes(b))
}

/// The records from `start` on, as bytes, up to the first zero length
/// prefix or the end of the file (whatever a torn last record left is
/// included: [`parse_record`] then refuses it).
fn read_records(f: &File, start: u64, file_len: u64) -> Result<Vec<u8>, StorageError> {
    let mut out = Vec::new();
    let mut pos = start;
    loop {
        let len = record_len_at(f, pos, file_len)?;
        if len == 0 {
            return Ok(out);
        }
        let end = (pos + 4 + u64::from(len)).min(file_len);
        let at = out.len();
        out.resize(at + (end - pos) as usize, 0);
        f.read_exact_at(&mut out[at..], pos)?;
        if end == file_len {
            return Ok(out);
        }
        pos = end;
    }
}

/// Write zeros to `[from, to)`.
fn write_zeros(f: &File, from: u64, to: u64) -> Result<(), StorageError> {
    const CHUNK: usize = 256 * 1024;
    let zeros = vec![0u8; CHUNK];
    let mut pos = from;
    while pos < to {
        let n = ((to - pos) as usize).min(CHUNK);
        f.write_all_at(&zeros[..n], pos)?;
        pos += n as u64;
    }
    Ok(())
}

fn parse_record(d: &[u8]) -> Option<(usize, u64, Vec<&[u8]>, Hash)> {
    let len = u32::from_le_bytes(d.get(..4)?.try_into().ok()?) as usize;
    let body = d.get(4..4 + len)?;
    if body.len() < 12 + 32 {
        return None;
    }
    let first = u64::from_le_bytes(body[..8].try_into().ok()?);
    let count = u32::from_le_bytes(body[8..12].try_into().ok()?) as usize;
    let (entries_bytes, root) = body[12..].split_at(body.len() - 12 - 32);
    let entries = tiles::decode_bundle_unbounded(entries_bytes)?;
    if entries.len() != count {
        return None;
    }
    Some((4 + len, first, entries, root.try_into().ok()?))
}

fn encode_state(state: &TreeState) -> Result<Vec<u8>, StorageError> {
    let mut out = STATE_MAGIC.to_vec();
    out.extend_from_slice(&state.size().to_le_bytes());
    let levels: Vec<&[Hash]> = (0..=tiles::MAX_TILE_LEVEL)
        .map(|l| state.edge_tile(l))
        .collect();
    out.push(levels.len() as u8);
    for hs in levels {
        out.extend_from_slice(&(hs.len() as u16).to_le_bytes());
        out.extend_from_slice(&tiles::encode_tile(hs));
    }
    let bundle = state.partial_bundle();
    out.extend_from_slice(&(bundle.len() as u32).to_le_bytes());
    out.extend_from_slice(bundle);
    out.extend_from_slice(&state.root());
    let sum = digest::digest(&digest::SHA256, &out);
    out.extend_from_slice(sum.as_ref());
    Ok(out)
}

fn read_state(dir: &Path) -> Result<TreeState, StorageError> {
    let mut f = match File::open(dir.join("state")) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(TreeState::new()),
        Err(e) => return Err(e.into()),
    };
    let mut d = Vec::new();
    f.read_to_end(&mut d)?;
    decode_state(&d).ok_or_else(|| StorageError::Corrupt("state file does not parse".into()))?
}

fn decode_state(d: &[u8]) -> Option<Result<TreeState, StorageError>> {
    let (body, sum) = d.split_at(d.len().checked_sub(32)?);
    if digest::digest(&digest::SHA256, body).as_ref() != sum {
        return None;
    }
    let mut r = body.strip_prefix(STATE_MAGIC)?;
    let mut take = |n: usize| -> Option<&[u8]> {
        let (a, b) = r.split_at_checked(n)?;
        r = b;
        Some(a)
    };
    let size = u64::from_le_bytes(take(8)?.try_into().ok()?);
    let levels = take(1)?[0];
    let mut edge = Vec::new();
    for _ in 0..levels {
        let n = u16::from_le_bytes(take(2)?.try_into().ok()?) as usize;
        edge.push(tiles::decode_tile(take(n * 32)?).ok()?);
    }
    let blen = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
    let bundle = tiles::decode_bundle(take(blen)?)
        .ok()?
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect();
    let root: Hash = take(32)?.try_into().ok()?;
    Some(TreeState::from_edge(size, edge, bundle).and_then(|s| {
        if s.root() == root {
            Ok(s)
        } else {
            Err(StorageError::Corrupt("state root does not match".into()))
        }
    }))
}

/// A temp file name beside `path`, unique across threads and processes.
fn temp_name(path: &Path) -> PathBuf {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(
        ".tmp.{}.{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    path.with_file_name(name)
}

/// Write `dir/rel` via a temp file and rename (no fsync: the WAL covers it).
fn write_file(
    dir: &Path,
    rel: &str,
    bytes: &[u8],
    dirs: &mut std::collections::HashSet<PathBuf>,
) -> Result<PathBuf, StorageError> {
    let path = dir.join(rel);
    let parent = path
        .parent()
        .ok_or_else(|| StorageError::Backend("path without parent".into()))?
        .to_owned();
    if !dirs.contains(&parent) {
        fs::create_dir_all(&parent)?;
        dirs.insert(parent);
    }
    let tmp = temp_name(&path);
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    drop(f);
    fs::rename(&tmp, &path)?;
    Ok(path)
}

/// Replace `dir/name` atomically; with `sync`, durably.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8], sync: bool) -> Result<(), StorageError> {
    let tmp = temp_name(&dir.join(name));
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    if sync {
        f.sync_all()?;
    }
    drop(f);
    fs::rename(&tmp, dir.join(name))?;
    if sync {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle;
    use crate::sequencer::{Sequencer, entries_from, nodes_from};

    struct Tmp(PathBuf);
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
    fn tmp(name: &str) -> Tmp {
        let p = std::env::temp_dir().join(format!("credlog-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        Tmp(p)
    }

    fn entries(n: u32) -> Vec<Vec<u8>> {
        (0..n).map(|i| format!("entry {i}").into_bytes()).collect()
    }

    #[test]
    fn batches_survive_reopen_and_torn_tails_are_cut() {
        let d = tmp("reopen");
        let all = entries(1000);
        let leaves: Vec<Hash> = all.iter().map(|e| merkle::leaf_hash(e)).collect();
        {
            let log = FsLog::open(&d.0).unwrap();
            let mut s = Sequencer::open(log.writer().unwrap()).unwrap();
            assert_eq!(s.append(&all[..300]).unwrap(), 0);
            assert_eq!(s.append(&all[300..301]).unwrap(), 300);
            assert_eq!(s.append(&all[301..700]).unwrap(), 301);
            assert_eq!(log.head().unwrap(), (700, merkle::root_of(&leaves[..700])));
            assert!(d.0.join("tile/entries/001").exists());
            assert!(d.0.join("tile/0/001").exists());
            assert!(!d.0.join("tile/0/002").exists());
            // Only one writer per view.
            assert!(log.writer().is_err());
            let view = FsLog::open(&d.0).unwrap();
            assert_eq!(view.head().unwrap().0, 700);
            assert_eq!(
                entries_from(&view, 650, 700).unwrap(),
                all[650..700].to_vec()
            );
        }
        // A torn record at the end: half of a batch written over the
        // preallocated zeros, never synced.
        let wal = d.0.join("wal");
        let good = {
            let log = FsLog::open(&d.0).unwrap();
            log.shared.read().unwrap().wal_seen
        };
        assert!(
            fs::metadata(&wal).unwrap().len() > good,
            "zeros are preallocated after the records"
        );
        {
            let f = OpenOptions::new().write(true).open(&wal).unwrap();
            let mut rec = Vec::new();
            rec.extend_from_slice(&100u32.to_le_bytes());
            rec.extend_from_slice(&700u64.to_le_bytes());
            rec.extend_from_slice(&[7; 20]);
            f.write_all_at(&rec, good).unwrap();
        }
        // And a lost full tile (written, not synced, gone in the crash).
        fs::remove_file(d.0.join("tile/entries/001")).unwrap();
        {
            let log = FsLog::open(&d.0).unwrap();
            assert_eq!(fs::metadata(&wal).unwrap().len(), good, "torn tail cut");
            assert!(d.0.join("tile/entries/001").exists(), "lost tile rewritten");
            let mut s = Sequencer::open(log.writer().unwrap()).unwrap();
            assert_eq!(s.state().size(), 700);
            assert_eq!(s.append(&all[700..]).unwrap(), 700);
            assert_eq!(log.head().unwrap().1, merkle::root_of(&leaves));
            let ids = merkle::nodes_for(&[(0, 1000)]);
            let nodes = nodes_from(&log, &ids).unwrap();
            let root = merkle::assemble(&[(0, 1000)], |id| nodes.get(&id).copied()).unwrap();
            assert_eq!(root[0], merkle::root_of(&leaves));
        }
    }

    #[test]
    fn a_writer_that_panics_leaves_a_view_the_next_writer_rereads() {
        let d = tmp("panic");
        let all = entries(30);
        let leaves: Vec<Hash> = all.iter().map(|e| merkle::leaf_hash(e)).collect();
        let log = FsLog::open(&d.0).unwrap();
        let mut s = Sequencer::open(log.writer().unwrap()).unwrap();
        s.append(&all[..10]).unwrap();
        let before = log.shared.read().unwrap().state.clone();
        s.append(&all[10..20]).unwrap();
        // What a panic between a batch's fsync and its publication leaves:
        // the WAL position after the batch, the tree before it.
        log.shared.write().unwrap().state = before;
        let dead = std::thread::spawn(move || {
            let _writer = s;
            panic!("the writer panics");
        })
        .join();
        assert!(dead.is_err());
        let mut s = Sequencer::open(log.writer().unwrap()).unwrap();
        assert_eq!(s.state().size(), 20, "the reopened writer read the disk");
        assert_eq!(s.append(&all[20..]).unwrap(), 20);
        drop(s);
        let fresh = FsLog::open(&d.0).unwrap();
        assert_eq!(fresh.head().unwrap(), (30, merkle::root_of(&leaves)));
    }

    #[test]
    fn a_bad_record_in_the_middle_is_corruption() {
        let d = tmp("corrupt");
        let all = entries(10);
        {
            let log = FsLog::open(&d.0).unwrap();
            let mut s = Sequencer::open(log.writer().unwrap()).unwrap();
            s.append(&all[..5]).unwrap();
            s.append(&all[5..]).unwrap();
        }
        let wal = d.0.join("wal");
        let mut bytes = fs::read(&wal).unwrap();
        bytes[20] ^= 1; // inside the first record's entries
        fs::write(&wal, &bytes).unwrap();
        assert!(matches!(FsLog::open(&d.0), Err(StorageError::Corrupt(_))));
    }

    #[test]
    fn snapshots_start_a_new_wal_generation_and_reload() {
        let d = tmp("snapshot");
        let all = entries(600);
        let leaves: Vec<Hash> = all.iter().map(|e| merkle::leaf_hash(e)).collect();
        {
            let log = FsLog::open(&d.0).unwrap();
            let mut s = Sequencer::open(log.writer().unwrap()).unwrap();
            s.append(&all[..333]).unwrap();
            let view = FsLog::open(&d.0).unwrap();
            assert_eq!(view.head().unwrap().0, 333);
            drop(s);
            let mut w = log.writer().unwrap();
            w.load().unwrap();
            w.snapshot().unwrap();
            assert_eq!(fs::metadata(d.0.join("wal")).unwrap().len(), WAL_HEADER);
            let mut s = Sequencer::open(w).unwrap();
            s.append(&all[333..400]).unwrap();
            // The other view notices the new generation.
            assert_eq!(view.head().unwrap(), (400, merkle::root_of(&leaves[..400])));
        }
        let log = FsLog::open(&d.0).unwrap();
        let mut s = Sequencer::open(log.writer().unwrap()).unwrap();
        assert_eq!(s.state().size(), 400);
        s.append(&all[400..]).unwrap();
        assert_eq!(s.state().root(), merkle::root_of(&leaves));
        assert_eq!(entries_from(&log, 0, 600).unwrap(), all);
    }

    #[test]
    fn a_crash_between_state_and_wal_restart_recovers() {
        let d = tmp("midsnap");
        let all = entries(700);
        let leaves: Vec<Hash> = all.iter().map(|e| merkle::leaf_hash(e)).collect();
        let old_wal;
        {
            let log = FsLog::open(&d.0).unwrap();
            let mut s = Sequencer::open(log.writer().unwrap()).unwrap();
            s.append(&all[..300]).unwrap();
            s.append::<Vec<u8>>(&[]).unwrap(); // a probe record
            s.append(&all[300..500]).unwrap();
            drop(s);
            old_wal = fs::read(d.0.join("wal")).unwrap();
            let mut w = log.writer().unwrap();
            w.load().unwrap();
            w.snapshot().unwrap();
        }
        // The crash: `state` (500 entries) renamed, the WAL not restarted.
        fs::write(d.0.join("wal"), &old_wal).unwrap();
        let log = FsLog::open(&d.0).unwrap();
        assert_eq!(log.head().unwrap(), (500, merkle::root_of(&leaves[..500])));
        let mut s = Sequencer::open(log.writer().unwrap()).unwrap();
        s.append::<Vec<u8>>(&[]).unwrap();
        s.append(&all[500..]).unwrap();
        drop(s);
        let log = FsLog::open(&d.0).unwrap();
        assert_eq!(log.head().unwrap(), (700, merkle::root_of(&leaves)));
    }

    #[test]
    fn background_snapshots_keep_every_batch() {
        let d = tmp("bgsnap");
        let all = entries(3000);
        let leaves: Vec<Hash> = all.iter().map(|e| merkle::leaf_hash(e)).collect();
        {
            let log = FsLog::open(&d.0).unwrap();
            let mut w = log.writer().unwrap();
            w.set_wal_limit(4096);
            let mut s = Sequencer::open(w).unwrap();
            for chunk in all.chunks(97) {
                s.append(chunk).unwrap();
                // Give the snapshot thread a chance now and then.
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            assert!(d.0.join("state").exists(), "a snapshot was taken");
            assert!(
                log.shared.read().unwrap().wal_seen < 200_000,
                "the wal was restarted"
            );
        }
        let log = FsLog::open(&d.0).unwrap();
        assert_eq!(log.head().unwrap(), (3000, merkle::root_of(&leaves)));
        assert_eq!(entries_from(&log, 0, 3000).unwrap(), all);
    }

    #[test]
    fn two_writers_on_one_directory_share_one_log() {
        let d = tmp("two");
        let all = entries(900);
        let leaves: Vec<Hash> = all.iter().map(|e| merkle::leaf_hash(e)).collect();
        let a = FsLog::open(&d.0).unwrap();
        let b = FsLog::open(&d.0).unwrap();
        let mut sa = Sequencer::open(a.writer().unwrap()).unwrap();
        let mut sb = Sequencer::open(b.writer().unwrap()).unwrap();
        let mut next = 0usize;
        for (i, n) in [5usize, 300, 1, 250, 44, 300].into_iter().enumerate() {
            let s = if i % 2 == 0 { &mut sa } else { &mut sb };
            assert_eq!(s.append(&all[next..next + n]).unwrap(), next as u64);
            next += n;
        }
        assert_eq!(next, 900);
        // Each writer wrote zeros once, at its first batch (a writer's
        // first open cuts the file to its records), and from then on used
        // the ones the other left.
        assert_eq!(
            (sa.storage().zero_fills, sb.storage().zero_fills),
            (1, 1),
            "the writers kept each other's preallocated zeros"
        );
        assert_eq!(a.head().unwrap(), (900, merkle::root_of(&leaves)));
        assert_eq!(b.head().unwrap().1, merkle::root_of(&leaves));
        assert_eq!(entries_from(&a, 0, 900).unwrap(), all);
    }
}

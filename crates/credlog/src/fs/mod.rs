//! The embedded backend: the log as files in one directory, one `fdatasync`
//! per batch.
//!
//! ```text
//! <dir>/wal                    batches since the last snapshot (append-only)
//! <dir>/wal.prev               the generation before, while a snapshot is under way
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
//! # Snapshots
//!
//! When `wal` exceeds [`WAL_LIMIT`] bytes, a *snapshot* begins at the
//! current size: a new WAL generation starts there, and the old file stays
//! as `wal.prev` (a header is written and fsynced to `wal.next.<pid>`,
//! `wal` is hard-linked to `wal.prev`, that file renamed over `wal`, the directory
//! fsynced; the log has a `wal` at every instant). A background thread then
//! fsyncs the full tiles and bundles completed during the old generation,
//! and a later commit finishes the snapshot: it replaces `state`
//! atomically (temp, fsync, rename, fsync of the directory) and removes
//! `wal.prev`. A restart therefore replays little more than two
//! generations. Nothing is copied: an earlier design started the new
//! generation when the snapshot finished, copying the records written
//! meanwhile into it, and that copy and its fsync held the commit path for
//! 60–85 ms once per [`WAL_LIMIT`] bytes under load (`bench/RESULTS.md`).
//!
//! The next generation's file is prepared before it is needed: once the
//! WAL passes half of [`WAL_LIMIT`], a background thread writes
//! `wal.next.<pid>` full of zeros ([`WAL_LIMIT`] plus [`WAL_PREALLOC`] bytes, fsynced a
//! mebibyte at a time), and the snapshot then only writes its header. A
//! generation therefore starts with all the zeros it will need, and no
//! commit writes any (see "Why the WAL is preallocated"): before, every
//! [`WAL_PREALLOC`] bytes one commit wrote and flushed 4 MiB of zeros, a
//! 5–25 ms stall of every request waiting for it. If the file is not ready
//! the snapshot waits for it (the WAL runs a little past the limit); if it
//! could not be written, the generation starts empty and commits write
//! zeros as they go, as the first generation does.
//!
//! While a snapshot is due, `state` is older than the current generation
//! and every view reads `wal.prev` on top of it ([`FsLog`]'s `state_at`). A
//! crash at any step leaves either generation complete: a `wal.next.<pid>` is
//! removed, a `wal.prev` no longer needed (the same file as `wal`, or older
//! than `state`) is removed, and a snapshot found due is finished by the
//! next writer. Per entry the durable cost is one share of one `fdatasync`
//! plus 1/256 of a file write; the snapshot's fsyncs are amortised over
//! [`WAL_LIMIT`] bytes of entries and are off the commit path.
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
//!
//! # Why a view does not `stat` the WAL
//!
//! Every batch first brings the writer's view up to the file (another
//! process may have written). It does so by reading the header and the four
//! bytes where the view stopped ([`FsLog`]'s `nothing_new`), not with an
//! `fstat`: with multigrain timestamps (Linux 6.13 on), a stat makes the
//! next write take a fine-grained modification time, which dirties the
//! inode, and ext4 then writes the inode synchronously within the
//! `fdatasync` — a second device write and wait per commit. Measured with
//! `bash bench/profile.sh commits`: 2.0 block requests per group commit
//! with the stat, 1.2 without, and the mean commit fell by 35–70 %.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::merkle::Hash;
use crate::sequencer::{StorageError, TileReader, TreeState};
use crate::tiles::{self, TILE_WIDTH, TileId, bundle_path, tile_path};

mod files;
mod wal;
mod writer;

use files::{read_state, remove_if_exists, write_atomic, write_file};
use wal::{parse_record, read_records, record_len_at};
pub use writer::FsWriter;

/// Read into `buf` from `pos` until it is full or the file ends; the bytes
/// read.
fn read_up_to(f: &File, buf: &mut [u8], pos: u64) -> Result<usize, StorageError> {
    use std::os::unix::fs::FileExt;
    let mut n = 0;
    while n < buf.len() {
        match f.read_at(&mut buf[n..], pos + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(n)
}

/// Full tiles and bundles a replay completed, encoded.
type Done = (HashMap<TileId, Vec<u8>>, HashMap<u64, Vec<u8>>);

/// Replay the records in `data` (read from byte `at` of a WAL file) onto
/// `state`: `(bytes consumed, torn)`. Records wholly inside `state` (a
/// crash between writing `state` and removing the WAL they came from leaves
/// them) are skipped, and so are empty ones (probes) from before it. A
/// record that does not parse or whose root does not match ends the replay
/// as torn if it is the last; before others it is corruption.
fn replay(
    state: &mut TreeState,
    data: &[u8],
    at: u64,
    done: &mut Done,
) -> Result<(usize, bool), StorageError> {
    let mut pos = 0usize;
    while pos < data.len() {
        let Some((len, first, entries, root)) = parse_record(&data[pos..]) else {
            return Ok((pos, true));
        };
        let end = first + entries.len() as u64;
        let skip = if entries.is_empty() {
            first < state.size()
        } else {
            end <= state.size()
        };
        if !skip {
            if first != state.size() {
                return Err(StorageError::Corrupt(format!(
                    "wal record at byte {} starts at {first}, log has {}",
                    at + pos as u64,
                    state.size()
                )));
            }
            let mut next = state.clone();
            let completed = next.integrate(&entries)?;
            if next.root() != root {
                if pos + len == data.len() {
                    return Ok((pos, true));
                }
                return Err(StorageError::Corrupt(format!(
                    "wal record at byte {} does not match its root",
                    at + pos as u64
                )));
            }
            *state = next;
            for (id, hs) in completed.full_tiles {
                done.0.insert(id, tiles::encode_tile(&hs));
            }
            done.1.extend(completed.full_bundles);
        }
        pos += len;
    }
    Ok((pos, false))
}

/// Size of `wal` beyond which a snapshot is taken.
pub const WAL_LIMIT: u64 = 64 * 1024 * 1024;

/// The smallest snapshot threshold [`FsWriter::set_snapshot_threshold`]
/// takes: 1 MiB.
pub const MIN_WAL_LIMIT: u64 = 1024 * 1024;

/// Zeros the writer keeps written ahead of the last record (see the module
/// docs, "Why the WAL is preallocated").
pub const WAL_PREALLOC: u64 = 4 * 1024 * 1024;

/// `wal` starts with this magic and the log size at its snapshot (its
/// generation: a reader that sees another one reloads).
const WAL_MAGIC: &[u8; 8] = b"credwal1";
const WAL_HEADER: u64 = 16;

/// The previous WAL generation while a snapshot is under way.
const WAL_PREV: &str = "wal.prev";
/// A new generation being created or prepared, by the process whose id
/// follows (a crash's leftovers are removed; two processes never write one).
const WAL_NEXT: &str = "wal.next.";

/// This process's name for its next WAL generation.
fn wal_next_name() -> String {
    format!("{WAL_NEXT}{}", std::process::id())
}

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
    /// A snapshot under way: `wal.prev` bridges the `state` file to this
    /// generation (see the module docs, "Snapshots").
    snapshot_due: Option<SnapshotDue>,
}

/// A snapshot begun and not yet finished: the `state` file holds `from`
/// entries, `wal.prev` the batches from there to `state.size()`, the
/// current WAL generation's base. Finishing it writes `state` (once the
/// full tiles and bundles of `[from, state.size())` are durable) and
/// removes `wal.prev`.
#[derive(Clone, Debug)]
pub(super) struct SnapshotDue {
    pub(super) from: u64,
    pub(super) state: TreeState,
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
    /// This process's writer is filling its `wal.next.<pid>` with zeros,
    /// or holds it filled for its next snapshot (a repair then leaves the
    /// file alone).
    preparing: Arc<AtomicBool>,
    /// Serialises refreshes of this view.
    refresh: Arc<Mutex<()>>,
    /// Test hook: while set, this process's writer leaves a due snapshot
    /// unfinished ([`FsLog::hold_snapshots`]).
    hold_snapshots: Arc<AtomicBool>,
    /// Times this view looked at the WAL in full, with a `stat` (tests).
    #[cfg(test)]
    full_looks: Arc<std::sync::atomic::AtomicU64>,
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
            preparing: Arc::default(),
            refresh: Arc::default(),
            hold_snapshots: Arc::default(),
            #[cfg(test)]
            full_looks: Arc::default(),
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

    /// Bytes of the current WAL generation up to its last record, and
    /// whether a snapshot is under way (`wal.prev` still needed), as this
    /// view last saw them. A snapshot that stays due means its files keep
    /// failing to fsync: no new generation begins and the WAL grows.
    pub fn wal_status(&self) -> (u64, bool) {
        let s = self.shared.read().unwrap_or_else(|e| e.into_inner());
        (s.wal_seen, s.snapshot_due.is_some())
    }

    /// Test hook: while `held`, this process's writer begins snapshots but
    /// does not finish them (`wal.prev` stays, as when their files are slow
    /// to fsync), so tests can act while one is due. Debug builds only.
    #[cfg(debug_assertions)]
    #[doc(hidden)]
    pub fn hold_snapshots(&self, held: bool) {
        self.hold_snapshots.store(held, Ordering::Release);
    }

    /// This process's writer (at most one per process).
    pub fn writer(&self) -> Result<FsWriter, StorageError> {
        if self.has_writer.swap(true, Ordering::AcqRel) {
            return Err(StorageError::Locked);
        }
        Ok(FsWriter::new(self.clone()))
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

    /// Whether this view is up to date with `wal` (same generation, no
    /// record where it stopped, nothing pending), found by reading, without
    /// a `stat` of the file: on a file system with multigrain timestamps
    /// (Linux 6.13 on), a stat makes the next write take a fine-grained
    /// time, which dirties the inode, and ext4 then writes the inode with
    /// every `fdatasync` — measured here, a second device write per commit
    /// (`bench/RESULTS.md`). `false` whenever in doubt: the caller then
    /// looks at the file in full.
    fn nothing_new(&self, f: &File) -> Result<bool, StorageError> {
        let mut header = [0u8; WAL_HEADER as usize];
        if read_up_to(f, &mut header, 0)? < header.len() || &header[..8] != WAL_MAGIC {
            return Ok(false);
        }
        let base = u64::from_le_bytes(header[8..16].try_into().unwrap_or_default());
        let s = self.shared.read().unwrap_or_else(|e| e.into_inner());
        if s.base != base
            || s.wal_seen < WAL_HEADER
            || !s.pending_tiles.is_empty()
            || !s.pending_bundles.is_empty()
        {
            return Ok(false);
        }
        // Where the view stopped, a zero length prefix: the preallocated
        // zeros. (Fewer than four bytes there, the file may have been cut
        // short of what the view holds: look in full.)
        let mut next = [0u8; 4];
        let n = read_up_to(f, &mut next, s.wal_seen)?;
        Ok(n == next.len() && next == [0; 4])
    }

    fn sync_view_locked(&self, repair: bool) -> Result<(), StorageError> {
        let wal_path = self.dir.join("wal");
        let mut file = match File::open(&wal_path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e.into()),
        };
        if let Some(f) = &file
            && self.nothing_new(f)?
        {
            return Ok(());
        }
        #[cfg(test)]
        self.full_looks.fetch_add(1, Ordering::Relaxed);
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
        let mut done: Done = Default::default();
        let (mut state, start, due) = {
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
                (s.state.clone(), s.wal_seen, s.snapshot_due.clone())
            } else {
                drop(s);
                let (state, due) = self.state_at(base, repair, &mut done)?;
                (state, body_start, due)
            }
        };
        let data = match file.as_ref() {
            Some(f) if start < len => read_records(f, start, len)?,
            _ => Vec::new(),
        };
        if state.size() < base {
            return Err(StorageError::Corrupt(format!(
                "wal continues a snapshot of {base} entries, state holds {}",
                state.size()
            )));
        }
        let (pos, torn) = replay(&mut state, &data, start, &mut done)?;
        let (mut done_tiles, mut done_bundles) = done;
        let start = start as usize;
        if repair {
            if torn {
                let f = OpenOptions::new().write(true).open(&wal_path)?;
                f.set_len((start + pos) as u64)?;
                f.sync_all()?;
            }
            self.remove_stale_next()?;
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
        s.snapshot_due = due;
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

    /// Remove generations a crash left half made: every `wal.next.<pid>`
    /// but the one this process's writer is preparing. (Another process's
    /// file being prepared goes too; that process then starts its next
    /// generation empty.)
    fn remove_stale_next(&self) -> Result<(), StorageError> {
        let own = wal_next_name();
        let preparing = self.preparing.load(Ordering::Acquire);
        for e in fs::read_dir(&self.dir)? {
            let name = e?.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(WAL_NEXT) && !(preparing && name == own) {
                remove_if_exists(&self.dir.join(name))?;
            }
        }
        Ok(())
    }

    /// The log as of the start of the WAL generation `base`: the `state`
    /// file, and while a snapshot is under way (`state` older than `base`)
    /// the batches of `wal.prev` on top, with the snapshot still due. With
    /// `repair` a `wal.prev` no longer needed (a crash after `state` was
    /// replaced, or before the new generation was renamed into place) is
    /// removed. Without, a `wal.prev` found missing means a snapshot
    /// finished meanwhile: `state` is read again.
    fn state_at(
        &self,
        base: u64,
        repair: bool,
        done: &mut Done,
    ) -> Result<(TreeState, Option<SnapshotDue>), StorageError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut state = read_state(&self.dir)?;
            if state.size() >= base {
                if repair {
                    remove_if_exists(&self.dir.join(WAL_PREV))?;
                }
                return Ok((state, None));
            }
            let prev = match File::open(self.dir.join(WAL_PREV)) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !repair && attempt < 3 => {
                    continue;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(StorageError::Corrupt(format!(
                        "wal continues a snapshot of {base} entries, state holds {} and no wal.prev bridges them",
                        state.size()
                    )));
                }
                Err(e) => return Err(e.into()),
            };
            let from = state.size();
            // A stat of `wal.prev` is harmless: nothing writes it any more.
            let len = prev.metadata()?.len();
            let mut header = [0u8; WAL_HEADER as usize];
            let n = read_up_to(&prev, &mut header, 0)?;
            let prev_base = u64::from_le_bytes(header[8..16].try_into().unwrap_or_default());
            if n < header.len() || &header[..8] != WAL_MAGIC || prev_base > from {
                return Err(StorageError::Corrupt(format!(
                    "wal.prev does not continue the state of {from} entries"
                )));
            }
            let data = read_records(&prev, WAL_HEADER, len)?;
            replay(&mut state, &data, WAL_HEADER, done)?;
            if state.size() != base {
                return Err(StorageError::Corrupt(format!(
                    "wal.prev ends at {} entries, the wal begins at {base}",
                    state.size()
                )));
            }
            let due = SnapshotDue {
                from,
                state: state.clone(),
            };
            return Ok((state, Some(due)));
        }
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

#[cfg(test)]
mod tests;

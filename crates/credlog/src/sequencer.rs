//! The sequencer core and the storage trait it writes through.
//!
//! [`TreeState`] is the right edge of the tree: the [`Frontier`], the
//! rightmost (partial) hash tile of every tile level and the entries of the
//! partial bundle. [`TreeState::integrate`] folds a batch of entries into it
//! in memory and reports the tiles and bundles the batch completed; it does
//! no I/O. [`Sequencer::append`] then hands the result to a [`LogStorage`],
//! which must make the *whole batch* durable with one commit (one fsync, one
//! database transaction) or none of it.
//!
//! Storage is split in two traits: [`LogStorage`] is the single writer
//! (owned by the sequencer), [`TileReader`] the read side that any number of
//! readers share. Backends: [`crate::fs`] (files in a directory) here, and
//! PostgreSQL rows in the gateway.

use crate::merkle::{Frontier, Hash, NodeId};
use crate::tiles::{
    self, MAX_ENTRY_LEN, TILE_HEIGHT, TILE_WIDTH, TileError, TileId, tile_of_node, tile_width,
};

/// Storage failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The operating system refused (disk full, read-only, I/O error …).
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// Stored data violates an invariant of the log.
    #[error("log corrupt: {0}")]
    Corrupt(String),
    /// The backend failed in its own way (e.g. a database error).
    #[error("{0}")]
    Backend(String),
    /// An entry cannot be logged (too large for a bundle).
    #[error("{0}")]
    Entry(#[from] TileError),
    /// Another process holds the log's writer lock.
    #[error("the log is locked by another writer")]
    Locked,
}

/// The right edge of the tree: everything needed to integrate more entries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TreeState {
    frontier: Frontier,
    /// `edge[L]`: hashes of the rightmost, not yet full tile of level `L`.
    edge: Vec<Vec<Hash>>,
    /// The partial bundle, encoded (entries past the last full bundle).
    bundle: Vec<u8>,
    /// Entries in `bundle`.
    bundle_len: usize,
}

/// What one integrated batch changed.
#[derive(Debug, Default)]
pub struct Integrated {
    /// Tiles that became full in this batch, with their 256 hashes.
    pub full_tiles: Vec<(TileId, Vec<Hash>)>,
    /// Bundles that became full, as bundle bytes.
    pub full_bundles: Vec<(u64, Vec<u8>)>,
}

impl TreeState {
    /// The empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuild from stored partial tiles and the partial bundle.
    ///
    /// `edge[L]` must hold exactly [`tiles::tile_width`] hashes of the
    /// rightmost tile of level `L` when that width is below 256 (nothing
    /// otherwise), `bundle` the entries past the last full bundle.
    pub fn from_edge(
        size: u64,
        mut edge: Vec<Vec<Hash>>,
        bundle: Vec<Vec<u8>>,
    ) -> Result<Self, StorageError> {
        let corrupt = |m: String| StorageError::Corrupt(m);
        for (level, hashes) in edge.iter().enumerate() {
            let nodes = size >> (level as u32 * u32::from(TILE_HEIGHT)).min(63);
            let want = if level as u32 * u32::from(TILE_HEIGHT) >= 64 {
                0
            } else {
                nodes % TILE_WIDTH
            };
            if hashes.len() as u64 != want {
                return Err(corrupt(format!(
                    "edge tile at level {level} has {} hashes, size {size} needs {want}",
                    hashes.len()
                )));
            }
        }
        if bundle.len() as u64 != size % TILE_WIDTH {
            return Err(corrupt(format!(
                "partial bundle has {} entries, size {size} needs {}",
                bundle.len(),
                size % TILE_WIDTH
            )));
        }
        let bundle_len = bundle.len();
        let bundle = tiles::encode_bundle(&bundle)?;
        while edge.last().is_some_and(Vec::is_empty) {
            edge.pop();
        }
        let ids = crate::merkle::range_nodes(0, size);
        let mut hashes = Vec::with_capacity(ids.len());
        for id in ids {
            let (t, _, _) = tile_of_node(id);
            let h = edge
                .get(usize::from(t.level))
                .filter(|_| t.index == (size >> (u32::from(t.level) * 8)) / TILE_WIDTH)
                .and_then(|hs| tiles::node_from_tile(id, hs))
                .ok_or_else(|| corrupt(format!("edge tiles do not cover node {id:?}")))?;
            hashes.push(h);
        }
        let frontier = Frontier::from_nodes(size, &hashes).map_err(|e| corrupt(e.to_string()))?;
        Ok(Self {
            frontier,
            edge,
            bundle,
            bundle_len,
        })
    }

    /// Entries in the log.
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// Root hash of the tree.
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }

    /// Hashes of the rightmost partial tile of `level` (empty if none).
    pub fn edge_tile(&self, level: u8) -> &[Hash] {
        self.edge.get(usize::from(level)).map_or(&[], Vec::as_slice)
    }

    /// Every partial edge tile with its id, bottom level first.
    pub fn edge_tiles(&self) -> impl Iterator<Item = (TileId, &[Hash])> + '_ {
        let size = self.size();
        self.edge
            .iter()
            .enumerate()
            .filter(|(_, h)| !h.is_empty())
            .map(move |(l, h)| {
                let level = l as u8;
                (
                    TileId {
                        level,
                        index: (size >> (u32::from(level) * 8)) / TILE_WIDTH,
                    },
                    h.as_slice(),
                )
            })
    }

    /// The partial bundle as bundle bytes (empty when the size is a
    /// multiple of 256).
    pub fn partial_bundle(&self) -> &[u8] {
        &self.bundle
    }

    /// Entries in the partial bundle.
    pub fn partial_bundle_len(&self) -> usize {
        self.bundle_len
    }

    /// Index of the partial bundle (also the next bundle to fill).
    pub fn bundle_index(&self) -> u64 {
        self.size() / TILE_WIDTH
    }

    /// Become `newer`, a later state of the same log, copying only what
    /// changed: the partial bundle grows by appends, so while both are in
    /// the same bundle only its new bytes are copied (a plain clone copies
    /// up to 255 entries per batch).
    pub fn catch_up(&mut self, newer: &Self) {
        let same_bundle = self.bundle_index() == newer.bundle_index()
            && self.size() <= newer.size()
            && self.bundle.len() <= newer.bundle.len();
        // Debug builds also check the prefix (never panicking: a writer
        // must not fail between making a batch durable and publishing it).
        if same_bundle
            && (!cfg!(debug_assertions) || self.bundle[..] == newer.bundle[..self.bundle.len()])
        {
            self.bundle
                .extend_from_slice(&newer.bundle[self.bundle.len()..]);
        } else {
            self.bundle.clone_from(&newer.bundle);
        }
        self.bundle_len = newer.bundle_len;
        self.frontier.clone_from(&newer.frontier);
        self.edge.clone_from(&newer.edge);
    }

    /// Integrate `entries` in order. On error (an entry too large, a full
    /// tree) `self` is unchanged.
    pub fn integrate<E: AsRef<[u8]>>(&mut self, entries: &[E]) -> Result<Integrated, StorageError> {
        if let Some(e) = entries.iter().find(|e| e.as_ref().len() > MAX_ENTRY_LEN) {
            return Err(TileError::EntryTooLarge(e.as_ref().len()).into());
        }
        if self.size().checked_add(entries.len() as u64).is_none() {
            return Err(StorageError::Corrupt("tree is full".into()));
        }
        let mut out = Integrated::default();
        for e in entries {
            let e = e.as_ref();
            let index = self.size();
            let leaf = crate::merkle::leaf_hash(e);
            let done = self
                .frontier
                .push(leaf)
                .map_err(|err| StorageError::Corrupt(err.to_string()))?;
            for (id, h) in done {
                if id.level % TILE_HEIGHT == 0 {
                    self.push_tile_hash(id, h, &mut out);
                }
            }
            tiles::push_bundle_entry(&mut self.bundle, e)?;
            self.bundle_len += 1;
            if self.bundle_len as u64 == TILE_WIDTH {
                let cap = self.bundle.capacity();
                let bytes = std::mem::replace(&mut self.bundle, Vec::with_capacity(cap));
                out.full_bundles.push((index / TILE_WIDTH, bytes));
                self.bundle_len = 0;
            }
        }
        Ok(out)
    }

    fn push_tile_hash(&mut self, id: NodeId, h: Hash, out: &mut Integrated) {
        let level = usize::from(id.level / TILE_HEIGHT);
        if self.edge.len() <= level {
            self.edge.resize_with(level + 1, Vec::new);
        }
        self.edge[level].push(h);
        if self.edge[level].len() as u64 == TILE_WIDTH {
            let full = std::mem::take(&mut self.edge[level]);
            out.full_tiles.push((
                TileId {
                    level: level as u8,
                    index: id.index / TILE_WIDTH,
                },
                full,
            ));
        }
    }
}

/// A batch ready to be made durable.
#[derive(Debug)]
pub struct Batch<'a, E> {
    /// Sequence number of the first entry.
    pub first: u64,
    /// The entries, in order.
    pub entries: &'a [E],
    /// The state after the batch (size, root, partial tiles and bundle).
    pub after: &'a TreeState,
    /// Tiles and bundles the batch completed.
    pub integrated: &'a Integrated,
}

/// What another writer changed, as found by [`LogStorage::begin_since`].
#[derive(Debug)]
pub enum Begun {
    /// The stored log is still the writer's state.
    Current,
    /// Another writer appended `entries`, in order, after the writer's
    /// state: the sequencer integrates them (in memory, writing nothing)
    /// and checks that the result has the stored `root`.
    Appended {
        /// The entries appended since the writer's state, in order.
        entries: Vec<Vec<u8>>,
        /// The stored root after them.
        root: Hash,
    },
    /// Replace the writer's state with this one (read from storage).
    Reload(TreeState),
}

/// The writing side of a log backend. Exactly one per log at a time (per
/// process for the file backend; for a shared database, [`LogStorage::begin`]
/// serialises writers).
pub trait LogStorage: Send {
    /// Read the stored right edge (recovering from a crash if the backend
    /// needs to).
    fn load(&mut self) -> Result<TreeState, StorageError>;

    /// Start a batch. A backend with several writers takes its lock here
    /// and, if the stored size differs from `known_size`, returns the fresh
    /// state, which the batch is then integrated into.
    fn begin(&mut self, known_size: u64) -> Result<Option<TreeState>, StorageError>;

    /// Start a batch, as [`LogStorage::begin`] does, but a backend may
    /// answer a moved log with only the entries appended since
    /// `known_size` ([`Begun::Appended`]) instead of the whole fresh right
    /// edge: catching up on one other writer's batch then reads that batch,
    /// not the partial tiles and bundle. [`Sequencer::append`] calls this;
    /// the default is [`LogStorage::begin`].
    fn begin_since(&mut self, known_size: u64) -> Result<Begun, StorageError> {
        Ok(match self.begin(known_size)? {
            None => Begun::Current,
            Some(fresh) => Begun::Reload(fresh),
        })
    }

    /// Make the whole batch durable with one commit: afterwards the log has
    /// exactly `batch.after.size()` entries, also after a crash at any
    /// instant (a batch is either wholly there or wholly absent).
    fn commit<E: AsRef<[u8]>>(&mut self, batch: &Batch<'_, E>) -> Result<(), StorageError>;

    /// Give up a begun batch (after an error).
    fn abort(&mut self);
}

/// The reading side of a log backend.
pub trait TileReader {
    /// The widest stored version of hash tile `id` (callers take the prefix
    /// they need), `None` if the tile does not exist.
    fn read_tile(&self, id: TileId) -> Result<Option<Vec<u8>>, StorageError>;
    /// The widest stored version of entry bundle `index`.
    fn read_bundle(&self, index: u64) -> Result<Option<Vec<u8>>, StorageError>;
}

/// Read the hashes of tile `id` at exactly `width` (a prefix of what is stored).
pub fn read_tile_at<R: TileReader + ?Sized>(
    r: &R,
    id: TileId,
    width: u64,
) -> Result<Option<Vec<u8>>, StorageError> {
    Ok(r.read_tile(id)?.and_then(|mut b| {
        let want = usize::try_from(width).ok()? * 32;
        (b.len() >= want).then(|| {
            b.truncate(want);
            b
        })
    }))
}

/// Read the first `width` entries of bundle `index` as bundle bytes.
pub fn read_bundle_at<R: TileReader + ?Sized>(
    r: &R,
    index: u64,
    width: u64,
) -> Result<Option<Vec<u8>>, StorageError> {
    let Some(b) = r.read_bundle(index)? else {
        return Ok(None);
    };
    let entries = tiles::decode_bundle(&b).map_err(|e| StorageError::Corrupt(e.to_string()))?;
    let Ok(w) = usize::try_from(width) else {
        return Ok(None);
    };
    if entries.len() < w {
        return Ok(None);
    }
    Ok(Some(tiles::encode_bundle(&entries[..w])?))
}

/// The hash of each node in `ids` (absent when storage lacks it), read
/// through `r` with one read per tile.
pub fn nodes_from<R: TileReader + ?Sized>(
    r: &R,
    ids: &[NodeId],
) -> Result<std::collections::HashMap<NodeId, Hash>, StorageError> {
    let mut tiles = std::collections::HashMap::new();
    for t in tiles::tiles_for(ids) {
        if let Some(b) = r.read_tile(t)? {
            let hs = tiles::decode_tile(&b).map_err(|e| StorageError::Corrupt(e.to_string()))?;
            tiles.insert(t, hs);
        }
    }
    let lookup = tiles::lookup_in(&tiles);
    Ok(ids
        .iter()
        .filter_map(|&id| lookup(id).map(|h| (id, h)))
        .collect())
}

/// Entries `[from, to)` read through `r`, bundle by bundle.
pub fn entries_from<R: TileReader + ?Sized>(
    r: &R,
    from: u64,
    to: u64,
) -> Result<Vec<Vec<u8>>, StorageError> {
    let mut out = Vec::new();
    let mut seq = from;
    while seq < to {
        let index = seq / TILE_WIDTH;
        let b = r
            .read_bundle(index)?
            .ok_or_else(|| StorageError::Corrupt(format!("missing bundle {index}")))?;
        let entries = tiles::decode_bundle(&b).map_err(|e| StorageError::Corrupt(e.to_string()))?;
        let start = (seq % TILE_WIDTH) as usize;
        let end = (to - index * TILE_WIDTH).min(TILE_WIDTH) as usize;
        if entries.len() < end {
            return Err(StorageError::Corrupt(format!("bundle {index} too short")));
        }
        out.extend(entries[start..end].iter().map(|e| e.to_vec()));
        seq = index * TILE_WIDTH + end as u64;
    }
    Ok(out)
}

/// Tile width helper re-exported for storage implementations.
pub fn width_of(id: TileId, size: u64) -> u64 {
    tile_width(id, size)
}

/// The single writer: integrates batches and commits them through `S`.
#[derive(Debug)]
pub struct Sequencer<S> {
    storage: S,
    state: TreeState,
    /// A commit failed after `state` integrated its batch (or catching up
    /// on another writer's entries failed): reload the stored state before
    /// the next one.
    stale: bool,
}

impl<S: LogStorage> Sequencer<S> {
    /// Load the stored state and start sequencing after it.
    pub fn open(mut storage: S) -> Result<Self, StorageError> {
        let state = storage.load()?;
        Ok(Self {
            storage,
            state,
            stale: false,
        })
    }

    /// The current state: durable, unless the last append failed (then
    /// the next append reloads it from storage first).
    pub fn state(&self) -> &TreeState {
        &self.state
    }

    /// The storage backend.
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// Append a batch; returns the sequence number of its first entry once
    /// the whole batch is durable. On error nothing was appended and the
    /// sequencer stays usable. An empty batch is a probe: backends commit
    /// nothing but check that they can.
    ///
    /// The batch is integrated into the state in place (the partial bundle
    /// holds up to 255 entries: copying the state per batch was a large
    /// share of the commit path). If the commit then fails, the stored state
    /// is loaded again before the next batch.
    pub fn append<E: AsRef<[u8]>>(&mut self, entries: &[E]) -> Result<u64, StorageError> {
        if self.stale {
            self.state = self.storage.load()?;
            self.stale = false;
        }
        match self.storage.begin_since(self.state.size())? {
            Begun::Current => {}
            Begun::Reload(fresh) => self.state = fresh,
            Begun::Appended { entries, root } => {
                // Another writer's batches: their tiles and bundles are
                // stored already, so what `integrate` completes is dropped.
                let caught_up = self.state.integrate(&entries).map(drop);
                if caught_up.is_err() || self.state.root() != root {
                    self.storage.abort();
                    self.stale = true;
                    return Err(caught_up.err().unwrap_or_else(|| {
                        StorageError::Corrupt(format!(
                            "the {} entries appended by another writer do not give the stored root",
                            entries.len()
                        ))
                    }));
                }
            }
        }
        let first = self.state.size();
        let integrated = match self.state.integrate(entries) {
            Ok(i) => i,
            Err(e) => {
                // Refused before any change (`integrate` checks the whole
                // batch first): the state is unchanged.
                self.storage.abort();
                return Err(e);
            }
        };
        let batch = Batch {
            first,
            entries,
            after: &self.state,
            integrated: &integrated,
        };
        if let Err(e) = self.storage.commit(&batch) {
            self.storage.abort();
            self.stale = true;
            return Err(e);
        }
        Ok(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle;
    use std::collections::HashMap;

    /// Storage in memory with the same contract, to test the core alone.
    #[derive(Default)]
    struct Mem {
        tiles: HashMap<TileId, Vec<u8>>,
        bundles: HashMap<u64, Vec<u8>>,
        size: u64,
    }

    impl LogStorage for Mem {
        fn load(&mut self) -> Result<TreeState, StorageError> {
            Ok(TreeState::new())
        }
        fn begin(&mut self, _: u64) -> Result<Option<TreeState>, StorageError> {
            Ok(None)
        }
        fn commit<E: AsRef<[u8]>>(&mut self, b: &Batch<'_, E>) -> Result<(), StorageError> {
            for (id, hs) in &b.integrated.full_tiles {
                self.tiles.insert(*id, tiles::encode_tile(hs));
            }
            for (id, hs) in b.after.edge_tiles() {
                self.tiles.insert(id, tiles::encode_tile(hs));
            }
            for (i, bytes) in &b.integrated.full_bundles {
                self.bundles.insert(*i, bytes.clone());
            }
            if !b.after.partial_bundle().is_empty() {
                self.bundles
                    .insert(b.after.bundle_index(), b.after.partial_bundle().to_vec());
            }
            self.size = b.after.size();
            Ok(())
        }
        fn abort(&mut self) {}
    }

    impl TileReader for Mem {
        fn read_tile(&self, id: TileId) -> Result<Option<Vec<u8>>, StorageError> {
            Ok(self.tiles.get(&id).cloned())
        }
        fn read_bundle(&self, index: u64) -> Result<Option<Vec<u8>>, StorageError> {
            Ok(self.bundles.get(&index).cloned())
        }
    }

    #[test]
    fn batches_of_any_shape_give_the_reference_tree() {
        let entries: Vec<Vec<u8>> = (0..70_000u32).map(|i| i.to_be_bytes().to_vec()).collect();
        let leaves: Vec<Hash> = entries.iter().map(|e| merkle::leaf_hash(e)).collect();
        let mut s = Sequencer::open(Mem::default()).unwrap();
        let mut at = 0usize;
        for (k, n) in [1usize, 255, 1, 3000, 0, 66_743]
            .into_iter()
            .cycle()
            .enumerate()
        {
            if at >= entries.len() {
                break;
            }
            let n = n.min(entries.len() - at);
            let first = s.append(&entries[at..at + n]).unwrap();
            assert_eq!(first, at as u64, "batch {k}");
            at += n;
            assert_eq!(
                s.state().root(),
                merkle::root_of(&leaves[..at]),
                "size {at}"
            );
            // The edge rebuilds the same state.
            let st = s.state();
            let edge = (0..4).map(|l| st.edge_tile(l).to_vec()).collect();
            let again = TreeState::from_edge(
                st.size(),
                edge,
                tiles::decode_bundle(st.partial_bundle())
                    .unwrap()
                    .into_iter()
                    .map(<[u8]>::to_vec)
                    .collect(),
            )
            .unwrap();
            assert_eq!(again.root(), st.root());
        }
        let mem = s.storage();
        assert_eq!(mem.size, 70_000);
        // Every node, proof and entry is readable from the tiles.
        let ids: Vec<NodeId> =
            merkle::nodes_for(&merkle::inclusion_ranges(12_345, 70_000).unwrap());
        let nodes = nodes_from(mem, &ids).unwrap();
        let proof = merkle::assemble(&merkle::inclusion_ranges(12_345, 70_000).unwrap(), |id| {
            nodes.get(&id).copied()
        })
        .unwrap();
        assert_eq!(proof, merkle::inclusion_proof(&leaves, 12_345).unwrap());
        assert_eq!(
            entries_from(mem, 250, 520).unwrap(),
            entries[250..520].to_vec()
        );
        assert_eq!(
            read_tile_at(mem, TileId { level: 0, index: 0 }, 3)
                .unwrap()
                .unwrap(),
            tiles::encode_tile(&leaves[..3])
        );
        assert!(
            TreeState::from_edge(5, vec![vec![[0; 32]; 4]], vec![vec![]; 5]).is_err(),
            "wrong edge width"
        );
    }

    /// One log in memory shared by several writers, answering
    /// [`LogStorage::begin_since`] as the PostgreSQL backend does: the
    /// entries appended since the writer's size, or a reload past `limit`.
    #[derive(Default)]
    struct Shared {
        entries: Vec<Vec<u8>>,
        leaves: Vec<Hash>,
        bundles: HashMap<u64, Vec<u8>>,
        /// Answer catch-ups with a wrong root.
        bad_root: bool,
    }

    struct SharedWriter {
        log: std::sync::Arc<std::sync::Mutex<Shared>>,
        limit: u64,
        catch_ups: usize,
        reloads: usize,
    }

    impl LogStorage for SharedWriter {
        fn load(&mut self) -> Result<TreeState, StorageError> {
            let log = self.log.lock().unwrap();
            let mut st = TreeState::new();
            st.integrate(&log.entries)?;
            Ok(st)
        }
        fn begin(&mut self, known: u64) -> Result<Option<TreeState>, StorageError> {
            let size = self.log.lock().unwrap().entries.len() as u64;
            Ok(if size == known {
                None
            } else {
                Some(self.load()?)
            })
        }
        fn begin_since(&mut self, known: u64) -> Result<Begun, StorageError> {
            let log = self.log.lock().unwrap();
            let size = log.entries.len() as u64;
            if size == known {
                return Ok(Begun::Current);
            }
            if size > known && size - known <= self.limit {
                self.catch_ups += 1;
                let mut root = merkle::root_of(&log.leaves);
                if log.bad_root {
                    root[0] ^= 1;
                }
                return Ok(Begun::Appended {
                    entries: log.entries[known as usize..].to_vec(),
                    root,
                });
            }
            drop(log);
            self.reloads += 1;
            Ok(Begun::Reload(self.load()?))
        }
        fn commit<E: AsRef<[u8]>>(&mut self, b: &Batch<'_, E>) -> Result<(), StorageError> {
            let mut log = self.log.lock().unwrap();
            assert_eq!(b.first, log.entries.len() as u64, "contiguous");
            for e in b.entries {
                log.entries.push(e.as_ref().to_vec());
                log.leaves.push(merkle::leaf_hash(e.as_ref()));
            }
            for (i, bytes) in &b.integrated.full_bundles {
                assert!(
                    log.bundles.insert(*i, bytes.clone()).is_none(),
                    "bundle {i} twice"
                );
            }
            Ok(())
        }
        fn abort(&mut self) {}
    }

    #[test]
    fn writers_catch_up_on_each_others_entries() {
        let log = std::sync::Arc::new(std::sync::Mutex::new(Shared::default()));
        let writer = |limit| SharedWriter {
            log: log.clone(),
            limit,
            catch_ups: 0,
            reloads: 0,
        };
        let mut w = [
            Sequencer::open(writer(256)).unwrap(),
            Sequencer::open(writer(256)).unwrap(),
            Sequencer::open(writer(0)).unwrap(),
        ];
        let mut next = 0u32;
        let mut batch = |n: u32| {
            let b: Vec<Vec<u8>> = (next..next + n)
                .map(|i| format!("entry {i}").into_bytes())
                .collect();
            next += n;
            b
        };
        for (k, n) in [1u32, 55, 300, 0, 255, 7, 256, 1, 600, 3, 200, 56, 9, 17]
            .into_iter()
            .cycle()
            .take(60)
            .enumerate()
        {
            let s = &mut w[k % 3];
            let size = log.lock().unwrap().entries.len() as u64;
            assert_eq!(s.append(&batch(n)).unwrap(), size, "batch {k}");
            let shared = log.lock().unwrap();
            assert_eq!(s.state().size(), shared.entries.len() as u64);
            assert_eq!(
                s.state().root(),
                merkle::root_of(&shared.leaves),
                "batch {k}"
            );
        }
        // Caught up by entries (the first two) or reloaded (the third),
        // every writer completed bundles with the right entries.
        let shared = log.lock().unwrap();
        assert!(w[0].storage().catch_ups >= 9 && w[1].storage().catch_ups >= 10);
        assert!(w[0].storage().reloads >= 10, "gaps past the limit reload");
        assert_eq!(w[2].storage().catch_ups, 0);
        let full = shared.entries.len() / 256;
        assert_eq!(shared.bundles.len(), full);
        for i in 0..full {
            let want = tiles::encode_bundle(&shared.entries[i * 256..(i + 1) * 256]).unwrap();
            assert_eq!(shared.bundles[&(i as u64)], want, "bundle {i}");
        }
        drop(shared);

        // A catch-up that does not give the stored root is refused, and the
        // next batch reloads the stored state.
        let [mut a, mut b, _] = w;
        a.append(&batch(1)).unwrap();
        b.append(&batch(3)).unwrap();
        log.lock().unwrap().bad_root = true;
        let before = log.lock().unwrap().entries.len();
        assert!(matches!(a.append(&batch(2)), Err(StorageError::Corrupt(_))));
        assert_eq!(
            log.lock().unwrap().entries.len(),
            before,
            "nothing appended"
        );
        log.lock().unwrap().bad_root = false;
        let reloads = a.storage().reloads;
        assert_eq!(a.append(&batch(2)).unwrap(), before as u64);
        assert_eq!(
            a.storage().reloads,
            reloads,
            "reloaded by load, then current"
        );
        assert_eq!(
            a.state().root(),
            merkle::root_of(&log.lock().unwrap().leaves)
        );
    }

    #[test]
    fn oversized_entries_leave_the_state_alone() {
        let mut s = Sequencer::open(Mem::default()).unwrap();
        s.append(&[b"a".to_vec()]).unwrap();
        let before = s.state().clone();
        assert!(s.append(&[b"b".to_vec(), vec![0; 70_000]]).is_err());
        assert_eq!(s.state(), &before);
        assert_eq!(s.append(&[b"c".to_vec()]).unwrap(), 1);
    }
}

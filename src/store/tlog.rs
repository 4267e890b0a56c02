//! The audit log's storage: C2SP tlog-tiles through the [`credlog`] traits.
//!
//! * SQLite (one node): [`credlog::fs`] files in `audit.log_dir` beside the
//!   database, one `fdatasync` per batch.
//! * PostgreSQL (several nodes): tiles and bundles as rows ([`PgStorage`]),
//!   each batch one transaction under the tree-head lock
//!   (`SELECT … FOR UPDATE` on `tlog_head`), like Tessera's MySQL driver.
//!   The bundle being filled is one `tlog_batches` row per batch (joined
//!   on read). When another node advanced the head since this node's last
//!   batch, the entries it appended are read inside that transaction first
//!   (or, past 256 of them, the right edge), so sequence numbers stay
//!   contiguous across nodes (invariant 10).
//!
//! Everything here reads the log back through tiles: entries from bundles,
//! leaf hashes from level-0 tiles, proof nodes from hash tiles. File reads
//! run on the blocking pool, off the async workers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use credlog::fs::FsLog;
use credlog::merkle::{Hash, NodeId};
use credlog::sequencer::{
    Batch, Begun, LogStorage, Sequencer, StorageError, TileReader, TreeState,
};
use credlog::tiles::{self, TILE_WIDTH, TileId};
use sqlx::{PgPool, Postgres, Transaction};

use super::{Backend, Store, StoreError, StoredAudit, StoredLeaf};

/// Where the log lives.
#[derive(Clone, Debug)]
pub(crate) enum Log {
    /// Files in a directory (SQLite deployments).
    Files(FsLog),
    /// Rows in the PostgreSQL database.
    Postgres,
}

/// The entries of an entry bundle as stored.
fn decode_entries(bundle: &[u8]) -> Result<Vec<&[u8]>, StoreError> {
    tiles::decode_bundle(bundle).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Default log directory of a SQLite database file: `<file>.tlog` beside it.
pub fn default_log_dir(db_file: &Path) -> PathBuf {
    let mut name = db_file.file_name().unwrap_or_default().to_os_string();
    name.push(".tlog");
    db_file.with_file_name(name)
}

impl From<StorageError> for StoreError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Corrupt(m) => StoreError::Corrupt(m),
            other => StoreError::Log(other.to_string()),
        }
    }
}

/// The sequencer's writer, per backend.
pub(crate) enum Writer {
    Files(Sequencer<credlog::fs::FsWriter>),
    Postgres(Sequencer<PgStorage>),
}

impl Writer {
    /// Append a batch; the first entry's sequence number once durable.
    pub(crate) fn append<E: AsRef<[u8]>>(&mut self, entries: &[E]) -> Result<u64, StorageError> {
        match self {
            Writer::Files(s) => s.append(entries),
            Writer::Postgres(s) => s.append(entries),
        }
    }

    /// The embedded log's write-ahead file: bytes of records in the
    /// current generation and whether a snapshot is due (`None` on
    /// PostgreSQL).
    pub(crate) fn wal_status(&self) -> Option<(u64, bool)> {
        match self {
            Writer::Files(s) => Some(s.storage().log().wal_status()),
            Writer::Postgres(_) => None,
        }
    }

    /// Size after the last batch this writer committed.
    pub(crate) fn size(&self) -> u64 {
        match self {
            Writer::Files(s) => s.state().size(),
            Writer::Postgres(s) => s.state().size(),
        }
    }
}

impl Store {
    /// The log directory (file backend only).
    pub fn log_dir(&self) -> Option<&Path> {
        match &self.log {
            Log::Files(f) => Some(f.dir()),
            Log::Postgres => None,
        }
    }

    /// The single writer of this process. Blocking I/O: call it (and use
    /// the writer) off the async threads.
    pub(crate) fn log_writer(&self) -> Result<Writer, StoreError> {
        Ok(match (&self.log, &self.backend) {
            (Log::Files(f), _) => {
                let mut w = f.writer()?;
                if let Some(bytes) = self.wal_snapshot {
                    w.set_snapshot_threshold(bytes);
                }
                Writer::Files(Sequencer::open(w)?)
            }
            (Log::Postgres, Backend::Postgres(pool)) => {
                Writer::Postgres(Sequencer::open(PgStorage::open(pool)?)?)
            }
            (Log::Postgres, Backend::Sqlite(_)) => {
                return Err(StoreError::Corrupt("no log for this backend".into()));
            }
        })
    }

    /// The durable tree head (size, root).
    pub async fn log_head(&self) -> Result<(u64, Hash), StoreError> {
        match (&self.log, &self.backend) {
            (Log::Files(f), _) => {
                let f = f.clone();
                Ok(tokio::task::spawn_blocking(move || f.head())
                    .await
                    .map_err(|e| StoreError::Log(e.to_string()))??)
            }
            (_, Backend::Postgres(p)) => {
                let (size, root): (i64, Vec<u8>) =
                    sqlx::query_as("SELECT size, root FROM tlog_head WHERE id = 1")
                        .fetch_one(p)
                        .await?;
                Ok((size as u64, super::to_hash(&root)?))
            }
            _ => Err(StoreError::Corrupt("no log".into())),
        }
    }

    /// The widest stored version of hash tile `id`.
    pub async fn read_tile(&self, id: TileId) -> Result<Option<Vec<u8>>, StoreError> {
        match (&self.log, &self.backend) {
            (Log::Files(f), _) => {
                let f = f.clone();
                Ok(tokio::task::spawn_blocking(move || f.read_tile(id))
                    .await
                    .map_err(|e| StoreError::Log(e.to_string()))??)
            }
            (_, Backend::Postgres(p)) if id.level == 0 => {
                Ok(read_joined(p, Part::Leaves, id.index).await?)
            }
            (_, Backend::Postgres(p)) => Ok(sqlx::query_scalar(
                "SELECT data FROM tlog_tiles WHERE level = $1 AND idx = $2",
            )
            .bind(i16::from(id.level))
            .bind(id.index as i64)
            .fetch_optional(p)
            .await?),
            _ => Ok(None),
        }
    }

    /// The widest stored version of entry bundle `index`.
    pub async fn read_bundle(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        match (&self.log, &self.backend) {
            (Log::Files(f), _) => {
                let f = f.clone();
                Ok(tokio::task::spawn_blocking(move || f.read_bundle(index))
                    .await
                    .map_err(|e| StoreError::Log(e.to_string()))??)
            }
            (_, Backend::Postgres(p)) => Ok(read_joined(p, Part::Entries, index).await?),
            _ => Ok(None),
        }
    }

    /// Fetch perfect-subtree nodes from the hash tiles, one read per tile.
    /// Missing nodes are simply absent; [`credlog::merkle::assemble`]
    /// reports them.
    pub async fn audit_nodes(&self, ids: &[NodeId]) -> Result<Vec<(NodeId, Hash)>, StoreError> {
        let mut fetched = HashMap::new();
        for t in tiles::tiles_for(ids) {
            if let Some(b) = self.read_tile(t).await? {
                let hs = tiles::decode_tile(&b).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                fetched.insert(t, hs);
            }
        }
        let lookup = tiles::lookup_in(&fetched);
        Ok(ids
            .iter()
            .filter_map(|&id| lookup(id).map(|h| (id, h)))
            .collect())
    }

    /// Entries of `[from, to)` (clamped to the log) with the leaf hashes of
    /// the level-0 tiles, in order.
    pub async fn audit_leaves(&self, from: u64, to: u64) -> Result<Vec<StoredLeaf>, StoreError> {
        self.read_range(from, to, true).await
    }

    /// Audit entries in `[from, to)` by sequence number (clamped to the log).
    pub async fn audit_range(&self, from: u64, to: u64) -> Result<Vec<StoredAudit>, StoreError> {
        Ok(self
            .read_range(from, to, false)
            .await?
            .into_iter()
            .map(|l| StoredAudit {
                seq: l.seq,
                entry: l.entry,
            })
            .collect())
    }

    /// Entries of `[from, to)` (clamped to the log), one bundle read per
    /// 256, with their leaf hashes from the level-0 tiles if `leaves`
    /// (else `leaf` is empty).
    async fn read_range(
        &self,
        from: u64,
        to: u64,
        leaves: bool,
    ) -> Result<Vec<StoredLeaf>, StoreError> {
        let (size, _) = self.log_head().await?;
        let to = to.min(size);
        let mut out = Vec::new();
        let mut seq = from;
        while seq < to {
            let index = seq / TILE_WIDTH;
            let end = to.min((index + 1) * TILE_WIDTH);
            let bundle = self.stored_bundle(index).await?;
            let entries = decode_entries(&bundle)?;
            let tile = match leaves {
                true => Some(
                    self.read_tile(TileId { level: 0, index })
                        .await?
                        .ok_or_else(|| {
                            StoreError::Corrupt(format!("missing hash tile 0/{index}"))
                        })?,
                ),
                false => None,
            };
            for s in seq..end {
                let i = (s - index * TILE_WIDTH) as usize;
                let entry = entries.get(i).ok_or_else(|| {
                    StoreError::Corrupt(format!("bundle {index} lacks entry {s}"))
                })?;
                let leaf = match &tile {
                    Some(t) => t
                        .get(i * 32..i * 32 + 32)
                        .ok_or_else(|| {
                            StoreError::Corrupt(format!("tile 0/{index} lacks leaf {s}"))
                        })?
                        .to_vec(),
                    None => Vec::new(),
                };
                out.push(StoredLeaf {
                    seq: s,
                    entry: entry.to_vec(),
                    leaf,
                });
            }
            seq = end;
        }
        Ok(out)
    }

    /// Entry bundle `index`, which must exist (an entry the log holds is in
    /// one).
    async fn stored_bundle(&self, index: u64) -> Result<Vec<u8>, StoreError> {
        self.read_bundle(index)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("missing entry bundle {index}")))
    }

    /// The entries at `seqs` (sorted ascending), each read back from the log
    /// (one bundle read and decode per bundle they fall in).
    pub async fn audit_entries_at(&self, seqs: &[u64]) -> Result<Vec<StoredAudit>, StoreError> {
        let mut out = Vec::with_capacity(seqs.len());
        let mut rest = seqs;
        while let Some(&first) = rest.first() {
            let index = first / TILE_WIDTH;
            let n = rest
                .iter()
                .take_while(|&&s| s / TILE_WIDTH == index)
                .count();
            let bundle = self.stored_bundle(index).await?;
            let entries = decode_entries(&bundle)?;
            for &seq in &rest[..n] {
                let entry = entries.get((seq % TILE_WIDTH) as usize).ok_or_else(|| {
                    StoreError::Corrupt(format!("index names seq {seq}, not in the log"))
                })?;
                out.push(StoredAudit {
                    seq,
                    entry: entry.to_vec(),
                });
            }
            rest = &rest[n..];
        }
        Ok(out)
    }

    /// The stored entry at `seq`, if any.
    pub async fn audit_entry(&self, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .audit_range(seq, seq.saturating_add(1))
            .await?
            .pop()
            .map(|s| s.entry))
    }
}

/// Which half of a bundle index the partial rows give.
#[derive(Clone, Copy)]
enum Part {
    /// Entry bundle `index` (full: `tlog_bundles`).
    Entries,
    /// Hash tile 0/`index`, the entries' leaf hashes (full: `tlog_tiles`).
    Leaves,
}

/// Bundle `index` or level-0 tile `index`: the full row if there is one,
/// else the partial one joined from the batch rows (migration 0010), read
/// with one statement so that a batch completing the bundle meanwhile
/// cannot make both look absent.
async fn read_joined<'e, X: sqlx::PgExecutor<'e>>(
    ex: X,
    part: Part,
    index: u64,
) -> Result<Option<Vec<u8>>, StoreError> {
    let sql = match part {
        Part::Entries => {
            "SELECT -1::BIGINT, 0, data FROM tlog_bundles WHERE idx = $1 \
             UNION ALL SELECT first, length(leaves) / 32, entries FROM tlog_batches \
             WHERE first >= $1 * 256 AND first < ($1 + 1) * 256 ORDER BY 1"
        }
        Part::Leaves => {
            "SELECT -1::BIGINT, 0, data FROM tlog_tiles WHERE level = 0 AND idx = $1 \
             UNION ALL SELECT first, length(leaves) / 32, leaves FROM tlog_batches \
             WHERE first >= $1 * 256 AND first < ($1 + 1) * 256 ORDER BY 1"
        }
    };
    let rows: Vec<(i64, i32, Vec<u8>)> =
        sqlx::query_as(sql).bind(index as i64).fetch_all(ex).await?;
    let mut rows = rows.into_iter();
    let Some((first, n, data)) = rows.next() else {
        return Ok(None);
    };
    if first < 0 {
        return Ok(Some(data));
    }
    let mut at = index * TILE_WIDTH;
    let mut out = Vec::new();
    for (first, n, data) in std::iter::once((first, n, data)).chain(rows) {
        if first as u64 != at {
            return Err(StoreError::Corrupt(format!(
                "batch rows of bundle {index}: one starts at {first}, expected {at}"
            )));
        }
        at += n as u64;
        out.extend_from_slice(&data);
    }
    Ok(Some(out))
}

/// PostgreSQL rows behind [`LogStorage`]. Runs on the sequencer's thread,
/// over a connection of its own driven by a single-threaded runtime of its
/// own ([`PgStorage::open`]).
///
/// Why not the gateway's runtime and pool: a commit is four or five round
/// trips under the tree-head lock, and on the shared runtime each reply
/// was noticed only when a worker busy with requests next polled the I/O
/// driver. Under load that, not PostgreSQL, was most of a commit
/// (`bench/RESULTS.md`, "PostgreSQL: the writer's own runtime").
///
/// A batch costs O(1) rows: its entries (and their leaf hashes) in the
/// partial bundle are one `tlog_batches` row, and the head row is updated.
/// Only when it fills a bundle does it write the full bundle and level-0
/// tile (and any upper tile that changed) and delete that bundle's batch
/// rows. A node whose head moved reads the other nodes' batch rows since
/// its own size ([`Begun::Appended`]) rather than the whole right edge.
pub(crate) struct PgStorage {
    /// One connection, bound to `rt`.
    pool: PgPool,
    /// `None` only while dropping.
    rt: Option<tokio::runtime::Runtime>,
    tx: Option<Transaction<'static, Postgres>>,
}

impl PgStorage {
    /// A writer connected like `gateway_pool`, on a runtime of its own.
    /// Blocking: call it off the async threads.
    fn open(gateway_pool: &PgPool) -> Result<Self, StorageError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("credgate-audit-pg")
            .build()
            .map_err(|e| {
                StorageError::Backend(format!("cannot start the log writer's runtime: {e}"))
            })?;
        let options = (*gateway_pool.connect_options()).clone();
        let pool = rt
            .block_on(
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(1)
                    .min_connections(0)
                    .acquire_timeout(std::time::Duration::from_secs(10))
                    .after_release(|conn, _| {
                        Box::pin(async move { Ok(!sqlx::Connection::is_in_transaction(conn)) })
                    })
                    .connect_with(options),
            )
            .map_err(db)?;
        Ok(PgStorage {
            pool,
            rt: Some(rt),
            tx: None,
        })
    }

    fn rt(&self) -> &tokio::runtime::Runtime {
        self.rt.as_ref().expect("the runtime lives until drop")
    }
}

impl Drop for PgStorage {
    fn drop(&mut self) {
        // Without blocking: a writer may be dropped on an async thread
        // (where dropping a runtime the usual way panics). What sqlx spawns
        // while letting go of an open transaction's connection goes to this
        // runtime, which is stopped without running it; the server rolls
        // the transaction back when the connection closes.
        if let Some(rt) = self.rt.take() {
            {
                let _on = rt.enter();
                self.tx.take();
            }
            rt.shutdown_background();
        }
    }
}

/// Largest gap caught up by reading the entries appended since this node's
/// last batch; past it the right edge is reloaded (at most 255 entries and
/// a tile per level).
const CATCH_UP_MAX: u64 = TILE_WIDTH;

fn db(e: sqlx::Error) -> StorageError {
    StorageError::Backend(format!("database: {e}"))
}

fn store_err(e: StoreError) -> StorageError {
    match e {
        StoreError::Corrupt(m) => StorageError::Corrupt(m),
        other => StorageError::Backend(other.to_string()),
    }
}

async fn load_edge(
    tx: &mut Transaction<'static, Postgres>,
    size: u64,
    root: &[u8],
) -> Result<TreeState, StorageError> {
    let mut edge = vec![Vec::new(); usize::from(tiles::MAX_TILE_LEVEL) + 1];
    let mut bundle = Vec::new();
    for (id, width) in tiles::edge_tiles(size) {
        let w = width as usize;
        let data = if id.level == 0 {
            let entries = read_joined(&mut **tx, Part::Entries, id.index)
                .await
                .map_err(store_err)?
                .ok_or_else(|| StorageError::Corrupt("missing partial bundle".into()))?;
            let entries =
                tiles::decode_bundle(&entries).map_err(|e| StorageError::Corrupt(e.to_string()))?;
            if entries.len() < w {
                return Err(StorageError::Corrupt("partial bundle too short".into()));
            }
            bundle = entries[..w].iter().map(|e| e.to_vec()).collect();
            read_joined(&mut **tx, Part::Leaves, id.index)
                .await
                .map_err(store_err)?
        } else {
            sqlx::query_scalar("SELECT data FROM tlog_tiles WHERE level = $1 AND idx = $2")
                .bind(i16::from(id.level))
                .bind(id.index as i64)
                .fetch_optional(&mut **tx)
                .await
                .map_err(db)?
        };
        let data =
            data.ok_or_else(|| StorageError::Corrupt(format!("missing edge tile {id:?}")))?;
        let hs = tiles::decode_tile(&data).map_err(|e| StorageError::Corrupt(e.to_string()))?;
        if hs.len() < w {
            return Err(StorageError::Corrupt(format!(
                "edge tile {id:?} too narrow"
            )));
        }
        edge[usize::from(id.level)] = hs[..w].to_vec();
    }
    let state = TreeState::from_edge(size, edge, bundle)?;
    if root != state.root() {
        return Err(StorageError::Corrupt(
            "stored root does not match the tiles".into(),
        ));
    }
    Ok(state)
}

/// The entries `[known, size)`: the full bundles past `known`'s and the
/// batch rows from `known` on (a committed size always ends a batch row).
/// `None` if the rows do not cover exactly that range.
async fn entries_since(
    tx: &mut Transaction<'static, Postgres>,
    known: u64,
    size: u64,
) -> Result<Option<Vec<Vec<u8>>>, StorageError> {
    let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
        "SELECT idx * 256, data FROM tlog_bundles WHERE idx >= $1 AND idx < $2 \
         UNION ALL SELECT first, entries FROM tlog_batches WHERE first >= $3 ORDER BY 1",
    )
    .bind((known / TILE_WIDTH) as i64)
    .bind((size / TILE_WIDTH) as i64)
    .bind(known as i64)
    .fetch_all(&mut **tx)
    .await
    .map_err(db)?;
    let mut out = Vec::with_capacity((size - known) as usize);
    let mut at = known;
    for (first, data) in rows {
        let first = first as u64;
        if first > at {
            return Ok(None);
        }
        let entries =
            tiles::decode_bundle(&data).map_err(|e| StorageError::Corrupt(e.to_string()))?;
        let skip = (at - first) as usize;
        for e in entries.iter().skip(skip) {
            if at == size {
                break;
            }
            out.push(e.to_vec());
            at += 1;
        }
    }
    Ok((at == size).then_some(out))
}

async fn lock_head(
    tx: &mut Transaction<'static, Postgres>,
) -> Result<(u64, Vec<u8>), StorageError> {
    let (size, root): (i64, Vec<u8>) =
        sqlx::query_as("SELECT size, root FROM tlog_head WHERE id = 1 FOR UPDATE")
            .fetch_one(&mut **tx)
            .await
            .map_err(db)?;
    Ok((size as u64, root))
}

/// The rows one batch writes (see [`PgStorage`]).
struct BatchRows {
    /// Tiles to upsert: the full ones, and partial tiles above level 0
    /// that the batch changed.
    tiles: Vec<(TileId, Vec<u8>)>,
    /// Full bundles.
    bundles: Vec<(u64, Vec<u8>)>,
    /// The batch's entries in the partial bundle: (first seq, bundle
    /// bytes, leaf hashes).
    partial: Option<(u64, Vec<u8>, Vec<u8>)>,
    size: u64,
    root: Vec<u8>,
}

impl BatchRows {
    fn of<E: AsRef<[u8]>>(batch: &Batch<'_, E>) -> Result<Self, StorageError> {
        let after = batch.after;
        let size = after.size();
        let mut tiles_rows: Vec<(TileId, Vec<u8>)> = batch
            .integrated
            .full_tiles
            .iter()
            .map(|(id, hs)| (*id, tiles::encode_tile(hs)))
            .collect();
        // A partial tile of level L holds nodes of height 8L: it changed iff
        // the batch completed one, i.e. `first >> 8L` moved.
        tiles_rows.extend(
            after
                .edge_tiles()
                .filter(|(id, _)| {
                    let shift = u32::from(id.level) * u32::from(tiles::TILE_HEIGHT);
                    id.level > 0 && batch.first >> shift != size >> shift
                })
                .map(|(id, hs)| (id, tiles::encode_tile(hs))),
        );
        let bundle_start = after.bundle_index() * TILE_WIDTH;
        let start = batch.first.max(bundle_start);
        let partial = if size > start {
            let leaves = after.edge_tile(0);
            if leaves.len() != after.partial_bundle_len() {
                return Err(StorageError::Corrupt(
                    "partial tile and bundle differ in width".into(),
                ));
            }
            let skip = (start - batch.first) as usize;
            let entries = tiles::encode_bundle(batch.entries.get(skip..).unwrap_or_default())?;
            let leaves = tiles::encode_tile(&leaves[(start - bundle_start) as usize..]);
            Some((start, entries, leaves))
        } else {
            None
        };
        Ok(Self {
            tiles: tiles_rows,
            bundles: batch.integrated.full_bundles.clone(),
            partial,
            size,
            root: after.root().to_vec(),
        })
    }

    async fn write(self, tx: &mut Transaction<'static, Postgres>) -> Result<(), sqlx::Error> {
        for chunk in self.tiles.chunks(200) {
            let mut qb = sqlx::QueryBuilder::new("INSERT INTO tlog_tiles (level, idx, data) ");
            qb.push_values(chunk, |mut b, (id, data)| {
                b.push_bind(i16::from(id.level))
                    .push_bind(id.index as i64)
                    .push_bind(data.as_slice());
            });
            qb.push(" ON CONFLICT (level, idx) DO UPDATE SET data = EXCLUDED.data");
            qb.build().execute(&mut **tx).await?;
        }
        for chunk in self.bundles.chunks(100) {
            let mut qb = sqlx::QueryBuilder::new("INSERT INTO tlog_bundles (idx, data) ");
            qb.push_values(chunk, |mut b, (idx, data)| {
                b.push_bind(*idx as i64).push_bind(data.as_slice());
            });
            qb.push(" ON CONFLICT (idx) DO UPDATE SET data = EXCLUDED.data");
            qb.build().execute(&mut **tx).await?;
        }
        if !self.bundles.is_empty() {
            // The completed bundles' batch rows.
            sqlx::query("DELETE FROM tlog_batches WHERE first < $1")
                .bind(((self.size / TILE_WIDTH) * TILE_WIDTH) as i64)
                .execute(&mut **tx)
                .await?;
        }
        match self.partial {
            // The usual batch: one statement, two rows.
            Some((first, entries, leaves)) => sqlx::query(
                "WITH b AS (INSERT INTO tlog_batches (first, entries, leaves) \
                 VALUES ($3, $4, $5)) \
                 UPDATE tlog_head SET size = $1, root = $2 WHERE id = 1",
            )
            .bind(self.size as i64)
            .bind(self.root)
            .bind(first as i64)
            .bind(entries)
            .bind(leaves),
            None => sqlx::query("UPDATE tlog_head SET size = $1, root = $2 WHERE id = 1")
                .bind(self.size as i64)
                .bind(self.root),
        }
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

impl PgStorage {
    /// Open the batch's transaction and lock the head; if it moved, catch
    /// up by the entries since `known_size` (if `catch_up` and the gap is
    /// small) or reload the right edge.
    fn begin_locked(&mut self, known_size: u64, catch_up: bool) -> Result<Begun, StorageError> {
        let pool = self.pool.clone();
        let (tx, begun) = self.rt().block_on(async move {
            let mut tx = pool.begin().await.map_err(db)?;
            let (size, root) = lock_head(&mut tx).await?;
            if size == known_size {
                return Ok((tx, Begun::Current));
            }
            let since = if catch_up && size > known_size && size - known_size <= CATCH_UP_MAX {
                entries_since(&mut tx, known_size, size).await?
            } else {
                None
            };
            let begun = match (since, super::to_hash(&root)) {
                (Some(entries), Ok(root)) => Begun::Appended { entries, root },
                _ => Begun::Reload(load_edge(&mut tx, size, &root).await?),
            };
            Ok::<_, StorageError>((tx, begun))
        })?;
        self.tx = Some(tx);
        Ok(begun)
    }
}

impl LogStorage for PgStorage {
    fn load(&mut self) -> Result<TreeState, StorageError> {
        let pool = self.pool.clone();
        self.rt().block_on(async move {
            let mut tx = pool.begin().await.map_err(db)?;
            let (size, root) = lock_head(&mut tx).await?;
            let state = load_edge(&mut tx, size, &root).await?;
            tx.rollback().await.map_err(db)?;
            Ok(state)
        })
    }

    fn begin(&mut self, known_size: u64) -> Result<Option<TreeState>, StorageError> {
        Ok(match self.begin_locked(known_size, false)? {
            Begun::Current => None,
            Begun::Reload(state) => Some(state),
            Begun::Appended { .. } => {
                return Err(StorageError::Backend("catch-up not asked for".into()));
            }
        })
    }

    fn begin_since(&mut self, known_size: u64) -> Result<Begun, StorageError> {
        self.begin_locked(known_size, true)
    }

    fn commit<E: AsRef<[u8]>>(&mut self, batch: &Batch<'_, E>) -> Result<(), StorageError> {
        let mut tx = self
            .tx
            .take()
            .ok_or_else(|| StorageError::Backend("commit without begin".into()))?;
        let rows = match BatchRows::of(batch) {
            Ok(r) => r,
            Err(e) => {
                let _ = self.rt().block_on(tx.rollback());
                return Err(e);
            }
        };
        self.rt().block_on(async move {
            rows.write(&mut tx).await.map_err(db)?;
            tx.commit().await.map_err(db)
        })
    }

    fn abort(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = self.rt().block_on(tx.rollback());
        }
    }
}

impl Store {
    /// Watch the log size after this process's durable batches.
    pub fn subscribe_durable(&self) -> tokio::sync::watch::Receiver<u64> {
        self.audit.durable.subscribe()
    }

    /// Called by the sequencer after each durable batch.
    pub(crate) fn notify_durable(&self, size: u64) {
        self.audit.durable.send_replace(size);
    }
}

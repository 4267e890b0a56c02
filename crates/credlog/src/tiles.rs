//! The C2SP `tlog-tiles` layout: hash tiles, entry bundles and their paths.
//!
//! * A **hash tile** at tile level `L`, index `N` holds up to 256 consecutive
//!   hashes of tree level `8·L` (level 0: leaf hashes), nodes
//!   `[N·256, N·256 + W)`, concatenated (32 bytes each). It is *full* at
//!   width 256 and never changes after that; a *partial* tile of width
//!   `W < 256` is the prefix of what the full tile will be.
//! * An **entry bundle** `N` holds the entries `[N·256, N·256 + W)`, each as
//!   a big-endian `uint16` length followed by the entry bytes (the canonical
//!   form of [`crate::entry::AuditEntry`]).
//! * Paths: `tile/<L>/<N>`, `tile/entries/<N>`, with `.p/<W>` appended for a
//!   partial one, and `checkpoint`. `<N>` is split into zero-padded
//!   three-digit elements, all but the last prefixed with `x`: 1234067 is
//!   `x001/x234/067`, 5 is `005`.
//!
//! The width of every tile follows from the tree size alone
//! ([`tile_width`], [`bundle_width`]), so a client that has verified a
//! checkpoint knows exactly which resources to fetch.

use std::collections::HashMap;

use crate::merkle::{Hash, NodeId, node_hash};

/// Tree levels per tile level.
pub const TILE_HEIGHT: u8 = 8;
/// Hashes in a full tile, entries in a full bundle.
pub const TILE_WIDTH: u64 = 256;
/// Largest entry a bundle can hold (the length prefix is a `uint16`).
pub const MAX_ENTRY_LEN: usize = u16::MAX as usize;
/// Highest tile level a `u64`-sized tree uses (levels 0..=56 of the tree).
pub const MAX_TILE_LEVEL: u8 = 7;

/// A hash tile's address (without width).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TileId {
    /// Tile level: the tile holds tree level `8 · level`.
    pub level: u8,
    /// Index among the tiles of that level.
    pub index: u64,
}

/// A resource of the layout, as addressed by a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    /// `checkpoint`.
    Checkpoint,
    /// `tile/<L>/<N>[.p/<W>]`; `width` is 256 for a full tile.
    Tile {
        /// Address.
        id: TileId,
        /// 1..=256.
        width: u16,
    },
    /// `tile/entries/<N>[.p/<W>]`; `width` is 256 for a full bundle.
    Bundle {
        /// Bundle index.
        index: u64,
        /// 1..=256.
        width: u16,
    },
}

/// Why tile bytes or a path were refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TileError {
    /// A path that is not part of the layout (or not canonical).
    #[error("not a tlog-tiles path")]
    BadPath,
    /// A hash tile whose length is not a multiple of 32 or exceeds 256 hashes.
    #[error("hash tile of {0} bytes")]
    BadTileLength(usize),
    /// A bundle that does not parse as length-prefixed entries.
    #[error("malformed entry bundle")]
    BadBundle,
    /// An entry longer than [`MAX_ENTRY_LEN`].
    #[error("entry of {0} bytes does not fit a bundle")]
    EntryTooLarge(usize),
}

/// `x001/x234/067` encoding of an index.
pub fn index_path(n: u64) -> String {
    let mut groups = Vec::new();
    let mut rest = n;
    loop {
        groups.push(rest % 1000);
        rest /= 1000;
        if rest == 0 {
            break;
        }
    }
    let mut out = String::with_capacity(groups.len() * 5);
    for (i, g) in groups.iter().rev().enumerate() {
        if i + 1 < groups.len() {
            out.push_str(&format!("x{g:03}/"));
        } else {
            out.push_str(&format!("{g:03}"));
        }
    }
    out
}

fn partial_suffix(width: u64) -> String {
    if width >= TILE_WIDTH {
        String::new()
    } else {
        format!(".p/{width}")
    }
}

/// `tile/<L>/<N>[.p/<W>]`.
pub fn tile_path(id: TileId, width: u64) -> String {
    format!(
        "tile/{}/{}{}",
        id.level,
        index_path(id.index),
        partial_suffix(width)
    )
}

/// `tile/entries/<N>[.p/<W>]`.
pub fn bundle_path(index: u64, width: u64) -> String {
    format!(
        "tile/entries/{}{}",
        index_path(index),
        partial_suffix(width)
    )
}

impl Resource {
    /// Parse a path relative to the log's root (no leading `/`). Only the
    /// canonical spelling is accepted, so every resource has one name.
    pub fn parse(path: &str) -> Result<Self, TileError> {
        if path == "checkpoint" {
            return Ok(Self::Checkpoint);
        }
        let rest = path.strip_prefix("tile/").ok_or(TileError::BadPath)?;
        let (kind, rest) = rest.split_once('/').ok_or(TileError::BadPath)?;
        let (index_part, width) = match rest.split_once(".p/") {
            Some((i, w)) => {
                let w = parse_decimal(w).ok_or(TileError::BadPath)?;
                if !(1..TILE_WIDTH).contains(&w) {
                    return Err(TileError::BadPath);
                }
                (i, w as u16)
            }
            None => (rest, TILE_WIDTH as u16),
        };
        let index = parse_index(index_part).ok_or(TileError::BadPath)?;
        if kind == "entries" {
            return Ok(Self::Bundle { index, width });
        }
        let level = parse_decimal(kind).ok_or(TileError::BadPath)?;
        if level > u64::from(MAX_TILE_LEVEL) {
            return Err(TileError::BadPath);
        }
        Ok(Self::Tile {
            id: TileId {
                level: level as u8,
                index,
            },
            width,
        })
    }

    /// The canonical path (inverse of [`Resource::parse`]).
    pub fn path(&self) -> String {
        match *self {
            Self::Checkpoint => "checkpoint".to_owned(),
            Self::Tile { id, width } => tile_path(id, u64::from(width)),
            Self::Bundle { index, width } => bundle_path(index, u64::from(width)),
        }
    }

    /// Full tiles and bundles never change: clients may cache them forever.
    pub fn is_immutable(&self) -> bool {
        match *self {
            Self::Checkpoint => false,
            Self::Tile { width, .. } | Self::Bundle { width, .. } => u64::from(width) == TILE_WIDTH,
        }
    }
}

/// Decimal without sign or leading zeros (but "0").
fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if s.len() > 1 && s.starts_with('0') {
        return None;
    }
    s.parse().ok()
}

/// Inverse of [`index_path`], canonical spelling only.
fn parse_index(s: &str) -> Option<u64> {
    let parts: Vec<&str> = s.split('/').collect();
    let (last, init) = parts.split_last()?;
    let mut n: u64 = 0;
    for (i, p) in init.iter().enumerate() {
        let digits = p.strip_prefix('x')?;
        let g = three_digits(digits)?;
        if i == 0 && g == 0 {
            return None; // leading zero group: not canonical
        }
        n = n.checked_mul(1000)?.checked_add(g)?;
    }
    let g = three_digits(last)?;
    n.checked_mul(1000)?.checked_add(g)
}

fn three_digits(s: &str) -> Option<u64> {
    (s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// Width of hash tile `id` in a tree of `size` leaves (0: it does not exist yet).
pub fn tile_width(id: TileId, size: u64) -> u64 {
    let shift = u32::from(id.level) * u32::from(TILE_HEIGHT);
    let nodes = if shift >= 64 { 0 } else { size >> shift };
    let start = id.index.saturating_mul(TILE_WIDTH);
    if id.index > u64::MAX / TILE_WIDTH || nodes <= start {
        0
    } else {
        (nodes - start).min(TILE_WIDTH)
    }
}

/// Width of entry bundle `index` in a tree of `size` leaves (0: not yet).
pub fn bundle_width(index: u64, size: u64) -> u64 {
    tile_width(TileId { level: 0, index }, size)
}

/// Concatenate hashes into tile bytes.
pub fn encode_tile(hashes: &[Hash]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hashes.len() * 32);
    for h in hashes {
        out.extend_from_slice(h);
    }
    out
}

/// Split tile bytes into hashes.
pub fn decode_tile(bytes: &[u8]) -> Result<Vec<Hash>, TileError> {
    if !bytes.len().is_multiple_of(32) || bytes.len() > 32 * TILE_WIDTH as usize {
        return Err(TileError::BadTileLength(bytes.len()));
    }
    Ok(bytes
        .chunks_exact(32)
        .map(|c| {
            let mut h = [0u8; 32];
            h.copy_from_slice(c);
            h
        })
        .collect())
}

/// Append one entry to bundle bytes.
pub fn push_bundle_entry(out: &mut Vec<u8>, entry: &[u8]) -> Result<(), TileError> {
    let len = u16::try_from(entry.len()).map_err(|_| TileError::EntryTooLarge(entry.len()))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(entry);
    Ok(())
}

/// Encode entries as a bundle.
pub fn encode_bundle<E: AsRef<[u8]>>(entries: &[E]) -> Result<Vec<u8>, TileError> {
    let mut out = Vec::with_capacity(entries.iter().map(|e| e.as_ref().len() + 2).sum());
    for e in entries {
        push_bundle_entry(&mut out, e.as_ref())?;
    }
    Ok(out)
}

/// Split a bundle into its entries (at most 256).
pub fn decode_bundle(bytes: &[u8]) -> Result<Vec<&[u8]>, TileError> {
    match decode_bundle_unbounded(bytes) {
        Some(v) if v.len() as u64 <= TILE_WIDTH => Ok(v),
        _ => Err(TileError::BadBundle),
    }
}

/// Split length-prefixed entries, any number of them (`None`: malformed).
pub fn decode_bundle_unbounded(mut bytes: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let len = usize::from(u16::from_be_bytes([*bytes.first()?, *bytes.get(1)?]));
        let rest = &bytes[2..];
        out.push(rest.get(..len)?);
        bytes = &rest[len..];
    }
    Some(out)
}

/// Where perfect node `id` lives: the tile holding its leftmost descendant
/// at the tile's base level, that descendant's offset, and how many
/// consecutive tile hashes it covers (`2^(level mod 8)`).
pub fn tile_of_node(id: NodeId) -> (TileId, usize, usize) {
    let tile_level = id.level / TILE_HEIGHT;
    let r = u32::from(id.level % TILE_HEIGHT);
    let base = id.index << r; // index of the first covered node at level 8·L
    (
        TileId {
            level: tile_level,
            index: base / TILE_WIDTH,
        },
        (base % TILE_WIDTH) as usize,
        1usize << r,
    )
}

/// Hash of a perfect subtree over `hashes` (length a power of two).
fn perfect_root(hashes: &[Hash]) -> Hash {
    let mut level: Vec<Hash> = hashes.to_vec();
    while level.len() > 1 {
        level = level
            .chunks_exact(2)
            .map(|p| node_hash(&p[0], &p[1]))
            .collect();
    }
    level[0]
}

/// Hash of node `id` from the hashes of its tile (any width at least
/// covering it); `None` when the tile is too narrow.
pub fn node_from_tile(id: NodeId, tile: &[Hash]) -> Option<Hash> {
    let (_, offset, count) = tile_of_node(id);
    let slice = tile.get(offset..offset.checked_add(count)?)?;
    Some(perfect_root(slice))
}

/// The distinct tiles holding `ids`, sorted.
pub fn tiles_for(ids: &[NodeId]) -> Vec<TileId> {
    let mut t: Vec<TileId> = ids.iter().map(|&id| tile_of_node(id).0).collect();
    t.sort_unstable();
    t.dedup();
    t
}

/// Node lookup over fetched tiles, for [`crate::merkle::assemble`].
pub fn lookup_in(tiles: &HashMap<TileId, Vec<Hash>>) -> impl Fn(NodeId) -> Option<Hash> + '_ {
    move |id| node_from_tile(id, tiles.get(&tile_of_node(id).0)?)
}

/// Hash tiles (id, width) a client needs to hold to rebuild the root of a
/// tree of `size` leaves: for each tile level, the rightmost (possibly
/// partial) tile.
pub fn edge_tiles(size: u64) -> Vec<(TileId, u64)> {
    let mut out = Vec::new();
    for level in 0..=MAX_TILE_LEVEL {
        let shift = u32::from(level) * u32::from(TILE_HEIGHT);
        let nodes = size >> shift;
        if nodes == 0 {
            break;
        }
        let w = nodes % TILE_WIDTH;
        if w > 0 {
            out.push((
                TileId {
                    level,
                    index: nodes / TILE_WIDTH,
                },
                w,
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{self, Frontier, leaf_hash};

    #[test]
    fn index_encoding_is_the_c2sp_one() {
        assert_eq!(index_path(0), "000");
        assert_eq!(index_path(5), "005");
        assert_eq!(index_path(999), "999");
        assert_eq!(index_path(1000), "x001/000");
        assert_eq!(index_path(1_234_067), "x001/x234/067");
        assert_eq!(index_path(u64::MAX), "x018/x446/x744/x073/x709/x551/615");
        for n in [0, 1, 999, 1000, 1_234_067, 987_654_321_000, u64::MAX] {
            assert_eq!(parse_index(&index_path(n)), Some(n), "{n}");
        }
        for bad in [
            "",
            "5",
            "0005",
            "x000/005",
            "x1/005",
            "001/002",
            "x001",
            "x001/",
            "/001",
            "00a",
            "x018/x446/x744/x073/x709/x551/616",
        ] {
            assert_eq!(parse_index(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn golden_paths() {
        let t = |level, index| TileId { level, index };
        assert_eq!(tile_path(t(0, 1_234_067), 256), "tile/0/x001/x234/067");
        assert_eq!(tile_path(t(0, 1_234_067), 8), "tile/0/x001/x234/067.p/8");
        assert_eq!(tile_path(t(2, 0), 1), "tile/2/000.p/1");
        assert_eq!(bundle_path(1_234_067, 256), "tile/entries/x001/x234/067");
        assert_eq!(bundle_path(3, 255), "tile/entries/003.p/255");
        for p in [
            "checkpoint",
            "tile/0/x001/x234/067",
            "tile/0/x001/x234/067.p/8",
            "tile/7/000.p/1",
            "tile/entries/003.p/255",
            "tile/entries/x001/000",
        ] {
            assert_eq!(Resource::parse(p).unwrap().path(), p);
        }
        for bad in [
            "tile/8/000",
            "tile/0/000.p/0",
            "tile/0/000.p/256",
            "tile/0/000.p/08",
            "tile/01/000",
            "tile/entries/000.p/",
            "tile/0/0",
            "tile/0/000/",
            "tiles/0/000",
            "/checkpoint",
            "tile/0/../000",
        ] {
            assert!(Resource::parse(bad).is_err(), "{bad}");
        }
        assert!(Resource::parse("tile/0/000").unwrap().is_immutable());
        assert!(!Resource::parse("tile/0/000.p/3").unwrap().is_immutable());
        assert!(!Resource::Checkpoint.is_immutable());
    }

    #[test]
    fn widths_follow_from_the_size() {
        let t = |level, index| TileId { level, index };
        assert_eq!(tile_width(t(0, 0), 0), 0);
        assert_eq!(tile_width(t(0, 0), 5), 5);
        assert_eq!(tile_width(t(0, 0), 300), 256);
        assert_eq!(tile_width(t(0, 1), 300), 44);
        assert_eq!(tile_width(t(1, 0), 300), 1);
        assert_eq!(tile_width(t(1, 0), 255), 0);
        assert_eq!(tile_width(t(1, 0), 256 * 256 + 1), 256);
        assert_eq!(tile_width(t(2, 0), 256 * 256 + 1), 1);
        assert_eq!(tile_width(t(7, 0), u64::MAX), 255);
        assert_eq!(tile_width(t(0, u64::MAX), u64::MAX), 0);
        assert_eq!(bundle_width(1, 513), 256);
        assert_eq!(bundle_width(2, 513), 1);
        assert_eq!(
            edge_tiles(256 * 256 + 3 * 256 + 7),
            vec![(t(0, 259), 7), (t(1, 1), 3), (t(2, 0), 1)]
        );
        assert_eq!(edge_tiles(512), vec![(t(1, 0), 2)]);
    }

    /// Tile and bundle bytes are public formats. Pinned here by digest of
    /// fixed inputs.
    #[test]
    fn golden_tile_and_bundle_bytes() {
        let entries: Vec<Vec<u8>> = (0..3u8).map(|i| vec![b'a' + i; usize::from(i)]).collect();
        let b = encode_bundle(&entries).unwrap();
        assert_eq!(b, [0, 0, 0, 1, b'b', 0, 2, b'c', b'c']);
        assert_eq!(
            decode_bundle(&b).unwrap(),
            vec![&b""[..], &b"b"[..], &b"cc"[..]]
        );
        let big = vec![b'x'; 300];
        let b2 = encode_bundle(&[&big[..]]).unwrap();
        assert_eq!(&b2[..2], &[0x01, 0x2c]);
        assert!(encode_bundle(&[vec![0u8; 65_536]]).is_err());
        assert!(encode_bundle(&[vec![0u8; 65_535]]).is_ok());
        for bad in [&[0u8][..], &[0, 2, 1], &[1, 0]] {
            assert_eq!(decode_bundle(bad), Err(TileError::BadBundle));
        }
        let leaves: Vec<Hash> = (0..3u8).map(|i| leaf_hash(&[i])).collect();
        let tile = encode_tile(&leaves);
        assert_eq!(tile.len(), 96);
        assert_eq!(&tile[32..64], &leaves[1]);
        assert_eq!(decode_tile(&tile).unwrap(), leaves);
        assert!(decode_tile(&tile[..95]).is_err());
        assert!(decode_tile(&vec![0; 257 * 32]).is_err());
    }

    #[test]
    fn nodes_come_out_of_tiles() {
        // 70,000 leaves: two tile levels, partial tiles at both.
        let n = 70_000u64;
        let mut f = Frontier::new();
        let mut all = HashMap::new();
        for i in 0..n {
            for (id, h) in f.push(leaf_hash(&i.to_be_bytes())).unwrap() {
                all.insert(id, h);
            }
        }
        let mut tiles: HashMap<TileId, Vec<Hash>> = HashMap::new();
        let mut ids: Vec<&NodeId> = all.keys().filter(|id| id.level % 8 == 0).collect();
        ids.sort();
        for id in ids {
            let t = TileId {
                level: id.level / 8,
                index: id.index / 256,
            };
            tiles.entry(t).or_default().push(all[id]);
        }
        for (id, h) in &all {
            assert_eq!(lookup_in(&tiles)(*id), Some(*h), "{id:?}");
        }
        let root = merkle::assemble(&[(0, n)], lookup_in(&tiles)).unwrap();
        assert_eq!(root[0], f.root());
        assert_eq!(
            lookup_in(&tiles)(NodeId {
                level: 3,
                index: n / 8
            }),
            None
        );
    }
}

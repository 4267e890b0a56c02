//! RFC 6962 / RFC 9162 Merkle tree math for the audit log, independent of storage.
//!
//! The gateway persists the tree as *perfect subtree nodes*: node `(level L,
//! index i)` is the hash of leaves `[i * 2^L, (i + 1) * 2^L)`. Such a node never
//! changes once its last leaf is appended, so it can be written once and read
//! forever. Everything in this module is therefore split in two steps:
//!
//! 1. *planning* — [`inclusion_ranges`], [`consistency_ranges`], [`range_nodes`]
//!    and [`nodes_for`] say which perfect nodes are needed, so the caller can
//!    fetch them in a single query;
//! 2. *assembly* — [`assemble`] and [`fold_range`] turn the fetched hashes into
//!    proof elements or roots without any I/O.
//!
//! Appending goes through [`Frontier`], which reports every perfect node that a
//! new leaf completes so the caller can insert it. The slice-based functions
//! ([`root_of`], [`inclusion_proof`], [`consistency_proof`]) are a direct,
//! recursive transcription of the RFC used as an independent reference by tests
//! and by the offline verifier.
//!
//! Verification ([`verify_inclusion`], [`verify_consistency`]) is meant for
//! hostile input: it checks sizes and proof lengths up front, uses no unchecked
//! arithmetic and never panics.

use ring::digest;

/// A SHA-256 digest; the only hash function RFC 6962 logs use here.
pub type Hash = [u8; 32];

/// Merkle Tree Hash of the empty tree, `SHA-256("")` (RFC 6962 §2.1).
///
/// Spelled out as a constant so an empty log has a root without hashing.
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// Domain-separation prefix of leaf hashes; keeps a leaf from posing as a node.
const LEAF_PREFIX: u8 = 0x00;
/// Domain-separation prefix of interior node hashes.
const NODE_PREFIX: u8 = 0x01;

/// SHA-256 of the concatenation of `parts`, without copying them together.
fn sha256(parts: &[&[u8]]) -> Hash {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for part in parts {
        ctx.update(part);
    }
    let mut out = [0u8; 32];
    // SHA-256 output is always 32 bytes, so the lengths match.
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Hash of one log entry: `SHA-256(0x00 || entry)`.
///
/// The 0x00 prefix (vs. 0x01 for nodes) prevents second-preimage attacks that
/// would pass an interior node off as a leaf.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    sha256(&[&[LEAF_PREFIX], entry])
}

/// Hash of an interior node: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    sha256(&[&[NODE_PREFIX], left, right])
}

/// Address of a perfect subtree: the hash of leaves `[index * 2^level, (index + 1) * 2^level)`.
///
/// Level 0 nodes are leaf hashes. This is the primary key under which the
/// gateway stores nodes; the derived ordering sorts by level, then index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId {
    /// Height of the subtree (0 = leaf); at most 63 for any `u64`-sized tree.
    pub level: u8,
    /// Position of the subtree among subtrees of the same level, left to right.
    pub index: u64,
}

/// Why a proof could not be built, assembled or verified.
///
/// Every failure of hostile input maps to one of these; nothing in this module
/// panics on bad sizes, indices or proofs.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProofError {
    /// The leaf index is not below the tree size (this includes size 0).
    #[error("leaf index {index} is out of range for tree size {size}")]
    IndexOutOfRange {
        /// Requested leaf index.
        index: u64,
        /// Tree size it was checked against.
        size: u64,
    },
    /// The old tree size is larger than the new one.
    #[error("tree size {old_size} cannot precede tree size {new_size}")]
    BadSize {
        /// Claimed older size.
        old_size: u64,
        /// Claimed newer size.
        new_size: u64,
    },
    /// The proof does not have the number of hashes its sizes imply.
    #[error("proof has {got} hashes, expected {expected}")]
    WrongProofLength {
        /// Length implied by the index and sizes.
        expected: usize,
        /// Length supplied.
        got: usize,
    },
    /// The proof is well-formed but does not lead to the given root(s).
    #[error("proof does not match the root hash")]
    RootMismatch,
    /// The lookup passed to [`assemble`] did not know this node.
    #[error("missing tree node at level {} index {}", .0.level, .0.index)]
    MissingNode(NodeId),
    /// [`Frontier::from_nodes`] got a number of hashes that does not fit the size.
    #[error("frontier of size {size} needs {expected} nodes, got {got}")]
    WrongNodeCount {
        /// Tree size being restored.
        size: u64,
        /// Number of perfect subtrees covering `[0, size)`.
        expected: usize,
        /// Number of hashes supplied.
        got: usize,
    },
    /// The tree already holds `u64::MAX` leaves; leaf indices would overflow.
    #[error("tree is full")]
    TreeFull,
}

/// Largest power of two strictly below `n`; the RFC 6962 split point `k`. Requires `n >= 2`.
fn split_point(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}

/// Perfect subtrees, left to right, whose concatenation is leaves `[begin, end)`.
///
/// This is the minimal ("compact range") decomposition: greedily the largest
/// aligned perfect subtree starting at each position. When the range is a
/// subtree of some tree as RFC 6962 shapes it — `begin == 0`, or `begin` a
/// multiple of a power of two `>= end - begin`, which holds for every range
/// returned by [`inclusion_ranges`] and [`consistency_ranges`] — this is exactly
/// the binary decomposition MTH uses along the right edge, so [`fold_range`] of
/// the node hashes is that range's Merkle Tree Hash. In particular
/// `range_nodes(0, size)` lists the nodes that make up the root of a tree of
/// `size` leaves (and the state of a [`Frontier`]). Returns nothing for an
/// empty or inverted range; at most 128 nodes otherwise.
pub fn range_nodes(begin: u64, end: u64) -> Vec<NodeId> {
    let mut out = Vec::new();
    let mut pos = begin;
    while pos < end {
        let remaining = end - pos;
        // floor(log2(remaining)) <= 63, and trailing_zeros(0) == 64 is capped by it.
        let max_by_len = 63 - remaining.leading_zeros();
        let level = pos.trailing_zeros().min(max_by_len);
        out.push(NodeId {
            level: level as u8,
            index: pos >> level,
        });
        // pos + 2^level <= end, so this cannot overflow.
        pos += 1u64 << level;
    }
    out
}

/// Fold perfect-subtree hashes (left to right, as listed by [`range_nodes`])
/// into the Merkle Tree Hash of their range.
///
/// Folds right to left (`h = node_hash(left, h)`), which is how MTH combines
/// the shrinking subtrees of a right edge. An empty slice yields
/// [`EMPTY_ROOT`], the hash of an empty range.
pub fn fold_range(hashes: &[Hash]) -> Hash {
    let mut rev = hashes.iter().rev();
    match rev.next() {
        None => EMPTY_ROOT,
        Some(last) => rev.fold(*last, |acc, left| node_hash(left, &acc)),
    }
}

/// Leaf ranges `[b, e)` whose hashes form the inclusion proof of leaf `index`
/// in a tree of `size` leaves, in proof order (bottom-up, RFC 6962 `PATH`).
///
/// Each range's hash is `fold_range` of its [`range_nodes`]; use [`nodes_for`]
/// and [`assemble`] to turn the ranges into the proof.
pub fn inclusion_ranges(index: u64, size: u64) -> Result<Vec<(u64, u64)>, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (mut lo, mut hi) = (0u64, size);
    let mut out = Vec::new();
    // Walk top-down from the root to the leaf, collecting siblings.
    while hi - lo > 1 {
        let mid = lo + split_point(hi - lo);
        if index < mid {
            out.push((mid, hi));
            hi = mid;
        } else {
            out.push((lo, mid));
            lo = mid;
        }
    }
    out.reverse();
    Ok(out)
}

/// Leaf ranges `[b, e)` whose hashes form the consistency proof from
/// `old_size` to `new_size`, in proof order (RFC 9162 §2.1.4.1
/// `PROOF(m, D_n) = SUBPROOF(m, D_n, true)`).
///
/// `SUBPROOF` is only defined for `0 < m < n`; for `m == 0` (the empty tree is
/// a prefix of every tree) and `m == n` (a tree is consistent with itself) the
/// proof is empty, as in RFC 9162 / transparency-dev. `m > n` is an error.
pub fn consistency_ranges(old_size: u64, new_size: u64) -> Result<Vec<(u64, u64)>, ProofError> {
    if old_size > new_size {
        return Err(ProofError::BadSize { old_size, new_size });
    }
    if old_size == 0 || old_size == new_size {
        return Ok(Vec::new());
    }
    let m = old_size;
    let (mut lo, mut hi) = (0u64, new_size);
    // `complete`: the old tree's hash at this subtree is known to the verifier
    // (it is the old root), so it need not be sent.
    let mut complete = true;
    let mut out = Vec::new();
    // Invariant: lo < m <= hi, so hi - lo >= 2 whenever m < hi.
    loop {
        if m == hi {
            if !complete {
                out.push((lo, hi));
            }
            break;
        }
        let mid = lo + split_point(hi - lo);
        if m <= mid {
            out.push((mid, hi));
            hi = mid;
        } else {
            out.push((lo, mid));
            lo = mid;
            complete = false;
        }
    }
    out.reverse();
    Ok(out)
}

/// All distinct perfect nodes needed to hash `ranges`, sorted by `(level, index)`.
///
/// Lets the caller fetch everything a proof (or root, with range `(0, size)`)
/// needs in one query before calling [`assemble`].
pub fn nodes_for(ranges: &[(u64, u64)]) -> Vec<NodeId> {
    let mut ids: Vec<NodeId> = ranges
        .iter()
        .flat_map(|&(begin, end)| range_nodes(begin, end))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Hash each range from stored perfect nodes: one output hash per range.
///
/// `lookup` is typically a map built from the rows fetched for
/// [`nodes_for`]`(ranges)`. Assembling `&[(0, size)]` yields the tree root.
/// Fails with [`ProofError::MissingNode`] rather than guessing when storage is
/// incomplete.
pub fn assemble(
    ranges: &[(u64, u64)],
    lookup: impl Fn(NodeId) -> Option<Hash>,
) -> Result<Vec<Hash>, ProofError> {
    ranges
        .iter()
        .map(|&(begin, end)| {
            let hashes = range_nodes(begin, end)
                .into_iter()
                .map(|id| lookup(id).ok_or(ProofError::MissingNode(id)))
                .collect::<Result<Vec<Hash>, ProofError>>()?;
            Ok(fold_range(&hashes))
        })
        .collect()
}

/// Check that `leaf` (a leaf *hash*) sits at `index` in the tree of `size`
/// leaves whose root is `root`.
///
/// The proof shape is derived from `index` and `size` alone, so a proof of
/// the wrong length is rejected before any hashing.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    let ranges = inclusion_ranges(index, size)?;
    if proof.len() != ranges.len() {
        return Err(ProofError::WrongProofLength {
            expected: ranges.len(),
            got: proof.len(),
        });
    }
    let mut h = *leaf;
    for (&(_, end), sibling) in ranges.iter().zip(proof) {
        // A sibling ending at or before the leaf lies to its left.
        h = if end <= index {
            node_hash(sibling, &h)
        } else {
            node_hash(&h, sibling)
        };
    }
    if h == *root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

/// Check that the tree of `old_size` leaves with root `old_root` is a prefix of
/// the tree of `new_size` leaves with root `new_root`.
///
/// Edge cases: `old_size == new_size` needs an empty proof and equal roots;
/// `old_size == 0` needs an empty proof and `old_root == EMPTY_ROOT` (stricter
/// than some libraries, which ignore the old root: the only correct root of an
/// empty tree is `SHA-256("")`), and says nothing about `new_root` unless
/// `new_size` is 0 too.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    let ranges = consistency_ranges(old_size, new_size)?;
    if proof.len() != ranges.len() {
        return Err(ProofError::WrongProofLength {
            expected: ranges.len(),
            got: proof.len(),
        });
    }
    if old_size == 0 || old_size == new_size {
        let ok = (old_size != 0 || *old_root == EMPTY_ROOT)
            && (old_size != new_size || old_root == new_root);
        return if ok {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    let mut pairs = ranges.iter().zip(proof);
    // When old_size is a power of two the old tree is a complete left subtree
    // whose hash is the old root itself and is not part of the proof.
    let (mut old_acc, mut new_acc) = if old_size.is_power_of_two() {
        (*old_root, *old_root)
    } else {
        match pairs.next() {
            Some((_, first)) => (*first, *first),
            // Unreachable: a non-power-of-two old size always yields a proof.
            None => return Err(ProofError::RootMismatch),
        }
    };
    for (&(begin, _), sibling) in pairs {
        if begin >= old_size {
            // Right of the old tree: only the new tree contains it.
            new_acc = node_hash(&new_acc, sibling);
        } else {
            // Left sibling: shared by both trees.
            old_acc = node_hash(sibling, &old_acc);
            new_acc = node_hash(sibling, &new_acc);
        }
    }
    if old_acc == *old_root && new_acc == *new_root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

/// Incremental appender ("compact range" / frontier): the roots of the perfect
/// subtrees covering leaves `[0, size)`, i.e. the hashes of
/// [`range_nodes`]`(0, size)`.
///
/// It holds at most 64 hashes however large the log grows, which is all that
/// is needed to compute the current root and to know which perfect nodes each
/// append completes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    /// Number of leaves covered.
    size: u64,
    /// Hashes of `range_nodes(0, size)`, left (largest) to right (smallest).
    nodes: Vec<Hash>,
}

impl Frontier {
    /// Empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuild from the stored perfect nodes `range_nodes(0, size)`, hashes in
    /// that order, e.g. after a restart.
    ///
    /// Only the count can be checked here; compare [`Frontier::root`] with the
    /// last signed checkpoint to detect corrupted storage.
    pub fn from_nodes(size: u64, hashes: &[Hash]) -> Result<Self, ProofError> {
        let expected = size.count_ones() as usize;
        if hashes.len() != expected {
            return Err(ProofError::WrongNodeCount {
                size,
                expected,
                got: hashes.len(),
            });
        }
        Ok(Self {
            size,
            nodes: hashes.to_vec(),
        })
    }

    /// Number of leaves appended so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Merkle Tree Hash of the current tree ([`EMPTY_ROOT`] when empty).
    pub fn root(&self) -> Hash {
        fold_range(&self.nodes)
    }

    /// Append one leaf hash.
    ///
    /// Returns every perfect node this append completes, bottom-up, starting
    /// with the leaf itself at level 0, so the caller can store them all in the
    /// same transaction as the entry. Fails only when the tree already has
    /// `u64::MAX` leaves.
    pub fn push(&mut self, leaf: Hash) -> Result<Vec<(NodeId, Hash)>, ProofError> {
        let index = self.size;
        let new_size = index.checked_add(1).ok_or(ProofError::TreeFull)?;
        let mut done = Vec::with_capacity(1 + index.trailing_ones() as usize);
        done.push((NodeId { level: 0, index }, leaf));
        let mut h = leaf;
        let mut level = 0u8;
        let mut idx = index;
        // Each trailing one bit of the index is a left sibling waiting to merge.
        while idx & 1 == 1 {
            let Some(left) = self.nodes.pop() else {
                // Unreachable: nodes.len() == popcount(size) >= trailing ones.
                break;
            };
            h = node_hash(&left, &h);
            idx >>= 1;
            level += 1;
            done.push((NodeId { level, index: idx }, h));
        }
        self.nodes.push(h);
        self.size = new_size;
        Ok(done)
    }
}

mod reference;
pub use reference::{consistency_proof, inclusion_proof, root_of};

#[cfg(test)]
mod tests;

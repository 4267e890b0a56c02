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

/// Reference Merkle Tree Hash of a list of leaf hashes (RFC 6962 `MTH`).
///
/// A direct recursive transcription of the RFC; O(n), for tests and offline
/// verification of exported logs.
pub fn root_of(leaves: &[Hash]) -> Hash {
    match leaves {
        [] => EMPTY_ROOT,
        [only] => *only,
        _ => {
            let (left, right) = leaves.split_at(split_point(leaves.len() as u64) as usize);
            node_hash(&root_of(left), &root_of(right))
        }
    }
}

/// Reference inclusion proof (RFC 6962 `PATH`) of leaf `index` in `leaves`.
pub fn inclusion_proof(leaves: &[Hash], index: u64) -> Result<Vec<Hash>, ProofError> {
    let size = leaves.len() as u64;
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let mut out = Vec::new();
    path(leaves, index as usize, &mut out);
    Ok(out)
}

/// RFC 6962 `PATH(m, D)`, appended bottom-up to `out`.
fn path(leaves: &[Hash], m: usize, out: &mut Vec<Hash>) {
    if leaves.len() <= 1 {
        return;
    }
    let k = split_point(leaves.len() as u64) as usize;
    let (left, right) = leaves.split_at(k);
    if m < k {
        path(left, m, out);
        out.push(root_of(right));
    } else {
        path(right, m - k, out);
        out.push(root_of(left));
    }
}

/// Reference consistency proof (RFC 9162 `PROOF`) from the first `old_size`
/// leaves to all of `leaves`; empty when `old_size` is 0 or `leaves.len()`.
pub fn consistency_proof(leaves: &[Hash], old_size: u64) -> Result<Vec<Hash>, ProofError> {
    let new_size = leaves.len() as u64;
    if old_size > new_size {
        return Err(ProofError::BadSize { old_size, new_size });
    }
    let mut out = Vec::new();
    if old_size != 0 && old_size != new_size {
        subproof(leaves, old_size as usize, true, &mut out);
    }
    Ok(out)
}

/// RFC 9162 `SUBPROOF(m, D, complete)`, appended bottom-up to `out`.
fn subproof(leaves: &[Hash], m: usize, complete: bool, out: &mut Vec<Hash>) {
    if m == leaves.len() {
        if !complete {
            out.push(root_of(leaves));
        }
        return;
    }
    let k = split_point(leaves.len() as u64) as usize;
    let (left, right) = leaves.split_at(k);
    if m <= k {
        subproof(left, m, complete, out);
        out.push(root_of(right));
    } else {
        subproof(right, m - k, false, out);
        out.push(root_of(left));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn h(s: &str) -> Hash {
        let v = hex::decode(s).expect("test hex");
        v.try_into().expect("32 bytes")
    }

    fn hs(list: &[&str]) -> Vec<Hash> {
        list.iter().map(|s| h(s)).collect()
    }

    // RFC 6962 reference vectors as published in transparency-dev/merkle,
    // proof/verify_test.go (`leaves`, `roots`, `inclusionProofs`,
    // `consistencyProofs`; originally from certificate-transparency-go and the
    // C++ CT implementation). Note the Go inclusion table is 1-based in the
    // leaf; here indices are 0-based.
    const VECTOR_LEAVES: [&[u8]; 8] = [
        b"",
        b"\x00",
        b"\x10",
        b"\x20\x21",
        b"\x30\x31",
        b"\x40\x41\x42\x43",
        b"\x50\x51\x52\x53\x54\x55\x56\x57",
        b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
    ];

    const VECTOR_ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    /// (leaf index, tree size, proof)
    const VECTOR_INCLUSION: [(u64, u64, &[&str]); 5] = [
        (0, 1, &[]),
        (
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            3,
            &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        ),
        (
            1,
            5,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];

    /// (old size, new size, proof)
    const VECTOR_CONSISTENCY: [(u64, u64, &[&str]); 5] = [
        (1, 1, &[]),
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
        (
            6,
            7,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
    ];

    fn vector_leaves() -> Vec<Hash> {
        VECTOR_LEAVES.iter().map(|d| leaf_hash(d)).collect()
    }

    /// Appends all leaves, returning the final frontier and every stored node.
    fn build(leaves: &[Hash]) -> (Frontier, HashMap<NodeId, Hash>) {
        let mut f = Frontier::new();
        let mut store = HashMap::new();
        for leaf in leaves {
            for (id, hash) in f.push(*leaf).expect("not full") {
                assert!(
                    store.insert(id, hash).is_none(),
                    "node {id:?} emitted twice"
                );
            }
        }
        (f, store)
    }

    fn from_store(store: &HashMap<NodeId, Hash>, ranges: &[(u64, u64)]) -> Vec<Hash> {
        for id in nodes_for(ranges) {
            assert!(
                store.contains_key(&id),
                "nodes_for asked for unstored {id:?}"
            );
        }
        assemble(ranges, |id| store.get(&id).copied()).expect("all nodes stored")
    }

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(sha256(&[]), EMPTY_ROOT);
        assert_eq!(
            hex::encode(EMPTY_ROOT),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(root_of(&[]), EMPTY_ROOT);
        assert_eq!(Frontier::new().root(), EMPTY_ROOT);
        assert_eq!(fold_range(&[]), EMPTY_ROOT);
    }

    #[test]
    fn published_roots() {
        let leaves = vector_leaves();
        let (_, store) = build(&leaves);
        let mut f = Frontier::new();
        for (i, want) in VECTOR_ROOTS.iter().enumerate() {
            let size = i as u64 + 1;
            f.push(leaves[i]).expect("push");
            assert_eq!(hex::encode(root_of(&leaves[..=i])), *want, "size {size}");
            assert_eq!(hex::encode(f.root()), *want, "frontier size {size}");
            let via_store = from_store(&store, &[(0, size)]);
            assert_eq!(hex::encode(via_store[0]), *want, "stored size {size}");
        }
    }

    #[test]
    fn published_inclusion_proofs() {
        let leaves = vector_leaves();
        let (_, store) = build(&leaves);
        for (index, size, want) in VECTOR_INCLUSION {
            let want = hs(want);
            let n = size as usize;
            assert_eq!(inclusion_proof(&leaves[..n], index).unwrap(), want);
            let ranges = inclusion_ranges(index, size).unwrap();
            assert_eq!(from_store(&store, &ranges), want);
            let root = h(VECTOR_ROOTS[n - 1]);
            let leaf = leaf_hash(VECTOR_LEAVES[index as usize]);
            assert_eq!(verify_inclusion(&leaf, index, size, &want, &root), Ok(()));
            // Every single-bit corruption must fail.
            for i in 0..want.len() {
                let mut bad = want.clone();
                bad[i][0] ^= 8;
                assert_eq!(
                    verify_inclusion(&leaf, index, size, &bad, &root),
                    Err(ProofError::RootMismatch)
                );
            }
            if !want.is_empty() {
                assert!(verify_inclusion(&leaf, index, size, &want[1..], &root).is_err());
                assert!(verify_inclusion(&leaf, index ^ 1, size, &want, &root).is_err());
            }
            assert!(verify_inclusion(&leaf, index, size * 2, &want, &root).is_err());
        }
    }

    #[test]
    fn published_consistency_proofs() {
        let leaves = vector_leaves();
        let (_, store) = build(&leaves);
        for (old, new, want) in VECTOR_CONSISTENCY {
            let want = hs(want);
            assert_eq!(
                consistency_proof(&leaves[..new as usize], old).unwrap(),
                want
            );
            let ranges = consistency_ranges(old, new).unwrap();
            assert_eq!(from_store(&store, &ranges), want);
            let old_root = h(VECTOR_ROOTS[old as usize - 1]);
            let new_root = h(VECTOR_ROOTS[new as usize - 1]);
            assert_eq!(
                verify_consistency(old, new, &old_root, &new_root, &want),
                Ok(())
            );
            for i in 0..want.len() {
                let mut bad = want.clone();
                bad[i][0] ^= 16;
                assert!(verify_consistency(old, new, &old_root, &new_root, &bad).is_err());
            }
            if old != new {
                assert!(verify_consistency(old, new, &new_root, &old_root, &want).is_err());
                assert!(verify_consistency(old, new, &old_root, &new_root, &[]).is_err());
                let mut longer = want.clone();
                longer.push(old_root);
                assert!(verify_consistency(old, new, &old_root, &new_root, &longer).is_err());
            }
        }
    }

    #[test]
    fn consistency_edge_rules() {
        let a = leaf_hash(b"a");
        let b = leaf_hash(b"b");
        assert_eq!(consistency_ranges(0, 0), Ok(vec![]));
        assert_eq!(consistency_ranges(0, 5), Ok(vec![]));
        assert_eq!(consistency_ranges(5, 5), Ok(vec![]));
        assert_eq!(
            consistency_ranges(6, 5),
            Err(ProofError::BadSize {
                old_size: 6,
                new_size: 5
            })
        );
        assert_eq!(
            verify_consistency(0, 0, &EMPTY_ROOT, &EMPTY_ROOT, &[]),
            Ok(())
        );
        assert_eq!(verify_consistency(0, 7, &EMPTY_ROOT, &a, &[]), Ok(()));
        assert_eq!(verify_consistency(3, 3, &a, &a, &[]), Ok(()));
        assert!(verify_consistency(0, 7, &a, &b, &[]).is_err());
        assert!(verify_consistency(0, 0, &EMPTY_ROOT, &a, &[]).is_err());
        assert!(verify_consistency(3, 3, &a, &b, &[]).is_err());
        assert!(verify_consistency(3, 3, &a, &a, &[a]).is_err());
        assert!(verify_consistency(0, 1, &EMPTY_ROOT, &a, &[a]).is_err());
        assert!(verify_consistency(2, 1, &a, &a, &[]).is_err());
    }

    #[test]
    fn range_nodes_shapes() {
        assert_eq!(range_nodes(5, 5), vec![]);
        assert_eq!(range_nodes(6, 5), vec![]);
        let ids = |v: &[(u8, u64)]| {
            v.iter()
                .map(|&(level, index)| NodeId { level, index })
                .collect::<Vec<_>>()
        };
        assert_eq!(range_nodes(0, 7), ids(&[(2, 0), (1, 2), (0, 6)]));
        assert_eq!(range_nodes(4, 7), ids(&[(1, 2), (0, 6)]));
        assert_eq!(range_nodes(3, 9), ids(&[(0, 3), (2, 1), (0, 8)]));
        assert_eq!(range_nodes(0, u64::MAX).len(), 64);
        assert_eq!(range_nodes(1, u64::MAX).len(), 126);
        assert_eq!(
            range_nodes(u64::MAX - 1, u64::MAX),
            ids(&[(0, u64::MAX - 1)])
        );
    }

    #[test]
    fn exhaustive_small_trees() {
        let leaves: Vec<Hash> = (0u32..48).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let (_, store) = build(&leaves);
        for n in 1..=leaves.len() {
            let size = n as u64;
            let tree = &leaves[..n];
            let root = root_of(tree);
            for index in 0..size {
                let proof = inclusion_proof(tree, index).unwrap();
                let ranges = inclusion_ranges(index, size).unwrap();
                assert_eq!(from_store(&store, &ranges), proof, "incl {index}/{size}");
                let leaf = tree[index as usize];
                assert_eq!(verify_inclusion(&leaf, index, size, &proof, &root), Ok(()));
            }
            for old in 0..=size {
                let proof = consistency_proof(tree, old).unwrap();
                let ranges = consistency_ranges(old, size).unwrap();
                assert_eq!(from_store(&store, &ranges), proof, "cons {old}/{size}");
                let old_root = root_of(&leaves[..old as usize]);
                assert_eq!(
                    verify_consistency(old, size, &old_root, &root, &proof),
                    Ok(()),
                    "cons {old}/{size}"
                );
                if old > 0 && old < size {
                    let wrong = root_of(&leaves[..old as usize - 1]);
                    assert!(verify_consistency(old, size, &wrong, &root, &proof).is_err());
                }
            }
        }
    }

    #[test]
    fn assemble_reports_missing_nodes() {
        let leaves = vector_leaves();
        let (_, mut store) = build(&leaves);
        let missing = NodeId { level: 1, index: 1 };
        store.remove(&missing);
        let ranges = inclusion_ranges(0, 8).unwrap();
        assert_eq!(
            assemble(&ranges, |id| store.get(&id).copied()),
            Err(ProofError::MissingNode(missing))
        );
    }

    #[test]
    fn frontier_limits() {
        assert_eq!(
            Frontier::from_nodes(3, &[EMPTY_ROOT]),
            Err(ProofError::WrongNodeCount {
                size: 3,
                expected: 2,
                got: 1
            })
        );
        let mut full = Frontier::from_nodes(u64::MAX, &[EMPTY_ROOT; 64]).unwrap();
        assert_eq!(full.push(EMPTY_ROOT), Err(ProofError::TreeFull));
        assert_eq!(full.size(), u64::MAX);
        let mut almost = Frontier::from_nodes(u64::MAX - 1, &[EMPTY_ROOT; 63]).unwrap();
        let done = almost.push(EMPTY_ROOT).unwrap();
        assert_eq!(done.len(), 1);
        assert_eq!(almost.size(), u64::MAX);
    }

    #[test]
    fn hostile_verification_inputs() {
        let x = leaf_hash(b"x");
        let proof64 = vec![x; 64];
        let proof65 = vec![x; 65];
        // Size 0 and index >= size.
        assert!(matches!(
            verify_inclusion(&x, 0, 0, &[], &x),
            Err(ProofError::IndexOutOfRange { .. })
        ));
        assert!(verify_inclusion(&x, 5, 5, &[], &x).is_err());
        assert!(verify_inclusion(&x, u64::MAX, u64::MAX, &proof64, &x).is_err());
        // Huge sizes with wrong and right-length garbage proofs.
        for (index, size) in [
            (0, u64::MAX),
            (u64::MAX - 1, u64::MAX),
            (1 << 63, u64::MAX),
            ((1 << 63) - 1, 1 << 63),
        ] {
            let len = inclusion_ranges(index, size).unwrap().len();
            assert!(len <= 64);
            assert!(verify_inclusion(&x, index, size, &[], &x).is_err());
            assert!(verify_inclusion(&x, index, size, &proof65, &x).is_err());
            assert_eq!(
                verify_inclusion(&x, index, size, &vec![x; len], &x),
                Err(ProofError::RootMismatch)
            );
        }
        for (old, new) in [
            (1, u64::MAX),
            (u64::MAX - 1, u64::MAX),
            (1 << 63, u64::MAX),
            (3, 1 << 63),
        ] {
            let len = consistency_ranges(old, new).unwrap().len();
            assert!(len <= 65);
            assert!(verify_consistency(old, new, &x, &x, &[]).is_err());
            assert!(verify_consistency(old, new, &x, &x, &proof65).is_err());
            assert_eq!(
                verify_consistency(old, new, &x, &x, &vec![x; len]),
                Err(ProofError::RootMismatch)
            );
        }
        assert!(verify_consistency(u64::MAX, 0, &x, &x, &[]).is_err());
        assert!(verify_consistency(u64::MAX, u64::MAX, &x, &x, &proof64).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn storage_matches_reference(n in 1u64..=300, old_seed: u64, idx_seed: u64) {
            let leaves: Vec<Hash> = (0..n).map(|i| leaf_hash(&i.to_le_bytes())).collect();
            let old = old_seed % (n + 1);
            let index = idx_seed % n;

            // Append, remembering the frontier at the old size.
            let mut f = Frontier::new();
            let mut store = HashMap::new();
            let mut old_frontier = f.clone();
            let mut emitted_after_old = Vec::new();
            for (i, leaf) in leaves.iter().enumerate() {
                if i as u64 == old {
                    old_frontier = f.clone();
                }
                let done = f.push(*leaf).unwrap();
                prop_assert_eq!(done[0], (NodeId { level: 0, index: i as u64 }, *leaf));
                if i as u64 >= old {
                    emitted_after_old.extend(done.iter().copied());
                }
                for (id, hash) in done {
                    prop_assert!(store.insert(id, hash).is_none());
                }
            }
            if old == n {
                old_frontier = f.clone();
            }
            let root = root_of(&leaves);
            let old_root = root_of(&leaves[..old as usize]);
            prop_assert_eq!(f.size(), n);
            prop_assert_eq!(f.root(), root);
            prop_assert_eq!(old_frontier.root(), old_root);
            prop_assert_eq!(from_store(&store, &[(0, n)]), vec![root]);
            prop_assert_eq!(from_store(&store, &[(0, old)]), vec![old_root]);

            // Inclusion in the full tree and in the older tree, from the same store.
            let ranges = inclusion_ranges(index, n).unwrap();
            let proof = from_store(&store, &ranges);
            prop_assert_eq!(&proof, &inclusion_proof(&leaves, index).unwrap());
            prop_assert_eq!(verify_inclusion(&leaves[index as usize], index, n, &proof, &root), Ok(()));
            if index < old {
                let ranges = inclusion_ranges(index, old).unwrap();
                let proof = from_store(&store, &ranges);
                let old_leaves = &leaves[..old as usize];
                prop_assert_eq!(&proof, &inclusion_proof(old_leaves, index).unwrap());
                prop_assert_eq!(
                    verify_inclusion(&leaves[index as usize], index, old, &proof, &old_root),
                    Ok(())
                );
            }

            // Consistency old -> n.
            let ranges = consistency_ranges(old, n).unwrap();
            let proof = from_store(&store, &ranges);
            prop_assert_eq!(&proof, &consistency_proof(&leaves, old).unwrap());
            prop_assert_eq!(verify_consistency(old, n, &old_root, &root, &proof), Ok(()));

            // from_nodes round trip: restore at `old`, re-append, same nodes and root.
            let stored: Vec<Hash> = range_nodes(0, old).iter().map(|id| store[id]).collect();
            let mut restored = Frontier::from_nodes(old, &stored).unwrap();
            prop_assert_eq!(&restored, &old_frontier);
            let mut re_emitted = Vec::new();
            for leaf in &leaves[old as usize..] {
                re_emitted.extend(restored.push(*leaf).unwrap());
            }
            prop_assert_eq!(re_emitted, emitted_after_old);
            prop_assert_eq!(restored.root(), root);
        }

        #[test]
        fn hostile_random_inputs_never_verify(
            index: u64,
            size: u64,
            old: u64,
            new: u64,
            len in 0usize..70,
            fill: [u8; 32],
        ) {
            let proof = vec![fill; len];
            let leaf = leaf_hash(&fill);
            let root = node_hash(&fill, &fill);
            prop_assert!(verify_inclusion(&leaf, index, size, &proof, &root).is_err());
            prop_assert!(verify_consistency(old, new, &leaf, &root, &proof).is_err());
            let small = (index % 1000, size % 1000);
            prop_assert!(verify_inclusion(&leaf, small.0, small.1, &proof, &root).is_err());
            let _ = nodes_for(&inclusion_ranges(index, size).unwrap_or_default());
            let _ = nodes_for(&consistency_ranges(old, new).unwrap_or_default());
            let _ = range_nodes(index, size);
        }
    }
}

//! The reference: a direct, recursive transcription of RFC 6962 / RFC 9162
//! over a slice of leaf hashes (O(n)), used by tests as an independent
//! check of the planned proofs and by the offline verifier on exported logs.

use super::{EMPTY_ROOT, Hash, ProofError, node_hash, split_point};

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

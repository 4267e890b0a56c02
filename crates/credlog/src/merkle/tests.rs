//! Known-answer vectors and properties of the tree math against the reference.

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

//! Interop: an independent implementation of C2SP tlog-tiles, checkpoints
//! and signed notes reads the log the gateway serves to auditors, with
//! plain GETs, and verifies it without credgate's code.
//!
//! * `signed_note` (ed25519-dalek) verifies the checkpoint signature with
//!   the published verifier key;
//! * `tlog_tiles` (a port of Go's `sumdb/tlog`, sha2) authenticates every
//!   hash tile it fetches against the checkpoint's root while recomputing
//!   that root, builds inclusion and consistency proofs from the tiles and
//!   checks them; its tile paths (minus the height element, which C2SP
//!   drops) name the resources fetched;
//! * the entry bundles are split by a few lines here and every entry's
//!   RFC 6962 leaf hash must be the one `tlog_tiles` reads from the tiles.
//!
//! The proofs credgate's own API hands out must equal the independent ones,
//! as JSON and as `c2sp.org/tlog-proof@v1` files.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};

use base64::Engine as _;
use common::*;
use serde_json::{Value, json};
use signed_note::{Note, StandardVerifier, VerifierList};
use tlog_tiles::{
    Checkpoint, Hash, HashReader, Tile, TileHashReader, TileReader, check_record, check_tree,
    prove_record, prove_tree, record_hash, tree_hash,
};

/// A C2SP path from a `tlog_tiles` tile (whose paths carry the height).
fn c2sp_path(t: &Tile) -> String {
    let p = t.path();
    if t.is_data() {
        p.replacen("tile/8/data/", "tile/entries/", 1)
    } else {
        p.replacen("tile/8/", "tile/", 1)
    }
}

/// Fetches tiles from the gateway as the auditor; `tamper` flips a byte of
/// every level-0 tile (to see the independent reader refuse it).
struct HttpTiles {
    client: Client,
    tamper: AtomicBool,
}

impl HttpTiles {
    fn get(&self, path: &str) -> Resp {
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(self.client.get(path))
        })
    }
}

impl TileReader for HttpTiles {
    fn height(&self) -> u8 {
        8
    }

    fn read_tiles(&self, tiles: &[Tile]) -> Result<Vec<Vec<u8>>, tlog_tiles::Error> {
        tiles
            .iter()
            .map(|t| {
                let r = self.get(&format!("/v1/audit/log/{}", c2sp_path(t)));
                if r.status != 200 {
                    return Err(tlog_tiles::Error::InvalidTile);
                }
                let mut b = r.bytes.to_vec();
                if self.tamper.load(Ordering::Relaxed) && t.level() == 0 {
                    b[0] ^= 1;
                }
                Ok(b)
            })
            .collect()
    }

    fn save_tiles(&self, _: &[Tile], _: &[Vec<u8>]) {}
}

/// Verify a note with the independent implementation; (size, root).
fn verify_note(note: &str, vkey: &str, origin: &str) -> (u64, Hash) {
    let v = StandardVerifier::new(vkey).expect("verifier key parses");
    let n = Note::from_bytes(note.as_bytes()).expect("note parses");
    let (ok, _) = n
        .verify(&VerifierList::new(vec![Box::new(v)]))
        .expect("signature verifies");
    assert_eq!(ok.len(), 1);
    let cp = Checkpoint::from_bytes(n.text()).expect("checkpoint body parses");
    assert_eq!(cp.origin(), origin);
    (cp.size(), *cp.hash())
}

fn b64_hashes(v: &Value) -> Vec<Hash> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|h| {
            let b = base64::engine::general_purpose::STANDARD
                .decode(h.as_str().unwrap())
                .unwrap();
            Hash(b.try_into().unwrap())
        })
        .collect()
}

/// Split a bundle: uint16 big-endian length, then the entry.
fn split_bundle(mut b: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let n = usize::from(u16::from_be_bytes([b[0], b[1]]));
        out.push(b[2..2 + n].to_vec());
        b = &b[2 + n..];
    }
    out
}

async fn sign_now(gw: &TestGateway) -> (u64, String) {
    let signer = credgate::audit::checkpoint::CheckpointSigner::from_pkcs8(
        &gw.config.audit.origin,
        &std::fs::read(&gw.config.audit.checkpoint_key_file).unwrap(),
    )
    .unwrap();
    credgate::audit::checkpoint_once(&gw.store, &signer, &gw.config.audit.origin)
        .await
        .unwrap();
    let (size, _) = gw.store.log_head().await.unwrap();
    gw.store.checkpoint(Some(size)).await.unwrap().unwrap()
}

async fn queries(gw: &TestGateway, n: usize) {
    let bank = gw.client("bank");
    for _ in 0..n {
        let q = query(
            "legal_person",
            ids::CERAMICS,
            "financing",
            &["enterprise_name"],
        );
        assert_eq!(bank.post("/v1/query", &q).await.status, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_independent_tlog_client_verifies_the_served_log() {
    let gw = TestGateway::start().await;
    let origin = gw.config.audit.origin.clone();
    let auditor = gw.client("auditor");

    // Index encoding: the independent paths are ours.
    let t = Tile::new(8, 0, 1_234_067, 256, false);
    assert_eq!(c2sp_path(&t), "tile/0/x001/x234/067");
    assert_eq!(
        c2sp_path(&Tile::new(8, 2, 5, 7, false)),
        credlog::tiles::tile_path(credlog::tiles::TileId { level: 2, index: 5 }, 7)
    );
    let mut d = Tile::new(8, 0, 1000, 3, false);
    d.set_is_data();
    assert_eq!(c2sp_path(&d), credlog::tiles::bundle_path(1000, 3));

    queries(&gw, 300).await;
    let (m, note_m) = sign_now(&gw).await;
    queries(&gw, 300).await;
    sign_now(&gw).await;

    // The checkpoint, as any client fetches it.
    let r = auditor.get("/v1/audit/log/checkpoint").await;
    assert_eq!(r.status, 200);
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let note_n = String::from_utf8(r.bytes.to_vec()).unwrap();
    let (n, root_n) = verify_note(&note_n, &gw.verifier_key, &origin);
    let (m2, root_m) = verify_note(&note_m, &gw.verifier_key, &origin);
    assert_eq!(m2, m);
    assert!(m >= 300 && n >= m + 300, "m {m}, n {n}");

    let tiles = HttpTiles {
        client: gw.client("auditor"),
        tamper: AtomicBool::new(false),
    };
    // The root from the served tiles (each tile authenticated on the way).
    let thr = TileHashReader::new(n, root_n, &tiles);
    assert_eq!(tree_hash(n, &thr).unwrap(), root_n);
    let thr_m = TileHashReader::new(m, root_m, &tiles);
    assert_eq!(tree_hash(m, &thr_m).unwrap(), root_m);

    // Every entry from the bundles hashes to the leaf the tiles hold.
    let mut entries = Vec::new();
    for idx in 0..n.div_ceil(256) {
        let w = (n - idx * 256).min(256) as u32;
        let mut b = Tile::new(8, 0, idx, w, false);
        b.set_is_data();
        let r = auditor
            .get(&format!("/v1/audit/log/{}", c2sp_path(&b)))
            .await;
        assert_eq!(r.status, 200, "{}", c2sp_path(&b));
        let cache = r.headers["cache-control"].to_str().unwrap().to_owned();
        if w == 256 {
            assert!(cache.contains("immutable"), "{cache}");
        } else {
            assert_eq!(cache, "no-cache");
        }
        let es = split_bundle(&r.bytes);
        assert_eq!(es.len(), w as usize);
        entries.extend(es);
    }
    let leaves = thr
        .read_hashes(
            &(0..n)
                .map(|i| tlog_tiles::stored_hash_index(0, i))
                .collect::<Vec<_>>(),
        )
        .unwrap();
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(record_hash(e), leaves[i], "leaf {i}");
        credgate::audit::AuditEntry::parse(e).expect("a canonical entry");
    }

    // Inclusion proofs from tiles, checked independently, equal credgate's.
    for i in (0..n).step_by(61).chain([n - 1]) {
        let proof = prove_record(n, i, &thr).unwrap();
        check_record(&proof, n, root_n, i, record_hash(&entries[i as usize])).unwrap();
        let api = auditor
            .post(
                "/v1/audit/proof/inclusion",
                &json!({"seq": i, "tree_size": n}),
            )
            .await;
        assert_eq!(api.status, 200, "{:?}", api.body);
        assert!(b64_hashes(&api.body["proof"]) == proof, "inclusion {i}");
    }
    // Proof files (`c2sp.org/tlog-proof@v1`; `tlog_tiles` has no parser for
    // them, so a few lines here read the format): the embedded checkpoint
    // verifies with `signed_note`, the hashes are the independent proof and
    // `check_record` accepts them for the entry carried as extra data.
    for i in [0, n / 3, n - 1] {
        let r = auditor
            .post(
                "/v1/audit/proof/inclusion",
                &json!({"seq": i, "tree_size": n, "format": "tlog-proof"}),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        let text = String::from_utf8(r.bytes.to_vec()).unwrap();
        let (head, note) = text.split_once("\n\n").unwrap();
        assert_eq!(verify_note(note, &gw.verifier_key, &origin), (n, root_n));
        let mut lines = head.split('\n');
        assert_eq!(lines.next(), Some("c2sp.org/tlog-proof@v1"));
        let b64 = base64::engine::general_purpose::STANDARD;
        let extra = b64
            .decode(lines.next().unwrap().strip_prefix("extra ").unwrap())
            .unwrap();
        assert_eq!(extra, entries[i as usize]);
        assert_eq!(lines.next(), Some(format!("index {i}").as_str()));
        let hashes: Vec<Hash> = lines
            .map(|l| Hash(b64.decode(l).unwrap().try_into().unwrap()))
            .collect();
        assert!(hashes == prove_record(n, i, &thr).unwrap(), "file {i}");
        check_record(&hashes, n, root_n, i, record_hash(&extra)).unwrap();
    }
    // Consistency from m to n.
    let proof = prove_tree(n, m, &thr).unwrap();
    check_tree(&proof, n, root_n, m, root_m).unwrap();
    let api = auditor
        .post(
            "/v1/audit/proof/consistency",
            &json!({"old_size": m, "new_size": n}),
        )
        .await;
    assert_eq!(api.status, 200, "{:?}", api.body);
    assert!(b64_hashes(&api.body["proof"]) == proof, "consistency");

    // A tampered tile does not authenticate.
    tiles.tamper.store(true, Ordering::Relaxed);
    let fresh = TileHashReader::new(n, root_n, &tiles);
    assert!(tree_hash(n, &fresh).is_err() || prove_record(n, 1, &fresh).is_err());

    // Only auditors read the log; other paths are 404.
    assert_eq!(
        gw.client("bank")
            .get("/v1/audit/log/checkpoint")
            .await
            .status,
        403
    );
    assert_eq!(
        auditor.get("/v1/audit/log/tile/0/x000/001").await.status,
        404
    );
    assert_eq!(
        auditor
            .get(&format!("/v1/audit/log/tile/entries/{:03}", n / 256 + 5))
            .await
            .status,
        404
    );
    gw.stop().await;
}

/// Stored hashes in memory, for `tlog_tiles` to build a tree from records.
struct MemHashes(std::cell::RefCell<Vec<Hash>>);

impl HashReader for MemHashes {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        let v = self.0.borrow();
        indexes
            .iter()
            .map(|&i| {
                v.get(i as usize)
                    .copied()
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)
            })
            .collect()
    }
}

/// The golden proof file of `credlog/src/proof.rs` (five records `entry 0` …
/// `entry 4`, the proof for index 2, signed with the key from seed
/// `[7; 32]`), checked byte by byte against `tlog_tiles` (tree, proof) and
/// `signed_note` (signature): the golden bytes are right, not only stable.
#[test]
fn the_golden_proof_file_is_what_independent_implementations_compute() {
    let golden = "c2sp.org/tlog-proof@v1\n\
        extra ZW50cnkgMg==\n\
        index 2\n\
        YcoROfaBWEHVuvLQ0tm9nf7pfImN1ve6DAqpQe5sAes=\n\
        WkdmL9ijF9lgSaP59HxV3GfKZgUbqjaD27GbL+CaB7A=\n\
        SFM123z+yWXxX/dF/GJcQdXqJkaTaTAWWCj3PdS2iFQ=\n\
        \n\
        example.com/credgate\n\
        5\n\
        fKo0Xb2JKmZFTWxlEuo8PqPw0+whvj/C4jdXBf049nI=\n\
        \n\
        \u{2014} example.com/credgate tBdg1Toanwdqaugny6vWPRZPfnWmpHLdx5bAGiiLVB72jOe/BVcLZDz9tWyCo6lpprocTWwQ6P5OGWD727oibUZA9gA=\n";
    let mem = MemHashes(Default::default());
    for i in 0..5u64 {
        let data = format!("entry {i}");
        let new = tlog_tiles::stored_hashes(i, data.as_bytes(), &mem).unwrap();
        mem.0.borrow_mut().extend(new);
    }
    let root = tree_hash(5, &mem).unwrap();
    let proof = prove_record(5, 2, &mem).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut expected = format!(
        "c2sp.org/tlog-proof@v1\nextra {}\nindex 2\n",
        b64.encode("entry 2")
    );
    for h in &proof {
        expected.push_str(&b64.encode(h.0));
        expected.push('\n');
    }
    expected.push('\n');
    let body = format!("example.com/credgate\n5\n{}\n", b64.encode(root.0));
    expected.push_str(&body);
    assert!(golden.starts_with(&expected), "{golden}\n---\n{expected}");
    check_record(&proof, 5, root, 2, record_hash(b"entry 2")).unwrap();

    // The signature: the verifier key of that seed, checked by signed_note.
    let mut pkcs8 = hex::decode("302e020100300506032b657004220420").unwrap();
    pkcs8.extend_from_slice(&[7u8; 32]);
    let vkey =
        credgate::audit::checkpoint::CheckpointSigner::from_pkcs8("example.com/credgate", &pkcs8)
            .unwrap()
            .verifier_key();
    let note = &golden[golden.find("\n\n").unwrap() + 2..];
    assert_eq!(verify_note(note, &vkey, "example.com/credgate"), (5, root));
}

/// A checkpoint co-signed during a key rotation
/// (`audit.checkpoint_cosign_key_files`) verifies in the independent
/// signed-note implementation with the new key alone and with the old key
/// alone (each ignores the other's line), to the same tree head.
#[tokio::test]
async fn a_co_signed_checkpoint_verifies_with_either_key_in_an_independent_client() {
    use credgate::audit::checkpoint::CheckpointSigner;
    let keys = TempDir::new("interop-cosign");
    let previous = keys.0.join("previous.key");
    std::fs::write(&previous, CheckpointSigner::generate_pkcs8().unwrap()).unwrap();
    let gw = TestGateway::start_with(
        |c| c.audit.checkpoint_cosign_key_files = vec![previous.clone()],
        true,
    )
    .await;
    let origin = gw.config.audit.origin.clone();
    let old_vkey = CheckpointSigner::from_pkcs8(&origin, &std::fs::read(&previous).unwrap())
        .unwrap()
        .verifier_key();
    queries(&gw, 3).await;
    let (size, _) = gw.store.log_head().await.unwrap();
    let note = served_checkpoint(&gw, size).await;
    assert_eq!(
        verify_note(&note, &old_vkey, &origin),
        verify_note(&note, &gw.verifier_key, &origin)
    );
    gw.stop().await;
}

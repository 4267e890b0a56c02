//! Inclusion proofs as `c2sp.org/tlog-proof@v1` files, end to end over real
//! mutual TLS on the configured store (SQLite, or PostgreSQL with
//! `CREDGATE_TEST_DATABASE_URL`): an auditor fetches a proof file, the real
//! binary verifies it offline (`credgate audit verify-proof`), and every
//! tampered byte, foreign key or wrong entry makes the binary fail with a
//! reason. Other roles get 403, hostile bodies stable 400s, and every call is
//! audited.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use credgate::audit::checkpoint::CheckpointSigner;
use credlog::proof::{HEADER, TlogProof};
use serde_json::{Value, json};

/// `credgate audit verify-proof --proof P --key K [--entry E]`: (success, output).
fn verify_proof(proof: &Path, keys: &[&str], entry: Option<&Path>) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_credgate"));
    cmd.args(["audit", "verify-proof", "--proof"]).arg(proof);
    for k in keys {
        cmd.args(["--key", k]);
    }
    if let Some(e) = entry {
        cmd.arg("--entry").arg(e);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Sign the head now and return its size.
async fn checkpoint_now(gw: &TestGateway) -> u64 {
    let key = std::fs::read(&gw.config.audit.checkpoint_key_file).unwrap();
    let signer = CheckpointSigner::from_pkcs8(&gw.config.audit.origin, &key).unwrap();
    credgate::audit::checkpoint_once(&gw.store, &signer, &gw.config.audit.origin)
        .await
        .unwrap();
    gw.store.log_head().await.unwrap().0
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

/// The audit entry of the call that answered `r`.
async fn entry_of(gw: &TestGateway, r: &Resp) -> credgate::audit::AuditEntry {
    let seq: u64 = r.headers["x-audit-seq"].to_str().unwrap().parse().unwrap();
    let bytes = gw.store.audit_entry(seq).await.unwrap().unwrap();
    credgate::audit::AuditEntry::parse(&bytes).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proof_file_verifies_offline_and_any_tampering_fails() {
    let gw = TestGateway::start().await;
    let auditor = gw.client("auditor");
    queries(&gw, 6).await;
    let size = checkpoint_now(&gw).await;
    assert!(size >= 6);
    let dir = TempDir::new("proof");
    let key = gw.verifier_key.as_str();

    for seq in [0, size / 2, size - 1] {
        let r = auditor
            .post(
                "/v1/audit/proof/inclusion",
                &json!({"seq": seq, "tree_size": size, "format": "tlog-proof"}),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.bytes);
        assert_eq!(
            r.headers["content-type"].to_str().unwrap(),
            "text/plain; charset=utf-8"
        );
        let text = String::from_utf8(r.bytes.to_vec()).unwrap();
        assert!(text.starts_with(&format!("{HEADER}\nextra ")), "{text}");
        // What the file carries is what the log holds.
        let p = TlogProof::parse(text.as_bytes()).unwrap();
        let stored = gw.store.audit_entry(seq).await.unwrap().unwrap();
        assert_eq!(p.index, seq);
        assert_eq!(p.extra, stored);
        let (_, note) = gw.store.checkpoint(Some(size)).await.unwrap().unwrap();
        assert_eq!(p.checkpoint, note);
        // The same proof as the JSON answer.
        let j = auditor
            .post(
                "/v1/audit/proof/inclusion",
                &json!({"seq": seq, "tree_size": size, "format": "json"}),
            )
            .await;
        assert_eq!(j.status, 200);
        let json_proof: Vec<Value> = p
            .proof
            .iter()
            .map(|h| json!(credgate::audit::export::encode_hash(h)))
            .collect();
        assert_eq!(j.body["proof"], Value::Array(json_proof));
        assert_eq!(j.body["entry"], String::from_utf8(stored.clone()).unwrap());
        // The call itself is audited.
        let e = entry_of(&gw, &r).await;
        assert_eq!(
            (e.action.as_str(), e.outcome.as_str(), e.status),
            ("audit_inclusion_proof", "ok", 200)
        );

        let file = dir.0.join(format!("{seq}.tlog-proof"));
        std::fs::write(&file, &text).unwrap();
        let (ok, out) = verify_proof(&file, &[key], None);
        assert!(ok, "{out}");
        assert!(
            out.contains(&format!("OK: entry {seq} is in the log")),
            "{out}"
        );

        // The entry from elsewhere (an export, a bundle) verifies too, and
        // another entry does not.
        let entry_file = dir.0.join(format!("{seq}.entry"));
        std::fs::write(&entry_file, &stored).unwrap();
        let (ok, out) = verify_proof(&file, &[key], Some(&entry_file));
        assert!(ok, "{out}");
        let other = gw
            .store
            .audit_entry((seq + 1) % size)
            .await
            .unwrap()
            .unwrap();
        std::fs::write(&entry_file, &other).unwrap();
        let (ok, out) = verify_proof(&file, &[key], Some(&entry_file));
        assert!(!ok, "{out}");
        assert!(out.contains("does not match the root hash"), "{out}");

        // One changed byte anywhere in the file: the binary refuses it.
        // (Every line: the header, the extra data, the index, each proof
        // hash, the checkpoint body and its signature.)
        let mut offset = 0;
        let mut tampered_lines = 0;
        for line in text.split_inclusive('\n') {
            if line.len() > 1 {
                let mut b = text.clone().into_bytes();
                let at = offset + line.len() / 2;
                b[at] = if b[at] == b'A' { b'B' } else { b'A' };
                let bad = dir.0.join("tampered.tlog-proof");
                std::fs::write(&bad, &b).unwrap();
                let (ok, out) = verify_proof(&bad, &[key], None);
                assert!(
                    !ok,
                    "byte {at} of line {line:?} changed, still verified: {out}"
                );
                assert!(out.contains("tampered.tlog-proof"), "{out}");
                tampered_lines += 1;
            }
            offset += line.len();
        }
        assert!(tampered_lines >= 7, "{tampered_lines}");
    }

    // Another log's key does not verify the file; a verifier list holding the
    // right key among others does.
    let other = CheckpointSigner::from_pkcs8(
        &gw.config.audit.origin,
        &CheckpointSigner::generate_pkcs8().unwrap(),
    )
    .unwrap()
    .verifier_key();
    let file = dir.0.join("0.tlog-proof");
    let (ok, out) = verify_proof(&file, &[&other], None);
    assert!(!ok, "{out}");
    assert!(out.contains("not signed by the configured key"), "{out}");
    let (ok, out) = verify_proof(&file, &[&other, key], None);
    assert!(ok, "{out}");
    // Unusable input: clear messages, non-zero exit.
    let (ok, out) = verify_proof(&dir.0.join("missing.tlog-proof"), &[key], None);
    assert!(!ok && out.contains("missing.tlog-proof"), "{out}");
    let (ok, out) = verify_proof(&file, &["not-a-key"], None);
    assert!(!ok && out.contains("--key"), "{out}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_auditors_get_proof_files_and_hostile_bodies_are_refused() {
    let gw = TestGateway::start().await;
    queries(&gw, 3).await;
    let size = checkpoint_now(&gw).await;
    let records = gw.store.record_count().await.unwrap();

    // A bank: 403, JSON, no proof, audited as refused.
    let body = json!({"seq": 0, "format": "tlog-proof"});
    for who in ["bank", "department"] {
        let r = gw
            .client(who)
            .post("/v1/audit/proof/inclusion", &body)
            .await;
        assert_eq!(r.status, 403, "{who}");
        assert_eq!(r.body["error"]["code"], "role_not_permitted", "{who}");
        assert!(!String::from_utf8_lossy(&r.bytes).contains(HEADER));
        let e = entry_of(&gw, &r).await;
        assert_eq!(
            (e.action.as_str(), e.outcome.as_str(), e.status),
            ("audit_inclusion_proof", "role_not_permitted", 403)
        );
    }

    // Hostile or impossible requests: stable codes, audited, nothing stored.
    let auditor = gw.client("auditor");
    let before = gw.store.log_head().await.unwrap().0;
    #[rustfmt::skip]
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({"seq": 0, "format": "pem"}), 400, "invalid_request"),
        (json!({"seq": 0, "format": "TLOG-PROOF"}), 400, "invalid_request"),
        (json!({"seq": 0, "format": 1}), 400, "invalid_request"),
        (json!({"seq": 0, "format": "tlog-proof", "extra": "x"}), 400, "invalid_request"),
        (json!({"seq": size, "tree_size": size, "format": "tlog-proof"}), 400, "invalid_range"),
        (json!({"seq": 0, "tree_size": 0, "format": "tlog-proof"}), 400, "invalid_range"),
    ];
    let n = cases.len() as u64;
    for (i, (body, status, code)) in cases.into_iter().enumerate() {
        let r = auditor.post("/v1/audit/proof/inclusion", &body).await;
        assert_eq!(r.status, status, "case {i}: {:?}", r.body);
        assert_eq!(r.body["error"]["code"], code, "case {i}: {:?}", r.body);
        let e = entry_of(&gw, &r).await;
        assert_eq!((e.outcome.as_str(), e.status), (code, status), "case {i}");
    }
    assert_eq!(gw.store.log_head().await.unwrap().0, before + n);
    assert_eq!(gw.store.record_count().await.unwrap(), records);

    // A tree size without a signed checkpoint: the JSON answer says so
    // (checkpoint null), a proof file cannot exist.
    let head = gw.store.log_head().await.unwrap().0;
    let mut unsigned = None;
    for s in (1..head).rev() {
        if gw.store.checkpoint(Some(s)).await.unwrap().is_none() {
            unsigned = Some(s);
            break;
        }
    }
    let s = unsigned.expect("a tree size below the head without a checkpoint");
    let r = auditor
        .post(
            "/v1/audit/proof/inclusion",
            &json!({"seq": 0, "tree_size": s, "format": "tlog-proof"}),
        )
        .await;
    assert_eq!(r.status, 404, "{:?}", r.body);
    assert_eq!(r.body["error"]["code"], "no_checkpoint");
    let r = auditor
        .post(
            "/v1/audit/proof/inclusion",
            &json!({"seq": 0, "tree_size": s}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["checkpoint"], Value::Null);
    gw.stop().await;
}

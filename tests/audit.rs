//! The audit log is verifiable by auditors without trusting the operator:
//! the auditor API (roles, search, proofs, reports, exports), the offline
//! verifier against tampered exports and a tampered database, the portal's
//! access history, quotas and anomaly flags, and (ignored by default, run
//! explicitly in CI) durability across `kill -9`.
//!
//! Runs on SQLite, or on PostgreSQL when `CREDGATE_TEST_DATABASE_URL` is set.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use credgate::audit::AuditEntry;
use credgate::audit::checkpoint::{Checkpoint, CheckpointSigner, CheckpointVerifier};
use credgate::audit::export::{decode_hash, encode_hash};
use credgate::audit::merkle::{self, Hash};
use credgate::store::Store;
use serde_json::{Value, json};

// ------------------------------------------------------------ helpers

/// A response with its raw body (exports are not JSON).
struct Raw {
    status: u16,
    headers: hyper::HeaderMap,
    bytes: Bytes,
}

impl Raw {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or(Value::Null)
    }
}

/// One mTLS request as `who`, keeping the raw body.
async fn raw(
    addr: std::net::SocketAddr,
    who: &str,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<Raw, String> {
    let ctype = body.as_ref().map(|_| "application/json");
    let r = Client::new(addr, Some(who))
        .send(method, path, Bytes::from(body.unwrap_or_default()), ctype)
        .await?;
    Ok(Raw {
        status: r.status,
        headers: r.headers,
        bytes: r.bytes,
    })
}

async fn post(gw: &TestGateway, who: &str, path: &str, body: Value) -> Raw {
    raw(
        gw.addr,
        who,
        "POST",
        path,
        Some(body.to_string().into_bytes()),
    )
    .await
    .unwrap()
}

fn signer_of(gw: &TestGateway) -> CheckpointSigner {
    let key = std::fs::read(&gw.config.audit.checkpoint_key_file).unwrap();
    CheckpointSigner::from_pkcs8(&gw.config.audit.origin, &key).unwrap()
}

/// Sign the current head now (instead of waiting for the checkpointer) and
/// return (size, note).
async fn checkpoint_now(gw: &TestGateway) -> (u64, String) {
    let signer = signer_of(gw);
    credgate::audit::checkpoint_once(&gw.store, &signer, &gw.config.audit.origin)
        .await
        .unwrap();
    let (size, _) = gw.store.log_head().await.unwrap();
    let (s, note) = gw.store.checkpoint(Some(size)).await.unwrap().unwrap();
    (s, note)
}

async fn bank_query(gw: &TestGateway, who: &str, kind: &str, id: &str) -> Resp {
    gw.client(who)
        .post(
            "/v1/query",
            &query(
                kind,
                id,
                "financing",
                &["enterprise_name", "tax_paid_annual"],
            ),
        )
        .await
}

fn hashes(v: &Value) -> Vec<Hash> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|h| decode_hash(h.as_str().unwrap()).unwrap())
        .collect()
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_credgate")
}

/// `credgate audit verify FILE --key KEY [--previous P]`: (success, stdout + stderr).
fn verify_cli(file: &Path, key: &str, previous: Option<&Path>) -> (bool, String) {
    let mut cmd = Command::new(bin());
    cmd.args(["audit", "verify"]).arg(file).args(["--key", key]);
    if let Some(p) = previous {
        cmd.arg("--previous").arg(p);
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

/// A TOML config equivalent to `cfg`, for running the real binary.
fn write_config(dir: &Path, cfg: &credgate::config::Config, listen: &str, admin: &str) -> PathBuf {
    let mut c = cfg.clone();
    c.server.listen = listen.parse().unwrap();
    c.server.admin_listen = admin.parse().unwrap();
    c.server.shutdown_grace_ms = 2000;
    write_config_file(&c, &dir.join("credgate.toml"))
}

// ------------------------------------------------------------ roles

#[tokio::test]
async fn only_auditors_reach_the_audit_api_and_every_call_is_audited() {
    let gw = TestGateway::start().await;
    let calls: [(&str, &str, Option<Value>, &str); 7] = [
        ("POST", "/v1/audit/search", Some(json!({})), "audit_search"),
        (
            "POST",
            "/v1/audit/proof/inclusion",
            Some(json!({"seq": 0})),
            "audit_inclusion_proof",
        ),
        (
            "POST",
            "/v1/audit/proof/consistency",
            Some(json!({"old_size": 0})),
            "audit_consistency_proof",
        ),
        ("GET", "/v1/audit/checkpoint", None, "audit_checkpoint"),
        ("POST", "/v1/audit/report", Some(json!({})), "audit_report"),
        ("POST", "/v1/audit/export", Some(json!({})), "audit_export"),
        (
            "POST",
            "/v1/portal/access-history",
            Some(json!({"subject": {"type": "legal_person", "id": ids::CERAMICS}})),
            "access_history",
        ),
    ];
    let mut expected_entries = Vec::new();
    for (method, path, body, action) in &calls {
        let allowed = if *action == "access_history" {
            "portal"
        } else {
            "auditor"
        };
        for who in [
            "bank",
            "department",
            "agency",
            "portal",
            "auditor",
            "unregistered",
        ] {
            if who == allowed {
                continue;
            }
            let r = raw(
                gw.addr,
                who,
                method,
                path,
                body.as_ref().map(|b| b.to_string().into_bytes()),
            )
            .await
            .unwrap();
            let code = if who == "unregistered" {
                "unregistered_organisation"
            } else {
                "role_not_permitted"
            };
            assert_eq!(
                (r.status, r.json()["error"]["code"].as_str()),
                (403, Some(code)),
                "{who} {path}"
            );
            expected_entries.push((action.to_string(), code.to_string()));
        }
    }
    // The right role with the wrong method.
    let r = raw(gw.addr, "auditor", "GET", "/v1/audit/search", None)
        .await
        .unwrap();
    assert_eq!(r.status, 405);
    let r = raw(
        gw.addr,
        "auditor",
        "GET",
        "/v1/audit/checkpoint?size=1",
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 400);
    let r = raw(gw.addr, "auditor", "GET", "/v1/audit/nothing", None)
        .await
        .unwrap();
    assert_eq!(r.status, 404);
    let entries = audit_entries(&gw.store).await;
    let got: Vec<(String, String)> = entries
        .iter()
        .take(expected_entries.len())
        .map(|e| (e.action.clone(), e.outcome.clone()))
        .collect();
    assert_eq!(got, expected_entries, "every refused call is audited");
    assert_eq!(entries.len(), expected_entries.len() + 3);
    // A method the path does not allow is not a call of that endpoint: the
    // entry names the refusal (uniformly for every path, see http::route).
    assert_eq!(entries[entries.len() - 3].action, "method_not_allowed");
    assert_eq!(entries[entries.len() - 3].outcome, "method_not_allowed");
    gw.stop().await;
}

// ------------------------------------------------------------ search

#[tokio::test]
async fn search_by_subject_finds_exactly_that_subjects_entries() {
    let gw = TestGateway::start().await;
    let hasher = credgate::audit::SubjectHasher::new(
        &std::fs::read(gw.config.audit.subject_key_file.as_ref().unwrap()).unwrap(),
    );
    let ceramics = credgate::ids::SubjectId::parse("legal_person", ids::CERAMICS).unwrap();
    assert_eq!(
        bank_query(&gw, "bank", "legal_person", ids::CERAMICS)
            .await
            .status,
        200
    );
    assert_eq!(
        bank_query(&gw, "bank", "legal_person", ids::CHEM)
            .await
            .status,
        200
    );
    assert_eq!(
        bank_query(&gw, "bank2", "legal_person", ids::CERAMICS)
            .await
            .status,
        200
    );
    let r = gw
        .client("agency")
        .post(
            "/v1/query",
            &query(
                "natural_person",
                ids::PERSON,
                "credit_report",
                &["person_name"],
            ),
        )
        .await;
    assert_eq!(r.status, 200);
    // A failed query about the same subject (unknown purpose).
    let r = gw
        .client("bank")
        .post(
            "/v1/query",
            &query(
                "legal_person",
                ids::CERAMICS,
                "curiosity",
                &["enterprise_name"],
            ),
        )
        .await;
    assert_eq!(r.status, 400);

    let search = |body: Value| post(&gw, "auditor", "/v1/audit/search", body);
    let r = search(json!({"subject": {"type": "legal_person", "id": ids::CERAMICS}})).await;
    assert_eq!(r.status, 200, "{}", r.json());
    let found = r.json()["entries"].as_array().unwrap().clone();
    let seqs: Vec<u64> = found.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![0, 2, 4]);
    let all = audit_entries(&gw.store).await;
    let want_hash = hasher.hash(&ceramics);
    for (i, e) in all.iter().enumerate().take(5) {
        assert_eq!(
            seqs.contains(&(i as u64)),
            e.subject.as_deref() == Some(want_hash.as_str()),
            "seq {i}"
        );
    }
    for e in &found {
        assert_eq!(e["entry"]["subject"], want_hash);
    }
    // The same by hash, and the subject look-up itself is on the record.
    let r = search(json!({"subject_hash": want_hash})).await;
    assert_eq!(
        r.json()["entries"].as_array().unwrap().len(),
        4,
        "3 + the search"
    );
    let last = audit_entries(&gw.store).await;
    let lookup = &last[5];
    assert_eq!(lookup.action, "audit_search");
    assert_eq!(lookup.subject.as_deref(), Some(want_hash.as_str()));

    // Other filters.
    let count = |r: &Raw| r.json()["entries"].as_array().map(Vec::len).unwrap_or(99);
    let r = search(json!({"org": ids::BANK, "action": "query"})).await;
    assert_eq!(count(&r), 3);
    let r = search(json!({"org": ids::BANK2})).await;
    assert_eq!(count(&r), 1);
    let r = search(json!({"purpose": "credit_report"})).await;
    assert_eq!(count(&r), 1);
    let r = search(json!({"outcome": "unknown_purpose"})).await;
    assert_eq!(count(&r), 1);
    let r = search(json!({"decision": "withheld", "action": "query"})).await;
    assert_eq!(count(&r), 3, "tax_paid_annual is withheld from banks");
    // Denied attempts are refusals: the unknown purpose, not the consent
    // a bank did not present for tax_paid_annual.
    let r = search(json!({"denied": true, "action": "query"})).await;
    assert_eq!(count(&r), 1);
    let r =
        search(json!({"from": "2000-01-01T00:00:00Z", "to": "2000-01-02T00:00:00+08:00"})).await;
    assert_eq!(count(&r), 0);
    let r = search(json!({"from": "2000-01-01T00:00:00Z", "action": "query"})).await;
    assert_eq!(count(&r), 5);
    // Pagination.
    let r = search(json!({"action": "query", "limit": 2})).await;
    assert_eq!(count(&r), 2);
    let next = r.json()["next_after"].as_u64().unwrap();
    let r = search(json!({"action": "query", "limit": 2, "after": next})).await;
    assert_eq!(count(&r), 2);
    let next = r.json()["next_after"].as_u64().unwrap();
    let r = search(json!({"action": "query", "limit": 2, "after": next})).await;
    assert_eq!(count(&r), 1);
    assert!(r.json()["next_after"].is_null());
    gw.stop().await;
}

#[tokio::test]
async fn hostile_auditor_input_gets_stable_400s_and_is_audited() {
    let gw = TestGateway::start().await;
    bank_query(&gw, "bank", "legal_person", ids::CERAMICS).await;
    let (size, _) = checkpoint_now(&gw).await;
    let before = gw.store.log_head().await.unwrap().0;
    let records = gw.store.record_count().await.unwrap();
    #[rustfmt::skip]
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        ("auditor", "/v1/audit/search", b"{not json".to_vec(), 400, "malformed_json"),
        ("auditor", "/v1/audit/search", b"".to_vec(), 400, "malformed_json"),
        ("auditor", "/v1/audit/search", br#"{"sql":"DROP TABLE audit_log"}"#.to_vec(), 400, "invalid_request"),
        ("auditor", "/v1/audit/search", br#"{"limit":0}"#.to_vec(), 400, "invalid_request"),
        ("auditor", "/v1/audit/search", br#"{"limit":100000}"#.to_vec(), 400, "invalid_request"),
        ("auditor", "/v1/audit/search", br#"{"limit":-1}"#.to_vec(), 400, "invalid_request"),
        ("auditor", "/v1/audit/search", br#"{"after":1e99}"#.to_vec(), 400, "invalid_request"),
        ("auditor", "/v1/audit/search", br#"{"after":18446744073709551615}"#.to_vec(), 200, ""),
        ("auditor", "/v1/audit/search", br#"{"org":"91370300164100001B"}"#.to_vec(), 400, "invalid_identifier"),
        ("auditor", "/v1/audit/search", br#"{"subject":{"type":"legal_person","id":"91370300MA3CXQ001T"}}"#.to_vec(), 400, "invalid_identifier"),
        ("auditor", "/v1/audit/search", br#"{"subject":{"type":"alien","id":"x"}}"#.to_vec(), 400, "unknown_subject_type"),
        ("auditor", "/v1/audit/search", br#"{"subject_hash":"' OR 1=1 --"}"#.to_vec(), 400, "invalid_request"),
        ("auditor", "/v1/audit/search", br#"{"purpose":"x' OR '1'='1"}"#.to_vec(), 400, "invalid_request"),
        ("auditor", "/v1/audit/search", br#"{"decision":"maybe"}"#.to_vec(), 400, "invalid_request"),
        ("auditor", "/v1/audit/search", br#"{"from":"yesterday"}"#.to_vec(), 400, "invalid_timestamp"),
        ("auditor", "/v1/audit/search", br#"{"from":"2026-02-30T00:00:00Z"}"#.to_vec(), 400, "invalid_timestamp"),
        ("auditor", "/v1/audit/search", br#"{"from":"2026-01-02T00:00:00Z","to":"2026-01-01T00:00:00Z"}"#.to_vec(), 400, "invalid_range"),
        ("auditor", "/v1/audit/search", vec![b'['; 100_000], 400, "too_deep"),
        ("auditor", "/v1/audit/proof/inclusion", br#"{"seq":999}"#.to_vec(), 400, "invalid_range"),
        ("auditor", "/v1/audit/proof/inclusion", br#"{"seq":0,"tree_size":0}"#.to_vec(), 400, "invalid_range"),
        ("auditor", "/v1/audit/proof/inclusion", br#"{"seq":0,"tree_size":18446744073709551615}"#.to_vec(), 400, "invalid_range"),
        ("auditor", "/v1/audit/proof/inclusion", br#"{"seq":"0"}"#.to_vec(), 400, "invalid_request"),
        ("auditor", "/v1/audit/proof/consistency", br#"{"old_size":5,"new_size":2}"#.to_vec(), 400, "invalid_range"),
        ("auditor", "/v1/audit/proof/consistency", br#"{"old_size":18446744073709551615}"#.to_vec(), 400, "invalid_range"),
        ("auditor", "/v1/audit/report", br#"{"top":0}"#.to_vec(), 400, "invalid_request"),
        ("auditor", "/v1/audit/report", br#"{"from":"2026-01-01T00:00:00"}"#.to_vec(), 400, "invalid_timestamp"),
        ("auditor", "/v1/audit/export", br#"{"format":"xml"}"#.to_vec(), 400, "invalid_request"),
        ("auditor", "/v1/audit/export", br#"{"from_seq":1,"to_seq":0}"#.to_vec(), 400, "invalid_range"),
        ("auditor", "/v1/audit/export", br#"{"to_seq":99999999}"#.to_vec(), 400, "invalid_range"),
        ("auditor", "/v1/audit/export", br#"{"from_seq":0,"from":"2026-01-01T00:00:00Z"}"#.to_vec(), 400, "invalid_request"),
        ("auditor", "/v1/audit/export", br#"{"tree_size":999999}"#.to_vec(), 400, "invalid_range"),
        ("auditor", "/v1/audit/export", br#"{"consistency_from":999999}"#.to_vec(), 400, "invalid_range"),
        ("portal", "/v1/portal/access-history", br#"{"subject":{"type":"natural_person","id":"370303198502300011"}}"#.to_vec(), 400, "invalid_identifier"),
        ("portal", "/v1/portal/access-history", br#"{"subject":{"type":"legal_person","id":"91370300MA3CXQ001R"},"limit":5000}"#.to_vec(), 400, "invalid_request"),
        ("portal", "/v1/portal/access-history", br#"{}"#.to_vec(), 400, "invalid_request"),
    ];
    let n = cases.len() as u64;
    for (i, (who, path, body, status, code)) in cases.into_iter().enumerate() {
        let r = raw(gw.addr, who, "POST", path, Some(body)).await.unwrap();
        let v = r.json();
        assert_eq!(r.status, status, "case {i} {path}: {v}");
        if status != 200 {
            assert_eq!(v["error"]["code"], code, "case {i}: {v}");
            assert!(
                v["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty())
            );
        }
        assert!(r.headers.contains_key("x-audit-seq"), "case {i} audited");
    }
    // Nothing stored but the audit entries of the calls themselves.
    assert_eq!(gw.store.record_count().await.unwrap(), records);
    assert_eq!(gw.store.log_head().await.unwrap().0, before + n);
    assert!(size >= 1);
    gw.stop().await;
}

// ------------------------------------------------------------ proofs

#[tokio::test]
async fn proofs_verify_against_signed_checkpoints() {
    let gw = TestGateway::start().await;
    for i in 0..13 {
        let id = if i % 2 == 0 { ids::CERAMICS } else { ids::CHEM };
        bank_query(&gw, "bank", "legal_person", id).await;
    }
    let (size1, _) = checkpoint_now(&gw).await;
    assert_eq!(size1, 13);

    // The published checkpoint and key.
    let r = raw(gw.addr, "auditor", "GET", "/v1/audit/checkpoint", None)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["verifier_key"], gw.verifier_key);
    let verifier = CheckpointVerifier::from_verifier_key(&gw.verifier_key).unwrap();
    let cp1 = verifier.verify(v["checkpoint"].as_str().unwrap()).unwrap();
    assert_eq!((cp1.size, v["tree_size"].as_u64()), (13, Some(13)));

    for seq in 0..size1 {
        let r = post(
            &gw,
            "auditor",
            "/v1/audit/proof/inclusion",
            json!({"seq": seq, "tree_size": size1}),
        )
        .await;
        let v = r.json();
        assert_eq!(r.status, 200, "{v}");
        let note = verifier.verify(v["checkpoint"].as_str().unwrap()).unwrap();
        assert_eq!(note, cp1);
        let entry = v["entry"].as_str().unwrap();
        assert!(AuditEntry::parse(entry.as_bytes()).is_ok());
        let proof = hashes(&v["proof"]);
        assert_eq!(
            merkle::verify_inclusion(
                &merkle::leaf_hash(entry.as_bytes()),
                seq,
                size1,
                &proof,
                &cp1.root
            ),
            Ok(()),
            "seq {seq}"
        );
        // A proof for another entry does not fit this one.
        if seq > 0 {
            assert!(
                merkle::verify_inclusion(
                    &merkle::leaf_hash(b"forged"),
                    seq,
                    size1,
                    &proof,
                    &cp1.root
                )
                .is_err()
            );
        }
    }
    // Default: the latest checkpoint.
    let r = post(
        &gw,
        "auditor",
        "/v1/audit/proof/inclusion",
        json!({"seq": 3}),
    )
    .await;
    let v = r.json();
    assert!(v["tree_size"].as_u64().unwrap() >= size1);
    let cp = verifier.verify(v["checkpoint"].as_str().unwrap()).unwrap();
    assert_eq!(
        merkle::verify_inclusion(
            &merkle::leaf_hash(v["entry"].as_str().unwrap().as_bytes()),
            3,
            cp.size,
            &hashes(&v["proof"]),
            &cp.root
        ),
        Ok(())
    );

    // The log grows; the new checkpoint extends the old one.
    for _ in 0..7 {
        bank_query(&gw, "bank2", "legal_person", ids::CHEM).await;
    }
    let (size2, note2) = checkpoint_now(&gw).await;
    let cp2 = verifier.verify(&note2).unwrap();
    assert!(size2 > size1);
    let r = post(
        &gw,
        "auditor",
        "/v1/audit/proof/consistency",
        json!({"old_size": size1, "new_size": size2}),
    )
    .await;
    let v = r.json();
    assert_eq!(r.status, 200, "{v}");
    assert_eq!(
        verifier
            .verify(v["old_checkpoint"].as_str().unwrap())
            .unwrap(),
        cp1
    );
    assert_eq!(
        verifier
            .verify(v["new_checkpoint"].as_str().unwrap())
            .unwrap(),
        cp2
    );
    let proof = hashes(&v["proof"]);
    assert_eq!(
        merkle::verify_consistency(size1, size2, &cp1.root, &cp2.root, &proof),
        Ok(())
    );
    // Against a forged old head (the operator's story of a different past).
    let forged = merkle::leaf_hash(b"another history");
    assert!(merkle::verify_consistency(size1, size2, &forged, &cp2.root, &proof).is_err());
    // Every consistency proof between stored checkpoints verifies.
    let sizes = gw.store.checkpoint_sizes().await.unwrap();
    for (i, &a) in sizes.iter().enumerate() {
        for &b in &sizes[i..] {
            let v = post(
                &gw,
                "auditor",
                "/v1/audit/proof/consistency",
                json!({"old_size": a, "new_size": b}),
            )
            .await
            .json();
            let ca = verifier
                .verify(v["old_checkpoint"].as_str().unwrap())
                .unwrap();
            let cb = verifier
                .verify(v["new_checkpoint"].as_str().unwrap())
                .unwrap();
            assert_eq!(
                merkle::verify_consistency(a, b, &ca.root, &cb.root, &hashes(&v["proof"])),
                Ok(()),
                "{a} -> {b}"
            );
        }
    }
    gw.stop().await;
}

#[tokio::test]
async fn an_operator_rewriting_the_database_is_caught() {
    let gw = TestGateway::start().await;
    // Enough entries that seq 4 lies in a full entry bundle, the immutable
    // kind an operator could edit at rest.
    for _ in 0..260 {
        bank_query(&gw, "bank", "legal_person", ids::CERAMICS).await;
    }
    let (size, note) = checkpoint_now(&gw).await;
    let verifier = CheckpointVerifier::from_verifier_key(&gw.verifier_key).unwrap();
    let cp = verifier.verify(&note).unwrap();
    // Export before tampering: it verifies.
    let dir = TempDir::new("tamper-db");
    let body = json!({"tree_size": size});
    let before = post(&gw, "auditor", "/v1/audit/export", body.clone()).await;
    assert_eq!(before.status, 200);
    let f = dir.0.join("before.jsonl");
    std::fs::write(&f, &before.bytes).unwrap();
    let (ok, out) = verify_cli(&f, &gw.verifier_key, None);
    assert!(ok, "{out}");

    // The operator hides who made query 4: they rewrite entry 4 inside the
    // stored bundle (a file of the log directory, or its PostgreSQL row) and
    // leave the hash tiles alone (rewriting those too changes the root, see
    // the consistency tests).
    let bundle = gw.store.read_bundle(0).await.unwrap().unwrap();
    let mut entries: Vec<Vec<u8>> = credlog::tiles::decode_bundle(&bundle)
        .unwrap()
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect();
    assert_eq!(entries.len(), 256, "bundle 0 is full");
    let text = String::from_utf8(entries[4].clone()).unwrap();
    assert!(text.contains(ids::BANK));
    entries[4] = text.replace(ids::BANK, ids::BANK2).into_bytes();
    let forged = credlog::tiles::encode_bundle(&entries).unwrap();
    match gw.store.log_dir() {
        Some(dir) => std::fs::write(dir.join("tile/entries/000"), &forged).unwrap(),
        None => {
            let sql = format!(
                "UPDATE tlog_bundles SET data = '\\x{}' WHERE idx = 0",
                hex::encode(&forged)
            );
            assert_eq!(gw.store.execute_raw(&sql).await.unwrap(), 1);
        }
    }
    let rewritten = audit_entries(&gw.store).await;
    assert_eq!(rewritten[4].org.as_deref(), Some(ids::BANK2));

    for seq in 0..size.min(16) {
        let v = post(
            &gw,
            "auditor",
            "/v1/audit/proof/inclusion",
            json!({"seq": seq, "tree_size": size}),
        )
        .await
        .json();
        let leaf = merkle::leaf_hash(v["entry"].as_str().unwrap().as_bytes());
        let res = merkle::verify_inclusion(&leaf, seq, size, &hashes(&v["proof"]), &cp.root);
        assert_eq!(res.is_ok(), seq != 4, "seq {seq}: {res:?}");
    }
    // And the offline verifier names the rewritten entry.
    let after = post(&gw, "auditor", "/v1/audit/export", body).await;
    let f = dir.0.join("after.jsonl");
    std::fs::write(&f, &after.bytes).unwrap();
    let (ok, out) = verify_cli(&f, &gw.verifier_key, None);
    assert!(!ok);
    assert!(out.contains("line 6 (seq 4)"), "{out}");
    gw.stop().await;
}

// ------------------------------------------------------------ exports

/// Rewrite the lines of an export file.
fn edit(text: &str, f: impl FnOnce(&mut Vec<String>)) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    f(&mut lines);
    lines.join("\n") + "\n"
}

#[tokio::test]
async fn exports_verify_offline_and_every_tampering_is_named() {
    let gw = TestGateway::start().await;
    for i in 0..10 {
        let who = if i % 3 == 0 { "bank2" } else { "bank" };
        bank_query(&gw, who, "legal_person", ids::CERAMICS).await;
    }
    let (size1, note1) = checkpoint_now(&gw).await;
    let dir = TempDir::new("export");
    let key = gw.verifier_key.clone();
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.0.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let prev = write("prev.note", note1.as_bytes());

    // More traffic, a newer checkpoint.
    for _ in 0..6 {
        bank_query(&gw, "bank", "legal_person", ids::CHEM).await;
    }
    let (size2, _) = checkpoint_now(&gw).await;

    for format in ["jsonl", "csv"] {
        let r = post(
            &gw,
            "auditor",
            "/v1/audit/export",
            json!({"format": format, "tree_size": size2}),
        )
        .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.bytes));
        let ctype = r.headers["content-type"].to_str().unwrap();
        assert!(ctype.contains(if format == "csv" { "csv" } else { "ndjson" }));
        let text = String::from_utf8(r.bytes.to_vec()).unwrap();
        let hdr = if format == "csv" { 2 } else { 1 };
        assert_eq!(text.lines().count() as u64, hdr as u64 + size2);
        let good = write(&format!("good.{format}"), text.as_bytes());
        let (ok, out) = verify_cli(&good, &key, None);
        assert!(ok, "{format}: {out}");
        assert!(out.contains(&format!("{size2} entries")), "{out}");
        // Consistent with the checkpoint saved before the log grew.
        let (ok, out) = verify_cli(&good, &key, Some(&prev));
        assert!(ok, "{out}");
        assert!(
            out.contains(&format!(
                "consistent with the previous checkpoint at tree size {size1}"
            )),
            "{out}"
        );

        // The line holding seq s.
        let line = |s: u64| hdr + 1 + s as usize;
        let cases: Vec<(&str, String, String)> = vec![
            (
                "flip one byte of an entry",
                edit(&text, |l| {
                    let i = line(3) - 1;
                    let pos = l[i].find("financing").unwrap();
                    let mut b = l[i].clone().into_bytes();
                    b[pos] ^= 0x01;
                    l[i] = String::from_utf8(b).unwrap();
                }),
                format!("line {} (seq 3)", line(3)),
            ),
            (
                "delete an entry",
                edit(&text, |l| {
                    l.remove(line(5) - 1);
                }),
                format!("line {} (seq 5)", line(5)),
            ),
            (
                "swap two entries",
                edit(&text, |l| l.swap(line(2) - 1, line(7) - 1)),
                format!("line {} (seq 2)", line(2)),
            ),
            (
                "truncate the tail",
                edit(&text, |l| l.truncate(line(size2 - 3))),
                format!("line {} (seq {})", line(size2 - 2), size2 - 2),
            ),
            (
                "replace the checkpoint with one signed by another key",
                {
                    let other = CheckpointSigner::from_pkcs8(
                        &gw.config.audit.origin,
                        &CheckpointSigner::generate_pkcs8().unwrap(),
                    )
                    .unwrap();
                    let cp = CheckpointVerifier::from_verifier_key(&key)
                        .unwrap()
                        .verify(&first_note(&text, format))
                        .unwrap();
                    let forged = other.sign(&cp).unwrap();
                    replace_note(&text, format, &forged)
                },
                format!("line {hdr}:"),
            ),
            (
                "alter the checkpoint",
                {
                    let note = first_note(&text, format);
                    let altered =
                        note.replacen(&format!("\n{size2}\n"), &format!("\n{}\n", size2 + 1), 1);
                    assert_ne!(altered, note);
                    replace_note(&text, format, &altered)
                },
                format!("line {hdr}:"),
            ),
        ];
        for (what, tampered, position) in cases {
            assert_ne!(tampered, text, "{what}");
            let p = write(&format!("tampered.{format}"), tampered.as_bytes());
            let (ok, out) = verify_cli(&p, &key, None);
            assert!(!ok, "{format}: {what} went unnoticed: {out}");
            assert!(
                out.contains(&position),
                "{format}: {what}: want '{position}' in: {out}"
            );
        }

        // A forged earlier checkpoint — even one signed with the real key,
        // as an operator rewriting history would — is not a prefix.
        let signer = signer_of(&gw);
        let forged = signer
            .sign(&Checkpoint {
                origin: gw.config.audit.origin.clone(),
                size: size1,
                root: merkle::leaf_hash(b"a different past"),
            })
            .unwrap();
        let forged = write("forged.note", forged.as_bytes());
        let (ok, out) = verify_cli(&good, &key, Some(&forged));
        assert!(!ok);
        assert!(out.contains("NOT consistent"), "{out}");
    }

    // A partial export carries a consistency proof on request.
    let r = post(
        &gw,
        "auditor",
        "/v1/audit/export",
        json!({"from_seq": size1 + 1, "to_seq": size2, "tree_size": size2, "consistency_from": size1}),
    )
    .await;
    let part = write("part.jsonl", &r.bytes);
    let (ok, out) = verify_cli(&part, &key, Some(&prev));
    assert!(ok, "{out}");
    let r = post(
        &gw,
        "auditor",
        "/v1/audit/export",
        json!({"from_seq": size1 + 1, "to_seq": size2, "tree_size": size2}),
    )
    .await;
    let part = write("part2.jsonl", &r.bytes);
    assert!(verify_cli(&part, &key, None).0);
    let (ok, out) = verify_cli(&part, &key, Some(&prev));
    assert!(!ok && out.contains("cannot check consistency"), "{out}");

    // By time range: the whole history so far.
    let r = post(
        &gw,
        "auditor",
        "/v1/audit/export",
        json!({"from": "2000-01-01T00:00:00Z", "to": "2999-01-01T00:00:00Z", "tree_size": size2}),
    )
    .await;
    let text = String::from_utf8(r.bytes.to_vec()).unwrap();
    let header: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(
        (header["start"].as_u64(), header["end"].as_u64()),
        (Some(0), Some(size2))
    );

    // The operator's export straight from the store verifies too.
    let cfg_path = write_config(&dir.0, &gw.config, "127.0.0.1:1", "127.0.0.1:2");
    let out_path = dir.0.join("store-export.csv");
    let mut cmd = Command::new(bin());
    cmd.args(["audit", "export", "--config"])
        .arg(&cfg_path)
        .arg("--out")
        .arg(&out_path)
        .args(["--format", "csv"]);
    let out = output(cmd).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (ok, out) = verify_cli(&out_path, &key, Some(&prev));
    assert!(ok, "{out}");
    gw.stop().await;
}

/// The signed note in an export's header.
fn first_note(text: &str, format: &str) -> String {
    let header = header_json(text, format);
    header["checkpoint"].as_str().unwrap().to_owned()
}

fn header_json(text: &str, format: &str) -> Value {
    if format == "csv" {
        let line = text.lines().nth(1).unwrap();
        let cells = credgate::audit::export::parse_csv_line(line).unwrap();
        serde_json::from_str(&cells[11]).unwrap()
    } else {
        serde_json::from_str(text.lines().next().unwrap()).unwrap()
    }
}

fn replace_note(text: &str, format: &str, note: &str) -> String {
    let mut h = header_json(text, format);
    h["checkpoint"] = json!(note);
    let json = h.to_string();
    edit(text, |l| {
        if format == "csv" {
            l[1] = format!("export,,,,,,,,,,,\"{}\"", json.replace('"', "\"\""));
        } else {
            l[0] = json;
        }
    })
}

// ------------------------------------------------------------ portal

#[tokio::test]
async fn portal_shows_a_subject_its_own_access_history_only() {
    let gw = TestGateway::start().await;
    let agency = gw.client("agency");
    let r = agency
        .post(
            "/v1/query",
            &query(
                "natural_person",
                ids::PERSON,
                "credit_report",
                &["person_name", "religion"],
            ),
        )
        .await;
    assert_eq!(r.status, 200);
    agency
        .post(
            "/v1/query",
            &query(
                "natural_person",
                ids::PERSON2,
                "credit_report",
                &["person_name"],
            ),
        )
        .await;
    bank_query(&gw, "bank", "legal_person", ids::CERAMICS).await;
    // An auditor looking the person up is not an access to their data.
    post(
        &gw,
        "auditor",
        "/v1/audit/search",
        json!({"subject": {"type": "natural_person", "id": ids::PERSON}}),
    )
    .await;

    let r = post(
        &gw,
        "portal",
        "/v1/portal/access-history",
        json!({"subject": {"type": "natural_person", "id": ids::PERSON}}),
    )
    .await;
    let v = r.json();
    assert_eq!(r.status, 200, "{v}");
    let entries = v["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{v}");
    let e = &entries[0];
    assert_eq!(e["org"], "91370300MA3C00001U");
    assert!(e["org_name"].as_str().unwrap().contains("信用服务"));
    assert_eq!(e["purpose"], "credit_report");
    assert_eq!(e["action"], "query");
    assert_eq!(e["outcome"], "ok");
    assert_eq!(e["fields"][0]["field"], "person_name");
    assert_eq!(e["fields"][1]["field"], "prohibited:religion");
    assert_eq!(e["fields"][1]["decision"], "withheld");
    assert!(e["ts"].as_str().unwrap().ends_with('Z'));
    assert_eq!(v["subject"]["id"], ids::PERSON);
    let text = v.to_string();
    assert!(!text.contains(ids::PERSON2) && !text.contains(ids::CERAMICS));

    // The history request is audited under the subject.
    let last = audit_entries(&gw.store).await.pop().unwrap();
    assert_eq!(last.action, "access_history");
    assert_eq!(last.org.as_deref(), Some(ids::PORTAL));
    assert!(last.subject.is_some());
    // And it is the portal's alone.
    let r = post(
        &gw,
        "bank",
        "/v1/portal/access-history",
        json!({"subject": {"type": "natural_person", "id": ids::PERSON}}),
    )
    .await;
    assert_eq!(r.status, 403);
    gw.stop().await;
}

// ------------------------------------------------------------ quotas, anomalies, reports

fn metric(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn quotas_refuse_flag_and_reach_the_report() {
    // A copy of the policies where bank2 has its own, smaller quota.
    let pol = TempDir::new("policies");
    for f in std::fs::read_dir(policies()).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, pol.0.join(f.file_name().unwrap())).unwrap();
    }
    let orgs = std::fs::read_to_string(pol.0.join("organisations.toml")).unwrap();
    let orgs = orgs.replacen(
        "code = \"91370300164100002D\"",
        "code = \"91370300164100002D\"\nquota_distinct_subjects_per_hour = 1",
        1,
    );
    // Without the sample role quota for banks, the server default applies.
    let orgs = orgs.replacen("\nbank = 300\n", "\n", 1);
    std::fs::write(pol.0.join("organisations.toml"), orgs).unwrap();
    let pol_dir = pol.0.clone();
    let gw = TestGateway::start_with(
        move |c| {
            c.policy.dir = pol_dir;
            c.server.quota_distinct_subjects_per_hour = Some(2);
            c.server.anomaly_denied_per_hour = 3;
        },
        true,
    )
    .await;

    assert_eq!(
        bank_query(&gw, "bank", "legal_person", ids::CERAMICS)
            .await
            .status,
        200
    );
    assert_eq!(
        bank_query(&gw, "bank", "legal_person", ids::CHEM)
            .await
            .status,
        200
    );
    let r = gw
        .client("bank")
        .post(
            "/v1/query",
            &query(
                "legal_person",
                "91350100M000100Y43",
                "financing",
                &["enterprise_name"],
            ),
        )
        .await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "quota_exceeded");
    assert_eq!(r.body["error"]["details"]["limit"], 2);
    // Subjects already queried this hour stay available.
    assert_eq!(
        bank_query(&gw, "bank", "legal_person", ids::CERAMICS)
            .await
            .status,
        200
    );
    // bank2's own quota from organisations.toml.
    assert_eq!(
        bank_query(&gw, "bank2", "legal_person", ids::CHEM)
            .await
            .status,
        200
    );
    assert_eq!(
        bank_query(&gw, "bank2", "legal_person", ids::CERAMICS)
            .await
            .status,
        429
    );
    // The refusal is audited with the subject.
    let last = audit_entries(&gw.store).await.pop().unwrap();
    assert_eq!(
        (last.outcome.as_str(), last.status),
        ("quota_exceeded", 429)
    );
    assert!(last.subject.is_some());

    // The department piles up denied attempts (bad identifiers).
    for _ in 0..4 {
        let r = gw
            .client("department")
            .post(
                "/v1/query",
                &query(
                    "legal_person",
                    "91370300MA3CXQ001T",
                    "administration",
                    &["enterprise_name"],
                ),
            )
            .await;
        assert_eq!(r.status, 400);
    }

    let (_, m) = gw.admin_get("/metrics").await;
    let bank = ids::BANK;
    let bank2 = ids::BANK2;
    let dept = ids::DEPARTMENT;
    assert_eq!(
        metric(
            &m,
            &format!("credgate_anomaly{{org=\"{bank}\",kind=\"distinct_subjects\"}}")
        ),
        Some(1),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            &format!("credgate_anomaly{{org=\"{bank2}\",kind=\"distinct_subjects\"}}")
        ),
        Some(1)
    );
    assert_eq!(
        metric(
            &m,
            &format!("credgate_quota_refused_total{{org=\"{bank}\"}}")
        ),
        Some(1)
    );
    assert_eq!(
        metric(
            &m,
            &format!("credgate_org_distinct_subjects{{org=\"{bank}\"}}")
        ),
        Some(2)
    );
    assert_eq!(
        metric(
            &m,
            &format!("credgate_anomaly{{org=\"{dept}\",kind=\"denied_attempts\"}}")
        ),
        Some(1)
    );
    assert_eq!(
        metric(
            &m,
            &format!("credgate_anomaly{{org=\"{dept}\",kind=\"distinct_subjects\"}}")
        ),
        Some(0)
    );

    let r = post(&gw, "auditor", "/v1/audit/report", json!({"top": 5})).await;
    let v = r.json();
    assert_eq!(r.status, 200, "{v}");
    let by_org: HashMap<String, &Value> = v["volume"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["org"].as_str().unwrap_or("").to_owned(), o))
        .collect();
    let b = by_org[bank];
    // Disjoint: tax_paid_annual withheld for want of consent is an
    // ordinary answer; the 429 is the one refusal.
    assert_eq!(
        (
            b["total"].as_i64(),
            b["ok"].as_i64(),
            b["partly_refused"].as_i64(),
            b["refused"].as_i64()
        ),
        (Some(4), Some(3), Some(0), Some(1))
    );
    assert!(b["name"].as_str().unwrap().contains("ICBC"));
    assert_eq!(by_org[dept]["refused"].as_i64(), Some(4));
    let denied = v["denied"].as_array().unwrap();
    assert!(
        denied
            .iter()
            .any(|d| d["org"] == dept && d["outcome"] == "invalid_identifier" && d["count"] == 4)
    );
    assert!(
        denied
            .iter()
            .any(|d| d["org"] == bank && d["outcome"] == "quota_exceeded" && d["count"] == 1)
    );
    let top = v["top_subjects"].as_array().unwrap();
    assert!(
        top[0]["queries"].as_i64().unwrap() >= top.last().unwrap()["queries"].as_i64().unwrap()
    );
    // Refused queries name their subject too: three subjects in all.
    assert_eq!(top.len(), 3, "{v}");
    assert_eq!(top[0]["queries"], 3);
    let hourly = v["anomalies"]["hourly"].as_array().unwrap();
    let flagged =
        |org: &str, kind: &str| hourly.iter().any(|h| h["org"] == org && h["kind"] == kind);
    assert!(flagged(bank, "distinct_subjects"), "{v}");
    assert!(flagged(bank2, "distinct_subjects"));
    assert!(flagged(dept, "denied_attempts"));
    assert!(!flagged(dept, "distinct_subjects"));
    let node = v["anomalies"]["this_node"].as_array().unwrap();
    let b2 = node.iter().find(|s| s["org"] == bank2).unwrap();
    assert_eq!(b2["quota"], 1);
    assert_eq!(b2["flags"], json!(["distinct_subjects"]));
    assert_eq!(
        v["anomalies"]["limits"]["default_distinct_subjects_per_hour"],
        2
    );
    gw.stop().await;
}

#[tokio::test]
async fn flag_only_quota_serves_but_flags() {
    // Without the sample role quota for banks, the server default applies.
    let pol = TempDir::new("policies");
    for f in std::fs::read_dir(policies()).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, pol.0.join(f.file_name().unwrap())).unwrap();
    }
    let orgs = std::fs::read_to_string(pol.0.join("organisations.toml")).unwrap();
    let orgs = orgs.replacen("\nbank = 300\n", "\n", 1);
    std::fs::write(pol.0.join("organisations.toml"), orgs).unwrap();
    let pol_dir = pol.0.clone();
    let gw = TestGateway::start_with(
        move |c| {
            c.policy.dir = pol_dir;
            c.server.quota_distinct_subjects_per_hour = Some(1);
            c.server.quota_enforce = false;
        },
        true,
    )
    .await;
    for id in [ids::CERAMICS, ids::CHEM] {
        assert_eq!(
            bank_query(&gw, "bank", "legal_person", id).await.status,
            200
        );
    }
    let (_, m) = gw.admin_get("/metrics").await;
    let bank = ids::BANK;
    assert_eq!(
        metric(
            &m,
            &format!("credgate_anomaly{{org=\"{bank}\",kind=\"distinct_subjects\"}}")
        ),
        Some(1),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            &format!("credgate_quota_refused_total{{org=\"{bank}\"}}")
        ),
        Some(0)
    );
    let v = post(&gw, "auditor", "/v1/audit/report", json!({}))
        .await
        .json();
    assert!(
        v["anomalies"]["hourly"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["org"] == bank && h["value"] == 2 && h["limit"] == 1),
        "{v}"
    );
    gw.stop().await;
}

// ------------------------------------------------------------ durability

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_ready(addr: std::net::SocketAddr) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Ok(r) = raw(addr, "auditor", "GET", "/v1/audit/checkpoint", None).await
            && r.status == 200
        {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "gateway did not come up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Start the real binary, drive concurrent queries, SIGKILL it mid-load,
/// restart it, and check that every acknowledged query is in the log, the
/// log is contiguous, the tree recomputed from all leaves matches the stored
/// head and every checkpoint verifies. Ignored by default (it spawns
/// processes and takes a few seconds); CI runs it with `--ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn acknowledged_queries_survive_kill_9() {
    let dir = TempDir::new("kill9");
    let (url, pg_db) = test_database(&dir.0).await;
    let cfg = config(&dir.0, &url);
    let (port, admin_port) = (free_port(), free_port());
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let cfg_path = write_config(
        &dir.0,
        &cfg,
        &addr.to_string(),
        &format!("127.0.0.1:{admin_port}"),
    );
    let log = std::fs::File::create(dir.0.join("gateway.log")).unwrap();
    let spawn = || {
        Command::new(bin())
            .args(["serve", "--config"])
            .arg(&cfg_path)
            .stdout(std::process::Stdio::null())
            .stderr(log.try_clone().unwrap())
            .spawn()
            .unwrap()
    };
    let mut child = spawn();
    wait_ready(addr).await;

    // Load: 12 workers, each sending queries back to back.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..12 {
        let stop = stop.clone();
        workers.push(tokio::spawn(async move {
            let who = ["bank", "bank2", "agency", "department"][w % 4];
            let body = query(
                "legal_person",
                ids::CERAMICS,
                "financing",
                &["enterprise_name"],
            );
            let mut acked = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match raw(
                    addr,
                    who,
                    "POST",
                    "/v1/query",
                    Some(body.to_string().into_bytes()),
                )
                .await
                {
                    Ok(r) if r.status < 500 => {
                        let seq: u64 = r.headers["x-audit-seq"].to_str().unwrap().parse().unwrap();
                        let rid = r.headers["x-request-id"].to_str().unwrap().to_owned();
                        acked.push((seq, rid));
                    }
                    Ok(r) => panic!("5xx under load: {}", r.status),
                    Err(_) => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
                }
            }
            acked
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut acked = Vec::new();
    for w in workers {
        acked.extend(w.await.unwrap());
    }
    assert!(
        acked.len() > 20,
        "too little load before the kill: {}",
        acked.len()
    );

    // Restart: the log continues where it stopped.
    let mut child = spawn();
    wait_ready(addr).await;
    for _ in 0..5 {
        let r = raw(
            addr,
            "bank",
            "POST",
            "/v1/query",
            Some(
                query("legal_person", ids::CHEM, "financing", &["enterprise_name"])
                    .to_string()
                    .into_bytes(),
            ),
        )
        .await
        .unwrap();
        assert_eq!(r.status, 200);
        let seq: u64 = r.headers["x-audit-seq"].to_str().unwrap().parse().unwrap();
        acked.push((seq, r.headers["x-request-id"].to_str().unwrap().to_owned()));
    }
    // Graceful stop this time: it writes a final checkpoint.
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    assert!(child.wait().unwrap().success());

    let store = Store::connect(&url, 2).await.unwrap();
    let (size, head_root) = store.log_head().await.unwrap();
    let rows = store.audit_leaves(0, size + 10).await.unwrap();
    assert_eq!(rows.len() as u64, size, "rows beyond the head or missing");
    let mut leaves = Vec::with_capacity(rows.len());
    let mut by_seq = HashMap::new();
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r.seq, i as u64, "seqs are contiguous");
        let leaf = merkle::leaf_hash(&r.entry);
        assert_eq!(r.leaf, leaf.to_vec(), "stored leaf hash of seq {i}");
        leaves.push(leaf);
        by_seq.insert(r.seq, AuditEntry::parse(&r.entry).unwrap().request_id);
    }
    for (seq, rid) in &acked {
        assert_eq!(
            by_seq.get(seq),
            Some(rid),
            "acknowledged seq {seq} lost or different"
        );
    }
    assert_eq!(
        merkle::root_of(&leaves),
        head_root,
        "tree recomputed from all leaves"
    );
    let verifier = CheckpointVerifier::from_verifier_key(
        &CheckpointSigner::from_pkcs8(
            &cfg.audit.origin,
            &std::fs::read(&cfg.audit.checkpoint_key_file).unwrap(),
        )
        .unwrap()
        .verifier_key(),
    )
    .unwrap();
    let sizes = store.checkpoint_sizes().await.unwrap();
    assert!(sizes.contains(&size), "final checkpoint at the head");
    for s in sizes {
        let (_, note) = store.checkpoint(Some(s)).await.unwrap().unwrap();
        let cp = verifier.verify(&note).unwrap();
        assert_eq!(cp.size, s);
        assert_eq!(
            cp.root,
            merkle::root_of(&leaves[..s as usize]),
            "checkpoint {s}"
        );
    }
    eprintln!(
        "kill -9: {} acknowledged, log size {size}, root {}",
        acked.len(),
        encode_hash(&head_root)
    );
    store.close().await;
    drop_test_database(pg_db).await;
}

// ------------------------------------------------------------ log v2: index, checkpoints

/// Every search an auditor can make in this test, and the report.
async fn all_views(gw: &TestGateway) -> Vec<Value> {
    let a = gw.client("auditor");
    let mut out = Vec::new();
    for body in [
        json!({}),
        json!({"org": ids::BANK}),
        json!({"org": ids::BANK2, "limit": 3}),
        json!({"subject": {"type": "legal_person", "id": ids::CERAMICS}}),
        json!({"subject": {"type": "legal_person", "id": ids::CHEM}}),
        json!({"action": "query", "decision": "withheld"}),
        json!({"denied": true}),
        json!({"outcome": "not_found"}),
        json!({"after": 5, "limit": 7}),
    ] {
        let r = a.post("/v1/audit/search", &body).await;
        assert_eq!(r.status, 200, "{body}: {:?}", r.body);
        out.push(r.body["entries"].clone());
    }
    let r = a.post("/v1/audit/report", &json!({})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    out.push(r.body["volume"].clone());
    out.push(r.body["denied"].clone());
    out.push(r.body["top_subjects"].clone());
    out
}

#[tokio::test]
async fn reindex_rebuilds_an_index_with_identical_results() {
    let gw = TestGateway::start().await;
    for i in 0..40 {
        let (who, id) = match i % 4 {
            0 => ("bank", ids::CERAMICS),
            1 => ("bank2", ids::CHEM),
            2 => ("bank", "91370300MA3XXX999X"),
            _ => ("agency", ids::CERAMICS),
        };
        bank_query(&gw, who, "legal_person", id).await;
    }
    // Search results are entries read back from the log.
    let before = all_views(&gw).await;
    let found = before[0].as_array().unwrap();
    assert!(found.len() >= 40);
    let log = audit_entries(&gw.store).await;
    for e in found {
        let seq = e["seq"].as_u64().unwrap() as usize;
        let entry: AuditEntry = serde_json::from_value(e["entry"].clone()).unwrap();
        assert_eq!(entry, log[seq]);
    }

    // A damaged index gives other answers ...
    let n = gw
        .store
        .execute_raw("DELETE FROM audit_index WHERE seq % 3 = 1")
        .await
        .unwrap();
    assert!(n > 10);
    let damaged = all_views(&gw).await;
    assert_ne!(damaged[..3], before[..3]);

    // ... and `credgate audit reindex`, run beside the serving gateway,
    // restores exactly the same ones.
    let cfg = write_config_file(&gw.config, &gw.dir.0.join("reindex.toml"));
    let mut cmd = Command::new(bin());
    cmd.args(["audit", "reindex", "--config"]).arg(&cfg);
    let out = output(cmd).await;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with("indexed "), "{text}");
    let after = all_views(&gw).await;
    // The searches themselves were appended meanwhile: compare the views
    // over the entries that existed before (the first page of every
    // search is bounded by seq, so only unbounded searches can grow).
    for (i, (a, b)) in before.iter().zip(&after).enumerate() {
        if let (Some(a), Some(b)) = (a.as_array(), b.as_array())
            && i < 9
        {
            assert_eq!(&b[..a.len().min(b.len())], &a[..], "search {i}");
        } else if i >= 9 {
            // Report rows: the counts of the searches' own entries differ
            // only in the auditor's row.
            let strip = |v: &Value| -> Vec<Value> {
                v.as_array()
                    .unwrap()
                    .iter()
                    .filter(|r| !r.to_string().contains("113703000043000036"))
                    .cloned()
                    .collect()
            };
            assert_eq!(strip(a), strip(b), "report part {i}");
        }
    }
    // And directly: rebuilding twice changes nothing.
    let n1 = gw.store.reindex().await.unwrap();
    let rows1 = gw
        .store
        .count_raw("SELECT COUNT(*) FROM audit_index")
        .await
        .unwrap();
    assert_eq!(rows1 as u64, n1);
    assert_eq!(n1, gw.store.log_head().await.unwrap().0);
    gw.stop().await;
}

/// A second process (`credgate audit search` beside the gateway) searches
/// an index the gateway keeps up to date without taking the index-head
/// lock: here another connection holds that lock (the SQLite write lock, or
/// the row lock on PostgreSQL) for the whole search, as a gateway's indexer
/// transaction does while it runs. Taking the lock first made every new
/// process's first search wait for it ("database is locked" after the
/// busy timeout on SQLite, indefinitely on PostgreSQL).
#[tokio::test]
async fn a_second_process_searches_the_index_without_its_lock() {
    use sqlx::Connection;
    let gw = TestGateway::start().await;
    for id in [ids::CERAMICS, ids::CHEM, ids::CERAMICS] {
        bank_query(&gw, "bank", "legal_person", id).await;
    }
    gw.store.ensure_indexed().await.unwrap();
    let q = credgate::store::AuditQuery {
        org: Some(ids::BANK.into()),
        limit: 100,
        ..Default::default()
    };
    let want = gw.store.audit_query(&q).await.unwrap();
    assert_eq!(want.len(), 3);

    // Connected (and migrated) first, as the tool is before it searches.
    let other = Store::connect_config(&gw.config).await.unwrap();
    let url = gw.config.store.url.clone();
    let holder: Box<dyn std::any::Any> = if url.starts_with("postgres") {
        let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::query("BEGIN").execute(&mut c).await.unwrap();
        sqlx::query("SELECT size FROM audit_index_head WHERE id = 1 FOR UPDATE")
            .execute(&mut c)
            .await
            .unwrap();
        Box::new(c)
    } else {
        let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut c)
            .await
            .unwrap();
        Box::new(c)
    };
    assert_eq!(other.indexed_size(), 0, "a new process knows no index yet");
    let got = tokio::time::timeout(Duration::from_secs(30), other.audit_query(&q))
        .await
        .expect("the search waited for the index-head lock")
        .unwrap();
    let seqs = |v: &[credgate::store::StoredAudit]| v.iter().map(|e| e.seq).collect::<Vec<_>>();
    assert_eq!(seqs(&got), seqs(&want));
    assert_eq!(other.indexed_size(), gw.store.log_head().await.unwrap().0);
    drop(holder);
    other.close().await;
    gw.stop().await;
}

/// Empty the search index behind every gateway's back: what
/// `Store::reindex` in another process does first.
async fn empty_index(url: &str) {
    use sqlx::Connection;
    let reset = [
        "UPDATE audit_index_head SET size = 0 WHERE id = 1",
        "DELETE FROM audit_index",
    ];
    if url.starts_with("postgres") {
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        for sql in reset {
            sqlx::query(sql).execute(&mut c).await.unwrap();
        }
    } else {
        let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
        for sql in reset {
            sqlx::query(sql).execute(&mut c).await.unwrap();
        }
    }
}

/// A process without a live indexer (`credgate audit search`) that finds
/// the index lagging behind a running gateway leaves the indexing to the
/// gateway (it waits while the stored index head moves) instead of
/// competing with it for the write lock; with no gateway indexing, it
/// indexes itself after `OTHER_INDEXER_STALL`.
#[tokio::test]
async fn a_search_beside_a_gateway_waits_for_its_indexer_and_indexes_alone_without_one() {
    let gw = TestGateway::start().await;
    let other = Store::connect_config(&gw.config).await.unwrap();
    let q = credgate::store::AuditQuery {
        org: Some(ids::BANK.into()),
        limit: 1_000,
        ..Default::default()
    };
    // The gateway's indexer waits `INDEX_DELAY` after each batch: searched
    // at once, the index lags the log.
    for _ in 0..20 {
        bank_query(&gw, "bank", "legal_person", ids::CERAMICS).await;
    }
    let (size, _) = gw.store.log_head().await.unwrap();
    let got = other.audit_query(&q).await.unwrap();
    assert_eq!(got.len(), 20, "every query is found");
    assert_eq!(other.indexed_size(), size);
    assert_eq!(other.indexed_here(), 0, "the gateway indexed, not the tool");
    let want: Vec<u64> = got.iter().map(|e| e.seq).collect();
    let config = gw.config.clone();
    let (_dir, pg_db) = gw.stop_keeping_data().await;

    // No gateway: the index is emptied behind the tool's back (what another
    // process's `credgate audit reindex` starts with), and the next tool
    // indexes everything itself, with the same results.
    empty_index(&config.store.url).await;
    let alone = Store::connect_config(&config).await.unwrap();
    let started = std::time::Instant::now();
    let again = alone.audit_query(&q).await.unwrap();
    assert!(
        started.elapsed() >= credgate::store::OTHER_INDEXER_STALL,
        "it first gave another indexer its chance"
    );
    assert_eq!(again.iter().map(|e| e.seq).collect::<Vec<_>>(), want);
    assert_eq!(
        alone.indexed_here(),
        size,
        "it indexed the whole log itself"
    );
    alone.close().await;
    other.close().await;
    drop_test_database(pg_db).await;
}

/// Another process's `credgate audit reindex` empties the index before it
/// refills it. A running gateway's searches meanwhile are complete: the
/// stored index head is the truth, so the gateway sees the reset and
/// indexes what the rebuild has not reached yet (its view of the index
/// used only to grow, and such a search returned nothing).
#[tokio::test]
async fn a_gateway_search_while_another_process_rebuilds_the_index_is_complete() {
    let gw = TestGateway::start().await;
    for _ in 0..5 {
        bank_query(&gw, "bank", "legal_person", ids::CHEM).await;
    }
    let q = credgate::store::AuditQuery {
        org: Some(ids::BANK.into()),
        limit: 1_000,
        ..Default::default()
    };
    let want: Vec<u64> = gw
        .store
        .audit_query(&q)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(want.len(), 5);
    let (size, _) = gw.store.log_head().await.unwrap();
    assert_eq!(gw.store.indexed_size(), size);

    empty_index(&gw.config.store.url).await;
    let got: Vec<u64> = gw
        .store
        .audit_query(&q)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(got, want, "the search saw the reset and indexed again");
    assert!(gw.store.indexed_size() >= size);
    gw.stop().await;
}

/// The console's volume chart counts each time bin in one query
/// (`Store::audit_volume_bins`); it must count exactly what the report's
/// per-range volume does for every bin: entries on an edge belong to the
/// later bin, entries without an organisation are their own row, and
/// entries outside the edges are not counted.
#[tokio::test]
async fn volume_bins_count_what_each_bins_own_volume_counts() {
    let dir = TempDir::new("bins");
    let (url, pg) = test_database(&dir.0).await;
    let cfg = config(&dir.0, &url);
    let gw = credgate::server::Gateway::build(&cfg).await.unwrap();
    let orgs = [Some(ids::BANK), Some(ids::BANK2), None];
    for i in 0..90u32 {
        let entry = AuditEntry {
            v: 3,
            ts: format!("2026-11-30T{:02}:{:02}:00.000Z", i / 12, (i * 7) % 60),
            request_id: format!("r-{i}"),
            gateway: "credgate-test".into(),
            org: orgs[i as usize % 3].map(Into::into),
            cert_fp: None,
            action: "query".into(),
            subject_type: None,
            subject: None,
            purpose: None,
            consent: None,
            fields: vec![],
            records: 0,
            status: 404,
            outcome: "not_found".into(),
            policy: None,
        };
        gw.app().audit.append(&entry).await.unwrap();
    }
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    credgate::server::run(l, a, gw, async {}).await.unwrap();

    let store = Store::connect_config(&cfg).await.unwrap();
    let ts = |h: u32, m: u32| format!("2026-11-30T{h:02}:{m:02}:00.000Z");
    // Hour edges (entries fall on them), then uneven edges starting late
    // and ending early.
    let hours: Vec<String> = (0..=8).map(|h| ts(h, 0)).collect();
    let uneven = vec![ts(1, 7), ts(1, 8), ts(2, 30), ts(5, 59), ts(6, 0)];
    for edges in [hours, uneven] {
        let mut want = Vec::new();
        for (bin, w) in edges.windows(2).enumerate() {
            for v in store.audit_volume(&w[0], &w[1]).await.unwrap() {
                want.push((bin, v.org, v.total));
            }
        }
        assert!(want.len() > 3, "{want:?}");
        assert_eq!(store.audit_volume_bins(&edges).await.unwrap(), want);
    }
    assert!(
        store
            .audit_volume_bins(&[ts(1, 0)])
            .await
            .unwrap()
            .is_empty()
    );
    store.close().await;
    drop_test_database(pg).await;
}

/// A checkpoint key rotation with co-signing
/// (`audit.checkpoint_cosign_key_files`): the gateway signs every
/// checkpoint with the new key and the previous one, so an auditor pinned
/// to either verifies the served checkpoint.
/// A co-signer that is the signing key itself, or a missing file, is
/// refused before anything starts.
#[tokio::test]
async fn checkpoints_are_co_signed_by_the_previous_key_during_a_rotation() {
    let keys = TempDir::new("cosign");
    let previous = keys.0.join("checkpoint-2026.key");
    std::fs::write(&previous, CheckpointSigner::generate_pkcs8().unwrap()).unwrap();
    let gw = TestGateway::start_with(
        |c| c.audit.checkpoint_cosign_key_files = vec![previous.clone()],
        true,
    )
    .await;
    let old =
        CheckpointSigner::from_pkcs8(&gw.config.audit.origin, &std::fs::read(&previous).unwrap())
            .unwrap();
    assert_eq!(
        bank_query(&gw, "bank", "legal_person", ids::CERAMICS)
            .await
            .status,
        200
    );
    let (size, _) = gw.store.log_head().await.unwrap();
    let note = served_checkpoint(&gw, size).await;
    assert_eq!(note.matches("\n\u{2014} ").count(), 2, "{note}");
    let by_old = CheckpointVerifier::from_verifier_key(&old.verifier_key())
        .unwrap()
        .verify(&note)
        .unwrap();
    let by_new = CheckpointVerifier::from_verifier_key(&gw.verifier_key)
        .unwrap()
        .verify(&note)
        .unwrap();
    assert_eq!(by_old, by_new);
    gw.stop().await;

    // Refused before anything starts: the signing key as its own
    // co-signer, and a file that does not exist.
    let dir = TempDir::new("cosign-bad");
    let (url, pg) = test_database(&dir.0).await;
    let mut cfg = config(&dir.0, &url);
    cfg.audit.checkpoint_cosign_key_files = vec![cfg.audit.checkpoint_key_file.clone()];
    let e = match credgate::server::Gateway::build(&cfg).await {
        Err(e) => e.to_string(),
        Ok(_) => panic!("the signing key co-signing itself was accepted"),
    };
    assert!(e.contains("audit.checkpoint_cosign_key_files"), "{e}");
    cfg.audit.checkpoint_cosign_key_files = vec![dir.0.join("no-such.key")];
    let e = cfg.validate().unwrap_err();
    assert!(e.contains("no-such.key"), "{e}");
    drop_test_database(pg).await;
}

#[tokio::test]
async fn a_checkpoint_and_the_index_follow_the_first_entry_promptly() {
    // The default interval (10 s): the first checkpoint must not wait for it.
    let gw = TestGateway::start_with(|c| c.audit.checkpoint_interval_secs = 10, true).await;
    let started = std::time::Instant::now();
    assert_eq!(
        bank_query(&gw, "bank", "legal_person", ids::CERAMICS)
            .await
            .status,
        200
    );
    let auditor = gw.client("auditor");
    loop {
        let r = auditor.get("/v1/audit/log/checkpoint").await;
        if r.status == 200 {
            let note = String::from_utf8(r.bytes.to_vec()).unwrap();
            let cp = CheckpointVerifier::from_verifier_key(&gw.verifier_key)
                .unwrap()
                .verify(&note)
                .unwrap();
            assert!(cp.size >= 1);
            break;
        }
        assert_eq!(r.body["error"]["code"], "no_checkpoint");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "no checkpoint {:?} after the first entry",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The indexer catches up off the request path and says so in /metrics.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, m) = gw.admin_get("/metrics").await;
        let lag = metric(&m, "credgate_audit_index_lag_entries");
        let indexed = metric(&m, "credgate_audit_indexed_entries").unwrap_or(0);
        if lag == Some(0) && indexed >= 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "index lag: {m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(gw.admin_get("/readyz").await.0, 200);
    gw.stop().await;
}

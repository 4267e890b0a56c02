//! Key rotations: `audit verify` across a checkpoint key rotation with a verifier list, consent tokens under both pinned issuer keys.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_passes_across_a_checkpoint_key_rotation_with_a_verifier_list() {
    let dir = TempDir::new("bk-rot");
    let (url, pg) = test_database(&dir.0).await;
    let cfg = config(&dir.0, &url);
    let work = TempDir::new("bk-rot-out");
    // Before: key A.
    let gw = TestGateway::start_config(cfg.clone(), TempDir::new("bk-rot-a"), None, true).await;
    let r = gw
        .client("department")
        .post("/v1/records", &licence(&subject(500), 500))
        .await;
    assert_eq!(r.status, 201);
    let old_note = checkpoint_now(&gw).await;
    let old_key = gw.verifier_key.clone();
    let old_file = work.0.join("old.note");
    std::fs::write(&old_file, &old_note).unwrap();
    gw.stop().await;
    // Rotate: a new key file, the same store; the old key is kept for verifiers.
    let mut rotated = cfg.clone();
    rotated.audit.checkpoint_key_file = work.0.join("checkpoint-2.key");
    std::fs::write(
        &rotated.audit.checkpoint_key_file,
        credgate::audit::checkpoint::CheckpointSigner::generate_pkcs8().unwrap(),
    )
    .unwrap();
    let gw = TestGateway::start_config(rotated, TempDir::new("bk-rot-b"), pg, false).await;
    let new_key = gw.verifier_key.clone();
    assert_ne!(new_key, old_key);
    let r = gw
        .client("department")
        .post("/v1/records", &licence(&subject(501), 501))
        .await;
    assert_eq!(r.status, 201);
    checkpoint_now(&gw).await;
    let file = work.0.join("after.jsonl");
    export(&gw.store, &file).await;
    gw.stop().await;

    let (ok, out) = verify_cli(&file, &[&new_key, &old_key], Some(&old_file));
    assert!(ok, "{out}");
    assert!(
        out.contains("consistent with the previous checkpoint"),
        "{out}"
    );
    // A file of verifier keys, one per line, works the same.
    let list = work.0.join("verifiers.txt");
    std::fs::write(
        &list,
        format!("# rotated 2026-12-01\n{new_key}\n{old_key}\n"),
    )
    .unwrap();
    let (ok, out) = verify_cli(&file, &[list.to_str().unwrap()], Some(&old_file));
    assert!(ok, "{out}");
    // Without the old key the previous checkpoint does not verify ...
    let (ok, out) = verify_cli(&file, &[&new_key], Some(&old_file));
    assert!(!ok, "{out}");
    assert!(out.contains("previous checkpoint does not verify"), "{out}");
    // ... and without the new key the export's own checkpoint does not.
    let (ok, out) = verify_cli(&file, &[&old_key], Some(&old_file));
    assert!(!ok, "{out}");
    assert!(out.contains("the checkpoint does not verify"), "{out}");
}

/// A copy of `policies/` whose `consent.toml` pins `blocks` for the test issuer.
fn policies_with_issuer_keys(dir: &Path, blocks: &[(&str, &[u8])]) -> PathBuf {
    let to = dir.join("policies");
    std::fs::create_dir_all(&to).unwrap();
    for e in std::fs::read_dir(policies()).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
    let mut text = "leeway_secs = 30\nmax_lifetime_secs = 15552000\n".to_owned();
    for (kid, pkcs8) in blocks {
        text.push_str(&credgate::consent::policy::issuer_block(
            "https://consent.test/issuer",
            kid,
            credgate::consent::token::KeyAlg::EdDSA,
            &credgate::consent::token::ed25519_public_from_pkcs8(pkcs8).unwrap(),
        ));
    }
    std::fs::write(to.join("consent.toml"), text).unwrap();
    to
}

fn issuer_token(kid: &str, pkcs8: &[u8], n: u32) -> String {
    let now = credgate::consent::now_unix();
    let claims = credgate::consent::token::ConsentClaims {
        iss: "https://consent.test/issuer".into(),
        sub: ids::PERSON.into(),
        aud: "credgate-test".into(),
        grantee: ids::BANK.into(),
        purpose: "financing".into(),
        scope: vec!["income".into()],
        iat: now - 60,
        nbf: now - 60,
        exp: now + 3600,
        jti: format!("rot-{}-{n}", std::process::id()),
        max_uses: None,
        written: Some(true),
        notice: Some(hex::encode(ring::digest::digest(
            &ring::digest::SHA256,
            common::NOTICE.as_bytes(),
        ))),
    };
    credgate::consent::token::issue(kid, credgate::consent::token::KeyAlg::EdDSA, pkcs8, &claims)
        .unwrap()
}

fn income_decision(body: &Value) -> (String, String) {
    let d = body["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["field"] == "monthly_income")
        .unwrap();
    (
        d["reason"].as_str().unwrap().to_owned(),
        d["detail"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_tokens_under_both_pinned_keys_open_income_and_a_removed_key_does_not() {
    use credgate::consent::token::generate_ed25519_pkcs8;
    let home = TempDir::new("bk-consent");
    let (url, pg) = test_database(&home.0).await;
    let (old, new) = (
        generate_ed25519_pkcs8().unwrap(),
        generate_ed25519_pkcs8().unwrap(),
    );
    let mut cfg = config(&home.0, &url);
    cfg.policy.dir = policies_with_issuer_keys(
        &home.0.join("overlap"),
        &[("issuer-2026", &old), ("issuer-2027", &new)],
    );
    let ask = |t: &str| {
        let mut q = query(
            "natural_person",
            ids::PERSON,
            "financing",
            &["monthly_income"],
        );
        q["consent_token"] = json!(t);
        q
    };
    let (t_old, t_new) = (
        issuer_token("issuer-2026", &old, 1),
        issuer_token("issuer-2027", &new, 2),
    );
    // During the overlap both keys verify.
    let gw = TestGateway::start_config(cfg.clone(), TempDir::new("bk-consent-a"), None, true).await;
    for t in [&t_old, &t_new] {
        let r = gw.client("bank").post("/v1/query", &ask(t)).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(income_decision(&r.body).0, "authorised", "{}", r.body);
    }
    let registered = gw
        .store
        .count_raw("SELECT COUNT(*) FROM consents")
        .await
        .unwrap();
    assert_eq!(registered, 2, "each token is registered once it is used");
    gw.stop().await;
    // The old key removed from consent.toml: its token is refused, and the
    // refusal is what the audit entry records; the new key still works.
    cfg.policy.dir = policies_with_issuer_keys(&home.0.join("after"), &[("issuer-2027", &new)]);
    let gw = TestGateway::start_config(cfg, TempDir::new("bk-consent-b"), pg, false).await;
    let r = gw.client("bank").post("/v1/query", &ask(&t_old)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        income_decision(&r.body),
        ("consent_invalid".into(), "unknown_issuer".into()),
        "{}",
        r.body
    );
    assert!(
        r.body["records"]
            .as_array()
            .unwrap()
            .iter()
            .all(|rec| rec["fields"].get("monthly_income").is_none())
    );
    let seq: u64 = r.headers["x-audit-seq"].to_str().unwrap().parse().unwrap();
    let entries = audit_entries(&gw.store).await;
    let e = &entries[seq as usize];
    let text = serde_json::to_string(&e.fields).unwrap();
    assert!(text.contains("consent_invalid"), "{text}");
    let r = gw.client("bank").post("/v1/query", &ask(&t_new)).await;
    assert_eq!(income_decision(&r.body).0, "authorised", "{}", r.body);
    gw.stop().await;
}

//! Rotation of the subject and mask keys, over real mTLS, on SQLite and (with
//! `CREDGATE_TEST_DATABASE_URL`) PostgreSQL: entries under the old key stay
//! searchable by subject id while the old key is configured, every entry
//! verifies whatever the keys, masked values name their key, and consents
//! given before a rotation keep working.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use credgate::audit::{AuditEntry, SubjectHasher};
use credgate::config::{Config, KeyFile, NamedKey};
use credgate::ids::SubjectId;
use serde_json::{Value, json};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_credgate")
}

async fn run(args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(bin());
    cmd.args(args);
    let out = output(cmd).await;
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn key_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn keys(list: &[(&str, &Path)]) -> Vec<KeyFile> {
    list.iter()
        .map(|(id, file)| KeyFile {
            id: (*id).into(),
            file: file.to_path_buf(),
        })
        .collect()
}

/// `cfg` with the subject keys `list` (the first current).
fn with_subject_keys(cfg: &Config, list: &[(&str, &Path)]) -> Config {
    let mut c = cfg.clone();
    c.audit.subject_key_file = None;
    c.audit.subject_keys = keys(list);
    c
}

fn hasher(list: &[(&str, &Path)]) -> SubjectHasher {
    let named: Vec<NamedKey> = list
        .iter()
        .map(|(id, f)| NamedKey {
            id: (*id).into(),
            key: std::fs::read(f).unwrap(),
        })
        .collect();
    SubjectHasher::with_keys(&named)
}

async fn bank_query(gw: &TestGateway, id: &str) {
    let r = gw
        .client("bank")
        .post(
            "/v1/query",
            &query("legal_person", id, "financing", &["enterprise_name"]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// Auditor search (the `query` entries only) by the subject id.
async fn search_by_id(gw: &TestGateway, id: &str) -> Vec<AuditEntry> {
    search(
        gw,
        json!({"subject": {"type": "legal_person", "id": id}, "action": "query"}),
    )
    .await
}

async fn search(gw: &TestGateway, body: Value) -> Vec<AuditEntry> {
    let r = gw.client("auditor").post("/v1/audit/search", &body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| serde_json::from_value(e["entry"].clone()).unwrap())
        .collect()
}

/// `credgate audit search`: the `query` entries printed.
async fn cli_search(config: &Path, args: &[&str]) -> Vec<AuditEntry> {
    let mut a = vec!["audit", "search", "--config", config.to_str().unwrap()];
    a.extend_from_slice(args);
    let (ok, out, err) = run(&a).await;
    assert!(ok, "{out}{err}");
    out.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            serde_json::from_value::<AuditEntry>(v["entry"].clone()).unwrap()
        })
        .filter(|e| e.action == "query")
        .collect()
}

fn key_ids(entries: &[AuditEntry]) -> Vec<String> {
    entries
        .iter()
        .map(|e| {
            let (id, _) = e.subject_key().expect("a subject hash");
            format!("v{}:{id}", e.v)
        })
        .collect()
}

async fn export_and_verify(gw: &TestGateway, dir: &Path, name: &str) -> (bool, String) {
    let key = std::fs::read(&gw.config.audit.checkpoint_key_file).unwrap();
    let signer =
        credgate::audit::checkpoint::CheckpointSigner::from_pkcs8(&gw.config.audit.origin, &key)
            .unwrap();
    credgate::audit::checkpoint_once(&gw.store, &signer, &gw.config.audit.origin)
        .await
        .unwrap();
    let file = dir.join(name);
    credgate::audit::export::export_to_file(
        &gw.store,
        &file,
        credgate::audit::export::ExportFormat::Jsonl,
    )
    .await
    .unwrap();
    let (ok, out, err) = run(&[
        "audit",
        "verify",
        file.to_str().unwrap(),
        "--key",
        &gw.verifier_key,
    ])
    .await;
    (ok, format!("{out}{err}"))
}

/// The whole rotation: a version 2 entry (bare hash, as an older gateway
/// wrote it) and version 3 entries under k1; a restart with [k2, k1]; a
/// search by subject id finds all of them (API, portal history, console's
/// next page, `credgate audit search`), by hash each key's own; with only
/// [k2] the old ones are no longer found by subject id, but still by their
/// hash, and `credgate audit verify` passes on the whole log.
#[tokio::test]
async fn subject_history_stays_searchable_across_a_subject_key_rotation() {
    let dir = TempDir::new("keys-rot");
    let work = TempDir::new("keys-rot-out");
    let (url, pg) = test_database(&dir.0).await;
    // The single-file form: key k1.
    let cfg = config(&dir.0, &url);
    let k1 = cfg.audit.subject_key_file.clone().unwrap();
    let k2 = key_file(
        &work.0,
        "subject-2027.key",
        b"subject-key-of-2027-0123456789ab",
    );
    let old = hasher(&[("k1", &k1)]);
    let ceramics = SubjectId::parse("legal_person", ids::CERAMICS).unwrap();

    // An entry of version 2, appended as an older gateway wrote it.
    let gw = credgate::server::Gateway::build(&cfg).await.unwrap();
    let v2 = AuditEntry {
        v: 2,
        ts: credgate::audit::now_rfc3339(),
        request_id: "r-v2".into(),
        gateway: "credgate-old".into(),
        org: Some(ids::BANK.into()),
        cert_fp: Some("ab".repeat(32)),
        action: "query".into(),
        subject_type: Some("legal_person".into()),
        subject: Some(old.bare(&ceramics)),
        purpose: Some("financing".into()),
        consent: None,
        fields: vec![],
        records: 1,
        status: 200,
        outcome: "ok".into(),
        policy: Some("sha256:00".into()),
    };
    gw.app().audit.append(&v2).await.unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    credgate::server::run(l, a, gw, async {}).await.unwrap();

    // Before the rotation: under k1 (entry version 3, `k1:<hex>`).
    let gw = TestGateway::start_config(cfg.clone(), TempDir::new("keys-rot-a"), None, true).await;
    bank_query(&gw, ids::CERAMICS).await;
    bank_query(&gw, ids::CERAMICS).await;
    bank_query(&gw, ids::CHEM).await;
    let before = search_by_id(&gw, ids::CERAMICS).await;
    assert_eq!(key_ids(&before), ["v2:k1", "v3:k1", "v3:k1"]);
    assert_eq!(before[1].subject, Some(old.hash(&ceramics)));
    // An index row written before migration 0009 (a bare hash) is rewritten
    // by it to the keyed form: the migration's own SQL, on this backend.
    let bare = old.bare(&ceramics);
    gw.store
        .execute_raw(&format!(
            "UPDATE audit_index SET subject = '{bare}' WHERE subject = 'k1:{bare}'"
        ))
        .await
        .unwrap();
    assert_eq!(search_by_id(&gw, ids::CERAMICS).await.len(), 0);
    let migration = include_str!("../migrations/sqlite/0009_index_subject_key_ids.sql");
    assert_eq!(
        migration,
        include_str!("../migrations/postgres/0009_index_subject_key_ids.sql")
    );
    let sql: String = migration
        .lines()
        .filter(|l| !l.starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(gw.store.execute_raw(&sql).await.unwrap(), 3);
    assert_eq!(search_by_id(&gw, ids::CERAMICS).await, before);
    gw.stop().await;

    // Rotate: k2 current, k1 kept for searching.
    let rotated = with_subject_keys(&cfg, &[("k2", &k2), ("k1", &k1)]);
    let both = hasher(&[("k2", &k2), ("k1", &k1)]);
    let gw =
        TestGateway::start_config(rotated.clone(), TempDir::new("keys-rot-b"), None, false).await;
    bank_query(&gw, ids::CERAMICS).await;
    let found = search_by_id(&gw, ids::CERAMICS).await;
    assert_eq!(key_ids(&found), ["v2:k1", "v3:k1", "v3:k1", "v3:k2"]);
    assert_eq!(found[3].subject, Some(both.hash(&ceramics)));
    assert_ne!(found[3].subject, found[1].subject);
    // By hash: each key's own entries; a bare hash is key k1.
    let by_hash = |h: String| json!({"subject_hash": h, "action": "query"});
    assert_eq!(search(&gw, by_hash(bare.clone())).await, found[..3]);
    assert_eq!(search(&gw, by_hash(old.hash(&ceramics))).await, found[..3]);
    assert_eq!(search(&gw, by_hash(both.hash(&ceramics))).await, found[3..]);
    assert_eq!(
        search(&gw, by_hash(both.hashes(&ceramics).join(" "))).await,
        found
    );
    // The subject's own access history reaches back across the rotation.
    let r = gw
        .client("portal")
        .post(
            "/v1/portal/access-history",
            &json!({"subject": {"type": "legal_person", "id": ids::CERAMICS}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let history = r.body["entries"].as_array().unwrap();
    assert_eq!(history.len(), 4, "{}", r.body);
    // The console's next page carries the hashes under both keys.
    let r = gw
        .client("auditor")
        .send(
            "POST",
            "/console/search",
            bytes::Bytes::from(format!(
                "subject_type=legal_person&subject_id={}&action=query",
                ids::CERAMICS
            )),
            Some("application/x-www-form-urlencoded"),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let page = String::from_utf8_lossy(&r.bytes).into_owned();
    assert!(
        page.contains(&both.hashes(&ceramics).join(" ")),
        "the console shows and pages by both hashes"
    );
    assert!(page.contains("id=\"result-count\">4<"), "{page}");
    // `credgate audit search`, by id and by either hash.
    let file = write_config_file(&rotated, &work.0.join("rotated.toml"));
    assert_eq!(
        cli_search(&file, &["--subject-id", ids::CERAMICS]).await,
        found
    );
    assert_eq!(
        cli_search(&file, &["--subject-hash", &bare]).await,
        found[..3]
    );
    assert_eq!(
        cli_search(&file, &["--subject-hash", &both.hash(&ceramics)]).await,
        found[3..]
    );
    let (ok, out, err) = run(&[
        "audit",
        "search",
        "--config",
        file.to_str().unwrap(),
        "--subject-hash",
        "k2:not-a-hash",
    ])
    .await;
    assert!(!ok && err.contains("--subject-hash"), "{out}{err}");
    gw.stop().await;

    // The index rebuilt from the log gives the same answers.
    let (ok, out, err) = run(&["audit", "reindex", "--config", file.to_str().unwrap()]).await;
    assert!(ok, "{out}{err}");

    // Only k2: the entries under k1 are no longer found by subject id (the
    // documented loss of searchability), still by their hash, and the log
    // verifies.
    let only_new = with_subject_keys(&cfg, &[("k2", &k2)]);
    let gw =
        TestGateway::start_config(only_new.clone(), TempDir::new("keys-rot-c"), pg, false).await;
    assert_eq!(search_by_id(&gw, ids::CERAMICS).await, found[3..]);
    assert_eq!(search(&gw, by_hash(bare.clone())).await, found[..3]);
    let file = write_config_file(&only_new, &work.0.join("only-new.toml"));
    assert_eq!(
        cli_search(&file, &["--subject-id", ids::CERAMICS]).await,
        found[3..]
    );
    let (ok, out) = export_and_verify(&gw, &work.0, "all.jsonl").await;
    assert!(ok, "{out}");
    let text = std::fs::read_to_string(work.0.join("all.jsonl")).unwrap();
    assert!(text.contains(r#"\"v\":2"#) && text.contains(r#"\"subject\":\"k2:"#));
    gw.stop().await;
}

/// A copy of `policies/` in which banks get `residence_address` as the
/// keyed `hash` mask.
fn policies_with_hash_mask(dir: &Path) -> PathBuf {
    let to = dir.join("policies");
    std::fs::create_dir_all(&to).unwrap();
    for e in std::fs::read_dir(policies()).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
    let grants = std::fs::read_to_string(to.join("grants.toml")).unwrap();
    let old = "field = \"residence_address\"\naction = \"mask\"\nmask = \"partial\"\nkeep_first = 6\nkeep_last = 0\n";
    assert!(grants.contains(old));
    std::fs::write(
        to.join("grants.toml"),
        grants.replace(
            old,
            "field = \"residence_address\"\naction = \"mask\"\nmask = \"hash\"\n",
        ),
    )
    .unwrap();
    to
}

/// The masked value of `residence_address` as a bank gets it.
async fn masked_address(gw: &TestGateway) -> String {
    let r = gw
        .client("bank")
        .post(
            "/v1/query",
            &query(
                "natural_person",
                ids::PERSON,
                "financing",
                &["residence_address"],
            ),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(decisions(&r.body)[0].1, "masked", "{}", r.body);
    let text = r.body.to_string();
    let at = text
        .find("residence_address\":\"")
        .expect("the masked value")
        + 20;
    text[at..].split('"').next().unwrap().to_owned()
}

/// A `hash`-masked value names its key: `k1:` with the single-file form
/// (the hex is the bare value earlier versions returned), `k2:` once k2 is
/// current, so a bank can tell a rotation from a changed value.
#[tokio::test]
async fn masked_values_carry_the_mask_key_id() {
    let dir = TempDir::new("keys-mask");
    let work = TempDir::new("keys-mask-out");
    let (url, pg) = test_database(&dir.0).await;
    let mut cfg = config(&dir.0, &url);
    cfg.policy.dir = policies_with_hash_mask(&work.0);
    let k1 = cfg.policy.mask_key_file.clone().unwrap();
    let k2 = key_file(
        &work.0,
        "mask-2027.key",
        b"mask-key-of-2027-0123456789abcdef",
    );

    let gw = TestGateway::start_config(cfg.clone(), TempDir::new("keys-mask-a"), None, true).await;
    let before = masked_address(&gw).await;
    gw.stop().await;
    let (id, hex) = before.split_once(':').unwrap();
    assert_eq!((id, hex.len()), ("k1", 64), "{before}");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &std::fs::read(&k1).unwrap());
    let value = json!("山东省淄博市张店区共青团路1号").to_string();
    assert_eq!(
        hex,
        hex::encode(ring::hmac::sign(&key, value.as_bytes()).as_ref())
    );

    let mut rotated = cfg.clone();
    rotated.policy.mask_key_file = None;
    rotated.policy.mask_keys = keys(&[("k2", &k2), ("k1", &k1)]);
    let gw = TestGateway::start_config(rotated, TempDir::new("keys-mask-b"), pg, false).await;
    let after = masked_address(&gw).await;
    let (id, hex2) = after.split_once(':').unwrap();
    assert_eq!((id, hex2.len()), ("k2", 64), "{after}");
    assert_ne!(hex2, hex);
    // The same value again: the same masked value (stable under one key).
    assert_eq!(masked_address(&gw).await, after);
    gw.stop().await;
}

async fn income(gw: &TestGateway, token: &str) -> (u16, Vec<(String, String, String)>) {
    let mut q = query(
        "natural_person",
        ids::PERSON,
        "financing",
        &["monthly_income"],
    );
    q["consent_token"] = json!(token);
    let r = gw.client("bank").post("/v1/query", &q).await;
    (r.status, decisions(&r.body))
}

/// A consent registered under k1 keeps opening data after the rotation to
/// [k2, k1], and its subject can still revoke it; a consent first used
/// after the rotation is bound under k2.
#[tokio::test]
async fn consents_given_before_a_subject_key_rotation_keep_working() {
    let dir = TempDir::new("keys-consent");
    let work = TempDir::new("keys-consent-out");
    let (url, pg) = test_database(&dir.0).await;
    let cfg = config(&dir.0, &url);
    let k1 = cfg.audit.subject_key_file.clone().unwrap();
    let k2 = key_file(
        &work.0,
        "subject-2027.key",
        b"subject-key-of-2027-0123456789ab",
    );
    let jti = |n: u32| format!("keys-{}-{n}", std::process::id());
    let (old_token, new_token) = (
        common::dev_income_token(&dir.0, &jti(1)),
        common::dev_income_token(&dir.0, &jti(2)),
    );

    let gw =
        TestGateway::start_config(cfg.clone(), TempDir::new("keys-consent-a"), None, true).await;
    let (status, d) = income(&gw, &old_token).await;
    assert_eq!((status, d[0].1.as_str()), (200, "returned"), "{d:?}");
    gw.stop().await;

    let rotated = with_subject_keys(&cfg, &[("k2", &k2), ("k1", &k1)]);
    let gw = TestGateway::start_config(rotated, TempDir::new("keys-consent-b"), pg, false).await;
    let (status, d) = income(&gw, &old_token).await;
    assert_eq!((status, d[0].1.as_str()), (200, "returned"), "{d:?}");
    let (status, d) = income(&gw, &new_token).await;
    assert_eq!((status, d[0].1.as_str()), (200, "returned"), "{d:?}");
    let person = SubjectId::parse("natural_person", ids::PERSON).unwrap();
    let stored = gw.store.consent_subject(&jti(2)).await.unwrap();
    assert_eq!(stored, Some(hasher(&[("k2", &k2)]).bare(&person)));
    // The portal revokes the consent given before the rotation.
    let r = gw
        .client("portal")
        .post(
            &format!("/v1/consents/{}/revoke", jti(1)),
            &json!({"subject": {"type": "natural_person", "id": ids::PERSON}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (status, d) = income(&gw, &old_token).await;
    assert_eq!(status, 200);
    assert_eq!(
        (d[0].1.as_str(), d[0].2.as_str()),
        ("withheld", "consent_invalid"),
        "{d:?}"
    );
    gw.stop().await;
}

/// A broken key list stops the gateway before anything is bound or opened,
/// naming the key file: from the binary (`credgate serve`, through the
/// config loader) and from `Gateway::build` given a config in memory.
#[tokio::test]
async fn a_broken_key_list_is_refused_before_serving_naming_the_file() {
    let dir = TempDir::new("keys-bad");
    let cfg = config(&dir.0, &format!("sqlite://{}/credgate.db", dir.0.display()));
    let short = key_file(&dir.0, "short.key", b"fifteen bytes..");
    let good = key_file(&dir.0, "good.key", b"sixteen bytes...");
    for (list, file, want) in [
        (vec![("k2", &short)], &short, "shorter than 16 bytes"),
        (vec![("k2", &good), ("k2", &short)], &short, "given twice"),
        (vec![("K2", &good)], &good, "must be 1-16 characters"),
    ] {
        let list: Vec<(&str, &Path)> = list.iter().map(|(i, f)| (*i, f.as_path())).collect();
        let bad = with_subject_keys(&cfg, &list);
        let e = match credgate::server::Gateway::build(&bad).await {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{list:?} must be refused"),
        };
        assert!(
            e.contains(&file.display().to_string()) && e.contains(want),
            "{e}"
        );
        let path = write_config_file(&bad, &dir.0.join("bad.toml"));
        let (ok, out, err) = run(&["serve", "--config", path.to_str().unwrap()]).await;
        assert!(!ok, "{out}");
        assert!(
            err.contains(&file.display().to_string()) && err.contains(want),
            "{err}"
        );
    }
    // The mask keys are checked alike.
    let mut bad = cfg.clone();
    bad.policy.mask_key_file = None;
    bad.policy.mask_keys = keys(&[("k2", &short)]);
    let path = write_config_file(&bad, &dir.0.join("bad.toml"));
    let (ok, _, err) = run(&["serve", "--config", path.to_str().unwrap()]).await;
    assert!(
        !ok && err.contains("policy.mask_keys") && err.contains("short.key"),
        "{err}"
    );
    assert!(!dir.0.join("credgate.db").exists(), "nothing was opened");
}

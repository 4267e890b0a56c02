//! Scale-out drill: several gateway processes on one PostgreSQL keep one
//! totally ordered, verifiable audit log, even when one is killed mid-load.
//!
//! Needs PostgreSQL: `CREDGATE_TEST_DATABASE_URL` if it names a server,
//! else the local one `scripts/test.sh` starts. Without one it fails.

mod common;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use credgate::audit::merkle;
use credgate::store::Store;
use tokio::sync::Mutex;

struct Node {
    child: Child,
    port: u16,
    admin: u16,
}

fn start_node(
    dir: &std::path::Path,
    n: usize,
    db_url: &str,
    base: &credgate::config::Config,
) -> Node {
    let (listen, admin) = (free_addr(), free_addr());
    let mut cfg = base.clone();
    cfg.server.listen = listen;
    cfg.server.admin_listen = admin;
    cfg.server.gateway_id = "credgate-test".into();
    cfg.server.node_id = Some(format!("node-{n}"));
    cfg.server.shutdown_grace_ms = 2000;
    cfg.store.url = db_url.to_owned();
    let path = write_config_file(&cfg, &dir.join(format!("node{n}.toml")));
    let (port, admin) = (listen.port(), admin.port());
    let child = Command::new(env!("CARGO_BIN_EXE_credgate"))
        .args(["serve", "--config"])
        .arg(&path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Node { child, port, admin }
}

async fn wait_ready(node: &Node) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(s) = tokio::net::TcpStream::connect(("127.0.0.1", node.admin)).await {
            drop(s);
            if tokio::net::TcpStream::connect(("127.0.0.1", node.port))
                .await
                .is_ok()
            {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "node on {} did not start",
            node.port
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_one_log_survive_a_kill() {
    // Always on PostgreSQL (several nodes need it), also in the SQLite
    // pass of scripts/test.sh; without a server the drill fails.
    let base_url = common::pg_base_url();
    let dir = TempDir::new("multinode");
    let (db_url, db_name) = common::pg_test_database(&base_url).await;
    let base = config(&dir.0, &db_url);
    {
        let store = Store::connect(&db_url, 2).await.unwrap();
        credgate::cli::seed(&store).await.unwrap();
        store.close().await;
    }
    let mut nodes: Vec<Node> = (0..3)
        .map(|n| start_node(&dir.0, n, &db_url, &base))
        .collect();
    for n in &nodes {
        wait_ready(n).await;
    }

    // A consent allowing five uses, raced through all three nodes during the
    // load (and the kill): never more than five releases.
    let dev = credgate::consent::dev::DevIssuer::ensure(&dir.0).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = dev
        .issue(&credgate::consent::token::ConsentClaims {
            iss: dev.iss.clone(),
            sub: ids::PERSON.into(),
            aud: "credgate-test".into(),
            grantee: ids::BANK.into(),
            purpose: "financing".into(),
            scope: vec!["income".into()],
            iat: now,
            nbf: now,
            exp: now + 3600,
            jti: format!("multinode-{now}"),
            max_uses: Some(5),
            written: Some(true),
            notice: Some("ab".repeat(32)),
        })
        .unwrap();
    let consent_query = serde_json::json!({
        "subject": {"type": "natural_person", "id": ids::PERSON},
        "purpose": "financing", "fields": ["monthly_income"], "consent_token": token,
    });
    let released = Arc::new(std::sync::atomic::AtomicUsize::new(0));

    // Drive load through all three nodes; remember every acknowledged query.
    let acked: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut tasks = Vec::new();
    for w in 0..12 {
        let port = nodes[w % 3].port;
        let acked = acked.clone();
        let released = released.clone();
        let consent_query = consent_query.clone();
        tasks.push(tokio::spawn(async move {
            let client = Client::new(format!("127.0.0.1:{port}").parse().unwrap(), Some("bank"));
            let body = query(
                "legal_person",
                ids::CERAMICS,
                "financing",
                &["enterprise_name", "penalty_content"],
            );
            let mut round = 0;
            while Instant::now() < deadline {
                round += 1;
                if round % 10 == 0 {
                    let r = client
                        .send(
                            "POST",
                            "/v1/query",
                            bytes::Bytes::from(consent_query.to_string()),
                            Some("application/json"),
                        )
                        .await;
                    if let Ok(r) = r
                        && r.status == 200
                        && r.body["decisions"][0]["decision"] == "returned"
                    {
                        released.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    continue;
                }
                let r = client
                    .send(
                        "POST",
                        "/v1/query",
                        bytes::Bytes::from(body.to_string()),
                        Some("application/json"),
                    )
                    .await;
                if let Ok(r) = r
                    && r.status == 200
                {
                    let seq = r.headers["x-audit-seq"].to_str().unwrap().parse().unwrap();
                    let rid = r.headers["x-request-id"].to_str().unwrap().to_owned();
                    acked.lock().await.insert(rid, seq);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    nodes[1].child.kill().unwrap(); // SIGKILL, mid-load
    nodes[1].child.wait().unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    for n in [0, 2] {
        let _ = Command::new("kill")
            .args(["-TERM", &nodes[n].child.id().to_string()])
            .status();
    }
    for n in [0, 2] {
        nodes[n].child.wait().unwrap();
    }

    let store = Store::connect(&db_url, 2).await.unwrap();
    let entries = store.audit_range(0, u64::MAX / 2).await.unwrap();
    let acked = acked.lock().await;
    assert!(
        acked.len() > 50,
        "too little load got through: {}",
        acked.len()
    );
    // Contiguous sequence numbers.
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e.seq, i as u64, "gap in the log");
    }
    // Every acknowledged query is in the log, at the position it was told.
    let by_rid: HashMap<String, u64> = entries
        .iter()
        .map(|e| {
            (
                credgate::audit::AuditEntry::parse(&e.entry)
                    .unwrap()
                    .request_id,
                e.seq,
            )
        })
        .collect();
    for (rid, seq) in acked.iter() {
        assert_eq!(
            by_rid.get(rid),
            Some(seq),
            "acknowledged request {rid} missing or moved"
        );
    }
    // All three nodes wrote into the one log.
    let gateways: std::collections::HashSet<String> = entries
        .iter()
        .map(|e| {
            credgate::audit::AuditEntry::parse(&e.entry)
                .unwrap()
                .gateway
        })
        .collect();
    assert_eq!(gateways.len(), 3, "{gateways:?}");
    // The consent's use count held across nodes.
    let released = released.load(std::sync::atomic::Ordering::SeqCst);
    assert!(released <= 5, "max_uses exceeded: {released} releases");
    assert!(released >= 1, "the consent was never honoured");
    // The tree recomputed from the leaves matches the stored head.
    let leaves: Vec<merkle::Hash> = entries
        .iter()
        .map(|e| merkle::leaf_hash(&e.entry))
        .collect();
    let (size, root) = store.log_head().await.unwrap();
    assert_eq!(size, leaves.len() as u64);
    assert_eq!(merkle::root_of(&leaves), root);
    // The latest checkpoint verifies and is consistent with the head.
    let verifier = credgate::audit::checkpoint::CheckpointSigner::from_pkcs8(
        "credgate.test/audit",
        &std::fs::read(&base.audit.checkpoint_key_file).unwrap(),
    )
    .unwrap()
    .verifier();
    let (cp_size, note) = store.checkpoint(None).await.unwrap().expect("a checkpoint");
    let cp = verifier.verify(&note).unwrap();
    assert_eq!(cp.size, cp_size);
    assert_eq!(cp.root, merkle::root_of(&leaves[..cp_size as usize]));
    store.close().await;
    eprintln!(
        "multinode: {} entries, {} acknowledged, 3 nodes, one killed",
        entries.len(),
        acked.len()
    );

    let admin = Store::connect_admin(&base_url).await.unwrap();
    let _ = admin
        .execute_raw(&format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"))
        .await;
    admin.close().await;
}

//! SIGHUP and `credgate reload` on the real binary.

use super::*;

fn credgate(args: &[&std::ffi::OsStr]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_credgate"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test]
async fn sighup_and_credgate_reload_on_the_real_binary() {
    let m = Material::new("reload-process");
    let dir = TempDir::new("reload-process-gw");
    let (url, pg_db) = common::test_database(&dir.0).await;
    let mut cfg = common::config(&dir.0, &url);
    m.apply(&mut cfg, 86_400);
    let (addr, admin) = (common::free_addr(), common::free_addr());
    cfg.server.listen = addr;
    cfg.server.admin_listen = admin;
    let config = common::write_config_file(&cfg, &dir.0.join("credgate.toml"));
    {
        let store = Store::connect_config(&cfg).await.unwrap();
        credgate::cli::seed(&store).await.unwrap();
        store.close().await;
    }
    let log = dir.0.join("gateway.log");
    let gw = Process::serve(&config, log);
    let ready = eventually(60, || async {
        Conn::open(addr, &m.certs, "bank2").await.is_ok()
    })
    .await;
    assert!(ready, "gateway never served:\n{}", gw.log());

    let mut open = Conn::open(addr, &m.certs, "bank").await.unwrap();
    let (status, body) = open.post("/v1/query", &bank_query()).await.unwrap();
    assert_eq!(
        (status, decision_of(&body)),
        (200, "returned".into()),
        "{body}"
    );

    // 1. Revoke the bank, SIGHUP: new connections refused, the open one's
    //    next request refused.
    m.revoke(&["bank"]);
    gw.signal("-HUP");
    let refused = eventually(60, || async {
        !new_connection_works(addr, &m.certs, "bank").await
    })
    .await;
    assert!(refused, "SIGHUP did not apply the CRL:\n{}", gw.log());
    let (status, body) = open.post("/v1/query", &bank_query()).await.unwrap();
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "certificate_revoked");
    assert!(open.closed_by_server().await);

    // 2. Withhold a field, SIGHUP: bank2 (same role) sees it withheld.
    m.withhold_field_from_banks();
    let new_hash = m.policy_hash(&cfg);
    gw.signal("-HUP");
    let withheld = eventually(60, || async {
        let mut c = Conn::open(addr, &m.certs, "bank2").await.unwrap();
        let q = query("legal_person", ids::CERAMICS, "financing", &[FIELD]);
        let (_, body) = c.post("/v1/query", &q).await.unwrap();
        decision_of(&body) == "withheld"
    })
    .await;
    assert!(withheld, "SIGHUP did not apply the grant:\n{}", gw.log());

    // 3. A broken policy through `credgate reload`: refused with file and
    //    line, non-zero exit; the policy in force keeps serving.
    let (line, good) = m.break_grants();
    let (ok, text) = credgate(&["reload".as_ref(), "--config".as_ref(), config.as_os_str()]);
    assert!(!ok, "{text}");
    assert!(text.contains(&format!("grants.toml:{line}")), "{text}");
    assert!(text.contains(&new_hash), "{text}");
    let mut c = Conn::open(addr, &m.certs, "bank2").await.unwrap();
    let (_, body) = c.post("/v1/query", &bank_query()).await.unwrap();
    assert_eq!(decision_of(&body), "withheld", "{body}");
    // …and once fixed, `credgate reload` applies it.
    m.write_grants(&format!("{good}\n# fixed\n"));
    let (ok, text) = credgate(&["reload".as_ref(), "--config".as_ref(), config.as_os_str()]);
    assert!(ok && text.starts_with("reloaded: policy loaded"), "{text}");
    drop(c);
    gw.stop();

    // The log, read after the process stopped.
    let store = Store::connect_config(&cfg).await.unwrap();
    let entries = common::audit_entries(&store).await;
    let r = reloads(&entries);
    let summary: Vec<(&str, &str, &str)> = r
        .iter()
        .map(|e| {
            (
                &*field(e, "trigger").decision,
                &*field(e, "policy").decision,
                e.outcome.as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("sighup", "unchanged", "ok"),
            ("sighup", "loaded", "ok"),
            ("admin", "refused", "reload_refused"),
            ("admin", "loaded", "ok"),
        ]
    );
    assert_eq!(field(r[0], "tls").decision, "loaded");
    assert_eq!(r[1].policy.as_deref(), Some(new_hash.as_str()));
    assert_eq!(r[2].policy.as_deref(), Some(new_hash.as_str()));
    let revoked: Vec<&AuditEntry> = entries
        .iter()
        .filter(|e| e.outcome == "certificate_revoked")
        .collect();
    // The open connection's request, and possibly one polling probe whose
    // handshake completed just before the SIGHUP took effect.
    assert!(
        (1..=2).contains(&revoked.len()),
        "certificate_revoked entries: {}",
        revoked.len()
    );
    assert!(revoked.iter().all(|e| e.status == 401));
    store.close().await;
    drop_test_database(pg_db).await;
}

//! Certificates and CRLs: revocation within the refresh interval and at once on an admin reload, a broken CRL refused while the old one serves, a CRL re-read when its next update passes, the server certificate swapped without dropping connections.

use super::*;

/// What the revocation tests check once the bank's certificate is revoked
/// and the gateway has noticed: a new connection is refused, another
/// bank still gets through, and the bank's open connection gets 401
/// `certificate_revoked` (audited with its certificate) and is closed.
async fn assert_revoked_everywhere(gw: &TestGateway, m: &Material, open: Conn) {
    assert!(!new_connection_works(gw.addr, &m.certs, "bank").await);
    assert!(new_connection_works(gw.addr, &m.certs, "bank2").await);
    let mut open = open;
    let before = common::audit_entries(&gw.store).await.len();
    let (status, body) = open.post("/v1/query", &bank_query()).await.unwrap();
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "certificate_revoked", "{body}");
    assert!(open.closed_by_server().await, "the connection stayed open");
    let entries = common::audit_entries(&gw.store).await;
    let refused: Vec<&AuditEntry> = entries[before..]
        .iter()
        .filter(|e| e.outcome == "certificate_revoked")
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    let e = refused[0];
    assert_eq!(e.action, "query");
    assert_eq!(e.status, 401);
    assert_eq!(e.org.as_deref(), Some(ids::BANK));
    assert_eq!(
        e.cert_fp.as_deref(),
        Some(bank_fingerprint(&m.certs).as_str())
    );
    assert!(e.fields.is_empty(), "nothing was decided: {e:?}");
}

#[tokio::test]
async fn a_revoked_certificate_is_refused_within_the_crl_refresh_interval() {
    let m = Material::new("reload-crl-timer");
    let gw = TestGateway::start_with(|c| m.apply(c, 1), true).await;
    let mut open = Conn::open(gw.addr, &m.certs, "bank").await.unwrap();
    let (status, body) = open.post("/v1/query", &bank_query()).await.unwrap();
    assert_eq!(
        (status, decision_of(&body)),
        (200, "returned".into()),
        "{body}"
    );

    m.revoke(&["bank"]);
    // The timer (1 s here) notices the new file; poll generously.
    let noticed = eventually(60, || async {
        let (_, text) = gw.admin_get("/metrics").await;
        metric(&text, r#"credgate_reloads_total{what="tls",outcome="ok"}"#) >= 1.0
    })
    .await;
    assert!(noticed, "the CRL timer never reloaded");
    assert_revoked_everywhere(&gw, &m, open).await;

    let entries = common::audit_entries(&gw.store).await;
    let r = reloads(&entries);
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0].outcome, "ok");
    assert_eq!(field(r[0], "trigger").decision, "crl_refresh");
    assert_eq!(field(r[0], "tls").decision, "loaded");
    assert_eq!(field(r[0], "policy").decision, "skipped");
    assert_eq!(
        r[0].policy.as_deref(),
        Some(m.policy_hash(&gw.config).as_str())
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_broken_crl_is_refused_once_and_the_old_one_keeps_serving() {
    let m = Material::new("reload-crl-broken");
    let gw = TestGateway::start_with(|c| m.apply(c, 1), true).await;
    let refused_metric = r#"credgate_reloads_total{what="tls",outcome="refused"}"#;
    let ok_metric = r#"credgate_reloads_total{what="tls",outcome="ok"}"#;
    // A corrupted CRL file (its DER no longer parses).
    let crl = std::fs::read_to_string(m.certs.join("crl.pem")).unwrap();
    write_atomically(
        &m.certs.join("crl.pem"),
        crl.replace("MII", "MIJ").as_bytes(),
    );
    let refused = eventually(60, || async {
        let (_, text) = gw.admin_get("/metrics").await;
        metric(&text, refused_metric) >= 1.0
    })
    .await;
    assert!(refused, "the broken CRL was never refused");
    // Several more ticks of the 1 s timer: the same broken file is not
    // retried, so it is refused and audited once.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(new_connection_works(gw.addr, &m.certs, "bank").await);
    assert!(!new_connection_works(gw.addr, &m.certs, "revoked").await);

    // A good CRL again (now revoking the bank) is picked up.
    m.revoke(&["bank"]);
    let loaded = eventually(60, || async {
        let (_, text) = gw.admin_get("/metrics").await;
        metric(&text, ok_metric) >= 1.0
    })
    .await;
    assert!(loaded, "the fixed CRL was never loaded");
    assert!(!new_connection_works(gw.addr, &m.certs, "bank").await);
    let (_, text) = gw.admin_get("/metrics").await;
    assert_eq!(metric(&text, refused_metric), 1.0, "{text}");
    let entries = common::audit_entries(&gw.store).await;
    let r = reloads(&entries);
    let outcomes: Vec<(&str, &str)> = r
        .iter()
        .map(|e| (e.outcome.as_str(), &*field(e, "tls").decision))
        .collect();
    assert_eq!(outcomes, [("reload_refused", "refused"), ("ok", "loaded")]);
    assert_eq!(field(r[0], "error").reason, "invalid_tls");
    assert!(
        field(r[0], "error")
            .detail
            .as_deref()
            .unwrap()
            .contains("crl.pem"),
        "{:?}",
        r[0]
    );
    gw.stop().await;
}

#[tokio::test]
async fn an_admin_reload_revokes_at_once_and_swaps_the_server_certificate_without_dropping_connections()
 {
    let m = Material::new("reload-admin-tls");
    // The timer never fires during this test: only the reload does it.
    let gw = TestGateway::start_with(|c| m.apply(c, 86_400), true).await;
    let mut open = Conn::open(gw.addr, &m.certs, "bank").await.unwrap();
    let mut agency = Conn::open(gw.addr, &m.certs, "bank2").await.unwrap();
    let mut h2 = H2::open(gw.addr, &m.certs, "bank").await;
    assert_eq!(open.post("/v1/query", &bank_query()).await.unwrap().0, 200);
    assert_eq!(h2.post("/v1/query", &bank_query()).await.0, 200);
    let old_cert = open.server_cert.clone();

    // New server certificate (same CA), then the bank revoked: one reload.
    std::fs::remove_file(m.certs.join("server.pem")).unwrap();
    std::fs::remove_file(m.certs.join("server-key.pem")).unwrap();
    credgate::cli::certs_init(&m.certs).unwrap();
    let new_cert =
        CertificateDer::from_pem_slice(&std::fs::read(m.certs.join("server.pem")).unwrap())
            .unwrap()
            .to_vec();
    assert_ne!(new_cert, old_cert);
    m.revoke(&["bank"]);
    let (status, report) = admin_post(gw.admin, "/reload").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["applied"], true, "{report}");
    assert_eq!(report["tls"], "loaded", "{report}");
    assert_eq!(report["policy"], "unchanged", "{report}");

    // The open connection of a certificate still valid keeps working on
    // the old server certificate; new connections see the new one.
    let (status, body) = agency.post("/v1/query", &bank_query()).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(agency.server_cert, old_cert);
    let fresh = Conn::open(gw.addr, &m.certs, "bank2").await.unwrap();
    assert_eq!(fresh.server_cert, new_cert);
    assert_revoked_everywhere(&gw, &m, open).await;
    // HTTP/2 too: the next stream is refused and the connection closed (GOAWAY).
    let (status, body) = h2.post("/v1/query", &bank_query()).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("certificate_revoked"))
    );
    assert!(
        tokio::time::timeout(Duration::from_secs(30), h2.driver)
            .await
            .is_ok(),
        "the HTTP/2 connection stayed open"
    );

    // Nothing changed since: a second reload swaps nothing and says so.
    let (status, report) = admin_post(gw.admin, "/reload").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (&report["tls"], &report["policy"]),
        (&json!("unchanged"), &json!("unchanged"))
    );
    let entries = common::audit_entries(&gw.store).await;
    assert_eq!(
        entries
            .iter()
            .filter(|e| e.outcome == "certificate_revoked")
            .count(),
        2,
        "one per connection of the revoked certificate"
    );
    let r = reloads(&entries);
    assert_eq!(r.len(), 2, "{r:?}");
    assert_eq!(field(r[0], "trigger").decision, "admin");
    assert_eq!(field(r[0], "tls").decision, "loaded");
    assert_eq!(r[0].status, 200);
    assert_eq!(field(r[1], "tls").decision, "unchanged");

    // The admin endpoint takes POST only.
    let (status, _) = gw.admin_get("/reload").await;
    assert_eq!(status, 405);
    gw.stop().await;
}

#[tokio::test]
async fn a_crl_is_re_read_when_its_next_update_passes() {
    let m = Material::new("reload-next-update");
    // A CRL that promises its successor in 3 s; the timer is off (a day).
    m.revoke_until(&[], time::Duration::seconds(3));
    let gw = TestGateway::start_with(|c| m.apply(c, 86_400), true).await;
    let mut open = Conn::open(gw.addr, &m.certs, "bank").await.unwrap();
    assert_eq!(open.post("/v1/query", &bank_query()).await.unwrap().0, 200);
    // The successor, revoking the bank, is in place before nextUpdate.
    m.revoke(&["bank"]);
    let refused = eventually(60, || async {
        !new_connection_works(gw.addr, &m.certs, "bank").await
    })
    .await;
    assert!(refused, "the CRL was not re-read at its nextUpdate");
    assert_revoked_everywhere(&gw, &m, open).await;
    let entries = common::audit_entries(&gw.store).await;
    let r = reloads(&entries);
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(field(r[0], "trigger").decision, "crl_next_update");
    assert_eq!(field(r[0], "tls").decision, "loaded");
    gw.stop().await;
}

//! The derived search index: rebuilt with identical results, searched by a second process without its lock, left to a running gateway's indexer, complete during another process's rebuild, and binned counts.

use super::*;

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
    empty_index(&config).await;
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

    empty_index(&gw.config).await;
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

//! Observability from the outside: `/metrics` scraped from a live gateway
//! and parsed with an independent Prometheus text-format parser
//! (`prometheus-parse`): the histograms exist, count exactly the requests
//! made, and agree with the counters. And the real binary's
//! `--log-format json`: one JSON object per line, the per-request line
//! carrying the request id and audit sequence number the client was sent.

mod common;

use common::*;
use prometheus_parse::{Sample, Scrape, Value};

async fn scrape(gw: &TestGateway) -> Scrape {
    let (status, text) = gw.admin_get("/metrics").await;
    assert_eq!(status, 200, "{text}");
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("parses")
}

fn find<'a>(s: &'a Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    s.samples.iter().find(|x| {
        x.metric == metric
            && x.labels.len() == labels.len()
            && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v))
    })
}

/// A histogram's observation count, from its `+Inf` bucket, after checking
/// that the buckets are cumulative and that `_count` says the same.
fn histogram_count(s: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let h = find(s, metric, labels).unwrap_or_else(|| panic!("no {metric}{labels:?}"));
    let Value::Histogram(buckets) = &h.value else {
        panic!("{metric} is not a histogram: {:?}", h.value);
    };
    assert!(buckets.len() > 5, "{metric}: {buckets:?}");
    for w in buckets.windows(2) {
        assert!(w[0].less_than < w[1].less_than, "{metric}: {buckets:?}");
        assert!(
            w[0].count <= w[1].count,
            "{metric} not cumulative: {buckets:?}"
        );
    }
    let inf = buckets.last().unwrap();
    assert!(inf.less_than.is_infinite(), "{metric}: {buckets:?}");
    let count = value(s, &format!("{metric}_count"), labels);
    assert_eq!(inf.count, count, "{metric}: +Inf bucket and _count differ");
    count
}

fn value(s: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    match find(s, metric, labels).map(|x| &x.value) {
        Some(Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v)) => *v,
        other => panic!("{metric}{labels:?}: {other:?}"),
    }
}

#[tokio::test]
async fn histograms_count_the_requests_made() {
    let gw = TestGateway::start().await;
    let bank = gw.client("bank");
    let q = query(
        "legal_person",
        ids::CERAMICS,
        "financing",
        &["enterprise_name"],
    );
    for _ in 0..3 {
        assert_eq!(bank.post("/v1/query", &q).await.status, 200);
    }
    for _ in 0..2 {
        assert_eq!(bank.get("/v1/no-such-endpoint").await.status, 404);
    }
    // No client certificate: refused at the handshake, never a request.
    let anonymous = Client::new(gw.addr, None);
    assert!(
        anonymous
            .send("GET", "/v1/openapi.json", Default::default(), None)
            .await
            .is_err()
    );

    // The refusal is counted once the server's side of the handshake has
    // ended, which may be just after the client saw it fail.
    let mut s = scrape(&gw).await;
    for _ in 0..50 {
        if find(&s, "credgate_handshake_failures_total", &[])
            .is_some_and(|x| x.value == Value::Counter(1.0))
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        s = scrape(&gw).await;
    }
    let query_ok = [("action", "query"), ("status_class", "2xx")];
    let unknown = [("action", "unknown"), ("status_class", "4xx")];
    assert_eq!(
        histogram_count(&s, "credgate_request_duration_seconds", &query_ok),
        3.0
    );
    assert_eq!(
        histogram_count(&s, "credgate_request_duration_seconds", &unknown),
        2.0
    );
    assert_eq!(
        value(
            &s,
            "credgate_requests_total",
            &[("action", "query"), ("status", "200")]
        ),
        3.0
    );
    assert_eq!(
        value(
            &s,
            "credgate_requests_total",
            &[("action", "unknown"), ("status", "404")]
        ),
        2.0
    );
    // Every request waited for its audit entry: each one is in a batch,
    // and the request latency includes the append.
    let sum = value(&s, "credgate_request_duration_seconds_sum", &query_ok);
    assert!(sum > 0.0 && sum < 30.0, "{sum}");

    // One connection per request (the test client's), and one refused.
    let ok = histogram_count(
        &s,
        "credgate_handshake_duration_seconds",
        &[("outcome", "ok")],
    );
    assert_eq!(ok, 5.0);
    let failed = histogram_count(
        &s,
        "credgate_handshake_duration_seconds",
        &[("outcome", "failed")],
    );
    assert_eq!(failed, 1.0);
    assert_eq!(value(&s, "credgate_handshake_failures_total", &[]), 1.0);
    assert_eq!(
        histogram_count(
            &s,
            "credgate_handshake_duration_seconds",
            &[("outcome", "timeout")]
        ),
        0.0
    );

    // The audit pipeline: one durable-latency observation per entry, one
    // batch-size observation per batch, summing to the entries.
    let entries = value(&s, "credgate_audit_entries_total", &[]);
    let batches = value(&s, "credgate_audit_batches_total", &[]);
    assert_eq!(entries, 5.0);
    assert_eq!(
        histogram_count(&s, "credgate_audit_append_to_durable_seconds", &[]),
        entries
    );
    assert_eq!(
        histogram_count(&s, "credgate_audit_batch_entries", &[]),
        batches
    );
    assert_eq!(value(&s, "credgate_audit_batch_entries_sum", &[]), entries);
    assert_eq!(
        histogram_count(&s, "credgate_audit_commit_duration_seconds", &[]),
        batches
    );
    // The embedded log's write-ahead file holds the five entries' records
    // and no snapshot is under way; PostgreSQL has no such file.
    let on_postgres =
        std::env::var("CREDGATE_TEST_DATABASE_URL").is_ok_and(|u| u.starts_with("postgres"));
    let wal = value(&s, "credgate_audit_wal_bytes", &[]);
    if on_postgres {
        assert_eq!(wal, 0.0);
    } else {
        assert!(wal > 5.0 * 100.0, "{wal} bytes of WAL for five entries");
    }
    assert_eq!(value(&s, "credgate_audit_snapshot_due", &[]), 0.0);
    // The index lag is a gauge (it may be non-zero until the indexer runs).
    assert!(matches!(
        find(&s, "credgate_audit_index_lag_entries", &[]).map(|x| &x.value),
        Some(Value::Gauge(_))
    ));
    assert!(s.docs.contains_key("credgate_request_duration_seconds"));
    gw.stop().await;
}

#[tokio::test]
async fn json_logs_carry_the_request_id_and_audit_seq() {
    let dir = TempDir::new("jsonlog");
    // SQLite in both suite runs: the log format does not depend on the
    // store, and a PostgreSQL database would outlive the killed process.
    let url = format!("sqlite://{}/credgate.db", dir.0.display());
    let mut cfg = config(&dir.0, &url);
    cfg.server.listen = free_addr();
    cfg.server.admin_listen = free_addr();
    let path = write_config_file(&cfg, &dir.0.join("credgate.toml"));
    let log = dir.0.join("stderr.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_credgate"))
        .args(["--log-format", "json", "serve", "--config"])
        .arg(&path)
        .env("RUST_LOG", "info,credgate::request=debug")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while tokio::net::TcpStream::connect(cfg.server.listen)
        .await
        .is_err()
    {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("never served: {}", std::fs::read_to_string(&log).unwrap());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let r = Client::new(cfg.server.listen, Some("bank"))
        .get("/v1/openapi.json")
        .await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(r.status, 200);
    let rid = r.headers["x-request-id"].to_str().unwrap().to_owned();
    let seq: u64 = r.headers["x-audit-seq"].to_str().unwrap().parse().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "credgate serving" && l["level"] == "INFO"),
        "{text}"
    );
    let req = lines
        .iter()
        .find(|l| l["message"] == "request")
        .unwrap_or_else(|| panic!("no request line: {text}"));
    assert_eq!(req["target"], "credgate::request", "{req}");
    assert_eq!(req["request_id"], rid.as_str(), "{req}");
    assert_eq!(req["seq"], seq, "{req}");
    assert_eq!(req["action"], "openapi", "{req}");
    assert_eq!(req["status"], 200, "{req}");
    assert!(req["timestamp"].is_string(), "{req}");
}

/// Text logs to a file (not a terminal) carry no colour codes.
#[test]
fn text_logs_to_a_file_are_not_coloured() {
    let dir = TempDir::new("textlog");
    let log = dir.0.join("stderr.log");
    // `serve` warns about the test config's consent issuer pinned outside
    // policies/, then fails to open a store in a missing directory.
    let mut cfg = config(
        &dir.0,
        &format!("sqlite://{}/no/such/dir/db", dir.0.display()),
    );
    cfg.server.listen = free_addr();
    cfg.server.admin_listen = free_addr();
    let path = write_config_file(&cfg, &dir.0.join("credgate.toml"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_credgate"))
        .args(["serve", "--config"])
        .arg(&path)
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stderr(std::fs::File::create(&log).unwrap())
        .output()
        .unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("WARN"),
        "nothing was logged ({:?}): {text}",
        out.status
    );
    assert!(!text.contains('\x1b'), "colour codes in a file: {text:?}");
}

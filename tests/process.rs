//! The process around the gateway: signals during startup, and what a
//! shutdown waits for.
//!
//! * A SIGHUP that arrives while the gateway is still starting (reading its
//!   policy, migrating, before any socket is bound) is queued and becomes
//!   one reload once it serves, instead of ending the process
//!   (`src/reload/triggers.rs`).
//! * Keep-alive connections on the admin listener (a metrics scraper) do
//!   not hold a shutdown past its drain deadline (`src/server.rs`).

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::process::Process;
use common::{TempDir, TestGateway, drop_test_database};
use credgate::store::Store;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

/// One GET on a fresh plain-HTTP connection to the admin listener.
async fn admin_get(admin: SocketAddr, path: &str) -> Option<u16> {
    let tcp = tokio::net::TcpStream::connect(admin).await.ok()?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .ok()?;
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = send.send_request(req).await.ok()?;
    Some(resp.status().as_u16())
}

/// A copy of the repository's policies in which `fifo` is a named pipe: the
/// gateway's start blocks reading it until the test writes the file.
fn policies_with_fifo(dir: &Path, fifo: &str) -> PathBuf {
    let out = dir.join("policies");
    std::fs::create_dir_all(&out).unwrap();
    for e in std::fs::read_dir(common::policies()).unwrap() {
        let e = e.unwrap();
        if e.file_name() != fifo {
            std::fs::copy(e.path(), out.join(e.file_name())).unwrap();
        }
    }
    let ok = Command::new("mkfifo")
        .arg(out.join(fifo))
        .status()
        .unwrap()
        .success();
    assert!(ok, "mkfifo failed");
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sighup_during_startup_is_one_reload_once_serving_not_the_end_of_the_process() {
    let dir = TempDir::new("sighup-startup");
    let (url, pg_db) = common::test_database(&dir.0).await;
    let mut cfg = common::config(&dir.0, &url);
    const SLOW: &str = "purposes.toml";
    cfg.policy.dir = policies_with_fifo(&dir.0, SLOW);
    let (addr, admin) = (common::free_addr(), common::free_addr());
    cfg.server.listen = addr;
    cfg.server.admin_listen = admin;
    let config = common::write_config_file(&cfg, &dir.0.join("credgate.toml"));
    let log = dir.0.join("gateway.log");
    let mut gw = Process::serve(&config, log);

    // Opening the pipe for writing returns once the gateway opened it for
    // reading: it is inside its start, reading the policy.
    let fifo = cfg.policy.dir.join(SLOW);
    let writer = {
        let fifo = fifo.clone();
        tokio::task::spawn_blocking(move || std::fs::OpenOptions::new().write(true).open(fifo))
    };
    let mut writer = tokio::time::timeout(Duration::from_secs(60), writer)
        .await
        .unwrap_or_else(|_| panic!("the gateway never read its policy:\n{}", gw.log()))
        .unwrap()
        .unwrap();
    gw.signal("-HUP");
    tokio::time::sleep(Duration::from_millis(300)).await;
    if let Some(status) = gw.child.try_wait().unwrap() {
        panic!(
            "a SIGHUP during startup ended the gateway ({status}):\n{}",
            gw.log()
        );
    }
    // Let the start go on: the blocked read gets the file's contents.
    let text = std::fs::read(common::policies().join(SLOW)).unwrap();
    writer.write_all(&text).unwrap();
    drop(writer);

    let deadline = Instant::now() + Duration::from_secs(60);
    while admin_get(admin, "/healthz").await != Some(200) {
        assert!(Instant::now() < deadline, "never served:\n{}", gw.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The queued SIGHUP is one reload, once serving: its read of the pipe
    // gets the contents too.
    let for_reload = tokio::task::spawn_blocking(move || {
        let mut w = std::fs::OpenOptions::new().write(true).open(fifo)?;
        w.write_all(&text)
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while !gw.log().contains("reloaded") {
        assert!(Instant::now() < deadline, "no reload:\n{}", gw.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::timeout(Duration::from_secs(10), for_reload)
        .await
        .expect("the reload read the policy")
        .unwrap()
        .unwrap();
    let log_text = gw.log();
    assert!(
        log_text.contains("SIGHUP received during startup"),
        "{log_text}"
    );
    gw.stop();

    let store = Store::connect_config(&cfg).await.unwrap();
    let entries = common::audit_entries(&store).await;
    let reloads: Vec<(&str, &str)> = entries
        .iter()
        .filter(|e| e.action == "policy_reload")
        .map(|e| {
            let trigger = e.fields.iter().find(|f| f.field == "trigger").unwrap();
            (&*trigger.decision, e.outcome.as_str())
        })
        .collect();
    assert_eq!(reloads, [("sighup", "ok")], "{entries:?}");
    store.close().await;
    drop_test_database(pg_db).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_keep_alive_admin_connection_does_not_hold_the_shutdown() {
    let gw = TestGateway::start_with(|_| {}, false).await;
    let grace = Duration::from_millis(gw.config.server.shutdown_grace_ms);
    // A scraper's connection: one answered request, kept open.
    let tcp = tokio::net::TcpStream::connect(gw.admin).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let req = hyper::Request::get("/metrics")
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.into_body().collect().await.unwrap();
    send.ready().await.unwrap();

    let started = Instant::now();
    let stopped = tokio::time::timeout(grace + Duration::from_secs(5), gw.stop()).await;
    let took = started.elapsed();
    assert!(stopped.is_ok(), "shutdown still waiting after {took:?}");
    assert!(
        took < grace,
        "shutdown took {took:?}, the drain deadline is {grace:?}"
    );
    // The gateway closed the connection (not the client).
    let closed = tokio::time::timeout(Duration::from_secs(1), conn).await;
    assert!(closed.is_ok(), "the admin connection is still open");
}

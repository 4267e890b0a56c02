//! The admin listener (`/metrics`, `/readyz`, `/reload`, …) against clients
//! that stall or pile up: it has no authentication, so neither may hold it.

mod common;

use std::time::{Duration, Instant};

use common::TestGateway;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Read until the server closes the connection or `limit` passes; returns
/// what was read and whether it was closed in time.
async fn read_until_closed(s: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (got, true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (got, false),
        }
    }
}

#[tokio::test]
async fn stalled_heads_and_idle_keep_alives_are_closed_after_the_head_deadline() {
    let gw = TestGateway::start_with(|c| c.server.header_timeout_ms = 300, false).await;

    // A head that never completes.
    let mut slow = TcpStream::connect(gw.admin).await.unwrap();
    slow.write_all(b"GET /metr").await.unwrap();
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut slow, Duration::from_secs(5)).await;
    assert!(closed, "a stalled admin head held its connection for 5 s");
    assert!(started.elapsed() >= Duration::from_millis(250));

    // A keep-alive connection that asks once, then nothing.
    let mut idle = TcpStream::connect(gw.admin).await.unwrap();
    idle.write_all(b"GET /readyz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let (resp, closed) = read_until_closed(&mut idle, Duration::from_secs(5)).await;
    let resp = String::from_utf8_lossy(&resp);
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(
        closed,
        "an idle admin keep-alive connection stayed open 5 s"
    );

    // The listener still answers.
    let (status, _) = gw.admin_get("/readyz").await;
    assert_eq!(status, 200);
    gw.stop().await;
}

#[tokio::test]
async fn admin_connections_beyond_the_cap_are_closed_at_accept() {
    let gw = TestGateway::start_with(|c| c.server.header_timeout_ms = 20_000, false).await;
    let cap = credgate::server::ADMIN_MAX_CONNECTIONS;
    let mut held = Vec::new();
    for _ in 0..cap {
        held.push(TcpStream::connect(gw.admin).await.unwrap());
    }
    // Let the listener accept all of them.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut over = TcpStream::connect(gw.admin).await.unwrap();
    let _ = over
        .write_all(b"GET /readyz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await;
    let (resp, closed) = read_until_closed(&mut over, Duration::from_secs(5)).await;
    assert!(closed, "a connection over the cap was kept");
    assert!(resp.is_empty(), "answered over the cap: {resp:?}");

    // Freeing slots makes room again.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut s = TcpStream::connect(gw.admin).await.unwrap();
        s.write_all(b"GET /readyz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let (resp, _) = read_until_closed(&mut s, Duration::from_secs(2)).await;
        if String::from_utf8_lossy(&resp).starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "no admin slot came free");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gw.stop().await;
}

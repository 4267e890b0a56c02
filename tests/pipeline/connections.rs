//! Connections: HTTP/2 by ALPN with one entry per request, idle HTTP/2 connections closed, and a client that stops reading its response disconnected.

use super::*;

#[tokio::test]
async fn http2_by_alpn_multiplexes_with_one_entry_per_request() {
    let gw = TestGateway::start().await;
    let before = settle(&gw).await;
    let s = connect_tls(gw.addr, tls_config("bank", &[b"h2", b"http/1.1"])).await;
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(s))
        .await
        .unwrap();
    tokio::spawn(conn);
    let body = query(
        "legal_person",
        ids::CERAMICS,
        "financing",
        &["enterprise_name"],
    )
    .to_string();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let mut send = send.clone();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let req = hyper::Request::post("https://localhost/v1/query")
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body)))
                .unwrap();
            let resp = send.send_request(req).await.unwrap();
            assert_eq!(resp.version(), hyper::Version::HTTP_2);
            let status = resp.status().as_u16();
            let seq = resp.headers()["x-audit-seq"].to_str().unwrap().to_owned();
            let b = resp.into_body().collect().await.unwrap().to_bytes();
            let v: Value = serde_json::from_slice(&b).unwrap();
            (status, seq, v)
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        let (status, seq, v) = t.await.unwrap();
        assert_eq!(status, 200, "{v}");
        assert_eq!(
            decisions(&v),
            vec![(
                "enterprise_name".into(),
                "returned".into(),
                "authorised".into()
            )]
        );
        seqs.push(seq);
    }
    seqs.sort();
    seqs.dedup();
    assert_eq!(seqs.len(), 20, "one distinct entry per stream");
    assert_eq!(settle(&gw).await, before + 20);
    gw.stop().await;
}

/// An idle HTTP/2 connection is closed by the idle deadline like an
/// HTTP/1.1 one (the server sends no PINGs that would keep it alive).
#[tokio::test]
async fn idle_http2_connections_are_closed() {
    let gw = TestGateway::start_with(|c| c.server.idle_timeout_ms = 400, true).await;
    let s = connect_tls(gw.addr, tls_config("bank", &[b"h2"])).await;
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(s))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let req = hyper::Request::get("https://localhost/v1/openapi.json")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let _ = resp.into_body().collect().await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(5), conn).await;
    assert!(closed.is_ok(), "the idle h2 connection stays open");
    gw.stop().await;
}

/// `request` as the auditor over HTTP/1.1, on a socket with a receive
/// buffer of `rcvbuf` bytes, reading the answer `pace` apart after waiting
/// `first` before the first read: the bytes received before the server
/// closed the connection.
async fn read_slowly(
    gw: &TestGateway,
    request: &[u8],
    rcvbuf: u32,
    first: Duration,
    pace: Duration,
) -> usize {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(rcvbuf).unwrap();
    let tcp = sock.connect(gw.addr).await.unwrap();
    let mut s = tokio_rustls::TlsConnector::from(tls_config("auditor", &[b"http/1.1"]))
        .connect(
            rustls_pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    s.write_all(request).await.unwrap();
    tokio::time::sleep(first).await;
    let mut total = 0;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return total,
            Ok(Ok(n)) => total += n,
            Err(_) => panic!("the connection neither sent nor closed for 10 s after {total} bytes"),
        }
        tokio::time::sleep(pace).await;
    }
}

/// A client that stops reading its response (its TCP window full, the
/// kernel's send buffer full behind it) is disconnected once no byte has
/// been taken for `idle_timeout`: it cannot hold a connection slot for as
/// long as it likes. One that reads steadily gets the whole response even
/// when that takes longer than `idle_timeout` (it was cut: by the idle
/// deadline, which counted only reads, and by hyper's header timeout,
/// which ran from the end of the request). The response is an export of
/// some 6 MB, larger than the send buffer the kernel gives a loopback
/// socket (`tcp_wmem`: at most 4 MiB here), read at about 1.8 MB/s.
#[tokio::test]
async fn a_client_that_stops_reading_its_response_is_disconnected() {
    let gw = TestGateway::start_with(|c| c.server.idle_timeout_ms = 1_500, true).await;
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let gw = &gw;
            async move { keep_alive_queries(gw, "bank", 1_500).await }
        })
        .collect();
    for answers in futures_util::future::join_all(tasks).await {
        assert!(answers.iter().all(|(status, _)| *status == 200));
    }
    let body = r#"{"format":"jsonl"}"#;
    let request = format!(
        "POST /v1/audit/export HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let fast = read_slowly(
        &gw,
        request.as_bytes(),
        1 << 20,
        Duration::ZERO,
        Duration::ZERO,
    )
    .await;
    assert!(fast > 5_000_000, "the export is only {fast} bytes");
    let steady = read_slowly(
        &gw,
        request.as_bytes(),
        1 << 16,
        Duration::ZERO,
        Duration::from_millis(35),
    )
    .await;
    assert!(
        steady >= fast,
        "a steady reader got {steady} of {fast} bytes"
    );
    let stalled = read_slowly(
        &gw,
        request.as_bytes(),
        4096,
        Duration::from_secs(4),
        Duration::ZERO,
    )
    .await;
    assert!(
        stalled < fast,
        "a stalled reader still got all {stalled} bytes"
    );
    gw.stop().await;
}

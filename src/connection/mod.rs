//! One client connection, from accept to close.
//!
//! 1. The TLS handshake, under a timeout, in the connection's own task.
//! 2. The identity, once: the leaf certificate's organisation code and
//!    fingerprint become a [`Caller`] for every request on the connection.
//! 3. The protocol by ALPN: `h2` gets HTTP/2, anything else HTTP/1.1.
//! 4. Each request's handling cannot be cancelled by the client: it runs
//!    inside hyper's service future, and when the client hangs up and hyper
//!    drops that future, the rest of the handling moves to a task of its
//!    own (`handoff`), which still reaches its audit entry (and, for a
//!    submission, its commit or its refusal). [`InFlight`] counts handlings
//!    in progress so that shutdown can wait for them before the audit
//!    sequencer stops.
//! 5. What hyper refuses before any handler runs (a bad request line,
//!    oversized or malformed headers, conflicting lengths, an HTTP/2 preface
//!    on HTTP/1.1, a head that never completes) is audited here, as one
//!    `malformed_http` entry per rejected request.
//!
//! 6. After a reload ([`crate::reload`]) the identity is checked again: each
//!    request compares the reload generation with the one the connection
//!    last saw (one atomic load); only when it changed is the leaf
//!    certificate re-checked against the CRLs now in force, and the
//!    organisation re-resolved against the registry now in force. A leaf
//!    revoked since the handshake gets 401 `certificate_revoked` (audited
//!    like any request) and the connection is closed after that response
//!    (HTTP/1.1: no keep-alive; HTTP/2: GOAWAY). A deregistered
//!    organisation gets 403 `unregistered_organisation` from then on.
//!
//! # How a rejected request is told from an idle close
//!
//! `Watched` wraps the decrypted stream and counts the bytes hyper read.
//! When a request's task finishes, the count at that moment becomes the
//! *boundary*. A connection that ends, with an error, holding bytes past the
//! boundary while no request is in flight had an unanswered request head:
//! that is a rejection and gets an entry. A keep-alive connection closed with
//! nothing past the boundary had no request, and gets none.
//!
//! The same counter drives the two read deadlines on HTTP/1.1: once the
//! first byte of a request head has arrived, the whole head must arrive
//! within `header_timeout` (a slowloris head cannot pin a slot); with no
//! request being handled, the connection closes `idle_timeout` after the last
//! byte read or written — so a response read steadily may take as long as it
//! takes, and a client that stops reading its response is closed like an
//! idle one. HTTP/2 gets the idle deadline only (its frames are not request
//! heads; a stream stalled by its flow-control window writes nothing). The body deadline is
//! the body extractor's (`http::body`), answered with 408.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::Request;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulConnection;
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, watch};
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;

use crate::http::Caller;

mod handoff;
use crate::metrics::Handshake;
use crate::reload::Live;
use handoff::FinishOnDrop;

/// Deadlines and limits of one connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// TLS handshake.
    pub handshake: Duration,
    /// From the first byte of a request head to its end (HTTP/1.1).
    pub header: Duration,
    /// With no request pending or in flight.
    pub idle: Duration,
    /// Concurrent streams per HTTP/2 connection.
    pub h2_max_streams: u32,
}

/// Requests whose handling has started and not finished, process-wide.
/// Shutdown waits on it before the audit sequencer stops.
#[derive(Debug, Default)]
pub struct InFlight {
    count: AtomicUsize,
    idle: Notify,
}

impl InFlight {
    fn enter(self: &Arc<Self>) -> InFlightGuard {
        self.count.fetch_add(1, Ordering::AcqRel);
        InFlightGuard(self.clone())
    }

    /// Requests being handled now.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Wait until no request is being handled.
    pub async fn drained(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

struct InFlightGuard(Arc<InFlight>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Byte and request accounting shared by [`Watched`] and the request tasks.
#[derive(Debug, Default)]
struct ConnState {
    /// Bytes hyper has read from the decrypted stream.
    read: AtomicU64,
    /// `read` when the last request's task finished.
    boundary: AtomicU64,
    /// Requests of this connection being handled.
    in_flight: AtomicUsize,
    /// Requests finished (lets [`Watched`] see a boundary move).
    finished: AtomicU64,
    /// Why [`Watched`] ended the connection: 0 none, 1 head deadline, 2 idle.
    deadline_hit: std::sync::atomic::AtomicU8,
    /// The request id [`Watched`] wrote into hyper's own error response,
    /// which the rejection's entry then carries.
    rejection_id: std::sync::OnceLock<String>,
}

impl ConnState {
    /// An unanswered request head is pending: bytes past the boundary, no
    /// request in flight.
    fn head_pending(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
            && self.read.load(Ordering::Acquire) > self.boundary.load(Ordering::Acquire)
    }
}

/// Marks one request of a connection as in flight until dropped.
struct RequestGuard {
    conn: Arc<ConnState>,
    _global: InFlightGuard,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let c = &self.conn;
        c.boundary
            .store(c.read.load(Ordering::Acquire), Ordering::Release);
        c.finished.fetch_add(1, Ordering::AcqRel);
        c.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

const HEAD_DEADLINE: u8 = 1;
const IDLE_DEADLINE: u8 = 2;

/// The decrypted stream with byte accounting, the read deadlines, and the
/// request id in the responses hyper writes itself (see
/// [`Watched::poll_write`]).
struct Watched<S> {
    inner: S,
    live: Arc<Live>,
    /// Bytes accepted from hyper but not yet written to `inner` (hyper's
    /// own error response with its `x-request-id`), from `out_at` on.
    out: Vec<u8>,
    out_at: usize,
    state: Arc<ConnState>,
    limits: ConnLimits,
    h1: bool,
    timer: Pin<Box<Sleep>>,
    armed_for: Option<Instant>,
    last_activity: Instant,
    head_started: Option<Instant>,
    seen_finished: u64,
}

impl<S> Watched<S> {
    fn new(inner: S, live: Arc<Live>, state: Arc<ConnState>, limits: ConnLimits, h1: bool) -> Self {
        let now = Instant::now();
        Watched {
            inner,
            live,
            out: Vec::new(),
            out_at: 0,
            state,
            limits,
            h1,
            timer: Box::pin(tokio::time::sleep_until(now + limits.idle)),
            armed_for: None,
            last_activity: now,
            head_started: None,
            seen_finished: 0,
        }
    }

    /// Count bytes written as activity: the idle deadline runs from the
    /// last byte read or written, so a long download read steadily is not
    /// cut, while a client that stops reading its response (its window
    /// full, the kernel's send buffer full behind it) is closed
    /// `idle_timeout` after the last byte it took — hyper keeps polling
    /// the read side while a response is being written. (Not flushes:
    /// hyper flushes whenever its task is polled, with nothing to write.)
    fn wrote(&mut self, r: Poll<std::io::Result<usize>>) -> Poll<std::io::Result<usize>> {
        if let Poll::Ready(Ok(n)) = r
            && n > 0
        {
            self.last_activity = Instant::now();
        }
        r
    }

    /// The deadline that applies while a read is pending, if any.
    fn deadline(&mut self) -> Option<(Instant, u8)> {
        let finished = self.state.finished.load(Ordering::Acquire);
        if finished != self.seen_finished {
            self.seen_finished = finished;
            self.last_activity = Instant::now();
            self.head_started = None;
        }
        if self.state.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        if self.h1 && self.state.head_pending() {
            let started = *self.head_started.get_or_insert_with(Instant::now);
            return Some((started + self.limits.header, HEAD_DEADLINE));
        }
        Some((self.last_activity + self.limits.idle, IDLE_DEADLINE))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                let n = (buf.filled().len() - before) as u64;
                if n > 0 {
                    self.state.read.fetch_add(n, Ordering::AcqRel);
                    self.last_activity = Instant::now();
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                let Some((at, why)) = self.deadline() else {
                    return Poll::Pending;
                };
                if self.armed_for != Some(at) {
                    self.armed_for = Some(at);
                    self.timer.as_mut().reset(at);
                }
                match self.timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        self.state.deadline_hit.store(why, Ordering::Release);
                        Poll::Ready(Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            if why == HEAD_DEADLINE {
                                "request head not received in time"
                            } else {
                                "idle connection"
                            },
                        )))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

/// hyper's own response to a request head it refused (400, 414 or 431 on
/// HTTP/1.1): a status line and headers with no body, none of them an
/// `x-request-id` (every response of ours has one). `Some(end of the
/// status line)` when `buf` is exactly such a head.
/// Whether `buf` starts with a status line hyper writes for a head it
/// refused (`400`, `414`, `431`): the cheap test before [`hyper_error_head`]
/// looks at the whole head.
fn refused_status(buf: &[u8]) -> bool {
    [b"HTTP/1.1 400 ", b"HTTP/1.1 414 ", b"HTTP/1.1 431 "]
        .iter()
        .any(|p| buf.starts_with(*p))
}

fn hyper_error_head(buf: &[u8]) -> Option<usize> {
    let line_end = buf.windows(2).position(|w| w == b"\r\n")?;
    let status = buf.get(..line_end)?.strip_prefix(b"HTTP/1.1 ")?;
    let refused = [b"400 ", b"414 ", b"431 "]
        .iter()
        .any(|code| status.starts_with(*code));
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let has_id = buf
        .split(|b| *b == b'\n')
        .any(|l| l.len() >= 13 && l[..13].eq_ignore_ascii_case(b"x-request-id:"));
    (refused && head_end == buf.len() && !has_id).then_some(line_end + 2)
}

impl<S: AsyncWrite + Unpin> Watched<S> {
    /// Write out what `out` holds.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while self.out_at < self.out.len() {
            let r = Pin::new(&mut self.inner).poll_write(cx, &self.out[self.out_at..]);
            let n = std::task::ready!(self.wrote(r))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.out_at += n;
        }
        self.out.clear();
        self.out_at = 0;
        Poll::Ready(Ok(()))
    }

    /// Whether hyper may be writing its own error response now: HTTP/1.1,
    /// no request being handled, none refused yet. (Not "a head pending":
    /// a head pipelined behind an answered request may have been read
    /// before that request's boundary was taken; [`hyper_error_head`]
    /// tells hyper's response from ours, which always carry an id.)
    fn may_refuse(&self) -> bool {
        self.h1
            && self.state.in_flight.load(Ordering::Acquire) == 0
            && self.state.rejection_id.get().is_none()
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    /// Passes hyper's bytes through, except for the response hyper writes
    /// itself to a head it refused: that one gets the `x-request-id` of the
    /// rejection's entry after its status line, so the client can quote
    /// the id the log holds.
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        std::task::ready!(self.poll_drain(cx))?;
        if self.may_refuse()
            && refused_status(buf)
            && let Some(at) = hyper_error_head(buf)
        {
            let id = self.live.app().request_id();
            let mut out = Vec::with_capacity(buf.len() + id.len() + 16);
            out.extend_from_slice(&buf[..at]);
            out.extend_from_slice(b"x-request-id: ");
            out.extend_from_slice(id.as_bytes());
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&buf[at..]);
            let _ = self.state.rejection_id.set(id);
            self.out = out;
            self.out_at = 0;
            // Accepted; written by the drain (now, or at the next flush).
            let _ = self.poll_drain(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &b[..]);
        // Only a rewrite (a head hyper wrote itself, one slice) or bytes
        // still to drain take the one-slice path; every answered request's
        // head and body stay one vectored write (one TLS record, one
        // `writev`). The request guard is dropped before hyper writes the
        // answer, so `may_refuse` alone is true for ordinary responses.
        if !self.out.is_empty() || (self.may_refuse() && refused_status(first)) {
            return self.poll_write(cx, first);
        }
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::task::ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::task::ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A request hyper refused before any handler ran: the outcome code for the
/// entry and the status hyper sent (0: the connection was closed without a
/// response).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    /// Stable outcome code.
    pub outcome: &'static str,
    /// HTTP status sent, or 0 when none was.
    pub status: u16,
}

/// Classify how an HTTP/1.1 connection with a pending request head ended.
///
/// hyper answers parse errors itself (400, 414, 431) and reports the kind
/// through predicates and its error text; the text is matched for the finer
/// codes, and `tests/pipeline.rs` pins each case, so a hyper upgrade that
/// changes a message fails a test rather than changing a code silently.
fn classify(err: Option<&hyper::Error>, deadline_hit: u8) -> Rejection {
    let r = |outcome, status| Rejection { outcome, status };
    if deadline_hit == HEAD_DEADLINE {
        return r("header_timeout", 0);
    }
    let Some(e) = err else {
        return r("incomplete_request", 0);
    };
    if e.is_parse_version_h2() {
        return r("http2_preface_on_http1", 0);
    }
    let text = e.to_string();
    if e.is_parse_too_large() {
        return if text.contains("URI") {
            r("uri_too_long", 414)
        } else {
            r("headers_too_large", 431)
        };
    }
    if e.is_parse() {
        let outcome = if text.contains("content-length") {
            "invalid_content_length"
        } else if text.contains("transfer-encoding") {
            "invalid_transfer_encoding"
        } else if text.contains("header") {
            "invalid_header"
        } else if text.contains("URI") {
            "invalid_uri"
        } else if text.contains("method") {
            "invalid_method"
        } else if text.contains("version") {
            "invalid_version"
        } else {
            "malformed_http"
        };
        return r(outcome, 400);
    }
    if e.is_timeout() {
        return r("header_timeout", 0);
    }
    r("incomplete_request", 0)
}

/// The connection's identity, re-checked when the reload generation moves.
struct Identity {
    /// The chain the client presented (leaf first).
    chain: Vec<CertificateDer<'static>>,
    /// The leaf's fingerprint.
    leaf_fp: Option<String>,
    /// The generation `caller` was resolved under.
    seen: AtomicU64,
    caller: ArcSwap<Caller>,
    /// Notified once the certificate is found revoked: close after the reply.
    close: Notify,
}

impl Identity {
    /// The caller under the current generation (fast path: one comparison).
    fn current(&self, live: &Live) -> Arc<Caller> {
        let generation = live.generation();
        if generation != self.seen.load(Ordering::Acquire) {
            let revoked = self
                .chain
                .first()
                .is_some_and(|leaf| live.is_revoked(leaf.as_ref()));
            let caller = if revoked {
                let peer = crate::identity::peer_identity_from_chain(Some(&self.chain));
                Caller::Revoked {
                    code: peer.ok().map(|p| p.org_code),
                    fingerprint: self.leaf_fp.clone().unwrap_or_default(),
                }
            } else {
                self.resolve(live)
            };
            self.caller.store(Arc::new(caller));
            self.seen.store(generation, Ordering::Release);
        }
        self.caller.load_full()
    }

    fn resolve(&self, live: &Live) -> Caller {
        let chain = (!self.chain.is_empty()).then_some(&self.chain[..]);
        let identity = crate::identity::peer_identity_from_chain(chain);
        Caller::resolve(identity, self.leaf_fp.clone(), &live.app().policy)
    }
}

/// Drive a hyper connection until it ends; start its graceful shutdown
/// (finish what is in flight, then close) when the server shuts down or
/// the connection's certificate has been found revoked.
pub(crate) async fn drive<C: GracefulConnection>(
    conn: C,
    stop: &mut watch::Receiver<bool>,
    close: &Notify,
) -> Result<(), C::Error> {
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => return r,
            _ = stop.wait_for(|s| *s), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            () = close.notified(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

/// Serve one accepted TCP connection until it closes: TLS under the
/// config current at accept, each request under the application current
/// at its start; graceful close when `stop` turns true.
pub async fn serve(
    live: Arc<Live>,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    limits: ConnLimits,
    mut stop: watch::Receiver<bool>,
) {
    // Before the handshake: a reload during it makes the first request
    // re-check the certificate.
    let generation = live.generation();
    let tls = TlsAcceptor::from(live.tls_config());
    let metrics = live.app().metrics.clone();
    let started = Instant::now();
    let stream = match tokio::time::timeout(limits.handshake, tls.accept(tcp)).await {
        Ok(Ok(s)) => {
            metrics.handshake(Handshake::Ok, started.elapsed());
            s
        }
        Ok(Err(e)) => {
            let reason = refusal_reason(&e);
            metrics.handshake(Handshake::Failed, started.elapsed());
            metrics.handshake_refused(reason);
            // Debug only: a scanner must not flood the log; the per-reason
            // counter in /metrics is what operators alert on.
            tracing::debug!(%peer, reason, error = %e, "handshake failed");
            return;
        }
        Err(_) => {
            metrics.handshake(Handshake::Timeout, started.elapsed());
            metrics.handshake_refused("timeout");
            tracing::debug!(%peer, reason = "timeout", "handshake timed out");
            return;
        }
    };
    let (_, tls_conn) = stream.get_ref();
    let chain: Vec<CertificateDer<'static>> = tls_conn
        .peer_certificates()
        .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
        .unwrap_or_default();
    let leaf_fp = chain
        .first()
        .map(|leaf| crate::identity::fingerprint(leaf.as_ref()));
    let h2 = tls_conn.alpn_protocol() == Some(b"h2");
    let ident = {
        let mut ident = Identity {
            chain,
            leaf_fp,
            seen: AtomicU64::new(generation),
            caller: ArcSwap::from_pointee(Caller::NoIdentity {
                fingerprint: None,
                reason: String::new(),
            }),
            close: Notify::new(),
        };
        ident.caller = ArcSwap::from_pointee(ident.resolve(&live));
        Arc::new(ident)
    };

    let state = Arc::new(ConnState::default());
    let io = TokioIo::new(Watched::new(
        stream,
        live.clone(),
        state.clone(),
        limits,
        !h2,
    ));
    let svc = {
        let (live, ident, state) = (live.clone(), ident.clone(), state.clone());
        service_fn(move |req: Request<Incoming>| {
            let caller = ident.current(&live);
            let app = live.app();
            state.in_flight.fetch_add(1, Ordering::AcqRel);
            let guard = RequestGuard {
                conn: state.clone(),
                _global: app.in_flight.enter(),
            };
            let revoked = matches!(*caller, Caller::Revoked { .. });
            let ident = ident.clone();
            // Runs to its audit entry even if hyper drops the future
            // below because the client went away (`handoff`).
            let handling = FinishOnDrop::new(async move {
                let resp = app.handle(&caller, req).await;
                drop(guard);
                resp
            });
            async move {
                let resp = handling.await;
                if revoked {
                    ident.close.notify_one();
                }
                Ok::<_, Infallible>(resp)
            }
        })
    };
    let result = if h2 {
        let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        // No server PINGs: their ACKs would count as reads and keep an idle
        // connection open forever. `Watched`'s idle deadline closes a
        // connection with no stream in flight and nothing read, which also
        // covers a dead peer.
        b.timer(TokioTimer::new())
            .max_concurrent_streams(limits.h2_max_streams)
            .keep_alive_interval(None);
        drive(b.serve_connection(io, svc), &mut stop, &ident.close).await
    } else {
        let mut b = hyper::server::conn::http1::Builder::new();
        // `Watched` enforces the head and idle deadlines. hyper's own
        // header timeout would run from the end of each request, through
        // the writing of its response, and cut a long download read
        // steadily (`tests/pipeline.rs::a_client_that_stops_reading_its_response_is_disconnected`).
        b.timer(TokioTimer::new())
            .header_read_timeout(None)
            .keep_alive(true);
        drive(b.serve_connection(io, svc), &mut stop, &ident.close).await
    };
    let hit = state.deadline_hit.load(Ordering::Acquire);
    if let Err(e) = &result {
        tracing::debug!(%peer, error = %e, "connection ended with error");
    }
    // An unanswered head, or one hyper answered itself (also when it was
    // pipelined behind an answered request and read with it).
    let refused = state.head_pending() || state.rejection_id.get().is_some();
    if !h2 && refused && (result.is_err() || hit != 0) {
        let rejection = classify(result.as_ref().err(), hit);
        let caller = ident.current(&live);
        let id = state.rejection_id.get().cloned();
        live.app().audit_rejection(&caller, rejection, id).await;
    }
}

/// Why rustls refused a handshake, as the `reason` label of
/// `credgate_handshake_refusals_total` (one of
/// [`crate::metrics::HANDSHAKE_REFUSALS`]).
pub fn refusal_reason(e: &std::io::Error) -> &'static str {
    use rustls::{CertificateError, Error};
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<Error>()) else {
        return "connection_closed";
    };
    match tls {
        Error::NoCertificatesPresented => "no_certificate",
        Error::InvalidCertificate(c) => match c {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "certificate_expired"
            }
            CertificateError::Revoked => "certificate_revoked",
            CertificateError::UnknownIssuer
            | CertificateError::BadSignature
            | CertificateError::UnknownRevocationStatus => "certificate_untrusted",
            _ => "certificate_invalid",
        },
        Error::AlertReceived(_) => "alert_received",
        Error::PeerIncompatible(_) | Error::NoApplicationProtocol => "incompatible",
        _ => "protocol_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_deadline_wins_over_the_error_text() {
        assert_eq!(classify(None, HEAD_DEADLINE).outcome, "header_timeout");
        assert_eq!(classify(None, 0).outcome, "incomplete_request");
    }

    #[tokio::test]
    async fn in_flight_drains() {
        let f = Arc::new(InFlight::default());
        let g = f.enter();
        assert_eq!(f.count(), 1);
        let f2 = f.clone();
        let waiter = tokio::spawn(async move { f2.drained().await });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(g);
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("drained")
            .unwrap();
    }

    #[test]
    fn only_heads_hyper_refused_are_rewritten() {
        let hyper_431 =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n";
        assert!(refused_status(hyper_431));
        assert_eq!(hyper_error_head(hyper_431), Some(46));
        // An answered request: its head carries the id (and its body
        // follows in another slice); a 200 is never even scanned.
        let ours = b"HTTP/1.1 400 Bad Request\r\nx-request-id: r-1\r\n\r\n";
        assert!(refused_status(ours));
        assert_eq!(hyper_error_head(ours), None);
        assert!(!refused_status(
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"
        ));
        assert!(!refused_status(b"HTTP/1.1 4"));
    }
}

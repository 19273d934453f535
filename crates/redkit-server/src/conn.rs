//! Connections: the accept loop, and the three bounds on what a client can hold.
//!
//! - **Header-read timeout** (`server.header_read_timeout_s`, default 10 s): a request's
//!   head (request line and headers) must arrive within it, timed from its first byte — or,
//!   for a connection's first request, from the accept. A head trickled a byte at a time
//!   (slowloris), or a connection that sends nothing, is closed when it runs out.
//! - **Idle timeout** (`server.idle_timeout_s`, default 60 s): a keep-alive connection
//!   with no request in flight and no byte of a new one is closed after it. The two clocks
//!   are separate: a client may keep a connection idle for a minute and still has the whole
//!   header-read timeout for its next request.
//! - **Connection cap** (`server.max_connections`, default 10,000, lowered to what the
//!   open-files limit allows): at the cap the server **stops accepting** — new connections
//!   wait in the kernel's listen backlog, costing this process no file descriptor — and asks
//!   every idle keep-alive connection to close, so a slot frees at once unless every slot
//!   holds a request or a head being read; those free theirs within the header-read timeout
//!   or when their request ends. Accepting and answering 503 instead was rejected: each
//!   refusal needs a descriptor, the very resource being protected (under an open-files
//!   limit, accept itself fails), and closing a socket with an unread request makes the
//!   kernel send a reset, so the client rarely even sees the 503.
//!
//! Requests in flight are not timed here: long polls (job fetch, lock waits) and event
//! streams legitimately take as long as they asked for, and handlers bound their own work.
//! A connection upgraded to a WebSocket leaves these clocks (its handler pings and times
//! it) but keeps its slot until it closes.
//!
//! Error responses hyper writes by itself, before any request reaches the application
//! (431 headers too large, 400 malformed, 414, 505), get the JSON error envelope too: the
//! connection's writer replaces them (see `Watched`).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;

use crate::error::{ErrorBody, ErrorDetail};
use crate::front::App;

/// Largest request head (request line and headers) in bytes; above it, 431.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// The bounds of one connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
}

/// Accepts connections on `listener` and serves `app` on each, within `limits` and at most
/// `max_connections` at once, until `signal` resolves; then sets `stop` (long polls end),
/// stops accepting, closes idle connections, lets requests in flight finish for up to
/// `grace`, and returns.
pub(crate) async fn run(
    listener: TcpListener,
    app: App,
    limits: Limits,
    max_connections: usize,
    grace: Duration,
    stop: watch::Sender<bool>,
    signal: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let cap = fit_to_open_files(max_connections);
    let slots = Arc::new(Semaphore::new(cap));
    // Bumped whenever the cap is reached: idle connections close to make room.
    let (make_room, _) = watch::channel(0u64);
    let mut signal = pin!(signal);
    let at_cap = Every::new(Duration::from_secs(60));
    'accept: loop {
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if at_cap.due() {
                    tracing::warn!(
                        max_connections = cap,
                        "connection cap reached: new connections wait in the listen backlog until a slot frees \
                         (idle keep-alive connections are closed to make room); setting server.max_connections"
                    );
                }
                make_room.send_modify(|n| *n = n.wrapping_add(1));
                tokio::select! {
                    p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
                    _ = &mut signal => break 'accept,
                }
            }
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of file descriptors, most likely: wait for some to close.
                    tracing::error!(error = %e, "accept failed; retrying in 1 s");
                    drop(permit);
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        _ = &mut signal => break 'accept,
                    }
                }
            },
            _ = &mut signal => break 'accept,
        };
        tokio::spawn(connection(
            stream,
            app.clone(),
            limits,
            stop.subscribe(),
            make_room.subscribe(),
            permit,
        ));
    }
    tracing::info!("shutting down: no new connections; finishing requests in flight");
    let _ = stop.send(true);
    drop(listener);
    let all = u32::try_from(cap).unwrap_or(u32::MAX);
    tokio::select! {
        // Every slot back: every connection closed.
        _ = slots.acquire_many(all) => {}
        _ = tokio::time::sleep(grace) => {
            tracing::warn!(?grace, "shutdown grace expired; dropping requests still in flight");
        }
    }
    Ok(())
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

/// The cap, lowered if the process may not open that many files: the soft open-files
/// limit is first raised (up to the hard limit) to what the cap needs; whatever it ends
/// at, a reserve is kept for the stores, Redis connections and lock files.
fn fit_to_open_files(wanted: usize) -> usize {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit only read and write the struct passed.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return wanted;
        }
        let reserve = |files: u64| (files / 8).max(64).min(files / 2);
        let needed = wanted as u64 + (wanted as u64 / 7).max(64);
        if limit.rlim_cur != libc::RLIM_INFINITY && limit.rlim_cur < needed {
            let raised = libc::rlimit {
                rlim_cur: needed.min(limit.rlim_max),
                rlim_max: limit.rlim_max,
            };
            // SAFETY: as above.
            if raised.rlim_cur > limit.rlim_cur && unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                limit.rlim_cur = raised.rlim_cur;
            }
        }
        if limit.rlim_cur == libc::RLIM_INFINITY {
            return wanted;
        }
        let usable = usize::try_from(limit.rlim_cur - reserve(limit.rlim_cur)).unwrap_or(usize::MAX);
        if usable < wanted {
            tracing::warn!(
                max_connections = usable,
                configured = wanted,
                open_files_limit = limit.rlim_cur,
                "server.max_connections lowered to fit the open-files limit (ulimit -n); raise the limit to allow more"
            );
            return usable.max(1);
        }
    }
    wanted
}

/// What a connection is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading a request's head (since its first byte, or since the accept).
    Head,
    /// At least one request is being served (its response not yet fully written).
    Busy,
    /// Keep-alive, waiting for the next request.
    Idle,
}

#[derive(Debug)]
struct ClockState {
    phase: Phase,
    since: Instant,
    in_flight: u32,
    /// Whether a response may still sit in hyper's write buffer: set when a request
    /// begins, cleared when hyper flushes the socket with no request in flight (it flushes
    /// the socket only once its buffer is written).
    unflushed: bool,
    /// Switched protocols (101): what is written now is the new protocol's.
    upgraded: bool,
}

/// A connection's phase, moved by its reads (a byte after idleness starts a head), its
/// requests (begun when the service is called, ended when the response body is done) and
/// read by its watchdog.
#[derive(Debug)]
struct Clock(Mutex<ClockState>);

impl Clock {
    fn new() -> Self {
        Clock(Mutex::new(ClockState {
            phase: Phase::Head,
            since: Instant::now(),
            in_flight: 0,
            unflushed: false,
            upgraded: false,
        }))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ClockState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn phase(&self) -> Phase {
        self.state().phase
    }

    fn bytes_read(&self) {
        let mut s = self.state();
        if s.phase == Phase::Idle {
            s.phase = Phase::Head;
            s.since = Instant::now();
        }
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        let mut s = self.state();
        s.in_flight += 1;
        s.phase = Phase::Busy;
        s.unflushed = true;
        InFlight(self.clone())
    }

    fn flushed(&self) {
        let mut s = self.state();
        if s.phase != Phase::Busy {
            s.unflushed = false;
        }
    }

    /// Whether what hyper writes now can only be its own rejection of the head being
    /// read: no request of this head reached the application, and every earlier response
    /// is out of hyper's buffer.
    fn only_rejections_possible(&self) -> bool {
        let s = self.state();
        s.phase == Phase::Head && !s.unflushed && !s.upgraded
    }

    fn upgraded(&self) {
        self.state().upgraded = true;
    }

    fn end(&self) {
        let mut s = self.state();
        s.in_flight = s.in_flight.saturating_sub(1);
        if s.in_flight == 0 {
            s.phase = Phase::Idle;
            s.since = Instant::now();
        }
    }

    /// When to look again, and whether the connection has run out of time already. The
    /// watchdog wakes at least once per header-read timeout, so a head that begins while
    /// it sleeps towards an idle deadline (or ends a busy stretch) is timed from its start.
    fn check(&self, limits: &Limits) -> (Instant, bool) {
        let s = self.state();
        let now = Instant::now();
        let poll = now + limits.header_read_timeout;
        match s.phase {
            Phase::Head => {
                let deadline = s.since + limits.header_read_timeout;
                (deadline, now >= deadline)
            }
            Phase::Idle => {
                let deadline = s.since + limits.idle_timeout;
                (deadline.min(poll), now >= deadline)
            }
            Phase::Busy => (poll, false),
        }
    }
}

/// One request in flight on a connection; dropped with its response body.
struct InFlight(Arc<Clock>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// A response body that keeps its request counted until it is written (or dropped).
struct Guarded {
    body: Body,
    _in_flight: InFlight,
}

impl http_body::Body for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Counts itself in `redkit_http_connections` (open connections) while it lives.
struct OpenConnection;

impl OpenConnection {
    fn new() -> Self {
        metrics::gauge!("redkit_http_connections").increment(1.0);
        OpenConnection
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        metrics::gauge!("redkit_http_connections").decrement(1.0);
    }
}

/// Serves one connection until it ends, runs out of time, or the server stops.
async fn connection(
    stream: TcpStream,
    app: App,
    limits: Limits,
    mut stopping: watch::Receiver<bool>,
    mut make_room: watch::Receiver<u64>,
    slot: OwnedSemaphorePermit,
) {
    let clock = Arc::new(Clock::new());
    let io = TokioIo::new(Watched {
        io: stream,
        clock: clock.clone(),
        replacement: None,
        _slot: slot,
        _open: OpenConnection::new(),
    });
    let requests = clock.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let in_flight = requests.begin();
        let app = app.clone();
        async move {
            let response = app.serve(req.map(Body::new)).await;
            if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                in_flight.0.upgraded();
            }
            Ok::<Response<Guarded>, Infallible>(response.map(|body| Guarded {
                body,
                _in_flight: in_flight,
            }))
        }
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    // Heads are timed here (hyper's own timer would also cut idle keep-alives at it).
    http.header_read_timeout(None).max_header_size(MAX_HEAD_BYTES);
    let mut conn = pin!(http.serve_connection(io, service).with_upgrades());
    let mut stopped = false;
    let mut room_closed = false;
    loop {
        let (wake, expired) = clock.check(&limits);
        if expired {
            // A head too slow, or idle too long: close without a word.
            return;
        }
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = tokio::time::sleep_until(wake) => {}
            _ = stopping.wait_for(|s| *s), if !stopped => {
                stopped = true;
                // hyper finishes a response in flight (or flushes one just finished),
                // then closes; a head still being read has reached nothing yet: closed now.
                conn.as_mut().graceful_shutdown();
                if clock.phase() == Phase::Head {
                    return;
                }
            }
            changed = make_room.changed(), if !room_closed => {
                room_closed = changed.is_err();
                if clock.phase() == Phase::Idle {
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// A connection's socket, watched: reads move its [`Clock`], and an error response hyper
/// writes on its own while a head is being read (so no request reached the application,
/// and no earlier response is still being written) is replaced by the same status with
/// the JSON error envelope.
struct Watched {
    io: TcpStream,
    clock: Arc<Clock>,
    /// The replacement response and how much of it is written; once set, everything
    /// hyper writes is swallowed (it is the rejected response, and then the close).
    replacement: Option<(Vec<u8>, usize)>,
    /// The connection's slot under the cap, and its count: they go with the socket, which
    /// an upgrade (a WebSocket) carries on after the HTTP connection's task has ended.
    _slot: OwnedSemaphorePermit,
    _open: OpenConnection,
}

impl Watched {
    fn replace_if_rejection(&mut self, first: &[u8]) {
        if self.replacement.is_none()
            && self.clock.only_rejections_possible()
            && let Some(bytes) = json_rejection(first)
        {
            self.replacement = Some((bytes, 0));
        }
    }

    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some((bytes, written)) = &mut self.replacement {
            while *written < bytes.len() {
                let n = ready!(Pin::new(&mut self.io).poll_write(cx, &bytes[*written..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                *written += n;
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Watched {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.clock.bytes_read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.replace_if_rejection(buf);
        if this.replacement.is_some() {
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
            this.replace_if_rejection(first);
        }
        if this.replacement.is_some() {
            return Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()));
        }
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_replacement(cx))?;
        ready!(Pin::new(&mut this.io).poll_flush(cx))?;
        this.clock.flushed();
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_replacement(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

/// The JSON version of an error response hyper wrote itself (`first` holds its start),
/// or `None` if `first` does not start one.
fn json_rejection(first: &[u8]) -> Option<Vec<u8>> {
    let rest = first
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| first.strip_prefix(b"HTTP/1.0 "))?;
    let status: u16 = std::str::from_utf8(rest.get(..3)?).ok()?.parse().ok()?;
    let status = StatusCode::from_u16(status).ok()?;
    if !(status.is_client_error() || status.is_server_error()) {
        return None;
    }
    let (code, message) = match status {
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => (
            "too_large",
            format!(
                "request head (request line and headers) over the limit of {MAX_HEAD_BYTES} bytes or 100 header fields"
            ),
        ),
        StatusCode::URI_TOO_LONG => ("too_large", "request URI too long".to_string()),
        StatusCode::HTTP_VERSION_NOT_SUPPORTED => ("invalid_input", "HTTP version not supported".to_string()),
        StatusCode::BAD_REQUEST => ("invalid_input", "malformed HTTP request".to_string()),
        other if other.is_server_error() => ("internal", "the request could not be read".to_string()),
        other => (
            "invalid_input",
            format!("request refused: {}", other.canonical_reason().unwrap_or("bad request")),
        ),
    };
    let body = serde_json::to_vec(&ErrorBody {
        error: ErrorDetail { code, message },
    })
    .ok()?;
    let mut response = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(&body);
    Some(response)
}

/// Says yes at most once per period (for warnings that could otherwise flood the log).
pub(crate) struct Every {
    period_ms: u64,
    next_ms: AtomicU64,
}

impl Every {
    pub(crate) const fn new(period: Duration) -> Self {
        Every {
            period_ms: period.as_millis() as u64,
            next_ms: AtomicU64::new(0),
        }
    }

    /// Whether the period has passed since the last yes (the first call says yes).
    pub(crate) fn due(&self) -> bool {
        let now = redkit::stats::now_ms();
        let next = self.next_ms.load(Ordering::Relaxed);
        now >= next
            && self
                .next_ms
                .compare_exchange(next, now + self.period_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hyper_rejections_become_json() {
        let r = json_rejection(b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n").unwrap();
        let text = String::from_utf8(r).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{text}"
        );
        let body: serde_json::Value = serde_json::from_str(text.split_once("\r\n\r\n").unwrap().1).unwrap();
        assert_eq!(body["error"]["code"], "too_large");
        assert!(body["error"]["message"].as_str().unwrap().contains("65536"));
        assert!(json_rejection(b"HTTP/1.1 200 OK\r\n").is_none());
        assert!(json_rejection(b"{\"HTTP/1.1 431").is_none());
    }

    #[test]
    fn every_says_yes_once_per_period() {
        let every = Every::new(Duration::from_secs(60));
        assert!(every.due());
        assert!(!every.due());
    }
}

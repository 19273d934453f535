//! `GET /v1/ws`: channels over one WebSocket — several subscriptions per connection, each
//! with its own position and `recovered` flag, and publishing.
//!
//! Frames are JSON text. The client sends `{"op": …}`:
//! - `{"op": "auth", "token": "…"}` (a channel token: read access to the channels it names)
//!   or `{"op": "auth", "api_key": "…"}` — first, when the server has API keys and the
//!   upgrade request carried neither an `Authorization` header (browsers cannot set one)
//!   nor `?token=`; within 10 s of connecting, or the connection is closed (1008).
//! - `{"op": "subscribe", "channel": "…", "since"?: {"epoch", "offset"}}` → a `subscribed`
//!   frame (`recovered` as for SSE), then `publication` frames. At most 64 per connection.
//! - `{"op": "unsubscribe", "channel": "…"}` → `unsubscribed`.
//! - `{"op": "publish", "channel": "…", "data": any, "idempotency_key"?, "id"?}` →
//!   `published` with the position (and the `id` given, to match answers to requests).
//! - `{"op": "ping"}` → `pong`.
//!
//! The server sends `{"type": "subscribed" | "publication" | "unsubscribed" | "published" |
//! "pong" | "error", …}`; an `error` names the op and channel it answers and the reason,
//! and the connection goes on.
//!
//! **Bounded.** Inbound messages at most 80 KiB. Outbound frames wait in a queue of at most
//! 1,024 frames and 1 MiB; a client that does not read fast enough to keep within it is
//! disconnected with close code 1008 and the reason (it may reconnect and resume from its
//! last positions — nothing is lost that the history holds), so it never slows other
//! subscribers or grows the server's memory. A frame the socket does not take within 10 s
//! ends the connection too. The server pings every 25 s; a connection silent for 60 s is
//! closed (1001). On shutdown every connection is closed with 1001.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use redkit::pubsub::{Event, Position};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::auth::{Access, Area, Caller, HasKeys, OptionalCaller};
use crate::error::{ApiError, Params};
use crate::state::AppState;

/// Subscriptions one connection may hold.
const MAX_SUBSCRIPTIONS: usize = 64;
/// Largest inbound message (a publish of 64 KiB of data, and its envelope).
const MAX_INBOUND_BYTES: usize = 80 * 1024;
/// Outbound frames a connection may have waiting, in number and in bytes.
const MAX_QUEUED_FRAMES: usize = 1024;
const MAX_QUEUED_BYTES: usize = 1024 * 1024;
/// Longest the socket may take to accept one frame.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
const PING_EVERY: Duration = Duration::from_secs(25);
const SILENCE_LIMIT: Duration = Duration::from_secs(60);
const AUTH_WITHIN: Duration = Duration::from_secs(10);

/// Upgrades to a WebSocket carrying channel subscriptions (see the module documentation
/// of the protocol).
#[utoipa::path(get, path = "/v1/ws", tag = "channels", params(WsParams),
    responses((status = 101, description = "Switching to the WebSocket protocol (JSON text frames)")))]
pub(crate) async fn ws(
    State(state): State<AppState>,
    OptionalCaller(caller): OptionalCaller,
    Params(p): Params<WsParams>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let caller = match p.token {
        Some(token) => Some(
            state
                .tokens()
                .verify(&token, redkit::stats::now_ms())
                .map(|channels| Caller::channel_reader(&channels))
                .map_err(|why| ApiError::new(axum::http::StatusCode::UNAUTHORIZED, "unauthorized", why))?,
        ),
        None => caller,
    };
    Ok(upgrade
        .max_message_size(MAX_INBOUND_BYTES)
        .max_frame_size(MAX_INBOUND_BYTES)
        .on_upgrade(move |socket| Connection::serve(socket, state, caller)))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct WsParams {
    /// A channel token (read access to the channels it names), instead of an API key.
    token: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
enum Op {
    Auth {
        api_key: Option<String>,
        token: Option<String>,
    },
    Subscribe {
        channel: String,
        since: Option<Position>,
    },
    Unsubscribe {
        channel: String,
    },
    Publish {
        channel: String,
        data: Value,
        idempotency_key: Option<String>,
        id: Option<Value>,
    },
    Ping,
}

/// The outbound queue, bounded in frames and bytes.
#[derive(Clone)]
struct Outbound {
    tx: mpsc::Sender<Message>,
    queued_bytes: Arc<AtomicUsize>,
    /// Set once: the reason to close with (the writer sends it ahead of the queue).
    close: Arc<watch::Sender<Option<CloseFrame>>>,
}

impl Outbound {
    /// Queues `frame`; false if the connection is closing (now, if the queue is full).
    fn push(&self, frame: Value) -> bool {
        if self.close.borrow().is_some() {
            return false;
        }
        let text = frame.to_string();
        let len = text.len();
        if self.queued_bytes.fetch_add(len, Ordering::Relaxed) + len > MAX_QUEUED_BYTES {
            self.slow_consumer("1 MiB");
            return false;
        }
        match self.tx.try_send(Message::Text(text.into())) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.slow_consumer(&format!("{MAX_QUEUED_FRAMES} frames"));
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    fn slow_consumer(&self, limit: &str) {
        let reason = format!("slow consumer: over {limit} of frames waiting; reconnect and resume from your positions");
        if self.close_with(close_code::POLICY, &reason) {
            metrics::counter!("redkit_ws_slow_consumers_total").increment(1);
        }
    }

    /// Asks the writer to close with `code` and `reason`; false if a close was asked already.
    fn close_with(&self, code: u16, reason: &str) -> bool {
        self.close.send_if_modified(|c| {
            if c.is_some() {
                return false;
            }
            *c = Some(CloseFrame {
                code,
                reason: Utf8Bytes::from(reason.to_string()),
            });
            true
        })
    }
}

/// Writes queued frames to the socket until it closes, a frame takes too long, or a close
/// is asked for (sent at once, ahead of whatever waits).
async fn write(
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Message>,
    queued_bytes: Arc<AtomicUsize>,
    mut close: watch::Receiver<Option<CloseFrame>>,
) {
    loop {
        tokio::select! {
            biased;
            frame = async { close.wait_for(Option::is_some).await.ok().and_then(|f| f.clone()) } => {
                let _ = tokio::time::timeout(Duration::from_secs(1), sink.send(Message::Close(frame))).await;
                return;
            }
            m = rx.recv() => {
                let Some(m) = m else { return };
                let len = if let Message::Text(t) = &m { t.len() } else { 0 };
                match tokio::time::timeout(SEND_TIMEOUT, sink.send(m)).await {
                    Ok(Ok(())) => { queued_bytes.fetch_sub(len, Ordering::Relaxed); }
                    _ => return,
                }
            }
        }
    }
}

/// Counts itself in a gauge while it lives.
struct Gauge(&'static str);

impl Gauge {
    fn new(name: &'static str) -> Self {
        metrics::gauge!(name).increment(1.0);
        Gauge(name)
    }
}

impl Drop for Gauge {
    fn drop(&mut self) {
        metrics::gauge!(self.0).decrement(1.0);
    }
}

/// A subscription's task, ended when dropped.
struct Following {
    task: JoinHandle<()>,
    _gauge: Gauge,
}

impl Drop for Following {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Connection {
    state: AppState,
    caller: Option<Caller>,
    out: Outbound,
    subscriptions: HashMap<String, Following>,
}

impl Connection {
    async fn serve(socket: WebSocket, state: AppState, caller: Option<Caller>) {
        let _gauge = Gauge::new("redkit_ws_connections");
        let (sink, mut stream) = socket.split();
        let (tx, rx) = mpsc::channel(MAX_QUEUED_FRAMES);
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let (close, close_rx) = watch::channel(None);
        let mut writer = tokio::spawn(write(sink, rx, queued_bytes.clone(), close_rx));
        let caller = caller.or_else(|| state.keys().is_empty().then(Caller::anyone));
        let mut conn = Connection {
            state: state.clone(),
            caller,
            out: Outbound {
                tx,
                queued_bytes,
                close: Arc::new(close),
            },
            subscriptions: HashMap::new(),
        };
        let connected = Instant::now();
        let mut last_heard = Instant::now();
        let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
        // A close was asked for: the writer sends it and ends, which ends this loop.
        let mut closing = false;
        loop {
            let auth_deadline = connected + AUTH_WITHIN;
            tokio::select! {
                m = stream.next() => {
                    let Some(Ok(m)) = m else { break };
                    last_heard = Instant::now();
                    match m {
                        Message::Text(t) => conn.handle(t.as_str()).await,
                        Message::Binary(_) => conn.error(None, None, "invalid_input", "frames are JSON text"),
                        Message::Close(_) => break,
                        Message::Ping(_) | Message::Pong(_) => {}
                    }
                }
                _ = ping.tick() => {
                    if last_heard.elapsed() >= SILENCE_LIMIT {
                        conn.out.close_with(close_code::AWAY, "nothing heard for 60 s");
                    } else if conn.out.tx.try_send(Message::Ping(Default::default())).is_err() {
                        conn.out.slow_consumer(&format!("{MAX_QUEUED_FRAMES} frames"));
                    }
                }
                _ = tokio::time::sleep_until(auth_deadline), if conn.caller.is_none() && !closing => {
                    closing = true;
                    conn.out.close_with(close_code::POLICY, "send {\"op\": \"auth\", \"api_key\": …} first, within 10 s");
                }
                _ = state.shutting_down(), if !closing => {
                    closing = true;
                    conn.out.close_with(close_code::AWAY, "the server is shutting down");
                }
                _ = &mut writer => return,
            }
        }
        drop(conn);
        let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    }

    fn error(&self, op: Option<&str>, channel: Option<&str>, code: &str, message: &str) {
        self.out.push(json!({
            "type": "error", "op": op, "channel": channel, "code": code, "message": message,
        }));
    }

    fn api_error(&self, op: &str, channel: Option<&str>, e: ApiError) {
        self.error(Some(op), channel, e.code, &e.message);
    }

    async fn handle(&mut self, text: &str) {
        let op: Op = match serde_json::from_str(text) {
            Ok(op) => op,
            Err(e) => {
                return self.error(
                    None,
                    None,
                    "invalid_input",
                    &format!("not an op ({{\"op\": \"subscribe\" | \"unsubscribe\" | \"publish\" | \"ping\" | \"auth\", …}}): {e}"),
                );
            }
        };
        if let Op::Auth { api_key, token } = &op {
            if self.caller.is_some() {
                return self.error(Some("auth"), None, "invalid_input", "already authenticated");
            }
            let caller = match (api_key, token) {
                (Some(key), None) => self.state.keys().caller(key).ok_or("unknown API key"),
                (None, Some(token)) => self
                    .state
                    .tokens()
                    .verify(token, redkit::stats::now_ms())
                    .map(|channels| Caller::channel_reader(&channels)),
                _ => return self.error(Some("auth"), None, "invalid_input", "give one of api_key and token"),
            };
            match caller {
                Ok(c) => self.caller = Some(c),
                Err(why) => {
                    self.out.close_with(close_code::POLICY, why);
                }
            }
            return;
        }
        let Some(caller) = &self.caller else {
            return self.error(
                None,
                None,
                "unauthorized",
                "send {\"op\": \"auth\", \"api_key\": …} first",
            );
        };
        match op {
            Op::Auth { .. } => {}
            Op::Ping => {
                self.out.push(json!({"type": "pong"}));
            }
            Op::Subscribe { channel, since } => {
                if let Err(e) = caller.require(Area::Channels, &channel, Access::Read) {
                    return self.api_error("subscribe", Some(&channel), e);
                }
                if self.subscriptions.contains_key(&channel) {
                    return self.error(Some("subscribe"), Some(&channel), "conflict", "already subscribed");
                }
                if self.subscriptions.len() >= MAX_SUBSCRIPTIONS {
                    return self.error(
                        Some("subscribe"),
                        Some(&channel),
                        "limit_exceeded",
                        &format!("at most {MAX_SUBSCRIPTIONS} subscriptions per connection"),
                    );
                }
                match self.state.channels().subscribe(&channel, since).await {
                    Ok(sub) => {
                        let task = tokio::spawn(follow(sub, self.out.clone()));
                        self.subscriptions.insert(
                            channel,
                            Following {
                                task,
                                _gauge: Gauge::new("redkit_ws_subscriptions"),
                            },
                        );
                    }
                    Err(e) => self.api_error("subscribe", Some(&channel), e.into()),
                }
            }
            Op::Unsubscribe { channel } => {
                if self.subscriptions.remove(&channel).is_some() {
                    self.out.push(json!({"type": "unsubscribed", "channel": channel}));
                } else {
                    self.error(Some("unsubscribe"), Some(&channel), "not_found", "not subscribed");
                }
            }
            Op::Publish {
                channel,
                data,
                idempotency_key,
                id,
            } => {
                if let Err(e) = caller.require(Area::Channels, &channel, Access::Write) {
                    return self.api_error("publish", Some(&channel), e);
                }
                match self
                    .state
                    .channels()
                    .publish(&channel, &data, idempotency_key.as_deref())
                    .await
                {
                    Ok(p) => {
                        self.out.push(json!({
                            "type": "published", "channel": channel, "id": id,
                            "epoch": p.epoch, "offset": p.offset,
                        }));
                    }
                    Err(e) => self.api_error("publish", Some(&channel), e.into()),
                }
            }
        }
    }
}

/// Forwards a subscription's events to the connection until either ends.
async fn follow(mut sub: redkit::pubsub::Subscription, out: Outbound) {
    let channel = sub.channel().to_string();
    while let Some(event) = sub.next().await {
        let frame = match event {
            Ok(Event::Subscribed { position, recovered }) => json!({
                "type": "subscribed", "channel": channel, "epoch": position.epoch,
                "offset": position.offset, "recovered": recovered,
            }),
            Ok(Event::Publication { epoch, publication }) => json!({
                "type": "publication", "channel": channel, "epoch": epoch,
                "offset": publication.offset, "data": publication.data,
            }),
            Err(e) => {
                let e = ApiError::from(e);
                json!({"type": "error", "op": "subscribe", "channel": channel, "code": e.code, "message": e.message})
            }
        };
        if !out.push(frame) {
            return;
        }
    }
}

//! `/v1/channels/…`: pub/sub with history and recovery over HTTP (WebSocket: see `ws`).
//!
//! - `POST /v1/channels/{ch}/publish` `{"data": any JSON, "idempotency_key"?}` answers the
//!   publication's `{offset, epoch}`; the same key within the dedupe window (2 min) answers
//!   the first publication's position, so a publish that timed out is safe to retry.
//! - `GET /v1/channels/{ch}/history` pages the history (oldest first after a position, or
//!   the newest with `reverse`); `limit=0` answers the position only.
//! - `GET /v1/channels/{ch}/events` follows a channel as Server-Sent Events: first a
//!   `subscribed` event `{"epoch", "offset", "recovered"}`, then each publication as a
//!   `message` whose data is the publication's JSON and whose id is `EPOCH:OFFSET`. A
//!   browser's `EventSource` resumes by itself (it sends the last id as `Last-Event-ID`);
//!   other clients send that header, or `?since_epoch=&since_offset=`. `recovered: false`
//!   says publications were missed that the history cannot give back: reload what you
//!   show. Continuity lost later (an outage boundary, Redis losing its data) is another
//!   `subscribed` event.
//! - `GET /v1/channels` lists the channels with subscribers on this server, or published
//!   to through it, with counts (those the caller may read).
//! - `POST /v1/channels/tokens` `{"channels": ["orders", "news.*"], "ttl_s": 3600}` issues a
//!   channel token for a browser (see `crate::tokens`): `?token=` on the event stream and
//!   the history, or the WebSocket's `auth` frame, reads those channels without an API key.
//!
//! Scopes: `channels:NAME:write` to publish, `read` for the rest; a token is issued only for
//! channels the issuing key may read.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::Stream;
use redkit::pubsub::{ChannelStats, Event, Position, Publication};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Access, Area, Caller, OptionalCaller};
use crate::error::{ApiError, ApiResult, Body, ErrorBody, Params, Segments};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(publish))
        .routes(routes!(history))
        .routes(routes!(events))
        .routes(routes!(list_channels))
        .routes(routes!(issue_token))
}

/// The caller: a channel token's bearer when `token` is given, otherwise the key's (401
/// when the server has keys and neither came).
async fn reader(state: &AppState, caller: Option<Caller>, token: Option<&str>) -> Result<Caller, ApiError> {
    if let Some(token) = token {
        let channels = state
            .tokens()
            .verify(token, redkit::stats::now_ms())
            .map_err(|why| ApiError::new(axum::http::StatusCode::UNAUTHORIZED, "unauthorized", why))?;
        return Ok(Caller::channel_reader(&channels));
    }
    caller.ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing Authorization: Bearer API key (or ?token= with a channel token)",
        )
    })
}

/// A channel token to ask for.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelTokenRequest {
    /// 1 to 32 channel names, or prefixes ending in `*`, each one the caller may read.
    #[schema(min_items = 1, max_items = 32)]
    pub channels: Vec<String>,
    /// How long it is good for, in seconds (1 to 86400; default 3600).
    #[schema(minimum = 1, maximum = 86400)]
    pub ttl_s: Option<u64>,
}

/// A channel token.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ChannelToken {
    /// Pass it as `?token=` on the event stream or history, or in the WebSocket's
    /// `{"op": "auth", "token": …}`.
    pub token: String,
    /// When it stops working, in ms since the Unix epoch.
    pub expires_at_ms: u64,
}

/// Issues a token that lets a browser read these channels without an API key.
#[utoipa::path(post, path = "/v1/channels/tokens", tag = "channels", request_body = ChannelTokenRequest,
    responses((status = 200, description = "The token", body = ChannelToken)))]
async fn issue_token(
    State(state): State<AppState>,
    caller: Caller,
    Body(req): Body<ChannelTokenRequest>,
) -> ApiResult<Json<ChannelToken>> {
    if req.channels.is_empty() || req.channels.len() > crate::tokens::MAX_CHANNELS {
        return Err(ApiError::invalid(
            "channels",
            format!("1 to {} channel names or prefixes", crate::tokens::MAX_CHANNELS),
        ));
    }
    for pattern in &req.channels {
        let name = pattern.strip_suffix('*').unwrap_or(pattern);
        if name.contains('*') || pattern.len() > 256 || pattern.chars().any(char::is_control) {
            return Err(ApiError::invalid(
                "channels",
                format!("{pattern:?}: a channel name, or a prefix ending in a single *"),
            ));
        }
        caller.require(Area::Channels, pattern, Access::Read)?;
    }
    let ttl_s = req.ttl_s.unwrap_or(3600);
    if !(1..=86_400).contains(&ttl_s) {
        return Err(ApiError::invalid("ttl_s", "1 to 86400 seconds"));
    }
    let expires_at_ms = redkit::stats::now_ms() + ttl_s * 1000;
    Ok(Json(ChannelToken {
        token: state.tokens().issue(&req.channels, expires_at_ms),
        expires_at_ms,
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct ChannelName {
    /// Channel name, 1–256 bytes without control characters.
    #[param(pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]+$", min_length = 1, max_length = 256)]
    ch: String,
}

/// A publication to make.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// Any JSON (at most 64 KiB as text).
    #[schema(value_type = serde_json::Value)]
    pub data: Value,
    /// 1–128 bytes: a publish with the same key within 2 minutes answers the first
    /// publication's position instead of publishing again.
    pub idempotency_key: Option<String>,
}

/// Publishes to channel `ch`: every subscriber on every server receives it, and it joins
/// the channel's history.
#[utoipa::path(post, path = "/v1/channels/{ch}/publish", tag = "channels", params(ChannelName),
    request_body = PublishRequest,
    responses((status = 200, description = "Published (or published before with this key)", body = Position)))]
async fn publish(
    State(state): State<AppState>,
    caller: Caller,
    Segments(ChannelName { ch }): Segments<ChannelName>,
    Body(req): Body<PublishRequest>,
) -> ApiResult<Json<Position>> {
    caller.require(Area::Channels, &ch, Access::Write)?;
    let position = state
        .channels()
        .publish(&ch, &req.data, req.idempotency_key.as_deref())
        .await?;
    Ok(Json(position))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct HistoryParams {
    /// Most publications to answer (0 to 1000; default 100; 0: the position only).
    limit: Option<usize>,
    /// With `since_epoch`: only publications after this offset.
    since_offset: Option<u64>,
    /// The epoch `since_offset` belongs to; another epoch than the stream's is 409.
    since_epoch: Option<String>,
    /// The newest first (default false: the oldest first).
    #[serde(default)]
    reverse: bool,
    /// A channel token, instead of an API key.
    token: Option<String>,
}

/// A page of a channel's history.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct HistoryPage {
    /// In the order asked for.
    pub publications: Vec<Publication>,
    /// The stream's last offset now.
    pub offset: u64,
    /// The stream's epoch.
    pub epoch: String,
    /// The oldest offset the history still holds (`offset + 1` when it holds none).
    pub oldest_offset: u64,
}

/// Reads channel `ch`'s history.
#[utoipa::path(get, path = "/v1/channels/{ch}/history", tag = "channels", params(ChannelName, HistoryParams),
    responses(
        (status = 200, description = "The page and the stream's position", body = HistoryPage),
        (status = 409, description = "since_epoch is not the stream's epoch: what came after it is unknown", body = ErrorBody)
    ))]
async fn history(
    State(state): State<AppState>,
    OptionalCaller(caller): OptionalCaller,
    Segments(ChannelName { ch }): Segments<ChannelName>,
    Params(p): Params<HistoryParams>,
) -> ApiResult<Json<HistoryPage>> {
    let caller = reader(&state, caller, p.token.as_deref()).await?;
    caller.require(Area::Channels, &ch, Access::Read)?;
    let since = position_from_query(p.since_epoch, p.since_offset)?;
    let page = state
        .channels()
        .history(&ch, p.limit.unwrap_or(100), since.as_ref(), p.reverse)
        .await?;
    Ok(Json(HistoryPage {
        publications: page.publications,
        offset: page.position.offset,
        epoch: page.position.epoch,
        oldest_offset: page.oldest,
    }))
}

/// `since_epoch` and `since_offset` together, or neither.
fn position_from_query(epoch: Option<String>, offset: Option<u64>) -> Result<Option<Position>, ApiError> {
    match (epoch, offset) {
        (Some(epoch), Some(offset)) => Ok(Some(Position { epoch, offset })),
        (None, None) => Ok(None),
        (None, Some(_)) => Err(ApiError::invalid("since_epoch", "required with since_offset")),
        (Some(_), None) => Err(ApiError::invalid("since_offset", "required with since_epoch")),
    }
}

/// A position as an event id: `EPOCH:OFFSET`.
pub(crate) fn event_id(position: &Position) -> String {
    format!("{}:{}", position.epoch, position.offset)
}

/// Parses an event id (`EPOCH:OFFSET`, split at the last colon), naming `field` if it is not one.
pub(crate) fn parse_event_id(field: &str, id: &str) -> Result<Position, ApiError> {
    let parsed = id
        .rsplit_once(':')
        .and_then(|(epoch, offset)| Some((epoch, offset.parse::<u64>().ok()?)));
    match parsed {
        Some((epoch, offset)) if epoch.len() <= 128 => Ok(Position {
            epoch: epoch.to_string(),
            offset,
        }),
        _ => Err(ApiError::invalid(
            field,
            "an event id EPOCH:OFFSET, as sent with a publication (epoch at most 128 bytes)",
        )),
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct EventsParams {
    /// With `since_offset`: resume after this position (`Last-Event-ID` wins over both).
    since_epoch: Option<String>,
    /// With `since_epoch`.
    since_offset: Option<u64>,
    /// A channel token, instead of an API key (an `EventSource` cannot send headers).
    token: Option<String>,
}

/// What the `subscribed` event carries.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Subscribed {
    /// The stream's epoch.
    pub epoch: String,
    /// Its offset at this point: the publications after it follow.
    pub offset: u64,
    /// `false`: publications since the position resumed from were missed and cannot be
    /// delivered (reload what you show).
    pub recovered: bool,
}

/// Follows channel `ch` as Server-Sent Events (`text/event-stream`): `subscribed`, then
/// each publication (`id: EPOCH:OFFSET`, data: its JSON); resumes after `Last-Event-ID`.
#[utoipa::path(get, path = "/v1/channels/{ch}/events", tag = "channels", params(ChannelName, EventsParams,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id (EPOCH:OFFSET)")),
    responses((status = 200, description = "An endless event stream (ends when the server shuts down)",
        content_type = "text/event-stream", body = String)))]
async fn events(
    State(state): State<AppState>,
    OptionalCaller(caller): OptionalCaller,
    Segments(ChannelName { ch }): Segments<ChannelName>,
    Params(p): Params<EventsParams>,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    let caller = reader(&state, caller, p.token.as_deref()).await?;
    caller.require(Area::Channels, &ch, Access::Read)?;
    let since = match headers.get("last-event-id") {
        Some(id) => Some(parse_event_id(
            "Last-Event-ID",
            id.to_str()
                .map_err(|_| ApiError::invalid("Last-Event-ID", "not text"))?,
        )?),
        None => position_from_query(p.since_epoch, p.since_offset)?,
    };
    let sub = state.channels().subscribe(&ch, since).await?;
    let stream = futures_util::stream::unfold((sub, state, true), |(mut sub, state, first)| async move {
        let event = tokio::select! {
            e = sub.next() => e?,
            _ = state.shutting_down() => return None,
        };
        let mut sse = sse_event(event);
        if first {
            // How long a browser waits before reconnecting (its default is about 3 s).
            sse = sse.retry(Duration::from_secs(1));
        }
        Some((Ok(sse), (sub, state, false)))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

fn sse_event(event: redkit::Result<Event>) -> SseEvent {
    match event {
        Ok(Event::Subscribed { position, recovered }) => SseEvent::default()
            .event("subscribed")
            .id(event_id(&position))
            .data(subscribed_json(&position, recovered)),
        Ok(Event::Publication { epoch, publication }) => SseEvent::default()
            .id(event_id(&Position {
                epoch,
                offset: publication.offset,
            }))
            .data(publication.data.to_string()),
        // The subscription goes on; the client hears why something was skipped.
        Err(e) => SseEvent::default()
            .event("error")
            .data(serde_json::json!({ "message": e.to_string() }).to_string()),
    }
}

pub(crate) fn subscribed_json(position: &Position, recovered: bool) -> String {
    serde_json::to_string(&Subscribed {
        epoch: position.epoch.clone(),
        offset: position.offset,
        recovered,
    })
    .expect("serializes")
}

/// The channels this server knows of.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct ChannelList {
    /// Channels with subscribers on this server, or published to through it (those the
    /// caller may read), busiest first.
    pub channels: Vec<ChannelStats>,
    /// Whether publications made through other servers reach this one's subscribers as
    /// they happen (false while its Redis subscription is down: they catch up from
    /// history once it is back).
    pub live: bool,
}

/// Lists channels with their subscribers on this server and publish counts.
#[utoipa::path(get, path = "/v1/channels", tag = "channels",
    responses((status = 200, description = "Channels and counts", body = ChannelList)))]
async fn list_channels(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<ChannelList>> {
    let mut channels: Vec<ChannelStats> = state
        .channels()
        .stats()
        .into_iter()
        .filter(|c| caller.may(Area::Channels, &c.channel, Access::Read))
        .collect();
    channels.sort_by(|a, b| {
        (b.subscribers, b.published_last_minute, &a.channel).cmp(&(a.subscribers, a.published_last_minute, &b.channel))
    });
    Ok(Json(ChannelList {
        channels,
        live: state.channels().live(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_round_trip_and_bad_ones_name_the_field() {
        let p = Position {
            epoch: "a:b".into(),
            offset: 7,
        };
        assert_eq!(parse_event_id("x", &event_id(&p)).unwrap(), p);
        let before = Position {
            epoch: String::new(),
            offset: 0,
        };
        assert_eq!(parse_event_id("x", ":0").unwrap(), before);
        for bad in ["", "7", "e:", "e:-1", "e:x"] {
            let e = parse_event_id("Last-Event-ID", bad).unwrap_err();
            assert!(e.message.contains("Last-Event-ID"), "{bad}");
        }
    }
}

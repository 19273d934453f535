//! # Channels: pub/sub with history and recovery, that never loses a gap silently
//!
//! A channel is a stream of publications. Each has an **offset** — strictly increasing in
//! the channel — inside an **epoch**, a string that changes whenever the stream's
//! continuity is lost (a new stream, Redis restarted without its data, the embedded store
//! standing in during an outage). [`Channels::publish`] answers the publication's
//! [`Position`]; with an idempotency key, publishing again within the dedupe window answers
//! the first position instead of publishing twice.
//!
//! [`Channels::subscribe`] with the last position a subscriber saw first yields every
//! publication it missed, in order, and says `recovered: true` — or says `recovered:
//! false` when the history cannot fill the gap (the epoch changed, or the history no
//! longer reaches back): never a partial set without saying so. Then it follows the
//! channel live. History is bounded by size and age ([`ChannelOptions`]; size 0 keeps
//! none: pure fan-out).
//!
//! **On Redis** the stream is a Redis stream per channel (trimmed by size and age, under
//! one hash tag per channel, so it runs on Cluster) and each publication is announced on
//! the instance's one backplane subscription: an instance fans it out to all its own
//! subscribers (not one Redis connection per subscriber). A subscriber that falls behind,
//! or an instance whose subscription broke, fills the gap from history.
//!
//! **When the stream changes.** A subscriber whose stream is replaced hears
//! `Subscribed { recovered: false }` with the new stream's position; a live subscriber
//! moved to a stream it never followed (one that began during an outage, or Redis's after
//! Redis lost its data) then gets that stream from its first publication if the history
//! still holds it. Resuming from a position of another epoch starts at the stream's top:
//! reload what you show, then follow.
//!
//! **Outages.** While Redis is away publications keep flowing to this instance's
//! subscribers from the embedded store, under an epoch of its own; they are journaled and
//! appended to Redis's stream when Redis returns, so other instances' subscribers receive
//! them then (late, in order). This instance's subscribers move back to Redis's stream
//! with `recovered: false`. Publications are not carried between instances while Redis
//! is away. A publish that timed out may have reached Redis: retry it with the same
//! idempotency key and it is one publication.
//!
//! ```no_run
//! # async fn demo(redkit: redkit::Redkit) -> redkit::Result<()> {
//! use redkit::pubsub::{ChannelOptions, Event};
//! let channels = redkit.channels(ChannelOptions::default())?;
//! let mut sub = channels.subscribe("orders", None).await?;
//! channels.publish("orders", &serde_json::json!({"id": 7}), Some("order-7")).await?;
//! while let Some(event) = sub.next().await {
//!     match event? {
//!         Event::Subscribed { recovered, .. } => assert!(recovered),
//!         Event::Publication { publication, .. } => { println!("{}", publication.data); break }
//!     }
//! }
//! # Ok(()) }
//! ```

mod backend;
mod embedded;
mod fanout;
mod redis;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use backend::{ChannelBackend, History, Page, Position, Publication, Published};
pub use fanout::ChannelStats;
pub use redis::CHANNEL;

use crate::core::journal::Entry;
use crate::core::route::{BoxFuture, Closed, FallbackPolicy, Recovery, Route, Routed};
use crate::error::{Error, Result};
use fanout::{Fanout, Signal};

/// How channels keep history, and their limits.
#[derive(Debug, Clone)]
pub struct ChannelOptions {
    history: History,
    prefixes: Vec<(String, History)>,
    max_data_bytes: usize,
    dedupe: Duration,
    buffer: usize,
}

impl Default for ChannelOptions {
    fn default() -> Self {
        ChannelOptions {
            history: History {
                size: 100,
                ttl: Duration::from_secs(600),
            },
            prefixes: Vec::new(),
            max_data_bytes: 64 * 1024,
            dedupe: Duration::from_secs(120),
            buffer: 1024,
        }
    }
}

/// Most publications a channel may keep.
pub const MAX_HISTORY: u64 = 100_000;

fn check_history(h: History) -> Result<History> {
    if h.size > MAX_HISTORY {
        return Err(Error::invalid("history_size", format!("at most {MAX_HISTORY}")));
    }
    if h.ttl > Duration::from_secs(366 * 86_400) {
        return Err(Error::invalid("history_ttl", "at most 366 days"));
    }
    Ok(h)
}

impl ChannelOptions {
    /// History of every channel without a matching prefix: `size` publications (0: none)
    /// for at most `ttl` (zero: no age limit). Default 100 for 10 minutes.
    pub fn history(mut self, size: u64, ttl: Duration) -> Self {
        self.history = History { size, ttl };
        self
    }

    /// History of channels whose name starts with `prefix` (the longest matching prefix
    /// wins).
    pub fn prefix(mut self, prefix: &str, size: u64, ttl: Duration) -> Self {
        self.prefixes.push((prefix.to_string(), History { size, ttl }));
        self
    }

    /// Largest publication, in bytes of JSON (default 64 KiB).
    pub fn max_data_bytes(mut self, n: usize) -> Self {
        self.max_data_bytes = n;
        self
    }

    /// How long an idempotency key answers its first publication (default 2 minutes).
    pub fn dedupe_window(mut self, d: Duration) -> Self {
        self.dedupe = d;
        self
    }

    /// Publications a subscriber may fall behind by before it fills the gap from history
    /// (default 1024).
    pub fn subscriber_buffer(mut self, n: usize) -> Self {
        self.buffer = n;
        self
    }

    fn history_of(&self, channel: &str) -> History {
        self.prefixes
            .iter()
            .filter(|(p, _)| channel.starts_with(p.as_str()))
            .max_by_key(|(p, _)| p.len())
            .map_or(self.history, |(_, h)| *h)
    }

    /// Checks every limit; [`Redkit::channels`](crate::Redkit::channels) refuses options
    /// that fail it, naming the field.
    pub fn validate(&self) -> Result<()> {
        check_history(self.history)?;
        for (p, h) in &self.prefixes {
            check_name(p).map_err(|_| Error::invalid("prefix", format!("{p:?} is not a channel name prefix")))?;
            check_history(*h)?;
        }
        if !(1..=16 << 20).contains(&self.max_data_bytes) {
            return Err(Error::invalid("max_data_bytes", "must be 1 byte to 16 MiB"));
        }
        if self.dedupe.is_zero() || self.dedupe > Duration::from_secs(86_400) {
            return Err(Error::invalid("dedupe_window", "must be > 0 and at most 1 day"));
        }
        if !(1..=1 << 20).contains(&self.buffer) {
            return Err(Error::invalid("subscriber_buffer", "must be 1 to 1048576"));
        }
        Ok(())
    }
}

fn check_name(channel: &str) -> Result<()> {
    if channel.is_empty() || channel.len() > 256 || channel.chars().any(char::is_control) {
        return Err(Error::invalid("channel", "1 to 256 bytes without control characters"));
    }
    Ok(())
}

/// What a subscription yields.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// First, and again whenever continuity is lost: where the stream is, and whether
    /// every publication since the given (or last delivered) position was delivered.
    Subscribed {
        /// The stream's position at this point (publications after it follow).
        position: Position,
        /// `false`: publications were missed and cannot be delivered.
        recovered: bool,
    },
    /// One publication.
    Publication {
        /// Its epoch.
        epoch: String,
        /// The publication.
        publication: Publication,
    },
}

/// A publish made while Redis was away, as the journal keeps it.
#[derive(Serialize, Deserialize)]
struct OutagePublish {
    channel: String,
    data: String,
    key: Option<String>,
    history_size: u64,
    history_ttl_ms: u64,
    dedupe_ms: u64,
}

/// Pub/sub of one `Redkit`. Cheap to clone.
#[derive(Clone)]
pub struct Channels {
    inner: Arc<Inner>,
}

struct Inner {
    routed: Routed<dyn ChannelBackend>,
    fanout: Arc<Fanout>,
    opts: ChannelOptions,
}

/// What every `Channels` of one `Redkit` shares.
pub(crate) struct ChannelsHub {
    routed: Routed<dyn ChannelBackend>,
    fanout: Arc<Fanout>,
}

struct ChannelRecovery {
    redis: Arc<redis::RedisChannels>,
    embedded: Arc<embedded::EmbeddedChannels>,
    fanout: Arc<Fanout>,
}

#[async_trait::async_trait]
impl Recovery for ChannelRecovery {
    fn capability(&self) -> &'static str {
        "channel"
    }

    async fn replay(&self, entries: &[Entry]) -> Result<()> {
        // Appended to Redis's stream in the order they were made here; Redis announces
        // each, so every instance's subscribers receive them (late, in Redis's epoch).
        for e in entries {
            let p: OutagePublish = serde_json::from_slice(&e.op)?;
            let history = History {
                size: p.history_size,
                ttl: Duration::from_millis(p.history_ttl_ms),
            };
            self.redis
                .publish(
                    &p.channel,
                    &p.data,
                    p.key.as_deref(),
                    history,
                    Duration::from_millis(p.dedupe_ms),
                )
                .await?;
        }
        Ok(())
    }

    fn seal(&self) -> BoxFuture<'static, Result<()>> {
        self.embedded.seal()
    }

    async fn after_close(&self, _after: Closed) -> Result<()> {
        // Subscribers that followed the outage's streams (reading them as late as the
        // recovery's last moments) move back to Redis's, told what they could not get.
        let forgotten = self.embedded.forget_outage().await;
        self.fanout.resync_all();
        forgotten
    }
}

impl ChannelsHub {
    pub(crate) fn new(route: &Arc<Route>) -> Arc<Self> {
        let fanout = Fanout::new(route.redis().is_none());
        let provider: std::sync::Weak<dyn crate::core::route::StatsProvider> = Arc::downgrade(&fanout) as _;
        route.register_stats(provider);
        let embedded = Arc::new(embedded::EmbeddedChannels::new(
            route.embedded().clone(),
            fanout.clone(),
        ));
        let mut redis = None;
        if let (Some(core), Some(backplane)) = (route.redis(), route.backplane()) {
            let r = Arc::new(redis::RedisChannels::new(core.clone(), backplane.instance().clone()));
            route.register_recovery(Arc::new(ChannelRecovery {
                redis: r.clone(),
                embedded: embedded.clone(),
                fanout: fanout.clone(),
            }));
            let listener: std::sync::Weak<dyn crate::core::backplane::Listener> = Arc::downgrade(&fanout) as _;
            let backplane = backplane.clone();
            route.spawn(async move { backplane.join(listener).await });
            redis = Some(r as Arc<dyn ChannelBackend>);
        }
        Arc::new(ChannelsHub {
            routed: route.routed("channel", FallbackPolicy::Serve, redis, embedded),
            fanout,
        })
    }
}

impl Channels {
    pub(crate) fn new(hub: &ChannelsHub, opts: ChannelOptions) -> Result<Self> {
        opts.validate()?;
        Ok(Channels {
            inner: Arc::new(Inner {
                routed: hub.routed.clone(),
                fanout: hub.fanout.clone(),
                opts,
            }),
        })
    }

    /// Publishes `data` to `channel`; with `idempotency_key` (1–128 bytes), a second publish
    /// with that key within the dedupe window answers the first one's position.
    pub async fn publish(&self, channel: &str, data: &Value, idempotency_key: Option<&str>) -> Result<Position> {
        check_name(channel)?;
        if let Some(k) = idempotency_key
            && (k.is_empty() || k.len() > 128)
        {
            return Err(Error::invalid("idempotency_key", "1 to 128 bytes"));
        }
        let text = data.to_string();
        if text.len() > self.inner.opts.max_data_bytes {
            return Err(Error::TooLarge {
                field: "data".into(),
                size: text.len(),
                limit: self.inner.opts.max_data_bytes,
            });
        }
        let history = self.inner.opts.history_of(channel);
        let dedupe = self.inner.opts.dedupe;
        let op = || {
            serde_json::to_vec(&OutagePublish {
                channel: channel.to_string(),
                data: text.clone(),
                key: idempotency_key.map(str::to_string),
                history_size: history.size,
                history_ttl_ms: history.ttl.as_millis() as u64,
                dedupe_ms: dedupe.as_millis() as u64,
            })
            .expect("publications serialize")
        };
        let published = self
            .inner
            .routed
            .write(op, |b| b.publish(channel, &text, idempotency_key, history, dedupe))
            .await?;
        self.inner.fanout.count_publish(channel);
        Ok(published.position)
    }

    /// Up to `limit` (at most 1000) publications: after `since` (oldest first), or the
    /// newest ones with `reverse`. A `since` in another epoch than the stream's is
    /// [`Error::Conflict`] (the history cannot say what came after it).
    pub async fn history(&self, channel: &str, limit: usize, since: Option<&Position>, reverse: bool) -> Result<Page> {
        check_name(channel)?;
        if limit > 1000 {
            return Err(Error::invalid("limit", "at most 1000"));
        }
        let after = since.map_or(0, |p| p.offset);
        let page = self
            .inner
            .routed
            .read(|b| b.history(channel, after, limit, reverse))
            .await?;
        if let Some(s) = since
            && s.epoch != page.position.epoch
        {
            return Err(Error::Conflict(format!(
                "position of epoch {:?}, the stream is in epoch {:?}",
                s.epoch, page.position.epoch
            )));
        }
        Ok(page)
    }

    /// Where `channel` stands now.
    pub async fn position(&self, channel: &str) -> Result<Position> {
        Ok(self.history(channel, 0, None, false).await?.position)
    }

    /// Follows `channel`: first [`Event::Subscribed`] (with what the history could fill
    /// since `since`, and whether it filled the whole gap), then publications live.
    pub async fn subscribe(&self, channel: &str, since: Option<Position>) -> Result<Subscription> {
        check_name(channel)?;
        // Listen first, so nothing published while the history is read is missed.
        let rx = self.inner.fanout.listen(channel, self.inner.opts.buffer);
        let mut sub = Subscription {
            channels: self.clone(),
            channel: channel.to_string(),
            rx,
            at: None,
            delivered: None,
            queued: VecDeque::new(),
            catching_up_to: None,
            followed: VecDeque::new(),
            resync_pending: false,
            backoff: RETRY_MIN,
        };
        sub.catch_up(since, true).await?;
        Ok(sub)
    }

    /// Whether publications made through other instances reach this one's subscribers as
    /// they happen (the backplane subscription is live, or there is no Redis). When not,
    /// subscribers fill what they missed from history once it is.
    pub fn live(&self) -> bool {
        self.inner.fanout.is_live()
    }

    /// Channels with subscribers on this instance, or published to through it, with counts.
    pub fn stats(&self) -> Vec<ChannelStats> {
        self.inner.fanout.stats()
    }
}

/// One subscriber's view of a channel. Dropping it unsubscribes.
pub struct Subscription {
    channels: Channels,
    channel: String,
    rx: tokio::sync::broadcast::Receiver<Signal>,
    /// The last position queued for delivery.
    at: Option<Position>,
    /// The last position delivered.
    delivered: Option<Position>,
    queued: VecDeque<Event>,
    /// A gap is being filled from history up to this offset.
    catching_up_to: Option<u64>,
    /// The last few epochs this subscriber followed.
    followed: VecDeque<String>,
    /// Publications may have been missed: check the history before reading on.
    resync_pending: bool,
    /// Wait before retrying a history read that failed for want of a store.
    backoff: Duration,
}

/// Bounds of the wait between retries of a failed history read.
const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// Publications fetched per history read while catching up.
const CATCH_UP_PAGE: usize = 500;

impl Subscription {
    /// The channel.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The position of the last event returned: resuming from it misses nothing after it.
    pub fn position(&self) -> Option<&Position> {
        self.delivered.as_ref()
    }

    /// The next event; `None` only if the instance shuts down. A history read that fails
    /// because no store answers is retried (with backoff) rather than returned; an error
    /// is returned only for what a retry cannot fix, and the subscription goes on.
    pub async fn next(&mut self) -> Option<Result<Event>> {
        loop {
            if let Some(e) = self.queued.pop_front() {
                self.delivered = Some(match &e {
                    Event::Subscribed { position, .. } => position.clone(),
                    Event::Publication { epoch, publication } => Position {
                        epoch: epoch.clone(),
                        offset: publication.offset,
                    },
                });
                return Some(Ok(e));
            }
            if self.resync_pending {
                let from = self.at.clone();
                match self.catch_up(from, false).await {
                    Ok(()) => {
                        // What the catch-up queued goes out before waiting for more.
                        self.resync_pending = false;
                        continue;
                    }
                    Err(e) => match self.after_failure(e).await {
                        Some(e) => return Some(Err(e)),
                        None => continue,
                    },
                }
            }
            if let Some(until) = self.catching_up_to {
                if let Err(e) = self.fill_page(until).await
                    && let Some(e) = self.after_failure(e).await
                {
                    return Some(Err(e));
                }
                continue;
            }
            self.backoff = RETRY_MIN;
            match self.rx.recv().await {
                Ok(Signal::Publication(p)) => {
                    let Some(at) = &self.at else { continue };
                    if p.epoch == at.epoch && p.publication.offset <= at.offset {
                        continue; // already delivered by the catch-up
                    }
                    let next_here = p.epoch == at.epoch && p.publication.offset == at.offset + 1;
                    let new_stream =
                        p.epoch != at.epoch && p.publication.offset == 1 && !self.followed.contains(&p.epoch);
                    if next_here || new_stream {
                        if new_stream && !at.epoch.is_empty() {
                            // A new stream began (an outage, Redis lost its data): whatever
                            // the old one had after `at` cannot be delivered.
                            self.queued.push_back(Event::Subscribed {
                                position: Position {
                                    epoch: p.epoch.clone(),
                                    offset: 0,
                                },
                                recovered: false,
                            });
                        }
                        self.set_at(Position {
                            epoch: p.epoch.clone(),
                            offset: p.publication.offset,
                        });
                        self.queued.push_back(Event::Publication {
                            epoch: p.epoch.clone(),
                            publication: p.publication.clone(),
                        });
                        continue;
                    }
                    // A gap, or a new epoch: fill from history, or say what was lost.
                    tracing::debug!(channel = self.channel, at = ?self.at, epoch = p.epoch, offset = p.publication.offset, "subscriber sees a gap");
                    self.resync_pending = true;
                }
                Ok(Signal::Resync) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    tracing::debug!(channel = self.channel, at = ?self.at, "subscriber told to resync");
                    self.resync_pending = true;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    fn set_at(&mut self, at: Position) {
        if !at.epoch.is_empty() && !self.followed.contains(&at.epoch) {
            if self.followed.len() == 4 {
                self.followed.pop_front();
            }
            self.followed.push_back(at.epoch.clone());
        }
        self.at = Some(at);
    }

    /// A history read failed: a store being unavailable is waited out (the breaker soon
    /// routes reads to the fallback, which answers), anything else is the caller's.
    async fn after_failure(&mut self, e: Error) -> Option<Error> {
        if e.kind() != crate::error::ErrorKind::Unavailable {
            self.resync_pending = false;
            self.catching_up_to = None;
            return Some(e);
        }
        tracing::debug!(channel = self.channel, error = %e, "history read failed; retrying");
        tokio::time::sleep(crate::core::random::jittered(self.backoff)).await;
        self.backoff = (self.backoff * 2).min(RETRY_MAX);
        None
    }

    /// Queues what the history holds after `since`, and an [`Event::Subscribed`] saying
    /// where the stream is and whether that is everything since `since` — always when
    /// `announce`, otherwise only when something was lost.
    async fn catch_up(&mut self, since: Option<Position>, announce: bool) -> Result<()> {
        let routed = &self.channels.inner.routed;
        let channel = self.channel.as_str();
        let first = routed.read(|b| b.history(channel, 0, 0, false)).await?;
        tracing::debug!(channel, ?since, stream = ?first.position, oldest = first.oldest, "subscriber checks the history");
        let Some(since) = since else {
            self.queued.push_back(Event::Subscribed {
                position: first.position.clone(),
                recovered: true,
            });
            self.set_at(first.position);
            return Ok(());
        };
        // A position in no epoch is "before the stream existed": everything is after it.
        let since = if since.epoch.is_empty() && since.offset == 0 {
            Position {
                epoch: first.position.epoch.clone(),
                offset: 0,
            }
        } else {
            since
        };
        let continuous = since.epoch == first.position.epoch
            && since.offset <= first.position.offset
            && (since.offset == first.position.offset || first.oldest <= since.offset + 1);
        if !continuous {
            // A live subscriber moved to a stream it never followed (the outage's, or
            // Redis's after it lost its data) gets that stream from its start if the history
            // still holds it; otherwise, and on a resume, the stream's top.
            let fresh = !announce
                && first.position.offset > 0
                && first.oldest <= 1
                && !self.followed.contains(&first.position.epoch);
            let position = if fresh {
                self.catching_up_to = Some(first.position.offset);
                Position {
                    epoch: first.position.epoch.clone(),
                    offset: 0,
                }
            } else {
                first.position
            };
            self.queued.push_back(Event::Subscribed {
                position: position.clone(),
                recovered: false,
            });
            self.set_at(position);
            return Ok(());
        }
        if announce {
            self.queued.push_back(Event::Subscribed {
                position: since.clone(),
                recovered: true,
            });
        }
        // Read page by page as the subscriber takes them, so a long gap never sits in memory.
        self.catching_up_to = (since.offset < first.position.offset).then_some(first.position.offset);
        self.set_at(since);
        Ok(())
    }

    /// Queues the next page of the gap being filled.
    async fn fill_page(&mut self, until: u64) -> Result<()> {
        let at = self.at.clone().expect("a catch-up starts at a position");
        let channel = self.channel.as_str();
        let page = self
            .channels
            .inner
            .routed
            .read(|b| b.history(channel, at.offset, CATCH_UP_PAGE, false))
            .await?;
        if page.position.epoch != at.epoch || page.publications.first().is_none_or(|p| p.offset != at.offset + 1) {
            // Trimmed or reset meanwhile: say so at this point.
            self.queued.push_back(Event::Subscribed {
                position: page.position.clone(),
                recovered: false,
            });
            self.set_at(page.position);
            self.catching_up_to = None;
            return Ok(());
        }
        let last = page.publications.last().map_or(at.offset, |p| p.offset);
        for publication in page.publications {
            self.queued.push_back(Event::Publication {
                epoch: at.epoch.clone(),
                publication,
            });
        }
        self.set_at(Position {
            epoch: at.epoch,
            offset: last,
        });
        if last >= until {
            self.catching_up_to = None;
        }
        Ok(())
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.channels.inner.fanout.left(&self.channel);
    }
}

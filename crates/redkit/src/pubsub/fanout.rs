//! One instance's fan-out: every subscriber of a channel on this instance listens on one
//! broadcast queue, fed by the backplane (publications through Redis, from any instance)
//! or by the embedded store (publications it committed). A queue exists only while the
//! channel has subscribers here; a subscriber that falls behind by more than its buffer
//! is told so (`Lagged`) and fills the gap from history.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::backend::Publication;
use crate::core::backplane::Listener;

/// A publication as it reaches subscribers.
#[derive(Debug)]
pub(crate) struct Live {
    pub epoch: String,
    pub publication: Publication,
}

/// What a subscriber's queue carries.
#[derive(Debug, Clone)]
pub(crate) enum Signal {
    /// A publication, in the order the store assigned offsets on this path.
    Publication(Arc<Live>),
    /// Publications may have been missed (the backplane subscription was re-established):
    /// check the history.
    Resync,
}

/// Channels counted per name at most; beyond, only the totals.
const MAX_COUNTED_CHANNELS: usize = 10_000;

/// A channel's activity on this instance.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelStats {
    /// The channel.
    pub channel: String,
    /// Subscribers on this instance now.
    pub subscribers: usize,
    /// Publications made through this instance since it started.
    pub published: u64,
    /// Publications made through this instance in the last whole minute.
    pub published_last_minute: u64,
}

#[derive(Default)]
struct Counts {
    queue: Option<broadcast::Sender<Signal>>,
    subscribers: usize,
    published: u64,
    /// The minute (since the epoch) `this_minute` counts, and the one before it.
    minute: u64,
    this_minute: u64,
    previous_minute: u64,
}

fn minute_now() -> u64 {
    crate::stats::now_ms() / 60_000
}

impl Counts {
    fn count(&mut self) {
        let now = minute_now();
        if now != self.minute {
            self.previous_minute = if now == self.minute + 1 { self.this_minute } else { 0 };
            self.this_minute = 0;
            self.minute = now;
        }
        self.published += 1;
        self.this_minute += 1;
    }

    fn last_minute(&self) -> u64 {
        match minute_now() {
            now if now == self.minute => self.previous_minute,
            now if now == self.minute + 1 => self.this_minute,
            _ => 0,
        }
    }
}

/// See the [module docs](self).
#[derive(Default)]
pub(crate) struct Fanout {
    channels: Mutex<HashMap<String, Counts>>,
    /// Publications through Redis reach this instance at once (the backplane carries
    /// them), or there is no Redis.
    live: AtomicBool,
}

/// The announcement's header (see `publish.lua`).
#[derive(Deserialize)]
struct Header {
    c: String,
    e: String,
    o: u64,
}

impl Fanout {
    pub fn new(live: bool) -> Arc<Self> {
        Arc::new(Fanout {
            channels: Mutex::default(),
            live: AtomicBool::new(live),
        })
    }

    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    /// A queue of `channel`'s signals from now on, holding at most `buffer` unread ones.
    pub fn listen(&self, channel: &str, buffer: usize) -> broadcast::Receiver<Signal> {
        let mut channels = self.channels.lock().expect("fanout lock");
        let counts = channels.entry(channel.to_string()).or_default();
        counts.subscribers += 1;
        counts
            .queue
            .get_or_insert_with(|| broadcast::channel(buffer).0)
            .subscribe()
    }

    /// A subscriber of `channel` left.
    pub fn left(&self, channel: &str) {
        let mut channels = self.channels.lock().expect("fanout lock");
        if let Some(counts) = channels.get_mut(channel) {
            counts.subscribers = counts.subscribers.saturating_sub(1);
            if counts.subscribers == 0 {
                counts.queue = None;
                if counts.published == 0 {
                    channels.remove(channel);
                }
            }
        }
    }

    /// Counts a publication made through this instance.
    pub fn count_publish(&self, channel: &str) {
        metrics::counter!("redkit_channel_publications_total").increment(1);
        let mut channels = self.channels.lock().expect("fanout lock");
        if let Some(counts) = channels.get_mut(channel) {
            counts.count();
        } else if channels.len() < MAX_COUNTED_CHANNELS {
            channels.entry(channel.to_string()).or_default().count();
        }
    }

    /// Hands a publication to `channel`'s subscribers here, if it has any.
    pub fn deliver(&self, channel: &str, live: Live) {
        let channels = self.channels.lock().expect("fanout lock");
        if let Some(queue) = channels.get(channel).and_then(|c| c.queue.as_ref()) {
            // No receiver left is fine: the last one is leaving.
            let _ = queue.send(Signal::Publication(Arc::new(live)));
        }
    }

    /// Tells every subscriber here to check the history: it may have missed publications,
    /// or the stream it follows may have been replaced.
    pub fn resync_all(&self) {
        let channels = self.channels.lock().expect("fanout lock");
        for queue in channels.values().filter_map(|c| c.queue.as_ref()) {
            let _ = queue.send(Signal::Resync);
        }
    }

    /// Channels with subscribers here or published to through here, busiest first.
    pub fn stats(&self) -> Vec<ChannelStats> {
        let channels = self.channels.lock().expect("fanout lock");
        let mut stats: Vec<ChannelStats> = channels
            .iter()
            .map(|(name, c)| ChannelStats {
                channel: name.clone(),
                subscribers: c.subscribers,
                published: c.published,
                published_last_minute: c.last_minute(),
            })
            .collect();
        stats.sort_by(|a, b| (b.subscribers, b.published, &a.channel).cmp(&(a.subscribers, a.published, &b.channel)));
        stats
    }
}

impl Listener for Fanout {
    fn channel(&self) -> &'static str {
        super::redis::CHANNEL
    }

    fn deliver(&self, payload: &[u8]) {
        let Some(nl) = payload.iter().position(|&b| b == b'\n') else {
            tracing::warn!("ignoring a channel announcement without a header");
            return;
        };
        let header: Header = match serde_json::from_slice(&payload[..nl]) {
            Ok(h) => h,
            Err(error) => return tracing::warn!(%error, "ignoring a malformed channel announcement"),
        };
        let queue = {
            let channels = self.channels.lock().expect("fanout lock");
            match channels.get(&header.c).and_then(|c| c.queue.clone()) {
                Some(q) => q,
                None => return, // nobody here listens: not even parsed
            }
        };
        match serde_json::from_slice(&payload[nl + 1..]) {
            Ok(data) => {
                let live = Live {
                    epoch: header.e,
                    publication: Publication { offset: header.o, data },
                };
                let _ = queue.send(Signal::Publication(Arc::new(live)));
            }
            Err(error) => {
                tracing::warn!(%error, channel = header.c, "ignoring a channel announcement with malformed data")
            }
        }
    }

    fn lost(&self) {
        self.live.store(false, Ordering::Release);
    }

    fn resync(&self) {
        self.live.store(true, Ordering::Release);
        self.resync_all();
    }
}

impl crate::core::route::StatsProvider for Fanout {
    fn capability(&self) -> &'static str {
        "channel"
    }

    fn snapshot(&self) -> serde_json::Value {
        let channels = self.channels.lock().expect("fanout lock");
        serde_json::json!({
            "subscribers": channels.values().map(|c| c.subscribers).sum::<usize>(),
            "channels_listened": channels.values().filter(|c| c.queue.is_some()).count(),
            "backplane_live": self.is_live(),
        })
    }
}

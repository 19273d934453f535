//! The backplane: one pub/sub subscription per instance that tells every capability what
//! other instances changed in Redis.
//!
//! A capability joins with a [`Listener`] for its channel; every message on that channel
//! is handed to it (messages carry the sending instance's id, [`Backplane::instance`], so
//! a listener can skip its own). When the subscription is established — the first time
//! and after every break — each listener is told to [`resync`](Listener::resync): messages
//! may have been missed, so whatever it keeps on the strength of them (L1 entries, a
//! session mirror) can no longer be trusted. When it breaks, listeners hear
//! [`lost`](Listener::lost).
//!
//! Pub/sub rather than RESP3 client-side tracking: it works the same on standalone,
//! Sentinel and Cluster (a cluster PUBLISH reaches every node), and one connection serves
//! every channel of the instance.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::PubSubSink;
use tokio::sync::Notify;

use super::redis::RedisCore;

/// What a capability does with the backplane's messages. [`Listener::resync`] is also
/// what tells a listener that it is live: it is called when the subscription is
/// established with its channel, including when it joins a live one.
pub trait Listener: Send + Sync {
    /// The channel it listens on.
    fn channel(&self) -> &'static str;
    /// One message on that channel (from any instance, this one included).
    fn deliver(&self, payload: &[u8]);
    /// The subscription was (re)established: messages may have been missed since the
    /// last time it was live.
    fn resync(&self);
    /// The subscription broke.
    fn lost(&self) {}
}

/// One instance's subscription. See the [module docs](self).
pub struct Backplane {
    instance: Arc<str>,
    listeners: Mutex<Vec<Weak<dyn Listener>>>,
    subscribed: AtomicBool,
    sink: tokio::sync::Mutex<Option<PubSubSink>>,
    joined: Notify,
}

impl Backplane {
    pub(crate) fn start(core: Arc<RedisCore>, runtime: &tokio::runtime::Handle) -> Arc<Self> {
        let backplane = Arc::new(Backplane {
            instance: Arc::from(super::random::token()),
            listeners: Mutex::default(),
            subscribed: AtomicBool::new(false),
            sink: tokio::sync::Mutex::new(None),
            joined: Notify::new(),
        });
        runtime.spawn(subscribe(Arc::downgrade(&backplane), core));
        backplane
    }

    /// This instance's random id, carried by the messages it sends.
    pub fn instance(&self) -> &Arc<str> {
        &self.instance
    }

    /// Whether the subscription is live.
    pub fn is_subscribed(&self) -> bool {
        self.subscribed.load(Ordering::Acquire)
    }

    /// Adds a listener; its channel is subscribed at once if the subscription is live.
    pub async fn join(&self, listener: Weak<dyn Listener>) {
        let Some(l) = listener.upgrade() else { return };
        let channel = l.channel();
        // Joined under the sink lock, so exactly one of this call and the subscription
        // loop resyncs the listener: a second resync would clear, say, an L1 filled
        // since the first one.
        let mut sink = self.sink.lock().await;
        let new_channel = {
            let mut listeners = self.listeners.lock().expect("backplane lock");
            listeners.retain(|l| l.strong_count() > 0);
            let new = !listeners
                .iter()
                .filter_map(Weak::upgrade)
                .any(|other| other.channel() == channel);
            listeners.push(listener);
            new
        };
        if let Some(sink) = sink.as_mut() {
            // Live already: this listener hears from now on.
            if !new_channel || sink.subscribe(channel).await.is_ok() {
                l.resync();
            } else {
                tracing::debug!(
                    channel,
                    "subscribing a new backplane channel failed; it is subscribed on reconnect"
                );
            }
        }
        drop(sink);
        self.joined.notify_waiters();
    }

    fn listeners(&self) -> Vec<Arc<dyn Listener>> {
        self.listeners
            .lock()
            .expect("backplane lock")
            .iter()
            .filter_map(Weak::upgrade)
            .collect()
    }

    fn channels(&self) -> Vec<&'static str> {
        let mut channels: Vec<&'static str> = self.listeners().iter().map(|l| l.channel()).collect();
        channels.sort_unstable();
        channels.dedup();
        channels
    }
}

async fn subscribe(backplane: Weak<Backplane>, core: Arc<RedisCore>) {
    const MIN: Duration = Duration::from_millis(50);
    let mut delay = MIN;
    loop {
        let Some(b) = backplane.upgrade() else { return };
        let channels = {
            let joined = b.joined.notified();
            tokio::pin!(joined);
            // Registered before the check, so a listener joining meanwhile is not missed.
            joined.as_mut().enable();
            let channels = b.channels();
            if channels.is_empty() {
                joined.await;
                continue;
            }
            channels
        };
        drop(b);
        if let Ok(pubsub) = core.pubsub().await {
            let (mut sink, mut stream) = pubsub.split();
            let mut ok = true;
            for channel in &channels {
                ok &= sink.subscribe(*channel).await.is_ok();
            }
            if ok {
                let Some(b) = backplane.upgrade() else { return };
                let joined_before = {
                    // Channels that joined while this subscription was being made.
                    let mut slot = b.sink.lock().await;
                    for channel in b.channels() {
                        if !channels.contains(&channel) && sink.subscribe(channel).await.is_err() {
                            tracing::debug!(channel, "subscribing a backplane channel failed");
                        }
                    }
                    *slot = Some(sink);
                    // Listeners joining from here on resync themselves in `join`.
                    b.listeners()
                };
                // Whatever happened before this point may have been missed.
                for l in joined_before {
                    l.resync();
                }
                b.subscribed.store(true, Ordering::Release);
                drop(b);
                delay = MIN;
                while let Some(msg) = stream.next().await {
                    let Some(b) = backplane.upgrade() else { return };
                    let channel = msg.get_channel_name();
                    for l in b.listeners() {
                        if l.channel() == channel {
                            l.deliver(msg.get_payload_bytes());
                        }
                    }
                }
                let Some(b) = backplane.upgrade() else { return };
                b.subscribed.store(false, Ordering::Release);
                *b.sink.lock().await = None;
                for l in b.listeners() {
                    l.lost();
                }
                tracing::info!("backplane subscription lost; resubscribing");
            }
        }
        tokio::time::sleep(super::random::jittered(delay)).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use super::*;

    struct Counting {
        channel: &'static str,
        resyncs: AtomicU32,
    }

    impl Listener for Counting {
        fn channel(&self) -> &'static str {
            self.channel
        }
        fn deliver(&self, _: &[u8]) {}
        fn resync(&self) {
            self.resyncs.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn listeners_joining_while_it_subscribes_are_resynced_once() {
        let (redkit, _redis, _dir) = crate::on_fresh_redis().await;
        let core = redkit.route().redis().unwrap().clone();
        let listeners: Vec<Arc<Counting>> = (0..300)
            .map(|i| {
                Arc::new(Counting {
                    channel: ["bp:a", "bp:b", "bp:c"][i % 3],
                    resyncs: AtomicU32::new(0),
                })
            })
            .collect();
        let backplane = Backplane::start(core, &tokio::runtime::Handle::current());
        // Joins spread over the time the subscription takes to be made.
        for l in &listeners {
            let weak: Weak<dyn Listener> = Arc::downgrade(&(l.clone() as Arc<dyn Listener>));
            let b = backplane.clone();
            tokio::spawn(async move { b.join(weak).await });
            // Blocking on purpose: spreads the joins over the few milliseconds the
            // subscription takes, finer than a timer tick.
            std::thread::sleep(Duration::from_micros(50));
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !(backplane.is_subscribed() && listeners.iter().all(|l| l.resyncs.load(Ordering::SeqCst) > 0)) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "not every listener was resynced"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let twice = listeners
            .iter()
            .filter(|l| l.resyncs.load(Ordering::SeqCst) != 1)
            .count();
        assert_eq!(twice, 0, "listeners resynced more than once");
    }
}

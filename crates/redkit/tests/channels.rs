//! Channels (pub/sub with history) on Redis, in SQLite, and in SQLite as the fallback with
//! one suite; two instances on one Redis; Redis killed, frozen and restarted under
//! publishers and subscribers, twice in a row.

mod common;

use std::time::Duration;

use common::eventually;
use redkit::pubsub::{ChannelOptions, Channels, Event, Position, Subscription};
use redkit::{ErrorKind, Mode, Redkit};
use redkit_testkit::RedisServer;
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(10);

async fn next(sub: &mut Subscription) -> Event {
    tokio::time::timeout(LIMIT, sub.next())
        .await
        .expect("an event within the limit")
        .expect("the subscription is open")
        .expect("no error")
}

/// The next event, which must be a publication: its data.
async fn next_data(sub: &mut Subscription) -> Value {
    match next(sub).await {
        Event::Publication { publication, .. } => publication.data,
        other => panic!("expected a publication, got {other:?}"),
    }
}

async fn subscribed(sub: &mut Subscription) -> (Position, bool) {
    match next(sub).await {
        Event::Subscribed { position, recovered } => (position, recovered),
        other => panic!("expected Subscribed, got {other:?}"),
    }
}

async fn nothing_more(sub: &mut Subscription) {
    let r = tokio::time::timeout(Duration::from_millis(200), sub.next()).await;
    assert!(r.is_err(), "expected no event, got {r:?}");
}

fn options() -> ChannelOptions {
    ChannelOptions::default()
        .prefix("short.", 5, Duration::ZERO)
        .prefix("live.", 0, Duration::ZERO)
        .subscriber_buffer(4)
}

async fn live(channels: &Channels) {
    eventually(LIMIT, "channel fan-out live", async || channels.live()).await;
}

async fn suite(redkit: &Redkit) {
    let channels = redkit.channels(options()).unwrap();
    if redkit.mode() != Mode::Fallback {
        live(&channels).await;
    }

    // Subscribe, publish, receive in order; offsets count from 1 in one epoch.
    let mut sub = channels.subscribe("orders", None).await.unwrap();
    let (start, recovered) = subscribed(&mut sub).await;
    assert!(recovered);
    assert_eq!(start.offset, 0, "a new channel");
    let mut positions = Vec::new();
    for i in 1..=3 {
        positions.push(
            channels
                .publish("orders", &json!({ "n": i }), Some(&format!("order-{i}")))
                .await
                .unwrap(),
        );
    }
    assert_eq!(positions.iter().map(|p| p.offset).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(
        positions
            .iter()
            .all(|p| p.epoch == positions[0].epoch && !p.epoch.is_empty())
    );
    for i in 1..=3 {
        match next(&mut sub).await {
            Event::Publication { epoch, publication } => {
                assert_eq!((epoch.as_str(), publication.offset), (positions[0].epoch.as_str(), i));
                assert_eq!(publication.data, json!({ "n": i }));
            }
            other => panic!("expected publication {i}, got {other:?}"),
        }
    }

    // The same idempotency key answers the first position and publishes nothing.
    let again = channels
        .publish("orders", &json!({"n": 2}), Some("order-2"))
        .await
        .unwrap();
    assert_eq!(again, positions[1]);
    nothing_more(&mut sub).await;
    assert_eq!(channels.position("orders").await.unwrap(), positions[2]);

    // History: after a position, newest first, bounded.
    let page = channels
        .history("orders", 10, Some(&positions[0]), false)
        .await
        .unwrap();
    assert_eq!(page.publications.iter().map(|p| p.offset).collect::<Vec<_>>(), [2, 3]);
    let newest = channels.history("orders", 2, None, true).await.unwrap();
    assert_eq!(newest.publications.iter().map(|p| p.offset).collect::<Vec<_>>(), [3, 2]);
    let foreign = Position {
        epoch: "elsewhere".into(),
        offset: 1,
    };
    let err = channels.history("orders", 10, Some(&foreign), false).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);

    // Resuming from a position delivers what was missed, then follows live.
    let mut resumed = channels.subscribe("orders", Some(positions[0].clone())).await.unwrap();
    assert_eq!(subscribed(&mut resumed).await, (positions[0].clone(), true));
    assert_eq!(next_data(&mut resumed).await, json!({"n": 2}));
    assert_eq!(next_data(&mut resumed).await, json!({"n": 3}));
    channels.publish("orders", &json!({"n": 4}), None).await.unwrap();
    assert_eq!(next_data(&mut resumed).await, json!({"n": 4}));
    assert_eq!(next_data(&mut sub).await, json!({"n": 4}));
    assert_eq!(resumed.position().unwrap().offset, 4);

    // A position of another epoch, or one the history no longer reaches: recovered false,
    // never part of the gap.
    let mut lost = channels.subscribe("orders", Some(foreign.clone())).await.unwrap();
    let (at, recovered) = subscribed(&mut lost).await;
    assert!(!recovered);
    assert_eq!(at.offset, 4);
    nothing_more(&mut lost).await;
    let mut short = Vec::new();
    for i in 1..=10 {
        short.push(channels.publish("short.x", &json!(i), None).await.unwrap());
    }
    let oldest = channels.history("short.x", 100, None, false).await.unwrap();
    assert_eq!(oldest.publications.len(), 5, "history keeps 5");
    assert_eq!(oldest.oldest, 6);
    let mut trimmed = channels.subscribe("short.x", Some(short[1].clone())).await.unwrap();
    assert_eq!(subscribed(&mut trimmed).await, (short[9].clone(), false));
    let mut reachable = channels.subscribe("short.x", Some(short[4].clone())).await.unwrap();
    assert_eq!(subscribed(&mut reachable).await, (short[4].clone(), true));
    for i in 6..=10 {
        assert_eq!(next_data(&mut reachable).await, json!(i));
    }

    // A subscriber that falls behind its buffer (4) fills the gap from history.
    let mut slow = channels.subscribe("orders", None).await.unwrap();
    subscribed(&mut slow).await;
    for i in 5..=24 {
        channels.publish("orders", &json!({ "n": i }), None).await.unwrap();
    }
    for i in 5..=24 {
        assert_eq!(next_data(&mut slow).await, json!({ "n": i }), "in order, none missing");
    }

    // Pure fan-out (no history): live delivery only; a resume says what it cannot fill.
    let mut fan = channels.subscribe("live.ticks", None).await.unwrap();
    subscribed(&mut fan).await;
    let p = channels.publish("live.ticks", &json!("tick"), None).await.unwrap();
    assert_eq!(next_data(&mut fan).await, json!("tick"));
    assert!(
        channels
            .history("live.ticks", 10, None, false)
            .await
            .unwrap()
            .publications
            .is_empty()
    );
    channels.publish("live.ticks", &json!("tock"), None).await.unwrap();
    let mut late = channels.subscribe("live.ticks", Some(p)).await.unwrap();
    assert!(!subscribed(&mut late).await.1);

    // Bad input: which field, which limit; nothing stored.
    let big = json!("x".repeat(70_000));
    let err = channels.publish("orders", &big, None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge);
    for bad in ["", "a\nb", &"c".repeat(257)] {
        let err = channels.publish(bad, &json!(1), None).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.to_string().contains("channel"), "{err}");
    }
    let err = channels
        .publish("orders", &json!(1), Some(&"k".repeat(129)))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("idempotency_key"), "{err}");
    let err = channels.history("orders", 1001, None, false).await.unwrap_err();
    assert!(err.to_string().contains("limit"), "{err}");
    assert_eq!(channels.position("orders").await.unwrap().offset, 24);

    // Subscribers are counted while they listen.
    let stats = channels.stats();
    let orders = stats.iter().find(|s| s.channel == "orders").unwrap();
    assert_eq!(orders.subscribers, 4);
    drop((sub, resumed, lost, slow));
    let stats = channels.stats();
    assert_eq!(stats.iter().find(|s| s.channel == "orders").unwrap().subscribers, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis() {
    suite(&common::on_redis().await.redkit).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_embedded() {
    suite(&common::on_embedded().await.redkit).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_fallback() {
    let h = common::on_fallback().await;
    suite(&h.redkit).await;
    assert_eq!(h.redkit.mode(), Mode::Fallback, "the suite ran on the fallback");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_out_of_range_are_refused_by_name() {
    let h = common::on_embedded().await;
    let cases = [
        (
            ChannelOptions::default().history(100_001, Duration::ZERO),
            "history_size",
        ),
        (ChannelOptions::default().max_data_bytes(0), "max_data_bytes"),
        (ChannelOptions::default().subscriber_buffer(0), "subscriber_buffer"),
        (ChannelOptions::default().dedupe_window(Duration::ZERO), "dedupe_window"),
        (ChannelOptions::default().prefix("", 1, Duration::ZERO), "prefix"),
    ];
    for (opts, field) in cases {
        let err = h.redkit.channels(opts).err().expect("refused");
        assert!(err.to_string().contains(field), "{field}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_survives_a_restart_of_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let first = {
        let redkit = Redkit::open(common::config(None, dir.path())).await.unwrap();
        let channels = redkit.channels(ChannelOptions::default()).unwrap();
        channels.publish("feed", &json!(1), None).await.unwrap()
    };
    let redkit = Redkit::open(common::config(None, dir.path())).await.unwrap();
    let channels = redkit.channels(ChannelOptions::default()).unwrap();
    let mut sub = channels.subscribe("feed", Some(first.clone())).await.unwrap();
    assert_eq!(subscribed(&mut sub).await, (first.clone(), true));
    let second = channels.publish("feed", &json!(2), None).await.unwrap();
    assert_eq!((second.epoch, second.offset), (first.epoch, 2));
    assert_eq!(next_data(&mut sub).await, json!(2));
}

/// Two instances on one Redis: a publication through either reaches subscribers of both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publications_reach_subscribers_on_every_instance() {
    let redis = RedisServer::start();
    let (a, b) = common::two_instances(&redis).await;
    let (ca, cb) = (
        a.redkit.channels(options()).unwrap(),
        b.redkit.channels(options()).unwrap(),
    );
    live(&ca).await;
    live(&cb).await;
    let mut on_a = ca.subscribe("room", None).await.unwrap();
    let mut on_b = cb.subscribe("room", None).await.unwrap();
    subscribed(&mut on_a).await;
    subscribed(&mut on_b).await;
    ca.publish("room", &json!("from a"), None).await.unwrap();
    cb.publish("room", &json!("from b"), None).await.unwrap();
    for sub in [&mut on_a, &mut on_b] {
        assert_eq!(next_data(sub).await, json!("from a"));
        assert_eq!(next_data(sub).await, json!("from b"));
    }
    // Pure fan-out works across instances too.
    let mut ticks = cb.subscribe("live.t", None).await.unwrap();
    subscribed(&mut ticks).await;
    ca.publish("live.t", &json!(1), None).await.unwrap();
    assert_eq!(next_data(&mut ticks).await, json!(1));
}

/// Redis killed under a publisher and subscribers on two instances, twice in a row:
/// every acknowledged publication ends up in Redis's history once, and every subscriber
/// either receives each publication or hears `recovered: false` for the stretch it missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publications_made_in_outages_reach_redis_and_other_instances_twice_in_a_row() {
    let mut redis = RedisServer::options().durable().start();
    let (a, b) = common::two_instances(&redis).await;
    let (ca, cb) = (
        a.redkit.channels(ChannelOptions::default()).unwrap(),
        b.redkit.channels(ChannelOptions::default()).unwrap(),
    );
    live(&ca).await;
    live(&cb).await;
    let mut on_b = cb.subscribe("feed", None).await.unwrap();
    subscribed(&mut on_b).await;
    let mut on_a = ca.subscribe("feed", None).await.unwrap();
    subscribed(&mut on_a).await;
    let redis_epoch = ca.publish("feed", &json!("before"), None).await.unwrap().epoch;
    assert_eq!(next_data(&mut on_b).await, json!("before"));
    assert_eq!(next_data(&mut on_a).await, json!("before"));

    let mut published = vec![json!("before")];
    for round in 0..2 {
        redis.kill();
        eventually(LIMIT, "a in fallback", async || {
            let _ = ca.position("feed").await;
            a.redkit.mode() == Mode::Fallback
        })
        .await;
        for i in 0..3 {
            let data = json!(format!("outage {round} #{i}"));
            // Acknowledged by the fallback, with a key so a retry is never a second copy.
            ca.publish("feed", &data, Some(&format!("k{round}-{i}"))).await.unwrap();
            published.push(data);
        }
        // A's own subscriber follows the outage's stream, told it is a new one: it gets
        // the outage's publications from the first, or (if it was still being moved back
        // to Redis's stream when this outage began) from where it joined.
        let here = ca.position("feed").await.unwrap();
        assert_ne!(here.epoch, redis_epoch);
        let mut got = Vec::new();
        let mut told = false;
        while on_a.position() != Some(&here) {
            match next(&mut on_a).await {
                Event::Subscribed { position, recovered } => {
                    assert!(!recovered && position.epoch != redis_epoch, "{position:?}");
                    told = true;
                    got.clear();
                }
                Event::Publication { epoch, publication } if epoch == here.epoch => got.push(publication.data),
                Event::Publication { epoch, .. } => assert_eq!(epoch, redis_epoch, "the previous stream"),
            }
        }
        assert!(told, "told the stream changed");
        assert!(published.ends_with(&got), "{got:?} is the tail of {published:?}");
        redis.restart();
        eventually(LIMIT, "a recovered and replayed", async || {
            a.redkit.mode() == Mode::Redis && a.redkit.health().await.journal_pending.is_empty()
        })
        .await;
        // B never left Redis's epoch: it receives the outage's publications, late, in order.
        for i in 0..3 {
            assert_eq!(next_data(&mut on_b).await, json!(format!("outage {round} #{i}")));
        }
        // A's subscriber, left in the outage's stream, is told it moved back to Redis's,
        // and follows it.
        let end = cb.position("feed").await.unwrap();
        let mut back = false;
        while on_a.position() != Some(&end) {
            match next(&mut on_a).await {
                Event::Subscribed { position, recovered } => {
                    assert!(!recovered && position.epoch == redis_epoch, "{position:?} {recovered}");
                    back = true;
                }
                Event::Publication { epoch, .. } => assert_eq!(epoch, redis_epoch),
            }
        }
        assert!(back, "told that the stream changed");
    }
    let history = cb.history("feed", 100, None, false).await.unwrap();
    assert_eq!(history.position.epoch, redis_epoch, "Redis kept its stream (AOF)");
    let data: Vec<Value> = history.publications.into_iter().map(|p| p.data).collect();
    assert_eq!(data, published, "each acknowledged publication once, in order");
    ca.publish("feed", &json!("after"), None).await.unwrap();
    assert_eq!(next_data(&mut on_b).await, json!("after"));
    assert_eq!(next_data(&mut on_a).await, json!("after"));
}

/// A publish Redis may have applied before freezing answers "indeterminate"; retried with
/// its key after the breaker opens, it is one publication in Redis once Redis thaws.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_retried_across_a_freeze_is_one_publication() {
    let mut redis = RedisServer::options().durable().start();
    let h = {
        let dir = tempfile::tempdir().unwrap();
        let redkit = Redkit::open(common::config(Some(redis.url()), dir.path()))
            .await
            .unwrap();
        (redkit, dir)
    };
    let channels = h.0.channels(ChannelOptions::default()).unwrap();
    live(&channels).await;
    // Retried with its key: a busy machine may make the first call time out.
    eventually(LIMIT, "first publish", async || {
        channels.publish("frozen", &json!(0), Some("first")).await.is_ok()
    })
    .await;
    for round in 0..2 {
        redis.freeze();
        let key = format!("retry-{round}");
        let mut attempts = 0;
        loop {
            attempts += 1;
            match channels.publish("frozen", &json!(round + 1), Some(&key)).await {
                Ok(_) => break,
                Err(e) => assert!(
                    matches!(e.kind(), ErrorKind::Unavailable),
                    "only an outage error before the fallback takes it: {e}"
                ),
            }
            assert!(attempts < 100, "the fallback took the publish");
        }
        redis.thaw();
        eventually(LIMIT, "recovered", async || {
            let _ = channels.position("frozen").await;
            h.0.mode() == Mode::Redis && h.0.health().await.journal_pending.is_empty()
        })
        .await;
    }
    let history = channels.history("frozen", 100, None, false).await.unwrap();
    let data: Vec<Value> = history.publications.into_iter().map(|p| p.data).collect();
    assert_eq!(data, [json!(0), json!(1), json!(2)], "no retry made a second copy");
}

/// Redis restarted without its data (no persistence): the stream is gone, so a subscriber
/// hears `recovered: false` and follows the new stream from its first publication.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_lost_its_data_starts_a_new_stream_and_says_so() {
    let mut redis = RedisServer::start();
    let (a, b) = common::two_instances(&redis).await;
    let (ca, cb) = (
        a.redkit.channels(ChannelOptions::default()).unwrap(),
        b.redkit.channels(ChannelOptions::default()).unwrap(),
    );
    live(&ca).await;
    live(&cb).await;
    let first = ca.publish("feed", &json!(1), None).await.unwrap();
    let mut sub = cb.subscribe("feed", Some(first.clone())).await.unwrap();
    assert_eq!(subscribed(&mut sub).await, (first.clone(), true));
    redis.restart();
    eventually(LIMIT, "a publish on the new Redis", async || {
        ca.publish("feed", &json!(2), Some("two")).await.is_ok() && a.redkit.mode() == Mode::Redis
    })
    .await;
    let mut saw = Vec::new();
    loop {
        match next(&mut sub).await {
            Event::Subscribed { position, recovered } => {
                assert!(!recovered);
                assert_ne!(position.epoch, first.epoch);
                saw.push(None);
            }
            Event::Publication { epoch, publication } => {
                assert_ne!(epoch, first.epoch);
                saw.push(Some(publication.data));
                break;
            }
        }
    }
    assert_eq!(saw.last(), Some(&Some(json!(2))));
    assert!(saw.contains(&None), "told that the stream changed");
}

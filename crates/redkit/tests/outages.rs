//! The outage data model (DESIGN.md, "Outages: who owns the data"), one test per way it
//! used to fail, on real redis-server processes: Redis killed for every instance, or one
//! instance cut off by a [`Partition`] while another still reaches Redis.
//!
//! What must hold: nothing acknowledged is lost, nothing deleted comes back, replays are
//! operations (never snapshots) so the order in which instances recover does not matter,
//! sessions an instance has served stay readable through an outage, and recovery neither
//! stalls requests nor makes a long poll wait twice.

mod common;

use std::time::{Duration, Instant};

use common::{config, eventually};
use redkit::cache::{Cache, CacheOptions};
use redkit::jobs::{EnqueueOptions, QueueOptions};
use redkit::session::{SessionOptions, Sessions};
use redkit::{ErrorKind, Mode, Redkit};
use redkit_testkit::{Partition, RedisServer};
use serde_json::{Map, Value, json};

const LIMIT: Duration = Duration::from_secs(10);

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

/// An instance with its own data dir, reaching Redis at `url`.
struct Instance {
    redkit: Redkit,
    sessions: Sessions,
    cache: Cache<String>,
    _dir: tempfile::TempDir,
}

async fn instance(url: String) -> Instance {
    let dir = tempfile::tempdir().unwrap();
    let redkit = Redkit::open(config(Some(url), dir.path())).await.unwrap();
    let i = Instance {
        sessions: redkit.sessions(SessionOptions::default()).unwrap(),
        cache: redkit.cache("outage", CacheOptions::default().l1(false)).unwrap(),
        redkit,
        _dir: dir,
    };
    mirror_live(&i.sessions).await;
    i
}

/// The mirror fills only while other instances' changes can reach it.
async fn mirror_live(sessions: &Sessions) {
    eventually(LIMIT, "session mirror live", async || sessions.mirror_live()).await;
}

impl Instance {
    /// Traffic is what notices a failure; recovery needs none.
    async fn wait_mode(&self, mode: Mode) {
        eventually(LIMIT, &format!("mode {mode:?}"), async || {
            let _ = self.cache.get("poke").await;
            self.redkit.mode() == mode
        })
        .await;
    }

    /// Back on Redis with the journal replayed and the outage's copies dropped.
    async fn recovered(&self) {
        self.wait_mode(Mode::Redis).await;
        eventually(LIMIT, "journal empty", async || {
            self.redkit.health().await.journal_pending.is_empty()
        })
        .await;
        // `after_close` (dropping outage copies) runs just after the breaker closes.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Lets backplane messages reach the other instance.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(200)).await;
}

fn exists(redis: &RedisServer, key: &str) -> bool {
    redis.command(&["EXISTS", key]).unwrap() == "1"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_from_the_first_outage_is_served_as_truth_in_the_second() {
    let mut redis = RedisServer::options().durable().start();
    let a = instance(redis.url()).await;
    let b = instance(redis.url()).await;
    let kept = a.sessions.create(obj(json!({"n": 1})), Some("erin")).await.unwrap();
    let doomed = a.sessions.create(obj(json!({"n": 2})), Some("erin")).await.unwrap();
    a.cache.set("k", &"before".into()).await.unwrap();

    // Outage 1: A writes a cache value and patches a session.
    redis.kill();
    a.wait_mode(Mode::Fallback).await;
    a.cache.set("k", &"outage one".into()).await.unwrap();
    a.sessions.update(&doomed.id, obj(json!({"during": 1}))).await.unwrap();
    redis.restart();
    a.recovered().await;
    b.wait_mode(Mode::Redis).await;

    // Between the outages, through Redis, from the other instance.
    assert_eq!(
        a.cache.get("k").await.unwrap(),
        None,
        "the outage's write replayed as an invalidation"
    );
    b.cache.set("k", &"between".into()).await.unwrap();
    b.cache.delete("k").await.unwrap();
    assert!(b.sessions.delete(&doomed.id).await.unwrap());
    // The outage dropped A's mirror (it may have missed messages); serving refills it.
    assert!(a.sessions.get(&kept.id).await.unwrap().is_some());
    settle().await;

    // Outage 2: neither the first outage's copies nor A's mirror bring anything back.
    redis.kill();
    a.wait_mode(Mode::Fallback).await;
    assert_eq!(
        a.cache.get("k").await.unwrap(),
        None,
        "cache value deleted between outages"
    );
    assert!(
        a.sessions.get(&doomed.id).await.unwrap().is_none(),
        "session deleted between outages"
    );
    let err = a.sessions.update(&doomed.id, obj(json!({"x": 1}))).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(
        a.sessions.get(&kept.id).await.unwrap().unwrap().data["n"],
        1,
        "a session A served since its subscription came back stays readable"
    );
    redis.restart();
    a.recovered().await;
    b.recovered().await;
    assert!(!exists(&redis, &format!("rk:s:{{{}}}", doomed.id)), "not back in Redis");
    assert!(b.sessions.get(&doomed.id).await.unwrap().is_none());
    assert!(b.sessions.get(&kept.id).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_patch_merges_with_writes_made_through_redis_meanwhile() {
    let redis = RedisServer::options().durable().start();
    let cut = Partition::to(redis.port());
    let a = instance(cut.url()).await;
    let b = instance(redis.url()).await;
    let s = a
        .sessions
        .create(obj(json!({"base": 0, "shared": "start"})), Some("frank"))
        .await
        .unwrap();

    cut.cut();
    a.wait_mode(Mode::Fallback).await;
    // A (cut off) writes first, B (through Redis) later: on the shared field B is newer.
    a.sessions
        .update(&s.id, obj(json!({"a": 1, "shared": "from A", "base": null})))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    b.sessions
        .update(&s.id, obj(json!({"b": 2, "shared": "from B"})))
        .await
        .unwrap();
    cut.heal();
    a.recovered().await;

    let merged = b.sessions.get(&s.id).await.unwrap().unwrap().data;
    assert_eq!(
        Value::Object(merged),
        json!({"a": 1, "b": 2, "shared": "from B"}),
        "A's fields and its removal replayed; B's later write of the shared field kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_to_a_session_rotated_meanwhile_follow_it_to_its_new_id() {
    let redis = RedisServer::options().durable().start();
    let cut = Partition::to(redis.port());
    let a = instance(cut.url()).await;
    let b = instance(redis.url()).await;
    let s = a.sessions.create(obj(json!({"n": 0})), Some("kim")).await.unwrap();
    let t = a.sessions.create(obj(json!({"n": 0})), Some("kim")).await.unwrap();
    assert!(b.sessions.get(&t.id).await.unwrap().is_some());

    cut.cut();
    a.wait_mode(Mode::Fallback).await;
    // A (cut off) writes to S; B rotates S through Redis before A is back.
    a.sessions.update(&s.id, obj(json!({"from_a": 1}))).await.unwrap();
    let s2 = b.sessions.rotate(&s.id).await.unwrap();
    // The other way round: A rotates T in its outage, B writes T's old id through Redis.
    let t2 = a.sessions.rotate(&t.id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    b.sessions.update(&t.id, obj(json!({"from_b": 2}))).await.unwrap();
    cut.heal();
    a.recovered().await;

    let s2 = b.sessions.get(&s2.id).await.unwrap().unwrap();
    assert_eq!(
        Value::Object(s2.data),
        json!({"n": 0, "from_a": 1}),
        "A's patch followed S to its new id"
    );
    assert!(b.sessions.get(&s.id).await.unwrap().is_none());
    let t2 = b.sessions.get(&t2.id).await.unwrap().unwrap();
    assert_eq!(
        Value::Object(t2.data),
        json!({"n": 0, "from_b": 2}),
        "B's write moved with A's rotation"
    );
    assert!(
        b.sessions.get(&t.id).await.unwrap().is_none(),
        "the rotated-away id is dead"
    );
    let mut listed: Vec<String> = b
        .sessions
        .list("kim")
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    listed.sort();
    let mut expected = vec![s2.id, t2.id];
    expected.sort();
    assert_eq!(listed, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_during_an_outage_holds_for_sessions_made_before_it() {
    let redis = RedisServer::options().durable().start();
    let cut = Partition::to(redis.port());
    let a = instance(cut.url()).await;
    let b = instance(redis.url()).await;
    // One session A has served, one it has never seen.
    let known = a.sessions.create(Map::new(), Some("gina")).await.unwrap();
    let unknown = b.sessions.create(Map::new(), Some("gina")).await.unwrap();

    cut.cut();
    a.wait_mode(Mode::Fallback).await;
    assert!(a.sessions.delete(&known.id).await.unwrap(), "A knew it");
    assert!(
        !a.sessions.delete(&unknown.id).await.unwrap(),
        "A cannot tell whether it was live…"
    );
    assert!(
        b.sessions.get(&unknown.id).await.unwrap().is_some(),
        "…and Redis has it until A recovers"
    );
    cut.heal();
    a.recovered().await;

    for id in [&known.id, &unknown.id] {
        assert!(b.sessions.get(id).await.unwrap().is_none(), "logged out for good");
        assert!(exists(&redis, &format!("rk:s:{{{id}}}:x")), "a tombstone keeps it out");
    }
    assert!(b.sessions.list("gina").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_in_which_instances_recover_does_not_matter() {
    for a_first in [true, false] {
        let redis = RedisServer::options().durable().start();
        let (cut_a, cut_b) = (Partition::to(redis.port()), Partition::to(redis.port()));
        let a = instance(cut_a.url()).await;
        let b = instance(cut_b.url()).await;
        let s = a.sessions.create(obj(json!({"x": 0})), None).await.unwrap();
        assert!(b.sessions.get(&s.id).await.unwrap().is_some(), "B mirrors it too");
        a.cache.set("k", &"before".into()).await.unwrap();

        cut_a.cut();
        cut_b.cut();
        a.wait_mode(Mode::Fallback).await;
        b.wait_mode(Mode::Fallback).await;
        // A writes, B deletes, both acknowledged; then both write one field, B later.
        a.cache.set("k", &"from A".into()).await.unwrap();
        b.cache.delete("k").await.unwrap();
        a.sessions.update(&s.id, obj(json!({"x": 1}))).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        b.sessions.update(&s.id, obj(json!({"x": 2}))).await.unwrap();

        let (first, second, cut_first, cut_second) = if a_first {
            (&a, &b, &cut_a, &cut_b)
        } else {
            (&b, &a, &cut_b, &cut_a)
        };
        cut_first.heal();
        first.recovered().await;
        cut_second.heal();
        second.recovered().await;

        for i in [&a, &b] {
            assert_eq!(i.cache.get("k").await.unwrap(), None, "a_first={a_first}");
            assert_eq!(
                i.sessions.get(&s.id).await.unwrap().unwrap().data["x"],
                2,
                "the later write wins whoever recovers last (a_first={a_first})"
            );
        }
        assert!(!exists(&redis, "rk:{c:outage}:k:k"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_served_before_an_outage_stay_readable_and_writable_through_it() {
    let mut redis = RedisServer::options().durable().start();
    let a = instance(redis.url()).await;
    let b = instance(redis.url()).await;
    let s = a
        .sessions
        .create(obj(json!({"role": "user"})), Some("hank"))
        .await
        .unwrap();
    let rotated_away = a.sessions.create(Map::new(), Some("hank")).await.unwrap();
    // B rotates one of them (a privilege change): A's mirror hears of it.
    let fresh = b.sessions.rotate(&rotated_away.id).await.unwrap();
    settle().await;

    redis.kill();
    a.wait_mode(Mode::Fallback).await;
    b.wait_mode(Mode::Fallback).await;
    assert_eq!(a.sessions.get(&s.id).await.unwrap().unwrap().data["role"], "user");
    assert!(
        b.sessions.get(&s.id).await.unwrap().is_none(),
        "B never served it: not readable there until Redis is back"
    );
    assert!(
        a.sessions.get(&rotated_away.id).await.unwrap().is_none(),
        "rotated away on B"
    );
    a.sessions.update(&s.id, obj(json!({"cart": [1]}))).await.unwrap();
    assert_eq!(a.sessions.list("hank").await.unwrap().len(), 1);

    redis.restart();
    a.recovered().await;
    b.recovered().await;
    assert_eq!(
        Value::Object(b.sessions.get(&s.id).await.unwrap().unwrap().data),
        json!({"role": "user", "cart": [1]})
    );
    assert!(b.sessions.get(&fresh.id).await.unwrap().is_some());
    assert!(a.sessions.get(&rotated_away.id).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_all_during_an_outage_also_revokes_sessions_replayed_after_it() {
    let mut redis = RedisServer::options().durable().start();
    let a = instance(redis.url()).await;
    let b = instance(redis.url()).await;
    let old = b.sessions.create(Map::new(), Some("ivy")).await.unwrap();

    redis.kill();
    a.wait_mode(Mode::Fallback).await;
    b.wait_mode(Mode::Fallback).await;
    // B creates one during the outage; A then revokes everything of the user.
    let made_on_b = b.sessions.create(Map::new(), Some("ivy")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    a.sessions.revoke_all("ivy").await.unwrap();
    redis.restart();
    // A replays its revoke first; B's session, older than the revoke, must not survive it.
    a.recovered().await;
    b.recovered().await;
    assert!(b.sessions.get(&old.id).await.unwrap().is_none());
    assert!(b.sessions.get(&made_on_b.id).await.unwrap().is_none());
    assert!(a.sessions.list("ivy").await.unwrap().is_empty());
    let after = a.sessions.create(Map::new(), Some("ivy")).await.unwrap();
    assert!(b.sessions.get(&after.id).await.unwrap().is_some(), "new logins work");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_used_through_a_long_outage_survives_redis_expiring_it() {
    let mut redis = RedisServer::options().durable().start();
    let dir = tempfile::tempdir().unwrap();
    let redkit = Redkit::open(config(Some(redis.url()), dir.path())).await.unwrap();
    let sessions = redkit.sessions(SessionOptions::default()).unwrap();
    mirror_live(&sessions).await;
    let s = sessions
        .create_with(
            obj(json!({"n": 1})),
            None,
            Duration::from_secs(2),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    redis.kill();
    eventually(LIMIT, "fallback", async || {
        let _ = sessions.get(&s.id).await;
        redkit.mode() == Mode::Fallback
    })
    .await;
    // Used every 300 ms for 3 s: past its 2 s idle timeout in Redis, never idle here.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(sessions.get(&s.id).await.unwrap().is_some());
    }
    sessions.update(&s.id, obj(json!({"n": 2}))).await.unwrap();
    redis.restart();
    eventually(LIMIT, "recovered", async || redkit.mode() == Mode::Redis).await;
    let back = sessions
        .get(&s.id)
        .await
        .unwrap()
        .expect("the session is still alive in Redis");
    assert_eq!(back.data["n"], 2, "with the outage's write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_closes_the_breaker_before_the_job_spool_is_drained() {
    let mut redis = RedisServer::options().durable().start();
    let dir = tempfile::tempdir().unwrap();
    let redkit = Redkit::open(config(Some(redis.url()), dir.path())).await.unwrap();
    let queue = redkit.queue("spooled", QueueOptions::default()).unwrap();
    redis.kill();
    eventually(LIMIT, "fallback", async || {
        let _ = queue.stats().await;
        redkit.mode() == Mode::Fallback
    })
    .await;
    let batch: Vec<_> = (0..1000).map(|i| (json!(i), EnqueueOptions::new())).collect();
    for _ in 0..10 {
        queue.enqueue_batch(&batch).await.unwrap();
    }
    redis.restart();
    eventually(LIMIT, "every spooled job in Redis", async || {
        redkit.mode() == Mode::Redis && queue.stats().await.map(|s| s.waiting).unwrap_or(0) == 10_000
    })
    .await;
    let health = redkit.health().await;
    let closed_at = health.breaker.unwrap().last_transition.unwrap();
    assert_eq!(
        closed_at.to,
        redkit::core::breaker::BreakerState::Closed,
        "{closed_at:?}"
    );
    let moved_at = health.stats["jobs"]["spool_moved_at_ms"].as_u64().unwrap();
    assert!(
        moved_at >= closed_at.at_ms,
        "the spool moved after the breaker closed (closed {}, last batch moved {moved_at}): requests never wait for it",
        closed_at.at_ms
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_that_fails_over_waits_only_what_is_left_of_it() {
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let redkit = Redkit::open(config(Some(redis.url()), dir.path())).await.unwrap();
    let queue = redkit.queue("quiet", QueueOptions::default()).unwrap();
    let wait = Duration::from_secs(3);
    let poll = {
        let queue = queue.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let jobs = queue.fetch_wait("w", 1, Duration::from_secs(30), wait).await;
            (jobs, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.freeze();
    // Traffic trips the breaker while the poll is blocked on the frozen Redis.
    eventually(LIMIT, "fallback", async || {
        let _ = queue.stats().await;
        redkit.mode() == Mode::Fallback
    })
    .await;
    let (jobs, took) = poll.await.unwrap();
    redis.thaw();
    assert!(jobs.unwrap().is_empty());
    // Its deadline, plus at most one response timeout for the call that was cut short;
    // restarting the wait would take 3 s more.
    assert!(
        took < wait + Duration::from_millis(1500),
        "a 3 s long poll took {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_writes_survive_a_crash_and_are_replayed_by_the_next_run() {
    let mut redis = RedisServer::options().durable().start();
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let redkit = Redkit::open(config(Some(redis.url()), dir.path())).await.unwrap();
        let sessions = redkit.sessions(SessionOptions::default()).unwrap();
        mirror_live(&sessions).await;
        let s = sessions.create(obj(json!({"n": 1})), None).await.unwrap();
        redis.kill();
        eventually(LIMIT, "fallback", async || {
            let _ = sessions.get(&s.id).await;
            redkit.mode() == Mode::Fallback
        })
        .await;
        sessions.update(&s.id, obj(json!({"n": 2}))).await.unwrap();
        s.id
        // The process "crashes" here: dropped without recovering.
    };
    redis.restart();
    let redkit = Redkit::open(config(Some(redis.url()), dir.path())).await.unwrap();
    let sessions = redkit.sessions(SessionOptions::default()).unwrap();
    eventually(LIMIT, "the earlier run's journal replayed", async || {
        redkit.health().await.journal_pending.is_empty()
    })
    .await;
    assert_eq!(sessions.get(&id).await.unwrap().unwrap().data["n"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operation_redis_refuses_for_good_is_dead_lettered_and_recovery_goes_on() {
    let redis = RedisServer::options().durable().start();
    let cut = Partition::to(redis.port());
    let a = instance(cut.url()).await;
    let poisoned = a.sessions.create(Map::new(), None).await.unwrap();
    let fine = a.sessions.create(Map::new(), None).await.unwrap();
    cut.cut();
    a.wait_mode(Mode::Fallback).await;
    a.sessions.update(&poisoned.id, obj(json!({"x": 1}))).await.unwrap();
    a.sessions.update(&fine.id, obj(json!({"y": 1}))).await.unwrap();
    // Meanwhile someone turned the session's key into a string: its replay gets WRONGTYPE.
    let key = format!("rk:s:{{{}}}", poisoned.id);
    redis.command(&["DEL", &key]).unwrap();
    redis.command(&["SET", &key, "not a hash"]).unwrap();
    cut.heal();
    a.recovered().await;
    let health = a.redkit.health().await;
    // The patch, and the session's touch (the catch-up of its idle timer), both refused.
    assert_eq!(
        health.journal_dead_letters["session"].count, 2,
        "{:?}",
        health.journal_dead_letters
    );
    assert_eq!(a.sessions.get(&fine.id).await.unwrap().unwrap().data["y"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_all_reaches_sessions_however_they_were_made() {
    let mut redis = RedisServer::options().durable().start();
    let a = instance(redis.url()).await;
    let b = instance(redis.url()).await;
    let plain = a.sessions.create(Map::new(), Some("lee")).await.unwrap();
    let to_rotate = a.sessions.create(Map::new(), Some("lee")).await.unwrap();
    let rotated = b.sessions.rotate(&to_rotate.id).await.unwrap();
    let in_outage_rotate = a.sessions.create(Map::new(), Some("lee")).await.unwrap();
    redis.kill();
    a.wait_mode(Mode::Fallback).await;
    b.wait_mode(Mode::Fallback).await;
    let made_in_outage = b.sessions.create(Map::new(), Some("lee")).await.unwrap();
    let rotated_in_outage = a.sessions.rotate(&in_outage_rotate.id).await.unwrap();
    redis.restart();
    a.recovered().await;
    b.recovered().await;
    let ids = [&plain.id, &rotated.id, &made_in_outage.id, &rotated_in_outage.id];
    for id in ids {
        assert!(
            b.sessions.get(id).await.unwrap().is_some(),
            "{id} live before the revoke"
        );
    }
    assert_eq!(a.sessions.revoke_all("lee").await.unwrap(), 4);
    for id in ids {
        assert!(a.sessions.get(id).await.unwrap().is_none(), "{id} revoked");
        assert!(b.sessions.get(id).await.unwrap().is_none(), "{id} revoked");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_all_by_an_instance_that_knew_none_of_the_sessions_holds() {
    let redis = RedisServer::options().durable().start();
    let cut = Partition::to(redis.port());
    let a = instance(redis.url()).await;
    let b = instance(cut.url()).await;
    let s = a.sessions.create(Map::new(), Some("mo")).await.unwrap();
    cut.cut();
    b.wait_mode(Mode::Fallback).await;
    assert_eq!(b.sessions.revoke_all("mo").await.unwrap(), 0, "B knows none of them");
    let after = a.sessions.create(Map::new(), Some("mo")).await.unwrap();
    cut.heal();
    b.recovered().await;
    assert!(a.sessions.get(&s.id).await.unwrap().is_none(), "revoked");
    assert!(
        a.sessions.get(&after.id).await.unwrap().is_some(),
        "made after the revoke"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_on_redis_holds_for_a_session_another_instance_made_in_its_outage() {
    // B alone is cut off: it makes a session and rotates another; A, on Redis all along,
    // is asked to log both out before B is back. Redis has never seen them, so A answers
    // "not deleted" — and the logouts must still hold when B writes its outage back.
    let redis = RedisServer::options().durable().start();
    let cut = Partition::to(redis.port());
    let a = instance(redis.url()).await;
    let b = instance(cut.url()).await;
    let before = b.sessions.create(Map::new(), Some("ida")).await.unwrap();
    cut.cut();
    b.wait_mode(Mode::Fallback).await;
    let made = b.sessions.create(obj(json!({"f": 1})), Some("ida")).await.unwrap();
    let rotated = b.sessions.rotate(&before.id).await.unwrap();
    for s in [&made, &rotated] {
        assert!(!a.sessions.delete(&s.id).await.unwrap(), "Redis has not seen it yet");
    }
    cut.heal();
    b.recovered().await;
    for s in [&made, &rotated] {
        assert!(a.sessions.get(&s.id).await.unwrap().is_none(), "logged out on A");
        assert!(b.sessions.get(&s.id).await.unwrap().is_none(), "logged out on B");
    }
    assert!(a.sessions.get(&before.id).await.unwrap().is_none(), "rotated away");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_of_a_session_made_elsewhere_in_the_outage_holds_whoever_recovers_first() {
    for logout_side_first in [true, false] {
        let redis = RedisServer::options().durable().start();
        let (cut_a, cut_b) = (Partition::to(redis.port()), Partition::to(redis.port()));
        let a = instance(cut_a.url()).await;
        let b = instance(cut_b.url()).await;
        cut_a.cut();
        cut_b.cut();
        a.wait_mode(Mode::Fallback).await;
        b.wait_mode(Mode::Fallback).await;
        // Made on A in the outage (only A's store has it); logged out through B.
        let s = a.sessions.create(Map::new(), Some("nat")).await.unwrap();
        assert!(!b.sessions.delete(&s.id).await.unwrap(), "B cannot know it");
        let (first, second) = if logout_side_first {
            (&cut_b, &cut_a)
        } else {
            (&cut_a, &cut_b)
        };
        first.heal();
        (if logout_side_first { &b } else { &a }).recovered().await;
        second.heal();
        a.recovered().await;
        b.recovered().await;
        assert!(
            a.sessions.get(&s.id).await.unwrap().is_none(),
            "the logout holds (logout side first: {logout_side_first})"
        );
        assert!(exists(&redis, &format!("rk:s:{{{}}}:x", s.id)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patches_and_rotations_of_one_session_on_two_instances_in_one_outage_all_land() {
    let redis = RedisServer::options().durable().start();
    let (cut_a, cut_b) = (Partition::to(redis.port()), Partition::to(redis.port()));
    let a = instance(cut_a.url()).await;
    let b = instance(cut_b.url()).await;
    let mut made = Vec::new();
    for _ in 0..300 {
        let s = a.sessions.create(obj(json!({"f": 0})), None).await.unwrap();
        assert!(b.sessions.get(&s.id).await.unwrap().is_some());
        made.push(s.id);
    }
    cut_a.cut();
    cut_b.cut();
    a.wait_mode(Mode::Fallback).await;
    b.wait_mode(Mode::Fallback).await;
    let mut rotated = Vec::new();
    for id in &made {
        a.sessions.update(id, obj(json!({"f": 1}))).await.unwrap();
        rotated.push(b.sessions.rotate(id).await.unwrap().id);
    }
    // Both recover at once: A's patches and B's rotations replay concurrently.
    cut_a.heal();
    cut_b.heal();
    a.recovered().await;
    b.recovered().await;
    for id in &rotated {
        let s = a.sessions.get(id).await.unwrap().expect("the rotated session lives");
        assert_eq!(s.data["f"], 1, "A's acknowledged patch followed the rotation");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_follows_two_rotations_made_on_the_other_instance_in_one_outage() {
    for patcher_first in [true, false] {
        let redis = RedisServer::options().durable().start();
        let (cut_a, cut_b) = (Partition::to(redis.port()), Partition::to(redis.port()));
        let a = instance(cut_a.url()).await;
        let b = instance(cut_b.url()).await;
        let s0 = a.sessions.create(obj(json!({"fa": 0, "fb": 0})), None).await.unwrap();
        assert!(b.sessions.get(&s0.id).await.unwrap().is_some());
        cut_a.cut();
        cut_b.cut();
        a.wait_mode(Mode::Fallback).await;
        b.wait_mode(Mode::Fallback).await;
        b.sessions.update(&s0.id, obj(json!({"fb": 2}))).await.unwrap();
        for i in 1..=6 {
            a.sessions.update(&s0.id, obj(json!({"fa": i}))).await.unwrap();
        }
        let s1 = a.sessions.rotate(&s0.id).await.unwrap();
        let s2 = a.sessions.rotate(&s1.id).await.unwrap();
        let (first, second) = if patcher_first {
            (&cut_b, &cut_a)
        } else {
            (&cut_a, &cut_b)
        };
        first.heal();
        (if patcher_first { &b } else { &a }).recovered().await;
        second.heal();
        a.recovered().await;
        b.recovered().await;
        let data = b.sessions.get(&s2.id).await.unwrap().expect("the last id lives").data;
        assert_eq!(
            Value::Object(data),
            json!({"fa": 6, "fb": 2}),
            "both instances' writes reach the last id (patcher first: {patcher_first})"
        );
        assert!(b.sessions.get(&s0.id).await.unwrap().is_none());
        assert!(b.sessions.get(&s1.id).await.unwrap().is_none());
    }
}

/// An outage that begins at once — before the pass at start-up (an earlier run's leftovers)
/// has cleaned up, or right after a recovery, before its clean-up — hides nothing written in
/// it: a clean-up drops only what outages before it left. Found by `bench/run` (a value
/// written in an outage that began right after `Redkit::open` read back as absent). The
/// clean-ups are background tasks, so this races them, on fresh instances and twice in a
/// row on each; on an idle host it seldom wins the race (it did not catch the bug here), so
/// the two tests after it force each case (both fail on the code before `Recovery::seal`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_an_outage_writes_at_once_is_served_in_it() {
    for round in 0..15 {
        let mut redis = RedisServer::start();
        let dir = tempfile::tempdir().unwrap();
        let redkit = Redkit::open(config(Some(redis.url()), dir.path())).await.unwrap();
        let cache: Cache<String> = redkit.cache("at_once", CacheOptions::default().l1(false)).unwrap();
        let sessions = redkit.sessions(SessionOptions::default()).unwrap();
        for outage in 0..2 {
            redis.kill();
            while redkit.mode() != Mode::Fallback {
                let _ = cache.get("poke").await; // failing calls are what open the breaker
            }
            let value = format!("{round}-{outage}");
            cache.set("k", &value).await.unwrap();
            let made = sessions.create(obj(json!({"v": value})), None).await.unwrap();
            for _ in 0..20 {
                assert_eq!(
                    cache.get("k").await.unwrap().as_deref(),
                    Some(value.as_str()),
                    "round {round}, outage {outage}: the value this outage wrote is not served"
                );
                let read = sessions.get(&made.id).await.unwrap();
                assert_eq!(
                    read.map(|s| s.data["v"].clone()),
                    Some(json!(value)),
                    "round {round}, outage {outage}: the session this outage made is not served"
                );
                tokio::task::yield_now().await;
            }
            redis.restart();
            eventually(LIMIT, "back on redis", async || {
                let _ = cache.get("poke").await;
                redkit.mode() == Mode::Redis
            })
            .await;
        }
    }
}

/// How long a test holds redkit's one worker.
const HELD: Duration = Duration::from_secs(4);

/// redkit on a runtime of its own with one worker, which a test can hold (a blocking sleep
/// there) while it makes calls from a runtime of its own: the held worker drives redkit's
/// background work — the connection to Redis, the pass at start-up, the clean-ups.
struct OneWorker {
    background: tokio::runtime::Runtime,
    redkit: Redkit,
    _dir: tempfile::TempDir,
}

impl OneWorker {
    fn open(redis: &RedisServer) -> Self {
        let background = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let redkit = background
            .block_on(Redkit::open(config(Some(redis.url()), dir.path())))
            .unwrap();
        OneWorker {
            background,
            redkit,
            _dir: dir,
        }
    }

    /// Runs `f` on the background runtime, so what it spawns runs on the one worker.
    fn on_background<T>(&self, f: impl FnOnce(&Redkit) -> T) -> T {
        let _on_background = self.background.enter();
        f(&self.redkit)
    }

    /// Holds the one worker for [`HELD`] once it gets to this.
    fn hold(&self) {
        self.background.spawn(async { std::thread::sleep(HELD) });
    }

    /// Runs the test's calls on a runtime of their own.
    fn calls<F: std::future::Future>(&self, calls: F) -> F::Output {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(calls)
    }

    /// With Redis killed and the worker held since `held_since`: waits for the outage to be
    /// noticed (`premise` names what was held), writes `value`, and once the worker has been
    /// free a while reads it back (`hidden` says what hid it, if something did).
    async fn write_in_the_outage_and_read_back(
        &self,
        cache: &Cache<String>,
        held_since: Instant,
        value: &str,
        premise: &str,
        hidden: &str,
    ) {
        // Redis's connection is driven on the held runtime: calls time out until the breaker opens.
        while self.redkit.mode() != Mode::Fallback {
            let _ = cache.get("poke").await;
        }
        assert!(
            held_since.elapsed() < HELD - Duration::from_secs(1),
            "{premise} ({:?})",
            held_since.elapsed()
        );
        cache.set("k", &value.to_string()).await.unwrap();
        // The worker is free again after HELD; give what it held time to finish.
        tokio::time::sleep(HELD + Duration::from_millis(1500) - held_since.elapsed()).await;
        assert_eq!(self.redkit.mode(), Mode::Fallback, "Redis is still down");
        assert_eq!(cache.get("k").await.unwrap().as_deref(), Some(value), "{hidden}");
    }

    fn close(self) {
        drop(self.redkit);
        self.background.shutdown_timeout(Duration::from_secs(5));
    }
}

/// The race above, forced: redkit's runtime (one worker) is blocked while the pass at
/// start-up waits for its journal read, so the outage begins — and writes — before that pass
/// cleans up. A clean-up that drew the line when it ran hid the write (it did, before the
/// line was drawn at registration: `Recovery::seal`).
#[test]
fn a_write_of_an_outage_that_begins_before_the_start_up_pass_ends_is_served() {
    let mut redis = RedisServer::start();
    let held = OneWorker::open(&redis);
    let cache: Cache<String> = held.on_background(|redkit| {
        // Spawns the pass at start-up; it runs up to its journal read (the store's own thread).
        let cache = redkit
            .cache("before_startup", CacheOptions::default().l1(false))
            .unwrap();
        // Then the one worker is held, so the pass cannot go on when the read returns.
        held.hold();
        cache
    });
    held.calls(async {
        redis.kill();
        let started = Instant::now();
        held.write_in_the_outage_and_read_back(
            &cache,
            started,
            "written in the outage",
            "premise: the outage began while the pass at start-up was held",
            "the pass at start-up hid a value this run's outage wrote",
        )
        .await;
    });
    held.close();
}

/// Holds redkit's runtime in its clean-up after an outage: registered last, its clean-up is
/// spawned last and so runs first on the worker, ahead of every other capability's.
struct HoldsCleanUp;

#[async_trait::async_trait]
impl redkit::Recovery for HoldsCleanUp {
    fn capability(&self) -> &'static str {
        "test_holds_clean_up"
    }
    async fn replay(&self, _entries: &[redkit::core::journal::Entry]) -> redkit::Result<()> {
        Ok(())
    }
    async fn after_close(&self, after: redkit::Closed) -> redkit::Result<()> {
        if after == redkit::Closed::OutageEnded {
            std::thread::sleep(HELD);
        }
        Ok(())
    }
}

/// The second race, forced: a second outage begins, and writes, right after a recovery,
/// before the cache's clean-up of the first has run (redkit's one-worker runtime is held
/// meanwhile). A clean-up that drew the line when it ran hid that write.
#[test]
fn a_write_of_an_outage_that_begins_before_the_last_clean_up_runs_is_served() {
    let mut redis = RedisServer::start();
    let held = OneWorker::open(&redis);
    let cache: Cache<String> = held.on_background(|redkit| {
        let cache = redkit
            .cache("before_clean_up", CacheOptions::default().l1(false))
            .unwrap();
        redkit.route().register_recovery(std::sync::Arc::new(HoldsCleanUp));
        cache
    });
    held.calls(async {
        let poke_until = async |mode: Mode| {
            eventually(LIMIT, &format!("mode {mode:?}"), async || {
                let _ = cache.get("poke").await;
                held.redkit.mode() == mode
            })
            .await
        };
        redis.kill();
        poke_until(Mode::Fallback).await;
        redis.restart();
        poke_until(Mode::Redis).await;
        // The clean-ups were spawned as the breaker closed; the first to run holds the worker.
        let closed = Instant::now();
        redis.kill();
        held.write_in_the_outage_and_read_back(
            &cache,
            closed,
            "written in the second outage",
            "premise: the second outage began while the clean-up was held",
            "the first outage's clean-up hid a value the second wrote",
        )
        .await;
    });
    held.close();
}

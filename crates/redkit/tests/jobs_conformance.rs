//! One job-queue suite, run unchanged on Redis, on the embedded store, and on the embedded store serving as the fallback: enqueue, fetch,
//! ack, fail → retry → dead, delay, priority, unique keys, caller ids, pause, leases,
//! release, retention, events and bad input.

mod common;

use std::time::{Duration, Instant};

use redkit::jobs::{Backoff, EnqueueOptions, JobEventKind, JobState, QueueOptions, Settled};
use redkit::{ErrorKind, Redkit};
use serde_json::json;

fn opts() -> QueueOptions {
    QueueOptions {
        lease: Duration::from_secs(5),
        backoff: Backoff::Fixed { delay_ms: 0 },
        ..QueueOptions::default()
    }
}

async fn basics(redkit: &Redkit) {
    let q = redkit.queue("basics", opts()).unwrap();
    let e = q.enqueue(&json!({"n": 1}), EnqueueOptions::new()).await.unwrap();
    assert!(e.created);
    let info = q.job(&e.id).await.unwrap().unwrap();
    assert_eq!(info.state, JobState::Waiting);
    assert_eq!(info.payload, r#"{"n":1}"#);

    let jobs = q.fetch("w1", 10).await.unwrap();
    assert_eq!(jobs.len(), 1);
    let job = &jobs[0];
    assert_eq!((job.id.as_str(), job.attempt, job.max_attempts), (e.id.as_str(), 1, 3));
    let info = q.job(&e.id).await.unwrap().unwrap();
    assert_eq!(info.state, JobState::Active);
    assert_eq!(info.worker.as_deref(), Some("w1"));
    assert!(info.lease_until_ms.is_some());
    assert!(
        q.fetch("w2", 10).await.unwrap().is_empty(),
        "a leased job is not handed out twice"
    );

    let mut events = q.events();
    assert_eq!(q.ack(&job.id, &job.token).await.unwrap(), Settled::Completed);
    assert_eq!(q.ack(&job.id, &job.token).await.unwrap(), Settled::LeaseLost);
    let event = tokio::time::timeout(Duration::from_secs(2), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (event.id.as_str(), event.kind),
        (e.id.as_str(), JobEventKind::Completed)
    );
    let info = q.job(&e.id).await.unwrap().unwrap();
    assert_eq!(info.state, JobState::Completed);
    assert!(info.finished_ms.is_some());
    let stats = q.stats().await.unwrap();
    assert_eq!(
        (stats.waiting, stats.active, stats.completed, stats.completed_total),
        (0, 0, 1, 1)
    );
    assert!(redkit.queues().await.unwrap().contains(&"basics".to_string()));
    let health = redkit.health().await;
    assert!(
        health.stats["jobs"]["completed"].as_u64().unwrap() >= 1,
        "{:?}",
        health.stats
    );
    assert!(health.capabilities.iter().any(|c| c.name == "jobs"));
}

async fn retries_and_dead(redkit: &Redkit) {
    let q = redkit.queue("retries", opts()).unwrap();
    let e = q
        .enqueue(&json!("x"), EnqueueOptions::new().max_attempts(2))
        .await
        .unwrap();
    let j = q.fetch("w", 1).await.unwrap().remove(0);
    assert_eq!(q.fail(&j.id, &j.token, "boom 1").await.unwrap(), Settled::Retrying);
    let info = q.job(&e.id).await.unwrap().unwrap();
    assert_eq!(info.last_error.as_deref(), Some("boom 1"));
    let j = q.fetch("w", 1).await.unwrap().remove(0);
    assert_eq!(j.attempt, 2);
    assert_eq!(q.fail(&j.id, &j.token, "boom 2").await.unwrap(), Settled::Dead);
    let dead = q.dead(0, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].state, dead[0].attempts), (JobState::Dead, 2));
    assert_eq!(dead[0].last_error.as_deref(), Some("boom 2"));
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.dead, stats.failed_total), (1, 2));
    assert!(q.fetch("w", 1).await.unwrap().is_empty());

    assert_eq!(q.retry_dead(Some(&e.id)).await.unwrap(), 1);
    let j = q.fetch("w", 1).await.unwrap().remove(0);
    assert_eq!(
        (j.id.as_str(), j.attempt),
        (e.id.as_str(), 1),
        "retried with attempts reset"
    );
    assert_eq!(q.ack(&j.id, &j.token).await.unwrap(), Settled::Completed);

    // Backoff delays the retry.
    let slow = q
        .enqueue(
            &json!("y"),
            EnqueueOptions::new()
                .max_attempts(1)
                .backoff(Backoff::Fixed { delay_ms: 0 }),
        )
        .await
        .unwrap();
    let j = q.fetch("w", 1).await.unwrap().remove(0);
    assert_eq!(q.fail(&j.id, &j.token, "once").await.unwrap(), Settled::Dead);
    assert_eq!(q.purge_dead(None).await.unwrap(), 1);
    assert!(q.job(&slow.id).await.unwrap().is_none());

    // A 2 s backoff: the two calls that look before it ends keep seconds of slack on a
    // loaded CI host, and fetch_wait wakes when it ends rather than after a guessed sleep.
    let backoff = Duration::from_secs(2);
    let backed = q
        .enqueue(
            &json!("z"),
            EnqueueOptions::new().backoff(Backoff::Fixed {
                delay_ms: backoff.as_millis() as u64,
            }),
        )
        .await
        .unwrap();
    let j = q.fetch("w", 1).await.unwrap().remove(0);
    let failed_at = Instant::now();
    assert_eq!(q.fail(&j.id, &j.token, "later").await.unwrap(), Settled::Retrying);
    assert_eq!(q.job(&backed.id).await.unwrap().unwrap().state, JobState::Delayed);
    let early = q.fetch("w", 1).await.unwrap();
    assert!(
        failed_at.elapsed() < backoff,
        "host too slow for this test's premise: the backoff ended before the early fetch"
    );
    assert!(early.is_empty(), "not before its backoff");
    let got = q
        .fetch_wait("w", 1, Duration::from_secs(5), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(got[0].id, backed.id);
}

async fn delay_and_priority(redkit: &Redkit) {
    // Leases far longer than the test: the jobs fetched here are never acked, and one
    // whose lease ran out would be handed out again by the fetches that expect none.
    let lease = Duration::from_secs(60);
    let q = redkit.queue("order", QueueOptions { lease, ..opts() }).unwrap();
    // 3 s: the eight round trips below must all happen before "later" is due, with seconds
    // of slack on a loaded CI host.
    let delay = Duration::from_secs(3);
    let enqueued_at = Instant::now();
    let later = q
        .enqueue(&json!("later"), EnqueueOptions::new().delay(delay))
        .await
        .unwrap();
    assert_eq!(q.job(&later.id).await.unwrap().unwrap().state, JobState::Delayed);
    let mut ids = Vec::new();
    for (name, priority) in [("low", 0), ("high", 10), ("mid", 5), ("low2", 0), ("urgent", 1000)] {
        let e = q
            .enqueue(&json!(name), EnqueueOptions::new().id(name).priority(priority))
            .await
            .unwrap();
        ids.push(e.id);
    }
    let got: Vec<String> = q.fetch("w", 10).await.unwrap().into_iter().map(|j| j.id).collect();
    let delayed = q.stats().await.unwrap().delayed;
    assert!(
        enqueued_at.elapsed() < delay,
        "host too slow for this test's premise: \"later\" came due before the checks"
    );
    assert_eq!(got, ["urgent", "high", "mid", "low", "low2"]);
    assert_eq!(delayed, 1);
    // Waits for it to come due (fetch_wait wakes at its run time), not a guessed sleep.
    let got = q.fetch_wait("w", 10, lease, Duration::from_secs(10)).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, later.id, "promoted once due");

    // run_at in the past runs now.
    let past = std::time::SystemTime::now() - Duration::from_secs(60);
    q.enqueue(&json!("past"), EnqueueOptions::new().id("past").run_at(past))
        .await
        .unwrap();
    assert_eq!(q.fetch("w", 10).await.unwrap()[0].id, "past");

    // A delayed job due before the one already waiting is promoted at its own time, not
    // the other's (Redis keeps the earliest run-at so a lease need not look every time).
    q.enqueue(
        &json!("far"),
        EnqueueOptions::new().id("far").delay(Duration::from_secs(60)),
    )
    .await
    .unwrap();
    assert!(q.fetch("w", 10).await.unwrap().is_empty());
    // 2 s: a loaded CI host can stall this task for a long while between the enqueue and
    // the fetch, and the job would then be due already.
    let soon = Duration::from_secs(2);
    let enqueued_at = Instant::now();
    q.enqueue(&json!("soon"), EnqueueOptions::new().id("soon").delay(soon))
        .await
        .unwrap();
    let early = q.fetch("w", 10).await.unwrap();
    assert!(
        enqueued_at.elapsed() < soon,
        "host too slow for this test's premise: \"soon\" came due before the early fetch"
    );
    assert!(early.is_empty(), "not before its delay");
    // A plain fetch, not fetch_wait: it is the lease's own look at delayed jobs that is
    // tested. Sleeping longer than the delay can only make the job more due.
    tokio::time::sleep(soon + Duration::from_millis(500)).await;
    let got: Vec<String> = q.fetch("w", 10).await.unwrap().into_iter().map(|j| j.id).collect();
    assert_eq!(got, ["soon"], "promoted once due, the later job still delayed");
}

async fn unique_and_ids(redkit: &Redkit) {
    let q = redkit.queue("unique", opts()).unwrap();
    let a = q
        .enqueue(&json!(1), EnqueueOptions::new().unique_key("user:7"))
        .await
        .unwrap();
    let b = q
        .enqueue(&json!(2), EnqueueOptions::new().unique_key("user:7"))
        .await
        .unwrap();
    assert_eq!((b.id.as_str(), b.created), (a.id.as_str(), false));
    let j = q.fetch("w", 10).await.unwrap();
    assert_eq!(j.len(), 1);
    let c = q
        .enqueue(&json!(3), EnqueueOptions::new().unique_key("user:7"))
        .await
        .unwrap();
    assert!(!c.created, "still pending while active");
    q.ack(&j[0].id, &j[0].token).await.unwrap();
    let d = q
        .enqueue(&json!(4), EnqueueOptions::new().unique_key("user:7"))
        .await
        .unwrap();
    assert!(d.created && d.id != a.id, "a finished job frees its key");

    let first = q
        .enqueue(&json!("a"), EnqueueOptions::new().id("order-1"))
        .await
        .unwrap();
    let again = q
        .enqueue(&json!("b"), EnqueueOptions::new().id("order-1"))
        .await
        .unwrap();
    assert!(first.created && !again.created);
    assert_eq!(q.job("order-1").await.unwrap().unwrap().payload, r#""a""#);

    let batch = q
        .enqueue_batch(&[
            (json!(1), EnqueueOptions::new().id("b1")),
            (json!(2), EnqueueOptions::new().id("order-1")),
            (json!(3), EnqueueOptions::new().id("b3")),
        ])
        .await
        .unwrap();
    let created: Vec<bool> = batch.iter().map(|e| e.created).collect();
    assert_eq!(created, [true, false, true]);
}

async fn pause_leases_release(redkit: &Redkit) {
    let q = redkit.queue("control", opts()).unwrap();
    q.enqueue(&json!(1), EnqueueOptions::new().id("p1")).await.unwrap();
    q.pause().await.unwrap();
    assert!(q.stats().await.unwrap().paused);
    assert!(q.fetch("w", 10).await.unwrap().is_empty(), "paused");
    q.resume().await.unwrap();
    // A 1 s first lease, renewed for 4 s: the check below comes after the first lease has
    // surely ended (sleeps only ever run long) and, with seconds of slack on a loaded CI
    // host, before the renewed one does. Nothing fetches in between, so the first lease
    // ending before the renewal changes nothing.
    let (first, renewed) = (Duration::from_secs(1), Duration::from_secs(4));
    let j = q.fetch_wait("w", 10, first, Duration::from_secs(1)).await.unwrap();
    assert_eq!(j.len(), 1);

    // Heartbeats keep the lease; progress is stored.
    let j = &j[0];
    tokio::time::sleep(Duration::from_millis(200)).await;
    let beat_at = Instant::now();
    assert!(q.progress(&j.id, &j.token, &json!({"pct": 50}), renewed).await.unwrap());
    // The renewed lease ends by then: the store renewed it before the call returned.
    let renewed_until = Instant::now() + renewed;
    tokio::time::sleep(first + Duration::from_millis(300)).await;
    let stolen = q.fetch("w2", 10).await.unwrap();
    assert!(
        beat_at.elapsed() < renewed,
        "host too slow for this test's premise: the renewed lease ended before the check"
    );
    assert!(stolen.is_empty(), "the heartbeat extended the lease");
    assert_eq!(
        q.job("p1").await.unwrap().unwrap().progress.as_deref(),
        Some(r#"{"pct":50}"#)
    );

    // Without heartbeats the lease ends and the job is delivered again, attempt counted.
    // A sleep past its end, not fetch_wait: fetch_wait does not wake when a lease ends.
    let past_lease = renewed_until + Duration::from_millis(300);
    tokio::time::sleep(past_lease.saturating_duration_since(Instant::now())).await;
    let again = q.fetch("w2", 10).await.unwrap();
    assert_eq!((again[0].id.as_str(), again[0].attempt), ("p1", 2));
    assert_eq!(again[0].progress.as_deref(), Some(r#"{"pct":50}"#), "progress survives");
    assert_eq!(q.ack(&j.id, &j.token).await.unwrap(), Settled::LeaseLost);
    assert!(!q.heartbeat(&j.id, &j.token, Duration::from_secs(1)).await.unwrap());
    assert_eq!(q.stats().await.unwrap().lease_expired_total, 1);

    // Release hands it back without counting the attempt.
    assert_eq!(
        q.release(&again[0].id, &again[0].token).await.unwrap(),
        Settled::Released
    );
    let third = q.fetch("w3", 10).await.unwrap();
    assert_eq!(third[0].attempt, 2);
    q.ack(&third[0].id, &third[0].token).await.unwrap();
}

async fn retention(redkit: &Redkit) {
    let q = redkit
        .queue(
            "retention",
            QueueOptions {
                keep_completed: 0,
                ..opts()
            },
        )
        .unwrap();
    let e = q.enqueue(&json!(1), EnqueueOptions::new()).await.unwrap();
    let j = q.fetch("w", 1).await.unwrap().remove(0);
    q.ack(&j.id, &j.token).await.unwrap();
    assert!(q.job(&e.id).await.unwrap().is_none(), "not kept");
    assert_eq!(q.stats().await.unwrap().completed_total, 1);

    let q = redkit
        .queue(
            "retention2",
            QueueOptions {
                keep_completed: 5,
                ..opts()
            },
        )
        .unwrap();
    for i in 0..200 {
        q.enqueue(&json!(i), EnqueueOptions::new()).await.unwrap();
    }
    while let Ok(jobs) = q.fetch("w", 50).await {
        if jobs.is_empty() {
            break;
        }
        for j in jobs {
            q.ack(&j.id, &j.token).await.unwrap();
        }
    }
    let stats = q.stats().await.unwrap();
    assert_eq!(stats.completed_total, 200);
    // Both stores trim every 64 completions.
    assert!(stats.completed <= 5 + 64, "completed kept: {}", stats.completed);
}

async fn bad_input(redkit: &Redkit) {
    let q = redkit
        .queue(
            "bad",
            QueueOptions {
                max_payload_bytes: 100,
                ..opts()
            },
        )
        .unwrap();
    q.enqueue(&json!("keep"), EnqueueOptions::new().id("kept"))
        .await
        .unwrap();
    let field = |e: redkit::Error| e.to_string();
    let e = q
        .enqueue(&json!(1), EnqueueOptions::new().id("no spaces"))
        .await
        .unwrap_err();
    assert!(e.kind() == ErrorKind::InvalidInput && field(e).contains("id"));
    let e = q
        .enqueue(&json!(1), EnqueueOptions::new().priority(5000))
        .await
        .unwrap_err();
    assert!(field(e).contains("priority"));
    let e = q
        .enqueue(&json!(1), EnqueueOptions::new().max_attempts(0))
        .await
        .unwrap_err();
    assert!(field(e).contains("max_attempts"));
    // A run time no store can order (past 2^63 ms) is refused, not run at once.
    let far = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1 << 63);
    let e = q
        .enqueue(&json!(1), EnqueueOptions::new().run_at(far))
        .await
        .unwrap_err();
    assert!(e.kind() == ErrorKind::InvalidInput && field(e).contains("run_at"));
    let e = q
        .enqueue(&json!("x".repeat(200)), EnqueueOptions::new())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooLarge);
    assert!(field(e).contains("payload"));
    let e = q.ack("kept", "forged").await.unwrap_err();
    assert!(field(e).contains("token"));
    let e = q.fetch("w", 0).await.unwrap_err();
    assert!(field(e).contains("max"));
    assert!(redkit.queue("no/slash", opts()).is_err());
    assert!(
        redkit
            .queue(
                "q",
                QueueOptions {
                    lease: Duration::ZERO,
                    ..opts()
                }
            )
            .is_err()
    );
    let too_many: Vec<_> = (0..1001).map(|i| (json!(i), EnqueueOptions::new())).collect();
    assert!(q.enqueue_batch(&too_many).await.is_err());
    let with_bad: Vec<_> = vec![
        (json!(1), EnqueueOptions::new().id("fine")),
        (json!(2), EnqueueOptions::new().id("not fine")),
    ];
    assert!(q.enqueue_batch(&with_bad).await.is_err());
    assert!(q.job("fine").await.unwrap().is_none(), "a refused batch stores nothing");
    assert_eq!(
        q.job("kept").await.unwrap().unwrap().state,
        JobState::Waiting,
        "nothing stored was damaged"
    );
}

async fn suite(redkit: &Redkit) {
    basics(redkit).await;
    retries_and_dead(redkit).await;
    delay_and_priority(redkit).await;
    unique_and_ids(redkit).await;
    pause_leases_release(redkit).await;
    retention(redkit).await;
    bad_input(redkit).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis() {
    suite(&common::on_redis().await.redkit).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_embedded() {
    suite(&common::on_embedded().await.redkit).await;
}

/// Without Redis configured, a token that says Redis leased the job names no lease: it is
/// settled and renewed as lost (HTTP 409), and nothing is journaled for a Redis that will
/// never replay it (it was answered "deferred" and journaled, and a heartbeat was 503).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_a_redis_lease_token_is_a_lost_lease() {
    let h = common::on_embedded().await;
    let q = h.redkit.queue("no-redis", opts()).unwrap();
    q.enqueue(&json!(1), EnqueueOptions::new().id("j")).await.unwrap();
    let leased = q.fetch("w", 1).await.unwrap().remove(0);
    let forged = format!("r-{}", leased.token.trim_start_matches("e-"));
    assert_eq!(q.ack("j", &forged).await.unwrap(), Settled::LeaseLost);
    assert_eq!(q.fail("j", &forged, "no").await.unwrap(), Settled::LeaseLost);
    assert_eq!(q.release("j", &forged).await.unwrap(), Settled::LeaseLost);
    assert!(!q.heartbeat("j", &forged, Duration::from_secs(5)).await.unwrap());
    assert!(
        !q.progress("j", &forged, &json!(1), Duration::from_secs(5))
            .await
            .unwrap()
    );
    assert!(h.redkit.health().await.journal_pending.values().all(|&n| n == 0));
    assert_eq!(
        q.job("j").await.unwrap().unwrap().state,
        JobState::Active,
        "the real lease is untouched"
    );
    assert_eq!(q.ack("j", &leased.token).await.unwrap(), Settled::Completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_fallback() {
    let h = common::on_fallback().await;
    suite(&h.redkit).await;
    assert_eq!(h.redkit.mode(), redkit::Mode::Fallback, "the suite ran on the fallback");
}

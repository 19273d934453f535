//! Rate limits on Redis and on the embedded store with the same scenarios; shared limits
//! across instances; permits; lists, shadow and the blocked-key cache; the fallback
//! limiter through a Redis SIGKILL; the tower layer's headers.

mod common;

use std::time::{Duration, Instant};

use common::{PATIENT, config, eventually, patient_config, redis_calls};
use redkit::ratelimit::layer::{KeyBy, PeerAddr, RateLimitLayer, TrustedProxies};
use redkit::ratelimit::{Acquired, Algorithm, Basis, Policy};
use redkit::{ErrorKind, Mode, Redkit};
use redkit_testkit::RedisServer;

const COUNTING: [Algorithm; 5] = [
    Algorithm::Gcra,
    Algorithm::TokenBucket,
    Algorithm::SlidingWindow,
    Algorithm::SlidingLog,
    Algorithm::FixedWindow,
];

async fn suite(redkit: &Redkit) {
    let limits = redkit.rate_limiter();
    let minute = Duration::from_secs(60);
    // 100 an hour, not a minute: GCRA and the token bucket give back a unit every 36 s, so
    // none comes back during the 101 checks however slow the host, and the counts stay
    // exact (at 100 a minute one came back every 600 ms).
    let hour = Duration::from_secs(3600);
    let unit = hour / 100;
    for a in COUNTING {
        let name = format!("p-{a:?}");
        limits.define(Policy::new(&name, a, 100, hour)).unwrap();
        let started = Instant::now();
        for i in 0..100 {
            let d = limits.check(&name, "user:1", 1).await.unwrap();
            assert!(d.allowed, "{a:?}: request {i} refused");
            assert_eq!(d.remaining, 99 - i, "{a:?}: remaining is exact");
        }
        let d = limits.check(&name, "user:1", 1).await.unwrap();
        let elapsed = started.elapsed();
        assert!(!d.allowed, "{a:?}: the 101st is refused");
        assert_eq!((d.limit, d.remaining, d.window_s), (100, 0, 3600));
        let retry = d.retry_after.expect("a refusal says when to retry");
        match a {
            // One unit comes back every 36 s.
            Algorithm::Gcra | Algorithm::TokenBucket => {
                assert!(
                    retry <= unit && retry + elapsed >= unit - Duration::from_millis(10),
                    "{a:?}: {retry:?}"
                )
            }
            // The oldest entry leaves the log an hour after it was made.
            Algorithm::SlidingLog => assert!(
                retry <= hour && retry + elapsed >= hour - Duration::from_millis(5),
                "{retry:?}"
            ),
            Algorithm::FixedWindow => assert_eq!(Some(d.reset_after), d.retry_after, "the window's end"),
            Algorithm::SlidingWindow => assert!(retry > Duration::ZERO && retry <= 2 * hour, "{retry:?}"),
            Algorithm::Concurrency => unreachable!(),
        }
        assert_eq!(
            limits.check(&name, "user:2", 1).await.unwrap().remaining,
            99,
            "keys are separate"
        );
        if matches!(a, Algorithm::Gcra | Algorithm::TokenBucket) {
            // Refill, on a policy quick enough to wait for: one unit per 2 s, so the
            // refusal right after the first check has seconds of slack.
            let quick = format!("q-{a:?}");
            let period = Duration::from_secs(2);
            limits.define(Policy::new(&quick, a, 1, period)).unwrap();
            let started = Instant::now();
            assert!(limits.check(&quick, "user:1", 1).await.unwrap().allowed);
            let d = limits.check(&quick, "user:1", 1).await.unwrap();
            assert!(
                started.elapsed() < period,
                "host too slow for this test's premise: the unit came back before the second check"
            );
            assert!(!d.allowed, "{a:?}: the second in 2 s is refused");
            let retry = d.retry_after.expect("a refusal says when to retry");
            assert!(retry <= period, "{a:?}: {retry:?}");
            tokio::time::sleep(retry + Duration::from_millis(20)).await;
            assert!(
                limits.check(&quick, "user:1", 1).await.unwrap().allowed,
                "{a:?}: allowed after retry_after"
            );
        }
    }

    // Cost, burst and bad input.
    limits
        .define(Policy::new("burst", Algorithm::Gcra, 10, hour).burst(4))
        .unwrap();
    assert!(limits.check("burst", "k", 4).await.unwrap().allowed);
    assert!(!limits.check("burst", "k", 1).await.unwrap().allowed);
    let err = limits.check("burst", "k", 5).await.unwrap_err();
    assert!(
        err.to_string().contains("cost") && err.to_string().contains("burst of 4"),
        "{err}"
    );
    assert_eq!(
        limits.check("burst", "k", 0).await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        limits.check("nope", "k", 1).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    for (bad, field) in [
        (Policy::new("z", Algorithm::Gcra, 0, minute), "limit"),
        (Policy::new("z", Algorithm::Gcra, 10, Duration::ZERO), "period"),
        (
            Policy::new("z", Algorithm::FixedWindow, 10, Duration::from_secs(400 * 86_400)),
            "period",
        ),
        (Policy::new("z", Algorithm::FixedWindow, 10, minute).burst(3), "burst"),
        (Policy::new("z", Algorithm::Gcra, 10, minute).burst(0), "burst"),
        (Policy::new("z", Algorithm::SlidingLog, 1_000_000, minute), "limit"),
        (
            Policy::new("z", Algorithm::Gcra, 10, minute).fallback_share(0.0),
            "fallback_share",
        ),
        (Policy::new("bad name", Algorithm::Gcra, 10, minute), "name"),
        (
            Policy::new("z", Algorithm::Gcra, 10, minute).allow(["a"]).deny(["a"]),
            "allow",
        ),
    ] {
        let err = limits.define(bad).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.to_string().contains(field), "{field}: {err}");
    }
    assert!(
        limits.policy("burst").is_some(),
        "refused definitions leave existing ones alone"
    );

    // Lists, shadow mode, the blocked-key cache. An hour's window, not a minute's: the counts
    // below assume no window boundary falls between the checks.
    limits
        .define(
            Policy::new("lists", Algorithm::FixedWindow, 1, hour)
                .allow(["admin"])
                .deny(["abuser"]),
        )
        .unwrap();
    for _ in 0..5 {
        let d = limits.check("lists", "admin", 1).await.unwrap();
        assert!(d.allowed && d.basis == Basis::AllowList);
    }
    let d = limits.check("lists", "abuser", 1).await.unwrap();
    assert!(!d.allowed && d.basis == Basis::DenyList);
    assert!(limits.check("lists", "someone", 1).await.unwrap().allowed);
    let first = limits.check("lists", "someone", 1).await.unwrap();
    assert!(!first.allowed && first.basis != Basis::Blocked);
    let again = limits.check("lists", "someone", 1).await.unwrap();
    assert!(
        !again.allowed && again.basis == Basis::Blocked,
        "answered without a round trip"
    );
    assert!(again.retry_after.unwrap() <= first.retry_after.unwrap());
    // Redefining the policy forgets refusals remembered under the old definition.
    limits
        .define(
            Policy::new("lists", Algorithm::FixedWindow, 5, hour)
                .allow(["admin"])
                .deny(["abuser"]),
        )
        .unwrap();
    let after = limits.check("lists", "someone", 1).await.unwrap();
    assert!(after.allowed && after.basis == Basis::Limiter, "{after:?}");

    limits
        .define(Policy::new("shadow", Algorithm::Gcra, 1, minute).shadow(true))
        .unwrap();
    assert!(limits.check("shadow", "k", 1).await.unwrap().allowed);
    let d = limits.check("shadow", "k", 1).await.unwrap();
    assert!(d.allowed && d.shadow_denied, "shadow mode never refuses");
    let stats = limits.stats();
    assert_eq!((stats["shadow"].allowed, stats["shadow"].shadow_denied), (1, 1));
    assert_eq!(
        stats["lists"].blocked_cache_hits, 0,
        "counters restart with a redefined policy"
    );

    // Concurrency: permits released on drop, reclaimed after the lease. A 2 s lease: the
    // first two permits must still be held at the third request, with seconds of slack on
    // a loaded CI host.
    let lease = Duration::from_secs(2);
    limits
        .define(Policy::new("jobs", Algorithm::Concurrency, 2, lease))
        .unwrap();
    let started = Instant::now();
    let Acquired::Granted(one) = limits.acquire("jobs", "worker").await.unwrap() else {
        panic!("first permit")
    };
    let Acquired::Granted(two) = limits.acquire("jobs", "worker").await.unwrap() else {
        panic!("second permit")
    };
    let extra = limits.acquire("jobs", "worker").await.unwrap();
    assert!(
        started.elapsed() < lease,
        "host too slow for this test's premise: the first lease ended before the third request"
    );
    let Acquired::Denied(d) = extra else {
        panic!("third must wait")
    };
    assert!(d.retry_after.unwrap() <= lease);
    drop(one);
    let mut third = None;
    eventually(Duration::from_secs(5), "dropped permit released", async || match limits
        .acquire("jobs", "worker")
        .await
        .unwrap()
    {
        Acquired::Granted(p) => {
            third = Some(p);
            true
        }
        _ => false,
    })
    .await;
    // A holder that vanishes without releasing: its lease runs out.
    std::mem::forget(two);
    std::mem::forget(third);
    // Past both leases: the later one began when `third` was granted, before this sleep.
    tokio::time::sleep(lease + Duration::from_millis(100)).await;
    let Acquired::Granted(p) = limits.acquire("jobs", "worker").await.unwrap() else {
        panic!("lease reclaimed")
    };
    assert!(p.release().await.unwrap());
    assert_eq!(
        limits.check("jobs", "w", 1).await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis() {
    let h = common::on_redis().await;
    suite(&h.redkit).await;
    let redis = h.redis.as_ref().unwrap();
    assert!(redis.command(&["EXISTS", "rk:{rl:p-Gcra:user%3A1}"]).unwrap() == "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_embedded() {
    suite(&common::on_embedded().await.redkit).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_limit_exactly() {
    let redis = RedisServer::start();
    let (a, b) = common::two_instances(&redis).await;
    let (a, b) = (a.redkit, b.redkit);
    for a_algo in COUNTING {
        let name = format!("shared-{a_algo:?}");
        let mut tasks = Vec::new();
        for redkit in [&a, &b] {
            let limits = redkit.rate_limiter();
            limits
                .define(Policy::new(&name, a_algo, 100, Duration::from_secs(3600)))
                .unwrap();
            for _ in 0..100 {
                let (limits, name) = (limits.clone(), name.clone());
                tasks.push(tokio::spawn(async move {
                    limits.check(&name, "tenant", 1).await.unwrap().allowed
                }));
            }
        }
        let mut allowed = 0;
        for t in tasks {
            allowed += u32::from(t.await.unwrap());
        }
        assert_eq!(
            allowed, 100,
            "{a_algo:?}: 200 requests from two instances, 100 allowed in total"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_switches_to_the_fallback_share_and_back() {
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    // A patient timeout: a call made while open that paid it would stand out.
    let response_timeout = PATIENT;
    let redkit = Redkit::open(patient_config(redis.url(), dir.path())).await.unwrap();
    let redis_checks = || redis_calls(&redkit, &["ratelimit_fixed_window"]);
    let limits = redkit.rate_limiter();
    limits
        .define(Policy::new("api", Algorithm::FixedWindow, 100, Duration::from_secs(3600)).fallback_share(0.5))
        .unwrap();
    assert_eq!(limits.check("api", "warmup", 1).await.unwrap().basis, Basis::Limiter);
    assert!(redis_checks() >= 1, "a check on Redis is counted");
    redis.kill();
    eventually(Duration::from_secs(15), "fallback", async || {
        let _ = limits.check("api", "probe", 1).await;
        redkit.mode() == Mode::Fallback
    })
    .await;
    let checks_when_open = redis_checks();
    let mut allowed = 0;
    for _ in 0..100 {
        let started = Instant::now();
        let d = limits.check("api", "user", 1).await.unwrap();
        let took = started.elapsed();
        assert!(
            took < response_timeout / 2,
            "a check made while open took {took:?} (paying the timeout would take {response_timeout:?})"
        );
        if d.allowed {
            assert_eq!(
                (d.basis, d.limit),
                (Basis::Fallback, 50),
                "decided locally on the share"
            );
        }
        allowed += u32::from(d.allowed);
    }
    assert_eq!(allowed, 50, "the local limiter enforces its share");
    assert_eq!(
        redis_checks(),
        checks_when_open,
        "no check is sent to Redis while the breaker is open"
    );
    let health = serde_json::to_value(redkit.health().await).unwrap();
    assert_eq!(health["stats"]["ratelimit"]["fallback_limiter_active"], true);
    // 50 allowed + the first refusal; later refusals come from the blocked-key cache.
    let api = &health["stats"]["ratelimit"]["policies"]["api"];
    assert!(api["fallback_decisions"].as_u64().unwrap() >= 51, "{api}");
    assert!(api["blocked_cache_hits"].as_u64().unwrap() >= 40, "{api}");

    redis.restart();
    eventually(Duration::from_secs(10), "back on redis", async || {
        redkit.mode() == Mode::Redis
    })
    .await;
    let d = limits.check("api", "user2", 1).await.unwrap();
    assert_eq!((d.basis, d.limit), (Basis::Limiter, 100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tower_layer_sets_headers_on_allowed_and_refused_responses() {
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    let dir = tempfile::tempdir().unwrap();
    let redkit = Redkit::open(config(None, dir.path())).await.unwrap();
    let limits = redkit.rate_limiter();
    limits
        // An hour's window: no window boundary falls between the requests below (except with
        // negligible probability), however slow the host.
        .define(Policy::new("web", Algorithm::FixedWindow, 2, Duration::from_secs(3600)))
        .unwrap();
    let app = axum::Router::new().route("/", get(|| async { "hello" })).layer(
        RateLimitLayer::new(limits.clone(), "web")
            .key_by(KeyBy::ClientIp(TrustedProxies::parse(&["10.0.0.0/8"]).unwrap()))
            .legacy_headers(true)
            .bypass(|req| req.headers.contains_key("x-admin")),
    );
    let request = |peer: &str, forwarded: Option<&str>, admin: bool| {
        let mut r = http::Request::builder().uri("/");
        if let Some(f) = forwarded {
            r = r.header("x-forwarded-for", f);
        }
        if admin {
            r = r.header("x-admin", "1");
        }
        let mut r = r.body(Body::empty()).unwrap();
        r.extensions_mut().insert(PeerAddr(peer.parse().unwrap()));
        r
    };
    let ok = app.clone().oneshot(request("1.2.3.4:1000", None, false)).await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["ratelimit-policy"], "\"web\";q=2;w=3600");
    let rl = ok.headers()["ratelimit"].to_str().unwrap();
    assert!(rl.starts_with("\"web\";r=1;t="), "{rl}");
    assert_eq!(ok.headers()["x-ratelimit-limit"], "2");
    assert_eq!(ok.headers()["x-ratelimit-remaining"], "1");
    assert!(!ok.headers().contains_key("retry-after"));

    // Behind a trusted proxy the forwarded client is the key: 1.2.3.4 again.
    let ok = app
        .clone()
        .oneshot(request("10.1.1.1:80", Some("9.9.9.9, 1.2.3.4"), false))
        .await
        .unwrap();
    assert_eq!(ok.headers()["x-ratelimit-remaining"], "0");
    let refused = app.clone().oneshot(request("1.2.3.4:1000", None, false)).await.unwrap();
    assert_eq!(refused.status(), 429);
    let retry: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=3600).contains(&retry));
    assert!(refused.headers()["ratelimit"].to_str().unwrap().contains(";r=0;"));
    let body = axum::body::to_bytes(refused.into_body(), 1 << 16).await.unwrap();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["error"]["code"], "limit_exceeded");

    let admin = app.clone().oneshot(request("1.2.3.4:1000", None, true)).await.unwrap();
    assert_eq!(admin.status(), 200, "bypass predicate");
    assert!(!admin.headers().contains_key("ratelimit"));
    let other = app.clone().oneshot(request("5.6.7.8:1000", None, false)).await.unwrap();
    assert_eq!(other.status(), 200, "other clients have their own limit");
    // An untrusted peer cannot pick its key with X-Forwarded-For.
    let spoof = app
        .oneshot(request("1.2.3.4:1000", Some("7.7.7.7"), false))
        .await
        .unwrap();
    assert_eq!(spoof.status(), 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_scripts_and_embedded_algorithms_decide_alike() {
    let redis = RedisServer::start();
    let (dr, de) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let on_redis = Redkit::open(config(Some(redis.url()), dr.path())).await.unwrap();
    let embedded = Redkit::open(config(None, de.path())).await.unwrap();
    // A period of an hour: the few milliseconds this takes refill nothing and cross no
    // window boundary (except with negligible probability), so decisions must be identical.
    for a in COUNTING {
        let mut seq = Vec::new();
        for redkit in [&on_redis, &embedded] {
            let limits = redkit.rate_limiter();
            let name = format!("same-{a:?}");
            limits
                .define(Policy::new(&name, a, 40, Duration::from_secs(3600)).burst_if_applicable(a, 50))
                .unwrap();
            let mut decisions = Vec::new();
            let mut x: u64 = 7;
            for _ in 0..80 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let cost = 1 + (x >> 33) % 5;
                let d = limits.check(&name, "k", cost).await.unwrap();
                decisions.push((cost, d.allowed, d.remaining));
            }
            seq.push(decisions);
        }
        assert_eq!(seq[0], seq[1], "{a:?}: Redis and embedded disagree");
    }
}

trait BurstIfApplicable {
    fn burst_if_applicable(self, a: Algorithm, burst: u64) -> Self;
}

impl BurstIfApplicable for Policy {
    fn burst_if_applicable(self, a: Algorithm, burst: u64) -> Self {
        match a {
            Algorithm::Gcra | Algorithm::TokenBucket => self.burst(burst),
            _ => self,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tower_layer_limits_empty_and_long_keys_and_never_fails_open_on_misconfiguration() {
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    let h = common::on_embedded().await;
    let limits = h.redkit.rate_limiter();
    // An hour's window: no window boundary falls between a key's two requests (except with
    // negligible probability).
    limits
        .define(Policy::new("hdr", Algorithm::FixedWindow, 1, Duration::from_secs(3600)))
        .unwrap();
    let layer = |policy: &str| {
        axum::Router::new()
            .route("/", get(|| async { "hello" }))
            .layer(RateLimitLayer::new(limits.clone(), policy).key_by(KeyBy::Header("x-key".parse().unwrap())))
    };
    let with_key = |key: &str| {
        http::Request::builder()
            .uri("/")
            .header("x-key", key)
            .body(Body::empty())
            .unwrap()
    };
    let app = layer("hdr");
    for key in ["", &"k".repeat(5000)] {
        assert_eq!(app.clone().oneshot(with_key(key)).await.unwrap().status(), 200);
        assert_eq!(
            app.clone().oneshot(with_key(key)).await.unwrap().status(),
            429,
            "a key of {} bytes is limited like any other",
            key.len()
        );
    }
    let misconfigured = layer("no-such-policy").oneshot(with_key("a")).await.unwrap();
    assert_eq!(misconfigured.status(), 500, "not let through unlimited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_and_keys_never_share_a_counter_however_they_are_named() {
    for h in [common::on_redis().await, common::on_embedded().await] {
        let limits = h.redkit.rate_limiter();
        // Hours, not minutes: no window boundary falls between the checks (except with negligible
        // probability), and GCRA gives nothing back meanwhile.
        limits
            .define(Policy::new(
                "login",
                Algorithm::FixedWindow,
                1,
                Duration::from_secs(3600),
            ))
            .unwrap();
        limits
            .define(Policy::new("login:user", Algorithm::Gcra, 1, Duration::from_secs(3600)))
            .unwrap();
        assert!(limits.check("login", "user:42", 1).await.unwrap().allowed);
        // Joined with ':' these would be one Redis key, holding another algorithm's state.
        assert!(limits.check("login:user", "42", 1).await.unwrap().allowed);
        assert!(!limits.check("login", "user:42", 1).await.unwrap().allowed);
        assert!(!limits.check("login:user", "42", 1).await.unwrap().allowed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_policies_reach_every_instance_and_survive_outages_and_restarts() {
    let mut redis = RedisServer::options().durable().start();
    let (a, b) = common::two_instances(&redis).await;
    let (la, lb) = (a.redkit.rate_limiter(), b.redkit.rate_limiter());
    la.publish(Policy::new(
        "shared",
        Algorithm::FixedWindow,
        5,
        Duration::from_secs(60),
    ))
    .await
    .unwrap();
    eventually(Duration::from_secs(5), "B has A's policy", async || {
        lb.policy("shared").is_some()
    })
    .await;
    assert_eq!(lb.policy("shared").unwrap().limit, 5);
    lb.publish(Policy::new(
        "shared",
        Algorithm::FixedWindow,
        9,
        Duration::from_secs(60),
    ))
    .await
    .unwrap();
    eventually(Duration::from_secs(5), "A has B's change", async || {
        la.policy("shared").is_some_and(|p| p.limit == 9)
    })
    .await;
    la.unpublish("shared").await.unwrap();
    eventually(Duration::from_secs(5), "removed on B", async || {
        lb.policy("shared").is_none()
    })
    .await;

    // Published during an outage: on every instance once Redis is back.
    redis.kill();
    eventually(Duration::from_secs(5), "A in fallback", async || {
        let _ = la.check("nope", "k", 1).await;
        let _ = a.redkit.health().await;
        a.redkit.mode() == redkit::Mode::Fallback
    })
    .await;
    la.publish(Policy::new("outage", Algorithm::Gcra, 3, Duration::from_secs(1)))
        .await
        .unwrap();
    assert!(la.policy("outage").is_some(), "applied here at once");
    redis.restart();
    eventually(Duration::from_secs(10), "B has the outage's policy", async || {
        lb.policy("outage").is_some()
    })
    .await;

    // Without Redis they are kept across restarts.
    let dir = tempfile::tempdir().unwrap();
    {
        let redkit = Redkit::open(config(None, dir.path())).await.unwrap();
        redkit
            .rate_limiter()
            .publish(Policy::new("kept", Algorithm::FixedWindow, 1, Duration::from_secs(60)))
            .await
            .unwrap();
    }
    let redkit = Redkit::open(config(None, dir.path())).await.unwrap();
    let limiter = redkit.rate_limiter();
    eventually(Duration::from_secs(5), "loaded at start", async || {
        limiter.policy("kept").is_some()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpublished_policy_never_comes_back_from_a_load_that_read_before_its_removal() {
    // The instance's own follower reloads the shared set whenever it is announced — the
    // publish below announces it — and a reload that read the set before the unpublish
    // must not install the policy again after it.
    let redis = RedisServer::start();
    let r = Redkit::open(config(Some(redis.url()), tempfile::tempdir().unwrap().path()))
        .await
        .unwrap();
    let limiter = r.rate_limiter();
    for i in 0..300 {
        let name = format!("gone-{}", i % 3);
        limiter
            .publish(Policy::new(&name, Algorithm::FixedWindow, 1, Duration::from_secs(1)))
            .await
            .unwrap();
        limiter.unpublish(&name).await.unwrap();
        tokio::time::sleep(Duration::from_millis(i % 3)).await;
        assert!(limiter.policy(&name).is_none(), "round {i}: {name} came back");
    }
}

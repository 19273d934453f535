//! The Redis connection core on its own: blocking commands on dedicated connections,
//! credentials, health details, statistics.

mod common;

use std::time::{Duration, Instant};

use common::{RESPONSE_TIMEOUT, config};
use redkit::config::RedisConfig;
use redkit::{ErrorKind, Mode, Redkit};
use redkit_testkit::RedisServer;

/// Waits until Redis counts at least `n` clients blocked in a command such as BLPOP, so a
/// test acts once they are rather than after a guessed delay.
async fn until_blocked(c: &mut redis::aio::MultiplexedConnection, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info: String = redis::cmd("INFO").arg("clients").query_async(&mut *c).await.unwrap();
        let blocked = info
            .lines()
            .find_map(|l| l.strip_prefix("blocked_clients:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if blocked >= n {
            return;
        }
        assert!(Instant::now() < deadline, "{n} clients never blocked:\n{info}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn blocking_commands_get_their_block_time_plus_the_response_timeout() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let redkit = Redkit::open(config(Some(redis.url()), dir.path())).await.unwrap();
    let core = redkit.route().redis().unwrap().clone();
    // Far beyond the response timeout, and far beyond when the push comes: seconds of
    // slack on a loaded CI host.
    let block = Duration::from_secs(5);

    // Connected before the call, so connecting costs the push nothing. It pushes once the
    // BLPOP is blocked in Redis and has been for twice the response timeout: the call then
    // outlives that timeout by construction.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let pusher = tokio::spawn(async move {
        until_blocked(&mut c, 1).await;
        tokio::time::sleep(RESPONSE_TIMEOUT * 2).await;
        let _: i64 = redis::cmd("RPUSH")
            .arg("q")
            .arg("job")
            .query_async(&mut c)
            .await
            .unwrap();
    });
    let started = Instant::now();
    let got: Option<(String, String)> = core
        .blocking("blpop", block, |mut c| async move {
            redis::cmd("BLPOP")
                .arg("q")
                .arg(block.as_secs_f64())
                .query_async(&mut c)
                .await
        })
        .await
        .unwrap();
    assert_eq!(got, Some(("q".into(), "job".into())));
    assert!(
        started.elapsed() > RESPONSE_TIMEOUT,
        "the call outlived the plain response timeout"
    );
    pusher.await.unwrap();

    // An empty wait ends with Redis's own timeout, not ours, and is not a failure.
    let none: Option<(String, String)> = core
        .blocking("blpop", Duration::from_millis(100), |mut c| async move {
            redis::cmd("BLPOP").arg("empty").arg(0.1).query_async(&mut c).await
        })
        .await
        .unwrap();
    assert_eq!(none, None);
    assert_eq!(redkit.mode(), Mode::Redis);
    assert_eq!(core.stats().snapshot()["blpop"].count, 2);
}

#[tokio::test]
async fn blocking_pool_is_bounded() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(Some(redis.url()), dir.path());
    cfg.redis.as_mut().unwrap().max_connections = 2;
    let redkit = Redkit::open(cfg).await.unwrap();
    let core = redkit.route().redis().unwrap().clone();
    // Waiters that would block for 5 s: they hold both connections for seconds after Redis
    // reports them blocked, however slow the host. They are unblocked below, not sat out.
    let block = Duration::from_secs(5);
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            let core = core.clone();
            tokio::spawn(async move {
                core.blocking("blpop", block, |mut c| async move {
                    redis::cmd("BLPOP")
                        .arg("never")
                        .arg(block.as_secs_f64())
                        .query_async::<Option<(String, String)>>(&mut c)
                        .await
                })
                .await
            })
        })
        .collect();
    let client = redis::Client::open(redis.url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    until_blocked(&mut c, 2).await;
    let third = core
        .blocking("blpop", Duration::from_secs(1), |mut c| async move {
            redis::cmd("BLPOP")
                .arg("never")
                .arg(1)
                .query_async::<Option<(String, String)>>(&mut c)
                .await
        })
        .await;
    let err = third.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.to_string().contains("2 dedicated"), "{err}");
    // CLIENT UNBLOCK ends a BLPOP as if its time were up (a nil answer), as the waiters'
    // own 5 s would, without the test waiting for them.
    let clients: String = redis::cmd("CLIENT").arg("LIST").query_async(&mut c).await.unwrap();
    for line in clients.lines().filter(|l| l.split(' ').any(|f| f == "cmd=blpop")) {
        let id = line.split(' ').find_map(|f| f.strip_prefix("id=")).unwrap();
        let _: i64 = redis::cmd("CLIENT")
            .arg("UNBLOCK")
            .arg(id)
            .query_async(&mut c)
            .await
            .unwrap();
    }
    for w in waiters {
        assert_eq!(w.await.unwrap().unwrap(), None);
    }
    assert_eq!(redkit.mode(), Mode::Redis, "a busy pool is not a redis failure");
}

#[tokio::test]
async fn password_and_acl_user_credentials() {
    let redis = RedisServer::options()
        .password("s3cret")
        .user("app", "apppw", "~rk:* &* +@all -@dangerous +info +config|get")
        .start();
    let dir = tempfile::tempdir().unwrap();

    let mut cfg = config(Some(redis.url()), dir.path());
    cfg.redis.as_mut().unwrap().password = Some("s3cret".into());
    let redkit = Redkit::open(cfg).await.unwrap();
    assert_eq!(redkit.mode(), Mode::Redis);
    drop(redkit);

    let acl = Redkit::open(config(Some(redis.url_with("app", "apppw")), dir.path()))
        .await
        .unwrap();
    assert_eq!(acl.mode(), Mode::Redis);
    let health = acl.health().await;
    assert!(health.redis.unwrap().info.is_some());

    let wrong = Redkit::open(config(Some(redis.url_with("app", "nope")), dir.path())).await;
    let err = wrong.err().expect("wrong password must fail start-up");
    assert!(err.to_string().contains("credentials"), "{err}");
}

#[tokio::test]
async fn health_reports_redis_details_and_warns_about_eviction() {
    let redis = RedisServer::options()
        .arg("--maxmemory-policy")
        .arg("allkeys-lru")
        .start();
    redis.command(&["SET", "x", "1"]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let redkit = Redkit::open(config(Some(redis.url()), dir.path())).await.unwrap();
    let health = redkit.health().await;
    let json = serde_json::to_value(&health).unwrap();
    assert_eq!(json["mode"], "redis");
    assert_eq!(json["status"], "ok");
    assert_eq!(json["breaker"]["state"], "closed");
    let info = &json["redis"]["info"];
    assert!(
        info["version"]
            .as_str()
            .unwrap()
            .starts_with(|c: char| c.is_ascii_digit())
    );
    assert_eq!(info["role"], "master");
    assert_eq!(info["keys"], 1);
    assert_eq!(info["maxmemory_policy"], "allkeys-lru");
    assert_eq!(info["aof"], false);
    assert_eq!(info["snapshots"], false);
    assert!(info["used_memory"].as_u64().unwrap() > 0);
    assert!(json["redis"]["ops"]["info"]["count"].as_u64().unwrap() >= 1);
    assert!(
        json["embedded"]["path"]
            .as_str()
            .unwrap()
            .contains(dir.path().to_str().unwrap())
    );
    let warnings = health.warnings.join("\n");
    assert!(
        warnings.contains("allkeys-lru") && warnings.contains("append-only file is off"),
        "{warnings}"
    );
}

#[tokio::test]
async fn script_errors_reach_the_caller_and_do_not_trip_the_breaker() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let redkit = Redkit::open(config(Some(redis.url()), dir.path())).await.unwrap();
    let core = redkit.route().redis().unwrap().clone();
    redis.command(&["SET", "rk:test:n", "not a number"]).unwrap();
    for _ in 0..10 {
        let err = core
            .query::<i64>("incr", redis::cmd("INCR").arg("rk:test:n"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Internal, "{err}");
    }
    assert_eq!(redkit.mode(), Mode::Redis);
    let stats = &core.stats().snapshot()["incr"];
    assert_eq!((stats.count, stats.errors), (10, 10));
    assert!(stats.last_error.as_ref().unwrap().message.contains("not an integer"));
}

#[tokio::test]
async fn bad_urls_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(None, dir.path());
    cfg.redis = Some(RedisConfig::new("redis://[::1"));
    let err = Redkit::open(cfg).await.err().unwrap();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("redis.url"), "{err}");
}

/// TCP keepalive really is on redkit's connections with the configured idle time: the
/// kernel's socket table (`/proc/net/tcp`) shows a keepalive timer (`tr` = 2) due in about
/// 600 s on the client side of every connection to Redis.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn tcp_keepalive_is_set_on_redis_connections() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let redkit = Redkit::open(config(Some(redis.url()), dir.path())).await.unwrap();
    let _: String = redkit
        .route()
        .redis()
        .unwrap()
        .query("ping", &redis::cmd("PING"))
        .await
        .unwrap();
    let port = format!("{:04X}", redis.port());
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let timers: Vec<(String, u64)> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let remote_port = f.get(2)?.split(':').nth(1)?;
            let established = *f.get(3)? == "01";
            (remote_port == port && established).then(|| {
                let (kind, when) = f[5].split_once(':').unwrap();
                (kind.to_string(), u64::from_str_radix(when, 16).unwrap())
            })
        })
        .collect();
    assert!(!timers.is_empty(), "no client connection to redis found");
    for (kind, when) in &timers {
        assert_eq!(kind, "02", "keepalive timer armed: {timers:?}");
        // clock ticks of 1/100 s: about 600 s, not the kernel default of 7200 s
        assert!(
            (50_000..=60_100).contains(when),
            "keepalive due in {when} ticks: {timers:?}"
        );
    }
}

#[tokio::test]
async fn rediss_with_a_private_ca() {
    let redis = RedisServer::options().tls().start();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(Some(redis.tls_url()), dir.path());
    cfg.redis.as_mut().unwrap().tls_ca = Some(redis.ca_file());
    let redkit = Redkit::open(cfg).await.unwrap();
    assert_eq!(redkit.mode(), Mode::Redis);
    let pong: String = redkit
        .route()
        .redis()
        .unwrap()
        .query("ping", &redis::cmd("PING"))
        .await
        .unwrap();
    assert_eq!(pong, "PONG");

    // Without the CA, the server's certificate is not trusted: redkit starts in fallback.
    let untrusted = Redkit::open(config(Some(redis.tls_url()), dir.path())).await.unwrap();
    assert_eq!(untrusted.mode(), Mode::Fallback);
    let health = untrusted.health().await;
    assert!(health.redis.unwrap().last_connect_error.is_some());

    // A CA file that is not a certificate is refused at start with the setting named.
    let bogus = dir.path().join("not-a-ca.pem");
    std::fs::write(&bogus, "hello").unwrap();
    let err = redkit::Config::load(redkit::config::Sources {
        env: vec![
            ("REDIS_URL".into(), redis.tls_url()),
            ("REDKIT_REDIS_TLS_CA".into(), bogus.display().to_string()),
        ],
        ..Default::default()
    })
    .unwrap_err();
    assert_eq!(err.setting, "redis.tls_ca");
}

#[tokio::test]
async fn health_warns_unless_the_append_only_file_is_on() {
    // Redis's own default: snapshots only.
    let snapshots = RedisServer::options().arg("--save").arg("3600 1 300 100").start();
    let durable = RedisServer::options().durable().start();
    for (redis, aof) in [(&snapshots, false), (&durable, true)] {
        let dir = tempfile::tempdir().unwrap();
        let redkit = Redkit::open(config(Some(redis.url()), dir.path())).await.unwrap();
        let health = redkit.health().await;
        let info = health.redis.as_ref().unwrap().info.as_ref().unwrap();
        assert_eq!(info.aof, Some(aof));
        let warned = health.warnings.iter().any(|w| w.contains("append-only file is off"));
        assert_eq!(warned, !aof, "{:?}", health.warnings);
        if !aof {
            assert_eq!(info.snapshots, Some(true));
            assert!(health.warnings.iter().any(|w| w.contains("only snapshots")));
        } else {
            assert_eq!(info.appendfsync.as_deref(), Some("always"));
        }
    }
}

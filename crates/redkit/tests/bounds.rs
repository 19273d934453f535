//! Nothing a client sends grows memory, files or descriptors without bound: host-local
//! locks that expire unreleased, sessions that expire unread, in-process rate-limit state
//! for many keys, the embedded store's write-ahead log.

mod common;

use std::time::Duration;

use common::eventually;
use redkit::lock::LockOptions;
use redkit::ratelimit::{Algorithm, Policy};
use redkit::session::SessionOptions;
use serde_json::Map;

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_local_locks_that_expire_unreleased_close_and_delete_their_files() {
    let h = common::on_embedded().await;
    let locks = h.redkit.locks();
    let lock_dir = std::env::temp_dir().join("redkit-locks");
    // Long enough to take them all before the first expires (debug builds on a busy
    // machine are slow).
    let opts = LockOptions::new().ttl(Duration::from_secs(10));
    // Warm up (the lock dir, the SQLite thread) before counting.
    locks.try_acquire("warm-up", &opts).await.unwrap().unwrap().detach();
    let before = open_descriptors();
    for i in 0..1000 {
        // Detached: nobody releases or renews it, as an HTTP client that went away.
        let guard = locks
            .try_acquire(&format!("abandoned-{i}-{}", std::process::id()), &opts)
            .await
            .unwrap()
            .expect("free");
        guard.detach();
    }
    assert!(
        open_descriptors() >= before + 950,
        "each held lock keeps its file open: {} before, {} now",
        before,
        open_descriptors()
    );
    let files_while_held = std::fs::read_dir(&lock_dir).unwrap().count();
    eventually(Duration::from_secs(30), "expired leases closed", async || {
        open_descriptors() <= before + 20
    })
    .await;
    let files_after = std::fs::read_dir(&lock_dir).unwrap().count();
    assert!(
        files_after + 950 <= files_while_held,
        "lock files deleted: {files_while_held} while held, {files_after} after"
    );
    // A name whose lease ended is free again, and fences still increase.
    let pid = std::process::id();
    let a = locks
        .try_acquire(&format!("abandoned-0-{pid}"), &opts)
        .await
        .unwrap()
        .unwrap();
    let b = locks
        .try_acquire(&format!("abandoned-1-{pid}"), &opts)
        .await
        .unwrap()
        .unwrap();
    assert!(b.fence() > a.fence());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_sessions_are_swept_from_sqlite() {
    let h = common::on_embedded().await;
    let sessions = h.redkit.sessions(SessionOptions::default()).unwrap();
    // A 5 s TTL: the first sweep (2 s after start) finds none expired even if a slow host
    // needs seconds for the 500 writes, so all are counted below; a later sweep takes them.
    let ttl = Duration::from_secs(5);
    for _ in 0..500 {
        sessions.create_with(Map::new(), None, ttl, ttl).await.unwrap();
    }
    let count = || {
        let db = h.dir.path().join("redkit.sqlite3");
        let c = rusqlite::Connection::open(db).unwrap();
        c.query_row("SELECT COUNT(*) FROM sessions", [], |r| r.get::<_, i64>(0))
            .unwrap()
    };
    assert_eq!(count(), 500);
    // The sweeper runs 2 s after start, then every 15 to 30 s: the second sweep (17 to 32 s
    // in) takes them all unless the writes took over 12 s, the third (by 62 s) in any case.
    eventually(Duration::from_secs(70), "expired sessions swept", async || count() == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_rate_limit_state_is_bounded() {
    let h = common::on_embedded().await;
    let limiter = h.redkit.rate_limiter();
    limiter
        .define(Policy::new(
            "bounded",
            Algorithm::FixedWindow,
            10,
            Duration::from_secs(3600),
        ))
        .unwrap();
    for i in 0..(redkit::ratelimit::MAX_IN_PROCESS_KEYS + 20_000) {
        limiter.check("bounded", &format!("client-{i}"), 1).await.unwrap();
    }
    let tracked = limiter.in_process_keys();
    assert!(
        tracked <= redkit::ratelimit::MAX_IN_PROCESS_KEYS,
        "{tracked} keys kept for one hour each"
    );
    // A key that still has state is still limited.
    let last = format!("client-{}", redkit::ratelimit::MAX_IN_PROCESS_KEYS + 19_999);
    for _ in 0..9 {
        limiter.check("bounded", &last, 1).await.unwrap();
    }
    assert!(!limiter.check("bounded", &last, 1).await.unwrap().allowed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_write_ahead_log_is_cut_back_after_a_checkpoint() {
    let h = common::on_embedded().await;
    let sessions = h.redkit.sessions(SessionOptions::default()).unwrap();
    let blob = serde_json::json!({"blob": "x".repeat(30_000)});
    for _ in 0..600 {
        sessions.create(blob.as_object().unwrap().clone(), None).await.unwrap();
    }
    let wal = h.dir.path().join("redkit.sqlite3-wal");
    h.redkit.route().embedded().checkpoint().await.unwrap();
    let size = std::fs::metadata(&wal).map_or(0, |m| m.len());
    assert!(size < 1 << 20, "WAL is {size} bytes after a checkpoint");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_costly_glob_never_holds_the_store_for_long() {
    use redkit::cache::CacheOptions;
    let h = common::on_embedded().await;
    let cache = h
        .redkit
        .cache::<u32>("globs", CacheOptions::default().l1(false).max_key_bytes(4096))
        .unwrap();
    let pad = "a".repeat(300);
    let items: Vec<(String, u32)> = (0..4000).map(|i| (format!("{pad}{i:05}"), i)).collect();
    for chunk in items.chunks(500) {
        let refs: Vec<(&str, u32)> = chunk.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        cache.set_many(&refs, &Default::default()).await.unwrap();
    }
    // Every key is tried against every `*` position: quadratic per key.
    let pattern = format!("*{}b", "a".repeat(150));

    // A listing answers a page within its budget, with a cursor to go on.
    let first = cache.keys(&pattern, None, 100).await.unwrap();
    assert!(first.keys.is_empty());
    assert!(
        first.next_cursor.is_some(),
        "stopped early rather than scanning everything at once"
    );
    let (mut pages, mut cursor) = (1, first.next_cursor);
    while let Some(c) = cursor {
        let page = cache.keys(&pattern, Some(&c), 100).await.unwrap();
        assert!(page.keys.is_empty());
        cursor = page.next_cursor;
        pages += 1;
    }
    assert!(pages > 1);

    // An invalidation by that pattern lets other work on the store's thread run meanwhile.
    let sessions = h.redkit.sessions(SessionOptions::default()).unwrap();
    let invalidation = {
        let cache = cache.clone();
        let pattern = pattern.clone();
        tokio::spawn(async move { cache.invalidate_pattern(&pattern).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    sessions.create(Map::new(), None).await.unwrap();
    assert!(
        !invalidation.is_finished(),
        "a session was created while the invalidation was still going"
    );
    assert_eq!(invalidation.await.unwrap().unwrap(), 0);
    assert_eq!(cache.invalidate_pattern(&format!("{pad}0000*")).await.unwrap(), 10);
}

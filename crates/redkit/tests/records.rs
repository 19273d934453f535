//! Records (documents with indexes, capped lists, counters) on Redis, in SQLite, and in
//! SQLite as the fallback with one suite; index consistency under concurrent writers
//! against a scan; TTL expiry; redaction; two instances on one Redis with Redis killed
//! mid-load, twice in a row; a 3-node Cluster.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::eventually;
use redkit::records::counters::{Granularity, Labels};
use redkit::records::{
    CollectionSpec, IndexKind, IndexState, QueryRequest, Record, Records, RecordsOptions, RedactAction, RedactRule,
};
use redkit::{ErrorKind, Mode, Redkit};
use redkit_testkit::{RedisCluster, RedisServer};
use serde_json::{Map, Value, json};

const LIMIT: Duration = Duration::from_secs(15);
const KEY: &[u8] = b"a redaction key for tests";

fn records(redkit: &Redkit) -> Records {
    redkit.records(RecordsOptions::default().redact_key(KEY)).unwrap()
}

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().expect("an object").clone()
}

fn patterns_spec() -> CollectionSpec {
    CollectionSpec::default()
        .index("kind", IndexKind::Equal)
        .index("team", IndexKind::Equal)
        .index("seen", IndexKind::Range)
        .redact(RedactRule {
            field: "email".into(),
            action: RedactAction::Hash,
            keep_last: None,
            patterns: None,
        })
}

/// Every page of a query, followed to the end.
async fn all_pages(r: &Records, c: &str, q: QueryRequest) -> Vec<Record> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = r.query(c, q.clone().after(cursor)).await.unwrap();
        out.extend(page.records);
        match page.cursor {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

fn ids(records: &[Record]) -> Vec<String> {
    records.iter().map(|r| r.id.clone()).collect()
}

/// Defines what the suite uses (on Redis before an outage, for the fallback run).
async fn setup(r: &Records) {
    let info = r.define("patterns", patterns_spec()).await.unwrap();
    assert!(
        info.indexes.iter().all(|i| i.state == IndexState::Ready),
        "an empty collection's indexes are ready at once"
    );
    r.define(
        "short",
        CollectionSpec::default()
            .ttl_s(1)
            .index("k", IndexKind::Equal)
            .index("n", IndexKind::Range),
    )
    .await
    .unwrap();
}

async fn suite(redkit: &Redkit) {
    let r = records(redkit);

    // Create, read, versions.
    let w = r
        .put(
            "patterns",
            "p1",
            obj(json!({"kind": "timeout", "team": "a", "seen": 3, "email": "ann@example.com"})),
            None,
        )
        .await
        .unwrap();
    assert_eq!(w.version, 1);
    let got = r.get("patterns", "p1").await.unwrap().expect("p1");
    assert_eq!(got.version, 1);
    assert_eq!(got.data["kind"], "timeout");
    let hashed = got.data["email"].as_str().unwrap().to_string();
    assert!(
        hashed.starts_with("h:") && !hashed.contains("ann"),
        "email is hashed: {hashed}"
    );
    assert!(got.expires_at_ms.is_some(), "90 days by default");

    // Optimistic concurrency: create-only and version checks answer 409 and change nothing.
    let e = r
        .put("patterns", "p1", obj(json!({"kind": "x"})), Some(0))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    let e = r
        .put("patterns", "p1", obj(json!({"kind": "x"})), Some(7))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    let e = r
        .patch("patterns", "p1", obj(json!({"kind": "x"})), Some(7))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert_eq!(r.get("patterns", "p1").await.unwrap().unwrap().data["kind"], "timeout");
    let w = r
        .put(
            "patterns",
            "p1",
            obj(json!({"kind": "timeout", "team": "a", "seen": 3})),
            Some(1),
        )
        .await
        .unwrap();
    assert_eq!(w.version, 2);
    assert_eq!(
        r.put(
            "patterns",
            "p2",
            obj(json!({"kind": "oom", "team": "a", "seen": 1})),
            Some(0)
        )
        .await
        .unwrap()
        .version,
        1
    );

    // Patch merges; null removes; the index follows.
    let w = r
        .patch(
            "patterns",
            "p2",
            obj(json!({"kind": "timeout", "team": null, "extra": [1, 2]})),
            None,
        )
        .await
        .unwrap();
    assert_eq!(w.version, 2);
    let p2 = r.get("patterns", "p2").await.unwrap().unwrap();
    assert_eq!(p2.data, obj(json!({"kind": "timeout", "seen": 1, "extra": [1, 2]})));
    let e = r
        .patch("patterns", "nope", obj(json!({"kind": "a"})), None)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");

    // Increments: atomic, create the record, refuse non-integers.
    let inc = r.incr("patterns", "p1", "seen", 5).await.unwrap();
    assert_eq!((inc.value, inc.version), (8, 3));
    let inc = r.incr("patterns", "fresh", "count", 2).await.unwrap();
    assert_eq!((inc.value, inc.version), (2, 1));
    let e = r.incr("patterns", "p1", "kind", 1).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    let e = r.incr("patterns", "p1", "email", 1).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "a redacted field: {e}");

    // Queries through the indexes only, by id or by the range field, paged.
    for i in 0..25 {
        r.put(
            "patterns",
            &format!("q{i:02}"),
            obj(json!({"kind": "bulk", "team": if i % 2 == 0 { "even" } else { "odd" }, "seen": i % 5})),
            None,
        )
        .await
        .unwrap();
    }
    let bulk = all_pages(&r, "patterns", QueryRequest::default().equal("kind", "bulk").limit(7)).await;
    assert_eq!(
        ids(&bulk),
        (0..25).map(|i| format!("q{i:02}")).collect::<Vec<_>>(),
        "by id, every page"
    );
    let odd = all_pages(
        &r,
        "patterns",
        QueryRequest::default()
            .equal("kind", "bulk")
            .equal("team", "odd")
            .limit(4),
    )
    .await;
    assert_eq!(odd.len(), 12);
    assert!(odd.iter().all(|r| r.data["team"] == "odd"));
    let ranged = all_pages(
        &r,
        "patterns",
        QueryRequest::default()
            .equal("kind", "bulk")
            .range("seen", Some(1.0), Some(3.0))
            .limit(4),
    )
    .await;
    let seen: Vec<i64> = ranged.iter().map(|r| r.data["seen"].as_i64().unwrap()).collect();
    assert_eq!(
        seen.len(),
        15,
        "ties across pages are neither lost nor repeated: {:?}",
        ids(&ranged)
    );
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "ascending: {seen:?}");
    assert_eq!(ids(&ranged).into_iter().collect::<BTreeSet<_>>().len(), 15);
    let desc = all_pages(
        &r,
        "patterns",
        QueryRequest::default().range("seen", None, None).descending().limit(6),
    )
    .await;
    let seen: Vec<i64> = desc.iter().map(|r| r.data["seen"].as_i64().unwrap()).collect();
    assert!(seen.windows(2).all(|w| w[0] >= w[1]), "descending: {seen:?}");
    assert_eq!(desc.len(), 27, "every record with a number in seen");
    let everything = all_pages(&r, "patterns", QueryRequest::default().limit(1000)).await;
    assert_eq!(everything.len(), 28);
    assert_eq!(r.collection("patterns").await.unwrap().unwrap().count, 28);

    // Queries off the indexes, and bad values, are refused by name.
    let e = r
        .query("patterns", QueryRequest::default().equal("extra", 1))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("where.extra"), "{e}");
    let e = r
        .query("patterns", QueryRequest::default().range("kind", None, None))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("range.field"), "{e}");
    let e = r
        .put("patterns", "bad", obj(json!({"seen": "three"})), None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("data.seen"), "{e}");
    let e = r
        .put("patterns", "bad", obj(json!({"kind": {"a": 1}})), None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("data.kind"), "{e}");
    let e = r.put("nope", "x", Map::new(), None).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    let e = r
        .put("patterns", "big", obj(json!({"x": "y".repeat(70_000)})), None)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooLarge, "{e}");

    // get_many, delete (idempotent), and the index forgets deleted records.
    let many = r
        .get_many("patterns", &["p1".into(), "zz".into(), "p2".into()])
        .await
        .unwrap();
    assert_eq!(
        many.iter()
            .map(|m| m.as_ref().map(|r| r.id.as_str()))
            .collect::<Vec<_>>(),
        [Some("p1"), None, Some("p2")]
    );
    assert!(r.delete("patterns", "p2").await.unwrap());
    assert!(!r.delete("patterns", "p2").await.unwrap());
    let timeouts = all_pages(&r, "patterns", QueryRequest::default().equal("kind", "timeout")).await;
    assert_eq!(ids(&timeouts), ["p1"]);

    // TTL: expired records leave reads and queries at once.
    r.put("short", "s1", obj(json!({"k": "a", "n": 1})), None)
        .await
        .unwrap();
    assert!(r.get("short", "s1").await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(r.get("short", "s1").await.unwrap().is_none());
    assert!(
        r.query("short", QueryRequest::default().equal("k", "a"))
            .await
            .unwrap()
            .records
            .is_empty()
    );
    assert!(
        r.query("short", QueryRequest::default().range("n", None, None))
            .await
            .unwrap()
            .records
            .is_empty()
    );
    assert_eq!(r.collection("short").await.unwrap().unwrap().count, 0);

    // Capped lists: newest first, never beyond the cap.
    let lists = r.lists();
    assert_eq!(
        lists
            .push("outcomes", &[json!(1), json!(2), json!(3)], 2, Duration::ZERO)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        lists
            .push("outcomes", &[json!({"ok": true})], 2, Duration::from_secs(60))
            .await
            .unwrap(),
        2
    );
    let page = lists.range("outcomes", 0, 10).await.unwrap();
    assert_eq!(page.items, [json!({"ok": true}), json!(3)]);
    assert_eq!(lists.range("outcomes", 1, 1).await.unwrap().items, [json!(3)]);
    assert!(lists.delete("outcomes").await.unwrap());
    assert_eq!(lists.range("outcomes", 0, 10).await.unwrap().length, 0);
    let e = lists
        .push("outcomes", &[json!(1)], 0, Duration::ZERO)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("cap"), "{e}");

    // Counters: buckets per granularity, across boundaries, zeros where nothing happened.
    let counters = r.counters();
    let now = redkit::stats::now_ms();
    let minute = now - now % 60_000 - 10 * 60_000;
    let route: Labels = [("route".to_string(), "/x".to_string())].into();
    counters
        .incr("hits", 1, &Labels::new(), Some(minute + 59_999))
        .await
        .unwrap();
    counters.incr("hits", 2, &route, Some(minute + 60_000)).await.unwrap();
    let c = counters.incr("hits", 3, &route, Some(minute + 60_001)).await.unwrap();
    assert_eq!(c.minute, Some(5));
    let total = counters
        .range(
            "hits",
            &Labels::new(),
            Granularity::Minute,
            minute - 60_000,
            minute + 120_000,
        )
        .await
        .unwrap();
    assert_eq!(total.iter().map(|b| b.value).collect::<Vec<_>>(), [0, 1, 5, 0]);
    assert_eq!(total[1].start_ms, minute);
    let labelled = counters
        .range("hits", &route, Granularity::Minute, minute, minute + 60_000)
        .await
        .unwrap();
    assert_eq!(labelled.iter().map(|b| b.value).collect::<Vec<_>>(), [0, 5]);
    let hours = counters
        .range("hits", &Labels::new(), Granularity::Hour, minute, minute + 60_000)
        .await
        .unwrap();
    assert_eq!(hours.iter().map(|b| b.value).sum::<i64>(), 6);
    assert_eq!(counters.label_sets("hits").await.unwrap(), std::slice::from_ref(&route));
    for i in 0..100 {
        let l: Labels = [("n".to_string(), i.to_string())].into();
        let r = counters.incr("capped", 1, &l, None).await;
        assert_eq!(r.is_ok(), i < 100, "label set {i}: {r:?}");
    }
    let e = counters
        .incr("capped", 1, &[("n".to_string(), "x".to_string())].into(), None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("labels"), "{e}");
    let e = counters
        .range("hits", &Labels::new(), Granularity::Minute, 0, now)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("to_ms"), "too many buckets: {e}");

    // Increments are bounded, and one that would pass 64 bits counts nothing anywhere
    // (found by the API fuzzer: a 500 from a sum past i64 on the embedded store).
    let max = redkit::records::counters::MAX_BY;
    let e = counters.incr("big", max + 1, &route, None).await.unwrap_err();
    assert_eq!(e.kind(), redkit::ErrorKind::InvalidInput, "{e}");
    assert!(
        e.to_string().contains("by") && e.to_string().contains("9007199254740991"),
        "{e}"
    );
    let mut last = None;
    let mut refused = None;
    // 1,024 increments of 2^53 - 1 stay below 2^63; the 1,025th would not.
    for _ in 0..1_100 {
        match counters.incr("big", max, &route, None).await {
            Ok(c) => last = c.day,
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let refused = refused.expect("an increment past 64 bits is refused");
    assert_eq!(refused.kind(), redkit::ErrorKind::InvalidInput, "{refused}");
    assert_eq!(last, Some(1_024 * max));
    assert!(refused.to_string().contains("64-bit"), "{refused}");
    let after = counters.incr("big", 0, &route, None).await.unwrap();
    assert_eq!(after.day, last, "the refused increment counted nothing");
    let total = counters.incr("big", 0, &Labels::new(), None).await.unwrap();
    assert_eq!(total.day, last, "nor in the total");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis() {
    let h = common::on_redis().await;
    setup(&records(&h.redkit)).await;
    suite(&h.redkit).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_embedded() {
    let h = common::on_embedded().await;
    setup(&records(&h.redkit)).await;
    suite(&h.redkit).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_fallback() {
    let mut h = common::on_redis().await;
    setup(&records(&h.redkit)).await;
    h.redis.as_mut().unwrap().kill();
    let r = records(&h.redkit);
    eventually(LIMIT, "fallback", async || {
        let _ = r.get("patterns", "trip").await;
        h.redkit.mode() == Mode::Fallback
    })
    .await;
    suite(&h.redkit).await;
    assert_eq!(h.redkit.mode(), Mode::Fallback, "the suite ran on the fallback");
    let e = r.define("other", CollectionSpec::default()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "definitions need Redis: {e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_three_node_cluster() {
    let cluster = RedisCluster::start(3);
    let dir = tempfile::tempdir().unwrap();
    let redkit = Redkit::open(common::config(Some(cluster.url()), dir.path()))
        .await
        .unwrap();
    setup(&records(&redkit)).await;
    suite(&redkit).await;
}

/// After any interleaving of writers, every query equals a scan of every record.
async fn queries_equal_a_scan(redkit: &Redkit, collection: &str) {
    let r = records(redkit);
    let scan = all_pages(&r, collection, QueryRequest::default().limit(1000)).await;
    for kind in ["a", "b", "c", "d"] {
        let expect: BTreeSet<String> = scan
            .iter()
            .filter(|d| d.data.get("kind") == Some(&json!(kind)))
            .map(|d| d.id.clone())
            .collect();
        let got: BTreeSet<String> =
            ids(&all_pages(&r, collection, QueryRequest::default().equal("kind", kind).limit(37)).await)
                .into_iter()
                .collect();
        assert_eq!(got, expect, "kind = {kind}");
    }
    for (lo, hi) in [(0.0, 10.0), (5.0, 50.0), (-1e9, 1e9)] {
        let expect: BTreeSet<String> = scan
            .iter()
            .filter(|d| {
                d.data
                    .get("score")
                    .and_then(Value::as_f64)
                    .is_some_and(|s| (lo..=hi).contains(&s))
            })
            .map(|d| d.id.clone())
            .collect();
        let got = all_pages(
            &r,
            collection,
            QueryRequest::default().range("score", Some(lo), Some(hi)).limit(29),
        )
        .await;
        let scores: Vec<f64> = got.iter().map(|d| d.data["score"].as_f64().unwrap()).collect();
        assert!(scores.windows(2).all(|w| w[0] <= w[1]), "ordered by score");
        assert_eq!(
            ids(&got).into_iter().collect::<BTreeSet<_>>(),
            expect,
            "score in {lo}..={hi}"
        );
    }
}

async fn hundred_writers(redkit: &Redkit, seed: u64) {
    let r = records(redkit);
    r.define(
        "race",
        CollectionSpec::default()
            .index("kind", IndexKind::Equal)
            .index("score", IndexKind::Range),
    )
    .await
    .unwrap();
    let mut tasks = Vec::new();
    for w in 0..100u64 {
        let r = r.clone();
        tasks.push(tokio::spawn(async move {
            let mut x = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(w.wrapping_mul(1442695040888963407) + 1);
            for _ in 0..12 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let id = format!("d{}", (x >> 33) % 30);
                let kind = ["a", "b", "c", "d"][((x >> 20) % 4) as usize];
                let score = ((x >> 40) % 60) as i64;
                let result = match (x >> 10) % 5 {
                    0 => r
                        .put("race", &id, obj(json!({"kind": kind, "score": score})), None)
                        .await
                        .map(drop),
                    1 => r.patch("race", &id, obj(json!({"kind": kind})), None).await.map(drop),
                    2 => r.incr("race", &id, "score", 7).await.map(drop),
                    3 => r.delete("race", &id).await.map(drop),
                    _ => r.patch("race", &id, obj(json!({"score": null})), None).await.map(drop),
                };
                if let Err(e) = result {
                    assert!(matches!(e.kind(), ErrorKind::NotFound | ErrorKind::Conflict), "{e}");
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    queries_equal_a_scan(redkit, "race").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexes_stay_consistent_under_a_hundred_writers_on_redis() {
    let h = common::on_redis().await;
    for seed in 1..=3 {
        hundred_writers(&h.redkit, seed).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexes_stay_consistent_under_a_hundred_writers_in_sqlite() {
    let h = common::on_embedded().await;
    for seed in 1..=3 {
        hundred_writers(&h.redkit, seed).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_added_to_a_collection_with_records_is_built_then_answers() {
    for h in [common::on_redis().await, common::on_embedded().await] {
        let r = records(&h.redkit);
        r.define("late", CollectionSpec::default()).await.unwrap();
        for i in 0..1200 {
            r.put(
                "late",
                &format!("r{i:04}"),
                obj(json!({"kind": if i % 3 == 0 { "x" } else { "y" }, "n": i})),
                None,
            )
            .await
            .unwrap();
        }
        let info = r
            .define(
                "late",
                CollectionSpec::default()
                    .index("kind", IndexKind::Equal)
                    .index("n", IndexKind::Range),
            )
            .await
            .unwrap();
        assert_eq!(info.count, 1200);
        eventually(LIMIT, "indexes built", async || {
            r.collection("late")
                .await
                .unwrap()
                .unwrap()
                .indexes
                .iter()
                .all(|i| i.state == IndexState::Ready)
        })
        .await;
        assert_eq!(
            all_pages(&r, "late", QueryRequest::default().equal("kind", "x").limit(1000))
                .await
                .len(),
            400
        );
        assert_eq!(
            all_pages(&r, "late", QueryRequest::default().range("n", Some(100.0), Some(199.0)))
                .await
                .len(),
            100
        );
        // Dropping an index removes it; queries through it are refused.
        r.define("late", CollectionSpec::default().index("n", IndexKind::Range))
            .await
            .unwrap();
        let e = r
            .query("late", QueryRequest::default().equal("kind", "x"))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        assert!(r.undefine("late").await.unwrap());
        assert!(r.collection("late").await.unwrap().is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_records_leave_their_indexes_on_redis() {
    let h = common::on_redis().await;
    let r = records(&h.redkit);
    r.define(
        "short",
        CollectionSpec::default()
            .ttl_s(1)
            .index("k", IndexKind::Equal)
            .index("n", IndexKind::Range),
    )
    .await
    .unwrap();
    for i in 0..10 {
        r.put("short", &format!("s{i}"), obj(json!({"k": "a", "n": i})), None)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    r.put("short", "fresh", obj(json!({"k": "b", "n": 1})), None)
        .await
        .unwrap();
    let redis = h.redis.as_ref().unwrap();
    for key in ["rk:{rec:short}:q:k", "rk:{rec:short}:r:n", "rk:{rec:short}:all"] {
        assert_eq!(
            redis.command(&["ZCARD", key]).unwrap(),
            "1",
            "{key} holds the live record only"
        );
    }
    assert_eq!(redis.command(&["EXISTS", "rk:{rec:short}:d:s0"]).unwrap(), "0");
}

/// Every byte Redis holds under the collection's tag, and every file of the data dir.
fn stored_text(redis: Option<&RedisServer>, dir: &std::path::Path) -> String {
    let mut out = String::new();
    if let Some(redis) = redis {
        let client = redis::Client::open(redis.url()).unwrap();
        let mut c = client.get_connection().unwrap();
        let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
        for k in keys {
            // Values as Redis serves them (a DUMP may be compressed).
            let kind: String = redis::cmd("TYPE").arg(&k).query(&mut c).unwrap();
            let values: Vec<Vec<u8>> = match kind.as_str() {
                "string" => vec![redis::cmd("GET").arg(&k).query(&mut c).unwrap()],
                "hash" => redis::cmd("HGETALL").arg(&k).query(&mut c).unwrap(),
                "zset" => redis::cmd("ZRANGE").arg(&k).arg(0).arg(-1).query(&mut c).unwrap(),
                "list" => redis::cmd("LRANGE").arg(&k).arg(0).arg(-1).query(&mut c).unwrap(),
                "set" => redis::cmd("SMEMBERS").arg(&k).query(&mut c).unwrap(),
                other => panic!("unexpected type {other} of {k}"),
            };
            out.push_str(&k);
            for v in values {
                out.push_str(&String::from_utf8_lossy(&v));
            }
        }
    }
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            out.push_str(&String::from_utf8_lossy(&std::fs::read(path).unwrap()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redacted_values_are_nowhere_in_redis_or_sqlite() {
    let rules = vec![
        RedactRule {
            field: "password".into(),
            action: RedactAction::Drop,
            keep_last: None,
            patterns: None,
        },
        RedactRule {
            field: "email".into(),
            action: RedactAction::Hash,
            keep_last: None,
            patterns: None,
        },
        RedactRule {
            field: "card".into(),
            action: RedactAction::Mask,
            keep_last: Some(4),
            patterns: None,
        },
        RedactRule {
            field: "*".into(),
            action: RedactAction::Scrub,
            keep_last: None,
            patterns: None,
        },
    ];
    let doc = json!({"password": "hunter2-secret", "email": "ann.secret@example.com", "card": "4111222233334444",
        "note": "from 203.0.113.77 with Bearer tok.SECRET-123", "email_again": "bob.secret@example.org"});
    let raws = [
        "hunter2-secret",
        "ann.secret@",
        "411122223333",
        "203.0.113.77",
        "tok.SECRET-123",
        "bob.secret@",
    ];
    let mut fallback = common::on_redis().await;
    let fallback_records = records(&fallback.redkit);
    fallback_records
        .define(
            "people",
            CollectionSpec {
                redact: rules.clone(),
                ..CollectionSpec::default()
            },
        )
        .await
        .unwrap();
    fallback.redis.as_mut().unwrap().kill();
    eventually(LIMIT, "fallback", async || {
        let _ = fallback_records.get("people", "trip").await;
        fallback.redkit.mode() == Mode::Fallback
    })
    .await;
    for h in [common::on_redis().await, common::on_embedded().await, fallback] {
        let r = records(&h.redkit);
        if h.redkit.mode() != Mode::Fallback {
            r.define(
                "people",
                CollectionSpec {
                    redact: rules.clone(),
                    ..CollectionSpec::default()
                },
            )
            .await
            .unwrap();
        }
        r.put("people", "ann", obj(doc.clone()), None).await.unwrap();
        r.patch("people", "ann", obj(json!({"email": "ann.secret@example.com"})), None)
            .await
            .unwrap();
        let stored = r.get("people", "ann").await.unwrap().unwrap();
        assert_eq!(stored.data["card"], "************4444");
        assert!(stored.data.get("password").is_none());
        assert!(h.redkit.route().embedded().checkpoint().await.is_ok());
        let text = stored_text(h.redis.as_ref().filter(|r| r.is_running()), h.dir.path());
        assert!(text.contains("4444"), "the store was read");
        for raw in raws {
            assert!(!text.contains(raw), "{raw} is stored ({:?})", h.redkit.mode());
        }
    }
}

/// Writes made on two instances during an outage reach Redis when it returns; deletes
/// stay deleted; increments add up; indexes agree with a scan. Twice in a row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_writes_on_two_instances_are_replayed_and_nothing_deleted_comes_back_twice_in_a_row() {
    let mut redis = RedisServer::options().durable().start();
    let (a, b) = common::two_instances(&redis).await;
    let (ra, rb) = (records(&a.redkit), records(&b.redkit));
    ra.define(
        "race",
        CollectionSpec::default()
            .index("kind", IndexKind::Equal)
            .index("score", IndexKind::Range),
    )
    .await
    .unwrap();
    rb.get("race", "warm").await.unwrap(); // B knows the definition before the outage
    for i in 0..20 {
        ra.put("race", &format!("d{i}"), obj(json!({"kind": "a", "score": i})), None)
            .await
            .unwrap();
    }
    let (mut expect_hits, mut unknown_hits) = (0i64, 0i64);
    for round in 0..2 {
        // Load on both instances while Redis dies in the middle of it.
        let writers: Vec<_> = [(ra.clone(), "a"), (rb.clone(), "b")]
            .into_iter()
            .map(|(r, who)| {
                tokio::spawn(async move {
                    let (mut acked_hits, mut unknown_hits, mut acked_ids) = (0i64, 0i64, Vec::new());
                    for i in 0..150 {
                        let id = format!("{who}{round}-{i}");
                        if r.put("race", &id, obj(json!({"kind": "c", "score": i})), None)
                            .await
                            .is_ok()
                        {
                            acked_ids.push(id);
                        }
                        match r.incr("race", "hits", "n", 1).await {
                            Ok(_) => acked_hits += 1,
                            // Redis may have applied it before it went away.
                            Err(e) if e.is_indeterminate() => unknown_hits += 1,
                            Err(_) => {}
                        }
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    (acked_hits, unknown_hits, acked_ids)
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
        redis.kill();
        eventually(LIMIT, "both in fallback", async || {
            let _ = ra.get("race", "d0").await;
            let _ = rb.get("race", "d0").await;
            a.redkit.mode() == Mode::Fallback && b.redkit.mode() == Mode::Fallback
        })
        .await;
        // In the outage: A deletes d{round}, B patches it (older than A's delete or not,
        // it must not come back as a whole record), B deletes one of its own outage writes.
        rb.patch("race", &format!("d{round}"), obj(json!({"kind": "b"})), None)
            .await
            .ok();
        ra.delete("race", &format!("d{round}")).await.unwrap();
        rb.put("race", "gone", obj(json!({"kind": "d", "score": 1})), None)
            .await
            .unwrap();
        rb.delete("race", "gone").await.unwrap();
        let mut acked_ids = Vec::new();
        for t in writers {
            let (hits, unknown, ids) = t.await.unwrap();
            expect_hits += hits;
            unknown_hits += unknown;
            acked_ids.extend(ids);
        }
        assert!(
            acked_ids.len() > 100,
            "most writes were acknowledged: {}",
            acked_ids.len()
        );
        redis.restart();
        eventually(LIMIT, "both recovered", async || {
            let _ = ra.get("race", "d0").await;
            let _ = rb.get("race", "d0").await;
            a.redkit.mode() == Mode::Redis && b.redkit.mode() == Mode::Redis
        })
        .await;
        eventually(LIMIT, "journals replayed", async || {
            a.redkit.route().journal().pending().await.unwrap().is_empty()
                && b.redkit.route().journal().pending().await.unwrap().is_empty()
        })
        .await;
        for r in [&ra, &rb] {
            assert!(
                r.get("race", &format!("d{round}")).await.unwrap().is_none(),
                "a deleted record came back"
            );
            assert!(r.get("race", "gone").await.unwrap().is_none());
            let hits = r
                .get("race", "hits")
                .await
                .unwrap()
                .map_or(0, |d| d.data["n"].as_i64().unwrap());
            assert!(
                (expect_hits..=expect_hits + unknown_hits).contains(&hits),
                "every acknowledged increment counted once: {hits} counted, {expect_hits} acknowledged, {unknown_hits} of unknown outcome"
            );
            let found = r.get_many("race", &acked_ids).await.unwrap();
            let lost: Vec<&String> = acked_ids
                .iter()
                .zip(&found)
                .filter(|(_, f)| f.is_none())
                .map(|(id, _)| id)
                .collect();
            assert!(lost.is_empty(), "acknowledged puts lost: {lost:?}");
        }
        queries_equal_a_scan(&a.redkit, "race").await;
        let dead = a.redkit.route().journal().dead_letters().await.unwrap();
        assert!(dead.is_empty(), "nothing dead-lettered: {dead:?}");
    }
    let all: BTreeMap<String, Record> = all_pages(&ra, "race", QueryRequest::default().limit(1000))
        .await
        .into_iter()
        .map(|r| (r.id.clone(), r))
        .collect();
    assert!(all.len() > 200, "{} records", all.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_with_redaction_stores_and_serves_only_the_redacted_value() {
    let h = common::on_redis().await;
    let rules = vec![
        RedactRule {
            field: "email".into(),
            action: RedactAction::Hash,
            keep_last: None,
            patterns: None,
        },
        RedactRule {
            field: "*".into(),
            action: RedactAction::Scrub,
            keep_last: None,
            patterns: None,
        },
    ];
    let cache = h
        .redkit
        .cache::<Value>(
            "profiles",
            redkit::cache::CacheOptions::default().redact(rules.clone(), Some(KEY)),
        )
        .unwrap();
    cache
        .set(
            "ann",
            &json!({"email": "ann.secret@example.com", "bio": "call 198.51.100.23"}),
        )
        .await
        .unwrap();
    let got = cache.get("ann").await.unwrap().unwrap();
    assert!(got["email"].as_str().unwrap().starts_with("h:"));
    assert_eq!(got["bio"], "call [ip]");
    let other = h
        .redkit
        .cache::<Value>("profiles", redkit::cache::CacheOptions::default().l1(false))
        .unwrap();
    assert_eq!(
        other.get("ann").await.unwrap().unwrap(),
        got,
        "what Redis holds is the redacted value"
    );
    let text = stored_text(h.redis.as_ref(), h.dir.path());
    assert!(!text.contains("ann.secret") && !text.contains("198.51.100.23"));
    // A typed cache whose type cannot hold the redacted value refuses the write.
    let typed = h
        .redkit
        .cache::<BTreeMap<String, u64>>(
            "counts",
            redkit::cache::CacheOptions::default().redact(
                vec![RedactRule {
                    field: "n".into(),
                    action: RedactAction::Hash,
                    keep_last: None,
                    patterns: None,
                }],
                Some(KEY),
            ),
        )
        .unwrap();
    let e = typed.set("k", &[("n".to_string(), 1u64)].into()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    let e = h
        .redkit
        .cache::<Value>("nokey", redkit::cache::CacheOptions::default().redact(rules, None))
        .map(drop)
        .unwrap_err();
    assert!(e.to_string().contains("redaction key"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_field_name_and_value_survive_storage_and_increments_stay_exact() {
    for h in [common::on_redis().await, common::on_embedded().await] {
        let r = records(&h.redkit);
        r.define("odd", CollectionSpec::default().index("k:1", IndexKind::Equal))
            .await
            .unwrap();
        let doc = json!({
            "k:1": "v:2\n3", "12:ab": 0.1, "ünïcödé ✓": [1, {"a": null}], " ": "a space",
            "big": 9_007_199_254_740_991i64, "neg": -5, "text": "1:x2:yy\n0 0 0\n", "f": 1e300
        });
        r.put("odd", "a:b", obj(doc.clone()), None).await.unwrap();
        assert_eq!(
            r.get("odd", "a:b").await.unwrap().unwrap().data,
            obj(doc.clone()),
            "{:?}",
            h.redkit.mode()
        );
        let found = r
            .query("odd", QueryRequest::default().equal("k:1", "v:2\n3"))
            .await
            .unwrap();
        assert_eq!(ids(&found.records), ["a:b"]);
        r.patch("odd", "a:b", obj(json!({"12:ab": null, "new": "n:1"})), None)
            .await
            .unwrap();
        let after = r.get("odd", "a:b").await.unwrap().unwrap().data;
        assert!(after.get("12:ab").is_none() && after["new"] == "n:1" && after["text"] == doc["text"]);
        assert_eq!(r.incr("odd", "a:b", "neg", 4).await.unwrap().value, -1);
        let e = r.incr("odd", "a:b", "big", 1).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Conflict, "beyond 2^53 - 1: {e}");
        assert_eq!(
            r.incr("odd", "a:b", "big", -1).await.unwrap().value,
            9_007_199_254_740_990
        );
    }
}

/// Found by the chaos soak: a record first created by an increment made during an outage
/// took that increment's stamp as a whole-record write, so the other instance's earlier
/// increments, replayed after it, were dropped as superseded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn increments_of_a_record_created_in_an_outage_on_two_instances_all_count() {
    let redis = RedisServer::options().durable().start();
    // A reaches Redis through a proxy that stays cut until B has replayed its journal.
    let proxy = redkit_testkit::Partition::to(redis.port());
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Redkit::open(common::config(Some(proxy.url()), dirs.0.path()))
        .await
        .unwrap();
    let b = Redkit::open(common::config(Some(redis.url()), dirs.1.path()))
        .await
        .unwrap();
    let (ra, rb) = (records(&a), records(&b));
    ra.define("c", CollectionSpec::default()).await.unwrap();
    rb.get("c", "warm").await.unwrap();
    proxy.cut();
    eventually(LIMIT, "A in fallback", async || {
        let _ = ra.get("c", "x").await;
        a.mode() == Mode::Fallback
    })
    .await;
    // A counts first (its stamps are older), during its outage.
    for _ in 0..3 {
        ra.incr("c", "hits", "n", 1).await.unwrap();
    }
    // B's later increments create the record in Redis first.
    for _ in 0..4 {
        rb.incr("c", "hits", "n", 10).await.unwrap();
    }
    proxy.heal();
    eventually(LIMIT, "A recovered", async || {
        let _ = ra.get("c", "x").await;
        a.mode() == Mode::Redis && a.route().journal().pending().await.unwrap().is_empty()
    })
    .await;
    assert_eq!(rb.get("c", "hits").await.unwrap().unwrap().data["n"], 43);
}

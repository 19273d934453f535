//! Channels over HTTP: publish and history, Server-Sent Events and WebSocket subscribers on
//! other servers, resuming after a disconnect, Redis killed mid-stream, 1,000 WebSocket
//! subscribers beside a stalled one, and bad input.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Server, eventually};
use futures_util::{SinkExt, StreamExt};
use redkit::pubsub::ChannelOptions;
use redkit_server::ServerSettings;
use redkit_server::auth::ApiKey;
use redkit_testkit::RedisServer;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// One Server-Sent Event.
#[derive(Debug, Clone, Default)]
struct SseEvent {
    event: String,
    id: Option<String>,
    data: String,
}

impl SseEvent {
    fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap()
    }
}

/// A Server-Sent Events stream read from a real HTTP response.
struct Sse {
    response: reqwest::Response,
    buffer: String,
    last_id: Option<String>,
}

impl Sse {
    async fn open(server: &Server, channel: &str, last_id: Option<&str>) -> Sse {
        let mut request = server
            .http
            .get(format!("{}/v1/channels/{channel}/events", server.base))
            .timeout(Duration::from_secs(120));
        if let Some(id) = last_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Sse {
            response,
            buffer: String::new(),
            last_id: last_id.map(str::to_string),
        }
    }

    /// The next event (comments and keep-alives skipped), within 20 s.
    async fn next(&mut self) -> SseEvent {
        tokio::time::timeout(Duration::from_secs(20), self.next_event())
            .await
            .expect("an event within 20 s")
    }

    async fn next_event(&mut self) -> SseEvent {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut e = SseEvent {
                    event: "message".into(),
                    ..SseEvent::default()
                };
                let mut has_data = false;
                for line in block.lines() {
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match field {
                        "event" => e.event = value.to_string(),
                        "id" => e.id = Some(value.to_string()),
                        "data" => {
                            if has_data {
                                e.data.push('\n');
                            }
                            e.data.push_str(value);
                            has_data = true;
                        }
                        _ => {}
                    }
                }
                if e.id.is_some() {
                    self.last_id = e.id.clone();
                }
                if has_data {
                    return e;
                }
                continue;
            }
            let chunk = self.response.chunk().await.unwrap().expect("the stream goes on");
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// The next `n` publications' data (after checking their ids increase by one).
    async fn publications(&mut self, n: usize) -> Vec<Value> {
        let mut out = Vec::new();
        let mut last: Option<u64> = None;
        while out.len() < n {
            let e = self.next().await;
            assert_eq!(e.event, "message", "{e:?}");
            let offset: u64 = e.id.as_ref().unwrap().rsplit_once(':').unwrap().1.parse().unwrap();
            if let Some(l) = last {
                assert_eq!(offset, l + 1, "offsets follow each other");
            }
            last = Some(offset);
            out.push(e.json());
        }
        out
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws_connect(server: &Server, headers: &[(&str, &str)]) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let mut request = format!("ws://{}/v1/ws", server.addr()).into_client_request().unwrap();
    for (k, v) in headers {
        let name = reqwest::header::HeaderName::from_bytes(k.as_bytes()).unwrap();
        request.headers_mut().insert(name, v.parse().unwrap());
    }
    tokio_tungstenite::connect_async(request).await.map(|(ws, _)| ws)
}

async fn ws_send(ws: &mut Ws, frame: Value) {
    ws.send(Message::text(frame.to_string())).await.unwrap();
}

/// The next JSON frame (pings skipped); `None` when the server closed (with its frame).
async fn ws_next(ws: &mut Ws) -> Result<Value, Option<(u16, String)>> {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("a frame within 20 s");
        match m {
            Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(&t).unwrap()),
            Some(Ok(Message::Close(f))) => return Err(f.map(|f| (u16::from(f.code), f.reason.to_string()))),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return Err(None),
        }
    }
}

async fn ws_subscribe(ws: &mut Ws, channel: &str, since: Option<Value>) -> Value {
    let mut op = json!({"op": "subscribe", "channel": channel});
    if let Some(s) = since {
        op["since"] = s;
    }
    ws_send(ws, op).await;
    let frame = ws_next(ws).await.unwrap();
    assert_eq!(frame["type"], "subscribed", "{frame}");
    frame
}

async fn publish(server: &Server, channel: &str, data: Value) -> Value {
    let r = server
        .post(&format!("/v1/channels/{channel}/publish"), json!({ "data": data }))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.body
}

/// Publishes as a client should around an outage: with an idempotency key, retrying a 503
/// (a publish whose outcome is unknown is one publication when retried with its key).
async fn publish_retrying(server: &Server, channel: &str, data: Value, key: &str) -> Value {
    for _ in 0..50 {
        let r = server
            .post(
                &format!("/v1/channels/{channel}/publish"),
                json!({ "data": data, "idempotency_key": key }),
            )
            .await;
        if r.status == StatusCode::OK {
            return r.body;
        }
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", r.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("publish {key} not acknowledged in 50 tries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publications_on_one_server_reach_sse_and_websocket_subscribers_on_another_and_resume_exactly() {
    let redis = RedisServer::start();
    let a = Server::on_redis(&redis.url()).await;
    let b = Server::on_redis(&redis.url()).await;

    let mut sse = Sse::open(&b, "orders", None).await;
    let first = sse.next().await;
    assert_eq!(first.event, "subscribed");
    assert_eq!(first.json()["recovered"], true);
    let mut ws = ws_connect(&b, &[]).await.unwrap();
    let subscribed = ws_subscribe(&mut ws, "orders", None).await;
    assert_eq!(subscribed["recovered"], true);

    for i in 0..20 {
        let p = publish(&a, "orders", json!({"n": i})).await;
        assert!(p["epoch"].is_string() && p["offset"].as_u64() == Some(i + 1), "{p}");
    }
    let want: Vec<Value> = (0..20).map(|i| json!({"n": i})).collect();
    assert_eq!(sse.publications(20).await, want, "SSE on B, in order");
    let mut got = Vec::new();
    while got.len() < 20 {
        let f = ws_next(&mut ws).await.unwrap();
        assert_eq!(f["type"], "publication", "{f}");
        assert_eq!(f["channel"], "orders");
        assert_eq!(f["offset"].as_u64(), Some(got.len() as u64 + 1));
        got.push(f["data"].clone());
    }
    assert_eq!(got, want, "WebSocket on B, in order");

    // Both go away; 100 publications follow; both resume from their last position and
    // get exactly those 100, recovered.
    let last_id = sse.last_id.clone().unwrap();
    drop(sse);
    ws.close(None).await.unwrap();
    let (epoch, offset) = last_id.rsplit_once(':').unwrap();
    for i in 20..120 {
        publish(&a, "orders", json!({"n": i})).await;
    }
    let mut sse = Sse::open(&b, "orders", Some(&last_id)).await;
    let resumed = sse.next().await;
    assert_eq!(resumed.event, "subscribed");
    if resumed.json()["recovered"] != true {
        let h = b.get("/v1/channels/orders/history?limit=0").await;
        panic!("resume from {last_id}: {resumed:?}; history {:?}", h.body);
    }
    assert_eq!(resumed.json()["recovered"], true, "{resumed:?}");
    let want: Vec<Value> = (20..120).map(|i| json!({"n": i})).collect();
    assert_eq!(sse.publications(100).await, want);
    publish(&a, "orders", json!({"n": 120})).await;
    assert_eq!(sse.publications(1).await, vec![json!({"n": 120})], "then live");

    let mut ws = ws_connect(&b, &[]).await.unwrap();
    // (The history holds the last 100: offsets 22 to 121.)
    assert_eq!(offset, "20");
    let since = json!({"epoch": epoch, "offset": 40});
    assert_eq!(ws_subscribe(&mut ws, "orders", Some(since)).await["recovered"], true);
    for i in 40..121 {
        let f = ws_next(&mut ws).await.unwrap();
        assert_eq!(f["data"], json!({"n": i}), "{f}");
    }

    // History: the newest first, a page after a position, and the position alone.
    let h = b.get("/v1/channels/orders/history?limit=3&reverse=true").await;
    assert_eq!(h.status, StatusCode::OK);
    let offsets: Vec<u64> = h.body["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, vec![121, 120, 119]);
    assert_eq!(h.body["offset"], 121);
    let after = a
        .get(&format!(
            "/v1/channels/orders/history?limit=2&since_epoch={epoch}&since_offset=119"
        ))
        .await;
    assert_eq!(after.body["publications"][0]["offset"], 120, "{:?}", after.body);
    assert_eq!(after.body["publications"].as_array().unwrap().len(), 2);
    let only = a.get("/v1/channels/orders/history?limit=0").await;
    assert_eq!(only.body["publications"], json!([]));
    assert_eq!(only.body["offset"], 121);

    // The channel listing counts B's subscribers and A's publications.
    let listed = b.get("/v1/channels").await.body;
    let orders = listed["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["channel"] == "orders")
        .unwrap()
        .clone();
    assert_eq!(orders["subscribers"], 2, "{listed}");
    assert_eq!(listed["live"], true);
    let published_via_a = a.get("/v1/channels").await.body["channels"][0].clone();
    assert_eq!(published_via_a["published"], 121, "{published_via_a}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_position_older_than_the_history_is_told_recovered_false() {
    let redis = RedisServer::start();
    let settings = ServerSettings {
        channels: ChannelOptions::default().history(10, Duration::from_secs(600)),
        ..ServerSettings::default()
    };
    let a = Server::start(Some(redis.url()), settings).await;
    let first = publish(&a, "ticks", json!(0)).await;
    for i in 1..50 {
        publish(&a, "ticks", json!(i)).await;
    }
    let id = format!("{}:{}", first["epoch"].as_str().unwrap(), first["offset"]);
    let mut sse = Sse::open(&a, "ticks", Some(&id)).await;
    let subscribed = sse.next().await;
    assert_eq!(subscribed.event, "subscribed");
    assert_eq!(subscribed.json()["recovered"], false, "never part of the gap silently");
    assert_eq!(subscribed.json()["offset"], 50, "from the top of the stream");
    publish(&a, "ticks", json!(50)).await;
    assert_eq!(sse.publications(1).await, vec![json!(50)]);

    // A position of an epoch that is not the stream's: the same, and history says 409.
    let mut sse = Sse::open(&a, "ticks", Some("another-epoch:3")).await;
    assert_eq!(sse.next().await.json()["recovered"], false);
    let h = a
        .get("/v1/channels/ticks/history?since_epoch=another-epoch&since_offset=3")
        .await;
    assert_eq!(h.status, StatusCode::CONFLICT, "{:?}", h.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_stream_twice_subscribers_keep_receiving_and_outage_publications_reach_redis() {
    let mut redis = RedisServer::options().durable().start();
    let a = Server::on_redis(&redis.url()).await;
    let b = Server::on_redis(&redis.url()).await;
    let mut sse = Sse::open(&a, "feed", None).await;
    sse.next().await;
    let mut n = 0;
    let mut acknowledged = Vec::new();
    for round in 0..2 {
        for _ in 0..5 {
            acknowledged.push(json!(n));
            publish_retrying(&a, "feed", json!(n), &format!("k{n}")).await;
            n += 1;
        }
        assert_eq!(sse.publications(5).await.len(), 5);
        let before_outage = sse.last_id.clone().unwrap();

        println!("round {round}: killing Redis");
        redis.kill();
        // Publications keep flowing to A's subscriber from the embedded store (each
        // acknowledged one journaled for Redis); the first is announced with a new epoch.
        let mut during = Vec::new();
        for _ in 0..5 {
            let r = a
                .post(
                    "/v1/channels/feed/publish",
                    json!({"data": n, "idempotency_key": format!("k{n}")}),
                )
                .await;
            if r.status == StatusCode::OK {
                acknowledged.push(json!(n));
                during.push(json!(n));
            } else {
                assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", r.body);
            }
            n += 1;
        }
        assert!(
            !during.is_empty(),
            "round {round}: the embedded store takes publications"
        );
        let mut seen = Vec::new();
        while seen.len() < during.len() {
            let e = sse.next().await;
            if e.event == "subscribed" {
                assert_eq!(e.json()["recovered"], false, "a new stream is said to be one");
                continue;
            }
            seen.push(e.json());
        }
        assert_eq!(
            seen, during,
            "round {round}: the same instance's subscriber keeps receiving"
        );

        println!("round {round}: the subscriber kept receiving; restarting Redis");
        redis.restart();
        eventually(
            Duration::from_secs(20),
            "recovered: outage publications in Redis",
            async || {
                let h = b.get("/v1/channels/feed/history?limit=1000").await;
                h.status == StatusCode::OK && {
                    let data: Vec<Value> = h.body["publications"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|p| p["data"].clone())
                        .collect();
                    acknowledged.iter().all(|a| data.contains(a))
                }
            },
        )
        .await;
        println!("round {round}: recovered");
        // A subscriber resuming from before the outage is told what it cannot have.
        let mut late = Sse::open(&b, "feed", Some(&before_outage)).await;
        let first = late.next().await;
        assert_eq!(first.event, "subscribed");
        // The outage's publications were appended to Redis's stream, so the gap since
        // before the outage is in the history: recovered, or honestly not — never partial.
        println!("round {round}: resumed from before the outage: {first:?}");
        if first.json()["recovered"] == true {
            let got = late.publications(during.len()).await;
            assert_eq!(got, during, "round {round}");
        }
        // A's subscriber moves back to Redis's stream.
        eventually(
            Duration::from_secs(10),
            "A's subscriber follows Redis again",
            async || {
                let e = sse.next().await;
                println!("round {round}: A's subscriber: {e:?}");
                e.event == "subscribed"
            },
        )
        .await;
    }
    // Nothing acknowledged is lost: every acknowledged publication is in Redis's history.
    let h = b.get("/v1/channels/feed/history?limit=1000").await.body;
    let data: Vec<Value> = h["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["data"].clone())
        .collect();
    for a in &acknowledged {
        assert!(data.contains(a), "{a} acknowledged and lost: {data:?}");
    }
    // Publishing goes on through Redis and reaches both servers.
    let mut on_b = Sse::open(&b, "feed", None).await;
    on_b.next().await;
    publish_retrying(&a, "feed", json!("after"), "after").await;
    assert_eq!(on_b.publications(1).await, vec![json!("after")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_websocket_subscribers_are_not_slowed_by_a_stalled_one() {
    let settings = ServerSettings {
        channels: ChannelOptions::default().prefix("bulk", 0, Duration::from_secs(1)),
        ..ServerSettings::default()
    };
    let server = Server::start(None, settings).await;
    let mut readers = Vec::new();
    for _ in 0..1000 {
        let mut ws = ws_connect(&server, &[]).await.unwrap();
        ws_subscribe(&mut ws, "fan", None).await;
        readers.push(ws);
    }
    // The stalled one: subscribed to both, reads nothing.
    let mut stalled = ws_connect(&server, &[]).await.unwrap();
    ws_subscribe(&mut stalled, "fan", None).await;
    ws_subscribe(&mut stalled, "bulk", None).await;
    let big = "x".repeat(60 * 1024);
    // Far more than its socket buffers and its 1 MiB queue hold.
    for i in 0..300 {
        publish(&server, "bulk", json!({"i": i, "pad": big})).await;
    }
    for i in 0..20 {
        publish(&server, "fan", json!(i)).await;
    }
    // Every reader gets all 20 in order, at once.
    let tasks: Vec<_> = readers
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                for i in 0..20 {
                    let f = ws_next(&mut ws).await.unwrap();
                    assert_eq!(f["data"], json!(i));
                }
            })
        })
        .collect();
    let start = std::time::Instant::now();
    for t in tasks {
        t.await.unwrap();
    }
    println!("1,000 readers took {:?} to read 20 publications each", start.elapsed());
    // The stalled one was disconnected, not kept growing: what it reads now is what its
    // socket buffers held, then the end — with the close frame and its reason when there was
    // room for it (a full socket cannot take even that; the server waits 1 s for it).
    let mut ended = None;
    for _ in 0..400 {
        if let Err(close) = ws_next(&mut stalled).await {
            ended = Some(close);
            break;
        }
    }
    match ended.expect("the stalled connection ends") {
        Some((code, reason)) => {
            assert_eq!(code, 1008);
            assert!(reason.contains("slow consumer"), "{reason}");
        }
        None => println!("the stalled connection ended without room for a close frame"),
    }
    let metrics = server
        .http
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("redkit_ws_slow_consumers_total 1"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("ws"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_named_and_keys_are_asked_of_websockets() {
    let server = Server::embedded().await;
    // HTTP.
    let r = server
        .post("/v1/channels/c/publish", json!({"data": "x".repeat(70_000)}))
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(r.message().contains("data"), "{}", r.message());
    let r = server.post("/v1/channels/c/publish", json!({"dat": 1})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.message().contains("dat"), "{}", r.message());
    let r = server.get("/v1/channels/c/history?since_offset=3").await;
    assert!(r.message().contains("since_epoch"), "{}", r.message());
    let r = server.get("/v1/channels/c/history?limit=5000").await;
    assert!(r.message().contains("limit"), "{}", r.message());
    let r = server
        .http
        .get(format!("{}/v1/channels/c/events", server.base))
        .header("Last-Event-ID", "nonsense")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("Last-Event-ID"));
    let r = server.post("/v1/channels/%01/publish", json!({"data": 1})).await;
    assert!(r.message().contains("channel"), "{}", r.message());

    // WebSocket: every bad frame gets an error naming it, and the connection goes on.
    let mut ws = ws_connect(&server, &[]).await.unwrap();
    ws_send(&mut ws, json!({"op": "dance"})).await;
    let e = ws_next(&mut ws).await.unwrap();
    assert_eq!(e["type"], "error");
    assert!(e["message"].as_str().unwrap().contains("dance"), "{e}");
    ws.send(Message::text("{not json")).await.unwrap();
    assert_eq!(ws_next(&mut ws).await.unwrap()["type"], "error");
    ws_send(&mut ws, json!({"op": "unsubscribe", "channel": "never"})).await;
    assert_eq!(ws_next(&mut ws).await.unwrap()["code"], "not_found");
    for i in 0..64 {
        ws_subscribe(&mut ws, &format!("c{i}"), None).await;
    }
    ws_send(&mut ws, json!({"op": "subscribe", "channel": "c64"})).await;
    let e = ws_next(&mut ws).await.unwrap();
    assert_eq!(e["code"], "limit_exceeded", "{e}");
    assert!(e["message"].as_str().unwrap().contains("64"));
    ws_send(&mut ws, json!({"op": "unsubscribe", "channel": "c0"})).await;
    assert_eq!(ws_next(&mut ws).await.unwrap()["type"], "unsubscribed");
    ws_send(
        &mut ws,
        json!({"op": "publish", "channel": "c1", "data": {"a": 1}, "id": 9}),
    )
    .await;
    // The publication (to our subscription of c1) and the answer, in either order.
    let mut frames = [ws_next(&mut ws).await.unwrap(), ws_next(&mut ws).await.unwrap()];
    frames.sort_by_key(|f| f["type"].as_str().unwrap().to_string());
    assert_eq!(frames[0]["type"], "publication");
    assert_eq!(frames[1]["type"], "published");
    assert_eq!(frames[1]["id"], 9);
    ws_send(&mut ws, json!({"op": "ping"})).await;
    assert_eq!(ws_next(&mut ws).await.unwrap()["type"], "pong");
    let big = format!("{{\"op\": \"ping\", \"pad\": \"{}\"}}", "x".repeat(100 * 1024));
    let _ = ws.send(Message::text(big)).await;
    assert!(
        ws_next(&mut ws).await.is_err(),
        "an over-long message closes the connection"
    );

    // Without keys, a page of another origin may not open one (no browser rule stops it
    // from reading the answers).
    let refused = ws_connect(&server, &[("origin", "http://evil.example")]).await;
    assert!(refused.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_and_event_streams_honour_keys_and_scopes() {
    let key = |label: &str, key: &str, scope: &str| ApiKey::new(label, key, &[scope.to_string()]).unwrap();
    let settings = ServerSettings {
        keys: vec![
            key("reader", "reader-key-0123456789", "channels:public.*:read"),
            key("writer", "writer-key-0123456789", "channels:*:write"),
        ],
        ..ServerSettings::default()
    };
    let server = Server::start(None, settings).await;
    let writer = server.with_key("writer-key-0123456789");
    let reader = server.with_key("reader-key-0123456789");
    assert_eq!(
        reader
            .post("/v1/channels/public.x/publish", json!({"data": 1}))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        writer
            .post("/v1/channels/public.x/publish", json!({"data": 1}))
            .await
            .status,
        StatusCode::OK
    );
    writer.post("/v1/channels/private/publish", json!({"data": 1})).await;
    assert_eq!(
        reader.get("/v1/channels/private/history").await.status,
        StatusCode::FORBIDDEN
    );
    let listed = reader.get("/v1/channels").await.body;
    let names: BTreeMap<String, Value> = listed["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["channel"].as_str().unwrap().to_string(), c.clone()))
        .collect();
    assert!(
        names.contains_key("public.x") && !names.contains_key("private"),
        "{listed}"
    );

    // A browser cannot set Authorization on a WebSocket: the key comes as the first frame.
    let mut ws = ws_connect(&server, &[]).await.unwrap();
    ws_send(&mut ws, json!({"op": "subscribe", "channel": "public.x"})).await;
    assert_eq!(ws_next(&mut ws).await.unwrap()["code"], "unauthorized");
    ws_send(&mut ws, json!({"op": "auth", "api_key": "reader-key-0123456789"})).await;
    ws_subscribe(&mut ws, "public.x", None).await;
    ws_send(&mut ws, json!({"op": "subscribe", "channel": "private"})).await;
    assert_eq!(ws_next(&mut ws).await.unwrap()["code"], "forbidden");
    // With the header, at once.
    let mut ws = ws_connect(&server, &[("authorization", "Bearer reader-key-0123456789")])
        .await
        .unwrap();
    ws_subscribe(&mut ws, "public.y", None).await;
    // An unknown key closes the connection.
    let mut ws = ws_connect(&server, &[]).await.unwrap();
    ws_send(&mut ws, json!({"op": "auth", "api_key": "guess"})).await;
    assert_eq!(ws_next(&mut ws).await.unwrap_err().unwrap().0, 1008);

    // Channel tokens: a backend with a key gets one for a page, for channels it may read.
    let refused = reader
        .post("/v1/channels/tokens", json!({"channels": ["private"], "ttl_s": 60}))
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let bad = reader.post("/v1/channels/tokens", json!({"channels": ["a*b"]})).await;
    assert!(bad.message().contains("channels"), "{}", bad.message());
    let bad = reader
        .post(
            "/v1/channels/tokens",
            json!({"channels": ["public.x"], "ttl_s": 100000}),
        )
        .await;
    assert!(bad.message().contains("ttl_s"), "{}", bad.message());
    let issued = reader
        .post("/v1/channels/tokens", json!({"channels": ["public.*"], "ttl_s": 60}))
        .await;
    assert_eq!(issued.status, StatusCode::OK, "{:?}", issued.body);
    let token = issued.body["token"].as_str().unwrap().to_string();
    // ?token= on the event stream and the history (no Authorization header at all).
    let events = |ch: &str, token: &str| {
        server
            .http
            .get(format!("{}/v1/channels/{ch}/events?token={token}", server.base))
            .send()
    };
    let ok = events("public.x", &token).await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    drop(ok);
    assert_eq!(events("private", &token).await.unwrap().status(), StatusCode::FORBIDDEN);
    let h = server
        .get(&format!("/v1/channels/public.x/history?token={token}"))
        .await;
    assert_eq!(h.status, StatusCode::OK);
    assert_eq!(h.body["publications"][0]["data"], 1);
    // A token changed by a single character is refused.
    let tampered = format!("{token}x");
    assert_eq!(
        events("public.x", &tampered).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    // In the WebSocket's auth frame, or its URL.
    let mut ws = ws_connect(&server, &[]).await.unwrap();
    ws_send(&mut ws, json!({"op": "auth", "token": token})).await;
    ws_subscribe(&mut ws, "public.z", None).await;
    ws_send(&mut ws, json!({"op": "subscribe", "channel": "private"})).await;
    assert_eq!(ws_next(&mut ws).await.unwrap()["code"], "forbidden");
    // A token reads, never writes.
    ws_send(&mut ws, json!({"op": "publish", "channel": "public.z", "data": 1})).await;
    assert_eq!(ws_next(&mut ws).await.unwrap()["code"], "forbidden");
    let mut request = format!("ws://{}/v1/ws?token={token}", server.addr())
        .into_client_request()
        .unwrap();
    request.headers_mut().remove("authorization");
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    ws_subscribe(&mut ws, "public.q", None).await;
    // An expired token is refused.
    let short = reader
        .post("/v1/channels/tokens", json!({"channels": ["public.*"], "ttl_s": 1}))
        .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let expired = events("public.x", short.body["token"].as_str().unwrap()).await.unwrap();
    assert_eq!(expired.status(), StatusCode::UNAUTHORIZED);
    assert!(expired.text().await.unwrap().contains("expired"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_token_works_on_every_server_with_the_same_secret() {
    let secret = "a-shared-secret-of-at-least-32-characters";
    let settings = |secret: &str| ServerSettings {
        keys: vec![ApiKey::new("app", "app-key-0123456789ab", &["channels:*:read".to_string()]).unwrap()],
        channel_token_secret: Some(secret.to_string()),
        ..ServerSettings::default()
    };
    let a = Server::start(None, settings(secret)).await;
    let b = Server::start(None, settings(secret)).await;
    let c = Server::start(None, settings("another-secret-of-at-least-32-characters")).await;
    let issued = a
        .with_key("app-key-0123456789ab")
        .post("/v1/channels/tokens", json!({"channels": ["feed"]}))
        .await;
    let token = issued.body["token"].as_str().unwrap();
    assert!(issued.body["expires_at_ms"].as_u64().unwrap() > redkit::stats::now_ms() + 3_500_000);
    assert_eq!(
        b.get(&format!("/v1/channels/feed/history?token={token}")).await.status,
        StatusCode::OK
    );
    let other = c.get(&format!("/v1/channels/feed/history?token={token}")).await;
    assert_eq!(other.status, StatusCode::UNAUTHORIZED);
    assert!(other.message().contains("not signed"), "{}", other.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_event_streams_and_closes_websockets_with_1001() {
    let server = Server::embedded().await;
    let mut sse = Sse::open(&server, "c", None).await;
    sse.next().await;
    let mut ws = ws_connect(&server, &[]).await.unwrap();
    ws_subscribe(&mut ws, "c", None).await;
    let stopped = tokio::spawn(server.shutdown());
    assert_eq!(ws_next(&mut ws).await.unwrap_err().unwrap().0, 1001);
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(_)) = sse.response.chunk().await {}
    })
    .await;
    assert!(end.is_ok(), "the event stream ends");
    tokio::time::timeout(Duration::from_secs(10), stopped)
        .await
        .expect("the server stops with streams open")
        .unwrap();
}

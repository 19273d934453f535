//! Servers on ephemeral ports, in this process, on the embedded store or a testkit Redis,
//! and a small JSON client for them.

#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use redkit::config::{BreakerConfig, RedisConfig};
use redkit::{Config, Redkit};
use redkit_server::{AppState, ServerSettings};
use reqwest::{Method, StatusCode, header::HeaderMap};
use serde_json::Value;
use tokio::sync::{oneshot, watch};

/// Short timeouts so that faults are noticed quickly.
pub fn config(redis_url: Option<String>, data_dir: &Path) -> Config {
    let mut c = Config {
        data_dir: data_dir.to_path_buf(),
        breaker: BreakerConfig {
            failure_threshold: 3,
            probe_min: Duration::from_millis(20),
            probe_max: Duration::from_millis(200),
            ..BreakerConfig::default()
        },
        ..Config::default()
    };
    c.redis = redis_url.map(|url| {
        let mut r = RedisConfig::new(url);
        r.response_timeout = Duration::from_millis(250);
        r.connect_timeout = Duration::from_millis(250);
        r.reconnect.min = Duration::from_millis(10);
        r.reconnect.max = Duration::from_millis(100);
        r.reconnect.attempts = 2;
        r
    });
    c
}

/// One answer.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    /// The error message of a JSON error body (panics on other bodies).
    pub fn message(&self) -> &str {
        self.body["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("not an error body: {}", self.body))
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no {name} header"))
    }
}

/// A server running in this process.
pub struct Server {
    pub base: String,
    pub redkit: Redkit,
    pub http: reqwest::Client,
    pub key: Option<String>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Server {
    pub async fn embedded() -> Server {
        Server::start(None, ServerSettings::default()).await
    }

    pub async fn on_redis(url: &str) -> Server {
        Server::start(Some(url.to_string()), ServerSettings::default()).await
    }

    pub async fn start(redis_url: Option<String>, settings: ServerSettings) -> Server {
        // RUST_LOG=redkit=debug shows the library's logs in a failing test's output.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        redkit_server::metrics::install();
        let dir = tempfile::tempdir().unwrap();
        let redkit = Redkit::open(config(redis_url, dir.path())).await.unwrap();
        let (stop_tx, stopping) = watch::channel(false);
        let state = AppState::new(redkit.clone(), settings, stopping).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, signal) = oneshot::channel::<()>();
        let task = tokio::spawn(redkit_server::serve(listener, state, stop_tx, async {
            let _ = signal.await;
        }));
        Server {
            base,
            redkit,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            key: None,
            stop: Some(stop),
            task,
            _dir: dir,
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.base.trim_start_matches("http://").parse().unwrap()
    }

    /// The same server, called with API key `key`.
    pub fn with_key(&self, key: &str) -> Client<'_> {
        Client {
            server: self,
            key: Some(key.to_string()),
        }
    }

    pub fn anonymous(&self) -> Client<'_> {
        Client {
            server: self,
            key: None,
        }
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.anonymous().call(method, path, body).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.call(Method::PUT, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Reply {
        self.call(Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.call(Method::DELETE, path, None).await
    }

    /// Stops accepting, lets requests finish, and waits for the server task.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        (&mut self.task).await.unwrap().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Calls with or without a key.
pub struct Client<'a> {
    server: &'a Server,
    key: Option<String>,
}

impl Client<'_> {
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let mut req = self.server.http.request(method, format!("{}{path}", self.server.base));
        if let Some(k) = &self.key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
            panic!("{path} answered {status}: {body}");
        }
        Reply { status, headers, body }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.call(Method::PUT, path, Some(body)).await
    }
}

/// Polls `check` until it returns true or `limit` passes; panics with `what` on timeout.
pub async fn eventually(limit: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A response read off a raw connection.
#[derive(Debug)]
pub struct RawReply {
    pub status: u16,
    /// The status line and headers, as sent.
    pub head: String,
    pub body: Vec<u8>,
}

impl RawReply {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// A header's value (names compared without case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Reads one HTTP/1.1 response (`Content-Length` bodies, or up to the close); `None`
/// when the connection closes (or fails) before a whole head arrives.
pub async fn read_response(stream: &mut (impl tokio::io::AsyncRead + Unpin)) -> Option<RawReply> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    let status = head.get(9..12)?.parse().ok()?;
    let mut body = buf[end..].to_vec();
    let length = head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())?
    });
    match length {
        Some(len) => {
            while body.len() < len {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => body.extend_from_slice(&chunk[..n]),
                }
            }
        }
        None => {
            let _ = stream.read_to_end(&mut body).await;
        }
    }
    Some(RawReply { status, head, body })
}

/// Sends `request` as is on a new connection and reads the response.
pub async fn raw_request(addr: std::net::SocketAddr, request: &[u8]) -> RawReply {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), read_response(&mut stream))
        .await
        .expect("an answer within 10 s")
        .expect("an answer, not a closed connection")
}

/// Waits until the peer closes `stream` (EOF or reset), reading and discarding what
/// arrives; returns false if it is still open after `limit`.
pub async fn closes_within(stream: &mut (impl tokio::io::AsyncRead + Unpin), limit: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

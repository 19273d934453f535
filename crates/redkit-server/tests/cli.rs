//! The `redkit` binary: start-up refusals exit 2 with a message that names the setting,
//! the value, where it came from and what is allowed; `/health` and `/ready` answer.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use redkit_testkit::RedisServer;

fn redkit() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_redkit"));
    // Start from a clean environment so the host's REDIS_URL etc. cannot leak in.
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    cmd
}

fn refused(output: Output) -> String {
    assert_eq!(
        output.status.code(),
        Some(2),
        "exit status; stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stderr).unwrap()
}

#[test]
fn bad_environment_value_exits_2_naming_setting_value_origin_and_rule() {
    let dir = tempfile::tempdir().unwrap();
    let out = redkit()
        .current_dir(dir.path())
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .env("REDIS_SOCKET_TIMEOUT", "soon")
        .output()
        .unwrap();
    let err = refused(out);
    for part in [
        "redis.socket_timeout",
        "\"soon\"",
        "environment variable REDIS_SOCKET_TIMEOUT",
        "seconds",
    ] {
        assert!(err.contains(part), "missing {part:?} in: {err}");
    }
}

#[test]
fn bad_config_file_and_flag_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("redkit.toml");
    std::fs::write(&file, "[breaker]\nfailure_threshold = 0\n").unwrap();
    let err = refused(redkit().current_dir(dir.path()).output().unwrap());
    assert!(
        err.contains("breaker.failure_threshold") && err.contains("redkit.toml"),
        "{err}"
    );

    let err = refused(
        redkit()
            .args(["serve", "--config", "/nonexistent/redkit.toml"])
            .output()
            .unwrap(),
    );
    assert!(err.contains("/nonexistent/redkit.toml"), "{err}");

    let err = refused(
        redkit()
            .current_dir(dir.path())
            .args(["--listen", "nowhere"])
            .env("REDKIT_CONFIG", "/dev/null")
            .output()
            .unwrap(),
    );
    assert!(err.contains("command-line flag --listen"), "{err}");
}

#[test]
fn non_loopback_listen_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = refused(
        redkit()
            .current_dir(dir.path())
            .args(["--listen", "0.0.0.0:7070"])
            .output()
            .unwrap(),
    );
    assert!(err.contains("0.0.0.0:7070") && err.contains("loopback"), "{err}");
}

#[test]
fn unusable_data_dir_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let err = refused(
        redkit()
            .current_dir(dir.path())
            .args(["--listen", &format!("127.0.0.1:{}", free_port())])
            .env("REDKIT_DATA_DIR", &file)
            .output()
            .unwrap(),
    );
    assert!(err.contains("data dir") && err.contains("REDKIT_DATA_DIR"), "{err}");
}

struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn serve(dir: &std::path::Path, env: &[(&str, &str)]) -> Server {
    serve_on(dir, "127.0.0.1", env)
}

fn serve_on(dir: &std::path::Path, host: &str, env: &[(&str, &str)]) -> Server {
    let port = free_port();
    let mut cmd = redkit();
    cmd.current_dir(dir)
        .args(["serve", "--listen", &format!("{host}:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let server = Server {
        child: cmd.spawn().unwrap(),
        port,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    server
}

fn get(port: u16, path: &str) -> (u16, serde_json::Value) {
    request(port, "GET", path, "", "")
}

/// One HTTP/1.1 request; `headers` are extra header lines, each ending in CRLF.
fn request(port: u16, method: &str, path: &str, headers: &str, body: &str) -> (u16, serde_json::Value) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw[9..12].parse().unwrap();
    let body = raw.split_once("\r\n\r\n").unwrap().1;
    (status, serde_json::from_str(body).unwrap_or(serde_json::Value::Null))
}

#[test]
fn serves_health_and_ready_on_the_embedded_store_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &[]);
    let (status, health) = get(server.port, "/health");
    assert_eq!(status, 200);
    assert_eq!(health["mode"], "embedded");
    assert_eq!(health["status"], "ok");
    assert!(
        dir.path().join("redkit-data/redkit.sqlite3").exists(),
        "default data dir is ./redkit-data"
    );
    let (status, ready) = get(server.port, "/ready");
    assert_eq!((status, &ready["mode"]), (200, &serde_json::json!("embedded")));
}

#[test]
fn health_follows_redis_through_an_outage() {
    let mut redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let url = redis.url();
    let server = serve(
        dir.path(),
        &[
            ("REDIS_URL", &url),
            ("REDIS_SOCKET_TIMEOUT", "0.25"),
            ("REDKIT_BREAKER_PROBE_MAX_MS", "200"),
        ],
    );
    let (status, health) = get(server.port, "/health");
    assert_eq!(status, 200);
    assert_eq!(health["mode"], "redis");
    assert_eq!(health["redis"]["info"]["role"], "master");

    redis.kill();
    // Health itself asks Redis, so it is the traffic that notices the outage.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, health) = get(server.port, "/health");
        if health["mode"] == "fallback" {
            assert_eq!(status, 503, "locks fail closed, and /health says so");
            assert_eq!(health["status"], "unavailable");
            let (status, ready) = get(server.port, "/ready");
            assert_eq!(
                (status, &ready["mode"]),
                (200, &serde_json::json!("fallback")),
                "still taking requests"
            );
            break;
        }
        assert!(Instant::now() < deadline, "never reached fallback: {health}");
        std::thread::sleep(Duration::from_millis(20));
    }
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(server.port, "/health").1["mode"] != "redis" {
        assert!(Instant::now() < deadline, "never returned to redis");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_ends_long_polls_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(dir.path(), &[]);
    let port = server.port;
    let poll = std::thread::spawn(move || {
        request(
            port,
            "POST",
            "/v1/queues/idle/fetch",
            "",
            r#"{"worker":"w","wait_ms":30000}"#,
        )
        .0
    });
    // Not a fixed sleep: a SIGTERM before the request is read would cut it unanswered. The poll's
    // first look at the queue is recorded before it starts waiting, so once /health counts one, the
    // handler holds the request.
    let deadline = Instant::now() + Duration::from_secs(10);
    let fetches = || {
        let (_, health) = get(port, "/health");
        health["embedded"]["ops"]["job_fetch"]["count"].as_u64().unwrap_or(0)
    };
    while fetches() == 0 {
        assert!(Instant::now() < deadline, "the long poll never reached the server");
        std::thread::sleep(Duration::from_millis(20));
    }
    let stopped = Instant::now();
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    let status = poll.join().unwrap();
    // Timed from the SIGTERM: a poll left to run would end 30 s after it began, at least 20 s
    // after this.
    let ended = stopped.elapsed();
    assert_eq!(status, 204, "the long poll ends with nothing, not an error");
    assert!(
        ended < Duration::from_secs(10),
        "the long poll ended {ended:?} after SIGTERM"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(exit.code(), Some(0));
    eprintln!("exited {:?} after SIGTERM", stopped.elapsed());
}

#[test]
fn non_loopback_listen_with_api_keys_serves_only_with_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_on(
        dir.path(),
        "0.0.0.0",
        &[("REDKIT_API_KEYS", "first-key-0123456789, second-key-0123456789")],
    );
    assert_eq!(get(server.port, "/v1/queues").0, 401);
    let with = |key: &str| {
        request(
            server.port,
            "GET",
            "/v1/queues",
            &format!("Authorization: Bearer {key}\r\n"),
            "",
        )
        .0
    };
    assert_eq!(with("second-key-0123456789"), 200);
    assert_eq!(with("third-key-0123456789"), 401);
    assert_eq!(get(server.port, "/health").0, 200, "probes need no key");
}

#[test]
fn config_file_server_table_gives_scoped_keys_and_policies() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("redkit.toml"),
        r#"
[server]
max_body_bytes = 2048

[[server.api_keys]]
name = "reports"
key_env = "REPORTS_KEY"
scopes = ["ratelimit:api:write", "cache:reports:read"]

[server.policies.api]
algorithm = "fixed_window"
limit = 1
period_ms = 60000
"#,
    )
    .unwrap();
    let server = serve(dir.path(), &[("REPORTS_KEY", "reports-key-0123456789")]);
    let auth = "Authorization: Bearer reports-key-0123456789\r\n";
    let check = || request(server.port, "POST", "/v1/ratelimit/api/check", auth, r#"{"key":"k"}"#).0;
    assert_eq!(check(), 200);
    assert_eq!(check(), 429);
    assert_eq!(request(server.port, "GET", "/v1/cache/orders/x", auth, "").0, 403);
    let big = format!(r#"{{"key":"{}"}}"#, "k".repeat(3000));
    let (status, body) = request(server.port, "POST", "/v1/ratelimit/api/check", auth, &big);
    assert_eq!(status, 413);
    assert!(body["error"]["message"].as_str().unwrap().contains("2048"), "{body}");
    drop(server);

    std::fs::write(
        dir.path().join("redkit.toml"),
        "[[server.api_keys]]\nname = \"x\"\nkey = \"short\"\nscopes = [\"*\"]\n",
    )
    .unwrap();
    let err = refused(redkit().current_dir(dir.path()).output().unwrap());
    assert!(err.contains("server.api_keys[0]") && err.contains("16"), "{err}");
    std::fs::write(dir.path().join("redkit.toml"), "[server]\nport = 1\n").unwrap();
    let err = refused(redkit().current_dir(dir.path()).output().unwrap());
    assert!(err.contains("unknown field") && err.contains("port"), "{err}");
}

fn run_cli(args: &[&str]) -> (bool, String) {
    let out = redkit().args(args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn status_keys_and_queues_commands() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &[]);
    let url = format!("http://127.0.0.1:{}", server.port);
    for key in ["alpha", "beta"] {
        assert_eq!(
            request(server.port, "PUT", &format!("/v1/cache/docs/{key}"), "", "1").0,
            204
        );
    }
    assert_eq!(
        request(server.port, "POST", "/v1/queues/mail/jobs", "", r#"{"payload":1}"#).0,
        201
    );

    let (ok, text) = run_cli(&["status", "--url", &url]);
    assert!(
        ok && text.contains("ok, mode embedded") && text.contains("embedded:"),
        "{text}"
    );
    let (ok, text) = run_cli(&["keys", "--url", &url, "docs"]);
    assert!(ok, "{text}");
    let mut keys: Vec<&str> = text.lines().collect();
    keys.sort();
    assert_eq!(keys, ["alpha", "beta"]);
    let (ok, text) = run_cli(&["keys", "--url", &url, "docs", "a*"]);
    assert!(ok && text.trim() == "alpha", "{text}");
    let (ok, text) = run_cli(&["queues", "--url", &url]);
    assert!(ok, "{text}");
    let mail = text
        .lines()
        .find(|l| l.starts_with("mail"))
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(
        mail.split_whitespace().collect::<Vec<_>>(),
        ["mail", "1", "0", "0", "0", "0", "no"]
    );

    let (ok, text) = run_cli(&["status", "--url", "http://127.0.0.1:1"]);
    assert!(!ok && text.contains("cannot reach"), "{text}");
    let redis = RedisServer::start();
    let (ok, text) = run_cli(&["status", "--redis-url", &redis.url()]);
    assert!(
        ok && text.contains("mode redis") && text.contains("connected"),
        "{text}"
    );
}

/// Issue 15 item 3, as reported: under `ulimit -n 128`, 150 half-sent requests made the
/// server unreachable (accept failed with EMFILE, and nothing ever closed them). The cap
/// now stays below the open-files limit and the header-read timeout frees the slots.
#[test]
fn half_sent_requests_beyond_the_open_files_limit_do_not_make_the_server_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut sh = Command::new("sh");
    sh.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("REDKIT_SERVER_HEADER_READ_TIMEOUT_S", "1")
        .current_dir(dir.path())
        .args([
            "-c",
            r#"ulimit -n 128 && exec "$0" serve --listen "$1""#,
            env!("CARGO_BIN_EXE_redkit"),
            &format!("127.0.0.1:{port}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let server = Server {
        child: sh.spawn().unwrap(),
        port,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut half_sent = Vec::new();
    for _ in 0..150 {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Half: ")
            .unwrap();
        half_sent.push(c);
    }
    let started = Instant::now();
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    c.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut raw = String::new();
    let _ = c.read_to_string(&mut raw);
    assert!(
        raw.starts_with("HTTP/1.1 200"),
        "no answer within {:?} behind 150 half-sent requests: {raw:?}",
        started.elapsed()
    );
    eprintln!("answered after {:?}", started.elapsed());
    drop(server);
}

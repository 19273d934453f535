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
    let port = free_port();
    let mut cmd = redkit();
    cmd.current_dir(dir)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
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
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
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
            assert_eq!(
                status, 200,
                "no fail-closed capability is registered, so fallback serves"
            );
            assert_eq!(health["status"], "degraded");
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

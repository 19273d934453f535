//! Real `redis-server` processes for redkit's tests, and ways to break them.
//!
//! [`RedisServer`] starts `redis-server` on a free loopback port in its own temp dir and
//! can kill it (SIGKILL), freeze and thaw it (SIGSTOP/SIGCONT), restart it on the same
//! port with the same data, start it into a `LOADING` phase long enough to observe, and
//! run it with a password or ACL users. The process is killed and reaped when the handle
//! drops — also when a test panics — and, on Linux, when the test process dies.
//!
//! [`Partition`] is a TCP proxy in front of Redis that can cut one client off while
//! others still reach it.
//!
//! The binary is `redis-server` on `PATH`, or the path in `REDIS_SERVER`. If it is
//! missing, starting panics with a message that says how to install it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

mod partition;
pub use partition::Partition;

/// Options for [`RedisServer`].
#[derive(Debug, Clone, Default)]
pub struct Options {
    password: Option<String>,
    users: Vec<(String, String, String)>,
    extra: Vec<String>,
    config_file: Option<String>,
    tls: bool,
}

impl Options {
    /// `requirepass`: clients must AUTH with this password.
    pub fn password(mut self, password: &str) -> Self {
        self.password = Some(password.to_string());
        self
    }

    /// An ACL user with a password and rules, e.g. `("app", "pw", "~* &* +@all")`.
    pub fn user(mut self, name: &str, password: &str, rules: &str) -> Self {
        self.users.push((name.into(), password.into(), rules.into()));
        self
    }

    /// Any other `redis-server` arguments, e.g. `["--maxmemory-policy", "allkeys-lru"]`.
    pub fn arg(mut self, arg: &str) -> Self {
        self.extra.push(arg.to_string());
        self
    }

    /// Persist every write before answering (AOF, `appendfsync always`), so a SIGKILL
    /// loses nothing Redis acknowledged.
    pub fn durable(self) -> Self {
        self.arg("--appendonly").arg("yes").arg("--appendfsync").arg("always")
    }

    /// Also listen with TLS on [`RedisServer::tls_port`], with a certificate for
    /// `localhost`/`127.0.0.1` signed by a fresh private CA ([`RedisServer::ca_file`]),
    /// made with the `openssl` command. The plain port stays open for the testkit itself.
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// A config file with these contents, written to the server's dir and passed first
    /// (Sentinel needs one it can rewrite).
    pub fn config_file(mut self, contents: &str) -> Self {
        self.config_file = Some(contents.to_string());
        self
    }

    /// Starts the server.
    pub fn start(self) -> RedisServer {
        RedisServer::start_with(self)
    }
}

/// A running (or deliberately broken) `redis-server`.
pub struct RedisServer {
    port: u16,
    tls_port: Option<u16>,
    dir: TempDir,
    options: Options,
    child: Option<Child>,
    frozen: bool,
    load_delay_us: Option<u64>,
}

fn binary() -> PathBuf {
    std::env::var_os("REDIS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("redis-server"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

impl RedisServer {
    /// Starts a plain server (no password, persistence off).
    pub fn start() -> Self {
        Options::default().start()
    }

    /// Options for a server with a password, ACL users or extra arguments.
    pub fn options() -> Options {
        Options::default()
    }

    fn start_with(options: Options) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("redkit-redis-")
            .tempdir()
            .expect("temp dir");
        let mut server = RedisServer {
            port: 0,
            tls_port: None,
            dir,
            options,
            child: None,
            frozen: false,
            load_delay_us: None,
        };
        if server.options.tls {
            make_certificates(server.dir.path());
        }
        // A free port can be taken between our check and redis binding it; try a few.
        for _ in 0..5 {
            server.port = free_port();
            if server.options.tls {
                server.tls_port = Some(free_port());
            }
            if server.spawn().is_ok() {
                server.wait_ready(Duration::from_secs(10));
                return server;
            }
        }
        panic!(
            "redis-server did not start on any of 5 free ports; see {}",
            server.log_path().display()
        );
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn spawn(&mut self) -> Result<(), String> {
        let mut cmd = Command::new(binary());
        cmd.current_dir(self.dir.path());
        if let Some(contents) = &self.options.config_file {
            let path = self.dir.path().join("redis.conf");
            if !path.exists() {
                std::fs::write(&path, contents).map_err(|e| e.to_string())?;
            }
            cmd.arg(path);
        }
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--dir"])
            .arg(self.dir.path())
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--logfile", "redis.log", "--enable-debug-command", "local"])
            .args(["--loading-process-events-interval-bytes", "1024"]);
        if let Some(delay) = self.load_delay_us {
            cmd.args(["--key-load-delay", &delay.to_string()]);
        }
        if let Some(pw) = &self.options.password {
            cmd.args(["--requirepass", pw]);
        }
        if let Some(tls_port) = self.tls_port {
            cmd.args(["--tls-port", &tls_port.to_string()])
                .args(["--tls-cert-file", "server.crt", "--tls-key-file", "server.key"])
                .args(["--tls-ca-cert-file", "ca.crt", "--tls-auth-clients", "no"]);
        }
        for (name, pw, rules) in &self.options.users {
            cmd.arg("--user").arg(name).arg("on").arg(format!(">{pw}"));
            cmd.args(rules.split_whitespace());
        }
        cmd.args(&self.options.extra);
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        #[cfg(target_os = "linux")]
        unsafe {
            use std::os::unix::process::CommandExt;
            // Dies with the thread that started it, so a SIGKILLed test leaves no orphan.
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "redis-server is not installed (looked for {:?}). Install it with \
                 `apt-get install redis-server` (Debian/Ubuntu) or `brew install redis`, \
                 or set REDIS_SERVER to its path. scripts/test installs it for you.",
                binary()
            ),
            Err(e) => panic!("cannot start redis-server: {e}"),
        };
        // Bind failures show up as a quick exit.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().expect("wait on redis-server") {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
                return Err(format!("redis-server exited with {status}: {err}{log}"));
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                self.child = Some(child);
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        Err("redis-server did not open its port within 5 s".into())
    }

    /// The port it listens on (kept across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The TLS port, when started with [`Options::tls`].
    pub fn tls_port(&self) -> Option<u16> {
        self.tls_port
    }

    /// The private CA's certificate (PEM), when started with [`Options::tls`].
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// `rediss://localhost:TLS_PORT`, when started with [`Options::tls`].
    pub fn tls_url(&self) -> String {
        format!("rediss://localhost:{}", self.tls_port.expect("started with tls()"))
    }

    /// `redis://127.0.0.1:PORT` (no credentials).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The URL with the given user and password.
    pub fn url_with(&self, user: &str, password: &str) -> String {
        format!("redis://{user}:{password}@127.0.0.1:{}", self.port)
    }

    /// The server's data directory.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Whether the process is running (frozen counts as running).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL: the process dies at once, without saving.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            if self.frozen {
                self.signal(&child, libc::SIGCONT);
                self.frozen = false;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn signal(&self, child: &Child, sig: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill({}, {sig}) failed", child.id());
    }

    /// SIGSTOP: the process stops answering but keeps its connections open.
    pub fn freeze(&mut self) {
        let child = self.child.as_ref().expect("redis-server is not running");
        self.signal(child, libc::SIGSTOP);
        self.frozen = true;
    }

    /// SIGCONT: resumes a frozen process.
    pub fn thaw(&mut self) {
        let child = self.child.as_ref().expect("redis-server is not running");
        self.signal(child, libc::SIGCONT);
        self.frozen = false;
    }

    /// Kills it (if running) and starts it again on the same port with the same data dir.
    /// Waits until it answers PING.
    pub fn restart(&mut self) {
        self.kill();
        self.load_delay_us = None;
        self.respawn();
        self.wait_ready(Duration::from_secs(10));
    }

    fn respawn(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.spawn() {
                Ok(()) => return,
                // The old socket may linger briefly; the port is ours, so retry.
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("cannot restart redis-server on port {}: {e}", self.port),
            }
        }
    }

    /// Fills the database with `keys` keys, saves an RDB, and restarts so that loading it
    /// takes about `keys × delay_us` microseconds, during which Redis answers `LOADING`.
    /// Returns once Redis answers `LOADING` (not waiting for the end).
    pub fn restart_loading(&mut self, keys: u64, delay_us: u64) {
        self.command(&["DEBUG", "POPULATE", &keys.to_string()])
            .expect("DEBUG POPULATE");
        self.command(&["SAVE"]).expect("SAVE");
        self.kill();
        self.load_delay_us = Some(delay_us);
        self.respawn();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.command(&["PING"]) {
                Err(e) if e.starts_with("LOADING") => return,
                Ok(_) => panic!("redis finished loading before it could be observed; raise keys or delay"),
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => panic!("redis did not start loading: {e}"),
            }
        }
    }

    /// Starts the server (freshly, empty) directly into a LOADING phase of about
    /// `keys × delay_us` µs. Useful for "LOADING at start" tests.
    pub fn start_loading(keys: u64, delay_us: u64) -> Self {
        let mut s = RedisServer::start();
        s.restart_loading(keys, delay_us);
        s
    }

    /// Waits until the server answers PING with PONG.
    pub fn wait_ready(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            match self.command(&["PING"]) {
                Ok(_) => return,
                Err(e) if Instant::now() >= deadline => {
                    panic!("redis-server not ready after {limit:?}: {e}")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    /// Sends one command over a fresh connection (authenticating if a password is set)
    /// and returns the reply as text; an error reply is `Err` with Redis's message.
    pub fn command(&self, args: &[&str]) -> Result<String, String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        let mut reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
        if let Some(pw) = &self.options.password {
            send(&mut stream, &["AUTH", pw])?;
            read_reply(&mut reader)?;
        }
        send(&mut stream, args)?;
        read_reply(&mut reader)
    }
}

/// A private CA and a server certificate for localhost / 127.0.0.1, in `dir`.
fn make_certificates(dir: &std::path::Path) {
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n").expect("write ext.cnf");
    let steps: [&[&str]; 3] = [
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=redkit-test-ca",
        ],
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    ];
    for args in steps {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap_or_else(|e| panic!("the openssl command is needed for TLS tests ({e}); apt-get install openssl"));
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn send(stream: &mut TcpStream, args: &[&str]) -> Result<(), String> {
    let mut buf = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        buf.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        buf.extend_from_slice(a.as_bytes());
        buf.extend_from_slice(b"\r\n");
    }
    stream.write_all(&buf).map_err(|e| e.to_string())
}

fn read_reply(r: &mut impl BufRead) -> Result<String, String> {
    let mut line = String::new();
    r.read_line(&mut line).map_err(|e| e.to_string())?;
    let line = line.trim_end();
    let (kind, rest) = line.split_at(line.len().min(1));
    match kind {
        "+" | ":" => Ok(rest.to_string()),
        "-" => Err(rest.to_string()),
        "$" => {
            let n: i64 = rest.parse().map_err(|_| format!("bad reply {line}"))?;
            if n < 0 {
                return Ok(String::new());
            }
            let mut buf = vec![0; n as usize + 2];
            r.read_exact(&mut buf).map_err(|e| e.to_string())?;
            buf.truncate(n as usize);
            Ok(String::from_utf8_lossy(&buf).into_owned())
        }
        "*" => {
            let n: i64 = rest.parse().map_err(|_| format!("bad reply {line}"))?;
            let items = (0..n.max(0)).map(|_| read_reply(r)).collect::<Result<Vec<_>, _>>()?;
            Ok(items.join("\n"))
        }
        _ => Err(format!("connection closed or unknown reply: {line:?}")),
    }
}

/// A master, one replica and one Sentinel watching them (quorum 1, 500 ms down-after), so
/// tests can kill the master and watch Sentinel promote the replica.
pub struct SentinelSetup {
    /// The initial master.
    pub master: RedisServer,
    /// Its replica (promoted when the master dies).
    pub replica: RedisServer,
    /// The Sentinel.
    pub sentinel: RedisServer,
}

/// The master name Sentinel monitors in [`SentinelSetup`].
pub const SENTINEL_MASTER: &str = "mymaster";

impl SentinelSetup {
    /// Starts master, replica and Sentinel, and waits until Sentinel knows the replica.
    pub fn start() -> Self {
        let master = RedisServer::start();
        let replica = RedisServer::options()
            .arg("--replicaof")
            .arg("127.0.0.1")
            .arg(&master.port().to_string())
            .start();
        let conf = format!(
            "sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {} 1\n\
             sentinel down-after-milliseconds {SENTINEL_MASTER} 500\n\
             sentinel failover-timeout {SENTINEL_MASTER} 3000\n",
            master.port()
        );
        let sentinel = RedisServer::options().config_file(&conf).arg("--sentinel").start();
        let setup = SentinelSetup {
            master,
            replica,
            sentinel,
        };
        setup.wait_until(Duration::from_secs(20), "sentinel to see the replica", |s| {
            s.sentinel
                .command(&["SENTINEL", "REPLICAS", SENTINEL_MASTER])
                .is_ok_and(|r| !r.is_empty())
                && s.master
                    .command(&["INFO", "replication"])
                    .is_ok_and(|i| i.contains("connected_slaves:1"))
        });
        setup
    }

    /// `redis+sentinel://127.0.0.1:PORT/mymaster`
    pub fn url(&self) -> String {
        format!("redis+sentinel://127.0.0.1:{}/{SENTINEL_MASTER}", self.sentinel.port())
    }

    /// The port Sentinel currently names as master.
    pub fn master_port(&self) -> Option<u16> {
        let addr = self
            .sentinel
            .command(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_MASTER])
            .ok()?;
        addr.lines().nth(1)?.parse().ok()
    }

    /// Polls `check` every 50 ms until it holds, panicking after `limit`.
    pub fn wait_until(&self, limit: Duration, what: &str, check: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + limit;
        while !check(self) {
            assert!(
                Instant::now() < deadline,
                "timed out after {limit:?} waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A Redis Cluster of masters (no replicas), slots split evenly.
pub struct RedisCluster {
    /// The nodes.
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts `masters` (>= 1) cluster nodes, assigns every slot, joins them and waits for
    /// `cluster_state:ok` on every node.
    pub fn start(masters: usize) -> Self {
        assert!(masters >= 1);
        let nodes: Vec<RedisServer> = (0..masters)
            .map(|_| {
                RedisServer::options()
                    .arg("--cluster-enabled")
                    .arg("yes")
                    .arg("--cluster-config-file")
                    .arg("nodes.conf")
                    .arg("--cluster-node-timeout")
                    .arg("2000")
                    .start()
            })
            .collect();
        let per = 16384 / masters;
        for (i, node) in nodes.iter().enumerate() {
            let lo = i * per;
            let hi = if i + 1 == masters { 16383 } else { lo + per - 1 };
            node.command(&["CLUSTER", "ADDSLOTSRANGE", &lo.to_string(), &hi.to_string()])
                .expect("CLUSTER ADDSLOTSRANGE");
        }
        for node in &nodes[1..] {
            nodes[0]
                .command(&["CLUSTER", "MEET", "127.0.0.1", &node.port().to_string()])
                .expect("CLUSTER MEET");
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while !nodes.iter().all(|n| {
            n.command(&["CLUSTER", "INFO"])
                .is_ok_and(|i| i.contains("cluster_state:ok") && i.contains(&format!("cluster_known_nodes:{masters}")))
        }) {
            assert!(Instant::now() < deadline, "cluster did not reach cluster_state:ok");
            std::thread::sleep(Duration::from_millis(50));
        }
        RedisCluster { nodes }
    }

    /// Comma-separated node URLs, the form `REDIS_URL` takes for a cluster.
    pub fn url(&self) -> String {
        self.nodes.iter().map(RedisServer::url).collect::<Vec<_>>().join(",")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_kill_restart_freeze() {
        let mut s = RedisServer::start();
        assert_eq!(s.command(&["SET", "k", "v"]).unwrap(), "OK");
        assert_eq!(s.command(&["GET", "k"]).unwrap(), "v");
        s.freeze();
        let mut stream = TcpStream::connect(("127.0.0.1", s.port())).unwrap();
        stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        send(&mut stream, &["PING"]).unwrap();
        let mut buf = [0u8; 8];
        assert!(stream.read(&mut buf).is_err(), "a frozen server must not answer");
        s.thaw();
        assert!(s.command(&["PING"]).is_ok());
        let port = s.port();
        s.kill();
        assert!(s.command(&["PING"]).is_err());
        s.restart();
        assert_eq!(s.port(), port);
        assert_eq!(s.command(&["PING"]).unwrap(), "PONG");
    }

    #[test]
    fn password_and_acl_users() {
        let s = RedisServer::options()
            .password("secret")
            .user("app", "apppw", "~* &* +@all")
            .start();
        assert_eq!(s.command(&["PING"]).unwrap(), "PONG");
        assert_eq!(s.command(&["AUTH", "app", "apppw"]).unwrap(), "OK");
        assert!(s.command(&["AUTH", "app", "wrong"]).is_err());
    }

    #[test]
    fn loading_phase_is_observable() {
        let s = RedisServer::start_loading(20_000, 100);
        assert!(s.command(&["GET", "key:1"]).unwrap_err().starts_with("LOADING"));
        s.wait_ready(Duration::from_secs(30));
        assert_eq!(s.command(&["DBSIZE"]).unwrap(), "20000");
    }
}

//! `redkit`: the redkit server and its command line.
//!
//! `redkit` (or `redkit serve`) starts the HTTP server; with nothing configured it listens
//! on 127.0.0.1:7070 and runs on the embedded store in `./redkit-data`. A refused setting
//! prints what was wrong and exits with status 2. `redkit status`, `redkit keys`,
//! `redkit queues` and `redkit import` talk to a running server.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use redkit::config::{LogFormat, Sources};
use redkit::{Config, Redkit};
use redkit_server::cli::{self, Target};
use redkit_server::{AppState, ServerSettings};

/// mimalloc rather than glibc's malloc: measured in `bench/run`'s HTTP rows (see
/// `bench/PROFILES.md`), where allocation was about a tenth of a request's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Cache, sessions, rate limits, locks, jobs, channels and records over HTTP, on Redis with an embedded fallback.
#[derive(Parser)]
#[command(name = "redkit", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server (the default).
    Serve(ServeArgs),
    /// Show the health of a running server, or of a Redis (--redis-url).
    Status {
        #[command(flatten)]
        client: ClientArgs,
        /// Check this Redis directly instead of a server.
        #[arg(long, value_name = "URL")]
        redis_url: Option<String>,
    },
    /// List the keys of a cache namespace.
    Keys {
        #[command(flatten)]
        client: ClientArgs,
        /// Namespace.
        ns: String,
        /// Glob pattern.
        #[arg(default_value = "*")]
        pattern: String,
    },
    /// List the job queues with their counts.
    Queues {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Import records from a JSON Lines file (one object per line) into a collection of a
    /// running server: `{"id": …, "data": {…}}` lines, or objects holding their id in
    /// --id-field.
    Import {
        #[command(flatten)]
        client: ClientArgs,
        /// The collection (define it first).
        collection: String,
        /// The JSON Lines file.
        file: PathBuf,
        /// The field holding each record's id.
        #[arg(long, default_value = "id")]
        id_field: String,
        /// Requests in flight.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
    },
}

#[derive(Args)]
struct ClientArgs {
    /// The server's base URL.
    #[arg(long, env = "REDKIT_URL", default_value = "http://127.0.0.1:7070")]
    url: String,
    /// API key, if the server requires one.
    #[arg(long, env = "REDKIT_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
}

impl ClientArgs {
    fn target(self) -> Target {
        Target {
            url: self.url,
            api_key: self.api_key,
        }
    }
}

#[derive(Args, Default)]
struct ServeArgs {
    /// Address to listen on [env: REDKIT_LISTEN] [default: 127.0.0.1:7070]
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Config file [env: REDKIT_CONFIG] [default: ./redkit.toml if present]
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Directory of the embedded store [env: REDKIT_DATA_DIR] [default: ./redkit-data]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<String>,
    /// Redis URL; omit to run on the embedded store [env: REDIS_URL]
    #[arg(long, value_name = "URL")]
    redis_url: Option<String>,
    /// Log format: text or json [env: REDKIT_LOG_FORMAT]
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<String>,
}

impl ServeArgs {
    fn sources(self, env: Vec<(String, String)>) -> Sources {
        let flags = [
            ("listen", self.listen, "--listen"),
            ("data_dir", self.data_dir, "--data-dir"),
            ("redis.url", self.redis_url, "--redis-url"),
            ("log_format", self.log_format, "--log-format"),
        ]
        .into_iter()
        .filter_map(|(key, value, flag)| value.map(|v| (key.to_string(), v, flag.to_string())))
        .collect();
        Sources {
            file: self.config,
            env,
            flags,
        }
    }
}

/// Exit status for a refused setting or an unusable data dir.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let client_result = match cli.command {
        None => return start(cli.serve, &runtime),
        Some(Command::Serve(args)) => return start(args, &runtime),
        Some(Command::Status { client, redis_url }) => runtime.block_on(async {
            match redis_url {
                Some(url) => cli::status_of_redis(&url).await,
                None => cli::status(&client.target()).await,
            }
        }),
        Some(Command::Keys { client, ns, pattern }) => runtime.block_on(cli::keys(&client.target(), &ns, &pattern)),
        Some(Command::Queues { client }) => runtime.block_on(cli::queues(&client.target())),
        Some(Command::Import {
            client,
            collection,
            file,
            id_field,
            concurrency,
        }) => runtime.block_on(cli::import(
            &client.target(),
            cli::ImportArgs {
                collection,
                file,
                id_field,
                concurrency,
            },
        )),
    };
    match client_result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("redkit: {e}");
            ExitCode::from(1)
        }
    }
}

fn start(args: ServeArgs, runtime: &tokio::runtime::Runtime) -> ExitCode {
    let env: Vec<(String, String)> = std::env::vars().collect();
    let config = match Config::load(args.sources(env.clone())) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("redkit: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let settings = match ServerSettings::load(&config, &env) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("redkit: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if !config.listen.ip().is_loopback() && settings.keys.is_empty() {
        eprintln!(
            "redkit: refusing to listen on {} (setting listen): it is not a loopback address and no API keys \
             are configured, so anyone who can reach it could use it; set REDKIT_API_KEYS (or [[server.api_keys]] \
             in the config file), or listen on 127.0.0.1",
            config.listen
        );
        return ExitCode::from(EXIT_CONFIG);
    }
    let _flush_logs_at_exit = init_logging(config.log_format);
    runtime.block_on(serve(config, settings))
}

/// Logs go to stderr from a thread of their own: written inline, every access-log line was a
/// blocking write on a request thread (a cache GET served ~30,000 req/s that way and
/// 42,000–47,000 after, `bench/PROFILES.md`). Lines are never dropped — when the writer falls
/// behind, requests wait.
fn init_logging(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    guard
}

async fn serve(config: Config, settings: ServerSettings) -> ExitCode {
    let listen = config.listen;
    redkit_server::metrics::install();
    let redkit = match Redkit::open(config).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("redkit: cannot start: {e}");
            let status = if matches!(e, redkit::Error::Storage(_)) {
                EXIT_CONFIG
            } else {
                1
            };
            return ExitCode::from(status);
        }
    };
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let state = match AppState::new(redkit.clone(), settings, stopping) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("redkit: cannot start: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("redkit: cannot listen on {listen} (setting listen): {e}");
            return ExitCode::from(1);
        }
    };
    let bound = listener.local_addr().unwrap_or(listen);
    tracing::info!(listen = %bound, mode = ?redkit.mode(), "redkit serving");
    if let Err(e) = redkit_server::serve(listener, state, stop, shutdown_signal()).await {
        eprintln!("redkit: server error: {e}");
        return ExitCode::from(1);
    }
    tracing::info!("redkit stopped");
    ExitCode::SUCCESS
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

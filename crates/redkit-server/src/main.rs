//! `redkit`: the redkit server and its command line.
//!
//! `redkit` (or `redkit serve`) starts the HTTP server; with nothing configured it listens
//! on 127.0.0.1:7070 and runs on the embedded store in `./redkit-data`. A refused setting
//! prints what was wrong and exits with status 2.

mod routes;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use redkit::config::{LogFormat, Sources};
use redkit::{Config, Redkit};

/// Cache, sessions, rate limits, locks and jobs over HTTP, on Redis with an embedded fallback.
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
    fn sources(self) -> Sources {
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
            env: std::env::vars().collect(),
            flags,
        }
    }
}

/// Exit status for a refused setting or an unusable data dir.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Serve(args)) => args,
        None => cli.serve,
    };
    let config = match Config::load(args.sources()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("redkit: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if !config.listen.ip().is_loopback() {
        eprintln!(
            "redkit: refusing to listen on {} (setting listen): it is not a loopback address, and serving \
             beyond this host needs API keys, which this build does not support yet; use 127.0.0.1",
            config.listen
        );
        return ExitCode::from(EXIT_CONFIG);
    }
    init_logging(config.log_format);
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(serve(config))
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn serve(config: Config) -> ExitCode {
    let listen = config.listen;
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
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("redkit: cannot listen on {listen} (setting listen): {e}");
            return ExitCode::from(1);
        }
    };
    let bound = listener.local_addr().unwrap_or(listen);
    tracing::info!(listen = %bound, mode = ?redkit.mode(), "redkit serving");
    let app = routes::router(redkit);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
    {
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

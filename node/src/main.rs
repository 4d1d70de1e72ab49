//! `kokoa`: one binary for every role. `main` parses the command line, sets up logging and the
//! shutdown signal, and hands over to the role's module; errors end as one line and exit code 1.

mod admin;
mod agent;
mod cli;
mod client;
mod dev;
mod edge;
mod files;
mod health;
mod server;
mod table;

use clap::Parser;
use tokio_util::sync::CancellationToken;

use cli::{Cli, Command};

/// Most threads for blocking work (redb reads and writes).
const MAX_BLOCKING_THREADS: usize = 64;

fn main() {
    let cli = Cli::parse();
    // redb work is short; a bounded blocking pool keeps a burst of thousands of woken pulls
    // from growing hundreds of threads.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(run(cli));
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Server(args) => {
            init_tracing();
            raise_open_file_limit();
            let shutdown = shutdown_on_signal();
            server::run(args, shutdown).await
        }
        Command::Edge(args) => {
            init_tracing();
            raise_open_file_limit();
            edge::run(args, cli.api.token, shutdown_on_signal()).await
        }
        Command::Agent(args) => {
            init_tracing();
            agent::run(args, cli.api.token, shutdown_on_signal()).await
        }
        Command::Dev(args) => dev::run(args, shutdown_on_signal()).await,
        Command::Cluster(cmd) => admin::cluster(cli.api, cmd).await,
        Command::Origin(cmd) => admin::origin(cli.api, cmd).await,
        Command::Route(cmd) => admin::route(cli.api, cmd).await,
        Command::Token(cmd) => admin::token(cli.api, cmd).await,
        Command::EdgeNode(cmd) => admin::edge_node(cli.api, cmd).await,
        Command::Dns(cmd) => admin::dns(cli.api, cmd).await,
        Command::Cert(cmd) => admin::cert(cli.api, cmd).await,
    }
}

/// Logs kept when `KOKOA_LOG` is not set. hickory logs every DNS query and rustls every
/// handshake that names an IP as SNI at info/warn: per-packet lines that anyone could flood.
const DEFAULT_LOG_FILTER: &str =
    "info,openraft=warn,hickory_server=warn,hickory_proto=warn,rustls=error";

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KOKOA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Raises the soft limit on open files to the hard limit: a replica holds a connection per
/// waiting pull (thousands of edges and agents), far above the usual soft limit of 1024.
fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!(limit = n, "open file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open file limit"),
    }
}

/// A token cancelled on SIGTERM or SIGINT.
fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => {
                        let _ = ctrl_c.await;
                        t.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        t.cancel();
    });
    token
}

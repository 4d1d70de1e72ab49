//! `kokoa edge`: turns the command line into [`kokoa_edge::EdgeOptions`] and runs the edge.

use tokio_util::sync::CancellationToken;

use crate::cli::EdgeArgs;

/// Runs an edge until `shutdown`.
pub async fn run(
    args: EdgeArgs,
    token: Option<String>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut proxy = kokoa_edge::proxy::ProxySettings::default();
    proxy.limits.default_rate = Some(kokoa_store::RateLimit {
        per_second: args.rate_limit,
        burst: args.rate_burst,
    });
    proxy.limits.max_connections_per_client = args.max_conns_per_ip as usize;
    let opts = kokoa_edge::EdgeOptions {
        control: args.control,
        token,
        data_dir: args.data_dir,
        public_ip: args.public_ip,
        name: args.name,
        http_listen: args.http_listen,
        https_listen: args.https_listen,
        wg_listen: args.wg_listen,
        proxy,
        workers: args.workers.map_or_else(
            || std::thread::available_parallelism().map_or(1, |n| n.get()),
            |n| n as usize,
        ),
    };
    kokoa_edge::run(opts, shutdown).await?;
    Ok(())
}

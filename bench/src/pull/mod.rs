//! `pull-bench`: one Kokoa replica holding 10,000 concurrent edge config long-polls.
//!
//! One replica (`--init` alone, release binary, default flags so fsync on) from the
//! `kokoa-tests` harness; E edges registered through the API ([`fleet`]); N pullers
//! ([`conn::Puller`]), each on its own HTTP/1.1 connection, using the edge tokens in turn. Then,
//! R times:
//!
//! 1. arm every pull with `?after=<current version>&wait=60`;
//! 2. wait until every one is really waiting on the server ([`ready`]);
//! 3. measure the idle replica: RSS (`/proc/PID/status`) and CPU (`/proc/PID/stat`) over a
//!    window;
//! 4. make one committed write (`POST /api/v1/routes`) and note when its 201 arrives;
//! 5. time every pull's 200 relative to that 201 (and to sending the write), count what did not
//!    answer properly.
//!
//! Targets: RSS under 300 MiB while idle, p99 wake-up under 250 ms after the ack. Figures are
//! "whole box": the replica and the 10,000 client connections share the same CPUs, and the box
//! may be shared with other work, so its busy and steal % are reported beside each figure.
//!
//! Everything is bounded: connects, readiness and answers have timeouts, the whole run has one
//! (`--timeout-secs`), and every process it started is killed on the way out (the harness kills
//! the replica when it is dropped, also on error, panic or a signal).

pub mod cli;
pub mod conn;
pub mod fleet;
pub mod ready;
pub mod report;
mod swarm;

use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use kokoa_tests::Cluster;
use serde_json::Value;

use crate::host::{self, ProcSnap};
use crate::note;
pub use cli::{PullArgs, Readiness};
use ready::Probe;
use report::{LogSummary, PullReport};
use swarm::Swarm;

/// File descriptors kept free beyond one per pull (replica files, admin client, stdio).
const FD_HEADROOM: u64 = 512;
/// Local ports kept free beyond one per pull.
const PORT_HEADROOM: u32 = 1024;
/// How often conditions are looked at while waiting.
pub(crate) const POLL_EVERY: Duration = Duration::from_millis(250);
/// One admin request (version, write) may take this long.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the benchmark until it finishes, `--timeout-secs` passes, or SIGINT / SIGTERM comes
/// (then every child process is killed before returning an error).
pub async fn run_until_signal(args: PullArgs) -> anyhow::Result<PullReport> {
    let limit = Duration::from_secs(args.timeout_secs);
    crate::until_signal(Some(limit), run(args)).await
}

/// The whole benchmark: start the replica, register edges, connect, R write-wake rounds,
/// report. A failure after the replica started still prints what was measured so far.
pub async fn run(args: PullArgs) -> anyhow::Result<PullReport> {
    args.validate()?;
    let mut report = PullReport::new(&args);
    report.machine.nofile_limit = raise_open_files(args.pulls)?;
    check_local_ports(args.pulls)?;
    report.machine.load_average_start = host::load_average();
    report.machine.kokoa_bin = kokoa_tests::kokoa_bin().display().to_string();

    note!(
        "starting 1 Kokoa replica ({}{}{}); open-file limit {} (inherited by the replica)",
        report.machine.kokoa_bin,
        if args.kokoa_args.is_empty() { "" } else { " " },
        args.kokoa_args.join(" "),
        report.machine.nofile_limit
    );
    let extra: Vec<&str> = args.kokoa_args.iter().map(String::as_str).collect();
    let cluster = Cluster::start_with(1, &extra).await;
    report.machine.kokoa_data = host::describe_dir(cluster.root());
    report.machine.replica_pid = cluster.replica(0).pid();
    note!(
        "replica pid {} at {}, data in {}",
        report.machine.replica_pid.unwrap_or(0),
        cluster.replica(0).api_url(),
        report.machine.kokoa_data
    );

    let outcome = measure(&args, &cluster, &mut report).await;
    report.machine.load_average_end = host::load_average();
    report.server_log = LogSummary::of(
        &cluster.replica(0).log(),
        cluster.replica(0).log_path().display().to_string(),
    );
    if let Err(error) = &outcome {
        note!("benchmark failed: {error:#}");
        cluster.dump_logs();
    }
    drop(cluster);
    note!("stopped every process it started");
    report.finish();
    crate::write_json(&report, args.json.as_deref())?;
    if let Err(error) = outcome {
        print!("{}", report.render());
        return Err(error);
    }
    Ok(report)
}

/// Raises this process's open-file limit to its hard limit (the replica, started later,
/// inherits it) and checks it fits one connection per pull on each side.
fn raise_open_files(pulls: u32) -> anyhow::Result<u64> {
    let limit = rlimit::increase_nofile_limit(u64::MAX).context("raise the open-file limit")?;
    let need = u64::from(pulls) + FD_HEADROOM;
    anyhow::ensure!(
        limit >= need,
        "the open-file limit is {limit} even after raising it to the hard limit; {pulls} pulls \
         need about {need} (one socket each, in this process and in the replica): raise the hard \
         limit (ulimit -Hn) or use fewer --pulls"
    );
    Ok(limit)
}

/// All connections go from 127.0.0.1 to one port: each needs its own local port.
fn check_local_ports(pulls: u32) -> anyhow::Result<()> {
    let Ok(range) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range") else {
        return Ok(());
    };
    let bounds: Vec<u32> = range
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    if let [low, high] = bounds[..] {
        let available = high.saturating_sub(low) + 1;
        anyhow::ensure!(
            pulls + PORT_HEADROOM <= available,
            "{pulls} connections to one address need as many local ports; \
             net.ipv4.ip_local_port_range offers {available} ({low}-{high})"
        );
    }
    Ok(())
}

/// What the rounds need about the replica and its admin API.
struct Target<'a> {
    cluster: &'a Cluster,
    http: reqwest::Client,
    base: String,
    admin: String,
    pid: u32,
    port: u16,
    /// The origin of every route the rounds write.
    origin_id: String,
}

impl Target<'_> {
    /// The replica's `version` (linearizable `GET /api/v1/cluster`).
    async fn version(&self) -> anyhow::Result<u64> {
        let info = self
            .cluster
            .cluster_info(0, false)
            .await
            .map_err(anyhow::Error::msg)?;
        info.get("version")
            .and_then(Value::as_u64)
            .with_context(|| format!("no version in GET /api/v1/cluster: {info}"))
    }

    fn snap(&self) -> anyhow::Result<ProcSnap> {
        ProcSnap::read(self.pid).with_context(|| {
            format!(
                "replica pid {} is gone (cannot read /proc/{}/stat)",
                self.pid, self.pid
            )
        })
    }
}

/// Registration, connections, then the rounds; rows are added to `report` as they are measured.
async fn measure(
    args: &PullArgs,
    cluster: &Cluster,
    report: &mut PullReport,
) -> anyhow::Result<()> {
    let replica = cluster.replica(0);
    note!("registering {} edges", args.edges);
    let fleet = fleet::register(&cluster.client(0), args.edges).await?;
    report.setup.edges_registered = fleet.edge_tokens.len();
    report.setup.register_s = fleet.register_time.as_secs_f64();
    note!(
        "{} edges registered in {:.1} s",
        fleet.edge_tokens.len(),
        report.setup.register_s
    );
    let target = Target {
        cluster,
        http: reqwest::Client::builder()
            .http1_only()
            .tcp_nodelay(true)
            .timeout(ADMIN_TIMEOUT)
            .no_proxy()
            .build()
            .context("build the admin HTTP client")?,
        base: replica.api_url(),
        admin: cluster.admin_token().to_string(),
        pid: replica.pid().context("the replica is not running")?,
        port: replica.api_addr().port(),
        origin_id: fleet.origin_id.clone(),
    };
    let has_metric = ready::waiting_metric(&target.http, &target.base, &target.admin)
        .await
        .is_some();
    let probe = match args.readiness {
        Readiness::Auto if has_metric => Probe::Metric,
        Readiness::Auto | Readiness::Sockets => Probe::Sockets,
        Readiness::Metric => {
            anyhow::ensure!(
                has_metric,
                "--readiness metric, but GET /metrics has no {}",
                ready::WAITING_METRIC
            );
            Probe::Metric
        }
    };
    report.setup.readiness = match probe {
        Probe::Metric => format!("{} on /metrics", ready::WAITING_METRIC),
        Probe::Sockets => format!(
            "sockets ({}): all sent, server read every request, replica ≤{}% CPU for {} ms",
            if has_metric {
                "chosen"
            } else {
                "no kokoa_pulls_waiting on /metrics"
            },
            ready::SETTLE_CPU_PCT,
            ready::SETTLE.as_millis()
        ),
    };
    note!("all-waiting check: {}", report.setup.readiness);

    let overflows_before = host::listen_overflows();
    let mut swarm = Swarm::spawn(args, replica.api_addr(), &fleet.edge_tokens)?;
    let connected = swarm.wait_connected(args.pulls as usize).await;
    report.setup.listen_overflows = overflows_before
        .zip(host::listen_overflows())
        .map(|(before, after)| after.saturating_sub(before));
    report.setup.connected = swarm.shared.connected.load(Ordering::Relaxed);
    report.setup.connect_errors = swarm.shared.connect_failed.load(Ordering::Relaxed);
    report.setup.connect_s = swarm.started.elapsed().as_secs_f64();
    report.setup.connect_error_samples = swarm.shared.samples();
    note!(
        "{}/{} connections open in {:.1} s ({} connect errors, {} listen-queue overflows)",
        report.setup.connected,
        args.pulls,
        report.setup.connect_s,
        report.setup.connect_errors,
        report
            .setup
            .listen_overflows
            .map_or("-".into(), |n| n.to_string())
    );
    connected?;

    let mut after = target.version().await?;
    report.setup.initial_version = after;
    let outcome = async {
        for round in 1..=args.rounds {
            let row = swarm.round(args, &target, probe, round, after).await?;
            let write_index = row.write_index;
            report.rounds.push(row);
            let version = target.version().await?;
            if write_index.is_some_and(|index| index != version) {
                note!("version {version} after the write (its index was {write_index:?})");
            }
            after = version;
        }
        anyhow::Ok(())
    }
    .await;
    swarm.stop().await;
    outcome
}

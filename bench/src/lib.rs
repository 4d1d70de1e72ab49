//! Kokoa's control-plane benchmarks, two programs sharing this library:
//!
//! * `cp-bench`: Kokoa's control plane against etcd 3.4, on the same machine, in the same run
//!   (this module's [`run`]).
//! * `pull-bench`: one Kokoa replica holding 10,000 concurrent config long-polls: its memory and
//!   CPU while they wait, and how fast one committed write wakes them all ([`pull`]).
//! * `tunnel-bench`: downloads through edge → WireGuard tunnel → agent → origin, and the
//!   latency the tunnel adds, against iperf3 through wireguard-go between two network
//!   namespaces ([`tunnel`]).
//!
//! Shared by both: the `kokoa-tests` process harness, `/proc` readings ([`host`]), percentiles
//! ([`stats`]), progress lines ([`note!`]) and signal handling ([`shutdown_signal`]).
//!
//! `cp-bench` owns: starting a 3-replica Kokoa cluster (through the `kokoa-tests` harness) and a
//! 3-member etcd cluster ([`etcd`]) on loopback with data on disk and fsync on; one closed-loop
//! write load driver used for both ([`load`], over [`write::WriteTarget`]); leader failover
//! rounds for both ([`failover`], over [`system::Replicated`]); and the report ([`report`]):
//! tables, `RESULT` lines in the style of `shared/peers/*.sh`, optional JSON.
//!
//! It must never link against Kokoa's own crates or change the servers it measures: it speaks
//! only the public contract (`docs/interfaces.md`, etcd's v3 JSON gateway), so what it measures
//! is what users get. Every process it starts is killed when its owner is dropped, also on
//! error, panic or Ctrl-C.
//!
//! Figures are "whole box, load generator included", like the peer scripts: the clients, three
//! Kokoa replicas and three etcd members all share the same CPUs. CPU steal is logged per step
//! so noisy runs can be spotted.

pub mod cli;
pub mod dns;
pub mod edge;
pub mod etcd;
pub mod failover;
pub mod host;
pub mod kokoa;
pub mod load;
pub mod pull;
pub mod report;
pub mod stats;
pub mod system;
pub mod tunnel;
pub mod write;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;

pub use cli::Args;
use etcd::EtcdCluster;
use kokoa::KokoaCluster;
use report::{FailoverReport, LoadRow, Report};
use system::{Replicated, System};
use write::WriteTarget;

/// One failover write attempt may take this long before the next survivor is tried.
pub(crate) const FAILOVER_TRY_TIMEOUT: Duration = Duration::from_millis(250);
/// A failover round gives up when no write is acknowledged for this long after the kill.
const FAILOVER_GIVE_UP: Duration = Duration::from_secs(30);
/// One write under load may take this long before it counts as an error.
const LOAD_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Prints a progress line on stderr, prefixed with the UTC wall-clock time.
#[macro_export]
macro_rules! note {
    ($($arg:tt)*) => {
        eprintln!("[{}] {}", $crate::clock(), format_args!($($arg)*))
    };
}

/// `HH:MM:SS` (UTC) for progress lines.
pub fn clock() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        % 86_400;
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// Runs the benchmark until it finishes, or until SIGINT / SIGTERM (then every child process is
/// killed before returning an error).
pub async fn run_until_signal(args: Args) -> anyhow::Result<Report> {
    until_signal(None, run(args)).await
}

/// Runs `bench` until it finishes, `limit` (if any) passes, or SIGINT / SIGTERM comes; dropping
/// the unfinished benchmark stops every process it started before the error is returned.
pub async fn until_signal<T>(
    limit: Option<std::time::Duration>,
    bench: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let give_up = async {
        match limit {
            Some(limit) => tokio::time::sleep(limit).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        report = bench => report,
        () = give_up => Err(anyhow::anyhow!(
            "gave up after --timeout-secs {}; stopped every process it started",
            limit.unwrap_or_default().as_secs()
        )),
        signal = shutdown_signal() => Err(anyhow::anyhow!(
            "interrupted by {signal}; stopped every process it started"
        )),
    }
}

/// The `main` of every benchmark binary: runs `bench` on a multi-thread runtime (whatever is
/// left of it is aborted, within 5 s, before exiting), prints the report with `render`, or
/// `NAME: error` on stderr with a failure exit code.
pub fn bench_main<R>(
    name: &str,
    bench: impl std::future::Future<Output = anyhow::Result<R>>,
    render: impl FnOnce(&R) -> String,
) -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("{name}: cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(bench);
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    match outcome {
        Ok(report) => {
            print!("{}", render(&report));
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{name}: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Writes `report` as pretty JSON to `path` (when given) and says so.
pub fn write_json(
    report: &impl serde::Serialize,
    path: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    if let Some(path) = path {
        let json = serde_json::to_vec_pretty(report).context("serialize report")?;
        std::fs::write(path, json).with_context(|| format!("write {}", path.display()))?;
        note!("figures written to {}", path.display());
    }
    Ok(())
}

/// Waits for SIGINT or SIGTERM; names the one that came.
pub async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = tokio::signal::ctrl_c() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        },
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}

/// The whole benchmark: start both clusters, load steps, failover rounds, report.
pub async fn run(args: Args) -> anyhow::Result<Report> {
    args.validate()?;
    let max_clients = args.clients.iter().copied().max().unwrap_or(1) as usize;
    let http = load::http_client(max_clients, LOAD_REQUEST_TIMEOUT)?;
    let mut report = Report::new(&args);

    report.machine.kokoa_bin = kokoa_tests::kokoa_bin().display().to_string();
    note!(
        "starting 3 Kokoa replicas ({}{}{})",
        report.machine.kokoa_bin,
        if args.kokoa_args.is_empty() { "" } else { " " },
        args.kokoa_args.join(" ")
    );
    let mut kokoa = KokoaCluster::start(3, &args.kokoa_args).await?;
    report.machine.kokoa_data = host::describe_dir(kokoa.root());
    note!("kokoa data in {}", report.machine.kokoa_data);

    let mut etcd = if args.skip_etcd {
        None
    } else {
        let version = etcd::ensure_installed()?;
        note!("starting 3 etcd {version} members");
        let cluster = EtcdCluster::start(3, &http).await?;
        report.machine.etcd_version = Some(version);
        report.machine.etcd_data = Some(host::describe_dir(cluster.root()));
        note!("etcd data in {}", host::describe_dir(cluster.root()));
        Some(cluster)
    };

    let (kokoa_target, etcd_target) = WriteTarget::pair(kokoa.origin_id(), kokoa.admin_token())?;
    report.body_bytes.kokoa = kokoa_target.body_len();
    report.body_bytes.etcd = etcd_target.body_len();
    note!(
        "request bodies: kokoa {} bytes, etcd {} bytes (e.g. {} / {})",
        kokoa_target.body_len(),
        etcd_target.body_len(),
        kokoa_target.sample_body(),
        etcd_target.sample_body()
    );

    let outcome = measure(
        &args,
        &http,
        &mut kokoa,
        etcd.as_mut(),
        &kokoa_target,
        &etcd_target,
        &mut report,
    )
    .await;
    if let Err(error) = &outcome {
        note!("benchmark failed: {error:#}");
        kokoa.dump_logs();
        if let Some(etcd) = &etcd {
            etcd.dump_logs();
        }
    }
    drop(etcd);
    drop(kokoa);
    note!("stopped every process it started");
    outcome?;

    report.finish();
    write_json(&report, args.json.as_deref())?;
    Ok(report)
}

/// The measured phases; both clusters are up when it is called.
async fn measure(
    args: &Args,
    http: &reqwest::Client,
    kokoa: &mut KokoaCluster,
    mut etcd: Option<&mut EtcdCluster>,
    kokoa_target: &WriteTarget,
    etcd_target: &WriteTarget,
    report: &mut Report,
) -> anyhow::Result<()> {
    let spec = |step: u32, clients: u16| load::StepSpec {
        step,
        clients: usize::from(clients),
        warmup: Duration::from_millis(args.warmup_ms),
        duration: Duration::from_secs(args.duration_secs),
        max_requests: args.max_requests,
    };
    let mut step = 0;
    for &clients in &args.clients {
        step += 1;
        let row = load_step(http, kokoa, kokoa_target, spec(step, clients)).await?;
        report.load.push(row);
        if let Some(etcd) = etcd.as_deref_mut() {
            step += 1;
            let row = load_step(http, etcd, etcd_target, spec(step, clients)).await?;
            report.load.push(row);
        }
    }

    let failover_spec = failover::FailoverSpec {
        try_timeout: FAILOVER_TRY_TIMEOUT,
        give_up_after: FAILOVER_GIVE_UP,
    };
    let mut kokoa_rounds = Vec::new();
    let mut etcd_rounds = Vec::new();
    for round in 1..=args.failover_runs {
        kokoa_rounds.push(
            failover::round(kokoa, http, kokoa_target, round, &failover_spec)
                .await
                .with_context(|| format!("kokoa failover round {round}"))?,
        );
        if let Some(etcd) = etcd.as_deref_mut() {
            etcd_rounds.push(
                failover::round(etcd, http, etcd_target, round, &failover_spec)
                    .await
                    .with_context(|| format!("etcd failover round {round}"))?,
            );
        }
    }
    if args.failover_runs > 0 {
        report
            .failover
            .push(FailoverReport::new(System::Kokoa, kokoa_rounds));
        if etcd.is_some() {
            report
                .failover
                .push(FailoverReport::new(System::Etcd, etcd_rounds));
        }
    }
    Ok(())
}

/// One load step against the current leader of `system`.
async fn load_step<S: Replicated>(
    http: &reqwest::Client,
    system: &mut S,
    target: &WriteTarget,
    spec: load::StepSpec,
) -> anyhow::Result<LoadRow> {
    let leader = system.leader().await?;
    let base = system.api_url(leader);
    note!(
        "{} c={}: {} ms warm-up, then up to {} s or {} writes, to the leader ({})",
        system.system(),
        spec.clients,
        spec.warmup.as_millis(),
        spec.duration.as_secs(),
        spec.max_requests,
        system.describe(leader)
    );
    let outcome = load::run_step(http, target, &base, &spec).await;
    let row = LoadRow::new(system.system(), &spec, &outcome);
    note!("{}", row.one_line());
    for sample in &row.error_samples {
        note!("  error sample: {sample}");
    }
    Ok(row)
}

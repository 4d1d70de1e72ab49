//! `dns-bench`: Kokoa's authoritative DNS against NSD and Knot DNS (Debian) serving the same
//! zone, in the same run, on loopback, measured with dnsperf (Debian).
//!
//! Kokoa is a one-replica control plane started by the `kokoa-tests` harness with
//! `--dns-listen 127.0.0.1:0 --dns-zone ZONE`, populated through API v1 only: `--edges` edges
//! registered with bootstrap tokens (public IPs 192.0.2.N), one direct origin and `--routes`
//! routes `hN.ZONE`; each route name answers A with every edge's IP ([`servers::KokoaDns`]).
//! Kokoa's answers (SOA, NS, every route's A set, with its TTLs) are then read back with `kdig`
//! and written as the zone file Knot and NSD serve, configured as in `shared/peers/knot.sh` and
//! `nsd.sh`, so all three answer the same records ([`servers`]).
//!
//! dnsperf ([`dnsperf`]) runs a query file of every route name (type A), with the same flags
//! for every server: an unmeasured warm-up per server, then `RUNS` measured runs of
//! `DNSPERF_SECS` s, alternating kokoa, nsd, knot, each bounded by a timeout. Per run: queries/s,
//! average / stddev / max latency, lost queries, response codes, the server's CPU (its process
//! tree from `/proc`) and CPU time per query, dnsperf's CPU, the rest of the box, steal. dnsperf
//! 2.10 has no latency histogram, so a second, fixed-rate pass (`-Q`, `-v`: one line per query)
//! gives p50 / p99 / p99.9 at the same offered load for all three. The report ([`report`]) gives
//! medians, Kokoa / NSD and Kokoa / Knot ratios, the target verdict (Kokoa ≥ half of NSD's
//! queries/s), `RESULT` lines, optional JSON.
//!
//! The replica inherits `KOKOA_LOG` (its log filter); the report says which was used.
//!
//! Figures are "whole box, load generator included", like the peer scripts. Every process it
//! started is stopped on the way out (error, panic, Ctrl-C, `--timeout-secs`); temporary
//! directories are removed.

pub mod cli;
pub mod dnsperf;
pub mod report;
pub mod servers;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::edge::procs::{self, TreeSnap};
use crate::host::{self, CpuSnap};
use crate::note;
use crate::report::HostLoad;
pub use cli::DnsArgs;
use dnsperf::DnsperfOutput;
use report::{DnsReport, LatencyRow, Machine, RunRow, Server, Settings};
use servers::{DnsServer, KokoaDns, Peer};

/// Runs the benchmark until it finishes, `--timeout-secs` passes, or SIGINT / SIGTERM comes.
pub async fn run_until_signal(args: DnsArgs) -> anyhow::Result<DnsReport> {
    let limit = Duration::from_secs(args.timeout_secs);
    crate::until_signal(Some(limit), run(args)).await
}

/// What one dnsperf run against one server measured.
struct Measured {
    out: DnsperfOutput,
    server_cpu_pct: f64,
    dnsperf_cpu_pct: f64,
    box_busy_pct: f64,
    steal_pct: f64,
    rss_kib: u64,
}

/// One dnsperf run against `server`, with the server's and dnsperf's CPU around it.
async fn measure(
    server: &mut dyn DnsServer,
    queries: &Path,
    secs: u64,
    flags: &[String],
    verbose: bool,
) -> anyhow::Result<Measured> {
    server.check_alive()?;
    let pids = server.pids();
    let addr = server.addr();
    let before = TreeSnap::read(&pids);
    let box_before = CpuSnap::now();
    let reaped_before = procs::own_and_reaped_ticks().map_or(0, |t| t.1);
    let started = Instant::now();
    let queries = queries.to_path_buf();
    let flags = flags.to_vec();
    let out =
        tokio::task::spawn_blocking(move || dnsperf::run(addr, &queries, secs, &flags, verbose))
            .await
            .context("dnsperf thread")??;
    let wall = started.elapsed();
    let after = TreeSnap::read(&pids);
    let reaped = procs::own_and_reaped_ticks()
        .map_or(0, |t| t.1)
        .saturating_sub(reaped_before);
    server.check_alive()?;
    let ticks = host::clock_ticks_per_sec() as f64;
    Ok(Measured {
        out,
        server_cpu_pct: after.cpu_pct_since(&before, wall),
        dnsperf_cpu_pct: 100.0 * reaped as f64 / ticks / wall.as_secs_f64().max(1e-9),
        box_busy_pct: box_before.and_then(|s| s.busy_pct_since()).unwrap_or(0.0),
        steal_pct: box_before.and_then(|s| s.steal_pct_since()).unwrap_or(0.0),
        rss_kib: after.rss_kib,
    })
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The whole benchmark: start the servers, warm up, measure alternately, report.
pub async fn run(args: DnsArgs) -> anyhow::Result<DnsReport> {
    let flags = args.dnsperf_words()?;
    let workers = args.workers_or_cpus();
    let mut report = DnsReport {
        settings: Settings {
            runs: args.runs,
            dnsperf: format!("dnsperf {}", flags.join(" ")),
            workers,
            zone: args.zone.clone(),
            routes: args.routes,
            edges: args.edges,
            latency_qps: args.latency_qps,
            latency_secs: args.latency_secs,
        },
        machine: Machine {
            cpus: cpus(),
            dnsperf_version: dnsperf::version()?,
            kokoa_bin: kokoa_tests::kokoa_bin().display().to_string(),
            kokoa_log: std::env::var("KOKOA_LOG").ok(),
            load: HostLoad::at_start(),
            ..Machine::default()
        },
        ..DnsReport::default()
    };
    note!(
        "load average at start: {}",
        report
            .machine
            .load
            .load_average_start
            .as_deref()
            .unwrap_or("-")
    );
    let work = tempfile::Builder::new()
        .prefix("kokoa-dns-bench-")
        .tempdir()
        .context("create a temp dir")?;

    let mut kokoa = KokoaDns::start(&args.zone, args.edges, args.routes, &args.kokoa_args).await?;
    let records = servers::export_zone(kokoa.dns, &args.zone, &kokoa.names)?;
    let queries = work.path().join("queries.txt");
    let text: String = kokoa.names.iter().map(|n| format!("{n} A\n")).collect();
    std::fs::write(&queries, text).context("write the query file")?;
    let last = kokoa.names.last().cloned().unwrap_or_default();
    let per_answer = kokoa.edge_ips.len();

    let (mut nsd, mut knot): (Option<Peer>, Option<Peer>) = (None, None);
    if !args.kokoa_only {
        let dir = work.path().join("nsd");
        std::fs::create_dir_all(&dir)?;
        let port = kokoa_tests::free_port();
        let peer = servers::start_nsd(&dir, port, &args.zone, &records, workers, &last, per_answer)
            .await?;
        note!(
            "nsd ({}) on {}, server-count {workers}",
            peer.version,
            peer.addr
        );
        report.machine.nsd_version = Some(version_word(&peer.version));
        nsd = Some(peer);
        let dir = work.path().join("knot");
        std::fs::create_dir_all(&dir)?;
        let port = kokoa_tests::free_port();
        let peer =
            servers::start_knot(&dir, port, &args.zone, &records, workers, &last, per_answer)
                .await?;
        note!(
            "knotd ({}) on {}, udp-workers {workers}",
            peer.version,
            peer.addr
        );
        report.machine.knot_version = Some(version_word(&peer.version));
        knot = Some(peer);
    }

    let outcome = measure_all(
        &args,
        &flags,
        &queries,
        &mut kokoa,
        &mut nsd,
        &mut knot,
        &mut report,
    )
    .await;
    if let Err(error) = &outcome {
        note!("benchmark failed: {error:#}");
        kokoa.cluster.dump_logs();
    }
    report.machine.load.finish();
    drop(knot);
    drop(nsd);
    drop(kokoa);
    note!("stopped every process it started");
    outcome?;

    report.finish();
    crate::write_json(&report, args.json.as_deref())?;
    Ok(report)
}

/// `NSD 4.6.1` / `knotd (Knot DNS), version 3.2.6` → the version.
fn version_word(line: &str) -> String {
    line.split_whitespace()
        .last()
        .unwrap_or("")
        .trim_start_matches('v')
        .to_string()
}

async fn measure_all(
    args: &DnsArgs,
    flags: &[String],
    queries: &Path,
    kokoa: &mut KokoaDns,
    nsd: &mut Option<Peer>,
    knot: &mut Option<Peer>,
    report: &mut DnsReport,
) -> anyhow::Result<()> {
    let mut servers: Vec<&mut dyn DnsServer> = vec![kokoa];
    if let Some(nsd) = nsd.as_mut() {
        servers.push(nsd);
    }
    if let Some(knot) = knot.as_mut() {
        servers.push(knot);
    }
    let check = kokoa_name(args);
    for server in servers.iter() {
        report.machine.response_bytes.push((
            server.server(),
            servers::response_bytes(server.addr(), &check),
        ));
    }
    let pause = Duration::from_millis(args.pause_ms);
    if args.warmup_secs > 0 {
        for server in servers.iter_mut() {
            note!(
                "{} warm-up {} s",
                server.server().as_str(),
                args.warmup_secs
            );
            measure(&mut **server, queries, args.warmup_secs, flags, false).await?;
        }
    }
    for run in 1..=args.runs {
        for server in servers.iter_mut() {
            tokio::time::sleep(pause).await;
            let m = measure(&mut **server, queries, args.dnsperf_secs, flags, false).await?;
            let row = run_row(server.server(), run, m);
            note!("{}", row.one_line());
            if !row.dnsperf.all_noerror() {
                report.notes.push(format!(
                    "{} run {run}: not all NOERROR: {}",
                    row.server.as_str(),
                    row.dnsperf.rcodes
                ));
            }
            report.runs.push(row);
        }
    }
    if args.latency_qps > 0 {
        let mut latency_flags = flags.to_vec();
        latency_flags.extend(["-Q".to_string(), args.latency_qps.to_string()]);
        for server in servers.iter_mut() {
            tokio::time::sleep(pause).await;
            let m = measure(
                &mut **server,
                queries,
                args.latency_secs,
                &latency_flags,
                true,
            )
            .await?;
            let row = LatencyRow::new(server.server(), args.latency_qps, &m.out, m.server_cpu_pct);
            note!(
                "{} at {} q/s: p50={:.3}ms p99={:.3}ms p99.9={:.3}ms max={:.2}ms cpu={:.0}% ({} queries)",
                row.server.as_str(),
                args.latency_qps,
                row.p50_ms,
                row.p99_ms,
                row.p999_ms,
                row.max_ms,
                row.server_cpu_pct,
                row.queries
            );
            report.latency.push(row);
        }
    }
    Ok(())
}

fn kokoa_name(args: &DnsArgs) -> String {
    format!("h0.{}", args.zone)
}

fn run_row(server: Server, run: u32, m: Measured) -> RunRow {
    let box_cores_pct = m.box_busy_pct * cpus() as f64;
    RunRow {
        server,
        run,
        dnsperf: m.out,
        server_cpu_pct: m.server_cpu_pct,
        dnsperf_cpu_pct: m.dnsperf_cpu_pct,
        box_busy_pct: m.box_busy_pct,
        other_cpu_pct: (box_cores_pct - m.server_cpu_pct - m.dnsperf_cpu_pct).max(0.0),
        steal_pct: m.steal_pct,
        rss_kib_after: m.rss_kib,
    }
}

//! `tunnel-bench`: Kokoa's tunnel against wireguard-go (Debian), in the same run, on this
//! machine. Root only (network namespaces); `bench/tunnel-bench.sh` installs what it needs.
//!
//! * **The peer** ([`peer`]): wireguard-go between two network namespaces, iperf3 TCP through
//!   it, 1 stream and `-P 8`, exactly as `shared/peers/wireguard-go.sh` does (through the
//!   `kokoa-tests` namespace harness, which cleans up even after a crash).
//! * **Kokoa** ([`kokoa`]): a one-replica control plane, an edge, an agent and the origin app,
//!   all on loopback; N clients download large files over plain HTTP through the edge and the
//!   tunnel (routes with `allow_http`, so TLS does not hide the tunnel's cost) for a fixed
//!   window, with a bounded count ([`load`]); then small GETs through edge + tunnel and through
//!   the edge to a direct origin, one at a time, alternating: the tunnel's added latency is the
//!   difference of their p50 / p99.
//!
//! Each path gets an unmeasured warm-up, then `RUNS` runs per stream count, alternating paths
//! so both see the same machine. Per run: Gbit/s, the CPU of the processes carrying the tunnel
//! (both wireguard-go daemons; the edge and the agent), how busy the box was, steal. The report
//! ([`report`]) gives medians, Kokoa / wireguard-go ratios, `RESULT` lines, optional JSON.
//!
//! The comparison is "what a user gets": iperf3 measures raw TCP between two kernel stacks
//! through wireguard-go's TUN devices; Kokoa's figure is HTTP bodies through an edge (an HTTP
//! proxy), a userspace TCP/IP stack in the tunnel, and an agent that proxies to the app. Both
//! tunnels carry 1420-byte inner packets; wireguard-go's go over a veth, Kokoa's over loopback.
//! Figures are "whole box, load generators included", like the peer scripts. Every process it
//! started is stopped on the way out (error, panic, Ctrl-C, `--timeout-secs`).

pub mod cli;
pub mod kokoa;
pub mod load;
pub mod peer;
pub mod report;

use std::time::{Duration, Instant};

use anyhow::Context;

use crate::edge::procs::TreeSnap;
use crate::host::CpuSnap;
use crate::note;
use crate::report::HostLoad;
pub use cli::TunnelArgs;
use kokoa::KokoaSide;
use peer::WgPair;
use report::{LatencyRow, Machine, Path, RunRow, Settings, TunnelReport};

/// Runs the benchmark until it finishes, `--timeout-secs` passes, or SIGINT / SIGTERM comes.
pub async fn run_until_signal(args: TunnelArgs) -> anyhow::Result<TunnelReport> {
    let limit = Duration::from_secs(args.timeout_secs);
    crate::until_signal(Some(limit), run(args)).await
}

/// The two halves (either may be skipped).
struct Bench {
    // Field order is drop order.
    wg: Option<WgPair>,
    kokoa: Option<KokoaSide>,
}

/// The whole benchmark: start both halves, warm up, measure alternately, report.
pub async fn run(args: TunnelArgs) -> anyhow::Result<TunnelReport> {
    let mut report = TunnelReport {
        settings: Settings {
            runs: args.runs,
            secs: args.secs,
            streams: args.stream_counts(),
            warmup_secs: args.warmup_secs,
            download_mib: args.download_mib,
            max_downloads: args.max_downloads,
            latency_requests: args.latency_requests,
            latency_bytes: args.latency_bytes,
        },
        machine: Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kokoa_log: std::env::var("KOKOA_LOG").ok(),
            load: HostLoad::at_start(),
            ..Machine::default()
        },
        ..TunnelReport::default()
    };
    let mut bench = Bench {
        wg: None,
        kokoa: None,
    };
    if !args.skip_wireguard_go {
        let missing = kokoa_tests::missing_prerequisites(&["iperf3"]);
        anyhow::ensure!(
            missing.is_empty(),
            "the wireguard-go half needs {} (bench/tunnel-bench.sh installs the packages; \
             or pass --skip-wireguard-go)",
            missing.join(", ")
        );
        report.machine.iperf_version = Some(peer::iperf_version()?);
        report.machine.wireguard_go_version = Some(peer::wireguard_go_version());
        let pair = WgPair::start().await?;
        report.machine.wireguard_go_mtus = Some(pair.mtus());
        note!(
            "wireguard-go pair up (pids {:?}), MTUs {}",
            pair.pids(),
            pair.mtus()
        );
        bench.wg = Some(pair);
    }
    if !args.skip_kokoa {
        report.machine.kokoa_bin = Some(kokoa_tests::kokoa_bin().display().to_string());
        note!("starting kokoa: control plane, edge, agent, origin app");
        bench.kokoa = Some(KokoaSide::start(&args).await?);
    }

    let outcome = measure(&args, &mut bench, &mut report).await;
    if let Err(error) = &outcome {
        note!("benchmark failed: {error:#}");
        if let Some(kokoa) = &bench.kokoa {
            note!("{}", kokoa.log_tails());
        }
    }
    report.machine.load.finish();
    drop(bench);
    note!("stopped every process it started");
    report.finish();
    crate::write_json(&report, args.json.as_deref())?;
    if let Err(error) = outcome {
        print!("{}", report.render());
        return Err(error);
    }
    Ok(report)
}

/// Warm-ups, the alternating throughput runs, then the latency pass.
async fn measure(
    args: &TunnelArgs,
    bench: &mut Bench,
    report: &mut TunnelReport,
) -> anyhow::Result<()> {
    let mut paths = Vec::new();
    if bench.wg.is_some() {
        paths.push(Path::WireguardGo);
        if args.veth_baseline {
            paths.push(Path::VethPlain);
        }
    }
    if bench.kokoa.is_some() {
        paths.push(Path::KokoaTunnel);
        if args.direct_throughput {
            paths.push(Path::KokoaDirect);
        }
    }
    let pause = Duration::from_millis(args.pause_ms);
    if args.warmup_secs > 0 {
        for &path in &paths {
            note!("{} warm-up {} s", path.label(), args.warmup_secs);
            one_run(args, bench, path, 1, args.warmup_secs).await?;
        }
    }
    if let Some(wg) = &bench.wg {
        anyhow::ensure!(
            wg.handshaken(),
            "wireguard-go: no handshake on both sides (wg show)"
        );
    }
    for run in 1..=args.runs {
        for &streams in &report.settings.streams.clone() {
            for &path in &paths {
                tokio::time::sleep(pause).await;
                let mut row = one_run(args, bench, path, streams, args.secs).await?;
                row.run = run;
                note!("{}", row.one_line());
                report.runs.push(row);
            }
        }
    }
    if let (Some(kokoa), true) = (&bench.kokoa, args.latency_requests > 0) {
        tokio::time::sleep(pause).await;
        note!(
            "latency: {} small GETs per path, alternating tunnel / direct",
            args.latency_requests
        );
        let targets = [kokoa.tunnel.clone(), kokoa.direct.clone()];
        let samples = load::latency(&targets, args.latency_requests, args.latency_bytes)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        for s in &samples {
            let row = LatencyRow::new(s);
            note!(
                "{}: p50={:.3}ms p90={:.3}ms p99={:.3}ms max={:.2}ms ({} requests, {} errors)",
                row.path,
                row.p50_ms,
                row.p90_ms,
                row.p99_ms,
                row.max_ms,
                row.requests,
                row.errors
            );
            report.latency.push(row);
        }
    }
    Ok(())
}

/// One throughput run of `secs` on `path` with `streams` streams, with the CPU around it.
async fn one_run(
    args: &TunnelArgs,
    bench: &mut Bench,
    path: Path,
    streams: u32,
    secs: u64,
) -> anyhow::Result<RunRow> {
    let pids = match path {
        Path::WireguardGo | Path::VethPlain => bench.wg.as_ref().map(WgPair::pids),
        Path::KokoaTunnel | Path::KokoaDirect => bench.kokoa.as_ref().map(KokoaSide::pids),
    }
    .unwrap_or_default();
    let before = TreeSnap::read(&pids);
    let box_before = CpuSnap::now();
    let started = Instant::now();
    let (gbit_s, detail) = match path {
        Path::WireguardGo | Path::VethPlain => {
            let wg = bench.wg.as_mut().context("no wireguard-go pair")?;
            let addr = if path == Path::WireguardGo {
                peer::B_INNER
            } else {
                wg.b_veth_addr()
            };
            let out = wg.iperf(addr, secs, streams).await?;
            wg.check_alive()?;
            (
                out.gbit_s,
                format!(
                    "retransmits={} iperf_cpu={:.0}%/{:.0}%",
                    out.retransmits, out.sender_cpu_pct, out.receiver_cpu_pct
                ),
            )
        }
        Path::KokoaTunnel | Path::KokoaDirect => {
            let kokoa = bench.kokoa.as_mut().context("no kokoa")?;
            let target = if path == Path::KokoaTunnel {
                kokoa.tunnel.clone()
            } else {
                kokoa.direct.clone()
            };
            let out = load::downloads(
                &target,
                streams,
                Duration::from_secs(secs),
                args.download_bytes(),
                args.max_downloads,
            )
            .await;
            kokoa.check_alive()?;
            anyhow::ensure!(
                out.bytes > 0,
                "{}: nothing downloaded; errors: {:?}",
                path.label(),
                out.error_samples
            );
            (
                out.gbit_s,
                format!(
                    "downloads={} errors={}{}",
                    out.completed,
                    out.errors,
                    out.error_samples
                        .first()
                        .map(|e| format!(" (e.g. {e})"))
                        .unwrap_or_default()
                ),
            )
        }
    };
    let wall = started.elapsed();
    Ok(RunRow {
        path,
        streams,
        run: 0,
        gbit_s,
        tunnel_cpu_pct: TreeSnap::read(&pids).cpu_pct_since(&before, wall),
        busy_pct: box_before.and_then(|s| s.busy_pct_since()).unwrap_or(0.0),
        steal_pct: box_before.and_then(|s| s.steal_pct_since()).unwrap_or(0.0),
        detail,
    })
}

//! `edge-bench`: `kokoa edge` against nginx (Debian) as a TLS-terminating reverse proxy, in the
//! same run, on loopback.
//!
//! Both proxy to one upstream, an nginx answering `return 200 "ok\n"` with 1 worker
//! ([`nginx`]). nginx is configured as in `shared/peers/nginx.sh` (TLS with a self-signed
//! ECDSA P-256 certificate, plain HTTP, `keepalive 64` to the upstream, HTTP/1.1 and `Host`
//! passed on, no access log), with `worker_processes` = the number of CPUs unless `WORKERS`
//! says otherwise. Kokoa is a one-replica control plane with one route to the upstream and one
//! `kokoa edge` that pulled it ([`kokoa`]), both started by the `kokoa-tests` harness.
//!
//! Each scenario ([`cli::Scenario`]: plain HTTP keep-alive, HTTPS keep-alive, HTTPS with a new
//! TLS connection per request) is first checked with one request per proxy ([`probe`]: wrk counts
//! a redirect as a success), warmed up, then measured `RUNS` times with wrk ([`wrk`]),
//! alternating nginx and Kokoa, a pause between runs. wrk connects to an IP address, so it sends
//! that IP as SNI and both proxies serve their fallback certificate. Per run: wrk's req/s and
//! latency percentiles; the CPU of the proxy, the upstream and wrk, and the proxy's CPU time per
//! request (what a request costs, whatever share of the box wrk took); accepted TCP connections
//! per request (connection reuse on both hops); the proxy's RSS after it; and the CPU the box
//! spent on anything else. A run during which other processes took a noticeable share of the
//! CPUs is discarded and measured again (`--contended-retries`). The report ([`report`]) gives
//! medians, Kokoa / nginx ratios, `RESULT` lines and optional JSON.
//!
//! Figures are "whole box, load generator included", like the peer scripts: wrk, both proxies
//! and the upstream share the CPUs. Every load is bounded in time, the whole run has a time
//! limit, and every process it started is stopped on the way out (on error, panic and Ctrl-C
//! too); its temporary directories are removed.

pub mod cli;
pub mod kokoa;
pub mod nginx;
pub mod probe;
pub mod procs;
pub mod report;
pub mod wrk;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::host::{self, CpuSnap};
use crate::note;
use crate::report::HostLoad;
pub use cli::{EdgeArgs, Scenario, WrkLoad};
use kokoa::KokoaSide;
use nginx::{Nginx, Role};
use procs::TreeSnap;
use report::{EdgeReport, LogSummary, Proxy, RunRow};
use wrk::WrkRun;

/// How long the box is watched before anything starts, to see whether it is quiet.
const QUIET_CHECK: Duration = Duration::from_secs(2);
/// Above this busy % during [`QUIET_CHECK`], the box is not quiet (something else runs).
pub const QUIET_BUSY_PCT: f64 = 15.0;
/// Pause before measuring a contended run again.
const CONTENDED_BACKOFF: Duration = Duration::from_secs(5);
/// How long nginx may take to answer after it was started.
const NGINX_READY_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs the benchmark until it finishes, `--timeout-secs` passes, or SIGINT / SIGTERM comes
/// (then every process it started is stopped before returning an error).
pub async fn run_until_signal(args: EdgeArgs) -> anyhow::Result<EdgeReport> {
    let limit = Duration::from_secs(args.timeout_secs);
    crate::until_signal(Some(limit), run(args)).await
}

/// The proxies under test, their upstream, and where their files live.
struct Bench {
    // Field order is drop order: proxies first, then the upstream, then the directory.
    nginx: Option<Nginx>,
    kokoa: Option<KokoaSide>,
    upstream: Nginx,
    http: reqwest::Client,
    work: tempfile::TempDir,
}

impl Bench {
    fn addrs(&self, proxy: Proxy) -> Option<(SocketAddr, SocketAddr)> {
        match proxy {
            Proxy::Nginx => self.nginx.as_ref()?.proxy_addrs(),
            Proxy::Kokoa => self.kokoa.as_ref().map(|k| (k.http(), k.https())),
        }
    }

    /// The processes whose memory and CPU count as the proxy's.
    fn pids(&self, proxy: Proxy) -> Vec<u32> {
        match proxy {
            Proxy::Nginx => self.nginx.as_ref().map_or_else(Vec::new, |n| n.proc.tree()),
            Proxy::Kokoa => self
                .kokoa
                .as_ref()
                .and_then(KokoaSide::edge_pid)
                .into_iter()
                .collect(),
        }
    }

    fn check_alive(&mut self, proxy: Proxy) -> anyhow::Result<()> {
        self.upstream.proc.check_alive()?;
        match proxy {
            Proxy::Nginx => self.nginx.as_mut().map_or(Ok(()), |n| n.proc.check_alive()),
            Proxy::Kokoa => self.kokoa.as_mut().map_or(Ok(()), KokoaSide::check_alive),
        }
    }

    fn proxies(&self) -> Vec<Proxy> {
        let mut proxies = Vec::new();
        if self.nginx.is_some() {
            proxies.push(Proxy::Nginx);
        }
        if self.kokoa.is_some() {
            proxies.push(Proxy::Kokoa);
        }
        proxies
    }

    /// The URL wrk loads for a scenario.
    fn url(&self, proxy: Proxy, scenario: Scenario) -> Option<String> {
        let (http, https) = self.addrs(proxy)?;
        Some(if scenario.is_tls() {
            format!("https://{https}/")
        } else {
            format!("http://{http}/")
        })
    }
}

/// The whole benchmark: start everything, measure every scenario, report. A failure after the
/// proxies started still prints what was measured so far.
pub async fn run(args: EdgeArgs) -> anyhow::Result<EdgeReport> {
    let load = args.validate()?;
    let mut report = EdgeReport::new(&args, load);
    report.machine.nginx_version = nginx::version()?;
    report.machine.wrk_version = wrk_version()?;
    report.machine.load = HostLoad::at_start();
    let quiet = CpuSnap::now();
    tokio::time::sleep(QUIET_CHECK).await;
    report.machine.busy_pct_before = quiet.and_then(|snap| snap.busy_pct_since());
    if let Some(busy) = report.machine.busy_pct_before {
        if busy > QUIET_BUSY_PCT {
            note!(
                "WARNING: the box was {busy:.0}% busy over {} s before anything started: \
                 something else is running, figures will be skewed",
                QUIET_CHECK.as_secs()
            );
        }
    }

    let mut bench = start(&args, load, &mut report).await?;
    let outcome = measure(&args, load, &mut bench, &mut report).await;
    report.machine.load.finish();
    if let Some(kokoa) = &bench.kokoa {
        report.machine.replica_rss_kib = kokoa
            .replica_pid()
            .and_then(crate::host::ProcSnap::read)
            .map(|p| p.rss_kib);
        report.edge_log = Some(LogSummary::of(
            &kokoa.edge.log(),
            kokoa.edge.log_path().display().to_string(),
        ));
        if outcome.is_err() {
            note!("kokoa edge log tail:\n{}", kokoa.edge.log_tail(30));
        }
    }
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

fn wrk_version() -> anyhow::Result<String> {
    // `wrk -v` prints its banner and exits with 1.
    let output = Command::new("wrk")
        .arg("-v")
        .output()
        .context("run wrk -v (install it: apt-get install wrk, or run bench/edge-bench.sh)")?;
    let text = String::from_utf8_lossy(&output.stdout);
    Ok(text
        .split_whitespace()
        .nth(1)
        .unwrap_or("(unknown version)")
        .to_string())
}

/// The upstream, then nginx, then Kokoa, each checked with one request through it.
async fn start(args: &EdgeArgs, load: WrkLoad, report: &mut EdgeReport) -> anyhow::Result<Bench> {
    let work = tempfile::Builder::new()
        .prefix("edge-bench-")
        .tempdir()
        .context("create a temporary directory")?;
    let http = probe::client()?;
    let ports = kokoa_tests::free_ports(3);
    let upstream_addr = SocketAddr::from(([127, 0, 0, 1], ports[0]));
    let upstream = Nginx::start(
        &work.path().join("upstream"),
        Role::Upstream { port: ports[0] },
    )?;
    probe::wait_ok(
        &http,
        &format!("http://{upstream_addr}/"),
        NGINX_READY_TIMEOUT,
    )
    .await
    .context("the upstream nginx")?;
    note!(
        "upstream nginx {} (1 worker) at {upstream_addr}, pid {}",
        report.machine.nginx_version,
        upstream.proc.pid().unwrap_or(0)
    );
    let mut bench = Bench {
        nginx: None,
        kokoa: None,
        upstream,
        http,
        work,
    };

    if !args.skip_nginx {
        let (cert, key) = nginx::self_signed_cert(bench.work.path(), probe::HOSTNAME)?;
        let proxy = Nginx::start(
            &bench.work.path().join("proxy"),
            Role::Proxy {
                workers: args.nginx_workers(),
                http_port: ports[1],
                https_port: ports[2],
                upstream_port: ports[0],
                cert,
                key,
            },
        )?;
        let (http_addr, https_addr) = proxy.proxy_addrs().context("a proxy has addresses")?;
        probe::wait_ok(
            &bench.http,
            &format!("https://{https_addr}/"),
            NGINX_READY_TIMEOUT,
        )
        .await
        .context("the nginx proxy (HTTPS)")?;
        note!(
            "nginx proxy ({} workers) http={http_addr} https={https_addr}, pids {:?}",
            args.nginx_workers(),
            proxy.proc.tree()
        );
        report.machine.tls_nginx = Some(procs::tls_summary(https_addr));
        bench.nginx = Some(proxy);
    }

    if !args.skip_kokoa {
        report.machine.kokoa_bin = Some(kokoa_tests::kokoa_bin().display().to_string());
        note!("starting the Kokoa control plane and edge");
        let kokoa = KokoaSide::start(
            upstream_addr,
            &args.kokoa_args,
            &args.edge_args,
            load.connections,
            &bench.http,
        )
        .await?;
        note!(
            "kokoa edge pid {} http={} https={}: {}",
            kokoa.edge_pid().unwrap_or(0),
            kokoa.http(),
            kokoa.https(),
            kokoa.listening_line
        );
        report.machine.tls_kokoa = Some(procs::tls_summary(kokoa.https()));
        for flags in &kokoa.edge_flags_added {
            report.notes.push(format!(
                "kokoa edge started with {flags} (added by the benchmark)"
            ));
        }
        report.machine.edge_listening = Some(kokoa.listening_line.clone());
        report.notes.extend(kokoa.route_downgrades.iter().cloned());
        bench.kokoa = Some(kokoa);
    }
    for tls in [&report.machine.tls_nginx, &report.machine.tls_kokoa]
        .into_iter()
        .flatten()
    {
        note!("TLS as wrk connects (SNI 127.0.0.1): {tls}");
    }
    for proxy in bench.proxies() {
        let rss = TreeSnap::read(&bench.pids(proxy)).rss_kib;
        note!("{proxy} idle RSS {:.1} MiB", rss as f64 / 1024.0);
        report.rss_kib_idle.push((proxy, rss));
    }
    Ok(bench)
}

/// Every scenario: probe each proxy, warm it up, then the runs, alternating the proxies.
async fn measure(
    args: &EdgeArgs,
    load: WrkLoad,
    bench: &mut Bench,
    report: &mut EdgeReport,
) -> anyhow::Result<()> {
    let pause = Duration::from_millis(args.pause_ms);
    for scenario in args.scenarios() {
        let mut proxies = Vec::new();
        for proxy in bench.proxies() {
            let url = bench.url(proxy, scenario).context("proxy address")?;
            let close = scenario.new_connection_per_request();
            match probe::expect_ok(&bench.http, &url, close).await {
                Ok(()) => proxies.push(proxy),
                Err(why) => {
                    let skipped = format!("{proxy} {scenario} skipped: {why}");
                    note!("WARNING: {skipped}");
                    report.notes.push(skipped);
                }
            }
        }
        note!(
            "{scenario} ({}): {}",
            scenario.describe(),
            if proxies.is_empty() {
                "nothing to measure".to_string()
            } else {
                format!(
                    "{} s warm-up, then {} runs each",
                    args.warmup_secs, args.runs
                )
            }
        );
        if args.warmup_secs > 0 {
            for &proxy in &proxies {
                let warmup = WrkLoad {
                    duration: Duration::from_secs(args.warmup_secs),
                    ..load
                };
                wrk_run(bench, proxy, scenario, warmup).await?;
                tokio::time::sleep(pause).await;
            }
        }
        for run in 1..=args.runs {
            for &proxy in &proxies {
                let mut retries = 0;
                let row = loop {
                    let row = measured_run(bench, proxy, scenario, load, run).await?;
                    note!("{}", row.one_line());
                    tokio::time::sleep(pause).await;
                    if !row.contended() || retries >= args.contended_retries {
                        break row;
                    }
                    retries += 1;
                    let discarded = format!(
                        "{proxy} {scenario} run {run} discarded and measured again: other \
                         processes took {:.0}% of a core",
                        row.other_cpu_pct.unwrap_or(0.0)
                    );
                    note!("{discarded}");
                    report.notes.push(discarded);
                    tokio::time::sleep(CONTENDED_BACKOFF).await;
                };
                report.runs.push(row);
            }
        }
    }
    Ok(())
}

fn wrk_for(bench: &Bench, proxy: Proxy, scenario: Scenario, load: WrkLoad) -> Option<WrkRun> {
    let mut headers = vec![format!("Host: {}", probe::HOSTNAME)];
    if scenario.new_connection_per_request() {
        headers.push("Connection: close".into());
    }
    Some(WrkRun {
        load,
        url: bench.url(proxy, scenario)?,
        headers,
    })
}

/// An unrecorded run (warm-up).
async fn wrk_run(
    bench: &mut Bench,
    proxy: Proxy,
    scenario: Scenario,
    load: WrkLoad,
) -> anyhow::Result<()> {
    let wrk = wrk_for(bench, proxy, scenario, load).context("proxy address")?;
    wrk.run()
        .await
        .with_context(|| format!("{proxy} {scenario} warm-up"))?;
    bench.check_alive(proxy)
}

/// One measured run with the proxy's and upstream's CPU, the box's, and accepted connections.
async fn measured_run(
    bench: &mut Bench,
    proxy: Proxy,
    scenario: Scenario,
    load: WrkLoad,
    run: u32,
) -> anyhow::Result<RunRow> {
    let wrk = wrk_for(bench, proxy, scenario, load).context("proxy address")?;
    let pids = bench.pids(proxy);
    let upstream_pids = bench.upstream.proc.tree();
    let box_before = CpuSnap::now();
    let proxy_before = TreeSnap::read(&pids);
    let upstream_before = TreeSnap::read(&upstream_pids);
    let accepted_before = procs::passive_opens();
    let own_before = procs::own_and_reaped_ticks();
    let started = Instant::now();
    let (output, _text) = wrk
        .run()
        .await
        .with_context(|| format!("{proxy} {scenario} run {run}"))?;
    let wall = started.elapsed();
    let proxy_after = TreeSnap::read(&pids);
    let upstream_after = TreeSnap::read(&upstream_pids);
    let accepted = procs::passive_opens()
        .zip(accepted_before)
        .map(|(after, before)| after.saturating_sub(before));
    let pct =
        |ticks: u64| 100.0 * ticks as f64 / host::clock_ticks_per_sec() as f64 / wall.as_secs_f64();
    // wrk was reaped: its CPU is in this process's children's times now.
    let (bench_cpu_pct, wrk_cpu_pct) = match (own_before, procs::own_and_reaped_ticks()) {
        (Some((own0, kids0)), Some((own1, kids1))) => (
            pct(own1.saturating_sub(own0)),
            pct(kids1.saturating_sub(kids0)),
        ),
        _ => (0.0, 0.0),
    };
    let proxy_cpu_pct = proxy_after.cpu_pct_since(&proxy_before, wall);
    let upstream_cpu_pct = upstream_after.cpu_pct_since(&upstream_before, wall);
    let busy_pct = box_before.and_then(|b| b.busy_pct_since());
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    // What the box spent on anything but this run's processes, in % of one core.
    let other_cpu_pct = busy_pct.map(|busy| {
        (busy * cpus - proxy_cpu_pct - upstream_cpu_pct - wrk_cpu_pct - bench_cpu_pct).max(0.0)
    });
    bench.check_alive(proxy)?;
    Ok(RunRow {
        scenario,
        proxy,
        run,
        proxy_cpu_pct,
        upstream_cpu_pct,
        wrk_cpu_pct,
        other_cpu_pct,
        busy_pct,
        steal_pct: box_before.and_then(|b| b.steal_pct_since()),
        accepted_per_request: accepted
            .filter(|_| output.requests > 0)
            .map(|n| n as f64 / output.requests as f64),
        // After the run: the set of nginx workers may have changed (a crashed worker is
        // replaced), so read the tree again.
        rss_kib_after: TreeSnap::read(&bench.pids(proxy)).rss_kib,
        wrk: output,
    })
}

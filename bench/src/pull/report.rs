//! `pull-bench`'s figures: tables for people, `RESULT` lines for scripts, JSON (`--json`).
//!
//! Wake-up latencies are "time the puller had the whole 200 answer" minus "time the write's 201
//! arrived", so they are negative for pulls answered before the writer heard back; the same
//! figures measured from the moment the write was sent are given beside them.

use std::fmt::Write as _;

use serde::Serialize;

use super::PullArgs;
use crate::stats::percentile;

/// The replica's RSS while idle with every pull waiting must stay under this.
pub const RSS_TARGET_MIB: f64 = 300.0;
/// The p99 of wake-ups after the write's acknowledgement must stay under this.
pub const P99_TARGET_MS: f64 = 250.0;

/// Everything a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct PullReport {
    pub settings: Settings,
    pub machine: Machine,
    pub setup: Setup,
    pub rounds: Vec<RoundRow>,
    pub server_log: LogSummary,
    pub targets: Vec<TargetRow>,
}

/// The flags of the run.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub pulls: u32,
    pub edges: u32,
    pub rounds: u32,
    pub idle_secs: u64,
    pub wait_secs: u64,
    pub ready_timeout_secs: u64,
    pub answer_timeout_secs: u64,
    pub connect_concurrency: u32,
    pub kokoa_args: Vec<String>,
}

/// Where it ran.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub kokoa_bin: String,
    pub kokoa_data: String,
    pub replica_pid: Option<u32>,
    /// Open-file limit of the benchmark, inherited by the replica.
    pub nofile_limit: u64,
    pub load_average_start: Option<String>,
    pub load_average_end: Option<String>,
}

/// Edges, connections and how readiness is observed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Setup {
    pub edges_registered: usize,
    pub register_s: f64,
    pub connected: usize,
    pub connect_errors: usize,
    pub connect_s: f64,
    pub connect_error_samples: Vec<String>,
    /// Box-wide `ListenOverflows` while connecting: SYNs dropped because the replica's accept
    /// queue was full (each costs the client a 1 s retransmit).
    pub listen_overflows: Option<u64>,
    /// `metric` (`kokoa_pulls_waiting` on `/metrics`) or `sockets` (see `ready.rs`).
    pub readiness: String,
    pub initial_version: u64,
}

/// The replica while every pull waits, over the idle window.
#[derive(Debug, Clone, Serialize)]
pub struct IdleRow {
    pub secs: f64,
    pub rss_mib: f64,
    pub cpu_pct: f64,
    pub threads: u64,
    /// The whole box (every process, other users included), % of all CPU time.
    pub box_busy_pct: Option<f64>,
    pub steal_pct: Option<f64>,
    /// The benchmark process itself (10,000 client connections).
    pub bench_rss_mib: Option<f64>,
}

/// How the round's pulls were found to be waiting.
#[derive(Debug, Clone, Serialize)]
pub struct ReadyRow {
    pub ok: bool,
    /// From arming to ready (or to giving up).
    pub secs: f64,
    /// What was seen last.
    pub detail: String,
}

/// Why armed pulls did not count as woken by the write.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Errors {
    /// Connect / send / receive failures.
    pub transport: usize,
    /// Answers other than 200 / 304.
    pub status: usize,
    /// No answer within the answer timeout after the write's ack.
    pub no_answer: usize,
    /// Answered 200 before the write was sent (not woken by it).
    pub early: usize,
    /// Answered 200 with a version below the write's index, or without a readable version.
    pub bad_version: usize,
    pub samples: Vec<String>,
}

impl Errors {
    /// Keeps `message` if it is new and there is room (a few distinct samples).
    pub fn sample(&mut self, message: String) {
        const SAMPLES: usize = 6;
        if self.samples.len() < SAMPLES && !self.samples.contains(&message) {
            self.samples.push(message);
        }
    }

    pub fn total(&self) -> usize {
        self.transport + self.status + self.no_answer + self.early + self.bad_version
    }
}

/// One write-wake cycle.
#[derive(Debug, Clone, Serialize)]
pub struct RoundRow {
    pub round: u32,
    /// `after` of every pull.
    pub after: u64,
    pub ready: ReadyRow,
    pub idle: Option<IdleRow>,
    /// Write sent → 201 received.
    pub write_ms: f64,
    pub write_index: Option<u64>,
    pub pulls: usize,
    /// 200 answers with a version at or above the write's index.
    pub answered: usize,
    pub errors: Errors,
    /// 304 answers sent again (before the write).
    pub repolls: usize,
    /// Relative to the write's 201 (negative: answered first).
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub first_ms: Option<f64>,
    /// Answered before the write's 201 arrived.
    pub before_ack: usize,
    /// Relative to sending the write.
    pub p50_from_send_ms: Option<f64>,
    pub p99_from_send_ms: Option<f64>,
    pub max_from_send_ms: Option<f64>,
    /// The replica after every answer: RSS, peak RSS so far, threads.
    pub after_rss_mib: Option<f64>,
    pub peak_rss_mib: Option<f64>,
    pub after_threads: Option<u64>,
    /// Replica CPU seconds from the write to the last answer.
    pub wake_cpu_s: Option<f64>,
    /// This benchmark's own CPU seconds (receiving the answers) over the same time.
    pub bench_wake_cpu_s: Option<f64>,
    /// The whole box from the write to the last answer.
    pub wake_box_busy_pct: Option<f64>,
    pub wake_steal_pct: Option<f64>,
}

impl RoundRow {
    /// A round armed with `after` for `pulls` pulls, nothing measured yet.
    pub fn new(round: u32, after: u64, pulls: usize, ready: ReadyRow) -> RoundRow {
        RoundRow {
            round,
            after,
            ready,
            idle: None,
            write_ms: 0.0,
            write_index: None,
            pulls,
            answered: 0,
            errors: Errors::default(),
            repolls: 0,
            p50_ms: None,
            p99_ms: None,
            max_ms: None,
            first_ms: None,
            before_ack: 0,
            p50_from_send_ms: None,
            p99_from_send_ms: None,
            max_from_send_ms: None,
            after_rss_mib: None,
            peak_rss_mib: None,
            after_threads: None,
            wake_cpu_s: None,
            bench_wake_cpu_s: None,
            wake_box_busy_pct: None,
            wake_steal_pct: None,
        }
    }

    /// Fills the latency figures from signed microsecond latencies (any order).
    pub fn set_latencies(&mut self, mut from_ack_us: Vec<i64>, mut from_send_us: Vec<i64>) {
        from_ack_us.sort_unstable();
        from_send_us.sort_unstable();
        let ms = |us: Option<i64>| us.map(|us| us as f64 / 1000.0);
        self.answered = from_ack_us.len();
        self.before_ack = from_ack_us.iter().filter(|&&us| us < 0).count();
        self.p50_ms = ms(percentile(&from_ack_us, 50.0));
        self.p99_ms = ms(percentile(&from_ack_us, 99.0));
        self.max_ms = ms(from_ack_us.last().copied());
        self.first_ms = ms(from_ack_us.first().copied());
        self.p50_from_send_ms = ms(percentile(&from_send_us, 50.0));
        self.p99_from_send_ms = ms(percentile(&from_send_us, 99.0));
        self.max_from_send_ms = ms(from_send_us.last().copied());
    }
}

/// Warnings and errors the replica logged during the run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LogSummary {
    pub warnings: usize,
    pub errors: usize,
    pub samples: Vec<String>,
    pub log_path: String,
}

impl LogSummary {
    /// Counts `WARN` / `ERROR` lines of a tracing log and keeps the first few.
    pub fn of(log: &str, log_path: String) -> LogSummary {
        const SAMPLES: usize = 6;
        let mut summary = LogSummary {
            log_path,
            ..LogSummary::default()
        };
        for line in log.lines() {
            let warn = line.contains(" WARN ");
            let error = line.contains(" ERROR ");
            summary.warnings += usize::from(warn);
            summary.errors += usize::from(error);
            if (warn || error) && summary.samples.len() < SAMPLES {
                summary.samples.push(line.chars().take(300).collect());
            }
        }
        summary
    }
}

/// One target and whether the run met it.
#[derive(Debug, Clone, Serialize)]
pub struct TargetRow {
    pub name: String,
    pub limit: f64,
    pub unit: &'static str,
    /// The worst round's figure.
    pub value: Option<f64>,
    pub met: bool,
    pub note: String,
}

fn opt(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{v:.decimals$}"))
}

fn verdict(met: bool) -> &'static str {
    if met {
        "PASS"
    } else {
        "NOT MET"
    }
}

impl PullReport {
    pub fn new(args: &PullArgs) -> PullReport {
        PullReport {
            settings: Settings {
                pulls: args.pulls,
                edges: args.edges,
                rounds: args.rounds,
                idle_secs: args.idle_secs,
                wait_secs: args.wait_secs,
                ready_timeout_secs: args.ready_timeout_secs,
                answer_timeout_secs: args.answer_timeout_secs,
                connect_concurrency: args.connect_concurrency,
                kokoa_args: args.kokoa_args.clone(),
            },
            machine: Machine {
                cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
                ..Machine::default()
            },
            setup: Setup::default(),
            rounds: Vec::new(),
            server_log: LogSummary::default(),
            targets: Vec::new(),
        }
    }

    /// Judges the targets on the worst round.
    pub fn finish(&mut self) {
        let pulls = self.settings.pulls as usize;
        let worst = |values: Vec<Option<f64>>| -> Option<f64> {
            values
                .into_iter()
                .collect::<Option<Vec<f64>>>()
                .and_then(|v| v.into_iter().max_by(f64::total_cmp))
        };
        let rss = worst(
            self.rounds
                .iter()
                .map(|r| r.idle.as_ref().map(|i| i.rss_mib))
                .collect(),
        );
        let all_ready = !self.rounds.is_empty() && self.rounds.iter().all(|r| r.ready.ok);
        let rss_note = if all_ready {
            format!(
                "idle, {pulls} pulls waiting; worst of {} rounds",
                self.rounds.len()
            )
        } else {
            "not every round had all pulls waiting".to_string()
        };
        self.targets = vec![TargetRow {
            name: format!("replica RSS while idle with {pulls} pulls waiting"),
            limit: RSS_TARGET_MIB,
            unit: "MiB",
            value: rss,
            met: all_ready && rss.is_some_and(|v| v < RSS_TARGET_MIB),
            note: rss_note,
        }];

        let p99 = worst(self.rounds.iter().map(|r| r.p99_ms).collect());
        let complete = self
            .rounds
            .iter()
            .all(|r| r.answered == pulls && r.errors.total() == 0);
        let p99_note = if complete {
            format!(
                "every pull answered in every round; worst of {} rounds",
                self.rounds.len()
            )
        } else {
            let answered: Vec<String> = self
                .rounds
                .iter()
                .map(|r| format!("{}/{pulls}", r.answered))
                .collect();
            format!("not every pull answered: {}", answered.join(", "))
        };
        self.targets.push(TargetRow {
            name: "p99 wake-up after the write's ack".into(),
            limit: P99_TARGET_MS,
            unit: "ms",
            value: p99,
            met: complete && all_ready && p99.is_some_and(|v| v < P99_TARGET_MS),
            note: p99_note,
        });
    }

    /// Tables, targets, then `RESULT` lines.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let s = &self.settings;
        let m = &self.machine;
        let setup = &self.setup;
        let _ = writeln!(
            out,
            "\n== Config long-polls: 1 Kokoa replica (fsync on), {} pulls on {} HTTP/1.1 connections over {} edge tokens, wait={} s ==",
            s.pulls, s.pulls, s.edges, s.wait_secs
        );
        let _ = writeln!(
            out,
            "kokoa: {} | data {} | pid {} | {} CPUs shared by the replica and the clients | open-file limit {} | load average {} → {}",
            m.kokoa_bin,
            m.kokoa_data,
            m.replica_pid.map_or("-".into(), |p| p.to_string()),
            m.cpus,
            m.nofile_limit,
            m.load_average_start.as_deref().unwrap_or("-"),
            m.load_average_end.as_deref().unwrap_or("-")
        );
        if !s.kokoa_args.is_empty() {
            let _ = writeln!(
                out,
                "kokoa server extra arguments: {}",
                s.kokoa_args.join(" ")
            );
        }
        let _ = writeln!(
            out,
            "setup: {} edges registered in {:.1} s; {}/{} connections open in {:.1} s ({} connect errors); all-waiting check: {}; initial version {}",
            setup.edges_registered,
            setup.register_s,
            setup.connected,
            s.pulls,
            setup.connect_s,
            setup.connect_errors,
            setup.readiness,
            setup.initial_version
        );
        if let Some(overflows) = setup.listen_overflows.filter(|&n| n > 0) {
            let _ = writeln!(
                out,
                "  while connecting ({} at a time), {overflows} connection attempts overflowed a listen queue (box-wide TcpExt ListenOverflows) and were retried after 1 s",
                s.connect_concurrency
            );
        }
        for sample in &setup.connect_error_samples {
            let _ = writeln!(out, "  connect error: {sample}");
        }

        let _ = writeln!(
            out,
            "\n== Idle: every pull waiting; replica RSS and CPU (% of one core) over {} s ==",
            s.idle_secs
        );
        let _ = writeln!(
            out,
            "{:>5} {:>9} {:>8} {:>6} {:>9} {:>7} {:>8} {:>10} {:>7} {:>10}",
            "round",
            "after",
            "ready s",
            "ready",
            "RSS MiB",
            "CPU %",
            "threads",
            "box busy%",
            "steal%",
            "bench MiB"
        );
        for r in &self.rounds {
            let idle = r.idle.as_ref();
            let _ = writeln!(
                out,
                "{:>5} {:>9} {:>8.1} {:>6} {:>9} {:>7} {:>8} {:>10} {:>7} {:>10}",
                r.round,
                r.after,
                r.ready.secs,
                if r.ready.ok { "yes" } else { "NO" },
                opt(idle.map(|i| i.rss_mib), 1),
                opt(idle.map(|i| i.cpu_pct), 2),
                idle.map_or("-".into(), |i| i.threads.to_string()),
                opt(idle.and_then(|i| i.box_busy_pct), 1),
                opt(idle.and_then(|i| i.steal_pct), 1),
                opt(idle.and_then(|i| i.bench_rss_mib), 1)
            );
        }
        for r in self.rounds.iter().filter(|r| !r.ready.ok) {
            let _ = writeln!(
                out,
                "  round {}: not all waiting after {:.1} s: {}",
                r.round, r.ready.secs, r.ready.detail
            );
        }

        let _ = writeln!(
            out,
            "\n== Wake: one committed write (POST /api/v1/routes) → the 200 of every pull; ms after the write's 201 (negative: before it) =="
        );
        let _ = writeln!(
            out,
            "{:>5} {:>8} {:>11} {:>6} {:>8} {:>8} {:>8} {:>8} {:>10} {:>9} {:>9} {:>8} {:>8} {:>6} {:>8} {:>6} {:>6}",
            "round",
            "write ms",
            "answered",
            "errors",
            "first ms",
            "p50 ms",
            "p99 ms",
            "max ms",
            "before-ack",
            "p99 send",
            "max send",
            "RSS MiB",
            "peak MiB",
            "CPU s",
            "bench s",
            "busy%",
            "steal%"
        );
        for r in &self.rounds {
            let _ = writeln!(
                out,
                "{:>5} {:>8.1} {:>11} {:>6} {:>8} {:>8} {:>8} {:>8} {:>10} {:>9} {:>9} {:>8} {:>8} {:>6} {:>8} {:>6} {:>6}",
                r.round,
                r.write_ms,
                format!("{}/{}", r.answered, r.pulls),
                r.errors.total(),
                opt(r.first_ms, 1),
                opt(r.p50_ms, 1),
                opt(r.p99_ms, 1),
                opt(r.max_ms, 1),
                r.before_ack,
                opt(r.p99_from_send_ms, 1),
                opt(r.max_from_send_ms, 1),
                opt(r.after_rss_mib, 1),
                opt(r.peak_rss_mib, 1),
                opt(r.wake_cpu_s, 2),
                opt(r.bench_wake_cpu_s, 2),
                opt(r.wake_box_busy_pct, 0),
                opt(r.wake_steal_pct, 1)
            );
        }
        let _ = writeln!(
            out,
            "(p99/max send: from sending the write; RSS/peak: replica after the wake-up, peak = VmHWM so far; CPU s / bench s: CPU of the replica / of this client from the write to the last answer; busy%/steal%: whole box over that time)"
        );
        for r in &self.rounds {
            let e = &r.errors;
            if e.total() > 0 || r.repolls > 0 {
                let _ = writeln!(
                    out,
                    "  round {}: transport {} status {} no-answer {} early {} bad-version {} (304s re-sent: {})",
                    r.round, e.transport, e.status, e.no_answer, e.early, e.bad_version, r.repolls
                );
                for sample in &e.samples {
                    let _ = writeln!(out, "    {sample}");
                }
            }
        }

        let log = &self.server_log;
        let _ = writeln!(
            out,
            "\nreplica log: {} warnings, {} errors ({})",
            log.warnings, log.errors, log.log_path
        );
        for sample in &log.samples {
            let _ = writeln!(out, "  {sample}");
        }

        let _ = writeln!(out, "\n== Targets ==");
        for t in &self.targets {
            let _ = writeln!(
                out,
                "{}: {} {} (target under {} {}) — {} [{}]",
                t.name,
                opt(t.value, 1),
                t.unit,
                t.limit,
                t.unit,
                verdict(t.met),
                t.note
            );
        }

        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "RESULT kokoa pulls setup pulls={} edges={} connected={} connect_errors={} connect_s={:.1} listen_overflows={} register_s={:.1} readiness={}",
            s.pulls,
            setup.edges_registered,
            setup.connected,
            setup.connect_errors,
            setup.connect_s,
            setup.listen_overflows.map_or("-".into(), |n| n.to_string()),
            setup.register_s,
            setup.readiness.split_whitespace().next().unwrap_or("-")
        );
        for r in &self.rounds {
            let idle = r.idle.as_ref();
            let _ = writeln!(
                out,
                "RESULT kokoa pulls idle round={} waiting_ready={} ready_s={:.1} rss_mib={} cpu_pct={} threads={} box_busy_pct={} steal_pct={}",
                r.round,
                r.ready.ok,
                r.ready.secs,
                opt(idle.map(|i| i.rss_mib), 1),
                opt(idle.map(|i| i.cpu_pct), 2),
                idle.map_or("-".into(), |i| i.threads.to_string()),
                opt(idle.and_then(|i| i.box_busy_pct), 1),
                opt(idle.and_then(|i| i.steal_pct), 1)
            );
        }
        for r in &self.rounds {
            let _ = writeln!(
                out,
                "RESULT kokoa pulls wake round={} answered={} pulls={} errors={} p50_ms={} p99_ms={} max_ms={} before_ack={} write_ms={:.1} p99_from_send_ms={} peak_rss_mib={} wake_cpu_s={} bench_cpu_s={} box_busy_pct={} steal_pct={}",
                r.round,
                r.answered,
                r.pulls,
                r.errors.total(),
                opt(r.p50_ms, 1),
                opt(r.p99_ms, 1),
                opt(r.max_ms, 1),
                r.before_ack,
                r.write_ms,
                opt(r.p99_from_send_ms, 1),
                opt(r.peak_rss_mib, 1),
                opt(r.wake_cpu_s, 2),
                opt(r.bench_wake_cpu_s, 2),
                opt(r.wake_box_busy_pct, 1),
                opt(r.wake_steal_pct, 1)
            );
        }
        for t in &self.targets {
            let key = if t.unit == "MiB" {
                "rss_idle_mib"
            } else {
                "p99_wake_ms"
            };
            let _ = writeln!(
                out,
                "RESULT kokoa pulls target {key}={} under={} {}",
                opt(t.value, 1),
                t.limit,
                verdict(t.met).replace(' ', "_")
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn round(n: u32, rss: f64, from_ack_us: Vec<i64>) -> RoundRow {
        let pulls = from_ack_us.len();
        let ready = ReadyRow {
            ok: true,
            secs: 1.0,
            detail: String::new(),
        };
        let mut row = RoundRow::new(n, 10, pulls, ready);
        row.idle = Some(IdleRow {
            secs: 5.0,
            rss_mib: rss,
            cpu_pct: 0.2,
            threads: 9,
            box_busy_pct: Some(50.0),
            steal_pct: Some(0.0),
            bench_rss_mib: Some(100.0),
        });
        row.write_ms = 3.0;
        row.write_index = Some(11);
        let from_send = from_ack_us.iter().map(|us| us + 3000).collect();
        row.set_latencies(from_ack_us, from_send);
        row
    }

    #[test]
    fn signed_latencies_and_targets() {
        let args = PullArgs::try_parse_from(["pull-bench", "--pulls", "100", "--edges", "10"])
            .expect("parse");
        let mut report = PullReport::new(&args);
        let mut lat: Vec<i64> = (1..=100).map(|i| i * 1000).collect();
        lat[0] = -2000;
        report.rounds.push(round(1, 120.0, lat.clone()));
        report.rounds.push(round(2, 150.0, lat));
        report.finish();
        let r = &report.rounds[0];
        assert_eq!((r.answered, r.before_ack), (100, 1));
        assert_eq!(r.first_ms, Some(-2.0));
        assert_eq!(r.p99_ms, Some(99.0));
        assert_eq!(r.p99_from_send_ms, Some(102.0));
        assert!(report.targets.iter().all(|t| t.met));
        assert_eq!(report.targets[0].value, Some(150.0));
        let text = report.render();
        assert!(text.contains("RESULT kokoa pulls target rss_idle_mib=150.0 under=300 PASS"));
        assert!(text.contains("RESULT kokoa pulls wake round=2 answered=100 pulls=100 errors=0"));

        report.rounds[1] = round(2, 400.0, (1..=100).map(|i| i * 3000).collect());
        report.rounds[1].errors.no_answer = 1;
        report.finish();
        assert!(report.targets.iter().all(|t| !t.met));
        assert!(report
            .render()
            .contains("RESULT kokoa pulls target p99_wake_ms=297.0 under=250 NOT_MET"));
    }

    #[test]
    fn counts_warnings_in_the_log() {
        let log = "2024-01-01T00:00:00Z  INFO kokoa: listening\n\
                   2024-01-01T00:00:01Z  WARN kokoa: slow\n\
                   2024-01-01T00:00:02Z ERROR kokoa: broken\n";
        let summary = LogSummary::of(log, "x.log".into());
        assert_eq!(
            (summary.warnings, summary.errors, summary.samples.len()),
            (1, 1, 2)
        );
    }
}

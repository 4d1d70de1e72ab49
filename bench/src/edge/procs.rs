//! Processes the edge benchmark starts and looks at: a child that is stopped (TERM, then KILL,
//! its own children too) when dropped, process-tree memory and CPU from `/proc`, the kernel's
//! count of accepted TCP connections, and which TLS parameters a server negotiates.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use kokoa_tests::{strip_ansi, PROXY_VARS};

use crate::host::ProcSnap;

/// How long a process may take to exit after SIGTERM before it gets SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A child process with its output in one log file. Dropping it sends SIGTERM, waits up to
/// 5 s, then SIGKILLs it and every child it had (nginx workers outlive a killed master).
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Option<Child>,
    log_path: PathBuf,
}

impl Proc {
    /// Spawns `program args` with stdout and stderr appended to `log_path`.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(&str, &str)],
        log_path: &Path,
    ) -> anyhow::Result<Proc> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(log_path)
            .with_context(|| format!("open {}", log_path.display()))?;
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("clone a log handle")?)
            .stderr(log);
        for var in PROXY_VARS {
            command.env_remove(var);
        }
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command
            .spawn()
            .with_context(|| format!("spawn {name} ({})", program.display()))?;
        Ok(Proc {
            name: name.to_string(),
            child: Some(child),
            log_path: log_path.to_path_buf(),
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `Err` naming the exit status when the process has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(child) = self.child.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                anyhow::bail!(
                    "{} exited with {status}; log tail:\n{}",
                    self.name,
                    self.log_tail(30)
                );
            }
        }
        anyhow::ensure!(self.child.is_some(), "{} is not running", self.name);
        Ok(())
    }

    /// The log so far (lossy UTF-8, ANSI colours removed).
    pub fn log(&self) -> String {
        let bytes = std::fs::read(&self.log_path).unwrap_or_default();
        strip_ansi(&String::from_utf8_lossy(&bytes))
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// This process and its direct children (e.g. nginx's master and workers).
    pub fn tree(&self) -> Vec<u32> {
        self.pid().map_or_else(Vec::new, |pid| {
            let mut pids = vec![pid];
            pids.extend(children_of(pid));
            pids
        })
    }

    /// SIGTERM, up to 5 s for it to exit, then SIGKILL to it and to the children it had.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let kids = children_of(child.id());
        signal(child.id(), "TERM");
        let started = Instant::now();
        let exited = loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break true,
                Ok(None) if started.elapsed() >= STOP_GRACE => break false,
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        if !exited {
            let _ = child.kill();
            let _ = child.wait();
        }
        for kid in kids {
            if Path::new(&format!("/proc/{kid}")).exists() {
                signal(kid, "KILL");
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `kill -NAME PID` (no libc here: the workspace forbids `unsafe`).
fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Processes whose parent is `pid`, from `/proc/*/stat`.
pub fn children_of(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&candidate| {
            std::fs::read_to_string(format!("/proc/{candidate}/stat"))
                .ok()
                .and_then(|stat| parent_pid(&stat))
                == Some(pid)
        })
        .collect()
}

/// The 4th field of `/proc/PID/stat` (after the parenthesised command name).
fn parent_pid(stat: &str) -> Option<u32> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().nth(1)?.parse().ok()
}

/// Memory and CPU of a set of processes, summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeSnap {
    pub cpu_ticks: u64,
    pub rss_kib: u64,
    pub hwm_kib: u64,
    /// How many of the processes could be read.
    pub processes: usize,
}

impl TreeSnap {
    pub fn read(pids: &[u32]) -> TreeSnap {
        pids.iter()
            .filter_map(|&pid| ProcSnap::read(pid))
            .fold(TreeSnap::default(), |sum, p| TreeSnap {
                cpu_ticks: sum.cpu_ticks + p.cpu_ticks,
                rss_kib: sum.rss_kib + p.rss_kib,
                hwm_kib: sum.hwm_kib + p.hwm_kib,
                processes: sum.processes + 1,
            })
    }

    /// CPU used since `before`, `wall` apart, in % of one core.
    pub fn cpu_pct_since(&self, before: &TreeSnap, wall: Duration) -> f64 {
        let secs = wall.as_secs_f64();
        if secs <= 0.0 {
            return 0.0;
        }
        let ticks = self.cpu_ticks.saturating_sub(before.cpu_ticks);
        100.0 * ticks as f64 / crate::host::clock_ticks_per_sec() as f64 / secs
    }
}

/// CPU ticks (user + system) of this process itself, and of its children it has waited for
/// (`cutime + cstime`: wrk's, once a run is over), from `/proc/self/stat`.
pub fn own_and_reaped_ticks() -> Option<(u64, u64)> {
    own_and_reaped(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

fn own_and_reaped(stat: &str) -> Option<(u64, u64)> {
    // Fields 14-17 of the line (utime stime cutime cstime) are the 12th-15th after `)`.
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<u64> = after_comm
        .split_whitespace()
        .skip(11)
        .take(4)
        .map(|v| v.parse().ok())
        .collect::<Option<Vec<u64>>>()?;
    match fields[..] {
        [utime, stime, cutime, cstime] => Some((utime + stime, cutime + cstime)),
        _ => None,
    }
}

/// `Tcp: PassiveOpens` of `/proc/net/snmp`: connections accepted since boot, every listener.
pub fn passive_opens() -> Option<u64> {
    snmp_value(
        &std::fs::read_to_string("/proc/net/snmp").ok()?,
        "Tcp:",
        "PassiveOpens",
    )
}

/// A value from `/proc/net/snmp`'s pairs of lines (`Prefix: names...` then `Prefix: values...`).
fn snmp_value(text: &str, prefix: &str, name: &str) -> Option<u64> {
    let mut lines = text.lines().filter(|line| line.starts_with(prefix));
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        if let Some(at) = names.split_whitespace().position(|n| n == name) {
            return values.split_whitespace().nth(at)?.parse().ok();
        }
    }
    None
}

/// Running compilers (`cargo`, `rustc`) or other benchmarks would skew every figure.
pub fn busy_processes() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id();
    let mut seen: Vec<String> = dir
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter_map(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            let comm = comm.trim();
            matches!(
                comm,
                "cargo" | "rustc" | "wrk" | "cc1" | "ld" | "cp-bench" | "pull-bench"
            )
            .then(|| format!("{comm}[{pid}]"))
        })
        .collect();
    seen.sort();
    seen
}

/// What `openssl s_client -brief` reports for a TLS connection to `addr` made as wrk makes it
/// (wrk sends the URL's host as SNI, here the IP address, which RFC 6066 does not allow and
/// servers ignore): protocol, cipher suite, key exchange, signature, certificate.
pub fn tls_summary(addr: std::net::SocketAddr) -> String {
    let output = Command::new("timeout")
        .args(["10", "openssl", "s_client", "-brief", "-servername"])
        .arg(addr.ip().to_string())
        .arg("-connect")
        .arg(addr.to_string())
        .stdin(Stdio::null())
        .output();
    let Ok(output) = output else {
        return "unknown (openssl s_client did not run)".into();
    };
    let text = String::from_utf8_lossy(&output.stderr);
    let field = |key: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(key))
            .map(|v| v.trim().to_string())
    };
    let parts: Vec<String> = [
        field("Protocol version:"),
        field("Ciphersuite:"),
        field("Server Temp Key:").map(|k| format!("kx {k}")),
        field("Peer Temp Key:").map(|k| format!("kx {k}")),
        field("Signature type:").map(|k| format!("sig {k}")),
        field("Peer signature type:").map(|k| format!("sig {k}")),
        field("Peer certificate:").map(|k| format!("cert {k}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    if parts.is_empty() {
        format!(
            "unknown (openssl s_client said: {})",
            text.lines().next().unwrap_or("nothing")
        )
    } else {
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_parent_after_a_name_with_parentheses() {
        assert_eq!(
            parent_pid("4242 (nginx (worker)) S 4200 4242 4242 0 -1"),
            Some(4200)
        );
        assert_eq!(parent_pid("garbage"), None);
    }

    #[test]
    fn reads_own_and_children_cpu() {
        let stat = "42 (edge bench) S 1 42 42 0 -1 4194560 900 0 0 0 150 35 700 80 20 0";
        assert_eq!(own_and_reaped(stat), Some((185, 780)));
        assert_eq!(own_and_reaped("42 (x) S 1"), None);
        assert!(own_and_reaped_ticks().is_some());
    }

    #[test]
    fn reads_snmp_pairs() {
        let text = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
                    Tcp: RtoAlgorithm RtoMin ActiveOpens PassiveOpens\n\
                    Tcp: 1 200 77 1234\n";
        assert_eq!(snmp_value(text, "Tcp:", "PassiveOpens"), Some(1234));
        assert_eq!(snmp_value(text, "Tcp:", "Nope"), None);
        assert!(passive_opens().is_some());
    }

    #[test]
    fn a_dropped_process_and_its_children_are_gone() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("sh.log");
        let mut proc = Proc::spawn(
            "sh",
            Path::new("sh"),
            &["-c".into(), "sleep 60 & sleep 60 & wait".into()],
            &[],
            &log,
        )
        .expect("spawn");
        let deadline = Instant::now() + Duration::from_secs(10);
        while proc.tree().len() < 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let tree = proc.tree();
        assert_eq!(tree.len(), 3, "sh and two sleeps: {tree:?}");
        assert!(TreeSnap::read(&tree).rss_kib > 0);
        proc.check_alive().expect("alive");
        drop(proc);
        // SIGKILL is delivered asynchronously: each must be gone, or a zombie waiting for its
        // (init) parent to reap it, within a deadline.
        let deadline = Instant::now() + Duration::from_secs(10);
        for pid in tree {
            loop {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                if stat.is_empty() || stat.contains(") Z ") {
                    break;
                }
                assert!(Instant::now() < deadline, "{pid} still runs: {stat}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    #[test]
    fn strips_colours() {
        assert_eq!(
            strip_ansi("\u{1b}[2medge\u{1b}[0m listening"),
            "edge listening"
        );
    }
}

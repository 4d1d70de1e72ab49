//! One `kokoa server` child process: start, wait until it is listening, signal, restart.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::{free_ports, kokoa_bin, READY_TIMEOUT};

/// How often the log file is read while waiting for the `listening` line.
const LOG_POLL_EVERY: Duration = Duration::from_millis(50);

/// Proxy variables are dropped from children: all traffic here is loopback.
const PROXY_VARS: [&str; 6] = [
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
];

/// `--join URL --join-token T`.
#[derive(Debug, Clone)]
pub struct Join {
    pub url: String,
    pub token: String,
}

/// Everything needed to start (and restart) one replica.
#[derive(Debug, Clone)]
pub struct ReplicaSpec {
    pub id: u64,
    pub data_dir: PathBuf,
    /// The child's stderr (appended to across restarts).
    pub log_path: PathBuf,
    /// The child's stdout (the admin token is printed there once).
    pub stdout_path: PathBuf,
    pub api_port: u16,
    pub peer_port: u16,
    /// `--init` (first start only).
    pub init: bool,
    /// `--peers 1=ADDR,...` (first start only).
    pub peers: Option<String>,
    /// `--join URL --join-token T` (first start only).
    pub join: Option<Join>,
    /// Passed on every start, e.g. `--snapshot-every 50`.
    pub extra_args: Vec<String>,
    /// Environment for the child, e.g. `KOKOA_CLUSTER_SECRET`.
    pub env: Vec<(String, String)>,
}

impl ReplicaSpec {
    /// Replica `id` living in `root/node{id}` with its logs beside it, on two fresh ports.
    pub fn new(id: u64, root: &Path) -> ReplicaSpec {
        let ports = free_ports(2);
        ReplicaSpec {
            id,
            data_dir: root.join(format!("node{id}")),
            log_path: root.join(format!("node{id}.log")),
            stdout_path: root.join(format!("node{id}.stdout")),
            api_port: ports[0],
            peer_port: ports[1],
            init: false,
            peers: None,
            join: None,
            extra_args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// `127.0.0.1:PEER_PORT`, the address other replicas dial.
    pub fn peer_listen(&self) -> String {
        format!("127.0.0.1:{}", self.peer_port)
    }

    /// The command line (without the binary); `first_start` adds init / peers / join flags.
    pub fn args(&self, first_start: bool) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "server".into(),
            "--id".into(),
            self.id.to_string(),
            "--data-dir".into(),
            self.data_dir.display().to_string(),
            "--listen".into(),
            format!("127.0.0.1:{}", self.api_port),
            "--peer-listen".into(),
            self.peer_listen(),
        ];
        if first_start {
            if self.init {
                args.push("--init".into());
            }
            if let Some(peers) = &self.peers {
                args.extend(["--peers".into(), peers.clone()]);
            }
            if let Some(join) = &self.join {
                args.extend([
                    "--join".into(),
                    join.url.clone(),
                    "--join-token".into(),
                    join.token.clone(),
                ]);
            }
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }
}

/// Why a replica did not become ready.
#[derive(Debug)]
pub struct StartError {
    pub id: u64,
    pub reason: String,
    /// Set when the process exited before it was ready.
    pub status: Option<ExitStatus>,
    /// The last lines of its stderr.
    pub log_tail: String,
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "replica {} did not start: {}\n--- log tail ---\n{}",
            self.id, self.reason, self.log_tail
        )
    }
}

impl std::error::Error for StartError {}

/// A running (or stopped) `kokoa server` child.
///
/// Dropping it kills the process; when the thread is panicking it also prints its log tail.
#[derive(Debug)]
pub struct Replica {
    spec: ReplicaSpec,
    child: Option<Child>,
    api_addr: Option<SocketAddr>,
    peer_addr: Option<SocketAddr>,
    /// Length of the stderr log when the current process was started.
    log_offset: u64,
    last_exit: Option<ExitStatus>,
}

impl Replica {
    /// Spawns the process (first start: with init / peers / join flags) and returns at once;
    /// call [`Replica::wait_ready`] next.
    pub fn launch(spec: ReplicaSpec) -> Replica {
        let mut replica = Replica {
            spec,
            child: None,
            api_addr: None,
            peer_addr: None,
            log_offset: 0,
            last_exit: None,
        };
        replica.spawn(true);
        replica
    }

    /// Launches and waits until it logs its `listening` line.
    pub async fn start(spec: ReplicaSpec) -> Result<Replica, StartError> {
        let mut replica = Replica::launch(spec);
        replica.wait_ready().await?;
        Ok(replica)
    }

    fn spawn(&mut self, first_start: bool) {
        assert!(
            self.child.is_none(),
            "replica {} is already running",
            self.spec.id
        );
        let stderr = open_append(&self.spec.log_path);
        let stdout = open_append(&self.spec.stdout_path);
        self.log_offset = stderr.metadata().map(|m| m.len()).unwrap_or(0);
        let mut command = Command::new(kokoa_bin());
        command
            .args(self.spec.args(first_start))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .env("NO_COLOR", "1");
        for var in PROXY_VARS {
            command.env_remove(var);
        }
        for (key, value) in &self.spec.env {
            command.env(key, value);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", kokoa_bin().display()));
        self.child = Some(child);
        self.api_addr = None;
        self.peer_addr = None;
        self.last_exit = None;
    }

    /// Waits (up to [`READY_TIMEOUT`], reading the log every 50 ms) for the line
    /// `listening api=ADDR peer=ADDR` written by the current process.
    pub async fn wait_ready(&mut self) -> Result<(), StartError> {
        let started = Instant::now();
        loop {
            let log = self.log_since_start();
            if let Some(line) = log.lines().find(|l| l.contains("listening api=")) {
                let (api, peer) = parse_listening(line)
                    .ok_or_else(|| self.start_error(format!("unparsable line: {line}")))?;
                self.api_addr = Some(api);
                self.peer_addr = Some(peer);
                return Ok(());
            }
            if let Some(status) = self.try_reap() {
                return Err(StartError {
                    status: Some(status),
                    ..self.start_error(format!("exited with {status} before listening"))
                });
            }
            if started.elapsed() > READY_TIMEOUT {
                let on_stdout = std::fs::read_to_string(&self.spec.stdout_path)
                    .map(|out| out.contains("listening api="))
                    .unwrap_or(false);
                let hint = if on_stdout {
                    " (the line was printed on stdout; the contract says stderr)"
                } else {
                    ""
                };
                return Err(self.start_error(format!(
                    "no `listening api=… peer=…` line on stderr after {READY_TIMEOUT:?}{hint}"
                )));
            }
            tokio::time::sleep(LOG_POLL_EVERY).await;
        }
    }

    fn start_error(&self, reason: String) -> StartError {
        StartError {
            id: self.spec.id,
            reason,
            status: None,
            log_tail: self.log_tail(40),
        }
    }

    /// Restarts a stopped replica: same id, data dir and ports, no init / peers / join flags
    /// (but the same extra arguments and environment), and waits until it is listening.
    pub async fn restart(&mut self) -> Result<(), StartError> {
        self.spawn(false);
        self.wait_ready().await
    }

    /// SIGKILL, then reap.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Already exited is fine: kill() then fails, wait() still reaps.
            let _ = child.kill();
            self.last_exit = child.wait().ok();
        }
    }

    /// SIGTERM (does not wait; see [`Replica::wait_exit`]).
    pub fn sigterm(&self) {
        self.signal("TERM");
    }

    /// SIGSTOP: the process freezes, its sockets stay open.
    pub fn sigstop(&self) {
        self.signal("STOP");
    }

    /// SIGCONT after [`Replica::sigstop`].
    pub fn sigcont(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        let pid = self
            .pid()
            .unwrap_or_else(|| panic!("replica {} is not running", self.spec.id));
        let status = Command::new("kill")
            .args([format!("-{name}"), pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {pid} failed: {status}");
    }

    /// Waits up to `timeout` for the process to exit; its status, or `None` if still running.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.try_reap() {
                return Some(status);
            }
            if self.child.is_none() {
                return self.last_exit;
            }
            if started.elapsed() >= timeout {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Reaps the process if it has exited.
    fn try_reap(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        self.last_exit = Some(status);
        Some(status)
    }

    /// Whether the process is alive (it may be stopped by SIGSTOP).
    pub fn is_running(&mut self) -> bool {
        self.try_reap();
        self.child.is_some()
    }

    /// Whether a process was started and not yet reaped (does not check for a silent exit).
    pub fn is_spawned(&self) -> bool {
        self.child.is_some()
    }

    /// The exit status of the last process that was reaped.
    pub fn last_exit(&self) -> Option<ExitStatus> {
        self.last_exit
    }

    pub fn id(&self) -> u64 {
        self.spec.id
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn spec(&self) -> &ReplicaSpec {
        &self.spec
    }

    /// The API address from the `listening` line (falls back to the requested one).
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], self.spec.api_port)))
    }

    /// The peer address from the `listening` line (falls back to the requested one).
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], self.spec.peer_port)))
    }

    /// `http://IP:PORT`.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.api_addr())
    }

    pub fn data_dir(&self) -> &Path {
        &self.spec.data_dir
    }

    pub fn log_path(&self) -> &Path {
        &self.spec.log_path
    }

    /// The whole stderr log, across restarts, with ANSI colour codes removed.
    pub fn log(&self) -> String {
        strip_ansi(&read_from(&self.spec.log_path, 0))
    }

    /// The stderr written since the current (or last) process was started.
    pub fn log_since_start(&self) -> String {
        strip_ansi(&read_from(&self.spec.log_path, self.log_offset))
    }

    /// Everything the replica printed on stdout, across restarts.
    pub fn stdout(&self) -> String {
        strip_ansi(&read_from(&self.spec.stdout_path, 0))
    }

    /// The last `lines` lines of the stderr log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Prints the log tail on stderr (shown by the test runner for a failed test).
    pub fn dump_logs(&self) {
        eprintln!(
            "===== replica {} ({}) log tail, full log: {} =====\n{}\n===== end replica {} =====",
            self.spec.id,
            self.api_addr(),
            self.spec.log_path.display(),
            self.log_tail(60),
            self.spec.id
        );
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn open_append(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

fn read_from(path: &Path, offset: u64) -> String {
    let mut out = Vec::new();
    if let Ok(mut file) = File::open(path) {
        if file.seek(SeekFrom::Start(offset)).is_ok() {
            let _ = file.read_to_end(&mut out);
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `... listening api=ADDR peer=ADDR ...`.
fn parse_listening(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let rest = &line[line.find("listening api=")? + "listening api=".len()..];
    let (api, rest) = rest.split_once(' ')?;
    let peer = rest.strip_prefix("peer=")?;
    let peer = peer.split_whitespace().next()?;
    Some((api.parse().ok()?, peer.parse().ok()?))
}

/// Removes ANSI escape sequences (`ESC [ ... letter`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listening_line() {
        let line = "2024-01-01T00:00:00Z  INFO kokoa: listening api=127.0.0.1:4000 peer=127.0.0.1:4001 dns=127.0.0.1:53";
        let (api, peer) = parse_listening(line).expect("parse");
        assert_eq!(api.port(), 4000);
        assert_eq!(peer.port(), 4001);
        assert!(parse_listening("listening api=x peer=y").is_none());
    }

    #[test]
    fn strips_colours() {
        let coloured = "\u{1b}[2mlistening\u{1b}[0m \u{1b}[3mapi\u{1b}[0m=1";
        assert_eq!(strip_ansi(coloured), "listening api=1");
    }
}

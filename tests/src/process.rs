//! One `kokoa` child process of any role: spawned with its stderr and stdout appended to log
//! files in the test's directory, waited on until it logs its ready line, signalled, reaped,
//! restarted; its log tail is printed when the test panics.
//!
//! [`crate::Replica`], [`crate::Edge`] and [`crate::Agent`] are each a [`KokoaProcess`] plus
//! what their role adds (the command line, what the ready line says); they dereference to it,
//! so `replica.kill9()`, `edge.sigterm()` and `agent.kill9()` are the same code.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::kokoa_bin;

/// How often the log file is read while waiting for the ready line.
const LOG_POLL_EVERY: Duration = Duration::from_millis(50);

/// Proxy variables, dropped from every child process: all traffic here is loopback.
pub const PROXY_VARS: [&str; 6] = [
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
];

/// The admin CLI's settings, also dropped from `kokoa` children (a child gets only what its
/// spec gives it).
const CLI_VARS: [&str; 2] = ["KOKOA_SERVER", "KOKOA_TOKEN"];

/// Why a process did not become ready.
#[derive(Debug)]
pub struct StartError {
    /// Which process: `replica 2`, `edge edge-a`.
    pub process: String,
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
            "{} did not start: {}\n--- log tail ---\n{}",
            self.process, self.reason, self.log_tail
        )
    }
}

impl std::error::Error for StartError {}

/// A `kokoa` child (running, or stopped and restartable).
///
/// Dropping it kills the process; when the thread is panicking it first prints its log tail.
#[derive(Debug)]
pub struct KokoaProcess {
    /// `replica 2`, `edge edge-a`: names it in messages.
    label: String,
    /// stderr, appended to across restarts.
    log_path: PathBuf,
    /// stdout, appended to across restarts.
    stdout_path: PathBuf,
    child: Option<Child>,
    /// Length of the stderr log when the current process was started.
    log_offset: u64,
    last_exit: Option<ExitStatus>,
}

impl KokoaProcess {
    /// A process named `label` that will log to `log_path` (stderr) and `stdout_path`; nothing
    /// runs until [`KokoaProcess::spawn`].
    pub fn new(label: impl Into<String>, log_path: PathBuf, stdout_path: PathBuf) -> Self {
        KokoaProcess {
            label: label.into(),
            log_path,
            stdout_path,
            child: None,
            log_offset: 0,
            last_exit: None,
        }
    }

    /// Starts `kokoa ARGS` with `env` (on top of this process's environment, less proxies and
    /// the CLI's `KOKOA_SERVER` / `KOKOA_TOKEN`), and returns at once.
    ///
    /// # Panics
    /// If it is already running, or the binary cannot be started.
    pub fn spawn(&mut self, args: &[String], env: &[(String, String)]) {
        assert!(self.child.is_none(), "{} is already running", self.label);
        let stderr = open_append(&self.log_path);
        let stdout = open_append(&self.stdout_path);
        self.log_offset = stderr.metadata().map(|m| m.len()).unwrap_or(0);
        let mut command = Command::new(kokoa_bin());
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .env("NO_COLOR", "1");
        for var in PROXY_VARS.iter().chain(&CLI_VARS) {
            command.env_remove(var);
        }
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", kokoa_bin().display()));
        self.child = Some(child);
        self.last_exit = None;
    }

    /// Waits up to `timeout` (reading the log every 50 ms) for a stderr line of the current
    /// process containing `marker`, and returns that line.
    ///
    /// Fails when the process exits first, or when the deadline passes (saying so when the
    /// line went to stdout instead).
    pub async fn wait_for_line(
        &mut self,
        marker: &str,
        timeout: Duration,
    ) -> Result<String, StartError> {
        let started = Instant::now();
        loop {
            let log = self.log_since_start();
            if let Some(line) = log.lines().find(|l| l.contains(marker)) {
                return Ok(line.to_string());
            }
            if let Some(status) = self.try_reap() {
                return Err(StartError {
                    status: Some(status),
                    ..self.start_error(format!("exited with {status} before logging `{marker}`"))
                });
            }
            if started.elapsed() > timeout {
                let on_stdout = std::fs::read_to_string(&self.stdout_path)
                    .map(|out| out.contains(marker))
                    .unwrap_or(false);
                let hint = if on_stdout {
                    " (the line was printed on stdout; the contract says stderr)"
                } else {
                    ""
                };
                return Err(self.start_error(format!(
                    "no `{marker}` line on stderr after {timeout:?}{hint}"
                )));
            }
            tokio::time::sleep(LOG_POLL_EVERY).await;
        }
    }

    /// A [`StartError`] for this process with `reason` and its log tail.
    pub fn start_error(&self, reason: String) -> StartError {
        StartError {
            process: self.label.clone(),
            reason,
            status: None,
            log_tail: self.log_tail(40),
        }
    }

    /// SIGKILL, then reap.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Already exited is fine: kill() then fails, wait() still reaps.
            let _ = child.kill();
            self.last_exit = child.wait().ok();
        }
    }

    /// SIGTERM (does not wait; see [`KokoaProcess::wait_exit`]).
    pub fn sigterm(&self) {
        self.signal("TERM");
    }

    /// SIGSTOP: the process freezes, its sockets stay open.
    pub fn sigstop(&self) {
        self.signal("STOP");
    }

    /// SIGCONT after [`KokoaProcess::sigstop`].
    pub fn sigcont(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        let pid = self
            .pid()
            .unwrap_or_else(|| panic!("{} is not running", self.label));
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

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `replica 2`, `edge edge-a`.
    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The whole stderr log, across restarts, with ANSI colour codes removed.
    pub fn log(&self) -> String {
        strip_ansi(&read_from(&self.log_path, 0))
    }

    /// The stderr written since the current (or last) process was started.
    pub fn log_since_start(&self) -> String {
        strip_ansi(&read_from(&self.log_path, self.log_offset))
    }

    /// Everything the process printed on stdout, across restarts.
    pub fn stdout(&self) -> String {
        strip_ansi(&read_from(&self.stdout_path, 0))
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
            "===== {} log tail, full log: {} =====\n{}\n===== end {} =====",
            self.label,
            self.log_path.display(),
            self.log_tail(60),
            self.label
        );
    }
}

impl Drop for KokoaProcess {
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

/// The value of `key=VALUE` in a log line (up to the next space).
pub(crate) fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
}

/// Removes ANSI escape sequences (`ESC [ ... letter`).
pub fn strip_ansi(text: &str) -> String {
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

/// `env` plus `KOKOA_TOKEN=token` when there is one: how edges and agents get their bootstrap
/// token (it is needed on the first start only).
pub fn with_token(env: &[(String, String)], token: Option<&str>) -> Vec<(String, String)> {
    let mut env = env.to_vec();
    if let Some(token) = token {
        env.push(("KOKOA_TOKEN".into(), token.to_string()));
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_colours() {
        let coloured = "\u{1b}[2mlistening\u{1b}[0m \u{1b}[3mapi\u{1b}[0m=1";
        assert_eq!(strip_ansi(coloured), "listening api=1");
    }

    #[test]
    fn finds_fields() {
        let line = "INFO kokoa: edge listening http=127.0.0.2:80 https=127.0.0.2:443 id=e1";
        assert_eq!(field(line, "http"), Some("127.0.0.2:80"));
        assert_eq!(field(line, "https"), Some("127.0.0.2:443"));
        assert_eq!(field(line, "id"), Some("e1"));
        assert_eq!(field(line, "peer"), None);
    }
}

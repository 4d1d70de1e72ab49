//! The etcd side: a cluster of real `etcd` 3.4 processes (Debian's `etcd-server`) on loopback,
//! started with the flags of `shared/peers/etcd.sh`, on free ports, data under the system temp
//! dir (fsync on, etcd's default).
//!
//! Cluster state is read over the v3 JSON gateway only (`/health`, `/v3/maintenance/status`,
//! `/v3/cluster/member/list`), so no `etcdctl` is needed. A killed member is restarted with its
//! original command line; its data dir already holds the membership.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use kokoa_tests::{free_ports, wait_until_ok, CONVERGE_TIMEOUT, PROXY_VARS};
use reqwest::header::CONTENT_TYPE;
use serde_json::Value;
use tempfile::TempDir;

use crate::note;
use crate::system::{Replicated, System};

/// The etcd binary (found in `PATH`).
const ETCD: &str = "etcd";
/// Timeout of one status / health request.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Returns `etcd --version`'s version, installing Debian's `etcd-server` and `etcd-client`
/// with `apt-get` first when `etcd` is missing (as `shared/peers/lib.sh` `ensure_pkgs` does).
pub fn ensure_installed() -> anyhow::Result<String> {
    if let Ok(version) = etcd_version() {
        return Ok(version);
    }
    note!("etcd is missing: apt-get install -y etcd-server etcd-client");
    let have_lists = std::fs::read_dir("/var/lib/apt/lists")
        .map(|dir| {
            dir.flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with("_Packages"))
        })
        .unwrap_or(false);
    if !have_lists {
        apt_get(&["update", "-qq"])?;
    }
    apt_get(&[
        "install",
        "-y",
        "-qq",
        "--no-install-recommends",
        "etcd-server",
        "etcd-client",
    ])?;
    etcd_version()
}

fn apt_get(args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .status()
        .context("run apt-get")?;
    anyhow::ensure!(
        status.success(),
        "apt-get {} failed: {status}",
        args.join(" ")
    );
    Ok(())
}

fn etcd_version() -> anyhow::Result<String> {
    let output = Command::new(ETCD)
        .arg("--version")
        .output()
        .context("run etcd --version")?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .find_map(|line| line.strip_prefix("etcd Version:"))
        .map(|v| v.trim().to_string())
        .with_context(|| format!("no version in `etcd --version`: {text}"))
}

/// One etcd member: its ports, data dir, log, and process while it runs.
#[derive(Debug)]
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
}

impl Member {
    fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    /// The command line of `shared/peers/etcd.sh` `start_member`.
    fn args(&self, initial_cluster: &str) -> Vec<String> {
        [
            "--name",
            &self.name,
            "--data-dir",
            &self.data_dir.display().to_string(),
            "--listen-client-urls",
            &self.client_url(),
            "--advertise-client-urls",
            &self.client_url(),
            "--listen-peer-urls",
            &self.peer_url(),
            "--initial-advertise-peer-urls",
            &self.peer_url(),
            "--initial-cluster",
            initial_cluster,
            "--initial-cluster-token",
            "peer-bench",
            "--initial-cluster-state",
            "new",
            "--logger=zap",
            "--log-outputs=stderr",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    fn spawn(&mut self, initial_cluster: &str) -> anyhow::Result<()> {
        anyhow::ensure!(self.child.is_none(), "{} is already running", self.name);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("open {}", self.log_path.display()))?;
        let mut command = Command::new(ETCD);
        command
            .args(self.args(initial_cluster))
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("clone log handle")?)
            .stderr(log);
        for var in PROXY_VARS {
            command.env_remove(var);
        }
        self.child = Some(command.spawn().context("spawn etcd")?);
        Ok(())
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The last `lines` lines of its log.
    fn log_tail(&self, lines: usize) -> String {
        let mut text = Vec::new();
        if let Ok(mut file) = File::open(&self.log_path) {
            let len = file.metadata().map(|m| m.len()).unwrap_or(0);
            let _ = file.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
            let _ = file.read_to_end(&mut text);
        }
        let text = String::from_utf8_lossy(&text);
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// What `/v3/maintenance/status` says about one member.
#[derive(Debug, Clone, Copy)]
struct Status {
    member_id: u64,
    leader: u64,
    raft_index: u64,
    applied_index: u64,
}

/// etcd members `0..n` (named `m1..mN`). Dropping it kills every member; when the thread is
/// panicking it prints their log tails and keeps the directory (its path is printed).
#[derive(Debug)]
pub struct EtcdCluster {
    members: Vec<Member>,
    initial_cluster: String,
    http: reqwest::Client,
    root: TempDir,
}

impl EtcdCluster {
    /// Starts `n` members and waits until they agree on a leader with `n` voters.
    pub async fn start(n: usize, http: &reqwest::Client) -> anyhow::Result<EtcdCluster> {
        let root = tempfile::Builder::new()
            .prefix("cp-bench-etcd-")
            .tempdir()
            .context("create etcd temp dir")?;
        let ports = free_ports(2 * n);
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{}", i + 1),
                client_port: ports[2 * i],
                peer_port: ports[2 * i + 1],
                data_dir: root.path().join(format!("m{}", i + 1)),
                log_path: root.path().join(format!("m{}.log", i + 1)),
                child: None,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = EtcdCluster {
            members,
            initial_cluster,
            http: http.clone(),
            root,
        };
        for i in 0..n {
            let initial_cluster = cluster.initial_cluster.clone();
            cluster.members[i].spawn(&initial_cluster)?;
        }
        cluster.leader().await?;
        Ok(cluster)
    }

    /// The directory holding every member's data dir and log.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    async fn post(&self, i: usize, path: &str) -> Result<Value, String> {
        let url = format!("{}{path}", self.members[i].client_url());
        let response = self
            .http
            .post(&url)
            .timeout(PROBE_TIMEOUT)
            .header(CONTENT_TYPE, "application/json")
            .body("{}")
            .send()
            .await
            .map_err(|e| format!("{}: POST {path}: {e}", self.members[i].name))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| format!("{}: POST {path}: {e}", self.members[i].name))?;
        if !status.is_success() {
            return Err(format!(
                "{}: POST {path}: {status} {text}",
                self.members[i].name
            ));
        }
        serde_json::from_str(&text)
            .map_err(|e| format!("{}: POST {path}: {e}: {text}", self.members[i].name))
    }

    async fn healthy(&self, i: usize) -> Result<(), String> {
        let name = &self.members[i].name;
        let url = format!("{}/health", self.members[i].client_url());
        let response = self
            .http
            .get(&url)
            .timeout(PROBE_TIMEOUT)
            .send()
            .await
            .map_err(|e| format!("{name}: GET /health: {e}"))?;
        let json: Value = response
            .json()
            .await
            .map_err(|e| format!("{name}: GET /health: {e}"))?;
        if json.get("health").and_then(Value::as_str) == Some("true") {
            Ok(())
        } else {
            Err(format!("{name}: GET /health: {json}"))
        }
    }

    async fn status(&self, i: usize) -> Result<Status, String> {
        let json = self.post(i, "/v3/maintenance/status").await?;
        let field = |pointer: &str| {
            json.pointer(pointer)
                .and_then(as_u64)
                .ok_or_else(|| format!("{}: no {pointer} in {json}", self.members[i].name))
        };
        Ok(Status {
            member_id: field("/header/member_id")?,
            leader: field("/leader")?,
            raft_index: field("/raftIndex")?,
            applied_index: field("/raftAppliedIndex")?,
        })
    }

    /// Every running member healthy and naming the same running leader, which lists all
    /// members as voters; with `caught_up`, that member has applied the leader's last index.
    async fn agreed(&self, caught_up: Option<usize>) -> Result<usize, String> {
        let running: Vec<usize> = (0..self.members.len())
            .filter(|&i| self.members[i].child.is_some())
            .collect();
        let mut statuses = Vec::new();
        for &i in &running {
            self.healthy(i).await?;
            statuses.push((i, self.status(i).await?));
        }
        let (_, first) = statuses.first().ok_or("no running member")?;
        let leader_id = first.leader;
        if leader_id == 0 {
            return Err(format!("{} knows no leader", self.members[running[0]].name));
        }
        if let Some((i, s)) = statuses.iter().find(|(_, s)| s.leader != leader_id) {
            return Err(format!(
                "{} names leader {:x}, another names {leader_id:x}",
                self.members[*i].name, s.leader
            ));
        }
        let &(leader, leader_status) = statuses
            .iter()
            .find(|(_, s)| s.member_id == leader_id)
            .ok_or_else(|| format!("leader {leader_id:x} is not a running member"))?;
        let members = self.post(leader, "/v3/cluster/member/list").await?;
        let voters = members
            .get("members")
            .and_then(Value::as_array)
            .map_or(0, |list| {
                list.iter()
                    .filter(|m| m.get("isLearner").and_then(Value::as_bool) != Some(true))
                    .count()
            });
        if voters != self.members.len() {
            return Err(format!("the leader lists {voters} voters: {members}"));
        }
        if let Some(i) = caught_up {
            // Read after the leader's status: /health itself goes through raft, so the leader's
            // index moves while we poll.
            let applied = self.status(i).await?.applied_index;
            if applied < leader_status.raft_index {
                return Err(format!(
                    "{} applied {applied}, the leader is at {}",
                    self.members[i].name, leader_status.raft_index
                ));
            }
        }
        Ok(leader)
    }

    async fn wait_agreed(&self, what: &str, caught_up: Option<usize>) -> usize {
        wait_until_ok(what, CONVERGE_TIMEOUT, || self.agreed(caught_up)).await
    }
}

impl Replicated for EtcdCluster {
    fn system(&self) -> System {
        System::Etcd
    }

    fn size(&self) -> usize {
        self.members.len()
    }

    fn api_url(&self, i: usize) -> String {
        self.members[i].client_url()
    }

    fn describe(&self, i: usize) -> String {
        let member = &self.members[i];
        format!("member {} (127.0.0.1:{})", member.name, member.client_port)
    }

    async fn leader(&self) -> anyhow::Result<usize> {
        Ok(self
            .wait_agreed("etcd: a healthy leader with every member a voter", None)
            .await)
    }

    fn kill9(&mut self, i: usize) {
        self.members[i].kill9();
    }

    async fn recover(&mut self, i: usize) -> anyhow::Result<()> {
        let initial_cluster = self.initial_cluster.clone();
        self.members[i].spawn(&initial_cluster)?;
        let what = format!("etcd: {} back, healthy and caught up", self.members[i].name);
        self.wait_agreed(&what, Some(i)).await;
        Ok(())
    }

    fn dump_logs(&self) {
        for member in &self.members {
            eprintln!(
                "===== etcd {} log tail, full log: {} =====\n{}\n===== end etcd {} =====",
                member.name,
                member.log_path.display(),
                member.log_tail(40),
                member.name
            );
        }
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
            self.root.disable_cleanup(true);
            eprintln!("kept the etcd directory: {}", self.root.path().display());
        }
        for member in &mut self.members {
            member.kill9();
        }
    }
}

/// The JSON gateway writes uint64 fields as strings.
fn as_u64(value: &Value) -> Option<u64> {
    value
        .as_u64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_gateway_numbers_as_strings_or_numbers() {
        assert_eq!(
            as_u64(&Value::from("443629905751424238")),
            Some(443629905751424238)
        );
        assert_eq!(as_u64(&Value::from(7)), Some(7));
        assert_eq!(as_u64(&Value::from("x")), None);
    }

    #[test]
    fn members_start_like_the_peer_script() {
        let member = Member {
            name: "m1".into(),
            client_port: 2379,
            peer_port: 2380,
            data_dir: PathBuf::from("/tmp/x/m1"),
            log_path: PathBuf::from("/tmp/x/m1.log"),
            child: None,
        };
        let args = member.args("m1=http://127.0.0.1:2380").join(" ");
        assert!(args.contains("--listen-client-urls http://127.0.0.1:2379"));
        assert!(args.contains("--initial-advertise-peer-urls http://127.0.0.1:2380"));
        assert!(args.contains("--initial-cluster-state new --logger=zap --log-outputs=stderr"));
    }
}

//! Injecting one planned fault into the deployment, holding it, healing it, and recording what
//! happened (target, times, failover and DNS-removal figures). The workload's targets are taken
//! out before a process is broken and put back once it serves again.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::deployment::{replica_ip, Deployment, DIRECT_HOST};
use crate::schedule::{FaultKind, Planned};
use crate::workload::{Clock, WorkloadTargets};
use kokoa_tests::{try_wait_until_ok, Tmpfs};

/// How long a replica may take to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long an edge's IP may take to leave (or come back to) every replica's DNS.
const DNS_TIMEOUT: Duration = Duration::from_secs(60);
/// How long membership changes may take.
const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(90);
/// Room left on a "full" disk: less than one redb page write needs.
const DISK_FULL_ROOM: u64 = 64 * 1024;

/// What one fault did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FaultRecord {
    pub kind: FaultKind,
    /// What it hit (`replica 2 (leader)`, `edge-1`, ...).
    pub target: String,
    pub start_us: u64,
    /// When it was healed (the process restarted, the partition lifted).
    pub healed_us: u64,
    /// When the deployment served normally again (set by the runner).
    pub settled_us: u64,
    /// kill -9 of the leader → first acknowledged write (filled in by the runner).
    pub failover_ms: Option<u64>,
    /// An edge killed → its IP gone from every replica's DNS.
    pub dns_removal_ms: Option<u64>,
    /// Something went wrong injecting or healing it.
    pub error: Option<String>,
    /// HTTP requests through the edges that failed during it (set by the runner).
    #[serde(default)]
    pub http_failed: u64,
}

impl FaultRecord {
    /// Whether an operation from `start_us` to `end_us` ran while this fault was on (from its
    /// start until the deployment settled).
    pub fn overlaps(&self, start_us: u64, end_us: u64) -> bool {
        start_us <= self.settled_us && end_us >= self.start_us
    }
}

/// Injects faults into a deployment.
#[derive(Debug)]
pub struct Injector<'a> {
    pub dep: &'a mut Deployment,
    pub targets: &'a WorkloadTargets,
    pub clock: Clock,
    pub rng: StdRng,
}

impl Injector<'_> {
    /// Injects `planned`, holds it, heals it.
    pub async fn inject(&mut self, planned: &Planned) -> FaultRecord {
        let start_us = self.clock.now_us();
        let mut record = FaultRecord {
            kind: planned.kind,
            target: String::new(),
            start_us,
            healed_us: start_us,
            settled_us: start_us,
            failover_ms: None,
            dns_removal_ms: None,
            error: None,
            http_failed: 0,
        };
        let result = match planned.kind {
            FaultKind::KillLeader => self.kill_replica(true, planned, &mut record).await,
            FaultKind::KillFollower => self.kill_replica(false, planned, &mut record).await,
            FaultKind::PauseLeader => self.pause_leader(planned, &mut record).await,
            FaultKind::IsolateLeader | FaultKind::SplitAll | FaultKind::AsymmetricLeader => {
                self.partition(planned, &mut record).await
            }
            FaultKind::RestartReplica => self.restart_replica(&mut record).await,
            FaultKind::ControlPlaneDown => self.control_plane_down(planned, &mut record).await,
            FaultKind::WipeFollower => self.wipe_follower(&mut record).await,
            FaultKind::DiskFullFollower => self.disk_full(planned, &mut record).await,
            FaultKind::KillEdge => self.kill_edge(planned, &mut record).await,
            FaultKind::KillAgent => self.kill_agent(planned, &mut record).await,
        };
        record.healed_us = self.clock.now_us();
        if let Err(e) = result {
            record.error = Some(e);
        }
        record
    }

    /// The replica indices: (leader, followers).
    async fn roles(&self) -> Result<(usize, Vec<usize>), String> {
        let leader = self.dep.leader().await?;
        let followers = self
            .dep
            .cluster
            .running()
            .into_iter()
            .filter(|&i| i != leader)
            .collect();
        Ok((leader, followers))
    }

    fn pick(&mut self, from: &[usize]) -> Result<usize, String> {
        from.choose(&mut self.rng)
            .copied()
            .ok_or_else(|| "no replica to pick".to_string())
    }

    fn label(&self, i: usize, role: &str) -> String {
        format!("replica {} ({role})", self.dep.cluster.replica(i).id())
    }

    /// Takes replica `i` out of the DNS targets.
    fn take_out(&self, i: usize) {
        self.targets.dns.remove(self.dep.cluster.replica(i).id());
    }

    /// Puts replica `i` back into the DNS targets at its (maybe new) DNS address.
    fn put_back(&self, i: usize) {
        let replica = self.dep.cluster.replica(i);
        if let Some(addr) = replica.dns_addr() {
            self.targets.dns.insert(replica.id(), addr);
        }
    }

    async fn restart(&mut self, i: usize) -> Result<(), String> {
        self.dep
            .cluster
            .replica_mut(i)
            .restart()
            .await
            .map_err(|e| e.to_string())?;
        self.put_back(i);
        Ok(())
    }

    async fn kill_replica(
        &mut self,
        leader: bool,
        planned: &Planned,
        record: &mut FaultRecord,
    ) -> Result<(), String> {
        let (lead, followers) = self.roles().await?;
        let i = if leader { lead } else { self.pick(&followers)? };
        record.target = self.label(i, if leader { "leader" } else { "follower" });
        self.take_out(i);
        record.start_us = self.clock.now_us();
        self.dep.cluster.replica_mut(i).kill9();
        tokio::time::sleep(planned.hold()).await;
        self.restart(i).await
    }

    async fn pause_leader(
        &mut self,
        planned: &Planned,
        record: &mut FaultRecord,
    ) -> Result<(), String> {
        let (i, _) = self.roles().await?;
        record.target = self.label(i, "leader");
        self.take_out(i);
        record.start_us = self.clock.now_us();
        self.dep.cluster.replica(i).sigstop();
        tokio::time::sleep(planned.hold()).await;
        self.dep.cluster.replica(i).sigcont();
        self.put_back(i);
        Ok(())
    }

    async fn partition(
        &mut self,
        planned: &Planned,
        record: &mut FaultRecord,
    ) -> Result<(), String> {
        let (lead, followers) = self.roles().await?;
        let ip = |i: usize| replica_ip(self.dep.cluster.replica(i).id());
        let leader_ip = ip(lead);
        let follower_ips: Vec<IpAddr> = followers.iter().map(|&f| ip(f)).collect();
        let parts = &mut self.dep.partitions;
        record.start_us = self.clock.now_us();
        let cut = match planned.kind {
            FaultKind::IsolateLeader => {
                record.target = format!(
                    "replica {} (leader) alone",
                    self.dep.cluster.replica(lead).id()
                );
                parts.isolate(leader_ip, &follower_ips)
            }
            FaultKind::SplitAll => {
                record.target = "every replica alone".into();
                let mut all = follower_ips.clone();
                all.push(leader_ip);
                all.iter().try_for_each(|&a| {
                    parts.isolate(
                        a,
                        &all.iter().copied().filter(|&b| b != a).collect::<Vec<_>>(),
                    )
                })
            }
            _ => {
                record.target = format!(
                    "replica {} (leader) cannot open connections to the followers",
                    self.dep.cluster.replica(lead).id()
                );
                follower_ips
                    .iter()
                    .try_for_each(|&f| parts.cut_calls(leader_ip, f))
            }
        };
        let cut = cut.map_err(|e| e.to_string());
        if cut.is_ok() {
            tokio::time::sleep(planned.hold()).await;
        }
        let healed = self.dep.partitions.heal().map_err(|e| e.to_string());
        cut.and(healed)
    }

    async fn restart_replica(&mut self, record: &mut FaultRecord) -> Result<(), String> {
        let running = self.dep.cluster.running();
        let i = self.pick(&running)?;
        record.target = self.label(i, "SIGTERM");
        self.take_out(i);
        record.start_us = self.clock.now_us();
        let replica = self.dep.cluster.replica_mut(i);
        replica.sigterm();
        if replica.wait_exit(STOP_TIMEOUT).await.is_none() {
            replica.kill9();
            return Err(format!(
                "it did not stop within {STOP_TIMEOUT:?} of SIGTERM"
            ));
        }
        self.restart(i).await
    }

    async fn control_plane_down(
        &mut self,
        planned: &Planned,
        record: &mut FaultRecord,
    ) -> Result<(), String> {
        let running = self.dep.cluster.running();
        record.target = format!("{} replicas", running.len());
        for &i in &running {
            self.take_out(i);
        }
        record.start_us = self.clock.now_us();
        for &i in &running {
            self.dep.cluster.replica_mut(i).kill9();
        }
        tokio::time::sleep(planned.hold()).await;
        for &i in &running {
            self.dep.cluster.replica_mut(i).launch_again();
        }
        for &i in &running {
            self.dep
                .cluster
                .replica_mut(i)
                .wait_ready()
                .await
                .map_err(|e| e.to_string())?;
            self.put_back(i);
        }
        Ok(())
    }

    /// kill -9 a follower, wipe its data dir, remove it from the membership and add a new
    /// replica (next id, empty data dir) through the leader.
    async fn wipe_follower(&mut self, record: &mut FaultRecord) -> Result<(), String> {
        let (lead, followers) = self.roles().await?;
        let i = self.pick(&followers)?;
        let victim = self.dep.cluster.replica(i).id();
        let new_id = (0..self.dep.cluster.len())
            .map(|r| self.dep.cluster.replica(r).id())
            .max()
            .unwrap_or(victim)
            + 1;
        record.target = format!("replica {victim} (follower) wiped, re-added as {new_id}");
        self.take_out(i);
        record.start_us = self.clock.now_us();
        self.dep.cluster.replica_mut(i).kill9();
        let data_dir = self.dep.cluster.replica(i).data_dir().to_path_buf();
        wipe(&data_dir).map_err(|e| format!("wiping {}: {e}", data_dir.display()))?;
        let leader = self.dep.cluster.client(lead);
        try_wait_until_ok("removing the wiped replica", MEMBERSHIP_TIMEOUT, || async {
            let r = leader
                .delete(&format!("/api/v1/cluster/nodes/{victim}"))
                .await
                .map_err(|e| e.to_string())?;
            match r.status.as_u16() {
                200..=299 | 404 => Ok(()),
                _ => Err(format!("{} {}", r.status, r.json)),
            }
        })
        .await?;
        let token = try_wait_until_ok("a server token", MEMBERSHIP_TIMEOUT, || async {
            let r = leader
                .post_json("/api/v1/tokens", &json!({"role": "server"}))
                .await
                .map_err(|e| e.to_string())?;
            r.json["token"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("{} {}", r.status, r.json))
        })
        .await?;
        let url = self.dep.cluster.replica(lead).api_url();
        let joined = self
            .dep
            .cluster
            .join_replica_on(new_id, replica_ip(new_id), &url, &token)
            .await
            .map_err(|e| e.to_string())?;
        self.dep.removed.push(victim);
        self.targets.api.set(self.dep.member_urls());
        self.dep.wait_voters(3, MEMBERSHIP_TIMEOUT).await?;
        // Asked for DNS once it is a voter, as resolvers would be: the zone's NS records name
        // the members, and a member has caught up (a learner is promoted once it has).
        self.put_back(joined);
        Ok(())
    }

    /// A follower's data dir moved onto a tmpfs with no room left; after the hold, room again
    /// (it may have stopped: then it is started again).
    async fn disk_full(
        &mut self,
        planned: &Planned,
        record: &mut FaultRecord,
    ) -> Result<(), String> {
        let (_, followers) = self.roles().await?;
        let i = self.pick(&followers)?;
        record.target = self.label(i, "follower");
        self.take_out(i);
        record.start_us = self.clock.now_us();
        self.dep.cluster.replica_mut(i).kill9();
        let data_dir = self.dep.cluster.replica(i).data_dir().to_path_buf();
        let filler = self.dep.mounts.move_onto_tmpfs(&data_dir)?;
        fill(&filler, &data_dir)?;
        // It may not even start with a full disk: that is one of the outcomes being tested.
        let started = self.dep.cluster.replica_mut(i).restart().await;
        tokio::time::sleep(planned.hold()).await;
        // What the full disk did to it, for the report.
        let stopped = started.is_err() || !self.dep.cluster.replica_mut(i).is_running();
        record.target.push_str(if stopped {
            ", stopped on the full disk"
        } else {
            ", kept running on the full disk"
        });
        std::fs::remove_file(&filler).map_err(|e| format!("removing the filler: {e}"))?;
        self.dep.mounts.grow(&data_dir)?;
        let replica = self.dep.cluster.replica_mut(i);
        if stopped || !replica.is_running() {
            replica.kill9();
            self.restart(i).await?;
        } else {
            self.put_back(i);
        }
        Ok(())
    }

    async fn kill_edge(
        &mut self,
        planned: &Planned,
        record: &mut FaultRecord,
    ) -> Result<(), String> {
        let indices: Vec<usize> = (0..self.dep.edges.len()).collect();
        let e = self.pick(&indices)?;
        let edge_ip = self.dep.edges[e].ip();
        record.target = self.dep.edges[e].name().to_string();
        self.targets.edges.remove(e as u64 + 1);
        record.start_us = self.clock.now_us();
        self.dep.edges[e].kill9();
        // Its IP must leave every replica's DNS.
        let left = try_wait_until_ok("the killed edge's IP to leave DNS", DNS_TIMEOUT, || async {
            for (id, addr) in self.dep.dns_addrs() {
                let ips = crate::dns::query_a(addr, DIRECT_HOST).await?;
                if ips.contains(&edge_ip) {
                    return Err(format!("replica {id} still answers {ips:?}"));
                }
            }
            Ok(())
        })
        .await;
        record.dns_removal_ms = left
            .is_ok()
            .then(|| (self.clock.now_us() - record.start_us) / 1000);
        let held = Duration::from_micros(self.clock.now_us() - record.start_us);
        tokio::time::sleep(planned.hold().saturating_sub(held)).await;
        let edge = &mut self.dep.edges[e];
        edge.restart().await.map_err(|e| e.to_string())?;
        self.targets.edges.insert(e as u64 + 1, edge.http_addr());
        left.map(|_| ())
    }

    async fn kill_agent(
        &mut self,
        planned: &Planned,
        record: &mut FaultRecord,
    ) -> Result<(), String> {
        let indices: Vec<usize> = (0..self.dep.agents.len()).collect();
        let a = self.pick(&indices)?;
        record.target = self.dep.agents[a].name().to_string();
        record.start_us = self.clock.now_us();
        self.dep.agents[a].kill9();
        tokio::time::sleep(planned.hold()).await;
        self.dep.agents[a]
            .restart()
            .await
            .map_err(|e| e.to_string())
    }
}

/// Fills the tmpfs at `dir` with `filler` until [`DISK_FULL_ROOM`] bytes are left.
fn fill(filler: &Path, dir: &Path) -> Result<(), String> {
    let free = free_bytes(dir)?;
    let size = free.saturating_sub(DISK_FULL_ROOM);
    let status = Command::new("fallocate")
        .args(["-l", &size.to_string()])
        .arg(filler)
        .status()
        .map_err(|e| format!("fallocate: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("fallocate -l {size} {} failed", filler.display()))
    }
}

/// Free bytes of the filesystem holding `dir` (`df -B1 --output=avail`).
fn free_bytes(dir: &Path) -> Result<u64, String> {
    let out = Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(dir)
        .output()
        .map_err(|e| format!("df: {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| format!("cannot read df's answer for {}", dir.display()))
}

/// The tmpfs mounts a run made; unmounted when dropped.
#[derive(Debug, Default)]
pub struct Mounts(Vec<Tmpfs>);

impl Mounts {
    /// Puts `dir` on a tmpfs with 16 MiB of room beyond what its files take: a new one its
    /// files are moved onto, or the one it is on already (a replica whose disk filled up
    /// before); returns the path of the filler file to make.
    pub fn move_onto_tmpfs(&mut self, dir: &Path) -> Result<PathBuf, String> {
        if let Some(mounted) = self.0.iter().find(|t| t.dir() == dir) {
            let size = dir_bytes(dir)? + 16 * 1024 * 1024;
            mounted.resize(&size.to_string())?;
            return Ok(dir.join("filler"));
        }
        let saved = dir.with_extension("before-tmpfs");
        std::fs::rename(dir, &saved).map_err(|e| format!("moving {}: {e}", dir.display()))?;
        std::fs::create_dir_all(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let size = dir_bytes(&saved)? + 16 * 1024 * 1024;
        self.0.push(Tmpfs::mount(dir, &size.to_string())?);
        let copy = Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", saved.display()))
            .arg(dir)
            .status()
            .map_err(|e| format!("cp: {e}"))?;
        if !copy.success() {
            return Err(format!("copying {} onto the tmpfs failed", saved.display()));
        }
        Ok(dir.join("filler"))
    }

    /// Gives the tmpfs at `dir` room for the rest of the run (512 MiB).
    pub fn grow(&self, dir: &Path) -> Result<(), String> {
        self.0
            .iter()
            .find(|t| t.dir() == dir)
            .ok_or_else(|| format!("no tmpfs at {}", dir.display()))?
            .resize("512m")
    }
}

/// Removes everything in `dir`, which stays (it may be a tmpfs mount point, from a disk that
/// filled up earlier).
fn wipe(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// Bytes the files under `dir` take (`du -sb`).
fn dir_bytes(dir: &Path) -> Result<u64, String> {
    let out = Command::new("du")
        .arg("-sb")
        .arg(dir)
        .output()
        .map_err(|e| format!("du: {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("cannot read du's answer for {}", dir.display()))
}

//! One `kokoa server` child process: start, wait until it is listening, signal, restart.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};

use crate::process::{field, KokoaProcess, StartError};
use crate::{free_ports, READY_TIMEOUT};

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
    /// The IP both listeners bind (`--listen`, `--peer-listen`); default `127.0.0.1`. Another
    /// loopback address (e.g. `127.77.0.2`) gives the replica an address of its own, which its
    /// peer connections then come from too, so firewall rules can tell replicas apart.
    pub ip: IpAddr,
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
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            api_port: ports[0],
            peer_port: ports[1],
            init: false,
            peers: None,
            join: None,
            extra_args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// `IP:PEER_PORT`, the address other replicas dial.
    pub fn peer_listen(&self) -> String {
        SocketAddr::new(self.ip, self.peer_port).to_string()
    }

    /// `IP:API_PORT`, the API address.
    pub fn listen(&self) -> String {
        SocketAddr::new(self.ip, self.api_port).to_string()
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
            self.listen(),
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

/// A running (or stopped) `kokoa server` child: a [`KokoaProcess`] (signals, logs, exit) plus
/// its spec and the addresses from its `listening` line.
#[derive(Debug)]
pub struct Replica {
    spec: ReplicaSpec,
    process: KokoaProcess,
    api_addr: Option<SocketAddr>,
    peer_addr: Option<SocketAddr>,
    dns_addr: Option<SocketAddr>,
}

impl Replica {
    /// Spawns the process (first start: with init / peers / join flags) and returns at once;
    /// call [`Replica::wait_ready`] next.
    pub fn launch(spec: ReplicaSpec) -> Replica {
        let process = KokoaProcess::new(
            format!("replica {}", spec.id),
            spec.log_path.clone(),
            spec.stdout_path.clone(),
        );
        let mut replica = Replica {
            spec,
            process,
            api_addr: None,
            peer_addr: None,
            dns_addr: None,
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
        self.process
            .spawn(&self.spec.args(first_start), &self.spec.env);
        self.api_addr = None;
        self.peer_addr = None;
        self.dns_addr = None;
    }

    /// Waits (up to [`READY_TIMEOUT`]) for the line `listening api=ADDR peer=ADDR` written by
    /// the current process.
    pub async fn wait_ready(&mut self) -> Result<(), StartError> {
        let line = self
            .process
            .wait_for_line("listening api=", READY_TIMEOUT)
            .await?;
        let (api, peer) = parse_listening(&line)
            .ok_or_else(|| self.process.start_error(format!("unparsable line: {line}")))?;
        self.api_addr = Some(api);
        self.peer_addr = Some(peer);
        self.dns_addr = parse_dns(&line);
        Ok(())
    }

    /// Restarts a stopped replica: same id, data dir and ports, no init / peers / join flags
    /// (but the same extra arguments and environment), and waits until it is listening.
    pub async fn restart(&mut self) -> Result<(), StartError> {
        self.launch_again();
        self.wait_ready().await
    }

    /// [`Replica::restart`] without the wait: respawns the stopped replica and returns at once
    /// (so several can start together); call [`Replica::wait_ready`] next.
    pub fn launch_again(&mut self) {
        self.spawn(false);
    }

    pub fn id(&self) -> u64 {
        self.spec.id
    }

    pub fn spec(&self) -> &ReplicaSpec {
        &self.spec
    }

    /// The API address from the `listening` line (falls back to the requested one).
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
            .unwrap_or_else(|| SocketAddr::new(self.spec.ip, self.spec.api_port))
    }

    /// The peer address from the `listening` line (falls back to the requested one).
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
            .unwrap_or_else(|| SocketAddr::new(self.spec.ip, self.spec.peer_port))
    }

    /// The DNS address (UDP and TCP) from the `listening` line, when it runs DNS (`--dns-listen`).
    pub fn dns_addr(&self) -> Option<SocketAddr> {
        self.dns_addr
    }

    /// `http://IP:PORT`.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.api_addr())
    }

    pub fn data_dir(&self) -> &Path {
        &self.spec.data_dir
    }
}

impl Deref for Replica {
    type Target = KokoaProcess;

    fn deref(&self) -> &KokoaProcess {
        &self.process
    }
}

impl DerefMut for Replica {
    fn deref_mut(&mut self) -> &mut KokoaProcess {
        &mut self.process
    }
}

/// Parses `... listening api=ADDR peer=ADDR ...`.
fn parse_listening(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let rest = &line[line.find("listening api=")? + "listening ".len()..];
    let api = field(rest, "api")?;
    let peer = field(rest, "peer")?;
    Some((api.parse().ok()?, peer.parse().ok()?))
}

/// Parses the `dns=ADDR` of a `listening` line, if there is one.
fn parse_dns(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find("listening api=")? + "listening ".len()..];
    field(rest, "dns")?.parse().ok()
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
        assert_eq!(parse_dns(line).map(|a| a.port()), Some(53));
        assert_eq!(
            parse_dns("listening api=127.0.0.1:1 peer=127.0.0.1:2"),
            None
        );
    }
}

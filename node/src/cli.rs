//! The command line, as clap types. The interface is documented in `docs/interfaces.md`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Kokoa: publish services on private machines at public hostnames, through disposable edges,
/// run by a replicated control plane.
#[derive(Debug, Parser)]
#[command(name = "kokoa", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// How admin commands reach the API.
#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// API URL of any replica.
    #[arg(
        long,
        global = true,
        env = "KOKOA_SERVER",
        default_value = "http://127.0.0.1:7300"
    )]
    pub server: String,
    /// Bearer token: an admin token for admin commands, an edge token for `kokoa edge`, an agent
    /// token for `kokoa agent` (prefer the KOKOA_TOKEN environment variable).
    #[arg(long, global = true, env = "KOKOA_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a control-plane replica.
    Server(ServerArgs),
    /// Run an edge: serve the routes over HTTP and HTTPS, with config from the control plane.
    Edge(EdgeArgs),
    /// Run an agent on an origin machine: dial every edge over WireGuard (no inbound port
    /// needed) and forward tunnelled connections to the origin's route targets.
    Agent(AgentArgs),
    /// Inspect and change the cluster's replicas.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Manage origins (where services run).
    #[command(subcommand)]
    Origin(OriginCmd),
    /// Manage routes (public hostnames).
    #[command(subcommand)]
    Route(RouteCmd),
    /// Manage bearer tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// List and remove registered edges.
    #[command(subcommand, name = "edge-node")]
    EdgeNode(EdgeNodeCmd),
    /// Manage static DNS records of the managed zone.
    #[command(subcommand)]
    Dns(DnsCmd),
    /// Manage the TLS certificates edges serve.
    #[command(subcommand)]
    Cert(CertCmd),
    /// Run a whole deployment on loopback: 3 replicas, an edge, an agent and a sample app.
    Dev(DevArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// This replica's id (1, 2, 3, ...), unique in the cluster.
    #[arg(long)]
    pub id: u64,
    /// Where the replica keeps its state.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// API address (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:7300")]
    pub listen: SocketAddr,
    /// Replica-to-replica address; outgoing peer connections come from its IP unless it is
    /// unspecified (0.0.0.0, ::).
    #[arg(long, default_value = "127.0.0.1:7301")]
    pub peer_listen: SocketAddr,
    /// Initialise a new cluster (alone, or with every replica in --peers as voters).
    #[arg(long, conflicts_with = "join")]
    pub init: bool,
    /// Join an existing cluster through the API of one of its replicas.
    #[arg(long, value_name = "URL", requires = "join_token")]
    pub join: Option<String>,
    /// A server token from `kokoa token create --role server`.
    #[arg(
        long,
        value_name = "T",
        env = "KOKOA_JOIN_TOKEN",
        hide_env_values = true
    )]
    pub join_token: Option<String>,
    /// Static membership: every replica's peer address, as 1=ADDR,2=ADDR,3=ADDR.
    #[arg(long, value_name = "ID=ADDR,...", value_parser = parse_peers)]
    pub peers: Option<PeerList>,
    /// Build a snapshot every this many log entries.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(10..))]
    pub snapshot_every: u64,
    /// Lower bound of the election timeout in ms (heartbeats every sixth of it).
    #[arg(long, default_value_t = 150, value_parser = clap::value_parser!(u64).range(60..=60000))]
    pub election_timeout_ms: u64,
    /// Serve the managed zones as an authoritative DNS server on this address (UDP and TCP;
    /// port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    pub dns_listen: Option<SocketAddr>,
    /// A DNS zone the cluster manages (repeatable); created in the replicated state at start.
    #[arg(long = "dns-zone", value_name = "ZONE", value_parser = parse_zone)]
    pub dns_zones: Vec<String>,
}

/// A zone name: lowercase, without a final dot.
fn parse_zone(s: &str) -> Result<String, String> {
    let zone = s.trim().trim_end_matches('.').to_ascii_lowercase();
    kokoa_store::validate::validate_zone(&zone).map_err(|e| e.to_string())?;
    Ok(zone)
}

/// `kokoa edge`; its bootstrap token is the global `--token` (or KOKOA_TOKEN).
#[derive(Debug, Clone, Args)]
pub struct EdgeArgs {
    /// API URLs of the replicas, comma-separated.
    #[arg(long, value_name = "URL,...", value_delimiter = ',', required = true)]
    pub control: Vec<String>,
    /// Where the edge keeps its key, registration and last config.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// The public address clients and agents reach this edge at.
    #[arg(long)]
    pub public_ip: std::net::IpAddr,
    /// Its name in the control plane (default: edge- and the public IP).
    #[arg(long)]
    pub name: Option<String>,
    /// Plain HTTP address (ACME HTTP-01 answers and redirects to HTTPS).
    #[arg(long, default_value = "0.0.0.0:80")]
    pub http_listen: SocketAddr,
    /// HTTPS address.
    #[arg(long, default_value = "0.0.0.0:443")]
    pub https_listen: SocketAddr,
    /// WireGuard UDP address for agents' tunnels.
    #[arg(long, default_value = "0.0.0.0:51820")]
    pub wg_listen: SocketAddr,
    /// Default per-client-IP request rate (requests per second), for routes without their own.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate_limit: u32,
    /// Default burst above that rate.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate_burst: u32,
    /// Most open connections from one client IP.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_conns_per_ip: u32,
    /// Data-plane threads, each with its own listeners (default: one per CPU).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub workers: Option<u64>,
}

/// `kokoa agent`; its agent token is the global `--token` (or KOKOA_TOKEN), made with
/// `kokoa token create --role agent --origin NAME`.
#[derive(Debug, Clone, Args)]
pub struct AgentArgs {
    /// API URLs of the replicas, comma-separated.
    #[arg(long, value_name = "URL,...", value_delimiter = ',', required = true)]
    pub control: Vec<String>,
    /// Where the agent keeps its WireGuard key, registration and last config (created, mode
    /// 0700; the private key never leaves it).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Its name in the control plane, unique within its origin (default: this machine's host
    /// name). Used once, when it registers.
    #[arg(long)]
    pub name: Option<String>,
    /// Local UDP address of its WireGuard socket; it only dials out, so the default (any
    /// address, any port) suits NAT.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:0")]
    pub wg_listen: SocketAddr,
}

/// The static membership given with `--peers`: (replica id, peer address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerList(pub Vec<(u64, SocketAddr)>);

fn parse_peers(s: &str) -> Result<PeerList, String> {
    let mut peers = Vec::new();
    for part in s.split(',').filter(|p| !p.trim().is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?}: expected ID=HOST:PORT"))?;
        let id: u64 = id
            .trim()
            .parse()
            .map_err(|_| format!("{id:?} is not a replica id"))?;
        if id == 0 {
            return Err("replica ids start at 1".into());
        }
        let addr: SocketAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{addr:?} is not an IP:PORT address"))?;
        if peers.iter().any(|(i, _)| *i == id) {
            return Err(format!("replica {id} is listed twice"));
        }
        peers.push((id, addr));
    }
    if peers.is_empty() {
        return Err("no peers given".into());
    }
    Ok(PeerList(peers))
}

#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// Show the replicas, the leader, the term and the applied index.
    Status,
    /// Add a running, empty replica (started with the same cluster secret) as a voter.
    AddNode {
        #[arg(long)]
        id: u64,
        #[arg(long)]
        peer_addr: String,
        #[arg(long)]
        api_addr: String,
    },
    /// Remove a replica from the cluster.
    RemoveNode {
        #[arg(long)]
        id: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum OriginCmd {
    /// Add an origin.
    Add {
        name: String,
        /// "tunnel" (reached through agents) or "direct" (the edge dials the target).
        #[arg(long, default_value = "tunnel")]
        kind: String,
    },
    /// List origins.
    Ls,
    /// Remove an origin (by name or id); it must have no routes.
    Rm { name: String },
}

#[derive(Debug, Subcommand)]
pub enum RouteCmd {
    /// Publish HOST from an origin's target.
    Add {
        host: String,
        /// Origin name or id.
        #[arg(long)]
        origin: String,
        /// Where the service listens, seen from the origin: HOST:PORT.
        #[arg(long)]
        target: String,
        /// Per-client-IP requests per second at the edges (default: the edges' own, 10).
        #[arg(long, requires = "rate_burst", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        rate_limit: Option<u32>,
        /// Burst above --rate-limit.
        #[arg(long, requires = "rate_limit", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        rate_burst: Option<u32>,
        /// Serve plain HTTP on port 80 instead of redirecting to HTTPS.
        #[arg(long)]
        allow_http: bool,
    },
    /// List routes.
    Ls,
    /// Remove a route (by hostname or id).
    Rm { host: String },
}

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Create a token; it is shown only once.
    Create {
        /// admin, server, edge or agent.
        #[arg(long)]
        role: String,
        /// Lifetime in seconds.
        #[arg(long)]
        ttl_secs: Option<u64>,
        /// How many registrations or joins it allows.
        #[arg(long)]
        max_uses: Option<u32>,
        /// For agent tokens: the origin (name or id) whose agents it registers.
        #[arg(long)]
        origin: Option<String>,
    },
    /// List tokens (never their secrets).
    Ls,
    /// Revoke a token by id.
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub enum CertCmd {
    /// Upload a certificate: its chain (leaf first) and private key, as PEM files.
    Add {
        #[arg(long, value_name = "FILE")]
        chain: PathBuf,
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The id of a certificate this one replaces (a renewal).
        #[arg(long, value_name = "ID")]
        replaces: Option<String>,
    },
    /// List certificates (names, expiry; never keys).
    Ls,
    /// Remove a certificate by id.
    Rm { id: String },
}

#[derive(Debug, Subcommand)]
pub enum EdgeNodeCmd {
    /// List edges with their tunnel address and when they last pulled config.
    Ls,
    /// Remove an edge (its token stops working).
    Rm { id: String },
}

#[derive(Debug, Subcommand)]
pub enum DnsCmd {
    /// Add a record: `--name app1 --ip 1.2.3.4`, or `--name x --type TXT --value "..."`.
    Add {
        /// Name relative to the zone, or @ for the apex.
        #[arg(long)]
        name: String,
        /// Shorthand for an A (IPv4) or AAAA (IPv6) record.
        #[arg(long, conflicts_with_all = ["rtype", "value"])]
        ip: Option<std::net::IpAddr>,
        /// A, AAAA, CNAME or TXT.
        #[arg(long = "type", value_name = "TYPE", requires = "value")]
        rtype: Option<String>,
        #[arg(long)]
        value: Option<String>,
        /// Seconds (default 30).
        #[arg(long)]
        ttl: Option<u32>,
    },
    /// List records.
    Ls,
    /// Remove a record by id.
    Rm { id: String },
}

#[derive(Debug, Clone, Args)]
pub struct DevArgs {
    /// Where the demo keeps its replicas' data (kept between runs).
    #[arg(long, default_value = "kokoa-dev")]
    pub data_dir: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "kokoa",
            "server",
            "--id",
            "1",
            "--data-dir",
            "d",
            "--peers",
            "1=127.0.0.1:1,2=127.0.0.1:2",
            "--init",
        ])
        .unwrap();
        let Command::Server(args) = cli.command else {
            panic!("not a server command")
        };
        assert_eq!(args.peers.unwrap().0.len(), 2);
    }

    #[test]
    fn peers_parse() {
        let p = parse_peers("1=127.0.0.1:1,2=127.0.0.1:2").unwrap();
        assert_eq!(p.0.len(), 2);
        for bad in [
            "",
            "1",
            "0=127.0.0.1:1",
            "1=x",
            "1=127.0.0.1:1,1=127.0.0.1:2",
        ] {
            assert!(parse_peers(bad).is_err(), "{bad:?}");
        }
    }
}

//! The three servers: Kokoa (a one-replica control plane with `--dns-listen`, populated through
//! API v1 only), and Knot DNS and NSD configured as in `shared/peers/knot.sh` / `nsd.sh`,
//! serving a zone file written from Kokoa's own answers (same names, same records, same TTLs).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine;
use kokoa_tests::{Api, ApiResponse, Cluster};
use serde_json::json;

use super::report::Server;
use crate::edge::procs::{children_of, Proc};
use crate::note;

/// How long a server may take to answer the last name after it started / was populated.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A server under test: where it answers and which processes count as it.
pub trait DnsServer {
    fn server(&self) -> Server;
    fn addr(&self) -> SocketAddr;
    fn pids(&self) -> Vec<u32>;
    fn check_alive(&mut self) -> anyhow::Result<()>;
}

/// The Kokoa replica, its DNS address and the names it serves.
#[derive(Debug)]
pub struct KokoaDns {
    pub cluster: Cluster,
    pub dns: SocketAddr,
    /// The route hostnames (`h0.ZONE` ...).
    pub names: Vec<String>,
    /// Edge IPs every route answers with.
    pub edge_ips: Vec<Ipv4Addr>,
}

fn want(what: &str, response: &ApiResponse, status: u16) -> anyhow::Result<()> {
    anyhow::ensure!(
        response.status.as_u16() == status,
        "{what}: want {status}, got {} {}",
        response.status,
        response.json
    );
    Ok(())
}

impl KokoaDns {
    /// Starts the replica with `--dns-listen 127.0.0.1:0 --dns-zone ZONE`, registers `edges`
    /// edges (192.0.2.N), one direct origin and `routes` routes, and waits until the last
    /// route's name answers with every edge IP.
    pub async fn start(
        zone: &str,
        edges: u32,
        routes: u32,
        extra_args: &[String],
    ) -> anyhow::Result<KokoaDns> {
        let mut args = vec!["--dns-listen", "127.0.0.1:0", "--dns-zone", zone];
        args.extend(extra_args.iter().map(String::as_str));
        let cluster = Cluster::start_with(1, &args).await;
        let replica = cluster.replica(0);
        let dns = replica
            .dns_addr()
            .context("the replica's `listening` line has no dns=ADDR")?;
        note!(
            "kokoa: 1 replica, pid {}, API {}, DNS {dns}",
            replica.pid().unwrap_or(0),
            replica.api_url()
        );
        let admin = cluster.client(0);

        let mut edge_ips = Vec::new();
        for i in 1..=edges {
            let token = cluster.edge_token(0).await;
            let ip = Ipv4Addr::new(192, 0, 2, u8::try_from(i).unwrap_or(250));
            let key = base64::engine::general_purpose::STANDARD.encode([i as u8; 32]);
            let body = json!({
                "name": format!("bench-edge-{i}"),
                "public_ip": ip.to_string(),
                "wg_public_key": key,
                "wg_port": 51820,
                "http_port": 80,
            });
            let response = admin
                .with_token(Some(&token))
                .post_json("/api/v1/edge-nodes/register", &body)
                .await
                .context("POST /api/v1/edge-nodes/register")?;
            want("POST /api/v1/edge-nodes/register", &response, 201)?;
            edge_ips.push(ip);
        }

        let origin = admin
            .post_json("/api/v1/origins", &json!({ "name": "o", "kind": "direct" }))
            .await
            .context("POST /api/v1/origins")?;
        want("POST /api/v1/origins", &origin, 201)?;
        let origin_id = origin
            .id()
            .with_context(|| format!("no id in {}", origin.json))?;
        let names: Vec<String> = (0..routes).map(|i| format!("h{i}.{zone}")).collect();
        for name in &names {
            let response = admin
                .create_route(name, &origin_id, "127.0.0.1:8080")
                .await
                .context("POST /api/v1/routes")?;
            want("POST /api/v1/routes", &response, 201)?;
        }
        note!("kokoa: {edges} edges, 1 direct origin, {routes} routes registered through the API");
        let kokoa = KokoaDns {
            cluster,
            dns,
            names,
            edge_ips,
        };
        let last = kokoa.names.last().cloned().unwrap_or_default();
        wait_answers(dns, &last, kokoa.edge_ips.len()).await?;
        Ok(kokoa)
    }

    /// Admin API of the replica.
    pub fn admin(&self) -> Api {
        self.cluster.client(0)
    }
}

impl DnsServer for KokoaDns {
    fn server(&self) -> Server {
        Server::Kokoa
    }
    fn addr(&self) -> SocketAddr {
        self.dns
    }
    fn pids(&self) -> Vec<u32> {
        self.cluster.replica(0).pid().into_iter().collect()
    }
    fn check_alive(&mut self) -> anyhow::Result<()> {
        let replica = self.cluster.replica_mut(0);
        anyhow::ensure!(
            replica.is_running(),
            "the kokoa replica exited ({:?}); log tail:\n{}",
            replica.last_exit(),
            replica.log_tail(30)
        );
        Ok(())
    }
}

/// `kdig` with a 1 s timeout and no retry against `addr`; `None` on failure.
pub fn kdig(addr: SocketAddr, extra: &[&str]) -> Option<String> {
    let output = Command::new("timeout")
        .args(["10", "kdig", "+time=1", "+retry=0"])
        .arg(format!("@{}", addr.ip()))
        .args(["-p", &addr.port().to_string()])
        .args(extra)
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Until `name A` at `addr` answers with `records` A records.
pub async fn wait_answers(addr: SocketAddr, name: &str, records: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let answer = kdig(addr, &["+short", name, "A"]).unwrap_or_default();
        let got = answer.lines().filter(|l| !l.trim().is_empty()).count();
        if got == records {
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < READY_TIMEOUT,
            "{addr} does not answer {name} A with {records} records after {READY_TIMEOUT:?} (last: {answer:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The zone as Kokoa serves it, as zone-file lines (`kdig +noall +answer` prints them in
/// master-file format): SOA, NS, the NS names' glue inside the zone, every route name's A set.
pub fn export_zone(addr: SocketAddr, zone: &str, names: &[String]) -> anyhow::Result<String> {
    let mut text = String::new();
    let apex = kdig(addr, &["+noall", "+answer", zone, "SOA", zone, "NS"])
        .context("kdig SOA/NS from kokoa")?;
    text.push_str(&apex);
    // Glue for NS names inside the zone.
    let zone_dot = format!("{zone}.");
    let glue: Vec<String> = apex
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(3) == Some(&"NS")).then(|| f.get(4).map(|s| s.to_string()))?
        })
        .filter(|ns| ns.ends_with(&zone_dot))
        .collect();
    for chunk in names
        .iter()
        .chain(glue.iter())
        .collect::<Vec<_>>()
        .chunks(50)
    {
        let mut q: Vec<&str> = vec!["+noall", "+answer"];
        for name in chunk {
            q.push(name);
            q.push("A");
        }
        text.push_str(&kdig(addr, &q).context("kdig A from kokoa")?);
    }
    anyhow::ensure!(
        text.lines().any(|l| l.contains("SOA")),
        "kokoa answered no SOA for {zone}: {text}"
    );
    Ok(text)
}

/// Knot DNS or NSD, started in the foreground with its own config in `dir`.
#[derive(Debug)]
pub struct Peer {
    pub server: Server,
    pub proc: Proc,
    pub addr: SocketAddr,
    pub version: String,
}

impl DnsServer for Peer {
    fn server(&self) -> Server {
        self.server
    }
    fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// The whole process tree: `nsd -d` forks xfrd, which forks the main process, which forks
    /// the servers that answer.
    fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self.proc.pid().into_iter().collect();
        let mut at = 0;
        while at < pids.len() {
            let kids = children_of(pids[at]);
            pids.extend(kids);
            at += 1;
        }
        pids
    }
    fn check_alive(&mut self) -> anyhow::Result<()> {
        self.proc.check_alive()
    }
}

fn which(program: &str) -> anyhow::Result<PathBuf> {
    for dir in ["/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
        let path = Path::new(dir).join(program);
        if path.exists() {
            return Ok(path);
        }
    }
    anyhow::bail!("{program} not found: apt-get install knot nsd dnsperf knot-dnsutils (bench/dns-bench.sh does)")
}

fn first_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| {
            let mut all = o.stdout;
            all.extend(o.stderr);
            String::from_utf8_lossy(&all)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default()
}

fn check(program: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("run {}", program.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "{} {args:?}: {}{}",
        program.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// A zone file: `$ORIGIN` + the exported records.
fn write_zone(dir: &Path, zone: &str, records: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(format!("{zone}.zone"));
    std::fs::write(&path, format!("$ORIGIN {zone}.\n{records}"))
        .with_context(|| format!("write {}", path.display()))?;
    Ok(path)
}

/// Knot DNS as in `shared/peers/knot.sh` (udp-workers = `workers`).
pub async fn start_knot(
    dir: &Path,
    port: u16,
    zone: &str,
    records: &str,
    workers: u32,
    check_name: &str,
    check_records: usize,
) -> anyhow::Result<Peer> {
    let knotd = which("knotd")?;
    let knotc = which("knotc")?;
    std::fs::create_dir_all(dir.join("db"))?;
    write_zone(dir, zone, records)?;
    let d = dir.display();
    let conf = format!(
        "server:\n    rundir: \"{d}\"\n    pidfile: \"{d}/knot.pid\"\n    listen: 127.0.0.1@{port}\n    \
         udp-workers: {workers}\n    tcp-workers: 1\n    background-workers: 1\n\
         log:\n  - target: stderr\n    any: warning\n\
         database:\n    storage: \"{d}/db\"\n\
         control:\n    listen: \"{d}/knot.sock\"\n\
         template:\n  - id: default\n    storage: \"{d}\"\n    file: \"%s.zone\"\n    \
         journal-content: none\n    zonefile-sync: -1\n\
         zone:\n  - domain: {zone}\n"
    );
    let conf_path = dir.join("knot.conf");
    std::fs::write(&conf_path, conf)?;
    let conf_arg = conf_path.display().to_string();
    check(&knotc, &["-c", &conf_arg, "conf-check"])?;
    let proc = Proc::spawn(
        "knotd",
        &knotd,
        &["-c".into(), conf_arg],
        &[],
        &dir.join("knotd.log"),
    )?;
    let peer = Peer {
        server: Server::Knot,
        proc,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        version: first_line("knotd", &["-V"]),
    };
    answering(peer, check_name, check_records).await
}

/// `peer`, once it answers `check_name` with `check_records` records and is still running.
async fn answering(mut peer: Peer, check_name: &str, check_records: usize) -> anyhow::Result<Peer> {
    wait_answers(peer.addr, check_name, check_records)
        .await
        .with_context(|| format!("{:?} log:\n{}", peer.server, peer.proc.log_tail(20)))?;
    peer.check_alive()?;
    Ok(peer)
}

/// NSD as in `shared/peers/nsd.sh` (server-count = `workers`), with response rate limiting
/// off: Debian's NSD limits each name to 200 answers/s per /24 by default (`rrl-ratelimit`),
/// which a query file of 100 names at 100k queries/s trips at once (Knot and Kokoa have none).
pub async fn start_nsd(
    dir: &Path,
    port: u16,
    zone: &str,
    records: &str,
    workers: u32,
    check_name: &str,
    check_records: usize,
) -> anyhow::Result<Peer> {
    let nsd = which("nsd")?;
    let zone_path = write_zone(dir, zone, records)?;
    check(
        &which("nsd-checkzone")?,
        &[zone, &zone_path.display().to_string()],
    )?;
    let d = dir.display();
    let conf = format!(
        "server:\n    ip-address: 127.0.0.1@{port}\n    port: {port}\n    do-ip6: no\n    \
         server-count: {workers}\n    username: \"\"\n    chroot: \"\"\n    zonesdir: \"{d}\"\n    \
         database: \"\"\n    zonelistfile: \"{d}/zone.list\"\n    xfrdfile: \"{d}/xfrd.state\"\n    \
         xfrdir: \"{d}\"\n    pidfile: \"{d}/nsd.pid\"\n    logfile: \"{d}/nsd.log\"\n    \
         verbosity: 1\n    rrl-ratelimit: 0\n    rrl-whitelist-ratelimit: 0\n\
         remote-control:\n    control-enable: no\n\
         zone:\n    name: {zone}\n    zonefile: {zone}.zone\n"
    );
    let conf_path = dir.join("nsd.conf");
    std::fs::write(&conf_path, conf)?;
    let conf_arg = conf_path.display().to_string();
    check(&which("nsd-checkconf")?, &[&conf_arg])?;
    let proc = Proc::spawn(
        "nsd",
        &nsd,
        &["-d".into(), "-c".into(), conf_arg],
        &[],
        &dir.join("nsd.out"),
    )?;
    let peer = Peer {
        server: Server::Nsd,
        proc,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        version: first_line("nsd", &["-v"]),
    };
    answering(peer, check_name, check_records).await
}

/// `Received N B` of one `kdig NAME A` answer: the response size on the wire.
pub fn response_bytes(addr: SocketAddr, name: &str) -> Option<u32> {
    let out = kdig(addr, &[name, "A"])?;
    out.lines().find_map(|l| {
        l.split_once(";; Received ")?
            .1
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

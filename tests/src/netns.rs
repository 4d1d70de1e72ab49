//! Network namespaces for tests and benchmarks that need real interfaces (root only).
//!
//! It owns: [`Netns`], a uniquely named namespace with `lo` up and a veth pair to the root
//! namespace (or to another namespace, [`Netns::pair`]) on a /30 of its own; running commands
//! in it ([`Netns::exec`], [`Netns::run`]) and background processes that die with it
//! ([`Netns::spawn`]); finding the system tools it needs ([`tool`]) and saying which are
//! missing ([`missing_prerequisites`], [`require_netns_prerequisites`]).
//!
//! Names are `kt<pid hex>-<counter hex>` (at most 12 characters, so `NAMEh`, `NAMEn` and the
//! WireGuard interfaces `NAMEwN` fit the kernel's 15), so parallel tests and processes never
//! share one. A namespace of the same name left by an earlier process with the same pid is
//! deleted before it is created, and so is every `kt…` namespace whose process is gone.
//! Root-side addresses come from [`POOL`], one /30 per namespace, never one already on an
//! interface of the root namespace. Dropping a [`Netns`] (also while a test panics) kills every
//! process in it and deletes it, which removes both ends of its veth; on a panic the logs of the
//! processes it spawned are printed first.

use std::collections::HashSet;
use std::fmt;
use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::PROXY_VARS;

/// The range veth subnets are carved from: /30s of 10.213.0.0/16, `.1` outside, `.2` inside.
pub const POOL: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 213, 0, 0), 16);
/// /30s in [`POOL`].
const POOL_SUBNETS: u32 = 1 << (30 - 16);
/// What every namespace made here is called: `kt<pid>-<n>`.
const NAME_PREFIX: &str = "kt";
/// How long a killed process may take to go away before the namespace is deleted anyway.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// Something about a namespace or a command in it that did not work.
#[derive(Debug, Clone)]
pub struct NetnsError(pub String);

impl fmt::Display for NetnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NetnsError {}

/// One end of a veth pair, as seen from the namespace that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VethEnd {
    /// The interface inside this namespace.
    pub iface: String,
    /// Its address.
    pub addr: Ipv4Addr,
    /// The other end's interface (in the root namespace or the other namespace).
    pub peer_iface: String,
    /// The other end's address.
    pub peer_addr: Ipv4Addr,
    pub prefix_len: u8,
}

/// A background process started in a namespace.
#[derive(Debug)]
struct Spawned {
    label: String,
    child: Child,
    log: PathBuf,
}

/// A network namespace of its own with a veth link out; see the module docs.
#[derive(Debug)]
pub struct Netns {
    name: String,
    veth: Option<VethEnd>,
    /// Interfaces of the root namespace to delete too (a veth end not yet moved, say).
    root_ifaces: Vec<String>,
    /// Logs of spawned processes and files tests put here (key files).
    dir: Option<TempDir>,
    children: Mutex<Vec<Spawned>>,
    next_iface: AtomicU32,
}

impl Netns {
    /// A namespace linked to the root namespace by a veth pair on a fresh /30 of [`POOL`]:
    /// [`Netns::peer_addr`] is the root side, [`Netns::addr`] the inside.
    pub fn new() -> Result<Netns, NetnsError> {
        let (subnet, outer, inner) = allocate_subnet()?;
        let ns = Netns::with_addrs(outer, inner, 30);
        release_subnet_if(subnet, ns.is_err());
        ns
    }

    /// A namespace linked to the root namespace by a veth pair: `outer` on the root side,
    /// `inner` inside, both `/prefix_len`. The caller keeps addresses of parallel tests apart.
    pub fn with_addrs(
        outer: Ipv4Addr,
        inner: Ipv4Addr,
        prefix_len: u8,
    ) -> Result<Netns, NetnsError> {
        let mut ns = Netns::bare()?;
        let (host_if, ns_if) = (format!("{}h", ns.name), format!("{}n", ns.name));
        ns.root_ifaces.push(host_if.clone());
        let ip = tool_str("ip")?;
        run_checked(Command::new(&ip).args([
            "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if, "netns", &ns.name,
        ]))?;
        run_checked(Command::new(&ip).args([
            "addr",
            "add",
            &format!("{outer}/{prefix_len}"),
            "dev",
            &host_if,
        ]))?;
        run_checked(Command::new(&ip).args(["link", "set", &host_if, "up"]))?;
        ns.ip(&[
            "addr",
            "add",
            &format!("{inner}/{prefix_len}"),
            "dev",
            &ns_if,
        ])?;
        ns.ip(&["link", "set", &ns_if, "up"])?;
        ns.veth = Some(VethEnd {
            iface: ns_if,
            addr: inner,
            peer_iface: host_if,
            peer_addr: outer,
            prefix_len,
        });
        Ok(ns)
    }

    /// Two namespaces linked to each other (not to the root namespace) by a veth pair on a /30,
    /// as in `shared/peers/wireguard-go.sh`: the first gets `.1`, the second `.2`.
    pub fn pair() -> Result<(Netns, Netns), NetnsError> {
        let (subnet, a_addr, b_addr) = allocate_subnet()?;
        let made = Netns::link_pair(a_addr, b_addr);
        release_subnet_if(subnet, made.is_err());
        made
    }

    fn link_pair(a_addr: Ipv4Addr, b_addr: Ipv4Addr) -> Result<(Netns, Netns), NetnsError> {
        let mut a = Netns::bare()?;
        let mut b = Netns::bare()?;
        let (a_if, b_if) = (format!("{}p", a.name), format!("{}p", b.name));
        a.root_ifaces.push(a_if.clone());
        b.root_ifaces.push(b_if.clone());
        let ip = tool_str("ip")?;
        run_checked(
            Command::new(&ip).args(["link", "add", &a_if, "type", "veth", "peer", "name", &b_if]),
        )?;
        run_checked(Command::new(&ip).args(["link", "set", &a_if, "netns", &a.name]))?;
        run_checked(Command::new(&ip).args(["link", "set", &b_if, "netns", &b.name]))?;
        for (ns, iface, addr, peer_iface, peer_addr) in [
            (&mut a, &a_if, a_addr, &b_if, b_addr),
            (&mut b, &b_if, b_addr, &a_if, a_addr),
        ] {
            ns.ip(&["addr", "add", &format!("{addr}/30"), "dev", iface])?;
            ns.ip(&["link", "set", iface, "up"])?;
            ns.veth = Some(VethEnd {
                iface: iface.clone(),
                addr,
                peer_iface: peer_iface.clone(),
                peer_addr,
                prefix_len: 30,
            });
        }
        Ok((a, b))
    }

    /// A namespace with `lo` up and nothing else.
    pub fn bare() -> Result<Netns, NetnsError> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        sweep_stale_once();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed) % 0x1000;
        let name = format!("{NAME_PREFIX}{:x}-{n:x}", std::process::id());
        remove_leftovers(&name);
        let dir = tempfile::Builder::new()
            .prefix(&format!("kokoa-{name}-"))
            .tempdir()
            .map_err(|e| NetnsError(format!("create a temporary directory: {e}")))?;
        run_checked(Command::new(tool_str("ip")?).args(["netns", "add", &name]))?;
        let ns = Netns {
            name,
            veth: None,
            root_ifaces: Vec::new(),
            dir: Some(dir),
            children: Mutex::new(Vec::new()),
            next_iface: AtomicU32::new(0),
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// This namespace's end of its veth pair.
    ///
    /// # Panics
    /// For a namespace made with [`Netns::bare`].
    pub fn veth(&self) -> &VethEnd {
        self.veth
            .as_ref()
            .unwrap_or_else(|| panic!("namespace {} has no veth", self.name))
    }

    /// The address of the veth end inside this namespace.
    pub fn addr(&self) -> Ipv4Addr {
        self.veth().addr
    }

    /// The address of the other end of the veth (root side, or the other namespace of a pair).
    pub fn peer_addr(&self) -> Ipv4Addr {
        self.veth().peer_addr
    }

    /// A directory for this namespace's files (process logs, key files); removed on drop
    /// unless a test panics.
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().map_or(Path::new("/tmp"), TempDir::path)
    }

    /// A fresh interface name for this namespace: `NAME` + `kind` + a counter (`kt1f2a-3w0`).
    /// Unique across the machine, so it also names a WireGuard UAPI socket.
    pub fn new_iface_name(&self, kind: char) -> String {
        let n = self.next_iface.fetch_add(1, Ordering::Relaxed);
        format!("{}{kind}{n:x}", self.name)
    }

    /// `ip netns exec NAME args...`, without proxy variables; not started.
    ///
    /// # Panics
    /// When `ip` is not installed (see [`require_netns_prerequisites`]).
    pub fn exec(&self, args: &[&str]) -> Command {
        exec_in(&self.name, args)
    }

    /// Runs `args` in the namespace to the end; its stdout, or an error with its stderr.
    pub fn run(&self, args: &[&str]) -> Result<String, NetnsError> {
        let output = run_checked(&mut self.exec(args))?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// `ip -n NAME args...`.
    pub fn ip(&self, args: &[&str]) -> Result<String, NetnsError> {
        let mut command = Command::new(tool_str("ip")?);
        command.args(["-n", &self.name]).args(args);
        let output = run_checked(&mut command)?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Starts `args` in the namespace in the background, stdout and stderr in a log file of
    /// [`Netns::dir`]; it is killed when the namespace is dropped (or by [`Netns::stop`]).
    /// Returns its pid (`ip netns exec` execs the command, so that is the command's own).
    pub fn spawn(&self, args: &[&str]) -> Result<u32, NetnsError> {
        let label = args.first().copied().unwrap_or("process");
        let mut children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        let base = Path::new(label)
            .file_name()
            .map_or(label.to_string(), |f| f.to_string_lossy().into_owned());
        let log = self.dir().join(format!("{base}-{}.log", children.len()));
        let child = spawn_logged(&mut self.exec(args), &log)?;
        let pid = child.id();
        children.push(Spawned {
            label: args.join(" "),
            child,
            log,
        });
        Ok(pid)
    }

    /// Kills (SIGKILL) and reaps a process started by [`Netns::spawn`]; false if it is not one.
    pub fn stop(&self, pid: u32) -> bool {
        let mut children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        let Some(spawned) = children.iter_mut().find(|s| s.child.id() == pid) else {
            return false;
        };
        let _ = spawned.child.kill();
        let _ = spawned.child.wait();
        true
    }

    /// Whether a process started by [`Netns::spawn`] is still running.
    pub fn is_running(&self, pid: u32) -> bool {
        let mut children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        children
            .iter_mut()
            .find(|s| s.child.id() == pid)
            .is_some_and(|s| matches!(s.child.try_wait(), Ok(None)))
    }

    /// The log of a process started by [`Netns::spawn`] so far.
    pub fn log_of(&self, pid: u32) -> String {
        let children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        children
            .iter()
            .find(|s| s.child.id() == pid)
            .map(|s| std::fs::read_to_string(&s.log).unwrap_or_default())
            .unwrap_or_default()
    }

    /// Whether something listens on TCP `port` in this namespace (`ss -Hltn`).
    pub fn tcp_listening(&self, port: u16) -> bool {
        let filter = format!("sport = :{port}");
        self.run(&["ss", "-Hltn", &filter])
            .map(|out| !out.trim().is_empty())
            .unwrap_or(false)
    }

    /// Waits (polling every 20 ms) until something listens on TCP `port` in this namespace.
    pub async fn wait_tcp_listening(&self, port: u16, timeout: Duration) -> Result<(), NetnsError> {
        let started = Instant::now();
        while !self.tcp_listening(port) {
            if started.elapsed() > timeout {
                return Err(NetnsError(format!(
                    "nothing listens on TCP port {port} in {} after {timeout:?}",
                    self.name
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Pids of every process in the namespace (`ip netns pids`).
    pub fn pids(&self) -> Vec<u32> {
        namespace_pids(&self.name)
    }

    fn dump_logs(&self) {
        let children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        for spawned in children.iter() {
            let log = std::fs::read_to_string(&spawned.log).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "===== [{}] {} (log {}) =====\n{}\n===== end =====",
                self.name,
                spawned.label,
                spawned.log.display(),
                lines[lines.len().saturating_sub(40)..].join("\n")
            );
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        if panicking {
            self.dump_logs();
        }
        let children = std::mem::take(self.children.get_mut().unwrap_or_else(|p| p.into_inner()));
        for mut spawned in children {
            let _ = spawned.child.kill();
            let _ = spawned.child.wait();
        }
        destroy(&self.name, &self.root_ifaces);
        if let Some(veth) = &self.veth {
            release_addr(veth.peer_addr);
        }
        if let Some(dir) = self.dir.take() {
            if panicking {
                eprintln!("[{}] files kept in {}", self.name, dir.keep().display());
            }
        }
    }
}

/// `ip netns exec NS args...`, without proxy variables.
///
/// # Panics
/// When `ip` is not installed (see [`require_netns_prerequisites`]).
pub fn exec_in(ns: &str, args: &[&str]) -> Command {
    let ip = tool("ip").unwrap_or_else(|| panic!("{}", prerequisites_message(&["ip".into()])));
    let mut command = Command::new(ip);
    command
        .args(["netns", "exec", ns])
        .args(args)
        .stdin(Stdio::null());
    for var in PROXY_VARS {
        command.env_remove(var);
    }
    command
}

/// Runs `command`; its output, or an error with the command line, status and stderr.
pub(crate) fn run_checked(command: &mut Command) -> Result<Output, NetnsError> {
    let line = format!("{command:?}");
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| NetnsError(format!("{line}: {e}")))?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(NetnsError(format!(
            "{line}: {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

/// Starts `command` with stdout and stderr appended to `log`.
pub(crate) fn spawn_logged(command: &mut Command, log: &Path) -> Result<Child, NetnsError> {
    let file = File::options()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| NetnsError(format!("open {}: {e}", log.display())))?;
    let err = file
        .try_clone()
        .map_err(|e| NetnsError(format!("clone a log handle: {e}")))?;
    command
        .stdout(file)
        .stderr(err)
        .spawn()
        .map_err(|e| NetnsError(format!("spawn {command:?}: {e}")))
}

/// Pids of every process in namespace `ns`.
fn namespace_pids(ns: &str) -> Vec<u32> {
    let Some(ip) = tool("ip") else {
        return Vec::new();
    };
    Command::new(ip)
        .args(["netns", "pids", ns])
        .stderr(Stdio::null())
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Kills every process in `ns`, deletes it, deletes `root_ifaces`, removes its WireGuard UAPI
/// sockets. Errors are ignored: it may be half made or gone already.
fn destroy(ns: &str, root_ifaces: &[String]) {
    let pids = namespace_pids(ns);
    for pid in &pids {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .stderr(Stdio::null())
            .status();
    }
    let started = Instant::now();
    while pids
        .iter()
        .any(|pid| Path::new(&format!("/proc/{pid}")).exists())
        && started.elapsed() < KILL_GRACE
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    let Some(ip) = tool("ip") else {
        return;
    };
    let quiet = |args: &[&str]| {
        let _ = Command::new(&ip)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    };
    quiet(&["netns", "del", ns]);
    for iface in root_ifaces {
        quiet(&["link", "del", iface]);
    }
    if let Ok(entries) = std::fs::read_dir("/var/run/wireguard") {
        for entry in entries.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            if file.starts_with(ns) && file.ends_with(".sock") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// Removes what an earlier process with the same pid may have left under `name`.
fn remove_leftovers(name: &str) {
    destroy(
        name,
        &[format!("{name}h"), format!("{name}n"), format!("{name}p")],
    );
}

/// Once per process: deletes every `kt<pid>-<n>` namespace whose process no longer exists.
fn sweep_stale_once() {
    static SWEPT: OnceLock<()> = OnceLock::new();
    SWEPT.get_or_init(|| {
        let Some(ip) = tool("ip") else {
            return;
        };
        let Ok(out) = Command::new(ip).args(["netns", "list"]).output() else {
            return;
        };
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Some(name) = line.split_whitespace().next() else {
                continue;
            };
            if let Some(pid) = owner_pid(name) {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    remove_leftovers(name);
                }
            }
        }
    });
}

/// The pid encoded in a namespace name made here (`kt1f2a-3` → 0x1f2a).
fn owner_pid(name: &str) -> Option<u32> {
    let (pid, n) = name.strip_prefix(NAME_PREFIX)?.split_once('-')?;
    u32::from_str_radix(n, 16).ok()?;
    u32::from_str_radix(pid, 16).ok()
}

fn handed_out() -> &'static Mutex<HashSet<u32>> {
    static HANDED_OUT: OnceLock<Mutex<HashSet<u32>>> = OnceLock::new();
    HANDED_OUT.get_or_init(Default::default)
}

/// A /30 of [`POOL`] that this process has not handed out and no root-namespace interface
/// uses: (its index, `.1`, `.2`). The search starts at a pid-dependent place so that two
/// processes starting together rarely try the same one.
fn allocate_subnet() -> Result<(u32, Ipv4Addr, Ipv4Addr), NetnsError> {
    let in_use = root_addresses();
    let base = u32::from(POOL.0);
    let start = std::process::id().wrapping_mul(97) % POOL_SUBNETS;
    let mut handed_out = handed_out().lock().unwrap_or_else(|p| p.into_inner());
    for step in 0..POOL_SUBNETS {
        let index = (start + step) % POOL_SUBNETS;
        let network = base + index * 4;
        let taken = (network..network + 4).any(|a| in_use.contains(&Ipv4Addr::from(a)));
        if !taken && handed_out.insert(index) {
            return Ok((
                index,
                Ipv4Addr::from(network + 1),
                Ipv4Addr::from(network + 2),
            ));
        }
    }
    Err(NetnsError(format!(
        "no free /30 left in {}/{}",
        POOL.0, POOL.1
    )))
}

fn release_subnet_if(index: u32, release: bool) {
    if release {
        handed_out()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&index);
    }
}

/// Gives the /30 holding `addr` back to the pool (no-op for addresses outside it).
fn release_addr(addr: Ipv4Addr) {
    let base = u32::from(POOL.0);
    let a = u32::from(addr);
    if a >= base && a < base + POOL_SUBNETS * 4 {
        release_subnet_if((a - base) / 4, true);
    }
}

/// Every IPv4 address on an interface of the root namespace.
fn root_addresses() -> HashSet<Ipv4Addr> {
    let Some(ip) = tool("ip") else {
        return HashSet::new();
    };
    let Ok(out) = Command::new(ip).args(["-4", "-o", "addr", "show"]).output() else {
        return HashSet::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            words.find(|w| *w == "inet")?;
            words.next()?.split('/').next()?.parse().ok()
        })
        .collect()
}

/// Where `name` is installed: on `PATH`, else in `/usr/sbin` or `/sbin` (not on every root's
/// `PATH`).
pub fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

fn tool_str(name: &str) -> Result<String, NetnsError> {
    tool(name)
        .map(|p| p.display().to_string())
        .ok_or_else(|| NetnsError(prerequisites_message(&[name.to_string()])))
}

/// What a namespace test needs and this machine lacks: root, `/dev/net/tun`, and the commands
/// `ip`, `ss` (iproute2), `wireguard-go`, `wg`, plus `extra_tools` (e.g. `iperf3`, `python3`).
pub fn missing_prerequisites(extra_tools: &[&str]) -> Vec<String> {
    let mut missing = Vec::new();
    if !is_root() {
        missing.push("root (network namespaces need CAP_NET_ADMIN)".to_string());
    }
    if !Path::new("/dev/net/tun").exists() {
        missing.push("/dev/net/tun (wireguard-go makes its interface there)".to_string());
    }
    for name in ["ip", "ss", "wireguard-go", "wg"].iter().chain(extra_tools) {
        if tool(name).is_none() {
            missing.push(format!("`{name}`"));
        }
    }
    missing
}

fn prerequisites_message(missing: &[String]) -> String {
    format!(
        "this test needs {} and this machine lacks it. scripts/test installs the Debian \
         packages (wireguard-go, wireguard-tools, iperf3, iproute2) when run as root: \
         `sudo scripts/test`, or `apt-get install wireguard-go wireguard-tools iperf3 iproute2`",
        missing.join(", ")
    )
}

/// Panics with a message naming what is missing (see [`missing_prerequisites`]) and how to
/// get it.
///
/// # Panics
/// When anything is missing.
pub fn require_netns_prerequisites(extra_tools: &[&str]) {
    let missing = missing_prerequisites(extra_tools);
    assert!(missing.is_empty(), "{}", prerequisites_message(&missing));
}

/// Whether this process runs with effective uid 0 (`/proc/self/status`; no libc here).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("Uid:"))?;
            line.split_whitespace().nth(2).map(|euid| euid == "0")
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_interface_names_and_carry_the_pid() {
        let name = format!("{NAME_PREFIX}{:x}-{:x}", 0x3f_ffff, 0xfff);
        assert!(format!("{name}w{:x}", 15).len() <= 15, "{name}");
        assert_eq!(owner_pid("kt1f2a-3"), Some(0x1f2a));
        assert_eq!(owner_pid("kt1f2a"), None);
        assert_eq!(owner_pid("pwgA"), None);
    }

    #[test]
    fn subnets_are_distinct_and_given_back() {
        let (a, a1, a2) = allocate_subnet().expect("a subnet");
        let (b, b1, _) = allocate_subnet().expect("another");
        assert_ne!(a, b);
        assert_eq!(u32::from(a2), u32::from(a1) + 1);
        assert_eq!(u32::from(a1) % 4, 1);
        assert_ne!(a1, b1);
        release_addr(a1);
        release_addr(b1);
        assert!(!handed_out().lock().expect("lock").contains(&a));
    }
}

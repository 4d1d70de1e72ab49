//! wireguard-go (Debian's userspace WireGuard) inside a [`Netns`], configured with `wg`
//! (wireguard-tools) as in `shared/peers/wireguard-go.sh`: the reference peer Kokoa's tunnel is
//! tested against and compared with.
//!
//! It owns: key pairs from `wg genkey` / `wg pubkey` ([`WgKeys`]), and one running
//! `wireguard-go -f IFACE` ([`WireguardGo`]): started in the namespace (it makes the TUN
//! there), waited for until its UAPI socket `/var/run/wireguard/IFACE.sock` exists (that path is
//! shared by every namespace, so interface names come from [`Netns::new_iface_name`]), then
//! `wg set IFACE listen-port P private-key FILE peer …`, an address, and the link up. Its
//! state comes from `wg show`. Dropping it stops the daemon (SIGTERM, then SIGKILL) and
//! removes its socket.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::netns::{exec_in, run_checked, spawn_logged, tool, Netns, NetnsError};

/// Where wireguard-go puts its UAPI sockets.
const SOCKET_DIR: &str = "/var/run/wireguard";
/// How long wireguard-go may take to create its socket.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(20);
/// How long it may take to exit after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// A WireGuard key pair in `wg`'s base64 form.
#[derive(Clone, PartialEq, Eq)]
pub struct WgKeys {
    pub private: String,
    pub public: String,
}

impl std::fmt::Debug for WgKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WgKeys")
            .field("private", &"<secret>")
            .field("public", &self.public)
            .finish()
    }
}

impl WgKeys {
    /// `wg genkey`, then `wg pubkey` of it.
    pub fn generate() -> Result<WgKeys, NetnsError> {
        let wg = wg_path()?;
        let out = run_checked(Command::new(&wg).arg("genkey"))?;
        let private = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let public = public_key_of(&private)?;
        Ok(WgKeys { private, public })
    }

    /// The pair for a private key made elsewhere (`wg pubkey`).
    pub fn from_private(private: &str) -> Result<WgKeys, NetnsError> {
        Ok(WgKeys {
            private: private.trim().to_string(),
            public: public_key_of(private)?,
        })
    }
}

/// `wg pubkey` of a base64 private key.
pub fn public_key_of(private: &str) -> Result<String, NetnsError> {
    use std::io::Write;
    let mut child = Command::new(wg_path()?)
        .arg("pubkey")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| NetnsError(format!("spawn wg pubkey: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        writeln!(stdin, "{}", private.trim())
            .map_err(|e| NetnsError(format!("write to wg pubkey: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| NetnsError(format!("wg pubkey: {e}")))?;
    if !out.status.success() {
        return Err(NetnsError(format!(
            "wg pubkey: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn wg_path() -> Result<PathBuf, NetnsError> {
    tool("wg").ok_or_else(|| NetnsError("`wg` is not installed (wireguard-tools)".into()))
}

/// A peer as `wg set … peer` takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WgPeer {
    pub public_key: String,
    pub endpoint: Option<SocketAddr>,
    /// CIDRs, e.g. `100.96.7.1/32`.
    pub allowed_ips: Vec<String>,
    pub persistent_keepalive: Option<u16>,
}

impl WgPeer {
    /// The `peer …` words of `wg set`.
    fn words(&self) -> Vec<String> {
        let mut words = vec!["peer".to_string(), self.public_key.clone()];
        if let Some(endpoint) = self.endpoint {
            words.extend(["endpoint".into(), endpoint.to_string()]);
        }
        words.extend(["allowed-ips".into(), self.allowed_ips.join(",")]);
        if let Some(keepalive) = self.persistent_keepalive {
            words.extend(["persistent-keepalive".into(), keepalive.to_string()]);
        }
        words
    }
}

/// How to set up one wireguard-go interface.
#[derive(Debug, Clone)]
pub struct WireguardGoSpec {
    pub keys: WgKeys,
    /// UDP port (0: any; read back with [`WireguardGo::listen_port`]).
    pub listen_port: u16,
    /// The interface's address with its prefix, e.g. `100.96.7.2/24`.
    pub address: String,
    /// Interface MTU (wireguard-go's default is 1420).
    pub mtu: Option<u32>,
    pub peers: Vec<WgPeer>,
}

/// A running `wireguard-go -f IFACE` in a namespace; see the module docs.
#[derive(Debug)]
pub struct WireguardGo {
    ns: String,
    iface: String,
    keys: WgKeys,
    listen_port: u16,
    child: Option<Child>,
    log: PathBuf,
}

impl WireguardGo {
    /// Starts wireguard-go in `ns`, waits for its socket, configures and brings it up.
    pub async fn start(ns: &Netns, spec: WireguardGoSpec) -> Result<WireguardGo, NetnsError> {
        let iface = ns.new_iface_name('w');
        let socket = socket_path(&iface);
        let _ = std::fs::remove_file(&socket);
        let log = ns.dir().join(format!("{iface}.log"));
        let program = tool("wireguard-go")
            .ok_or_else(|| NetnsError("`wireguard-go` is not installed".into()))?
            .display()
            .to_string();
        let child = spawn_logged(&mut exec_in(ns.name(), &[&program, "-f", &iface]), &log)?;
        let mut wg = WireguardGo {
            ns: ns.name().to_string(),
            iface,
            keys: spec.keys.clone(),
            listen_port: spec.listen_port,
            child: Some(child),
            log,
        };
        wg.wait_socket(&socket).await?;

        let key_file = ns.dir().join(format!("{}.key", wg.iface));
        write_private(&key_file, &spec.keys.private)?;
        let mut words: Vec<String> = vec![
            "set".into(),
            wg.iface.clone(),
            "listen-port".into(),
            spec.listen_port.to_string(),
            "private-key".into(),
            key_file.display().to_string(),
        ];
        for peer in &spec.peers {
            words.extend(peer.words());
        }
        wg.wg(&words)?;
        let _ = std::fs::remove_file(&key_file);
        ns.ip(&["addr", "add", &spec.address, "dev", &wg.iface])?;
        if let Some(mtu) = spec.mtu {
            ns.ip(&["link", "set", &wg.iface, "mtu", &mtu.to_string()])?;
        }
        ns.ip(&["link", "set", &wg.iface, "up"])?;
        let port = wg.wg(&["show", &wg.iface, "listen-port"])?;
        wg.listen_port = port
            .trim()
            .parse()
            .map_err(|_| NetnsError(format!("wg show listen-port said {port:?}")))?;
        Ok(wg)
    }

    async fn wait_socket(&mut self, socket: &Path) -> Result<(), NetnsError> {
        let started = Instant::now();
        while !socket.exists() {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(NetnsError(format!(
                        "wireguard-go {} exited with {status} before making {}: {}",
                        self.iface,
                        socket.display(),
                        self.log()
                    )));
                }
            }
            if started.elapsed() > SOCKET_TIMEOUT {
                return Err(NetnsError(format!(
                    "wireguard-go {} made no {} in {SOCKET_TIMEOUT:?}: {}",
                    self.iface,
                    socket.display(),
                    self.log()
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// `wg ARGS` run in the namespace; its stdout.
    pub fn wg(&self, args: &[impl AsRef<str>]) -> Result<String, NetnsError> {
        let wg = wg_path()?.display().to_string();
        let mut all: Vec<&str> = vec![&wg];
        all.extend(args.iter().map(AsRef::as_ref));
        let out = run_checked(&mut exec_in(&self.ns, &all))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Adds or changes a peer.
    pub fn set_peer(&self, peer: &WgPeer) -> Result<(), NetnsError> {
        let mut words = vec!["set".to_string(), self.iface.clone()];
        words.extend(peer.words());
        self.wg(&words).map(|_| ())
    }

    /// Adds another address (`ip addr add CIDR dev IFACE`), e.g. to send from a forged source.
    pub fn add_address(&self, cidr: &str) -> Result<(), NetnsError> {
        let ip = tool("ip").ok_or_else(|| NetnsError("`ip` is not installed".into()))?;
        run_checked(Command::new(ip).args([
            "-n",
            &self.ns,
            "addr",
            "add",
            cidr,
            "dev",
            &self.iface,
        ]))
        .map(|_| ())
    }

    pub fn iface(&self) -> &str {
        &self.iface
    }

    pub fn public_key(&self) -> &str {
        &self.keys.public
    }

    pub fn keys(&self) -> &WgKeys {
        &self.keys
    }

    /// The UDP port it listens on (in its namespace, on every address).
    pub fn listen_port(&self) -> u16 {
        self.listen_port
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the daemon is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Its log so far (the banner, and more with `LOG_LEVEL=debug` in the environment).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `wg show IFACE` as text.
    pub fn show(&self) -> Result<String, NetnsError> {
        self.wg(&["show", &self.iface])
    }

    /// `wg show IFACE latest-handshakes`: each peer's public key and its last handshake
    /// (`None`: never).
    pub fn latest_handshakes(&self) -> Result<Vec<(String, Option<SystemTime>)>, NetnsError> {
        let out = self.wg(&["show", &self.iface, "latest-handshakes"])?;
        Ok(parse_key_values(&out)
            .into_iter()
            .map(|(key, secs)| {
                let at = (secs > 0).then(|| UNIX_EPOCH + Duration::from_secs(secs));
                (key, at)
            })
            .collect())
    }

    /// The most recent handshake with any peer, `None` if none yet (or `wg` failed).
    pub fn latest_handshake(&self) -> Option<SystemTime> {
        self.latest_handshakes()
            .ok()?
            .into_iter()
            .filter_map(|(_, at)| at)
            .max()
    }

    /// `wg show IFACE transfer`: each peer's public key, bytes received and sent.
    pub fn transfer(&self) -> Result<Vec<(String, u64, u64)>, NetnsError> {
        let out = self.wg(&["show", &self.iface, "transfer"])?;
        Ok(out
            .lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                let key = words.next()?.to_string();
                Some((
                    key,
                    words.next()?.parse().ok()?,
                    words.next()?.parse().ok()?,
                ))
            })
            .collect())
    }

    /// SIGTERM (it removes its socket and interface), up to 3 s, then SIGKILL.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let started = Instant::now();
        while matches!(child.try_wait(), Ok(None)) && started.elapsed() < STOP_GRACE {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_file(socket_path(&self.iface));
    }
}

impl Drop for WireguardGo {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "===== wireguard-go {} in {} =====\n{}\n{}\n===== end =====",
                self.iface,
                self.ns,
                self.show().unwrap_or_else(|e| e.to_string()),
                self.log()
            );
        }
        self.stop();
    }
}

fn socket_path(iface: &str) -> PathBuf {
    Path::new(SOCKET_DIR).join(format!("{iface}.sock"))
}

/// Writes a private key to a file only root can read.
fn write_private(path: &Path, key: &str) -> Result<(), NetnsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| NetnsError(format!("create {}: {e}", path.display())))?;
    writeln!(file, "{key}").map_err(|e| NetnsError(format!("write {}: {e}", path.display())))
}

/// `KEY<TAB>NUMBER` lines.
fn parse_key_values(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            Some((words.next()?.to_string(), words.next()?.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_words_follow_wg_set() {
        let peer = WgPeer {
            public_key: "PUB=".into(),
            endpoint: Some("10.213.0.1:51820".parse().expect("addr")),
            allowed_ips: vec!["100.96.7.1/32".into(), "100.96.8.0/24".into()],
            persistent_keepalive: Some(25),
        };
        assert_eq!(
            peer.words().join(" "),
            "peer PUB= endpoint 10.213.0.1:51820 allowed-ips 100.96.7.1/32,100.96.8.0/24 \
             persistent-keepalive 25"
        );
    }

    #[test]
    fn parses_latest_handshakes() {
        let parsed = parse_key_values("abc=\t1700000000\nxyz=\t0\n");
        assert_eq!(
            parsed,
            vec![("abc=".into(), 1_700_000_000), ("xyz=".into(), 0)]
        );
    }

    #[test]
    fn keys_are_masked_in_debug() {
        let keys = WgKeys {
            private: "PRIVATE-KEY-BASE64".into(),
            public: "pub".into(),
        };
        assert!(!format!("{keys:?}").contains("PRIVATE-KEY-BASE64"));
    }
}

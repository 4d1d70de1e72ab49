//! One `kokoa edge` child process: start, wait until it serves, read its `/health`, restart it
//! with the same data dir.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::api::http_client;
use crate::process::{field, KokoaProcess, StartError};
use crate::puller::PullerSpec;
use crate::{free_port, wait_until_ok, READY_TIMEOUT};

/// What an edge logs once it serves.
const READY_MARKER: &str = "edge listening http=";

/// A loopback address of its own for each edge of this test process: 127.0.0.2, .3, … (after
/// .254 it wraps around to .2). Requests to an edge then show which edge they went to, and two
/// edges never share an address.
pub fn next_edge_ip() -> IpAddr {
    static NEXT: AtomicU8 = AtomicU8::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed) % 253;
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n + 2))
}

/// Everything needed to start (and restart) one edge: the common part (name, files, control,
/// token, extra arguments; reached through `Deref`) and its addresses.
#[derive(Debug, Clone)]
pub struct EdgeSpec {
    pub common: PullerSpec,
    /// `--public-ip`, and the address every listener binds.
    pub ip: IpAddr,
    /// `--http-listen IP:PORT` (0: any free port on the first start, kept for restarts).
    pub http_port: u16,
    /// `--https-listen IP:PORT` (0: any free port on the first start, kept for restarts).
    pub https_port: u16,
    /// `--wg-listen IP:PORT` (registered; must not be 0).
    pub wg_port: u16,
}

impl EdgeSpec {
    /// Edge `name` living in `root/NAME` with its logs beside it, on its own loopback address
    /// ([`next_edge_ip`]), HTTP and HTTPS on port 0, pulling from `control` and registering
    /// with `token`.
    pub fn new(name: &str, root: &Path, control: Vec<String>, token: &str) -> EdgeSpec {
        EdgeSpec {
            common: PullerSpec::new(name, root, control, token),
            ip: next_edge_ip(),
            http_port: 0,
            https_port: 0,
            wg_port: free_port(),
        }
    }

    /// The command line (without the binary).
    pub fn args(&self) -> Vec<String> {
        let listen = |port: u16| SocketAddr::new(self.ip, port).to_string();
        let role_args = vec![
            "--public-ip".into(),
            self.ip.to_string(),
            "--http-listen".into(),
            listen(self.http_port),
            "--https-listen".into(),
            listen(self.https_port),
            "--wg-listen".into(),
            listen(self.wg_port),
        ];
        self.common.args("edge", role_args)
    }
}

impl Deref for EdgeSpec {
    type Target = PullerSpec;

    fn deref(&self) -> &PullerSpec {
        &self.common
    }
}

impl DerefMut for EdgeSpec {
    fn deref_mut(&mut self) -> &mut PullerSpec {
        &mut self.common
    }
}

/// A running (or stopped) `kokoa edge` child: a [`KokoaProcess`] (signals, logs, exit) plus its
/// spec and what its `edge listening http=… https=… id=…` line said.
#[derive(Debug)]
pub struct Edge {
    spec: EdgeSpec,
    process: KokoaProcess,
    http_addr: Option<SocketAddr>,
    https_addr: Option<SocketAddr>,
    id: Option<String>,
    http: reqwest::Client,
}

impl Edge {
    /// Spawns the process and returns at once; call [`Edge::wait_ready`] next.
    pub fn launch(spec: EdgeSpec) -> Edge {
        let process = spec.process("edge");
        let mut edge = Edge {
            spec,
            process,
            http_addr: None,
            https_addr: None,
            id: None,
            http: http_client(),
        };
        edge.spawn();
        edge
    }

    /// Launches and waits until it serves.
    pub async fn start(spec: EdgeSpec) -> Result<Edge, StartError> {
        let mut edge = Edge::launch(spec);
        edge.wait_ready().await?;
        Ok(edge)
    }

    fn spawn(&mut self) {
        self.process
            .spawn(&self.spec.args(), &self.spec.environment());
        self.http_addr = None;
        self.https_addr = None;
    }

    /// Waits (up to [`READY_TIMEOUT`]) for the current process's line
    /// `edge listening http=ADDR https=ADDR id=EDGE_ID`.
    pub async fn wait_ready(&mut self) -> Result<(), StartError> {
        let line = self
            .process
            .wait_for_line(READY_MARKER, READY_TIMEOUT)
            .await?;
        let (http, https, id) = parse_edge_listening(&line)
            .ok_or_else(|| self.process.start_error(format!("unparsable line: {line}")))?;
        self.http_addr = Some(http);
        self.https_addr = Some(https);
        self.id = Some(id);
        // Keep the ports the first start got: the edge registered its HTTP port once (the health
        // checker probes it there), so a restart must not move it.
        if self.spec.http_port == 0 {
            self.spec.http_port = http.port();
        }
        if self.spec.https_port == 0 {
            self.spec.https_port = https.port();
        }
        Ok(())
    }

    /// Starts a stopped edge again with the same spec (data dir, name, address, and the ports
    /// the first start got) and waits until it serves.
    pub async fn restart(&mut self) -> Result<(), StartError> {
        self.spawn();
        self.wait_ready().await
    }

    pub fn spec(&self) -> &EdgeSpec {
        &self.spec
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Its loopback address (also its public IP).
    pub fn ip(&self) -> IpAddr {
        self.spec.ip
    }

    pub fn data_dir(&self) -> &Path {
        &self.spec.data_dir
    }

    /// The edge id from the last `edge listening` line.
    ///
    /// # Panics
    /// Before the edge was ever ready.
    pub fn id(&self) -> &str {
        self.id
            .as_deref()
            .unwrap_or_else(|| panic!("{} never logged its id", self.label()))
    }

    /// The plain-HTTP address of the running process.
    ///
    /// # Panics
    /// When the current process has not logged its `edge listening` line.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
            .unwrap_or_else(|| panic!("{} is not serving", self.label()))
    }

    /// The HTTPS address of the running process.
    ///
    /// # Panics
    /// When the current process has not logged its `edge listening` line.
    pub fn https_addr(&self) -> SocketAddr {
        self.https_addr
            .unwrap_or_else(|| panic!("{} is not serving", self.label()))
    }

    /// `https://HOST:PORT/PATH` for `host` on this edge (resolve `host` to [`Edge::ip`]).
    pub fn https_url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.https_addr().port())
    }

    /// `http://HOST:PORT/PATH` for `host` on this edge's plain-HTTP port.
    pub fn http_url(&self, host: &str, path: &str) -> String {
        format!("http://{host}:{}{path}", self.http_addr().port())
    }

    /// `GET /health` on the plain-HTTP port with the edge's address as Host; the JSON body.
    pub async fn health(&self) -> Result<Value, String> {
        let url = format!("http://{}/health", self.http_addr());
        let response = self
            .http
            .get(&url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| format!("GET {url}: reading the body: {e}"))?;
        if !status.is_success() {
            return Err(format!("GET {url}: {status} {text}"));
        }
        serde_json::from_str(&text).map_err(|e| format!("GET {url}: not JSON ({e}): {text}"))
    }

    /// The config version `/health` reports.
    pub async fn version(&self) -> Result<u64, String> {
        let health = self.health().await?;
        health["version"]
            .as_u64()
            .ok_or_else(|| format!("no numeric version in /health: {health}"))
    }

    /// Waits up to `timeout` until `/health` reports version `min` or newer; returns it.
    pub async fn wait_version(&self, min: u64, timeout: Duration) -> u64 {
        let what = format!("{} to serve config version {min}", self.label());
        wait_until_ok(&what, timeout, || async move {
            let version = self.version().await?;
            if version >= min {
                Ok(version)
            } else {
                Err(format!("version {version}"))
            }
        })
        .await
    }
}

impl Deref for Edge {
    type Target = KokoaProcess;

    fn deref(&self) -> &KokoaProcess {
        &self.process
    }
}

impl DerefMut for Edge {
    fn deref_mut(&mut self) -> &mut KokoaProcess {
        &mut self.process
    }
}

/// Parses `... edge listening http=ADDR https=ADDR id=EDGE_ID ...`.
fn parse_edge_listening(line: &str) -> Option<(SocketAddr, SocketAddr, String)> {
    let rest = &line[line.find(READY_MARKER)? + "edge listening ".len()..];
    let http = field(rest, "http")?.parse().ok()?;
    let https = field(rest, "https")?.parse().ok()?;
    let id = field(rest, "id")?.trim_matches('"');
    (!id.is_empty()).then(|| (http, https, id.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_ready_line() {
        let line = "2026-01-01T00:00:00Z  INFO kokoa_edge: edge listening http=127.0.0.2:8080 \
                    https=127.0.0.2:8443 id=edge_0123";
        let (http, https, id) = parse_edge_listening(line).expect("parse");
        assert_eq!(http, "127.0.0.2:8080".parse().expect("addr"));
        assert_eq!(https.port(), 8443);
        assert_eq!(id, "edge_0123");
        assert!(parse_edge_listening("edge listening http=x https=y id=z").is_none());
    }

    #[test]
    fn edges_get_distinct_loopback_addresses() {
        let (a, b) = (next_edge_ip(), next_edge_ip());
        assert_ne!(a, b);
        assert!(a.is_loopback() && b.is_loopback());
    }
}

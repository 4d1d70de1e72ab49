//! Clients of an edge, the way internet users reach it: every hostname resolves to the edge's
//! address (reqwest with its own resolver, curl with `--resolve`), and HTTPS trusts only the
//! test's CA.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::{Edge, TestCa};

/// Resolves every name to one address (the URL's port is kept).
#[derive(Debug, Clone, Copy)]
struct ResolveTo(IpAddr);

impl Resolve for ResolveTo {
    fn resolve(&self, _name: Name) -> Resolving {
        let addr = SocketAddr::new(self.0, 0);
        Box::pin(async move { Ok(Box::new(std::iter::once(addr)) as Addrs) })
    }
}

/// How an [`edge_client`] connects.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions<'a> {
    /// Trust this CA (and nothing else); `None`: accept any certificate.
    pub ca: Option<&'a TestCa>,
    /// Connect from this local address (e.g. `127.0.0.77`, to see it in `X-Forwarded-For`).
    pub local_ip: Option<IpAddr>,
    /// Follow redirects (default: no, so tests see them).
    pub follow_redirects: bool,
    /// No deadline for a whole request (for long downloads): only connecting (5 s) and each
    /// read (30 s) are bounded.
    pub long_transfers: bool,
}

/// A reqwest client that sends every hostname to `edge_ip` (use URLs from
/// [`Edge::https_url`] / [`Edge::http_url`]), HTTP/1.1, 20 s per request, no proxy.
pub fn edge_client(edge_ip: IpAddr, options: &ClientOptions<'_>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .dns_resolver(Arc::new(ResolveTo(edge_ip)))
        .connect_timeout(Duration::from_secs(5))
        .no_proxy()
        .tls_built_in_root_certs(false);
    builder = match options.ca {
        Some(ca) => builder.add_root_certificate(
            reqwest::Certificate::from_pem(ca.pem().as_bytes()).expect("the CA's PEM parses"),
        ),
        None => builder.danger_accept_invalid_certs(true),
    };
    if !options.follow_redirects {
        builder = builder.redirect(reqwest::redirect::Policy::none());
    }
    builder = if options.long_transfers {
        builder.read_timeout(Duration::from_secs(30))
    } else {
        builder.timeout(Duration::from_secs(20))
    };
    if let Some(ip) = options.local_ip {
        builder = builder.local_address(ip);
    }
    builder.build().expect("build the edge client")
}

/// What `curl` printed about one request.
#[derive(Debug, Clone)]
pub struct CurlOutput {
    /// Whether curl exited with 0.
    pub success: bool,
    /// curl's exit code.
    pub exit_code: Option<i32>,
    /// `%{http_code}` (0 when there was no answer).
    pub status: u16,
    /// `%{http_version}`: `1.1`, `2`.
    pub http_version: String,
    pub body: String,
    /// curl's `-v` output: the TLS handshake, the certificate, the headers.
    pub verbose: String,
}

impl CurlOutput {
    /// A one-line summary for assertion messages.
    pub fn summary(&self) -> String {
        let last_lines: Vec<&str> = self.verbose.lines().rev().take(12).collect();
        format!(
            "curl exit {:?}, status {}, HTTP/{}, body {:?}; verbose tail:\n{}",
            self.exit_code,
            self.status,
            self.http_version,
            truncate(&self.body, 300),
            last_lines.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    }
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

/// Marks curl's `-w` output at the end of stdout.
const WRITE_OUT_MARK: &str = "\n@@kokoa-curl@@";

/// Runs `curl -sS -v ARGS URL` against `edge`: `host` resolves to the edge (on the port of
/// `url`), `ca` (when given) is the only trusted CA, 20 s at most.
pub async fn curl_edge(
    edge: &Edge,
    url: &str,
    host: &str,
    ca: Option<&Path>,
    args: &[&str],
) -> CurlOutput {
    let port = url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|authority| authority.rsplit_once(':'))
        .and_then(|(_, port)| port.parse::<u16>().ok())
        .unwrap_or_else(|| panic!("{url} has no explicit port"));
    let mut command = tokio::process::Command::new("curl");
    command
        .args(["-sS", "-v", "--max-time", "20", "--noproxy", "*"])
        .arg("--resolve")
        .arg(format!("{host}:{port}:{}", edge.ip()))
        .arg("-w")
        .arg(format!("{WRITE_OUT_MARK} %{{http_code}} %{{http_version}}"));
    if let Some(ca) = ca {
        command.arg("--cacert").arg(ca);
    }
    command
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = command
        .output()
        .await
        .unwrap_or_else(|e| panic!("run curl (is it installed?): {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, write_out) = stdout
        .rsplit_once(WRITE_OUT_MARK)
        .unwrap_or((stdout.as_str(), ""));
    let mut fields = write_out.split_whitespace();
    let status = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let http_version = fields.next().unwrap_or("").to_string();
    CurlOutput {
        success: output.status.success(),
        exit_code: output.status.code(),
        status,
        http_version,
        body: body.to_string(),
        verbose: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

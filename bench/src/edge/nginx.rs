//! The nginx side, as in `shared/peers/nginx.sh`: an upstream nginx (1 worker) answering
//! `return 200 "ok\n"`, and an nginx reverse proxy terminating TLS (self-signed ECDSA P-256
//! certificate made with `openssl`) and serving plain HTTP, with a keep-alive pool to the
//! upstream. Each instance runs in the foreground (`daemon off`) from its own prefix directory,
//! so nothing touches `/var/lib/nginx` or `/etc/nginx`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context;

use super::procs::Proc;

/// Debian's nginx binary.
const NGINX: &str = "/usr/sbin/nginx";

/// `nginx -v`'s version (`1.22.1`), or an error saying how to install it.
pub fn version() -> anyhow::Result<String> {
    let output = Command::new(nginx_bin())
        .arg("-v")
        .output()
        .context("run nginx -v (install it: apt-get install nginx, or run bench/edge-bench.sh)")?;
    let text = String::from_utf8_lossy(&output.stderr);
    text.trim()
        .rsplit('/')
        .next()
        .map(str::to_string)
        .filter(|v| !v.is_empty())
        .with_context(|| format!("no version in `nginx -v`: {text}"))
}

fn nginx_bin() -> PathBuf {
    if Path::new(NGINX).exists() {
        PathBuf::from(NGINX)
    } else {
        PathBuf::from("nginx")
    }
}

/// Makes `dir/cert.pem` and `dir/key.pem`: EC P-256, self-signed, `CN=name`, as
/// `shared/peers/lib.sh` `selfsigned` does.
pub fn self_signed_cert(dir: &Path, name: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let output = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "30",
            "-subj",
        ])
        .arg(format!("/CN={name}"))
        .arg("-addext")
        .arg(format!(
            "subjectAltName=DNS:{name},DNS:localhost,IP:127.0.0.1"
        ))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdin(Stdio::null())
        .output()
        .context("run openssl req (apt-get install openssl)")?;
    anyhow::ensure!(
        output.status.success(),
        "openssl req failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok((cert, key))
}

/// What differs between the two instances.
#[derive(Debug, Clone)]
pub enum Role {
    /// `return 200 "ok\n"` on one port, 1 worker.
    Upstream { port: u16 },
    /// Reverse proxy: plain HTTP on `http_port`, TLS on `https_port`, to `upstream_port`.
    Proxy {
        workers: u32,
        http_port: u16,
        https_port: u16,
        upstream_port: u16,
        cert: PathBuf,
        key: PathBuf,
    },
}

/// The whole `nginx.conf` for `role`, with every path under `prefix`.
pub fn config(prefix: &Path, role: &Role) -> String {
    let p = prefix.display();
    let common = format!(
        "daemon off;\n\
         master_process on;\n\
         pid {p}/nginx.pid;\n\
         error_log {p}/error.log warn;\n\
         events {{ worker_connections 4096; }}\n"
    );
    let temp_paths = format!(
        "  client_body_temp_path {p}/cb; proxy_temp_path {p}/pt; fastcgi_temp_path {p}/ft;\n  \
         uwsgi_temp_path {p}/ut; scgi_temp_path {p}/st;\n"
    );
    match role {
        Role::Upstream { port } => format!(
            "{common}worker_processes 1;\n\
             http {{\n  access_log off;\n{temp_paths}  keepalive_requests 1000000;\n  \
             server {{ listen 127.0.0.1:{port}; location / {{ return 200 \"ok\\n\"; }} }}\n}}\n"
        ),
        Role::Proxy {
            workers,
            http_port,
            https_port,
            upstream_port,
            cert,
            key,
        } => format!(
            "{common}worker_processes {workers};\n\
             http {{\n  access_log off;\n{temp_paths}  keepalive_requests 1000000;\n  \
             upstream up {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}\n  \
             server {{\n    \
               listen 127.0.0.1:{http_port};\n    \
               listen 127.0.0.1:{https_port} ssl;\n    \
               ssl_certificate {cert}; ssl_certificate_key {key};\n    \
               ssl_protocols TLSv1.2 TLSv1.3;\n    \
               location / {{\n      \
                 proxy_pass http://up;\n      \
                 proxy_http_version 1.1;\n      \
                 proxy_set_header Connection \"\";\n      \
                 proxy_set_header Host $host;\n    \
               }}\n  \
             }}\n}}\n",
            cert = cert.display(),
            key = key.display()
        ),
    }
}

/// One running nginx instance (master + workers). Dropping it stops all of them.
#[derive(Debug)]
pub struct Nginx {
    pub proc: Proc,
    pub role: Role,
}

impl Nginx {
    /// Writes `prefix/nginx.conf`, checks it with `nginx -t`, starts nginx in the foreground.
    /// Returns once it runs; wait for its ports separately.
    pub fn start(prefix: &Path, role: Role) -> anyhow::Result<Nginx> {
        std::fs::create_dir_all(prefix).with_context(|| format!("create {}", prefix.display()))?;
        let conf = prefix.join("nginx.conf");
        std::fs::write(&conf, config(prefix, &role))
            .with_context(|| format!("write {}", conf.display()))?;
        let args = vec![
            "-p".to_string(),
            prefix.display().to_string(),
            "-c".to_string(),
            conf.display().to_string(),
        ];
        let test = Command::new(nginx_bin())
            .arg("-t")
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .context("run nginx -t")?;
        anyhow::ensure!(
            test.status.success(),
            "nginx -t {}: {}",
            conf.display(),
            String::from_utf8_lossy(&test.stderr)
        );
        let proc = Proc::spawn(
            "nginx",
            &nginx_bin(),
            &args,
            &[],
            &prefix.join("stderr.log"),
        )?;
        Ok(Nginx { proc, role })
    }

    /// The addresses wrk should load (`http`, `https`), for a proxy.
    pub fn proxy_addrs(&self) -> Option<(SocketAddr, SocketAddr)> {
        match self.role {
            Role::Proxy {
                http_port,
                https_port,
                ..
            } => Some((
                SocketAddr::from(([127, 0, 0, 1], http_port)),
                SocketAddr::from(([127, 0, 0, 1], https_port)),
            )),
            Role::Upstream { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_config_matches_the_peer_script() {
        let conf = config(
            Path::new("/tmp/x"),
            &Role::Proxy {
                workers: 2,
                http_port: 1,
                https_port: 2,
                upstream_port: 3,
                cert: "/tmp/x/cert.pem".into(),
                key: "/tmp/x/key.pem".into(),
            },
        );
        for needle in [
            "worker_processes 2;",
            "access_log off;",
            "upstream up { server 127.0.0.1:3; keepalive 64; }",
            "listen 127.0.0.1:1;",
            "listen 127.0.0.1:2 ssl;",
            "proxy_http_version 1.1;",
            "proxy_set_header Connection \"\";",
            "proxy_set_header Host $host;",
            "pid /tmp/x/nginx.pid;",
        ] {
            assert!(conf.contains(needle), "missing {needle:?} in\n{conf}");
        }
        let up = config(Path::new("/tmp/u"), &Role::Upstream { port: 9 });
        assert!(up.contains("worker_processes 1;"));
        assert!(up.contains("listen 127.0.0.1:9; location / { return 200 \"ok\\n\"; }"));
    }
}

//! `kokoa dev`: a whole deployment on loopback, as real processes: a 3-replica control plane,
//! an edge and an agent, plus a sample app run in this process. Two routes: `ui.kokoa.localhost`
//! (the web UI, a direct origin) and `app.kokoa.localhost` (the sample app, reached through the
//! agent of the tunnel origin `home`). State is kept in `--data-dir`, so running it again brings
//! the same deployment back.

mod app;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use crate::cli::{ApiArgs, DevArgs};
use crate::client::ApiClient;
use crate::files;

const REPLICAS: u64 = 3;
/// The demo route: the web UI of replica 1, published through the edge.
const DEMO_HOST: &str = "ui.kokoa.localhost";
/// The sample app's route, through the agent.
const APP_HOST: &str = "app.kokoa.localhost";
/// The tunnel origin the agent belongs to.
const APP_ORIGIN: &str = "home";
/// What the agent logs once its tunnel runs.
const AGENT_READY: &str = "agent running id=";
/// How long to wait for the cluster to elect a leader.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Ports chosen at the first run, reused later (static membership needs stable addresses).
#[derive(Debug, Serialize, Deserialize)]
struct DevLayout {
    api_ports: Vec<u16>,
    peer_ports: Vec<u16>,
    /// The edge's HTTP, HTTPS and WireGuard ports.
    #[serde(default)]
    edge_ports: Vec<u16>,
    /// The sample app's port (its route's target).
    #[serde(default)]
    app_port: u16,
}

/// `n` loopback ports free right now.
fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let holds = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(holds
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .map(|a| a.port())
        .collect())
}

fn layout(dir: &Path) -> anyhow::Result<DevLayout> {
    let path = dir.join("dev.json");
    let mut layout = match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("{} is damaged; remove {}", path.display(), dir.display()))?,
        Err(_) => {
            let ports = free_ports(2 * REPLICAS as usize)?;
            DevLayout {
                api_ports: ports[..REPLICAS as usize].to_vec(),
                peer_ports: ports[REPLICAS as usize..].to_vec(),
                edge_ports: Vec::new(),
                app_port: 0,
            }
        }
    };
    if layout.edge_ports.len() != 3 {
        layout.edge_ports = free_ports(3)?;
    }
    if layout.app_port == 0 {
        layout.app_port = free_ports(1)?[0];
    }
    std::fs::write(&path, serde_json::to_string_pretty(&layout)?)?;
    Ok(layout)
}

pub async fn run(args: DevArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let dir = &args.data_dir;
    files::create_private_dir(dir)?;
    let secret = match files::read_secret(&dir.join("cluster.secret"))? {
        Some(s) => s,
        None => {
            let s = files::random_secret();
            files::write_secret(&dir.join("cluster.secret"), &s)?;
            s
        }
    };
    let admin_token = match files::read_secret(&dir.join("admin.token"))? {
        Some(t) => t,
        None => {
            let t = format!("dev-admin-{}", files::random_secret());
            files::write_secret(&dir.join("admin.token"), &t)?;
            t
        }
    };
    let layout = layout(dir)?;
    let peers: Vec<String> = (1..=REPLICAS)
        .map(|id| format!("{id}=127.0.0.1:{}", layout.peer_ports[id as usize - 1]))
        .collect();
    let exe = std::env::current_exe().context("cannot find the kokoa binary")?;

    let mut children: Vec<Child> = Vec::new();
    for id in 1..=REPLICAS {
        let i = id as usize - 1;
        let log = std::fs::File::create(dir.join(format!("replica-{id}.log")))?;
        let mut cmd = Command::new(&exe);
        cmd.arg("server")
            .arg("--id")
            .arg(id.to_string())
            .arg("--data-dir")
            .arg(dir.join(format!("replica-{id}")))
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", layout.api_ports[i]))
            .arg("--peer-listen")
            .arg(format!("127.0.0.1:{}", layout.peer_ports[i]))
            .arg("--peers")
            .arg(peers.join(","))
            .env("KOKOA_CLUSTER_SECRET", &secret)
            .env("NO_COLOR", "1")
            .env("KOKOA_INIT_ADMIN_TOKEN", &admin_token)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        if id == 1 {
            cmd.arg("--init");
        }
        children.push(cmd.spawn().context("cannot start a replica")?);
    }

    let urls: Vec<String> = (0..REPLICAS as usize)
        .map(|i| format!("http://127.0.0.1:{}", layout.api_ports[i]))
        .collect();
    let admin = ApiClient::new(&ApiArgs {
        server: urls[0].clone(),
        token: Some(admin_token.clone()),
        json: true,
    })?;
    let result = tokio::select! {
        r = wait_for_cluster(&admin, &mut children, dir) => r,
        _ = shutdown.cancelled() => Ok(()),
    };
    let result = match result {
        Ok(()) if !shutdown.is_cancelled() => {
            tokio::select! {
                r = start_edge(&exe, dir, &layout, &urls, &admin, &mut children) => r,
                _ = shutdown.cancelled() => Ok(()),
            }
        }
        other => other,
    };
    let app_addr = SocketAddr::from(([127, 0, 0, 1], layout.app_port));
    let mut app_server = None;
    let result = match result {
        Ok(()) if !shutdown.is_cancelled() => match app::bind(app_addr, shutdown.clone()).await {
            Ok((_, serve)) => {
                app_server = Some(tokio::spawn(serve));
                tokio::select! {
                    r = start_agent(&exe, dir, app_addr, &urls, &admin, &mut children) => r,
                    _ = shutdown.cancelled() => Ok(()),
                }
            }
            Err(e) => Err(anyhow::anyhow!(
                "cannot start the sample app on {app_addr}: {e} (remove {} to pick new ports)",
                dir.display()
            )),
        },
        other => other,
    };
    let [edge_http, edge_https, _] = layout.edge_ports[..] else {
        bail!("dev.json has no edge ports");
    };
    match result {
        Ok(()) if !shutdown.is_cancelled() => {
            println!(
                "Kokoa dev: a 3-replica control plane, an edge and an agent are running on loopback."
            );
            for (i, url) in urls.iter().enumerate() {
                println!(
                    "  replica {}: {url}   (log: {})",
                    i + 1,
                    dir.join(format!("replica-{}.log", i + 1)).display()
                );
            }
            println!(
                "  edge:      http://127.0.0.1:{edge_http}  https://127.0.0.1:{edge_https}   (log: {})",
                dir.join("edge.log").display()
            );
            println!(
                "  agent:     origin {APP_ORIGIN}, tunnels to the edge   (log: {})",
                dir.join("agent.log").display()
            );
            println!("  sample app: http://{app_addr}/");
            println!();
            println!("The sample app, through the edge and the agent's WireGuard tunnel:");
            println!(
                "  curl -k --resolve {APP_HOST}:{edge_https}:127.0.0.1 https://{APP_HOST}:{edge_https}/"
            );
            println!("  (or https://{APP_HOST}:{edge_https}/ in a browser)");
            println!();
            println!(
                "Web UI: open {} and sign in with the admin token below; or through the edge:",
                urls[0]
            );
            println!(
                "  https://{DEMO_HOST}:{edge_https}/  (a self-signed certificate: accept it, or"
            );
            println!(
                "  curl -k --resolve {DEMO_HOST}:{edge_https}:127.0.0.1 https://{DEMO_HOST}:{edge_https}/healthz)"
            );
            println!();
            println!("Use it from another terminal:");
            println!(
                "  export KOKOA_SERVER={} KOKOA_TOKEN={admin_token}",
                urls[0]
            );
            println!("  kokoa cluster status");
            println!("  kokoa origin add lab --kind direct");
            println!("  kokoa route add app.example.com --origin lab --target localhost:8080");
            println!(
                "  curl -k --resolve app.example.com:{edge_https}:127.0.0.1 https://app.example.com:{edge_https}/"
            );
            println!("  kokoa route ls");
            println!(
                "Kill a replica (kill -9) and watch the others carry on. Ctrl-C stops everything;"
            );
            println!("the state stays in {} for the next run.", dir.display());
            shutdown.cancelled().await;
        }
        Ok(()) => {}
        Err(e) => {
            stop_all(&mut children).await;
            if let Some(server) = app_server {
                server.abort();
            }
            return Err(e);
        }
    }
    stop_all(&mut children).await;
    if let Some(server) = app_server {
        shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    }
    Ok(())
}

async fn wait_for_cluster(
    client: &ApiClient,
    children: &mut [Child],
    dir: &Path,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(st) = client.get("/api/v1/cluster").await {
            let voters = st["members"]
                .as_array()
                .map_or(0, |m| m.iter().filter(|m| m["voter"] == true).count());
            if st["leader_id"].is_u64() && voters == REPLICAS as usize {
                return Ok(());
            }
        }
        for (i, child) in children.iter_mut().enumerate() {
            if let Ok(Some(status)) = child.try_wait() {
                let log = dir.join(format!("replica-{}.log", i + 1));
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                let last = tail
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("")
                    .to_string();
                bail!(
                    "replica {} exited ({status}): {last} (see {})",
                    i + 1,
                    log.display()
                );
            }
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the dev cluster did not elect a leader within {START_TIMEOUT:?}; see the replica logs");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// SIGTERMs every child (replicas, edge, agent) and waits for them to exit (SIGKILL after a grace period).
async fn stop_all(children: &mut [Child]) {
    for child in children.iter() {
        if let Some(pid) = child.id() {
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
    }
    for child in children.iter_mut() {
        if tokio::time::timeout(Duration::from_secs(6), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
    }
}

/// Registers (first run) and starts the edge, publishes the demo route on the first run, and
/// waits until the edge serves a config.
async fn start_edge(
    exe: &Path,
    dir: &Path,
    layout: &DevLayout,
    urls: &[String],
    client: &ApiClient,
    children: &mut Vec<Child>,
) -> anyhow::Result<()> {
    let edge_dir = dir.join("edge");
    let first_run = !edge_dir.join("registration.json").exists();
    let bootstrap = if first_run {
        let made = client
            .post("/api/v1/tokens", json!({"role": "edge", "max_uses": 1}))
            .await?;
        made["token"].as_str().unwrap_or_default().to_string()
    } else {
        String::new()
    };
    if first_run && client.get("/api/v1/routes").await?["items"] == json!([]) {
        let origin = client
            .post(
                "/api/v1/origins",
                json!({"name": "kokoa-ui", "kind": "direct"}),
            )
            .await?;
        client
            .post(
                "/api/v1/routes",
                json!({
                    "hostname": DEMO_HOST,
                    "origin_id": origin["id"],
                    "target": urls[0].trim_start_matches("http://"),
                    "rate_limit": {"per_second": 100, "burst": 200},
                }),
            )
            .await?;
    }
    let [http, https, wg] = layout.edge_ports[..] else {
        bail!("dev.json has no edge ports");
    };
    let log = std::fs::File::create(dir.join("edge.log"))?;
    let mut cmd = Command::new(exe);
    cmd.arg("edge")
        .arg("--control")
        .arg(urls.join(","))
        .arg("--data-dir")
        .arg(&edge_dir)
        .arg("--public-ip")
        .arg("127.0.0.1")
        .arg("--http-listen")
        .arg(format!("127.0.0.1:{http}"))
        .arg("--https-listen")
        .arg(format!("127.0.0.1:{https}"))
        .arg("--wg-listen")
        .arg(format!("127.0.0.1:{wg}"))
        .env("KOKOA_TOKEN", &bootstrap)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    children.push(cmd.spawn().context("cannot start the edge")?);

    let health = format!("http://127.0.0.1:{http}/health");
    let http_client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(resp) = http_client.get(&health).send().await {
            if let Ok(body) = resp.json::<serde_json::Value>().await {
                if body["version"].as_u64().unwrap_or(0) > 0 {
                    return Ok(());
                }
            }
        }
        if let Some(edge) = children.last_mut() {
            if let Ok(Some(status)) = edge.try_wait() {
                bail!(
                    "the edge exited ({status}); see {}",
                    dir.join("edge.log").display()
                );
            }
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "the edge served no config within {START_TIMEOUT:?}; see {}",
                dir.join("edge.log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Makes sure the tunnel origin [`APP_ORIGIN`] and the route [`APP_HOST`] to the sample app
/// exist, registers the agent on its first run, starts it and waits until its tunnel runs.
async fn start_agent(
    exe: &Path,
    dir: &Path,
    app: SocketAddr,
    urls: &[String],
    client: &ApiClient,
    children: &mut Vec<Child>,
) -> anyhow::Result<()> {
    let origins = client.get("/api/v1/origins").await?;
    let known = origins["items"]
        .as_array()
        .and_then(|items| items.iter().find(|o| o["name"] == APP_ORIGIN))
        .cloned();
    let origin = match known {
        Some(origin) => origin,
        None => {
            client
                .post(
                    "/api/v1/origins",
                    json!({"name": APP_ORIGIN, "kind": "tunnel"}),
                )
                .await?
        }
    };
    let routes = client.get("/api/v1/routes").await?;
    let routed = routes["items"]
        .as_array()
        .is_some_and(|items| items.iter().any(|r| r["hostname"] == APP_HOST));
    if !routed {
        client
            .post(
                "/api/v1/routes",
                json!({
                    "hostname": APP_HOST,
                    "origin_id": origin["id"],
                    "target": app.to_string(),
                    "rate_limit": {"per_second": 100, "burst": 200},
                }),
            )
            .await?;
    }
    let agent_dir = dir.join("agent");
    let token = if agent_dir.join("registration.json").exists() {
        String::new()
    } else {
        let made = client
            .post(
                "/api/v1/tokens",
                json!({"role": "agent", "origin_id": origin["id"], "max_uses": 1}),
            )
            .await?;
        made["token"].as_str().unwrap_or_default().to_string()
    };
    let log_path = dir.join("agent.log");
    let log = std::fs::File::create(&log_path)?;
    let mut cmd = Command::new(exe);
    cmd.arg("agent")
        .arg("--control")
        .arg(urls.join(","))
        .arg("--data-dir")
        .arg(&agent_dir)
        .arg("--name")
        .arg("dev-agent")
        .arg("--wg-listen")
        .arg("127.0.0.1:0")
        .env("KOKOA_TOKEN", &token)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    children.push(cmd.spawn().context("cannot start the agent")?);

    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    loop {
        let logged = std::fs::read_to_string(&log_path).unwrap_or_default();
        if logged.contains(AGENT_READY) {
            return Ok(());
        }
        if let Some(agent) = children.last_mut() {
            if let Ok(Some(status)) = agent.try_wait() {
                let last = logged.lines().rev().find(|l| !l.trim().is_empty());
                bail!(
                    "the agent exited ({status}): {} (see {})",
                    last.unwrap_or(""),
                    log_path.display()
                );
            }
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "the agent did not start its tunnel within {START_TIMEOUT:?}; see {}",
                log_path.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

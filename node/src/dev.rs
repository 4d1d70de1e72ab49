//! `kokoa dev`: a whole deployment on loopback, as real processes — for now a 3-replica
//! control plane (edges and agents join it as they arrive). State is kept in `--data-dir`, so
//! running it again brings the same cluster back.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use crate::cli::{ApiArgs, DevArgs};
use crate::client::ApiClient;
use crate::files;

const REPLICAS: u64 = 3;
/// How long to wait for the cluster to elect a leader.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Ports chosen at the first run, reused later (static membership needs stable addresses).
#[derive(Debug, Serialize, Deserialize)]
struct DevLayout {
    api_ports: Vec<u16>,
    peer_ports: Vec<u16>,
}

fn layout(dir: &Path) -> anyhow::Result<DevLayout> {
    let path = dir.join("dev.json");
    if let Ok(text) = std::fs::read_to_string(&path) {
        return serde_json::from_str(&text)
            .with_context(|| format!("{} is damaged; remove {}", path.display(), dir.display()));
    }
    let mut ports = Vec::new();
    let mut holds = Vec::new();
    for _ in 0..2 * REPLICAS {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        ports.push(l.local_addr()?.port());
        holds.push(l);
    }
    drop(holds);
    let layout = DevLayout {
        api_ports: ports[..REPLICAS as usize].to_vec(),
        peer_ports: ports[REPLICAS as usize..].to_vec(),
    };
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

    let api = |i: usize| format!("http://127.0.0.1:{}", layout.api_ports[i]);
    let first = api(0);
    let result = tokio::select! {
        r = wait_for_cluster(&first, &admin_token, &mut children, dir) => r,
        _ = shutdown.cancelled() => Ok(()),
    };
    match result {
        Ok(()) if !shutdown.is_cancelled() => {
            println!("Kokoa dev: a 3-replica control plane is running on loopback.");
            for i in 0..REPLICAS as usize {
                println!(
                    "  replica {}: {}   (log: {})",
                    i + 1,
                    api(i),
                    dir.join(format!("replica-{}.log", i + 1)).display()
                );
            }
            println!();
            println!(
                "Web UI: open {} and sign in with the admin token below.",
                api(0)
            );
            println!();
            println!("Use it from another terminal:");
            println!("  export KOKOA_SERVER={} KOKOA_TOKEN={admin_token}", api(0));
            println!("  kokoa cluster status");
            println!("  kokoa origin add home");
            println!("  kokoa route add app.example.com --origin home --target localhost:8080");
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
            return Err(e);
        }
    }
    stop_all(&mut children).await;
    Ok(())
}

async fn wait_for_cluster(
    url: &str,
    token: &str,
    children: &mut [Child],
    dir: &Path,
) -> anyhow::Result<()> {
    let client = ApiClient::new(&ApiArgs {
        server: url.to_string(),
        token: Some(token.to_string()),
        json: true,
    })?;
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

/// SIGTERMs every replica and waits for them to exit (SIGKILL after a grace period).
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

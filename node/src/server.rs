//! `kokoa server`: one control-plane replica — its listeners, raft, bootstrap (`--init`,
//! `--peers`, `--join`), the admin token at initialisation, and graceful shutdown.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use kokoa_raft::{Command, RaftNode, RaftOptions, ReplicaNode};
use kokoa_store::{DnsZone, ReplicaInfo, Role};
use kokoa_web::auth::{new_token, unix_now, PresentedToken, TokenSpec};
use kokoa_web::ApiContext;
use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cli::ServerArgs;
use crate::files::{self, ADMIN_TOKEN, CLUSTER_SECRET};

/// Accept queue length of the listeners (the kernel caps it at net.core.somaxconn).
const LISTEN_BACKLOG: u32 = 4096;
/// How long shutdown waits for open connections and tasks before exiting anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// How long a join may take (the new replica catches up first).
const JOIN_TIMEOUT: Duration = Duration::from_secs(180);

/// Runs a replica until `shutdown` is cancelled or raft stops on a fatal error.
pub async fn run(args: ServerArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    if args.id == 0 {
        bail!("--id must be 1 or more");
    }
    if let Some(peers) = &args.peers {
        if !peers.0.iter().any(|(id, _)| *id == args.id) {
            bail!("--peers does not list this replica's --id {}", args.id);
        }
    }
    files::create_private_dir(&args.data_dir)?;
    let secret = cluster_secret(&args)?;

    let api_listener = listen(args.listen)
        .with_context(|| format!("cannot listen on {} (--listen)", args.listen))?;
    let peer_listener = listen(args.peer_listen)
        .with_context(|| format!("cannot listen on {} (--peer-listen)", args.peer_listen))?;
    let api_addr = api_listener.local_addr()?;
    let peer_addr = peer_listener.local_addr()?;

    let node = RaftNode::open(RaftOptions {
        id: args.id,
        data_dir: args.data_dir.clone(),
        secret: secret.clone(),
        // Peer connections come from the peer listener's address when it is a specific one, so
        // that firewalls (and the chaos suite's partitions) can tell replicas apart.
        peer_source: Some(peer_addr.ip()).filter(|ip| !ip.is_unspecified()),
        election_timeout_ms: args.election_timeout_ms,
        snapshot_every: args.snapshot_every,
    })
    .await
    .context("cannot open the replica's storage")?;
    let ctx = ApiContext::new(node.clone(), &secret);

    let tasks = TaskTracker::new();
    tasks.spawn(serve(
        "api",
        api_listener,
        kokoa_web::router(ctx.clone()),
        shutdown.clone(),
    ));
    tasks.spawn(serve(
        "peer",
        peer_listener,
        node.peer_router(),
        shutdown.clone(),
    ));

    let dns_addr = match args.dns_listen {
        Some(addr) => Some(start_dns(addr, &node, &tasks, &shutdown)?),
        None => None,
    };

    if args.init {
        node.initialize(initial_members(&args, api_addr, peer_addr))
            .await?;
    }
    match dns_addr {
        Some(dns) => {
            tracing::info!(
                id = args.id,
                "listening api={api_addr} peer={peer_addr} dns={dns}"
            )
        }
        None => tracing::info!(id = args.id, "listening api={api_addr} peer={peer_addr}"),
    }

    if let (Some(url), Some(token)) = (&args.join, &args.join_token) {
        if !node.is_initialized().await? {
            let joined = tokio::select! {
                r = join(url, token, args.id, api_addr, peer_addr) => r,
                _ = shutdown.cancelled() => Ok(()),
            };
            if let Err(e) = joined {
                shutdown.cancel();
                tasks.close();
                node.shutdown().await;
                let _ = tokio::time::timeout(SHUTDOWN_GRACE, tasks.wait()).await;
                return Err(e);
            }
        }
    }
    tasks.spawn(record_api_addr(ctx.clone(), api_addr, shutdown.clone()));
    tasks.spawn(commit_last_seen(ctx.clone(), shutdown.clone()));
    if !args.dns_zones.is_empty() {
        tasks.spawn(ensure_dns_zones(
            ctx.clone(),
            args.dns_zones.clone(),
            shutdown.clone(),
        ));
    }
    tasks.spawn(crate::health::run(ctx.clone(), shutdown.clone()));
    if args.init {
        tasks.spawn(ensure_admin_token(
            ctx.clone(),
            args.data_dir.clone(),
            shutdown.clone(),
        ));
    }
    tasks.close();

    let outcome = tokio::select! {
        _ = shutdown.cancelled() => Ok(()),
        reason = node.stopped() => Err(anyhow::anyhow!("raft stopped: {reason}")),
    };
    tracing::info!("shutting down");
    shutdown.cancel();
    node.shutdown().await;
    if tokio::time::timeout(SHUTDOWN_GRACE, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not close in time");
    }
    outcome
}

/// Binds the DNS sockets (one UDP socket per core) and starts answering from the local state
/// (once its first snapshot is in: `kokoa_dns::serve_state`).
fn start_dns(
    addr: SocketAddr,
    node: &RaftNode,
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let listeners = kokoa_dns::DnsListeners::bind(addr, cores).context("--dns-listen")?;
    let bound = listeners.local_addr();
    tasks.spawn(kokoa_dns::serve_state(
        listeners,
        node.state().clone(),
        node.version_watch(),
        shutdown.clone(),
    ));
    Ok(bound)
}

/// Makes sure every `--dns-zone` is a managed zone (retried until there is a leader).
async fn ensure_dns_zones(ctx: ApiContext, zones: Vec<String>, shutdown: CancellationToken) {
    for zone in zones {
        retry_until_done(&shutdown, "create the DNS zone", || async {
            let known = ctx.read_local(|r| r.dns_zones()).await?;
            if known.iter().any(|z| z.name == zone) {
                return Ok(());
            }
            let cmd = Command::CreateDnsZone(DnsZone {
                name: zone.clone(),
                created_at: unix_now(),
            });
            match ctx.write(cmd).await {
                Ok(_) => Ok(()),
                // Another replica created it first.
                Err(e) if e.code == "name_taken" => Ok(()),
                Err(e) => Err(e),
            }
        })
        .await;
    }
}

/// Binds a TCP listener with a deep accept queue: thousands of edges and agents reconnecting at
/// once (after a replica restart) should queue, not be dropped and retried a second later.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves `router` on `listener` until `shutdown`.
async fn serve(
    name: &'static str,
    listener: TcpListener,
    router: axum::Router,
    shutdown: CancellationToken,
) {
    let result = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.cancelled_owned())
    .await;
    if let Err(e) = result {
        tracing::error!(listener = name, error = %e, "server stopped");
    }
}

/// Finds the cluster secret: the data dir's copy, else a join token's, else
/// `KOKOA_CLUSTER_SECRET`, else (for a new one-replica cluster) a fresh one. Saved in the data dir.
fn cluster_secret(args: &ServerArgs) -> anyhow::Result<String> {
    let path = args.data_dir.join(CLUSTER_SECRET);
    let from_env = std::env::var("KOKOA_CLUSTER_SECRET")
        .ok()
        .filter(|s| !s.trim().is_empty());
    if let Some(stored) = files::read_secret(&path)? {
        if from_env.as_deref().is_some_and(|e| e.trim() != stored) {
            bail!(
                "KOKOA_CLUSTER_SECRET differs from the secret kept in {}",
                path.display()
            );
        }
        return Ok(stored);
    }
    let from_token = match &args.join_token {
        Some(t) => Some(
            PresentedToken::parse(t)
                .ok()
                .and_then(|p| p.cluster_secret)
                .context("--join-token is not a server token (make one with `kokoa token create --role server`)")?,
        ),
        None => None,
    };
    let secret = match (from_token, from_env) {
        (Some(s), _) => s,
        (None, Some(s)) => s.trim().to_string(),
        (None, None) if args.init && args.peers.is_none() => files::random_secret(),
        (None, None) => bail!("set KOKOA_CLUSTER_SECRET to the same value on every replica"),
    };
    if secret.len() < 16 {
        bail!("the cluster secret must be at least 16 characters");
    }
    files::write_secret(&path, &secret)?;
    Ok(secret)
}

/// The voters a `--init` replica starts the cluster with.
fn initial_members(
    args: &ServerArgs,
    api: SocketAddr,
    peer: SocketAddr,
) -> BTreeMap<u64, ReplicaNode> {
    match &args.peers {
        Some(peers) => peers
            .0
            .iter()
            .map(|(id, addr)| {
                let api_addr = if *id == args.id {
                    api.to_string()
                } else {
                    String::new()
                };
                (
                    *id,
                    ReplicaNode {
                        peer_addr: addr.to_string(),
                        api_addr,
                    },
                )
            })
            .collect(),
        None => [(
            args.id,
            ReplicaNode {
                peer_addr: peer.to_string(),
                api_addr: api.to_string(),
            },
        )]
        .into(),
    }
}

/// Asks the cluster at `url` to take this replica in.
async fn join(
    url: &str,
    token: &str,
    id: u64,
    api: SocketAddr,
    peer: SocketAddr,
) -> anyhow::Result<()> {
    tracing::info!(%url, "joining the cluster");
    let http = reqwest::Client::builder().timeout(JOIN_TIMEOUT).build()?;
    let resp = http
        .post(format!("{}/api/v1/cluster/join", url.trim_end_matches('/')))
        .bearer_auth(token)
        .json(&serde_json::json!({"id": id, "peer_addr": peer.to_string(), "api_addr": api.to_string()}))
        .send()
        .await
        .with_context(|| format!("cannot reach {url} to join"))?;
    if !resp.status().is_success() {
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        let msg = body["error"]["message"].as_str().unwrap_or("no details");
        bail!("joining through {url} was refused ({status}): {msg}");
    }
    tracing::info!("joined the cluster as a voter");
    Ok(())
}

/// Records this replica's API address in the replicated state (retried until it sticks).
async fn record_api_addr(ctx: ApiContext, api: SocketAddr, shutdown: CancellationToken) {
    let me = ReplicaInfo {
        id: ctx.node.id(),
        api_addr: api.to_string(),
    };
    retry_until_done(&shutdown, "record the API address", || async {
        let known = ctx.read_local(|r| r.replicas()).await?;
        if known.contains(&me) {
            return Ok(());
        }
        ctx.write(Command::SetReplica(me.clone())).await.map(|_| ())
    })
    .await;
}

/// Commits edges' and agents' last-seen times now and then (pulls themselves never write).
async fn commit_last_seen(ctx: ApiContext, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(kokoa_web::seen::SEEN_COMMIT_EVERY) => {}
        }
        if let Err(e) = kokoa_web::seen::flush_seen(&ctx).await {
            tracing::debug!(error = %e.message, "cannot commit last-seen times yet");
        }
    }
}

/// Creates the admin token of a new cluster, prints it once and keeps it in `DATA_DIR/admin.token`.
async fn ensure_admin_token(
    ctx: ApiContext,
    data_dir: std::path::PathBuf,
    shutdown: CancellationToken,
) {
    let path = data_dir.join(ADMIN_TOKEN);
    retry_until_done(&shutdown, "create the admin token", || async {
        if path.exists() {
            return Ok(());
        }
        ctx.node.read_barrier().await?;
        if ctx
            .read_local(|r| r.tokens())
            .await?
            .iter()
            .any(|t| t.role == Role::Admin)
        {
            return Ok(());
        }
        let chosen = std::env::var("KOKOA_INIT_ADMIN_TOKEN")
            .ok()
            .filter(|s| !s.trim().is_empty());
        let made = new_token(
            TokenSpec::role(Role::Admin),
            unix_now(),
            &ctx.cluster_secret,
            chosen.as_deref(),
        )?;
        ctx.write(Command::CreateToken(made.record)).await?;
        save_admin_token(&path, &made.secret_string);
        Ok(())
    })
    .await;
}

fn save_admin_token(path: &Path, token: &str) {
    if let Err(e) = files::write_secret(path, token) {
        tracing::error!(error = %e, "cannot save the admin token");
    }
    println!("admin token: {token}");
    println!("(shown once; also saved in {})", path.display());
}

/// Runs `f` until it succeeds or `shutdown`, pausing between attempts.
async fn retry_until_done<F, Fut>(shutdown: &CancellationToken, what: &str, f: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), kokoa_web::ApiError>>,
{
    let mut pause = Duration::from_millis(100);
    loop {
        match f().await {
            Ok(()) => return,
            Err(e) => tracing::debug!(error = %e.message, "cannot {what} yet"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

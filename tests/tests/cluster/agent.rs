//! `kokoa agent` and the control plane: it registers once (key, registration and config in its
//! data dir, owner-only), applies each new config, restarts without its token and without any
//! replica from what it saved, and fails in one clear line without a token or when refused.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use kokoa_tests::{Agent, AgentSpec, Cluster, KokoaProcess, READY_TIMEOUT, SHUTDOWN_TIMEOUT};
use serde_json::Value;

use crate::common::items;

/// Runs an agent that is expected to exit; its exit code and stderr.
async fn run_to_exit(spec: &AgentSpec) -> (Option<i32>, String) {
    let mut process = KokoaProcess::new(
        format!("agent {}", spec.name),
        spec.log_path.clone(),
        spec.stdout_path.clone(),
    );
    let mut env = spec.env.clone();
    if let Some(token) = &spec.token {
        env.push(("KOKOA_TOKEN".into(), token.clone()));
    }
    process.spawn(&spec.args(), &env);
    let status = process
        .wait_exit(READY_TIMEOUT)
        .await
        .unwrap_or_else(|| panic!("the agent did not exit: {}", process.log_tail(20)));
    (status.code(), process.log_since_start())
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unregistered_agent_without_a_token_says_how_to_get_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spec = AgentSpec::new("pi", dir.path(), vec!["http://127.0.0.1:9".into()], "");
    spec.token = None;
    let (code, stderr) = run_to_exit(&spec).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains("kokoa token create --role agent --origin"),
        "{stderr}"
    );
    // Nothing was sent anywhere, but the key was made and stays private.
    assert_eq!(mode(&spec.data_dir), 0o700);
    assert_eq!(mode(&spec.data_dir.join("wg.key")), 0o600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_registers_once_applies_configs_and_restarts_from_disk() {
    let mut cluster = Cluster::start_single().await;
    let origin_id = cluster.add_tunnel_origin("home").await;
    let mut agent = cluster.start_agent("pi", &origin_id).await;

    // The control plane knows it, with the tunnel address it logged.
    let listed = cluster
        .client(0)
        .get("/api/v1/agents")
        .await
        .expect("GET /api/v1/agents");
    let agents = items(&listed.json);
    assert_eq!(agents.len(), 1, "{}", listed.json);
    assert_eq!(agents[0]["id"], agent.id());
    assert_eq!(agents[0]["name"], "pi");
    assert_eq!(agents[0]["origin_id"], Value::String(origin_id.clone()));
    assert_eq!(agents[0]["tunnel_ip"], agent.tunnel_ip().to_string());
    let dir = agent.data_dir().to_path_buf();
    assert_eq!(mode(&dir), 0o700);
    for file in ["wg.key", "registration.json", "config.json"] {
        assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
    }
    let key = std::fs::read_to_string(dir.join("wg.key")).expect("wg.key");
    assert!(
        !listed.json.to_string().contains(key.trim()),
        "the private key left the agent"
    );

    // A route of its origin reaches it as a new config with one target.
    let route = cluster
        .client(0)
        .create_route("app.agent.test", &origin_id, "127.0.0.1:8080")
        .await
        .expect("POST /api/v1/routes");
    assert_eq!(route.status.as_u16(), 201, "{}", route.json);
    agent
        .wait_for_line("config applied", READY_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let applied = agent
        .wait_for_line("targets=1", READY_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(applied.contains("config applied"), "{applied}");

    // With every replica gone, the agent restarts without its token from what it saved.
    let (id, tunnel_ip) = (agent.id().to_string(), agent.tunnel_ip());
    cluster.replica_mut(0).kill9();
    agent.kill9();
    let mut spec = agent.spec().clone();
    spec.token = None;
    drop(agent);
    let mut restarted = Agent::start(spec).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(restarted.id(), id);
    assert_eq!(restarted.tunnel_ip(), tunnel_ip);
    let log = restarted.log_since_start();
    assert!(log.contains("serving the config saved on disk"), "{log}");
    assert!(!log.contains("registered"), "it registered again: {log}");

    // SIGTERM stops it, with exit code 0.
    restarted.sigterm();
    let status = restarted.wait_exit(SHUTDOWN_TIMEOUT).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "after SIGTERM: {status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_registration_shows_the_servers_message() {
    let cluster = Cluster::start_single().await;
    let origin_id = cluster.add_tunnel_origin("home").await;
    let agent = cluster.start_agent("pi", &origin_id).await;
    let registration: Value = serde_json::from_slice(
        &std::fs::read(agent.data_dir().join("registration.json")).expect("registration.json"),
    )
    .expect("registration JSON");
    let own_token = registration["token"].as_str().expect("token").to_string();

    // An agent's own token does not register another agent.
    let spec = AgentSpec::new("pi-2", cluster.root(), cluster.api_urls(), &own_token);
    let (code, stderr) = run_to_exit(&spec).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains("refused to register this agent")
            && stderr.contains("register with an agent token made for an origin"),
        "{stderr}"
    );

    // A second agent of the same origin with the same name is refused by name.
    let mut spec = cluster.agent_spec("pi", &origin_id, 0).await;
    spec.data_dir = cluster.root().join("pi-again");
    spec.log_path = cluster.root().join("pi-again.log");
    spec.stdout_path = cluster.root().join("pi-again.stdout");
    let (code, stderr) = run_to_exit(&spec).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("refused to register this agent"),
        "{stderr}"
    );
    assert!(
        !spec.data_dir.join("registration.json").exists(),
        "a refused agent saved a registration"
    );
}

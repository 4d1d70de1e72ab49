//! The admin CLI against a live replica: `cluster status`, origins, routes, and errors.

use std::process::Output;
use std::time::Duration;

use kokoa_tests::{kokoa_bin, random_hex, Cluster};
use serde_json::Value;

use crate::common::{hostnames, route_hostnames};

/// Runs `kokoa ARGS` with `KOKOA_SERVER` and `KOKOA_TOKEN` set (30 s limit).
async fn kokoa(server: &str, token: &str, args: &[&str]) -> Output {
    let mut command = tokio::process::Command::new(kokoa_bin());
    command
        .args(args)
        .env("KOKOA_SERVER", server)
        .env("KOKOA_TOKEN", token)
        .env("NO_COLOR", "1")
        .kill_on_drop(true);
    for var in [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ] {
        command.env_remove(var);
    }
    tokio::time::timeout(Duration::from_secs(30), command.output())
        .await
        .unwrap_or_else(|_| panic!("kokoa {args:?} did not finish within 30 s"))
        .unwrap_or_else(|e| panic!("run kokoa {args:?}: {e}"))
}

/// Asserts success; returns stdout.
fn ok(args: &[&str], output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "kokoa {args:?} failed with {}\nstdout: {stdout}\nstderr: {stderr}",
        output.status
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_shows_status_and_manages_origins_and_routes() {
    let cluster = Cluster::start_single().await;
    let server = cluster.replica(0).api_url();
    let token = cluster.admin_token().to_string();
    let run = |args: &'static [&'static str]| {
        let (server, token) = (server.clone(), token.clone());
        async move {
            let output = kokoa(&server, &token, args).await;
            ok(args, &output)
        }
    };

    let status = run(&["cluster", "status"]).await;
    let leader = cluster.replica(0).id().to_string();
    assert!(
        status.to_lowercase().contains("leader") && status.contains(&leader),
        "`cluster status` does not show leader {leader}:\n{status}"
    );

    run(&["origin", "add", "home"]).await;
    run(&[
        "route",
        "add",
        "app.example.com",
        "--origin",
        "home",
        "--target",
        "localhost:8080",
    ])
    .await;
    let listed = run(&["route", "ls", "--json"]).await;
    let json: Value = serde_json::from_str(&listed)
        .unwrap_or_else(|e| panic!("`route ls --json` is not JSON ({e}):\n{listed}"));
    assert_eq!(
        hostnames(&json),
        vec!["app.example.com"],
        "route ls --json: {json}"
    );
    let route = crate::common::items(&json).remove(0);
    assert_eq!(route["target"], "localhost:8080", "{route}");
    assert_eq!(
        route_hostnames(&cluster.client(0), false).await,
        vec!["app.example.com"],
        "the API does not show the route the CLI added"
    );

    let table = run(&["route", "ls"]).await;
    assert!(table.contains("app.example.com"), "route ls:\n{table}");

    run(&["route", "rm", "app.example.com"]).await;
    let listed = run(&["route", "ls", "--json"]).await;
    let json: Value = serde_json::from_str(&listed)
        .unwrap_or_else(|e| panic!("`route ls --json` is not JSON ({e}):\n{listed}"));
    assert!(
        hostnames(&json).is_empty(),
        "route still listed after rm: {json}"
    );
    assert!(route_hostnames(&cluster.client(0), false).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_errors_are_one_line_and_exit_non_zero() {
    let cluster = Cluster::start_single().await;
    let server = cluster.replica(0).api_url();
    let wrong = format!("kokoa_{}", random_hex(24));

    for (case, server, args) in [
        ("wrong token", server.as_str(), &["route", "ls"][..]),
        (
            "wrong token, write",
            server.as_str(),
            &["origin", "add", "home"][..],
        ),
        (
            "bad input",
            server.as_str(),
            &[
                "route",
                "add",
                "bad host!",
                "--origin",
                "x",
                "--target",
                "localhost:1",
            ][..],
        ),
    ] {
        let token = if case == "bad input" {
            cluster.admin_token()
        } else {
            wrong.as_str()
        };
        let output = kokoa(server, token, args).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{case}: kokoa {args:?} exit status (stderr: {stderr})"
        );
        assert_eq!(
            stderr.trim().lines().count(),
            1,
            "{case}: kokoa {args:?} stderr is not one line:\n{stderr}"
        );
    }

    // Nothing listening at all.
    let nowhere = format!("http://127.0.0.1:{}", kokoa_tests::free_port());
    let output = kokoa(&nowhere, cluster.admin_token(), &["cluster", "status"]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(1),
        "unreachable server (stderr: {stderr})"
    );
    assert_eq!(
        stderr.trim().lines().count(),
        1,
        "unreachable server:\n{stderr}"
    );

    // Nothing was changed by the rejected commands.
    assert!(route_hostnames(&cluster.client(0), false).await.is_empty());
}

/// Runs `kokoa ARGS` and expects exit code 1 with one line on stderr containing `expect`.
async fn fails(server: &str, token: &str, args: &[&str], expect: &str) {
    let output = kokoa(server, token, args).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(1),
        "kokoa {args:?} (stderr: {stderr})"
    );
    assert_eq!(
        stderr.trim().lines().count(),
        1,
        "kokoa {args:?} stderr:\n{stderr}"
    );
    assert!(
        stderr.contains(expect),
        "kokoa {args:?}: {stderr:?} lacks {expect:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_manages_tokens_dns_records_and_edges() {
    let cluster = Cluster::start_single().await;
    let server = cluster.replica(0).api_url();
    let token = cluster.admin_token().to_string();
    let json = |args: &[&str], output: &Output| -> Value {
        serde_json::from_str(&ok(args, output))
            .unwrap_or_else(|e| panic!("kokoa {args:?}: not JSON: {e}"))
    };

    ok(
        &["origin", "add", "home"],
        &kokoa(&server, &token, &["origin", "add", "home"]).await,
    );
    let args = [
        "token", "create", "--role", "agent", "--origin", "home", "--json",
    ];
    let agent_token = json(&args, &kokoa(&server, &token, &args).await);
    assert!(
        agent_token["token"]
            .as_str()
            .is_some_and(|t| t.starts_with("kokoa.")),
        "{agent_token}"
    );
    assert!(
        agent_token["subject"]["origin"].is_string(),
        "{agent_token}"
    );
    fails(
        &server,
        &token,
        &["token", "create", "--role", "agent"],
        "origin_required",
    )
    .await;
    fails(
        &server,
        &token,
        &["token", "create", "--role", "edge", "--origin", "home"],
        "origin_not_allowed",
    )
    .await;
    fails(
        &server,
        &token,
        &["token", "create", "--role", "agent", "--origin", "nope"],
        "origin",
    )
    .await;
    let listed = ok(
        &["token", "ls"],
        &kokoa(&server, &token, &["token", "ls"]).await,
    );
    assert!(
        listed.contains("BOUND_TO") && listed.contains("origin o_"),
        "{listed}"
    );

    // DNS records: the seeds' shorthand, a typed record, listing and removal, and bad input.
    let args = ["dns", "add", "--name", "App1", "--ip", "1.2.3.4", "--json"];
    let a = json(&args, &kokoa(&server, &token, &args).await);
    assert_eq!(
        (a["name"].as_str(), a["type"].as_str(), a["ttl"].as_u64()),
        (Some("app1"), Some("A"), Some(30))
    );
    let args = ["dns", "add", "--name", "v6", "--ip", "2001:db8::1"];
    ok(&args, &kokoa(&server, &token, &args).await);
    let args = [
        "dns",
        "add",
        "--name",
        "_acme-challenge",
        "--type",
        "txt",
        "--value",
        "abc",
        "--ttl",
        "60",
    ];
    ok(&args, &kokoa(&server, &token, &args).await);
    fails(
        &server,
        &token,
        &["dns", "add", "--name", "x", "--ip", "1.2.3.4", "--ttl", "0"],
        "invalid_dns_record",
    )
    .await;
    fails(
        &server,
        &token,
        &["dns", "add", "--name", "bad name", "--ip", "1.2.3.4"],
        "invalid_dns_record",
    )
    .await;
    fails(&server, &token, &["dns", "add", "--name", "x"], "--ip").await;
    let listed = ok(
        &["dns", "ls"],
        &kokoa(&server, &token, &["dns", "ls"]).await,
    );
    for want in ["app1", "1.2.3.4", "AAAA", "2001:db8::1", "TXT", "abc"] {
        assert!(listed.contains(want), "dns ls lacks {want}:\n{listed}");
    }
    let id = a["id"].as_str().expect("record id");
    ok(
        &["dns", "rm", id],
        &kokoa(&server, &token, &["dns", "rm", id]).await,
    );
    let listed = ok(
        &["dns", "ls"],
        &kokoa(&server, &token, &["dns", "ls"]).await,
    );
    assert!(
        !listed.contains("1.2.3.4"),
        "removed record still listed:\n{listed}"
    );
    fails(&server, &token, &["dns", "rm", id], "not_found").await;

    // Edges: listed once registered, removed by id.
    let edge = crate::fleet::new_edge(&cluster, 0, "edge-cli").await;
    let listed = ok(
        &["edge-node", "ls"],
        &kokoa(&server, &token, &["edge-node", "ls"]).await,
    );
    assert!(
        listed.contains("edge-cli") && listed.contains(&edge.id),
        "{listed}"
    );
    let rm = ["edge-node", "rm", edge.id.as_str()];
    ok(&rm, &kokoa(&server, &token, &rm).await);
    let listed = ok(
        &["edge-node", "ls"],
        &kokoa(&server, &token, &["edge-node", "ls"]).await,
    );
    assert!(!listed.contains("edge-cli"), "{listed}");
    fails(&server, &token, &rm, "not_found").await;
}

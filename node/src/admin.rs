//! The admin commands: `kokoa cluster|origin|route|token ...` against any replica's API.

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::cli::{
    ApiArgs, CertCmd, ClusterCmd, DnsCmd, EdgeNodeCmd, OriginCmd, RouteCmd, TokenCmd,
};
use crate::client::ApiClient;
use crate::table;

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn items(v: &Value) -> &[Value] {
    v["items"].as_array().map(Vec::as_slice).unwrap_or_default()
}

fn print_json(v: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

pub async fn cluster(api: ApiArgs, cmd: ClusterCmd) -> anyhow::Result<()> {
    let c = ApiClient::new(&api)?;
    match cmd {
        ClusterCmd::Status => {
            let st = c.get("/api/v1/cluster").await?;
            if api.json {
                return print_json(&st);
            }
            println!(
                "node {}  leader {}  term {}  applied {}  version {}",
                s(&st["node_id"]),
                s(&st["leader_id"]),
                s(&st["term"]),
                s(&st["applied_index"]),
                s(&st["version"])
            );
            let leader = st["leader_id"].as_u64();
            let rows: Vec<Vec<String>> = st["members"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|m| {
                    let role = match (m["id"].as_u64() == leader, m["voter"].as_bool()) {
                        (true, _) => "leader",
                        (false, Some(true)) => "voter",
                        _ => "learner",
                    };
                    vec![
                        s(&m["id"]),
                        role.into(),
                        s(&m["api_addr"]),
                        s(&m["peer_addr"]),
                    ]
                })
                .collect();
            table::print(&["ID", "ROLE", "API", "PEER"], &rows);
        }
        ClusterCmd::AddNode {
            id,
            peer_addr,
            api_addr,
        } => {
            let out = c
                .post(
                    "/api/v1/cluster/nodes",
                    json!({"id": id, "peer_addr": peer_addr, "api_addr": api_addr}),
                )
                .await?;
            if api.json {
                return print_json(&out);
            }
            println!("replica {id} is now a voter");
        }
        ClusterCmd::RemoveNode { id } => {
            c.delete(&format!("/api/v1/cluster/nodes/{id}")).await?;
            println!("replica {id} removed");
        }
    }
    Ok(())
}

pub async fn origin(api: ApiArgs, cmd: OriginCmd) -> anyhow::Result<()> {
    let c = ApiClient::new(&api)?;
    match cmd {
        OriginCmd::Add { name, kind } => {
            let o = c
                .post("/api/v1/origins", json!({"name": name, "kind": kind}))
                .await?;
            if api.json {
                return print_json(&o);
            }
            println!("origin {} added (id {})", s(&o["name"]), s(&o["id"]));
        }
        OriginCmd::Ls => {
            show_list(
                &c,
                &api,
                "/api/v1/origins",
                &[
                    ("NAME", |o| s(&o["name"])),
                    ("KIND", |o| s(&o["kind"])),
                    ("SUBNET", |o| s(&o["subnet"])),
                    ("ID", |o| s(&o["id"])),
                ],
            )
            .await?
        }
        OriginCmd::Rm { name } => {
            c.delete(&format!("/api/v1/origins/{}", path_segment(&name)?))
                .await?;
            println!("origin {name} removed");
        }
    }
    Ok(())
}

pub async fn route(api: ApiArgs, cmd: RouteCmd) -> anyhow::Result<()> {
    let c = ApiClient::new(&api)?;
    match cmd {
        RouteCmd::Add {
            host,
            origin,
            target,
            rate_limit,
            rate_burst,
            allow_http,
        } => {
            let origin_id = origin_id(&c, &origin).await?;
            let rate_limit = rate_limit
                .zip(rate_burst)
                .map(|(per_second, burst)| json!({"per_second": per_second, "burst": burst}));
            let body = json!({
                "hostname": host,
                "origin_id": origin_id,
                "target": target,
                "rate_limit": rate_limit,
                "allow_http": allow_http,
            });
            let r = c.post("/api/v1/routes", body).await?;
            if api.json {
                return print_json(&r);
            }
            println!(
                "route {} -> {} via origin {} added (id {})",
                s(&r["hostname"]),
                s(&r["target"]),
                origin,
                s(&r["id"])
            );
        }
        RouteCmd::Ls => {
            show_list(
                &c,
                &api,
                "/api/v1/routes",
                &[
                    ("HOSTNAME", |r| s(&r["hostname"])),
                    ("TARGET", |r| s(&r["target"])),
                    ("ORIGIN", |r| s(&r["origin_id"])),
                    ("REACHED", |r| s(&r["origin_status"])),
                    ("ID", |r| s(&r["id"])),
                ],
            )
            .await?
        }
        RouteCmd::Rm { host } => {
            c.delete(&format!("/api/v1/routes/{}", path_segment(&host)?))
                .await?;
            println!("route {host} removed");
        }
    }
    Ok(())
}

pub async fn token(api: ApiArgs, cmd: TokenCmd) -> anyhow::Result<()> {
    let c = ApiClient::new(&api)?;
    match cmd {
        TokenCmd::Create {
            role,
            ttl_secs,
            max_uses,
            origin,
        } => {
            let origin_id = match origin {
                Some(o) => Some(origin_id(&c, &o).await?),
                None => None,
            };
            let body = json!({"role": role, "ttl_secs": ttl_secs, "max_uses": max_uses, "origin_id": origin_id});
            let t = c.post("/api/v1/tokens", body).await?;
            if api.json {
                return print_json(&t);
            }
            println!("{}", s(&t["token"]));
            eprintln!("({} token {}; shown only once)", s(&t["role"]), s(&t["id"]));
        }
        TokenCmd::Ls => {
            show_list(
                &c,
                &api,
                "/api/v1/tokens",
                &[
                    ("ID", |t| s(&t["id"])),
                    ("ROLE", |t| s(&t["role"])),
                    ("BOUND_TO", bound_to),
                    ("USES", uses),
                    ("EXPIRES_AT", |t| s(&t["expires_at"])),
                    ("STATE", |t| {
                        if t["revoked"] == true {
                            "revoked".into()
                        } else {
                            "active".into()
                        }
                    }),
                ],
            )
            .await?
        }
        TokenCmd::Revoke { id } => {
            c.delete(&format!("/api/v1/tokens/{}", path_segment(&id)?))
                .await?;
            println!("token {id} revoked");
        }
    }
    Ok(())
}

/// A column of a list table: its header and how to show one item's cell.
type Column = (&'static str, fn(&Value) -> String);

/// Lists `path`: JSON with `--json`, else a table of `columns`.
async fn show_list(
    c: &ApiClient,
    api: &ApiArgs,
    path: &str,
    columns: &[Column],
) -> anyhow::Result<()> {
    let list = c.get(path).await?;
    if api.json {
        return print_json(&list);
    }
    let headers: Vec<&str> = columns.iter().map(|(h, _)| *h).collect();
    let rows: Vec<Vec<String>> = items(&list)
        .iter()
        .map(|item| columns.iter().map(|(_, cell)| cell(item)).collect())
        .collect();
    table::print(&headers, &rows);
    Ok(())
}

/// A token's uses, as `used/max`.
fn uses(t: &Value) -> String {
    match t["max_uses"].as_u64() {
        Some(m) => format!("{}/{m}", s(&t["uses"])),
        None => s(&t["uses"]),
    }
}

/// What a token is bound to: `{"edge": "e_..."}` shows as `edge e_...`.
fn bound_to(t: &Value) -> String {
    match t["subject"].as_object().and_then(|o| o.iter().next()) {
        Some((kind, id)) => format!("{kind} {}", s(id)),
        None => "-".into(),
    }
}

/// The id of the origin named (or with id) `origin`.
async fn origin_id(c: &ApiClient, origin: &str) -> anyhow::Result<String> {
    let o = c
        .get(&format!("/api/v1/origins/{}", path_segment(origin)?))
        .await
        .with_context(|| format!("origin {origin:?}"))?;
    Ok(s(&o["id"]))
}

pub async fn edge_node(api: ApiArgs, cmd: EdgeNodeCmd) -> anyhow::Result<()> {
    let c = ApiClient::new(&api)?;
    match cmd {
        EdgeNodeCmd::Ls => {
            show_list(
                &c,
                &api,
                "/api/v1/edge-nodes",
                &[
                    ("NAME", |e| s(&e["name"])),
                    ("PUBLIC_IP", |e| s(&e["public_ip"])),
                    ("TUNNEL_IP", |e| s(&e["tunnel_ip"])),
                    ("HEALTH", |e| s(&e["health"])),
                    ("LAST_SEEN", |e| s(&e["last_seen"])),
                    ("ID", |e| s(&e["id"])),
                ],
            )
            .await?
        }
        EdgeNodeCmd::Rm { id } => {
            c.delete(&format!("/api/v1/edge-nodes/{}", path_segment(&id)?))
                .await?;
            println!("edge {id} removed");
        }
    }
    Ok(())
}

pub async fn dns(api: ApiArgs, cmd: DnsCmd) -> anyhow::Result<()> {
    let c = ApiClient::new(&api)?;
    match cmd {
        DnsCmd::Add {
            name,
            ip,
            rtype,
            value,
            ttl,
        } => {
            let (rtype, value) = match (ip, rtype, value) {
                (Some(std::net::IpAddr::V4(ip)), _, _) => ("A".to_string(), ip.to_string()),
                (Some(std::net::IpAddr::V6(ip)), _, _) => ("AAAA".to_string(), ip.to_string()),
                (None, Some(t), Some(v)) => (t.to_ascii_uppercase(), v),
                _ => anyhow::bail!("give --ip, or --type and --value"),
            };
            let r = c
                .post(
                    "/api/v1/dns/records",
                    json!({"name": name, "type": rtype, "value": value, "ttl": ttl}),
                )
                .await?;
            if api.json {
                return print_json(&r);
            }
            println!(
                "{} {} {} added (id {})",
                s(&r["name"]),
                s(&r["type"]),
                s(&r["value"]),
                s(&r["id"])
            );
        }
        DnsCmd::Ls => {
            show_list(
                &c,
                &api,
                "/api/v1/dns/records",
                &[
                    ("NAME", |r| s(&r["name"])),
                    ("TYPE", |r| s(&r["type"])),
                    ("VALUE", |r| s(&r["value"])),
                    ("TTL", |r| s(&r["ttl"])),
                    ("ID", |r| s(&r["id"])),
                ],
            )
            .await?
        }
        DnsCmd::Rm { id } => {
            c.delete(&format!("/api/v1/dns/records/{}", path_segment(&id)?))
                .await?;
            println!("record {id} removed");
        }
    }
    Ok(())
}

/// Refuses values that would change the URL path.
fn path_segment(v: &str) -> anyhow::Result<&str> {
    if v.is_empty() || v.contains(['/', '?', '#', '%', ' ']) {
        bail!("{v:?} is not a valid name, hostname or id");
    }
    Ok(v)
}

pub async fn cert(api: ApiArgs, cmd: CertCmd) -> anyhow::Result<()> {
    let c = ApiClient::new(&api)?;
    match cmd {
        CertCmd::Add {
            chain,
            key,
            replaces,
        } => {
            let read = |path: &std::path::Path| {
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))
            };
            let body =
                json!({"chain_pem": read(&chain)?, "key_pem": read(&key)?, "replaces": replaces});
            let made = c.post("/api/v1/certificates", body).await?;
            if api.json {
                return print_json(&made);
            }
            let names: Vec<String> = made["names"]
                .as_array()
                .map(|a| a.iter().map(s).collect())
                .unwrap_or_default();
            println!(
                "certificate {} for {} added",
                s(&made["id"]),
                names.join(", ")
            );
        }
        CertCmd::Ls => {
            show_list(
                &c,
                &api,
                "/api/v1/certificates",
                &[
                    ("ID", |c| s(&c["id"])),
                    ("NAMES", |c| {
                        c["names"]
                            .as_array()
                            .map(|a| a.iter().map(s).collect::<Vec<_>>().join(","))
                            .unwrap_or_default()
                    }),
                    ("NOT_AFTER", |c| s(&c["not_after"])),
                ],
            )
            .await?
        }
        CertCmd::Rm { id } => {
            c.delete(&format!("/api/v1/certificates/{}", path_segment(&id)?))
                .await?;
            println!("certificate {id} removed");
        }
    }
    Ok(())
}

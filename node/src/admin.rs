//! The admin commands: `kokoa cluster|origin|route|token ...` against any replica's API.

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::cli::{ApiArgs, ClusterCmd, DnsCmd, EdgeNodeCmd, OriginCmd, RouteCmd, TokenCmd};
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
            let list = c.get("/api/v1/origins").await?;
            if api.json {
                return print_json(&list);
            }
            let rows: Vec<Vec<String>> = items(&list)
                .iter()
                .map(|o| vec![s(&o["name"]), s(&o["kind"]), s(&o["subnet"]), s(&o["id"])])
                .collect();
            table::print(&["NAME", "KIND", "SUBNET", "ID"], &rows);
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
        } => {
            let origin_id = origin_id(&c, &origin).await?;
            let r = c
                .post(
                    "/api/v1/routes",
                    json!({"hostname": host, "origin_id": origin_id, "target": target}),
                )
                .await?;
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
            let list = c.get("/api/v1/routes").await?;
            if api.json {
                return print_json(&list);
            }
            let rows: Vec<Vec<String>> = items(&list)
                .iter()
                .map(|r| {
                    vec![
                        s(&r["hostname"]),
                        s(&r["target"]),
                        s(&r["origin_id"]),
                        s(&r["id"]),
                    ]
                })
                .collect();
            table::print(&["HOSTNAME", "TARGET", "ORIGIN", "ID"], &rows);
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
            let list = c.get("/api/v1/tokens").await?;
            if api.json {
                return print_json(&list);
            }
            let rows: Vec<Vec<String>> = items(&list)
                .iter()
                .map(|t| {
                    let uses = match t["max_uses"].as_u64() {
                        Some(m) => format!("{}/{m}", s(&t["uses"])),
                        None => s(&t["uses"]),
                    };
                    let state = if t["revoked"].as_bool() == Some(true) {
                        "revoked"
                    } else {
                        "active"
                    };
                    // {"edge": "e_..."} and the like: "edge e_...".
                    let bound = match t["subject"].as_object().and_then(|o| o.iter().next()) {
                        Some((kind, id)) => format!("{kind} {}", s(id)),
                        None => "-".into(),
                    };
                    vec![
                        s(&t["id"]),
                        s(&t["role"]),
                        bound,
                        uses,
                        s(&t["expires_at"]),
                        state.into(),
                    ]
                })
                .collect();
            table::print(
                &["ID", "ROLE", "BOUND_TO", "USES", "EXPIRES_AT", "STATE"],
                &rows,
            );
        }
        TokenCmd::Revoke { id } => {
            c.delete(&format!("/api/v1/tokens/{}", path_segment(&id)?))
                .await?;
            println!("token {id} revoked");
        }
    }
    Ok(())
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
            let list = c.get("/api/v1/edge-nodes").await?;
            if api.json {
                return print_json(&list);
            }
            let rows: Vec<Vec<String>> = items(&list)
                .iter()
                .map(|e| {
                    vec![
                        s(&e["name"]),
                        s(&e["public_ip"]),
                        s(&e["tunnel_ip"]),
                        s(&e["health"]),
                        s(&e["last_seen"]),
                        s(&e["id"]),
                    ]
                })
                .collect();
            table::print(
                &[
                    "NAME",
                    "PUBLIC_IP",
                    "TUNNEL_IP",
                    "HEALTH",
                    "LAST_SEEN",
                    "ID",
                ],
                &rows,
            );
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
            let list = c.get("/api/v1/dns/records").await?;
            if api.json {
                return print_json(&list);
            }
            let rows: Vec<Vec<String>> = items(&list)
                .iter()
                .map(|r| {
                    vec![
                        s(&r["name"]),
                        s(&r["type"]),
                        s(&r["value"]),
                        s(&r["ttl"]),
                        s(&r["id"]),
                    ]
                })
                .collect();
            table::print(&["NAME", "TYPE", "VALUE", "TTL", "ID"], &rows);
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

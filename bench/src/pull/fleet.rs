//! The edges whose tokens the pulls use, made through the public API: one origin (routes need
//! one), one bootstrap edge token with `max_uses = E`, then E registrations.

use std::time::{Duration, Instant};

use anyhow::Context;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use kokoa_tests::{random_hex, Api, ApiResponse};
use serde_json::{json, Value};
use tokio::task::JoinSet;

/// Registrations in flight at once.
const REGISTER_CONCURRENCY: usize = 8;

/// What [`register`] made.
#[derive(Debug, Clone)]
pub struct Fleet {
    /// The origin every benchmark route points at.
    pub origin_id: String,
    /// Each edge's persistent token (shown once by the server).
    pub edge_tokens: Vec<String>,
    /// How long the E registrations took.
    pub register_time: Duration,
}

fn want(what: &str, response: &ApiResponse, status: u16) -> anyhow::Result<()> {
    anyhow::ensure!(
        response.status.as_u16() == status,
        "{what}: want {status}, got {} {}",
        response.status,
        response.json
    );
    Ok(())
}

fn field(what: &str, response: &ApiResponse, key: &str) -> anyhow::Result<String> {
    response
        .json
        .get(key)
        .and_then(Value::as_str)
        .map(str::to_string)
        .with_context(|| format!("{what}: no {key:?} in {}", response.json))
}

/// Creates the origin `pullbench` and registers `edges` edges through `admin`'s replica.
pub async fn register(admin: &Api, edges: u32) -> anyhow::Result<Fleet> {
    let origin = admin
        .create_origin("pullbench")
        .await
        .context("POST /api/v1/origins")?;
    want("POST /api/v1/origins", &origin, 201)?;
    let origin_id = origin
        .id()
        .with_context(|| format!("no id in {}", origin.json))?;

    let bootstrap = admin
        .post_json(
            "/api/v1/tokens",
            &json!({ "role": "edge", "max_uses": edges }),
        )
        .await
        .context("POST /api/v1/tokens")?;
    want("POST /api/v1/tokens (edge bootstrap)", &bootstrap, 201)?;
    let bootstrap = field("POST /api/v1/tokens", &bootstrap, "token")?;
    let registrar = admin.with_token(Some(&bootstrap));

    let started = Instant::now();
    let mut edge_tokens = vec![String::new(); edges as usize];
    let mut in_flight = JoinSet::new();
    let mut next = 0u32;
    loop {
        while next < edges && in_flight.len() < REGISTER_CONCURRENCY {
            let api = registrar.clone();
            let i = next;
            in_flight.spawn(async move { (i, register_one(&api, i).await) });
            next += 1;
        }
        let Some(joined) = in_flight.join_next().await else {
            break;
        };
        let (i, token) = joined.context("registration task failed")?;
        edge_tokens[i as usize] = token?;
    }
    Ok(Fleet {
        origin_id,
        edge_tokens,
        register_time: started.elapsed(),
    })
}

/// Registers edge `i` (`pb-edge-00001`, a documentation IPv6 address, a random WireGuard key);
/// returns its persistent token.
async fn register_one(registrar: &Api, i: u32) -> anyhow::Result<String> {
    let name = format!("pb-edge-{i:05}");
    let body = json!({
        "name": name,
        "public_ip": format!("2001:db8::{:x}", i + 1),
        "wg_public_key": wg_key(),
    });
    let what = format!("register {name}");
    let response = registrar
        .post_json("/api/v1/edge-nodes/register", &body)
        .await
        .with_context(|| what.clone())?;
    want(&what, &response, 201)?;
    field(&what, &response, "token")
}

/// A random 32-byte WireGuard public key, base64.
fn wg_key() -> String {
    let hex = random_hex(32);
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .filter_map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect();
    BASE64.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wireguard_keys_are_32_bytes_of_base64() {
        let key = wg_key();
        assert_eq!(BASE64.decode(&key).expect("base64").len(), 32);
        assert_ne!(key, wg_key());
    }
}

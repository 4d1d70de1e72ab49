//! One write to one system: its request body, where it is sent, what counts as acknowledged.
//!
//! Both systems go through [`WriteTarget::send`], so the load and failover drivers run the same
//! code for each. The two bodies are made the same number of bytes ([`WriteTarget::pair`]):
//!
//! * Kokoa: `POST /api/v1/routes` `{"hostname":"<label>.bench.example.com","origin_id":"…",
//!   "target":"localhost:8080"}` with the admin bearer token; acknowledged = 201.
//! * etcd: `POST /v3/kv/put` `{"key":"<base64 /bench/<label>>","value":"<base64 v…v>"}` on the
//!   JSON gateway, as `shared/peers/etcd-put.lua` does; acknowledged = 200.
//!
//! Every write carries a unique label, so each Kokoa write creates a new route (no
//! `hostname_taken`) and each etcd write a new key.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use reqwest::header::CONTENT_TYPE;
use reqwest::StatusCode;
use serde::Serialize;

use crate::system::System;

/// Hostname suffix of benchmark routes.
const BENCH_DOMAIN: &str = "bench.example.com";
/// Route target of benchmark routes.
const ROUTE_TARGET: &str = "localhost:8080";
/// Prefix of benchmark keys in etcd.
const ETCD_KEY_PREFIX: &str = "/bench/";
/// Fewest digits of the per-client sequence number in a label (widened to align body sizes).
const MIN_SEQ_WIDTH: usize = 8;
/// The most error-body bytes kept in a [`WriteError`].
const ERROR_BODY_MAX: usize = 200;

/// Identifies one write: `phase` (`s` for a load step, `f` for failover), the step or round,
/// the client, and the client's sequence number. Rendered with fixed widths so that every
/// body of one target has the same size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteKey {
    pub phase: char,
    pub step: u32,
    pub client: u32,
    pub seq: u64,
}

impl WriteKey {
    /// A write of load step `step` by client `client`.
    pub fn load(step: u32, client: u32, seq: u64) -> WriteKey {
        WriteKey {
            phase: 's',
            step,
            client,
            seq,
        }
    }

    /// Attempt `seq` of failover round `round`.
    pub fn failover(round: u32, seq: u64) -> WriteKey {
        WriteKey {
            phase: 'f',
            step: round,
            client: 0,
            seq,
        }
    }

    /// `s01c012n00000042`: a DNS label (lowercase letters and digits).
    fn label(&self, seq_width: usize) -> String {
        format!(
            "{}{:02}c{:03}n{:0seq_width$}",
            self.phase,
            self.step % 100,
            self.client % 1000,
            self.seq
        )
    }
}

/// Why a write was not acknowledged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// No answer within the per-request timeout.
    #[error("timed out")]
    Timeout,
    /// Connect / send / receive failed.
    #[error("transport: {0}")]
    Transport(String),
    /// An answer, but not the success status.
    #[error("HTTP {status}: {body}")]
    Status { status: u16, body: String },
}

#[derive(Debug, Clone)]
enum Shape {
    /// A Kokoa route under this origin.
    Route { origin_id: String },
    /// An etcd put of this (already base64) value.
    Put { value_b64: String },
}

#[derive(Serialize)]
struct RouteBody<'a> {
    hostname: &'a str,
    origin_id: &'a str,
    target: &'a str,
}

#[derive(Serialize)]
struct PutBody<'a> {
    key: &'a str,
    value: &'a str,
}

/// How to send one acknowledged write to one system.
#[derive(Debug, Clone)]
pub struct WriteTarget {
    system: System,
    path: &'static str,
    bearer: Option<String>,
    shape: Shape,
    seq_width: usize,
    success: StatusCode,
}

impl WriteTarget {
    /// The Kokoa and etcd targets, with request bodies of equal length: the label width is
    /// chosen so that the etcd body minus its fixed JSON is a multiple of 4 (base64 without
    /// padding tricks), then the etcd value is sized to fill the rest.
    pub fn pair(origin_id: &str, admin_token: &str) -> anyhow::Result<(WriteTarget, WriteTarget)> {
        for seq_width in MIN_SEQ_WIDTH..MIN_SEQ_WIDTH + 4 {
            let kokoa = WriteTarget {
                system: System::Kokoa,
                path: "/api/v1/routes",
                bearer: Some(admin_token.to_string()),
                shape: Shape::Route {
                    origin_id: origin_id.to_string(),
                },
                seq_width,
                success: StatusCode::CREATED,
            };
            let want = kokoa.body_len();
            let mut etcd = WriteTarget {
                system: System::Etcd,
                path: "/v3/kv/put",
                bearer: None,
                shape: Shape::Put {
                    value_b64: String::new(),
                },
                seq_width,
                success: StatusCode::OK,
            };
            let without_value = etcd.body_len();
            let room = want.saturating_sub(without_value);
            if want > without_value + 4 && room % 4 == 0 {
                let value = vec![b'v'; room / 4 * 3];
                etcd.shape = Shape::Put {
                    value_b64: BASE64.encode(value),
                };
                anyhow::ensure!(
                    etcd.body_len() == want,
                    "body sizes differ: kokoa {want}, etcd {}",
                    etcd.body_len()
                );
                return Ok((kokoa, etcd));
            }
        }
        anyhow::bail!("cannot size an etcd body like the Kokoa one (origin id {origin_id:?})")
    }

    pub fn system(&self) -> System {
        self.system
    }

    /// The request path (`/api/v1/routes` or `/v3/kv/put`).
    pub fn path(&self) -> &'static str {
        self.path
    }

    /// The request body of `key`.
    pub fn body(&self, key: &WriteKey) -> Vec<u8> {
        let label = key.label(self.seq_width);
        let encoded = match &self.shape {
            Shape::Route { origin_id } => serde_json::to_vec(&RouteBody {
                hostname: &format!("{label}.{BENCH_DOMAIN}"),
                origin_id,
                target: ROUTE_TARGET,
            }),
            Shape::Put { value_b64 } => serde_json::to_vec(&PutBody {
                key: &BASE64.encode(format!("{ETCD_KEY_PREFIX}{label}")),
                value: value_b64,
            }),
        };
        // Serializing a struct of strings cannot fail.
        encoded.unwrap_or_default()
    }

    /// The length of every load-step body (all labels have the same width).
    pub fn body_len(&self) -> usize {
        self.body(&WriteKey::load(0, 0, 0)).len()
    }

    /// One body as text, for the log.
    pub fn sample_body(&self) -> String {
        String::from_utf8_lossy(&self.body(&WriteKey::load(0, 0, 0))).into_owned()
    }

    /// POSTs the write for `key` to `url` (base URL + [`WriteTarget::path`]) and waits for the
    /// answer (at most `timeout`, or the client's own timeout when `None`). `Ok` only for the system's success status; the body is read
    /// to the end so the connection goes back to the pool.
    pub async fn send(
        &self,
        http: &reqwest::Client,
        url: &str,
        key: &WriteKey,
        timeout: Option<Duration>,
    ) -> Result<(), WriteError> {
        let mut request = http
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .body(self.body(key));
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        if let Some(token) = &self.bearer {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(classify)?;
        let status = response.status();
        let body = response.bytes().await.map_err(classify)?;
        if status == self.success {
            Ok(())
        } else {
            let mut body = String::from_utf8_lossy(&body).into_owned();
            if body.len() > ERROR_BODY_MAX {
                let mut end = ERROR_BODY_MAX;
                while !body.is_char_boundary(end) {
                    end -= 1;
                }
                body.truncate(end);
            }
            Err(WriteError::Status {
                status: status.as_u16(),
                body,
            })
        }
    }
}

fn classify(error: reqwest::Error) -> WriteError {
    if error.is_timeout() {
        WriteError::Timeout
    } else {
        // The innermost cause says most ("Connection refused", "connection reset").
        let mut cause: &dyn std::error::Error = &error;
        while let Some(next) = cause.source() {
            cause = next;
        }
        WriteError::Transport(format!("{error}: {cause}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_have_equal_length_for_any_origin_id_length() {
        for len in 1..40 {
            let origin = "o".repeat(len);
            let (kokoa, etcd) = WriteTarget::pair(&origin, "kokoa_token").expect("pair");
            assert_eq!(kokoa.body_len(), etcd.body_len(), "origin id length {len}");
            for key in [WriteKey::load(3, 63, 123_456), WriteKey::load(12, 7, 0)] {
                assert_eq!(kokoa.body(&key).len(), kokoa.body_len());
                assert_eq!(etcd.body(&key).len(), etcd.body_len());
            }
        }
    }

    #[test]
    fn bodies_are_what_the_servers_expect() {
        let (kokoa, etcd) = WriteTarget::pair("o_0123456789ab", "t").expect("pair");
        let key = WriteKey::load(1, 2, 3);
        let route: serde_json::Value =
            serde_json::from_slice(&kokoa.body(&key)).expect("route JSON");
        assert_eq!(
            route["hostname"],
            format!(
                "s01c002n{:0w$}3.bench.example.com",
                0,
                w = kokoa.seq_width - 1
            )
        );
        assert_eq!(route["origin_id"], "o_0123456789ab");
        assert_eq!(route["target"], "localhost:8080");
        let put: serde_json::Value = serde_json::from_slice(&etcd.body(&key)).expect("put JSON");
        let decoded = BASE64
            .decode(put["key"].as_str().expect("key"))
            .expect("base64 key");
        assert!(String::from_utf8(decoded)
            .expect("utf-8 key")
            .starts_with("/bench/s01c002n"));
        let value = BASE64
            .decode(put["value"].as_str().expect("value"))
            .expect("base64 value");
        assert!(value.iter().all(|&b| b == b'v') && !value.is_empty());
    }

    #[test]
    fn labels_are_unique_per_phase_step_client_and_seq() {
        let a = WriteKey::load(1, 2, 3).label(8);
        assert_ne!(a, WriteKey::load(1, 2, 4).label(8));
        assert_ne!(a, WriteKey::load(1, 3, 3).label(8));
        assert_ne!(a, WriteKey::load(2, 2, 3).label(8));
        assert_ne!(a, WriteKey::failover(1, 3).label(8));
        assert!(a.len() <= 63);
    }
}

//! The replica-to-replica transport: HTTP/1.1 POSTs with bincode bodies, authenticated by the
//! cluster secret in a header.
//!
//! Everything that crosses between replicas goes through [`PeerTransport`], so moving to TLS with
//! mutual authentication changes this file and [`crate::peer_server`] only.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use kokoa_store::codec::{decode, encode};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Header carrying the cluster secret on peer requests.
pub(crate) const SECRET_HEADER: &str = "x-kokoa-cluster-secret";

/// Why a peer call failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The request was never delivered (connection refused, no route): safe to retry anywhere.
    #[error("peer {addr} unreachable: {reason}")]
    Unreachable { addr: String, reason: String },
    /// The request may have been delivered but no answer came in time.
    #[error("peer {addr} did not answer within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
    /// The request may have been delivered; the exchange failed afterwards.
    #[error("peer {addr}: {reason}")]
    Failed { addr: String, reason: String },
}

impl TransportError {
    /// Whether the request certainly did not reach the peer.
    pub fn not_delivered(&self) -> bool {
        matches!(self, TransportError::Unreachable { .. })
    }
}

/// A client for the peer RPC of other replicas. Cheap to clone.
#[derive(Clone)]
pub struct PeerTransport {
    http: reqwest::Client,
    secret: Arc<str>,
}

impl std::fmt::Debug for PeerTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerTransport")
            .field("secret", &"<masked>")
            .finish()
    }
}

impl PeerTransport {
    /// A transport presenting `secret` to peers, its connections coming from `source` when
    /// given (else the system picks the address, by route).
    pub fn new(secret: &str, source: Option<IpAddr>) -> Result<Self, TransportError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .local_address(source)
            .build()
            .map_err(|e| TransportError::Failed {
                addr: String::new(),
                reason: e.to_string(),
            })?;
        Ok(PeerTransport {
            http,
            secret: secret.into(),
        })
    }

    /// POSTs `req` to `http://{addr}/raft/{path}` and decodes the answer.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, TransportError> {
        let failed = |reason: String| TransportError::Failed {
            addr: addr.to_string(),
            reason,
        };
        let body = encode(req).map_err(|e| failed(e.to_string()))?;
        let sent = self
            .http
            .post(format!("http://{addr}/raft/{path}"))
            .header(SECRET_HEADER, &*self.secret)
            .timeout(timeout)
            .body(body)
            .send()
            .await;
        let resp = match sent {
            Ok(resp) => resp,
            Err(e) if e.is_connect() => {
                return Err(TransportError::Unreachable {
                    addr: addr.to_string(),
                    reason: e.to_string(),
                })
            }
            Err(e) if e.is_timeout() => {
                return Err(TransportError::Timeout {
                    addr: addr.to_string(),
                    timeout,
                })
            }
            Err(e) => return Err(failed(e.to_string())),
        };
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| {
            if e.is_timeout() {
                TransportError::Timeout {
                    addr: addr.to_string(),
                    timeout,
                }
            } else {
                failed(e.to_string())
            }
        })?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes);
            return Err(failed(format!("HTTP {status}: {}", text.trim())));
        }
        decode(&bytes).map_err(|e| failed(e.to_string()))
    }

    /// Whether `presented` is this cluster's secret (constant time).
    pub(crate) fn secret_matches(&self, presented: &[u8]) -> bool {
        let ours = self.secret.as_bytes();
        if ours.len() != presented.len() {
            return false;
        }
        ours.iter()
            .zip(presented)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

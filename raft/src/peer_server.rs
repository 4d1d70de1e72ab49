//! The peer RPC server on `--peer-listen`: raft's own RPCs and requests forwarded to the leader.
//! Every request must carry the cluster secret.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use kokoa_store::codec::{decode, encode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::node::RaftNode;
use crate::transport::SECRET_HEADER;

/// Largest peer request body: a batch of entries or one snapshot chunk (see `raft_config`).
pub(crate) const MAX_PEER_BODY: usize = 16 * 1024 * 1024;

/// The router serving peer RPC for `node`.
pub(crate) fn router(node: RaftNode) -> Router {
    Router::new()
        .route("/raft/append", post(append))
        .route("/raft/vote", post(vote))
        .route("/raft/snapshot", post(snapshot))
        .route("/raft/forward", post(forward))
        .layer(DefaultBodyLimit::max(MAX_PEER_BODY))
        .with_state(node)
}

fn authorized(node: &RaftNode, headers: &HeaderMap) -> bool {
    headers
        .get(SECRET_HEADER)
        .is_some_and(|v| node.transport().secret_matches(v.as_bytes()))
}

/// Why a peer request was refused before reaching raft.
#[derive(Debug, Clone, Copy)]
enum Refused {
    WrongSecret,
    Undecodable,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::WrongSecret => {
                (StatusCode::UNAUTHORIZED, "wrong cluster secret").into_response()
            }
            Refused::Undecodable => {
                (StatusCode::BAD_REQUEST, "undecodable request").into_response()
            }
        }
    }
}

fn reply<T: Serialize>(value: &T) -> Response {
    match encode(value) {
        Ok(bytes) => bytes.into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode the answer",
        )
            .into_response(),
    }
}

/// Checks the secret and decodes the body.
fn open<T: DeserializeOwned>(
    node: &RaftNode,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, Refused> {
    if !authorized(node, headers) {
        tracing::warn!("peer request with a wrong or missing cluster secret");
        return Err(Refused::WrongSecret);
    }
    decode(body).map_err(|_| Refused::Undecodable)
}

async fn append(State(node): State<RaftNode>, headers: HeaderMap, body: Bytes) -> Response {
    match open(&node, &headers, &body) {
        Ok(req) => {
            let answer = node.raft().append_entries(req).await;
            if answer.as_ref().is_ok_and(|r| r.is_success()) {
                node.note_leader_contact();
            }
            reply(&answer)
        }
        Err(refused) => refused.into_response(),
    }
}

async fn vote(State(node): State<RaftNode>, headers: HeaderMap, body: Bytes) -> Response {
    match open(&node, &headers, &body) {
        Ok(req) => reply(&node.raft().vote(req).await),
        Err(refused) => refused.into_response(),
    }
}

async fn snapshot(State(node): State<RaftNode>, headers: HeaderMap, body: Bytes) -> Response {
    match open(&node, &headers, &body) {
        Ok(req) => reply(&node.raft().install_snapshot(req).await),
        Err(refused) => refused.into_response(),
    }
}

async fn forward(State(node): State<RaftNode>, headers: HeaderMap, body: Bytes) -> Response {
    match open(&node, &headers, &body) {
        Ok(req) => reply(&node.handle_forward(req).await),
        Err(refused) => refused.into_response(),
    }
}

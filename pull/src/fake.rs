//! A scripted replica for the unit tests: it answers each request with the next scripted
//! status and body, records what it was asked, and holds requests open once the script runs
//! out (a long-poll that never sees a change).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;

/// A request the fake replica got.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub uri: String,
    pub bearer: Option<String>,
    pub body: String,
}

#[derive(Debug, Clone, Default)]
struct Script {
    answers: Arc<Mutex<VecDeque<(u16, String)>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// A running fake replica; it stops when dropped.
#[derive(Debug)]
pub struct FakeReplica {
    pub url: String,
    script: Script,
    task: tokio::task::JoinHandle<()>,
}

impl FakeReplica {
    /// Starts on a free loopback port, answering `answers` in order.
    pub async fn start(answers: Vec<(u16, String)>) -> FakeReplica {
        let script = Script::default();
        script.answers.lock().expect("lock").extend(answers);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(script.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeReplica { url, script, task }
    }

    /// Its URL as a control-plane list.
    pub fn urls(&self) -> Vec<String> {
        vec![self.url.clone()]
    }

    /// What it was asked so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.script.seen.lock().expect("lock").clone()
    }
}

impl Drop for FakeReplica {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(State(script): State<Script>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let bearer = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    script.seen.lock().expect("lock").push(Seen {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        bearer,
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let next = script.answers.lock().expect("lock").pop_front();
    let Some((status, body)) = next else {
        return std::future::pending().await;
    };
    Response::builder()
        .status(StatusCode::from_u16(status).expect("status"))
        .header("content-type", "application/json")
        .body(Body::from(body))
        .expect("response")
}

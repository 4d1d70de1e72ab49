//! A small HTTP/1.1 origin app to put behind an edge: it answers with its own name and the
//! request it saw (headers included, so tests can check `X-Forwarded-*`), streams large
//! downloads of a known byte pattern (optionally held half-way until the test releases them),
//! and echoes WebSocket messages.
//!
//! | request | answer |
//! |---|---|
//! | `Upgrade: websocket` (any path) | 101, then every text / binary message is sent back |
//! | `GET /download?bytes=N[&hold_at=M]` | N bytes of [`pattern_block`]s, streamed; with `hold_at`, the stream pauses after M bytes until [`OriginApp::release_downloads`] |
//! | anything else | 200 JSON `{"origin","method","path","version","headers":{name: value},"body_len","body_sha256"}`, header `x-origin: NAME` |

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures::{SinkExt, StreamExt};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::header::{HeaderValue, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, UPGRADE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Bytes per block of the download pattern.
pub const PATTERN_BLOCK: usize = 64 * 1024;

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Block `index` of the download pattern: [`PATTERN_BLOCK`] pseudo-random bytes (xorshift64*
/// seeded with the index), so a lost, repeated or reordered block shows.
pub fn pattern_block(index: u64) -> Vec<u8> {
    let mut state = index
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(0x2545_F491_4F6C_DD1D)
        | 1;
    let mut block = vec![0u8; PATTERN_BLOCK];
    for word in block.chunks_exact_mut(8) {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        word.copy_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    block
}

/// Checks a download against the pattern as it arrives, in pieces of any size.
#[derive(Debug, Default)]
pub struct PatternChecker {
    block: Vec<u8>,
    block_index: u64,
    /// Position in `block`.
    pos: usize,
    received: u64,
}

impl PatternChecker {
    pub fn new() -> Self {
        PatternChecker::default()
    }

    /// Checks the next `bytes`; `Err` names the first offset that differs.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), String> {
        while !bytes.is_empty() {
            if self.block.is_empty() || self.pos == PATTERN_BLOCK {
                if !self.block.is_empty() {
                    self.block_index += 1;
                }
                self.block = pattern_block(self.block_index);
                self.pos = 0;
            }
            let n = bytes.len().min(PATTERN_BLOCK - self.pos);
            if bytes[..n] != self.block[self.pos..self.pos + n] {
                let at = (0..n)
                    .find(|&i| bytes[i] != self.block[self.pos + i])
                    .unwrap_or(0);
                return Err(format!(
                    "the download differs from the pattern at byte {}",
                    self.received + at as u64
                ));
            }
            self.pos += n;
            self.received += n as u64;
            bytes = &bytes[n..];
        }
        Ok(())
    }

    /// How many bytes matched so far.
    pub fn received(&self) -> u64 {
        self.received
    }
}

/// A request the app saw (WebSocket upgrades included).
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Lowercase names; repeated headers joined with `, `.
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug)]
struct Shared {
    name: String,
    seen: Mutex<Vec<SeenRequest>>,
    /// `true` once held downloads may go on.
    released: watch::Sender<bool>,
    /// Connections and WebSocket sessions; aborted when the app is dropped.
    tasks: Mutex<JoinSet<()>>,
}

impl Shared {
    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        while tasks.try_join_next().is_some() {}
        tasks.spawn(task);
    }
}

/// A running origin app on 127.0.0.1 (port chosen by the system). Dropping it stops it and
/// closes every connection.
#[derive(Debug)]
pub struct OriginApp {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl OriginApp {
    /// Starts an app that calls itself `name`.
    pub async fn start(name: &str) -> OriginApp {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the origin app on 127.0.0.1:0");
        let addr = listener.local_addr().expect("local_addr");
        let shared = Arc::new(Shared {
            name: name.to_string(),
            seen: Mutex::new(Vec::new()),
            released: watch::Sender::new(false),
            tasks: Mutex::new(JoinSet::new()),
        });
        let accept_shared = shared.clone();
        shared.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let conn_shared = accept_shared.clone();
                accept_shared.spawn(serve_connection(stream, conn_shared));
            }
        });
        OriginApp { addr, shared }
    }

    pub fn name(&self) -> &str {
        &self.shared.name
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `127.0.0.1:PORT`, the route target that reaches this app.
    pub fn target(&self) -> String {
        self.addr.to_string()
    }

    /// Every request seen so far, oldest first.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.shared
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Lets every held download (and every later one) run to its end.
    pub fn release_downloads(&self) {
        self.shared.released.send_replace(true);
    }
}

impl Drop for OriginApp {
    fn drop(&mut self) {
        self.shared
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .abort_all();
    }
}

async fn serve_connection(stream: tokio::net::TcpStream, shared: Arc<Shared>) {
    let service = hyper::service::service_fn(move |request| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(handle(request, &shared).await) }
    });
    // A connection the edge drops mid-way is not the app's problem.
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await;
}

async fn handle(request: Request<Incoming>, shared: &Arc<Shared>) -> Response<Body> {
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in request.headers() {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers
            .entry(name.as_str().to_string())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    let path = request
        .uri()
        .path_and_query()
        .map_or("/".to_string(), |p| p.to_string());
    let seen = SeenRequest {
        method: request.method().to_string(),
        path: path.clone(),
        headers: headers.clone(),
    };
    shared
        .seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(seen);

    let wants_websocket = headers
        .get("upgrade")
        .is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
    if wants_websocket {
        return websocket(request, shared);
    }
    if request.uri().path() == "/download" {
        return download(request.uri().query().unwrap_or(""), shared);
    }
    let version = format!("{:?}", request.version());
    let method = request.method().to_string();
    let (body_len, body_sha256) = digest_body(request.into_body()).await;
    let json = json!({
        "origin": shared.name,
        "method": method,
        "path": path,
        "version": version,
        "headers": headers,
        "body_len": body_len,
        "body_sha256": body_sha256,
    });
    let mut response = Response::new(Full::new(Bytes::from(json.to_string())).boxed_unsync());
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    insert_origin_header(&mut response, shared);
    response
}

/// The body's length and SHA-256 (hex), read frame by frame (uploads may be large).
async fn digest_body(mut body: Incoming) -> (u64, String) {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    let mut len = 0u64;
    while let Some(Ok(frame)) = body.frame().await {
        if let Ok(data) = frame.into_data() {
            len += data.len() as u64;
            hasher.update(&data);
        }
    }
    let hex: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    (len, hex)
}

fn insert_origin_header(response: &mut Response<Body>, shared: &Shared) {
    if let Ok(value) = HeaderValue::from_str(&shared.name) {
        response.headers_mut().insert("x-origin", value);
    }
}

/// A query parameter as a number.
fn query_number(query: &str, key: &str) -> Option<u64> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

fn download(query: &str, shared: &Arc<Shared>) -> Response<Body> {
    let Some(len) = query_number(query, "bytes") else {
        let mut response =
            Response::new(Full::new(Bytes::from_static(b"bytes=N is required\n")).boxed_unsync());
        *response.status_mut() = StatusCode::BAD_REQUEST;
        return response;
    };
    let hold_at = query_number(query, "hold_at");
    let released = shared.released.subscribe();
    let stream = futures::stream::unfold(
        (0u64, hold_at, released),
        move |(sent, hold_at, mut released)| async move {
            if sent >= len {
                return None;
            }
            if hold_at.is_some_and(|at| sent >= at) {
                // An error only means the app is being dropped: end the stream.
                released.wait_for(|r| *r).await.ok()?;
            }
            let block = pattern_block(sent / PATTERN_BLOCK as u64);
            let n = (len - sent).min(PATTERN_BLOCK as u64) as usize;
            let frame = Frame::data(Bytes::from(block).slice(..n));
            let hold_at = hold_at.filter(|&at| sent + (n as u64) <= at);
            Some((
                Ok::<_, Infallible>(frame),
                (sent + n as u64, hold_at, released),
            ))
        },
    );
    let mut response = Response::new(StreamBody::new(stream).boxed_unsync());
    response
        .headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(len));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    insert_origin_header(&mut response, shared);
    response
}

fn websocket(mut request: Request<Incoming>, shared: &Arc<Shared>) -> Response<Body> {
    let Some(key) = request.headers().get("sec-websocket-key").cloned() else {
        let mut response = Response::new(
            Full::new(Bytes::from_static(b"Sec-WebSocket-Key is required\n")).boxed_unsync(),
        );
        *response.status_mut() = StatusCode::BAD_REQUEST;
        return response;
    };
    let upgrade = hyper::upgrade::on(&mut request);
    shared.spawn(async move {
        let Ok(upgraded) = upgrade.await else {
            return;
        };
        let mut ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        while let Some(Ok(message)) = ws.next().await {
            let echo = match message {
                Message::Text(_) | Message::Binary(_) => message,
                Message::Close(_) => break,
                // Pings are answered by tungstenite itself.
                _ => continue,
            };
            if ws.send(echo).await.is_err() {
                break;
            }
        }
    });
    let mut response = Response::new(Full::new(Bytes::new()).boxed_unsync());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        headers.insert("sec-websocket-accept", accept);
    }
    insert_origin_header(&mut response, shared);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checker_accepts_the_pattern_in_any_pieces_and_finds_a_flipped_byte() {
        let mut stream: Vec<u8> = (0..3).flat_map(pattern_block).collect();
        let mut checker = PatternChecker::new();
        for piece in stream[..PATTERN_BLOCK * 2 + 5].chunks(1000) {
            checker.feed(piece).expect("the pattern itself");
        }
        assert_eq!(checker.received(), (PATTERN_BLOCK * 2 + 5) as u64);

        stream[PATTERN_BLOCK + 7] ^= 1;
        let mut checker = PatternChecker::new();
        let err = checker.feed(&stream).expect_err("a flipped byte");
        assert!(err.contains(&format!("{}", PATTERN_BLOCK + 7)), "{err}");
        assert_ne!(pattern_block(0), pattern_block(1));
    }

    /// The app itself, without an edge: echo JSON, a held download, a WebSocket.
    #[tokio::test]
    async fn answers_streams_and_echoes() {
        let app = OriginApp::start("solo").await;
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        let base = format!("http://{}", app.addr());
        let json: serde_json::Value = http
            .get(format!("{base}/hi?x=1"))
            .header("x-test", "yes")
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("JSON");
        assert_eq!(json["origin"], "solo");
        assert_eq!(json["path"], "/hi?x=1");
        assert_eq!(json["headers"]["x-test"], "yes");

        let len = 3 * PATTERN_BLOCK as u64 + 11;
        let mut response = http
            .get(format!(
                "{base}/download?bytes={len}&hold_at={PATTERN_BLOCK}"
            ))
            .send()
            .await
            .expect("GET download");
        assert_eq!(response.content_length(), Some(len));
        let mut checker = PatternChecker::new();
        while checker.received() < PATTERN_BLOCK as u64 {
            let chunk = response.chunk().await.expect("chunk").expect("more");
            checker.feed(&chunk).expect("pattern");
        }
        let held = tokio::time::timeout(std::time::Duration::from_millis(300), response.chunk());
        assert!(held.await.is_err(), "the download went past hold_at");
        app.release_downloads();
        while let Some(chunk) = response.chunk().await.expect("chunk") {
            checker.feed(&chunk).expect("pattern");
        }
        assert_eq!(checker.received(), len);

        let tcp = tokio::net::TcpStream::connect(app.addr())
            .await
            .expect("connect");
        let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{}/ws", app.addr()), tcp)
            .await
            .expect("WebSocket handshake");
        ws.send(Message::text("ping?")).await.expect("send");
        let reply = ws.next().await.expect("a reply").expect("a message");
        assert_eq!(reply, Message::text("ping?"));
        assert_eq!(app.requests().len(), 3);
    }

    #[test]
    fn reads_query_numbers() {
        assert_eq!(query_number("bytes=10&hold_at=4", "bytes"), Some(10));
        assert_eq!(query_number("bytes=10&hold_at=4", "hold_at"), Some(4));
        assert_eq!(query_number("bytes=x", "bytes"), None);
    }
}

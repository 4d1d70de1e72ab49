//! End-to-end tests of the proxy: a real edge on 127.0.0.1 ports chosen by the OS, a small
//! hyper upstream, and raw-TCP, reqwest and hyper HTTP/2 clients.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::{Request, Response, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use kokoa_store::pulled::{Backend, EdgeCertificate, EdgeConfig, EdgePeer, Pulled};
use kokoa_store::{OriginKind, RateLimit};
use rustls::pki_types::pem::PemObject;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Proxy, ProxySettings};
use crate::limits::LimitSettings;
use crate::live::Live;

const APP: &str = "app.example.com";

// ---- the upstream ----

type UpBody = BoxBody<Bytes, Infallible>;

/// A hyper server: `/big?n=N` streams N bytes, `/slow` answers after 2 s, `/ws` echoes over a
/// WebSocket-style upgrade, anything else echoes the request as JSON (with its body length).
struct Upstream {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    paths: Arc<Mutex<Vec<String>>>,
}

async fn start_upstream() -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let paths = Arc::new(Mutex::new(Vec::new()));
    let (count, seen) = (accepted.clone(), paths.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let seen = seen.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| upstream(req, seen.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    Upstream {
        addr,
        accepted,
        paths,
    }
}

async fn upstream(
    mut req: Request<Incoming>,
    seen: Arc<Mutex<Vec<String>>>,
) -> Result<Response<UpBody>, Infallible> {
    seen.lock().expect("paths").push(req.uri().to_string());
    match req.uri().path() {
        "/big" => {
            let n: usize = req
                .uri()
                .query()
                .and_then(|q| q.strip_prefix("n="))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            let chunks = (0..n.div_ceil(chunk.len())).map(move |i| {
                let len = chunk.len().min(n - i * chunk.len());
                Ok::<_, Infallible>(Frame::data(chunk.slice(..len)))
            });
            let body = StreamBody::new(futures::stream::iter(chunks));
            Ok(Response::new(BodyExt::boxed(body)))
        }
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(2)).await;
            Ok(Response::new(
                Full::new(Bytes::from_static(b"slow")).boxed(),
            ))
        }
        "/ws" => {
            let upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(upgraded) = upgrade.await {
                    let mut io = TokioIo::new(upgraded);
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = io.read(&mut buf).await {
                        if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            });
            let response = Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header("upgrade", "websocket")
                .header("connection", "upgrade")
                .body(Empty::new().boxed())
                .expect("101");
            Ok(response)
        }
        _ => {
            let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (name, value) in req.headers() {
                headers
                    .entry(name.to_string())
                    .or_default()
                    .push(value.to_str().unwrap_or("?").to_string());
            }
            let (method, uri, version) = (
                req.method().to_string(),
                req.uri().to_string(),
                format!("{:?}", req.version()),
            );
            let mut body = req.into_body();
            let mut len = 0usize;
            while let Some(Ok(frame)) = body.frame().await {
                len += frame.data_ref().map_or(0, |d| d.len());
            }
            let echo = serde_json::json!({
                "method": method, "uri": uri, "version": version,
                "headers": headers, "body_len": len,
            });
            Ok(Response::new(
                Full::new(Bytes::from(echo.to_string())).boxed(),
            ))
        }
    }
}

// ---- the edge ----

struct Edge {
    http: SocketAddr,
    https: SocketAddr,
    proxy: Arc<Proxy>,
    shutdown: CancellationToken,
    served: Vec<JoinHandle<()>>,
    ca_pem: String,
}

fn direct(target: SocketAddr, allow_http: bool) -> Backend {
    Backend {
        origin_id: "o1".into(),
        origin: "home".into(),
        kind: OriginKind::Direct,
        target: target.to_string(),
        rate_limit: None,
        allow_http,
    }
}

/// Settings for tests: no default rate limit (tests send many requests).
fn settings() -> ProxySettings {
    ProxySettings {
        limits: LimitSettings {
            default_rate: None,
            ..LimitSettings::default()
        },
        ..ProxySettings::default()
    }
}

/// A test CA, and a certificate it signed for `app.example.com` and `*.example.com`.
fn certificate() -> (String, EdgeCertificate) {
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "kokoa test CA");
    let ca = ca.self_signed(&ca_key).expect("ca");
    let names = vec![APP.to_string(), "*.example.com".to_string()];
    let key = rcgen::KeyPair::generate().expect("key");
    let mut leaf = rcgen::CertificateParams::new(names.clone()).expect("params");
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let leaf = leaf.signed_by(&key, &ca, &ca_key).expect("leaf");
    let cert = EdgeCertificate {
        id: "c1".into(),
        names,
        chain_pem: leaf.pem(),
        key_pem: key.serialize_pem(),
        not_after: 1,
    };
    (ca.pem(), cert)
}

async fn start_edge(routes: Vec<(&str, Backend)>, settings: ProxySettings) -> Edge {
    let (ca_pem, cert) = certificate();
    let live = Arc::new(Live::new("e1".into()));
    let config = EdgeConfig {
        edge: EdgePeer {
            id: "e1".into(),
            name: "edge".into(),
            public_ip: "127.0.0.1".into(),
            wg_port: 51820,
            wg_public_key: String::new(),
            tunnel_ip: None,
        },
        routes: routes
            .into_iter()
            .map(|(h, b)| (h.to_string(), b))
            .collect(),
        hostnames: Vec::new(),
        peers: Vec::new(),
        certificates: vec![cert],
        acme_http01: [("tok-1".to_string(), "tok-1.thumbprint".to_string())].into(),
    };
    live.install(&Pulled {
        version: 3,
        config_hash: String::new(),
        stale: false,
        config,
    });
    let http = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let https = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let (http_addr, https_addr) = (
        http.local_addr().expect("addr"),
        https.local_addr().expect("addr"),
    );
    let proxy = Proxy::new(live.clone(), settings);
    let shutdown = CancellationToken::new();
    let tls = crate::tls::server_config(live);
    let served = vec![
        tokio::spawn(proxy.clone().serve_http(http, shutdown.clone())),
        tokio::spawn(proxy.clone().serve_https(https, tls, shutdown.clone())),
    ];
    Edge {
        http: http_addr,
        https: https_addr,
        proxy,
        shutdown,
        served,
        ca_pem,
    }
}

impl Edge {
    fn client(&self) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).expect("ca");
        reqwest::Client::builder()
            .resolve(APP, self.https)
            .add_root_certificate(ca)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client")
    }

    fn http_client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .resolve(APP, self.http)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client")
    }
}

// ---- raw HTTP/1.1 ----

/// Sends `request` on a new connection and reads until the edge closes it.
async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write");
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out)).await;
    read.expect("the edge closes the connection").expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

struct Reply {
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
}

fn parse(reply: &str) -> Reply {
    let (head, body) = reply.split_once("\r\n\r\n").expect("a response head");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_string(),
    }
}

fn echo(body: &str) -> Value {
    serde_json::from_str(body).expect("upstream echo")
}

async fn until(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ---- tests ----

#[tokio::test]
async fn plain_http_is_proxied_with_forwarded_headers() {
    let up = start_upstream().await;
    let edge = start_edge(vec![(APP, direct(up.addr, true))], settings()).await;
    let reply = parse(
        &raw(
            edge.http,
            b"GET /p?q=1 HTTP/1.1\r\nHost: App.Example.com:80\r\nX-Forwarded-For: 203.0.113.9\r\n\
              X-Request-Id: my-id.1\r\nConnection: close, X-Secret\r\nX-Secret: s\r\n\
              Proxy-Authorization: Basic x\r\nKeep-Alive: timeout=5\r\n\r\n",
        )
        .await,
    );
    assert_eq!(reply.status, 200);
    assert_eq!(reply.headers["x-request-id"], "my-id.1");
    let seen = echo(&reply.body);
    let h = &seen["headers"];
    assert_eq!(seen["uri"], "/p?q=1");
    assert_eq!(seen["version"], "HTTP/1.1");
    assert_eq!(h["host"][0], "App.Example.com:80");
    assert_eq!(h["x-forwarded-host"][0], "App.Example.com:80");
    assert_eq!(h["x-forwarded-for"][0], "203.0.113.9, 127.0.0.1");
    assert_eq!(h["x-real-ip"][0], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"][0], "http");
    assert_eq!(h["x-request-id"][0], "my-id.1");
    for gone in ["x-secret", "proxy-authorization", "keep-alive"] {
        assert!(h.get(gone).is_none(), "{gone} was forwarded");
    }
    // Without a valid id, one is made and sent both ways.
    let reply = parse(
        &raw(
            edge.http,
            b"GET / HTTP/1.1\r\nHost: app.example.com\r\nX-Request-Id: bad id\r\nConnection: close\r\n\r\n",
        )
        .await,
    );
    let id = &reply.headers["x-request-id"];
    assert_eq!(id.len(), 32);
    assert_eq!(
        &echo(&reply.body)["headers"]["x-request-id"][0],
        id.as_str()
    );
}

#[tokio::test]
async fn plain_http_redirects_to_https_unless_allowed() {
    let up = start_upstream().await;
    let edge = start_edge(vec![(APP, direct(up.addr, false))], settings()).await;
    let client = edge.http_client();
    let get = client
        .get(format!("http://{APP}/a/b?c=d"))
        .send()
        .await
        .expect("get");
    assert_eq!(get.status(), StatusCode::MOVED_PERMANENTLY);
    assert_eq!(get.headers()["location"], "https://app.example.com/a/b?c=d");
    let post = client
        .post(format!("http://{APP}/form"))
        .body("x")
        .send()
        .await
        .expect("post");
    assert_eq!(post.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(post.headers()["location"], "https://app.example.com/form");
    assert!(up.paths.lock().expect("paths").is_empty());
}

#[tokio::test]
async fn port_80_answers_acme_challenges_for_any_host() {
    let edge = start_edge(vec![], settings()).await;
    let reply = parse(
        &raw(
            edge.http,
            b"GET /.well-known/acme-challenge/tok-1 HTTP/1.1\r\nHost: new.example.org\r\nConnection: close\r\n\r\n",
        )
        .await,
    );
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "tok-1.thumbprint");
    let reply = parse(
        &raw(
            edge.http,
            b"GET /.well-known/acme-challenge/nope HTTP/1.1\r\nHost: new.example.org\r\nConnection: close\r\n\r\n",
        )
        .await,
    );
    assert_eq!(reply.status, 404);
}

#[tokio::test]
async fn unrouted_hosts_get_404_health_or_400() {
    let up = start_upstream().await;
    let edge = start_edge(vec![(APP, direct(up.addr, true))], settings()).await;
    let health = parse(
        &raw(
            edge.http,
            b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        )
        .await,
    );
    assert_eq!(health.status, 200);
    assert_eq!(health.headers["content-type"], "application/json");
    let report: Value = serde_json::from_str(&health.body).expect("json");
    assert_eq!(report["status"], "ok");
    assert_eq!(report["edge_id"], "e1");
    assert_eq!(report["version"], 3);
    assert_eq!(report["routes"], 1);
    assert_eq!(report["certificates"], 2);
    assert_eq!(report["origins"]["o1"]["name"], "home");
    assert_eq!(report["origins"]["o1"]["reachable"], Value::Null);

    // A routed host's /health is the site's own.
    let routed = parse(
        &raw(
            edge.http,
            b"GET /health HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n",
        )
        .await,
    );
    assert_eq!(echo(&routed.body)["uri"], "/health");
    let after = parse(
        &raw(
            edge.http,
            b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        )
        .await,
    );
    let report: Value = serde_json::from_str(&after.body).expect("json");
    assert_eq!(report["origins"]["o1"]["reachable"], true);

    let unknown = parse(
        &raw(
            edge.http,
            b"GET / HTTP/1.1\r\nHost: nope.example.org\r\nConnection: close\r\n\r\n",
        )
        .await,
    );
    assert_eq!(unknown.status, 404);
    assert!(unknown.headers["content-type"].starts_with("text/html"));
    assert!(unknown.body.contains(&unknown.headers["x-request-id"]));
    let json = parse(
        &raw(
            edge.http,
            b"GET / HTTP/1.1\r\nHost: nope.example.org\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
        )
        .await,
    );
    assert_eq!(json.status, 404);
    assert_eq!(echo(&json.body)["status"], 404);

    let missing = raw(edge.http, b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert_eq!(parse(&missing).status, 400);
    let two = raw(
        edge.http,
        b"GET / HTTP/1.1\r\nHost: app.example.com\r\nHost: x.org\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(parse(&two).status, 400);
    let invalid = raw(
        edge.http,
        b"GET / HTTP/1.1\r\nHost: bad host!\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(parse(&invalid).status, 400);
    // HTTP/1.0 may leave Host out: not routed, so 404 (or /health).
    let old = raw(edge.http, b"GET / HTTP/1.0\r\n\r\n").await;
    assert_eq!(parse(&old).status, 404);
    let old_health = raw(edge.http, b"GET /health HTTP/1.0\r\n\r\n").await;
    assert_eq!(parse(&old_health).status, 200);
}

#[tokio::test]
async fn https_serves_http2_and_http1_by_alpn() {
    let up = start_upstream().await;
    let edge = start_edge(vec![(APP, direct(up.addr, false))], settings()).await;

    // HTTP/1.1 (reqwest offers no h2 here).
    let response = edge
        .client()
        .get(format!("https://{APP}/one"))
        .header("cookie", "a=1")
        .send()
        .await
        .expect("https");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    let seen: Value = response.json().await.expect("json");
    assert_eq!(seen["headers"]["x-forwarded-proto"][0], "https");
    assert_eq!(seen["headers"]["host"][0], APP);

    // HTTP/2.
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(edge.ca_pem.as_bytes()) {
        roots.add(cert.expect("pem")).expect("root");
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(edge.https).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from(APP).expect("name");
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
        .expect("tls");
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2");
    tokio::spawn(conn);
    for path in ["/two?x=1", "/three"] {
        let request = Request::get(format!("https://{APP}{path}"))
            .header("cookie", "a=1")
            .header("cookie", "b=2")
            .body(Empty::<Bytes>::new())
            .expect("request");
        let response = send.send_request(request).await.expect("response");
        assert_eq!(response.version(), Version::HTTP_2);
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers().contains_key("x-request-id"));
        let body = response.into_body().collect().await.expect("body");
        let seen: Value = serde_json::from_slice(&body.to_bytes()).expect("json");
        assert_eq!(seen["uri"], path);
        assert_eq!(seen["version"], "HTTP/1.1");
        assert_eq!(seen["headers"]["host"][0], APP);
        assert_eq!(seen["headers"]["cookie"][0], "a=1; b=2");
        assert_eq!(seen["headers"]["x-forwarded-proto"][0], "https");
    }
}

#[tokio::test]
async fn upstream_failures_become_pages_without_internals() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed_addr = closed.local_addr().expect("addr");
    drop(closed);
    let up = start_upstream().await;
    let mut tunnel = direct(up.addr, true);
    tunnel.kind = OriginKind::Tunnel;
    tunnel.origin_id = "o2".into();
    let mut s = settings();
    s.upstream.response_timeout = Duration::from_millis(300);
    let mut down = direct(closed_addr, true);
    down.origin_id = "o3".into();
    let edge = start_edge(
        vec![
            ("down.example.com", down),
            ("tunnel.example.com", tunnel),
            (APP, direct(up.addr, true)),
        ],
        s,
    )
    .await;
    let client = reqwest::Client::builder()
        .resolve("down.example.com", edge.http)
        .resolve("tunnel.example.com", edge.http)
        .resolve(APP, edge.http)
        .build()
        .expect("client");
    let down = client
        .get("http://down.example.com/")
        .send()
        .await
        .expect("502");
    assert_eq!(down.status(), StatusCode::BAD_GATEWAY);
    let page = down.text().await.expect("page");
    assert!(!page.contains(&closed_addr.port().to_string()), "{page}");
    assert!(!page.contains("refused"), "{page}");

    let tunnel = client
        .get("http://tunnel.example.com/")
        .header("accept", "application/json")
        .send()
        .await
        .expect("503");
    assert_eq!(tunnel.status(), StatusCode::SERVICE_UNAVAILABLE);
    let page: Value = tunnel.json().await.expect("json page");
    assert_eq!(page["status"], 503);

    let slow = client
        .get(format!("http://{APP}/slow"))
        .send()
        .await
        .expect("504");
    assert_eq!(slow.status(), StatusCode::GATEWAY_TIMEOUT);

    let health: Value = reqwest::get(format!("http://{}/health", edge.http))
        .await
        .expect("health")
        .json()
        .await
        .expect("json");
    assert_eq!(health["origins"]["o3"]["reachable"], false);
    assert_eq!(health["origins"]["o3"]["last_error"], "connection refused");
    assert_eq!(health["origins"]["o2"]["reachable"], false);
    assert_eq!(
        health["origins"]["o2"]["last_error"],
        "no tunnel to origin home yet"
    );
}

#[tokio::test]
async fn clients_over_the_rate_limit_get_429() {
    let up = start_upstream().await;
    let mut backend = direct(up.addr, true);
    backend.rate_limit = Some(RateLimit {
        per_second: 1,
        burst: 2,
    });
    let edge = start_edge(vec![(APP, backend)], settings()).await;
    let client = edge.http_client();
    for _ in 0..2 {
        let ok = client
            .get(format!("http://{APP}/"))
            .send()
            .await
            .expect("ok");
        assert_eq!(ok.status(), StatusCode::OK);
    }
    let limited = client
        .get(format!("http://{APP}/"))
        .send()
        .await
        .expect("429");
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.headers()["retry-after"], "1");
}

#[tokio::test]
async fn connections_over_the_client_limit_are_closed() {
    let up = start_upstream().await;
    let mut s = settings();
    s.limits.max_connections_per_client = 2;
    let edge = start_edge(vec![(APP, direct(up.addr, true))], s).await;
    let request = b"GET / HTTP/1.1\r\nHost: app.example.com\r\n\r\n";
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(edge.http).await.expect("connect");
        stream.write_all(request).await.expect("write");
        let mut buf = [0u8; 1024];
        assert!(stream.read(&mut buf).await.expect("read") > 0);
        open.push(stream);
    }
    let mut third = TcpStream::connect(edge.http).await.expect("connect");
    let _ = third.write_all(request).await;
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buf))
        .await
        .expect("closed at once");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    drop(open.pop());
    until("a connection slot to free up", || {
        edge.proxy.limits().open_connections() == 1
    })
    .await;
    let reply = raw(
        edge.http,
        b"GET / HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(parse(&reply).status, 200);
}

#[tokio::test]
async fn bodies_over_the_limit_get_413() {
    let up = start_upstream().await;
    let mut s = settings();
    s.max_request_body = 1024;
    let edge = start_edge(vec![(APP, direct(up.addr, true))], s).await;
    let declared = raw(
        edge.http,
        b"POST / HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: 2048\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(parse(&declared).status, 413);

    let mut chunked =
        b"POST / HTTP/1.1\r\nHost: app.example.com\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            .to_vec();
    for _ in 0..4 {
        chunked.extend_from_slice(b"400\r\n");
        chunked.extend_from_slice(&[b'y'; 1024]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    assert_eq!(parse(&raw(edge.http, &chunked).await).status, 413);

    let within = edge
        .http_client()
        .post(format!("http://{APP}/"))
        .body(vec![b'z'; 1000])
        .send()
        .await
        .expect("post");
    assert_eq!(within.status(), StatusCode::OK);
    assert_eq!(
        within.json::<Value>().await.expect("json")["body_len"],
        1000
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_both_ways() {
    let up = start_upstream().await;
    let edge = start_edge(vec![(APP, direct(up.addr, false))], settings()).await;
    let client = edge.client();
    let size = 100 * 1024 * 1024;
    let mut download = client
        .get(format!("https://{APP}/big?n={size}"))
        .send()
        .await
        .expect("download");
    assert_eq!(download.status(), StatusCode::OK);
    let mut received = 0;
    while let Some(chunk) = download.chunk().await.expect("chunk") {
        received += chunk.len();
    }
    assert_eq!(received, size);

    let upload = client
        .post(format!("https://{APP}/up"))
        .body(vec![b'u'; 32 * 1024 * 1024])
        .send()
        .await
        .expect("upload");
    assert_eq!(upload.status(), StatusCode::OK);
    let seen: Value = upload.json().await.expect("json");
    assert_eq!(seen["body_len"], 32 * 1024 * 1024);
}

#[tokio::test]
async fn upstream_connections_are_reused() {
    let up = start_upstream().await;
    let edge = start_edge(vec![(APP, direct(up.addr, false))], settings()).await;
    let client = edge.client();
    for _ in 0..10 {
        let response = client
            .get(format!("https://{APP}/"))
            .send()
            .await
            .expect("get");
        response.bytes().await.expect("body");
        until("the upstream connection back in the pool", || {
            edge.proxy.upstreams().idle_connections() == 1
        })
        .await;
    }
    assert_eq!(up.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn websockets_are_relayed() {
    let up = start_upstream().await;
    let edge = start_edge(vec![(APP, direct(up.addr, true))], settings()).await;
    let mut stream = TcpStream::connect(edge.http).await.expect("connect");
    stream
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: app.example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .expect("write");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await.expect("head");
        head.push(byte[0]);
    }
    let reply = parse(&String::from_utf8_lossy(&head));
    assert_eq!(reply.status, 101);
    assert_eq!(reply.headers["upgrade"], "websocket");
    assert_eq!(reply.headers["connection"], "upgrade");
    for message in [&b"hello"[..], b"again"] {
        stream.write_all(message).await.expect("send");
        let mut back = vec![0u8; message.len()];
        stream.read_exact(&mut back).await.expect("echo");
        assert_eq!(back, message);
    }
}

#[tokio::test]
async fn content_length_with_transfer_encoding_is_refused() {
    let up = start_upstream().await;
    let edge = start_edge(vec![(APP, direct(up.addr, true))], settings()).await;
    let smuggle = b"POST /cl-te HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: 4\r\n\
                    Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n\
                    GET /smuggled HTTP/1.1\r\nHost: app.example.com\r\n\r\n";
    let reply = raw(edge.http, smuggle).await;
    assert_eq!(reply.matches("HTTP/1.1 ").count(), 1, "{reply}");
    assert_eq!(parse(&reply).status, 400, "{reply}");
    assert_eq!(parse(&reply).headers["connection"], "close");

    // Also as the second request of a connection, the other way round, over TLS.
    let tls = {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(edge.ca_pem.as_bytes()) {
            roots.add(cert.expect("pem")).expect("root");
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    };
    let tcp = TcpStream::connect(edge.https).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from(APP).expect("name");
    let mut stream = tls.connect(name, tcp).await.expect("tls");
    stream
        .write_all(
            b"GET /first HTTP/1.1\r\nHost: app.example.com\r\n\r\n\
              POST /te-cl HTTP/1.1\r\nHost: app.example.com\r\nTransfer-Encoding: chunked\r\n\
              Content-Length: 3\r\n\r\n0\r\n\r\n",
        )
        .await
        .expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out))
        .await
        .expect("closed")
        .expect("read");
    let text = String::from_utf8_lossy(&out);
    // The upstream's JSON has no final newline: find the status lines anywhere.
    let statuses: Vec<&str> = text
        .match_indices("HTTP/1.1 ")
        .map(|(at, _)| &text[at..at + 12])
        .collect();
    assert_eq!(statuses, ["HTTP/1.1 200", "HTTP/1.1 400"], "{text}");

    let seen = up.paths.lock().expect("paths").clone();
    assert_eq!(
        seen,
        ["/first"],
        "only the clean request reached the upstream"
    );

    // Plain chunked uploads still pass.
    let mut chunked = b"POST /chunked HTTP/1.1\r\nHost: app.example.com\r\n\
                        Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        .to_vec();
    chunked.extend_from_slice(b"5\r\nhello\r\n0\r\n\r\n");
    let reply = parse(&raw(edge.http, &chunked).await);
    assert_eq!(reply.status, 200);
    assert_eq!(echo(&reply.body)["body_len"], 5);
}

#[tokio::test]
async fn slow_and_oversized_request_heads_are_cut_off() {
    let up = start_upstream().await;
    let mut s = settings();
    s.header_read_timeout = Duration::from_millis(300);
    s.max_header_bytes = 16 * 1024;
    let edge = start_edge(vec![(APP, direct(up.addr, true))], s).await;

    let started = Instant::now();
    let mut stream = TcpStream::connect(edge.http).await.expect("connect");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: app.exa")
        .await
        .expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut out))
        .await
        .expect("the slow client is cut off")
        .expect("read");
    assert!(started.elapsed() < Duration::from_secs(3));
    let text = String::from_utf8_lossy(&out);
    assert!(out.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");

    // A connection that never sends a byte is closed as soon.
    let started = Instant::now();
    let mut silent = TcpStream::connect(edge.http).await.expect("connect");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(3), silent.read_to_end(&mut out))
        .await
        .expect("the silent client is cut off")
        .expect("read");
    assert!(started.elapsed() < Duration::from_secs(3));

    let mut big = b"GET / HTTP/1.1\r\nHost: app.example.com\r\nX-Big: ".to_vec();
    big.extend_from_slice(&[b'b'; 32 * 1024]);
    big.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
    let reply = raw(edge.http, &big).await;
    assert!(
        reply.is_empty() || reply.starts_with("HTTP/1.1 431"),
        "{reply}"
    );
    assert!(up.paths.lock().expect("paths").is_empty());
}

#[tokio::test]
async fn shutdown_finishes_requests_then_frees_the_ports() {
    let up = start_upstream().await;
    let edge = start_edge(vec![(APP, direct(up.addr, true))], settings()).await;
    let client = edge.http_client();
    // An idle keep-alive connection, and a request in flight.
    client
        .get(format!("http://{APP}/"))
        .send()
        .await
        .expect("warm up");
    let slow = tokio::spawn({
        let client = client.clone();
        async move { client.get(format!("http://{APP}/slow")).send().await }
    });
    until("the slow request to reach the upstream", || {
        up.paths.lock().expect("paths").iter().any(|p| p == "/slow")
    })
    .await;
    let started = Instant::now();
    edge.shutdown.cancel();
    for served in edge.served {
        tokio::time::timeout(Duration::from_secs(5), served)
            .await
            .expect("listeners stop within the grace")
            .expect("join");
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    let slow = slow
        .await
        .expect("join")
        .expect("the slow request finished");
    assert_eq!(slow.status(), StatusCode::OK);
    TcpListener::bind(edge.http).await.expect("http port free");
    TcpListener::bind(edge.https)
        .await
        .expect("https port free");
}

#[tokio::test]
async fn shutdown_drops_what_outlives_the_grace() {
    let up = start_upstream().await;
    let mut s = settings();
    s.shutdown_grace = Duration::from_millis(200);
    let edge = start_edge(vec![(APP, direct(up.addr, true))], s).await;
    let mut ws = TcpStream::connect(edge.http).await.expect("connect");
    ws.write_all(
        b"GET /ws HTTP/1.1\r\nHost: app.example.com\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .await
    .expect("write");
    let mut buf = [0u8; 512];
    assert!(ws.read(&mut buf).await.expect("101") > 0);
    edge.shutdown.cancel();
    for served in edge.served {
        tokio::time::timeout(Duration::from_secs(3), served)
            .await
            .expect("listeners stop after the grace")
            .expect("join");
    }
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(3), ws.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the websocket was closed");
}

//! Hostile and malformed HTTP on the edge, over plain HTTP and over TLS: ambiguous framing,
//! oversized headers, a missing, doubled or invalid Host, and a slow-loris each get an error
//! status or a closed connection (and never reach the origin), while other clients are served;
//! and a route's rate limit answers 429 past its burst, for that route only.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kokoa_tests::{tls_connect_any_cert, OriginApp};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::edge_common::{assert_from, fetch, unlimited, wait_origin, EdgeSetup};

/// The edge's header read timeout is 10 s; a slow client must be cut off within this.
const SLOW_LORIS_CUT_WITHIN: Duration = Duration::from_secs(16);
/// How long a refused request may take to be answered or closed.
const ANSWER_WITHIN: Duration = Duration::from_secs(15);

/// The hostname the hostile requests aim at (a real route, with plain HTTP allowed).
const HOST: &str = "guarded.example.com";

/// How the edge dealt with a raw request.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// It answered: the status, the status line, and what followed (the connection closed,
    /// stayed open, or carried more answers: a sign that part of the request was taken for
    /// another request).
    Status(u16, String, String),
    /// It closed (or reset) the connection without an answer.
    Closed(String),
    /// Nothing happened within the deadline.
    Hung,
}

/// How long to keep reading after an answer, to see whether the connection closes or more
/// answers follow.
const AFTER_ANSWER: Duration = Duration::from_secs(1);

/// Plain TCP or TLS to the edge.
#[derive(Debug, Clone, Copy)]
enum Transport {
    Plain,
    Tls,
}

/// A connection to the edge's HTTP (plain) or HTTPS (TLS, SNI [`HOST`], HTTP/1.1) port.
async fn connect(transport: Transport, http: SocketAddr, https: SocketAddr) -> Box<dyn Stream> {
    match transport {
        Transport::Plain => Box::new(
            TcpStream::connect(http)
                .await
                .unwrap_or_else(|e| panic!("connect {http}: {e}")),
        ),
        Transport::Tls => Box::new(
            tls_connect_any_cert(https, HOST, &["http/1.1"])
                .await
                .unwrap_or_else(|e| panic!("{e}")),
        ),
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Reads the answer's status line (or EOF, an error, `deadline`), then whatever follows for
/// up to [`AFTER_ANSWER`] of silence. `got` holds bytes already read.
async fn read_outcome(
    stream: &mut Box<dyn Stream>,
    deadline: Instant,
    mut got: Vec<u8>,
) -> Outcome {
    let mut buf = [0u8; 4096];
    let mut closed = None;
    while !got.windows(2).any(|w| w == b"\r\n") {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) if got.is_empty() => return Outcome::Hung,
            Ok(Ok(0)) if got.is_empty() => return Outcome::Closed("EOF".into()),
            Ok(Err(e)) if got.is_empty() => return Outcome::Closed(e.to_string()),
            Err(_) => break,
            Ok(Ok(0)) => {
                closed = Some("EOF".to_string());
                break;
            }
            Ok(Err(e)) => {
                closed = Some(e.to_string());
                break;
            }
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
    while closed.is_none() {
        match tokio::time::timeout(AFTER_ANSWER, stream.read(&mut buf)).await {
            Err(_) => break,
            Ok(Ok(0)) => closed = Some("EOF".to_string()),
            Ok(Err(e)) => closed = Some(e.to_string()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    let line = text.lines().next().unwrap_or_default().to_string();
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let more: Vec<&str> = text
        .lines()
        .skip(1)
        .filter(|l| l.starts_with("HTTP/1."))
        .collect();
    let mut then = match closed {
        Some(how) => format!("then closed ({how})"),
        None => "then kept open".to_string(),
    };
    if !more.is_empty() {
        then.push_str(&format!(", after more answers: {more:?}"));
    }
    Outcome::Status(status, line, then)
}

/// Sends `request` on a fresh connection and reports what the edge did.
async fn send_raw(
    transport: Transport,
    http: SocketAddr,
    https: SocketAddr,
    request: &[u8],
) -> Outcome {
    let mut stream = connect(transport, http, https).await;
    let deadline = Instant::now() + ANSWER_WITHIN;
    // The edge may answer (and close) before it has read everything: a failed write is fine,
    // what it said (if anything) is read next.
    let _ = stream.write_all(request).await;
    let _ = stream.flush().await;
    read_outcome(&mut stream, deadline, Vec::new()).await
}

/// Sends a request line and then one header every second, never ending the head; returns what
/// the edge did and when.
async fn slow_loris(
    transport: Transport,
    http: SocketAddr,
    https: SocketAddr,
) -> (Outcome, Duration) {
    let mut stream = connect(transport, http, https).await;
    let started = Instant::now();
    let deadline = started + SLOW_LORIS_CUT_WITHIN;
    let head = format!("GET /hostile/loris HTTP/1.1\r\nHost: {HOST}\r\n");
    if stream.write_all(head.as_bytes()).await.is_err() {
        return (
            read_outcome(&mut stream, deadline, Vec::new()).await,
            started.elapsed(),
        );
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut n = 0u32;
    let mut buf = [0u8; 1];
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if Instant::now() >= deadline {
                    return (Outcome::Hung, started.elapsed());
                }
                n += 1;
                let line = format!("X-Loris-{n}: {n}\r\n");
                if stream.write_all(line.as_bytes()).await.is_err() {
                    let outcome = read_outcome(&mut stream, deadline, Vec::new()).await;
                    return (outcome, started.elapsed());
                }
            }
            read = stream.read(&mut buf) => {
                let outcome = match read {
                    Ok(0) => Outcome::Closed("EOF".into()),
                    Err(e) => Outcome::Closed(e.to_string()),
                    Ok(_) => read_outcome(&mut stream, deadline, buf.to_vec()).await,
                };
                return (outcome, started.elapsed());
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_hostile_http_is_refused_while_others_are_served() {
    let mut setup = EdgeSetup::start().await;
    let app = OriginApp::start("guarded").await;
    setup.certificate(&[HOST]).await;
    let (_, index) = setup
        .add_route(json!({
            "hostname": HOST,
            "target": app.target(),
            "allow_http": true,
            "rate_limit": unlimited(),
        }))
        .await;
    setup.served(index).await;
    let client = setup.client();
    let good_url = setup.edge.https_url(HOST, "/good");
    wait_origin(&client, &good_url, "guarded").await;
    let (http, https) = (setup.edge.http_addr(), setup.edge.https_addr());

    let big = "a".repeat(100 * 1024);
    let cases: Vec<(&str, String, &[u16])> = vec![
        (
            "both Content-Length and Transfer-Encoding",
            format!(
                "POST /hostile/cl-te HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 5\r\n\
                 Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /hostile/smuggled HTTP/1.1\r\n\
                 Host: {HOST}\r\n\r\n"
            ),
            &[400],
        ),
        (
            "a 100 KiB header",
            format!("GET /hostile/big HTTP/1.1\r\nHost: {HOST}\r\nX-Big: {big}\r\n\r\n"),
            &[431],
        ),
        (
            "no Host on HTTP/1.1",
            "GET /hostile/no-host HTTP/1.1\r\n\r\n".to_string(),
            &[400],
        ),
        (
            "an invalid Host",
            "GET /hostile/bad-host HTTP/1.1\r\nHost: bad host!\r\n\r\n".to_string(),
            &[400],
        ),
        (
            "two Host headers",
            format!(
                "GET /hostile/two-hosts HTTP/1.1\r\nHost: {HOST}\r\nHost: other.example.com\r\n\r\n"
            ),
            &[400],
        ),
    ];

    // The slow-lorises run (over both transports) while the other cases and normal requests go.
    let lorises = [Transport::Plain, Transport::Tls]
        .map(|transport| tokio::spawn(slow_loris(transport, http, https)));

    let mut problems = Vec::new();
    for transport in [Transport::Plain, Transport::Tls] {
        for (what, request, allowed) in &cases {
            let outcome = send_raw(transport, http, https, request.as_bytes()).await;
            let fine = match &outcome {
                Outcome::Closed(_) => true,
                Outcome::Status(status, ..) => allowed.contains(status),
                Outcome::Hung => false,
            };
            eprintln!("{what} over {transport:?}: {outcome:?}");
            if !fine {
                problems.push(format!(
                    "{what} over {transport:?}: want {allowed:?} or a closed connection, got \
                     {outcome:?}"
                ));
            }
            let answer = fetch(&client, &good_url)
                .await
                .unwrap_or_else(|e| panic!("a normal request after {what}: {e}"));
            assert_from(&format!("GET {good_url} after {what}"), &answer, "guarded");
        }
    }

    // Normal clients are served while the slow-lorises hang on.
    let mut served_meanwhile = 0;
    while lorises.iter().any(|l| !l.is_finished()) {
        let answer = fetch(&client, &good_url)
            .await
            .unwrap_or_else(|e| panic!("a normal request during the slow-loris: {e}"));
        assert_from(
            &format!("GET {good_url} during the slow-loris"),
            &answer,
            "guarded",
        );
        served_meanwhile += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for (transport, loris) in [Transport::Plain, Transport::Tls].iter().zip(lorises) {
        let (outcome, after) = loris.await.expect("slow-loris task");
        let fine = match &outcome {
            Outcome::Closed(_) => true,
            Outcome::Status(status, ..) => *status == 408,
            Outcome::Hung => false,
        };
        if !fine {
            problems.push(format!(
                "a slow-loris over {transport:?}: want 408 or a closed connection within \
                 {SLOW_LORIS_CUT_WITHIN:?}, got {outcome:?} after {after:?}"
            ));
        } else {
            eprintln!("slow-loris over {transport:?}: {outcome:?} after {after:?}");
        }
    }
    assert!(
        served_meanwhile > 0,
        "no normal request was made during the slow-loris"
    );

    let reached: Vec<String> = app
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/hostile"))
        .map(|r| {
            let headers: Vec<String> = r
                .headers
                .iter()
                .map(|(name, value)| match value.char_indices().nth(40) {
                    Some((cut, _)) => format!("{name}: {}… ({} bytes)", &value[..cut], value.len()),
                    None => format!("{name}: {value}"),
                })
                .collect();
            format!("{} {} with headers {headers:?}", r.method, r.path)
        })
        .collect();
    if !reached.is_empty() {
        problems.push(format!("hostile requests reached the origin: {reached:?}"));
    }
    assert!(
        setup.edge.is_running(),
        "the edge died: {:?}",
        setup.edge.last_exit()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_rate_limit_answers_429_past_its_burst() {
    let setup = EdgeSetup::start().await;
    let app = OriginApp::start("limited").await;
    setup.certificate(&["*.example.com"]).await;
    setup
        .add_route(json!({
            "hostname": "limited.example.com",
            "target": app.target(),
            "rate_limit": { "per_second": 1, "burst": 2 },
        }))
        .await;
    let index = setup.route("open.example.com", &app.target()).await;
    setup.served(index).await;
    let client = setup.client();
    let limited = setup.edge.https_url("limited.example.com", "/");
    let open = setup.edge.https_url("open.example.com", "/");
    // The route must exist before the burst is spent: /health says it is served.

    let started = Instant::now();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let answer = fetch(&client, &limited)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        statuses.push(answer.status);
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(900),
        "4 requests took {took:?}: too slow to test a 1 r/s limit"
    );
    assert_eq!(
        statuses,
        [200, 200, 429, 429],
        "4 quick requests to a route limited to 1 r/s, burst 2 (in {took:?})"
    );

    // Another route is not limited by this one's budget.
    let answer = fetch(&client, &open)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_from(
        &format!("GET {open} right after {limited} answered 429"),
        &answer,
        "limited",
    );

    // The budget comes back at 1 r/s.
    wait_origin(&client, &limited, "limited").await;
    let refilled = started.elapsed();
    assert!(
        refilled < Duration::from_secs(5),
        "the limited route answered 200 again only after {refilled:?}"
    );
}

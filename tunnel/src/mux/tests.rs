//! Mux tests: an edge (client) and an agent (serve) over an in-memory duplex, local TCP
//! listeners as targets.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::*;

/// Generous bound for anything that should finish promptly.
const DEADLINE: Duration = Duration::from_secs(60);
const DUPLEX_BUFFER: usize = 4 << 20;

fn allow_all() -> Arc<dyn TargetPolicy> {
    Arc::new(|_: &str| true)
}

struct Pair {
    client: MuxClient,
    driver: JoinHandle<Result<(), MuxError>>,
    agent: JoinHandle<Result<(), MuxError>>,
}

async fn pair_with(settings: &MuxSettings, policy: Arc<dyn TargetPolicy>) -> Pair {
    let (edge_io, agent_io) = tokio::io::duplex(DUPLEX_BUFFER);
    let agent = tokio::spawn(serve(agent_io, settings, policy));
    let (client, driver) = client(edge_io, settings).await.expect("handshake");
    let driver = tokio::spawn(driver);
    Pair {
        client,
        driver,
        agent,
    }
}

async fn pair(policy: Arc<dyn TargetPolicy>) -> Pair {
    pair_with(&MuxSettings::default(), policy).await
}

async fn within<F: std::future::Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(DEADLINE, future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {DEADLINE:?}"))
}

/// A target that echoes every connection back; returns its address.
async fn echo_target() -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let (mut reader, mut writer) = tcp.split();
                let _ = tokio::io::copy(&mut reader, &mut writer).await;
                let _ = writer.shutdown().await;
            });
        }
    });
    (addr, task)
}

/// Deterministic pseudo-random bytes (xorshift).
fn pattern(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Writes `data` into `stream` (then END_STREAM) while reading everything back.
async fn round_trip(stream: MuxStream, data: &[u8]) -> Vec<u8> {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let write = async {
        // Uneven pieces exercise partial writes.
        for piece in data.chunks(100_003) {
            writer.write_all(piece).await.expect("write");
        }
        writer.shutdown().await.expect("shutdown");
    };
    let read = async {
        let mut received = Vec::with_capacity(data.len());
        reader.read_to_end(&mut received).await.expect("read");
        received
    };
    let ((), received) = tokio::join!(write, read);
    received
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_20_mib_each_way_intact() {
    let (target, _echo) = echo_target().await;
    let pair = pair(allow_all()).await;
    let stream = within("open", pair.client.open(&target.to_string()))
        .await
        .expect("open");
    let data = pattern(20 << 20, 0x1234_5678);
    let received = within("20 MiB echo", round_trip(stream, &data)).await;
    assert_eq!(received.len(), data.len());
    assert!(received == data, "echoed bytes differ");
}

#[tokio::test]
async fn download_20_mib_from_target() {
    // The target sends 20 MiB without reading; the edge reads it with AsyncRead.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let target = listener.local_addr().expect("addr");
    let data = Arc::new(pattern(20 << 20, 42));
    let sent = data.clone();
    let _target = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.expect("accept");
        tcp.write_all(&sent).await.expect("target write");
        tcp.shutdown().await.expect("target shutdown");
        // Wait for the edge's END_STREAM, relayed as EOF.
        let mut rest = Vec::new();
        tcp.read_to_end(&mut rest).await.expect("target read");
        assert!(rest.is_empty());
    });
    let pair = pair(allow_all()).await;
    let mut stream = within("open", pair.client.open(&target.to_string()))
        .await
        .expect("open");
    let mut received = Vec::new();
    within("download", stream.read_to_end(&mut received))
        .await
        .expect("read");
    stream.shutdown().await.expect("shutdown");
    assert!(received == *data, "downloaded bytes differ");
}

#[tokio::test]
async fn half_close_still_reads_reply() {
    // The target reads until EOF, then answers with what it got and closes.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let target = listener.local_addr().expect("addr");
    let _target = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.expect("accept");
        let mut got = Vec::new();
        tcp.read_to_end(&mut got).await.expect("target read");
        let reply = format!("got {} bytes", got.len());
        tcp.write_all(reply.as_bytes()).await.expect("target write");
        tcp.shutdown().await.expect("target shutdown");
    });
    let pair = pair(allow_all()).await;
    let mut stream = within("open", pair.client.open(&target.to_string()))
        .await
        .expect("open");
    stream.write_all(&[7u8; 12_345]).await.expect("write");
    stream.shutdown().await.expect("shutdown");
    assert!(
        stream.write_all(b"late").await.is_err(),
        "write after shutdown"
    );
    let mut reply = String::new();
    within("reply", stream.read_to_string(&mut reply))
        .await
        .expect("read");
    assert_eq!(reply, "got 12345 bytes");
}

#[tokio::test]
async fn target_not_allowed_is_never_dialled() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let forbidden = listener.local_addr().expect("addr").to_string();
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    let policy: Arc<dyn TargetPolicy> = Arc::new(move |target: &str| {
        counter.fetch_add(1, Ordering::SeqCst);
        target == "127.0.0.1:1"
    });
    let pair = pair(policy).await;
    let error = within("open", pair.client.open(&forbidden))
        .await
        .expect_err("forbidden target");
    assert!(
        matches!(&error, OpenError::NotAllowed(target) if *target == forbidden),
        "{error:?}"
    );
    assert_eq!(asked.load(Ordering::SeqCst), 1);
    // A dial would have completed before the 403, so it would be queued by now.
    assert!(
        listener.accept().now_or_never().is_none(),
        "the forbidden target was dialled"
    );
    assert!(!pair.client.is_closed());
}

#[tokio::test]
async fn refused_target_is_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let closed_port = listener.local_addr().expect("addr").to_string();
    drop(listener);
    let pair = pair(allow_all()).await;
    let error = within("open", pair.client.open(&closed_port))
        .await
        .expect_err("closed port");
    assert!(matches!(error, OpenError::Refused(_)), "{error:?}");
    assert!(!error.is_connection_failure());
}

#[tokio::test]
async fn malformed_targets_are_rejected_locally() {
    let pair = pair(allow_all()).await;
    for target in [
        "example.com",
        "http://example.com:80",
        "a@b:80",
        "",
        "host:port",
    ] {
        let error = pair.client.open(target).await.expect_err(target);
        assert!(
            matches!(error, OpenError::Protocol(_)),
            "{target}: {error:?}"
        );
    }
    assert!(!pair.client.is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_streams() {
    let (target, _echo) = echo_target().await;
    let pair = pair(allow_all()).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..100u64 {
        let client = pair.client.clone();
        let target = target.to_string();
        tasks.spawn(async move {
            let stream = client.open(&target).await.expect("open");
            let data = pattern(64 << 10, i + 1);
            let received = round_trip(stream, &data).await;
            assert!(received == data, "stream {i} corrupted");
        });
    }
    within("100 streams", async {
        while let Some(joined) = tasks.join_next().await {
            joined.expect("stream task");
        }
    })
    .await;
}

#[tokio::test]
async fn more_streams_than_the_limit_wait_their_turn() {
    let settings = MuxSettings {
        max_concurrent_streams: 4,
        ..MuxSettings::default()
    };
    let (target, _echo) = echo_target().await;
    let pair = pair_with(&settings, allow_all()).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20u64 {
        let client = pair.client.clone();
        let target = target.to_string();
        tasks.spawn(async move {
            let stream = client.open(&target).await.expect("open");
            let data = pattern(10_000, i + 1);
            assert!(round_trip(stream, &data).await == data);
        });
    }
    within("20 streams over a limit of 4", async {
        while let Some(joined) = tasks.join_next().await {
            joined.expect("stream task");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_end_closes_the_client() {
    let (target, _echo) = echo_target().await;
    let pair = pair(allow_all()).await;
    let mut stream = pair.client.open(&target.to_string()).await.expect("open");
    assert!(!pair.client.is_closed());

    // The agent goes away: its future (and with it the connection's io) is dropped.
    pair.agent.abort();
    let ended = within("driver", pair.driver).await.expect("driver task");
    tracing::debug!(?ended, "driver ended");
    assert!(pair.client.is_closed());
    let error = pair
        .client
        .open(&target.to_string())
        .await
        .expect_err("closed connection");
    assert!(matches!(error, OpenError::Closed), "{error:?}");
    assert!(error.is_connection_failure());
    // The stream that was open fails too.
    let mut buf = [0u8; 16];
    assert!(within("read", stream.read(&mut buf)).await.is_err());
}

#[tokio::test]
async fn dropped_io_ends_driver_without_agent() {
    let (edge_io, agent_io) = tokio::io::duplex(DUPLEX_BUFFER);
    let (client, driver) = client(edge_io, &MuxSettings::default())
        .await
        .expect("handshake");
    let driver = tokio::spawn(driver);
    drop(agent_io);
    let ended = within("driver", driver).await.expect("driver task");
    assert!(ended.is_err(), "{ended:?}");
    assert!(client.is_closed());
    assert!(matches!(
        client.open("127.0.0.1:9").await,
        Err(OpenError::Closed)
    ));
}

#[tokio::test]
async fn dropped_driver_closes_the_client() {
    let (edge_io, _agent_io) = tokio::io::duplex(DUPLEX_BUFFER);
    let (client, driver) = client(edge_io, &MuxSettings::default())
        .await
        .expect("handshake");
    drop(driver);
    assert!(client.is_closed());
    assert!(matches!(
        client.open("127.0.0.1:9").await,
        Err(OpenError::Closed)
    ));
}

fn fast_pings() -> MuxSettings {
    MuxSettings {
        ping_interval: Duration::from_millis(500),
        ping_timeout: Duration::from_secs(1),
        ..MuxSettings::default()
    }
}

/// Holds the agent end open without ever reading it.
#[tokio::test(start_paused = true)]
async fn client_driver_fails_when_pings_go_unanswered() {
    let settings = fast_pings();
    let (edge_io, _silent_agent): (DuplexStream, DuplexStream) = tokio::io::duplex(DUPLEX_BUFFER);
    let (client, driver) = client(edge_io, &settings).await.expect("handshake");
    let ended = within("driver", driver).await;
    assert!(matches!(ended, Err(MuxError::PingTimeout(_))), "{ended:?}");
    assert!(client.is_closed());
}

/// An agent serving an edge that sent a client preface and an empty SETTINGS frame, then
/// never answers; the edge's end of the connection, to watch what the agent sends.
async fn agent_with_silent_edge(
    settings: &MuxSettings,
    probe: &Probe,
) -> (DuplexStream, JoinHandle<Result<(), MuxError>>) {
    let (mut edge_io, agent_io) = tokio::io::duplex(DUPLEX_BUFFER);
    edge_io
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .expect("preface");
    let agent = tokio::spawn(serve_until(
        agent_io,
        settings,
        allow_all(),
        std::future::pending(),
        probe.clone(),
    ));
    (edge_io, agent)
}

/// Reads HTTP/2 frames from `io` until the first PING.
async fn next_ping(io: &mut DuplexStream) {
    const PING: u8 = 0x6;
    loop {
        let mut header = [0u8; 9];
        io.read_exact(&mut header).await.expect("a frame header");
        let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
        let mut payload = vec![0u8; len];
        io.read_exact(&mut payload).await.expect("a frame payload");
        if header[3] == PING {
            return;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn agent_fails_when_pings_go_unanswered() {
    let (_edge_io, agent) = agent_with_silent_edge(&fast_pings(), &Probe::default()).await;
    let ended = within("serve", agent).await.expect("agent task");
    assert!(matches!(ended, Err(MuxError::PingTimeout(_))), "{ended:?}");
}

/// The peer went silent (e.g. it restarted): a probe finds it out within the ping timeout,
/// long before the next regular PING is due.
#[tokio::test(start_paused = true)]
async fn a_probe_pings_at_once() {
    let settings = MuxSettings {
        ping_interval: Duration::from_secs(3600),
        ping_timeout: Duration::from_secs(1),
        ..MuxSettings::default()
    };
    let probe = Probe::default();
    let started = tokio::time::Instant::now();
    let (_edge_io, agent) = agent_with_silent_edge(&settings, &probe).await;
    probe.now();
    let ended = within("serve", agent).await.expect("agent task");
    assert!(matches!(ended, Err(MuxError::PingTimeout(_))), "{ended:?}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "found out after {:?}, not within the ping timeout",
        started.elapsed()
    );
}

/// A probe while a PING is already out (sent while the peer was away) cuts its wait short: the
/// connection is given up within the grace, not the whole ping timeout.
#[tokio::test(start_paused = true)]
async fn a_probe_shortens_the_wait_for_an_unanswered_ping() {
    let settings = MuxSettings {
        ping_interval: Duration::from_secs(1),
        ping_timeout: Duration::from_secs(3600),
        ..MuxSettings::default()
    };
    let probe = Probe::default();
    let (mut edge_io, agent) = agent_with_silent_edge(&settings, &probe).await;
    // The first PING goes out after a second and is never answered.
    within("the first PING", next_ping(&mut edge_io)).await;
    assert!(!agent.is_finished());
    let probed = tokio::time::Instant::now();
    probe.now();
    let ended = within("serve", agent).await.expect("agent task");
    assert!(matches!(ended, Err(MuxError::PingTimeout(_))), "{ended:?}");
    assert!(
        probed.elapsed() <= PROBE_GRACE + Duration::from_millis(100),
        "given up {:?} after the probe",
        probed.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn answered_pings_keep_the_connection() {
    let settings = fast_pings();
    let pair = pair_with(&settings, allow_all()).await;
    // Many ping rounds of (virtual) time.
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(!pair.client.is_closed());
    assert!(!pair.driver.is_finished());
    assert!(!pair.agent.is_finished());
}

#[tokio::test(start_paused = true)]
async fn open_times_out_when_the_agent_is_silent() {
    let settings = MuxSettings {
        open_timeout: Duration::from_secs(3),
        ping_timeout: Duration::from_secs(600),
        ..MuxSettings::default()
    };
    let (edge_io, _silent_agent) = tokio::io::duplex(DUPLEX_BUFFER);
    let (client, driver) = client(edge_io, &settings).await.expect("handshake");
    let _driver = tokio::spawn(driver);
    let error = within("open", client.open("127.0.0.1:9"))
        .await
        .expect_err("silent agent");
    assert!(matches!(error, OpenError::Timeout), "{error:?}");
    assert!(!client.is_closed());
}

#[tokio::test]
async fn edge_drop_resets_and_closes_the_target() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let target = listener.local_addr().expect("addr");
    let target_task = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.expect("accept");
        let mut got = Vec::new();
        // Ends (EOF or error) once the agent drops its connection.
        let _ = tcp.read_to_end(&mut got).await;
        got
    });
    let pair = pair(allow_all()).await;
    let mut stream = pair.client.open(&target.to_string()).await.expect("open");
    stream.write_all(b"partial").await.expect("write");
    drop(stream);
    let got = within("target sees the close", target_task)
        .await
        .expect("target task");
    assert!(got.len() <= b"partial".len());
    assert!(!pair.client.is_closed());
}

#[tokio::test]
async fn target_reset_reads_as_connection_reset() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let target = listener.local_addr().expect("addr");
    let _target = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.expect("accept");
        // Once the stream is surely open (the edge wrote), close with RST (linger 0).
        let mut byte = [0u8; 1];
        tcp.read_exact(&mut byte).await.expect("target read");
        tcp.set_zero_linger().expect("linger");
        drop(tcp);
    });
    let pair = pair(allow_all()).await;
    let mut stream = pair.client.open(&target.to_string()).await.expect("open");
    stream.write_all(b"x").await.expect("write");
    let mut buf = Vec::new();
    let error = within("read", stream.read_to_end(&mut buf))
        .await
        .expect_err("reset stream");
    assert_eq!(error.kind(), io::ErrorKind::ConnectionReset, "{error}");
}

#[tokio::test]
async fn non_connect_is_405() {
    let (edge_io, agent_io) = tokio::io::duplex(DUPLEX_BUFFER);
    let _agent = tokio::spawn(serve(agent_io, &MuxSettings::default(), allow_all()));
    let (send_request, connection) = h2::client::handshake(edge_io).await.expect("handshake");
    let _connection = tokio::spawn(connection);
    let request = http::Request::get("http://127.0.0.1:9/")
        .body(())
        .expect("request");
    let (response, _send) = send_request
        .ready()
        .await
        .expect("ready")
        .send_request(request, true)
        .expect("send");
    let response = within("response", response).await.expect("response");
    assert_eq!(response.status(), http::StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn graceful_shutdown_lets_open_streams_finish() {
    let (target, _echo) = echo_target().await;
    let (edge_io, agent_io) = tokio::io::duplex(DUPLEX_BUFFER);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let settings = MuxSettings::default();
    let agent = tokio::spawn(serve_until(
        agent_io,
        &settings,
        allow_all(),
        async {
            let _ = stopped.await;
        },
        Probe::default(),
    ));
    let (client, driver) = client(edge_io, &settings).await.expect("handshake");
    let driver = tokio::spawn(driver);
    let stream = client.open(&target.to_string()).await.expect("open");
    stop.send(()).expect("agent running");
    // The open stream still works...
    let data = pattern(1 << 20, 9);
    assert!(within("echo", round_trip(stream, &data)).await == data);
    // ...then the agent closes the connection, and new opens fail.
    within("agent", agent)
        .await
        .expect("agent task")
        .expect("clean agent end");
    within("driver", driver).await.expect("driver task").ok();
    assert!(client.is_closed());
    assert!(matches!(
        client.open(&target.to_string()).await,
        Err(OpenError::Closed)
    ));
}

#[test]
fn settings_are_validated() {
    assert!(MuxSettings::default().validate().is_ok());
    let bad = [
        MuxSettings {
            max_frame_size: 1000,
            ..MuxSettings::default()
        },
        MuxSettings {
            stream_window: 0,
            ..MuxSettings::default()
        },
        MuxSettings {
            ping_interval: Duration::ZERO,
            ..MuxSettings::default()
        },
    ];
    for settings in bad {
        assert!(
            matches!(settings.validate(), Err(MuxError::InvalidSettings(_))),
            "{settings:?}"
        );
    }
}

/// Rough throughput over an in-memory duplex (run with
/// `cargo test --release -- --ignored --nocapture mux_throughput`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, not a check"]
async fn mux_throughput() {
    const TOTAL: u64 = 2 << 30;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let target = listener.local_addr().expect("addr");
    let _target = tokio::spawn(async move {
        // Sink for the upload, then a source for the download.
        let (mut tcp, _) = listener.accept().await.expect("accept");
        let sunk = tokio::io::copy(&mut (&mut tcp).take(TOTAL), &mut tokio::io::sink())
            .await
            .expect("sink");
        assert_eq!(sunk, TOTAL);
        let chunk = vec![0x5au8; 256 << 10];
        let mut left = TOTAL;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            tcp.write_all(&chunk[..n]).await.expect("source");
            left -= n as u64;
        }
        tcp.shutdown().await.expect("shutdown");
    });
    let pair = pair(allow_all()).await;
    let mut stream = pair.client.open(&target.to_string()).await.expect("open");
    let chunk = vec![0xa5u8; 256 << 10];
    let start = std::time::Instant::now();
    let mut left = TOTAL;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        stream.write_all(&chunk[..n]).await.expect("upload");
        left -= n as u64;
    }
    let up = start.elapsed();
    let start = std::time::Instant::now();
    let got = tokio::io::copy(&mut stream, &mut tokio::io::sink())
        .await
        .expect("download");
    let down = start.elapsed();
    assert_eq!(got, TOTAL);
    let mbit = |d: Duration| (TOTAL * 8) as f64 / d.as_secs_f64() / 1e6;
    println!(
        "upload {:.0} Mbit/s, download {:.0} Mbit/s",
        mbit(up),
        mbit(down)
    );
}

//! The data plane's threads: one single-threaded tokio runtime per worker, each accepting on
//! its own `SO_REUSEPORT` listeners bound to the same HTTP and HTTPS addresses. The kernel
//! spreads new connections over the workers, and each connection is served start to end on
//! one thread, as nginx's worker processes do: no work stealing, no cross-thread wakeups on
//! the hot path. The control-plane puller stays on the main runtime.

use std::net::SocketAddr;
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};
use tokio_util::sync::CancellationToken;

use crate::proxy::Proxy;

/// Pending connections each listener queues (reconnect storms after an edge restart).
const BACKLOG: i32 = 4096;

/// A bound, listening, non-blocking socket with `SO_REUSEPORT`.
fn reuseport_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    #[cfg(unix)]
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// `count` listeners on `addr` (port 0: a free port, the same for all).
pub fn bind(addr: SocketAddr, count: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    let first = reuseport_listener(addr)?;
    let actual = first.local_addr()?;
    let mut all = vec![first];
    for _ in 1..count {
        all.push(reuseport_listener(actual)?);
    }
    Ok(all)
}

/// The running worker threads.
#[derive(Debug)]
pub struct Workers {
    done: Vec<tokio::sync::oneshot::Receiver<()>>,
}

impl Workers {
    /// Starts one worker per (HTTP, HTTPS) listener pair; they serve until `shutdown`, then
    /// drain their connections (the proxy's grace period) and end.
    pub fn start(
        proxy: Arc<Proxy>,
        tls: Arc<rustls::ServerConfig>,
        listeners: Vec<(std::net::TcpListener, std::net::TcpListener)>,
        shutdown: CancellationToken,
    ) -> std::io::Result<Workers> {
        let mut done = Vec::new();
        for (i, (http, https)) in listeners.into_iter().enumerate() {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (proxy, tls, shutdown) = (proxy.clone(), tls.clone(), shutdown.clone());
            std::thread::Builder::new()
                .name(format!("edge-worker-{i}"))
                .spawn(move || {
                    runtime.block_on(async move {
                        let listeners = tokio::net::TcpListener::from_std(http)
                            .and_then(|h| Ok((h, tokio::net::TcpListener::from_std(https)?)));
                        match listeners {
                            Ok((http, https)) => {
                                tokio::join!(
                                    proxy.clone().serve_http(http, shutdown.clone()),
                                    proxy.serve_https(https, tls, shutdown),
                                );
                            }
                            Err(e) => tracing::error!(error = %e, "worker cannot listen"),
                        }
                    });
                    let _ = tx.send(());
                })?;
            done.push(rx);
        }
        Ok(Workers { done })
    }

    /// Waits until every worker has ended.
    pub async fn wait(self) {
        for rx in self.done {
            let _ = rx.await;
        }
    }
}

//! [`TcpStream`]: a TCP connection inside the tunnel, as a tokio `AsyncRead + AsyncWrite`.
//!
//! Reads and writes copy straight into and out of the smoltcp socket's buffers under the
//! peer's lock, then let the stack send at once; a full buffer makes the caller wait (woken
//! by smoltcp's wakers) rather than growing anything.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::link::Link;

/// A connection over one peer's stack. Dropping it closes the connection (FIN).
pub struct TcpStream {
    link: Arc<Link>,
    handle: SocketHandle,
}

impl std::fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpStream")
            .field("peer", &crate::keys::to_base64(&self.link.key))
            .finish_non_exhaustive()
    }
}

impl TcpStream {
    pub(crate) fn new(link: Arc<Link>, handle: SocketHandle) -> TcpStream {
        TcpStream { link, handle }
    }

    /// Waits until the handshake finished: true once established, false if it failed.
    pub(crate) async fn established(&self) -> bool {
        std::future::poll_fn(|cx| {
            let mut st = self.link.lock();
            if st.removed {
                return Poll::Ready(false);
            }
            let socket = st.sockets.get_mut::<tcp::Socket>(self.handle);
            match socket.state() {
                tcp::State::SynSent | tcp::State::SynReceived => {
                    socket.register_send_waker(cx.waker());
                    Poll::Pending
                }
                tcp::State::Closed | tcp::State::TimeWait | tcp::State::Listen => {
                    Poll::Ready(false)
                }
                _ => Poll::Ready(true),
            }
        })
        .await
    }

    /// The peer's public key.
    pub fn peer(&self) -> crate::keys::PublicKey {
        self.link.key
    }
}

fn reset() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "tunnel connection reset")
}

impl AsyncRead for TcpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let handle = self.handle;
        self.link.with(|st| {
            if st.removed {
                return Poll::Ready(Err(reset()));
            }
            let socket = st.sockets.get_mut::<tcp::Socket>(handle);
            if socket.can_recv() {
                let n = socket
                    .recv_slice(buf.initialize_unfilled())
                    .map_err(|_| reset())?;
                buf.advance(n);
                return Poll::Ready(Ok(()));
            }
            if !socket.may_recv() {
                return match socket.state() {
                    // An orderly end of the peer's data.
                    tcp::State::CloseWait
                    | tcp::State::LastAck
                    | tcp::State::Closing
                    | tcp::State::TimeWait => Poll::Ready(Ok(())),
                    tcp::State::Closed => Poll::Ready(Err(reset())),
                    _ => {
                        socket.register_recv_waker(cx.waker());
                        Poll::Pending
                    }
                };
            }
            socket.register_recv_waker(cx.waker());
            Poll::Pending
        })
    }
}

impl AsyncWrite for TcpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let handle = self.handle;
        self.link.with(|st| {
            if st.removed {
                return Poll::Ready(Err(reset()));
            }
            let socket = st.sockets.get_mut::<tcp::Socket>(handle);
            let handshaking = matches!(
                socket.state(),
                tcp::State::SynSent | tcp::State::SynReceived
            );
            if !socket.may_send() && !handshaking {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "tunnel connection closed",
                )));
            }
            if socket.can_send() {
                let n = socket.send_slice(data).map_err(|_| reset())?;
                return Poll::Ready(Ok(n));
            }
            socket.register_send_waker(cx.waker());
            Poll::Pending
        })
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Every write is handed to the stack at once.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let handle = self.handle;
        self.link.with(|st| {
            if !st.removed {
                st.sockets.get_mut::<tcp::Socket>(handle).close();
            }
        });
        Poll::Ready(Ok(()))
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        let handle = self.handle;
        let now = self.link.core.now().total_micros() as u64;
        self.link.with(|st| {
            if !st.removed {
                st.close(handle, now);
            }
        });
    }
}

//! [`MuxStream`]: one HTTP/2 stream as a tokio byte stream, on both sides of the mux.

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use h2::{Reason, RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// How much [`MuxStream::splice`] reads from its reader at once.
const SPLICE_CHUNK: usize = 64 << 10;

/// One multiplexed byte stream (an HTTP/2 CONNECT stream), on the edge or the agent.
///
/// - Reading returns the peer's DATA and releases their flow-control window as it is consumed;
///   it returns end of file once the peer has sent END_STREAM. A stream the peer reset reads
///   (and writes) as [`io::ErrorKind::ConnectionReset`]; a stream whose connection went away
///   as [`io::ErrorKind::ConnectionAborted`] or the connection's I/O error.
/// - Writing takes at most the send capacity h2 grants (flow-control window, bounded by
///   [`MuxSettings::max_send_buffer_size`](super::MuxSettings::max_send_buffer_size)) and is
///   `Pending` while there is none, so nothing is buffered without bound. `poll_flush` does
///   nothing: the connection driver writes whatever h2 holds.
/// - `poll_shutdown` sends END_STREAM (half-close); reading goes on.
/// - Dropping a stream that has not both sent and received END_STREAM resets it
///   (RST_STREAM CANCEL).
pub struct MuxStream {
    send: SendStream<Bytes>,
    recv: RecvStream,
    /// Received and not yet read; its window is released as it is read.
    pending: Bytes,
    /// The peer's END_STREAM has been read.
    read_done: bool,
    /// We have sent END_STREAM.
    write_done: bool,
}

impl fmt::Debug for MuxStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MuxStream")
            .field("id", &self.id())
            .field("pending", &self.pending.len())
            .field("read_done", &self.read_done)
            .field("write_done", &self.write_done)
            .finish()
    }
}

impl MuxStream {
    /// Wraps the two halves of an HTTP/2 stream (a client's request body and response body,
    /// or a server's response body and request body).
    pub fn from_h2(send: SendStream<Bytes>, recv: RecvStream) -> Self {
        let read_done = recv.is_end_stream();
        Self {
            send,
            recv,
            pending: Bytes::new(),
            read_done,
            write_done: false,
        }
    }

    /// The HTTP/2 stream id (for logs).
    pub fn id(&self) -> u32 {
        self.send.stream_id().as_u32()
    }

    /// Copies between this stream and `reader`/`writer` (e.g. the halves of a
    /// `TcpStream::split`) until both directions have ended, without the extra copy of
    /// `tokio::io::copy_bidirectional`: read chunks are handed to h2 as they are, received
    /// chunks are written as they came.
    ///
    /// End of file from `reader` sends END_STREAM; the peer's END_STREAM shuts `writer` down.
    /// Returns the bytes sent into the stream and the bytes received from it. On an error (of
    /// either side, or a reset by the peer) it returns at once, and the stream is reset.
    pub async fn splice<R, W>(mut self, reader: R, writer: W) -> io::Result<(u64, u64)>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let Self {
            send,
            recv,
            pending,
            read_done,
            write_done,
        } = &mut self;
        let upload = send_all(send, write_done, reader);
        let download = recv_all(recv, pending, read_done, writer);
        futures::future::try_join(upload, download).await
    }

    fn poll_send_capacity(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<io::Result<usize>> {
        poll_send_capacity(&mut self.send, cx, want)
    }
}

/// Waits for send capacity on `send`; returns how much of `want` may be sent now (> 0).
fn poll_send_capacity(
    send: &mut SendStream<Bytes>,
    cx: &mut Context<'_>,
    want: usize,
) -> Poll<io::Result<usize>> {
    // Capacity left over from an earlier grant: `poll_capacity` would only report increases.
    let capacity = send.capacity();
    if capacity > 0 {
        return Poll::Ready(Ok(capacity.min(want)));
    }
    send.reserve_capacity(want);
    match ready!(send.poll_capacity(cx)) {
        Some(Ok(capacity)) => Poll::Ready(Ok(capacity.min(want))),
        Some(Err(error)) => Poll::Ready(Err(h2_to_io(error))),
        // The send side is closed: reset by the peer or the connection is gone.
        None => Poll::Ready(Err(match send.poll_reset(cx) {
            Poll::Ready(Ok(reason)) => reset_error(reason),
            Poll::Ready(Err(error)) => h2_to_io(error),
            Poll::Pending => io::Error::new(io::ErrorKind::BrokenPipe, "stream closed"),
        })),
    }
}

/// Reader to stream, then END_STREAM. Stops early when the peer resets the stream.
async fn send_all<R: AsyncRead + Unpin>(
    send: &mut SendStream<Bytes>,
    write_done: &mut bool,
    mut reader: R,
) -> io::Result<u64> {
    let mut total = 0u64;
    let mut buf = BytesMut::new();
    if *write_done {
        return Ok(total);
    }
    loop {
        // Reclaims the allocation once h2 has sent (dropped) every earlier chunk.
        buf.reserve(SPLICE_CHUNK);
        let read = tokio::select! {
            read = reader.read_buf(&mut buf) => read?,
            reset = poll_fn(|cx| send.poll_reset(cx)) => {
                return Err(match reset {
                    Ok(reason) => reset_error(reason),
                    Err(error) => h2_to_io(error),
                });
            }
        };
        if read == 0 {
            send.send_data(Bytes::new(), true).map_err(h2_to_io)?;
            *write_done = true;
            return Ok(total);
        }
        total += read as u64;
        let mut chunk = buf.split().freeze();
        while !chunk.is_empty() {
            let n = poll_fn(|cx| poll_send_capacity(send, cx, chunk.len())).await?;
            send.send_data(chunk.split_to(n), false).map_err(h2_to_io)?;
        }
    }
}

/// Stream to writer, then shut the writer down. Window is released once a chunk is written.
async fn recv_all<W: AsyncWrite + Unpin>(
    recv: &mut RecvStream,
    pending: &mut Bytes,
    read_done: &mut bool,
    mut writer: W,
) -> io::Result<u64> {
    let mut total = 0u64;
    loop {
        if !pending.is_empty() {
            let chunk = std::mem::take(pending);
            writer.write_all(&chunk).await?;
            total += chunk.len() as u64;
            recv.flow_control()
                .release_capacity(chunk.len())
                .map_err(h2_to_io)?;
        }
        if *read_done {
            writer.shutdown().await?;
            return Ok(total);
        }
        match poll_fn(|cx| recv.poll_data(cx)).await {
            Some(Ok(data)) => *pending = data,
            Some(Err(error)) => return Err(h2_to_io(error)),
            None => *read_done = true,
        }
    }
}

impl AsyncRead for MuxStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if !this.pending.is_empty() {
                let n = this.pending.len().min(buf.remaining());
                buf.put_slice(&this.pending[..n]);
                this.pending.advance(n);
                this.recv
                    .flow_control()
                    .release_capacity(n)
                    .map_err(h2_to_io)?;
                return Poll::Ready(Ok(()));
            }
            if this.read_done {
                return Poll::Ready(Ok(()));
            }
            match ready!(this.recv.poll_data(cx)) {
                // May be empty (a bare DATA frame): then poll again.
                Some(Ok(data)) => this.pending = data,
                Some(Err(error)) => return Poll::Ready(Err(h2_to_io(error))),
                None => this.read_done = true,
            }
        }
    }
}

impl AsyncWrite for MuxStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.write_done {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "write after shutdown",
            )));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = ready!(this.poll_send_capacity(cx, buf.len()))?;
        this.send
            .send_data(Bytes::copy_from_slice(&buf[..n]), false)
            .map_err(h2_to_io)?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.write_done {
            this.send.send_data(Bytes::new(), true).map_err(h2_to_io)?;
            this.write_done = true;
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for MuxStream {
    fn drop(&mut self) {
        if !(self.read_done && self.write_done) {
            self.send.send_reset(Reason::CANCEL);
        }
    }
}

fn reset_error(reason: Reason) -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionReset,
        format!("stream reset by peer: {reason}"),
    )
}

/// An h2 error as the `io::Error` a byte stream would report.
pub(super) fn h2_to_io(error: h2::Error) -> io::Error {
    if error.is_io() {
        return error
            .into_io()
            .unwrap_or_else(|| io::Error::from(io::ErrorKind::ConnectionAborted));
    }
    let kind = if error.is_reset() {
        io::ErrorKind::ConnectionReset
    } else if error.is_go_away() {
        io::ErrorKind::ConnectionAborted
    } else {
        io::ErrorKind::Other
    };
    io::Error::new(kind, error)
}

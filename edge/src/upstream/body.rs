//! The bodies of an upstream exchange: the client's request body as streamed upstream
//! (counted against the body limit, its progress visible to the response timeout), and the
//! upstream's response body, which gives its pooled connection back once read to the end.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::pool::{HostPool, Sender};

/// A pooled connection lent to one exchange.
pub(super) struct Lease {
    pub(super) sender: Sender,
    pub(super) host: Arc<HostPool>,
    pub(super) tasks: TaskTracker,
    pub(super) stop: CancellationToken,
}

impl Lease {
    /// Gives the connection back to its pool: at once when it is ready for the next request
    /// (the usual case once the response is read), else from a task that waits until it is.
    fn release(mut self) {
        if self.sender.is_ready() {
            self.host.put(self.sender, Instant::now());
            return;
        }
        // Closed, or dropped outside a runtime (at its shutdown): nothing to keep.
        if self.sender.is_closed() || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        self.tasks.spawn(async move {
            let ready = tokio::select! {
                ready = self.sender.ready() => ready.is_ok(),
                () = self.stop.cancelled() => false,
            };
            if ready {
                self.host.put(self.sender, Instant::now());
            }
        });
    }
}

/// An upstream response body, streamed. A pooled connection goes back to its pool once the
/// body has been read to its end; a body dropped before that closes the connection.
pub struct UpstreamBody {
    body: Incoming,
    lease: Option<Lease>,
}

impl UpstreamBody {
    pub(super) fn new(body: Incoming, lease: Option<Lease>) -> Self {
        UpstreamBody { body, lease }
    }
}

impl std::fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamBody")
            .field("pooled", &self.lease.is_some())
            .finish_non_exhaustive()
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            if let Some(lease) = self.lease.take() {
                lease.release();
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // Servers stop polling a body once it says it has ended (a full Content-Length).
        if let Some(lease) = self.lease.take() {
            if self.body.is_end_stream() {
                lease.release();
            }
        }
    }
}

/// Why a request body stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    #[error("the request body is over {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("reading the request body failed: {0}")]
    Read(hyper::Error),
}

enum Source {
    Incoming(Incoming),
    Bytes(Option<Bytes>),
}

/// The request body streamed to an upstream: the client's body, cut off with
/// [`BodyError::TooLarge`] once it passes the limit, its progress visible to the response
/// timeout.
pub struct RequestBody {
    source: Source,
    limit: u64,
    read: u64,
    /// Bytes read so far; only for bodies that are not empty from the start.
    progress: Option<Arc<AtomicU64>>,
}

impl std::fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestBody")
            .field("limit", &self.limit)
            .field("read", &self.read)
            .finish_non_exhaustive()
    }
}

impl RequestBody {
    /// The client's body, up to `limit` bytes.
    pub fn new(incoming: Incoming, limit: u64) -> Self {
        let progress = (!incoming.is_end_stream()).then(|| Arc::new(AtomicU64::new(0)));
        RequestBody {
            source: Source::Incoming(incoming),
            limit,
            read: 0,
            progress,
        }
    }

    /// A body of fixed bytes (no limit).
    pub fn from_bytes(bytes: impl Into<Bytes>) -> Self {
        RequestBody {
            source: Source::Bytes(Some(bytes.into())),
            limit: u64::MAX,
            read: 0,
            progress: None,
        }
    }

    pub fn empty() -> Self {
        RequestBody::from_bytes(Bytes::new())
    }

    /// Whether there is nothing to send, and nothing was sent.
    pub(super) fn is_empty(&self) -> bool {
        self.read == 0
            && match &self.source {
                Source::Bytes(bytes) => bytes.as_ref().is_none_or(Bytes::is_empty),
                Source::Incoming(incoming) => incoming.is_end_stream(),
            }
    }

    /// Bytes read so far, shared; `None` for a body that was empty from the start.
    pub(super) fn progress(&self) -> Option<Arc<AtomicU64>> {
        self.progress.clone()
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        let incoming = match &mut this.source {
            Source::Bytes(bytes) => {
                return Poll::Ready(
                    bytes
                        .take()
                        .filter(|b| !b.is_empty())
                        .map(|b| Ok(Frame::data(b))),
                )
            }
            Source::Incoming(incoming) => incoming,
        };
        match ready!(Pin::new(incoming).poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    this.read += data.len() as u64;
                    if this.read > this.limit {
                        this.source = Source::Bytes(None);
                        return Poll::Ready(Some(Err(BodyError::TooLarge { limit: this.limit })));
                    }
                    if let Some(progress) = &this.progress {
                        progress.store(this.read, Ordering::Relaxed);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => Poll::Ready(Some(Err(BodyError::Read(e)))),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.source {
            Source::Incoming(incoming) => incoming.is_end_stream(),
            Source::Bytes(bytes) => bytes.as_ref().is_none_or(Bytes::is_empty),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.source {
            Source::Incoming(incoming) => incoming.size_hint(),
            Source::Bytes(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_bodies_report_their_size() {
        let body = RequestBody::from_bytes("abc");
        assert_eq!(body.size_hint().exact(), Some(3));
        assert!(!body.is_end_stream());
        assert!(RequestBody::empty().is_end_stream());
    }
}

//! Spots HTTP/1 request heads that carry both `Content-Length` and `Transfer-Encoding`.
//!
//! hyper reads such a request by its chunked framing, drops the length and closes the
//! connection after answering (RFC 9112 section 6.1), but gives the service no sign of it. The
//! edge refuses these requests outright (400, connection closed), so they never reach an
//! origin. A [`Scanned`] stream sits on each HTTP/1 connection's plaintext and marks every
//! head-shaped block it reads (a line ending in ` HTTP/1.x`, header lines, a blank line) that
//! has both headers; the handler refuses a request with `Transfer-Encoding` while a mark is
//! pending. A request body that itself holds such a head can only turn a later chunked request
//! on the same connection into a 400, never let one through.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const CONTENT_LENGTH: &[u8] = b"content-length:";
const TRANSFER_ENCODING: &[u8] = b"transfer-encoding:";
/// The longest line start looked at.
const START: usize = 18;
/// The longest line end looked at: ` HTTP/1.1` and a `\r`.
const END: usize = 10;

/// Marks of ambiguous heads read on one connection, shared with its requests.
#[derive(Debug, Clone, Default)]
pub(super) struct AmbiguousHeads(Arc<AtomicU32>);

impl AmbiguousHeads {
    /// Whether a head with both framing headers was read since the last call.
    pub(super) fn take(&self) -> bool {
        self.0.swap(0, Ordering::Relaxed) > 0
    }

    fn mark(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// Finds head-shaped blocks with both framing headers in a byte stream fed in any pieces.
#[derive(Debug, Default)]
struct HeadScanner {
    marks: AmbiguousHeads,
    /// The first bytes of the current line.
    start: [u8; START],
    start_len: usize,
    /// The last bytes of the current line (rolling).
    end: [u8; END],
    end_len: usize,
    line_len: usize,
    /// Lines seen in the current block (0: none yet).
    lines: usize,
    block_is_request: bool,
    content_length: bool,
    transfer_encoding: bool,
}

impl HeadScanner {
    fn feed(&mut self, mut data: &[u8]) {
        while let Some(newline) = memchr::memchr(b'\n', data) {
            self.extend(&data[..newline]);
            self.end_line();
            data = &data[newline + 1..];
        }
        self.extend(data);
    }

    fn extend(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if self.start_len < START {
            let n = (START - self.start_len).min(bytes.len());
            self.start[self.start_len..self.start_len + n].copy_from_slice(&bytes[..n]);
            self.start_len += n;
        }
        if bytes.len() >= END {
            self.end.copy_from_slice(&bytes[bytes.len() - END..]);
            self.end_len = END;
        } else {
            let keep = (END - bytes.len()).min(self.end_len);
            self.end.copy_within(self.end_len - keep..self.end_len, 0);
            self.end[keep..keep + bytes.len()].copy_from_slice(bytes);
            self.end_len = keep + bytes.len();
        }
        self.line_len += bytes.len();
    }

    fn end_line(&mut self) {
        let end = &self.end[..self.end_len];
        let (end, cr) = match end.strip_suffix(b"\r") {
            Some(end) => (end, 1),
            None => (end, 0),
        };
        if self.line_len == cr {
            // A blank line ends a block.
            if self.block_is_request && self.content_length && self.transfer_encoding {
                self.marks.mark();
            }
            self.lines = 0;
            self.block_is_request = false;
            self.content_length = false;
            self.transfer_encoding = false;
        } else {
            if self.lines == 0 {
                self.block_is_request = end.ends_with(b" HTTP/1.1") || end.ends_with(b" HTTP/1.0");
            } else {
                let start = &self.start[..self.start_len];
                let starts = |name: &[u8]| {
                    start.len() >= name.len() && start[..name.len()].eq_ignore_ascii_case(name)
                };
                self.content_length |= starts(CONTENT_LENGTH);
                self.transfer_encoding |= starts(TRANSFER_ENCODING);
            }
            self.lines += 1;
        }
        self.start_len = 0;
        self.end_len = 0;
        self.line_len = 0;
    }
}

/// A stream whose reads are scanned for ambiguous request heads.
#[derive(Debug)]
pub(super) struct Scanned<T> {
    inner: T,
    scanner: HeadScanner,
}

impl<T> Scanned<T> {
    /// Wraps `inner`, marking ambiguous heads in `marks`.
    pub(super) fn new(inner: T, marks: AmbiguousHeads) -> Self {
        Scanned {
            inner,
            scanner: HeadScanner {
                marks,
                ..HeadScanner::default()
            },
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Scanned<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            this.scanner.feed(&buf.filled()[before..]);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Scanned<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `data` in pieces of `step` bytes; returns whether a mark was made.
    fn marked(data: &[u8], step: usize) -> bool {
        let mut scanner = HeadScanner::default();
        for piece in data.chunks(step) {
            scanner.feed(piece);
        }
        scanner.marks.take()
    }

    fn every_split(data: &[u8]) -> Vec<bool> {
        (1..=data.len()).map(|step| marked(data, step)).collect()
    }

    #[test]
    fn heads_with_both_framing_headers_are_marked_however_they_arrive() {
        let both = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\
                     Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        assert!(every_split(both).iter().all(|m| *m));
        let te_first =
            b"POST / HTTP/1.1\r\ntransfer-ENCODING: chunked\r\nCONTENT-length: 5\r\n\r\n";
        assert!(every_split(te_first).iter().all(|m| *m));
        // Bare LF line ends, as hyper accepts them.
        let lf = b"POST / HTTP/1.1\nContent-Length: 5\nTransfer-Encoding: chunked\n\n";
        assert!(every_split(lf).iter().all(|m| *m));
        // A second request on the connection.
        let second = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nPOST /x HTTP/1.1\r\n\
                       Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(every_split(second).iter().all(|m| *m));
    }

    #[test]
    fn ordinary_requests_are_not_marked() {
        for request in [
            &b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"[..],
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            // Both names, but in a body that is not a request head.
            b"POST / HTTP/1.1\r\nContent-Length: 52\r\n\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            // Header names that only start alike.
            b"POST / HTTP/1.1\r\nContent-Lengthy: 1\r\nX-Transfer-Encoding: chunked\r\n\r\n",
        ] {
            assert!(every_split(request).iter().all(|m| !*m), "{request:?}");
        }
    }

    #[test]
    fn marks_are_taken_once() {
        let mut scanner = HeadScanner::default();
        scanner.feed(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(scanner.marks.take());
        assert!(!scanner.marks.take());
    }
}

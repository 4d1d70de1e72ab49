//! The smoltcp device of one peer: inner IP packets in from WireGuard, and out through
//! WireGuard as UDP datagrams waiting in an [`Outbox`].
//!
//! Back-pressure: once the outbox holds [`OUTBOX_LIMIT`] datagrams, `transmit` says no and
//! smoltcp keeps the data in its socket buffers until the outbox drains, rather than anything
//! being dropped between the stack and the tunnel.

use std::collections::VecDeque;

use boringtun::noise::{Tunn, TunnResult};
use smoltcp::phy::{self, Checksum, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// Datagrams queued for the UDP socket before the stack is made to wait.
pub(crate) const OUTBOX_LIMIT: usize = 512;
/// WireGuard's data header and tag.
const WG_OVERHEAD: usize = 32;
/// Smallest buffer `Tunn::encapsulate` accepts (a handshake initiation).
const MIN_DATAGRAM_BUF: usize = 148;

/// Datagrams to send, and spare buffers to build them in.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    pub queue: VecDeque<Vec<u8>>,
    spare: Vec<Vec<u8>>,
}

impl Outbox {
    /// A cleared buffer of at least `len` bytes of capacity.
    pub fn buffer(&mut self, len: usize) -> Vec<u8> {
        let mut buf = self.spare.pop().unwrap_or_default();
        buf.clear();
        buf.resize(len, 0);
        buf
    }

    /// Gives a sent (or dropped) datagram's buffer back for reuse.
    pub fn recycle(&mut self, buf: Vec<u8>) {
        if self.spare.len() < OUTBOX_LIMIT {
            self.spare.push(buf);
        }
    }

    pub fn is_full(&self) -> bool {
        self.queue.len() >= OUTBOX_LIMIT
    }
}

/// The device smoltcp polls: borrowed pieces of one peer's link.
pub(crate) struct TunnelDevice<'a> {
    pub rx: &'a mut VecDeque<Vec<u8>>,
    pub tunn: &'a mut Tunn,
    pub outbox: &'a mut Outbox,
    pub mtu: usize,
}

impl phy::Device for TunnelDevice<'_> {
    type RxToken<'b>
        = RxPacket
    where
        Self: 'b;
    type TxToken<'b>
        = TxPacket<'b>
    where
        Self: 'b;

    fn receive(&mut self, _now: Instant) -> Option<(RxPacket, TxPacket<'_>)> {
        // Replies (ACKs) to received packets may overshoot the outbox limit a little: refusing
        // them would stall the receive side.
        let packet = self.rx.pop_front()?;
        Some((
            RxPacket(packet),
            TxPacket {
                tunn: self.tunn,
                outbox: self.outbox,
            },
        ))
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxPacket<'_>> {
        if self.outbox.is_full() {
            return None;
        }
        Some(TxPacket {
            tunn: self.tunn,
            outbox: self.outbox,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = self.mtu;
        // WireGuard authenticates every packet, so checksums are computed for the peer's
        // benefit (a kernel stack behind wireguard-go checks them) but never verified here.
        let mut checksum = ChecksumCapabilities::default();
        checksum.ipv4 = Checksum::Tx;
        checksum.tcp = Checksum::Tx;
        checksum.udp = Checksum::Tx;
        checksum.icmpv4 = Checksum::Tx;
        caps.checksum = checksum;
        caps
    }
}

/// One received inner packet.
pub(crate) struct RxPacket(Vec<u8>);

impl phy::RxToken for RxPacket {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(&self.0)
    }
}

/// Room for one outgoing inner packet, encrypted into the outbox once written.
pub(crate) struct TxPacket<'a> {
    tunn: &'a mut Tunn,
    outbox: &'a mut Outbox,
}

impl phy::TxToken for TxPacket<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let mut inner = self.outbox.buffer(len);
        let result = f(&mut inner[..len]);
        let mut datagram = self
            .outbox
            .buffer((len + WG_OVERHEAD).max(MIN_DATAGRAM_BUF));
        let sent = match self.tunn.encapsulate(&inner[..len], &mut datagram) {
            TunnResult::WriteToNetwork(packet) => Some(packet.len()),
            TunnResult::Err(e) => {
                tracing::debug!(error = ?e, "could not encrypt a packet");
                None
            }
            // Queued inside `Tunn` until a handshake completes.
            _ => None,
        };
        match sent {
            Some(n) => {
                datagram.truncate(n);
                self.outbox.queue.push_back(datagram);
            }
            None => self.outbox.recycle(datagram),
        }
        self.outbox.recycle(inner);
        result
    }
}

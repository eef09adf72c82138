//! The media socket and its batched sends: one UDP socket carries every peer's datagrams;
//! a loop turn's datagrams leave in `sendmmsg(2)` batches, each viewer's run of a frame's
//! packets as one segmented send (`UDP_SEGMENT`) where the kernel allows.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use tokio::net::UdpSocket;
use tracing::{info, warn};

use super::RelayCounters;
use crate::config::WebRtcConfig;

/// How long one turn's send waits, in all, for room in a full socket buffer.
const FULL_SOCKET_WAIT: Duration = Duration::from_millis(20);

/// Datagrams waiting for the socket, and a buffer reused to marshal each packet.
#[derive(Default)]
pub(super) struct Outbox {
    pub(super) datagrams: Vec<(BytesMut, SocketAddr)>,
    pub(super) scratch: Vec<u8>,
}

/// The media socket.
pub(super) struct MediaSocket {
    socket: UdpSocket,
    /// Whether sends may use UDP segmentation offload (`UDP_SEGMENT`); turned off for
    /// good when the kernel or interface refuses it (`EIO`).
    gso: bool,
}

impl MediaSocket {
    /// Binds `addr` (`webrtc.udp_bind`, or the port the first shard got) with large
    /// buffers (one socket carries every viewer of a shard); with `reuse_port`, every
    /// shard binds the same port (`SO_REUSEPORT`, see `relay::shards`).
    pub(super) fn bind(
        webrtc: &WebRtcConfig,
        addr: SocketAddr,
        reuse_port: bool,
    ) -> std::io::Result<MediaSocket> {
        use socket2::{Domain, Protocol as SockProtocol, Socket, Type};
        let domain = if addr.is_ipv4() {
            Domain::IPV4
        } else {
            Domain::IPV6
        };
        let socket = Socket::new(domain, Type::DGRAM, Some(SockProtocol::UDP))?;
        let _ = socket.set_send_buffer_size(8 << 20);
        let _ = socket.set_recv_buffer_size(8 << 20);
        socket.set_nonblocking(true)?;
        #[cfg(target_os = "linux")]
        if reuse_port {
            socket.set_reuse_port(true)?;
        }
        #[cfg(not(target_os = "linux"))]
        if reuse_port {
            return Err(std::io::Error::other(
                "[webrtc] shards > 1 needs SO_REUSEPORT (Linux)",
            ));
        }
        socket.bind(&addr.into())?;
        let socket = UdpSocket::from_std(socket.into())?;
        let gso = webrtc.udp_segmentation && segmentation_supported(&socket);
        if webrtc.udp_segmentation && !gso {
            info!("this kernel has no UDP segmentation (Linux 4.18+): one send per datagram");
        }
        Ok(MediaSocket { socket, gso })
    }

    pub(super) fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Waits for a datagram.
    pub(super) async fn recv_from(&self, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
        self.socket.recv_from(buf).await
    }

    /// A datagram already waiting, if any.
    pub(super) fn try_recv_from(&self, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
        self.socket.try_recv_from(buf)
    }

    /// Sends the outbox: batched, waiting at most [`FULL_SOCKET_WAIT`] in all when the
    /// socket buffer is full and dropping the rest rather than stalling every other viewer.
    pub(super) async fn send(&mut self, outbox: &mut Outbox, counters: &RelayCounters) {
        if outbox.datagrams.is_empty() {
            return;
        }
        let mut sent = 0u64;
        let mut dropped = 0u64;
        let mut segmented = 0u64;
        let datagrams = std::mem::take(&mut outbox.datagrams);
        let mut rest: &[(BytesMut, SocketAddr)] = &datagrams;
        let mut give_up_at: Option<tokio::time::Instant> = None;
        while !rest.is_empty() {
            let attempt = |gso: bool| {
                self.socket.try_io(tokio::io::Interest::WRITABLE, || {
                    send_batch(&self.socket, rest, gso)
                })
            };
            let mut result = attempt(self.gso);
            if let Err(err) = &result
                && self.gso
                && err.kind() != std::io::ErrorKind::WouldBlock
            {
                // The same datagrams one by one: a kernel or interface without UDP
                // segmentation (no checksum offload) says EIO, and then for good.
                if err.raw_os_error() == Some(libc::EIO) {
                    warn!(%err, "UDP segmentation refused; sending datagrams one by one");
                    self.gso = false;
                }
                result = attempt(false);
            }
            match result {
                Ok((n, in_runs)) => {
                    sent += n as u64;
                    segmented += in_runs as u64;
                    rest = &rest[n..];
                }
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                    // The shared socket buffer is full: wait for room until this turn's
                    // deadline, then drop the rest rather than stall every other viewer
                    // (one wait per turn, not one per datagram).
                    let deadline = *give_up_at
                        .get_or_insert_with(|| tokio::time::Instant::now() + FULL_SOCKET_WAIT);
                    let ready = tokio::time::timeout_at(deadline, self.socket.writable()).await;
                    if !matches!(ready, Ok(Ok(()))) {
                        dropped += rest.len() as u64;
                        rest = &[];
                    }
                }
                Err(_) => {
                    // Unreachable peers (ICMP errors) are handled by ICE timeouts.
                    dropped += 1;
                    rest = &rest[1..];
                }
            }
        }
        RelayCounters::add(&counters.datagrams_sent, sent);
        RelayCounters::add(&counters.datagrams_dropped, dropped);
        RelayCounters::add(&counters.datagrams_segmented, segmented);
    }
}

/// Whether the kernel knows `UDP_SEGMENT` (Linux 4.18+). An older one would ignore the
/// option on a send and put a whole run of packets in one datagram, so ask first.
#[cfg(target_os = "linux")]
fn segmentation_supported(socket: &UdpSocket) -> bool {
    use std::os::fd::AsRawFd;
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid for the kernel to write an int and its size.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_SEGMENT,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    rc == 0
}

#[cfg(not(target_os = "linux"))]
fn segmentation_supported(_socket: &UdpSocket) -> bool {
    false
}

/// Consecutive datagrams to one address that the kernel can send as one: all of one size
/// but the last, which may be shorter (what `UDP_SEGMENT` splits a buffer back into).
/// Returns how many of `datagrams` lead such a run, at most `max` and `MAX_GSO_BYTES`.
fn segment_run(datagrams: &[(BytesMut, SocketAddr)], max: usize) -> usize {
    /// Under the 65,507 bytes of a UDP datagram, which a segmented send also obeys.
    const MAX_GSO_BYTES: usize = 60_000;
    let Some((first, to)) = datagrams.first() else {
        return 0;
    };
    let size = first.len();
    let mut bytes = size;
    let mut n = 1;
    for (data, addr) in &datagrams[1..datagrams.len().min(max)] {
        if addr != to || data.len() > size || bytes + data.len() > MAX_GSO_BYTES {
            break;
        }
        bytes += data.len();
        n += 1;
        if data.len() < size {
            break;
        }
    }
    n
}

/// Sends as many of `datagrams` as the socket takes in one `sendmmsg(2)` call (up to 64
/// messages), returning how many datagrams went and how many of those in segmented sends.
/// One system call per batch instead of per datagram: with hundreds of viewers the engine
/// sends tens of thousands of datagrams a second. With `gso`, each run of datagrams to one
/// viewer ([`segment_run`], a frame's packets) is one message the kernel segments
/// (`UDP_SEGMENT`, Linux 4.18): one trip through the IP stack and the interface instead
/// of one per packet.
///
/// Public for `feiyan-udp-floor`, which measures what this costs the kernel with no relay
/// work around it.
#[cfg(target_os = "linux")]
pub fn send_batch(
    socket: &impl std::os::fd::AsRawFd,
    datagrams: &[(BytesMut, SocketAddr)],
    gso: bool,
) -> std::io::Result<(usize, usize)> {
    const BATCH: usize = 64;
    /// The kernel's most segments in one send (`UDP_MAX_SEGMENTS`).
    const MAX_SEGMENTS: usize = 64;
    // Runs of datagrams, one message each: (first, count).
    let mut runs: Vec<(usize, usize)> = Vec::with_capacity(BATCH);
    let mut at = 0;
    while at < datagrams.len() && runs.len() < BATCH {
        let n = if gso {
            segment_run(&datagrams[at..], MAX_SEGMENTS)
        } else {
            1
        };
        runs.push((at, n));
        at += n;
    }
    let addrs: Vec<socket2::SockAddr> = runs
        .iter()
        .map(|&(first, _)| socket2::SockAddr::from(datagrams[first].1))
        .collect();
    let mut iovs: Vec<libc::iovec> = datagrams[..at]
        .iter()
        .map(|(data, _)| libc::iovec {
            iov_base: data.as_ptr() as *mut libc::c_void,
            iov_len: data.len(),
        })
        .collect();
    // One control buffer per message (8-byte aligned, as cmsghdr needs), holding the
    // segment size of a run.
    let mut controls: Vec<[u64; 4]> = vec![[0; 4]; runs.len()];
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<u16>() as u32) } as usize;
    debug_assert!(space <= std::mem::size_of::<[u64; 4]>());
    let iov_base = iovs.as_mut_ptr();
    let mut msgs: Vec<libc::mmsghdr> = Vec::with_capacity(runs.len());
    for ((&(first, n), addr), control) in runs.iter().zip(&addrs).zip(&mut controls) {
        // SAFETY: an all-zero msghdr is valid (no control data, no flags).
        let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
        hdr.msg_name = addr.as_ptr() as *mut libc::c_void;
        hdr.msg_namelen = addr.len();
        // SAFETY: `first + n <= iovs.len()`: the runs cover `datagrams[..at]`.
        hdr.msg_iov = unsafe { iov_base.add(first) };
        hdr.msg_iovlen = n as _;
        if n > 1 {
            hdr.msg_control = control.as_mut_ptr() as *mut libc::c_void;
            hdr.msg_controllen = space as _;
            // SAFETY: the control buffer is aligned and `space` bytes long, room for one
            // header with a u16 of data; CMSG_FIRSTHDR points into it.
            unsafe {
                let cmsg = libc::CMSG_FIRSTHDR(&hdr);
                (*cmsg).cmsg_level = libc::SOL_UDP;
                (*cmsg).cmsg_type = libc::UDP_SEGMENT;
                (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as u32) as _;
                let size = datagrams[first].0.len() as u16;
                std::ptr::write_unaligned(libc::CMSG_DATA(cmsg) as *mut u16, size);
            }
        }
        msgs.push(libc::mmsghdr {
            msg_hdr: hdr,
            msg_len: 0,
        });
    }
    // SAFETY: every pointer in `msgs` points into `iovs`, `addrs`, `controls` and
    // `datagrams`, which outlive the call; the kernel only reads them (and writes
    // `msg_len`).
    let sent = unsafe {
        libc::sendmmsg(
            socket.as_raw_fd(),
            msgs.as_mut_ptr(),
            msgs.len() as libc::c_uint,
            0,
        )
    };
    if sent < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let runs = &runs[..sent as usize];
    Ok((
        runs.iter().map(|&(_, n)| n).sum(),
        runs.iter().map(|&(_, n)| n).filter(|&n| n > 1).sum(),
    ))
}

#[cfg(not(target_os = "linux"))]
fn send_batch(
    socket: &UdpSocket,
    datagrams: &[(BytesMut, SocketAddr)],
    _gso: bool,
) -> std::io::Result<(usize, usize)> {
    let (data, to) = &datagrams[0];
    socket.try_send_to(data, *to).map(|_| (1, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_of_one_viewers_datagrams_are_segmentable() {
        let a: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:5000".parse().unwrap();
        let d = |len: usize, to| (BytesMut::from(&vec![0u8; len][..]), to);
        // A frame of three packets to a, then audio to a, then b.
        let batch = vec![d(1200, a), d(1200, a), d(700, a), d(90, a), d(1200, b)];
        assert_eq!(segment_run(&batch, 64), 3);
        assert_eq!(segment_run(&batch[2..], 64), 2);
        assert_eq!(segment_run(&batch[3..], 64), 1);
        assert_eq!(segment_run(&batch, 2), 2);
        // A longer datagram after a shorter one starts a new run.
        assert_eq!(segment_run(&[d(90, a), d(1200, a)], 64), 1);
        // At most about 60,000 bytes in one send.
        let many: Vec<_> = (0..64).map(|_| d(1200, a)).collect();
        assert_eq!(segment_run(&many, 64), 50);
        assert_eq!(segment_run(&[], 64), 0);
    }
}

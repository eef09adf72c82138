//! `feiyan-udp-floor`: what the kernel alone charges a sender for a relay's datagrams.
//!
//! Sends the datagram pattern of a 600 kbps lecture to N local UDP sockets — per viewer 50
//! audio datagrams a second (one message each) and 30 video frames a second of two
//! datagrams (one `UDP_SEGMENT` message, or two with `--no-gso`) — through the relay
//! engine's own `sendmmsg` batching, with no RTP, SRTP or bookkeeping at all. The
//! sending thread's CPU per viewer-second is a floor under any relay's figure from
//! `feiyan-bench` on the same machine: the kernel's send path and, on loopback, the
//! receivers' delivery and wake-ups, which run in the sender's context.

#[cfg(target_os = "linux")]
fn main() {
    use clap::Parser;
    let args = linux::Args::parse();
    match linux::run(&args) {
        Ok(report) => println!("{report}"),
        Err(e) => {
            eprintln!("feiyan-udp-floor: {e}");
            std::process::exit(1);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("feiyan-udp-floor needs Linux (sendmmsg, UDP_SEGMENT, RUSAGE_THREAD)");
    std::process::exit(1);
}

#[cfg(target_os = "linux")]
mod linux {
    use std::net::{SocketAddr, UdpSocket};
    use std::os::fd::AsRawFd;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    use bytes::BytesMut;

    /// Command-line arguments.
    #[derive(Debug, clap::Parser)]
    #[command(
        name = "feiyan-udp-floor",
        about = "Kernel cost of a relay's datagrams to N loopback viewers, with no relay work"
    )]
    pub struct Args {
        /// Number of receiving sockets (viewers).
        #[arg(long, default_value_t = 200)]
        viewers: usize,
        /// Seconds to send.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Send a frame's two datagrams as two messages instead of one segmented one.
        #[arg(long)]
        no_gso: bool,
    }

    /// Video frame datagram sizes (a 600 kbps frame at 30 fps is about 2.2 packets).
    const VIDEO: [usize; 2] = [1200, 700];
    /// An Opus packet with RTP and SRTP overhead.
    const AUDIO: usize = 200;

    pub fn run(args: &Args) -> std::io::Result<String> {
        let receivers: Vec<UdpSocket> = (0..args.viewers)
            .map(|_| UdpSocket::bind("127.0.0.1:0"))
            .collect::<std::io::Result<_>>()?;
        let addrs: Vec<SocketAddr> = receivers
            .iter()
            .map(UdpSocket::local_addr)
            .collect::<std::io::Result<_>>()?;
        let stop = Arc::new(AtomicBool::new(false));
        let drain = {
            let stop = stop.clone();
            std::thread::spawn(move || receive(receivers, &stop))
        };
        let sender = UdpSocket::bind("127.0.0.1:0")?;
        socket2::SockRef::from(&sender).set_send_buffer_size(8 << 20)?;

        let duration = Duration::try_from_secs_f64(args.duration)
            .map_err(|_| std::io::Error::other("invalid --duration"))?;
        let start = Instant::now();
        let before = thread_cpu_ms();
        let (mut next_audio, mut next_video) = (start, start);
        let mut datagrams = 0u64;
        let mut queue: Vec<(BytesMut, SocketAddr)> = Vec::with_capacity(args.viewers * 3);
        while start.elapsed() < duration {
            let now = Instant::now();
            let (audio, video) = (now >= next_audio, now >= next_video);
            if !audio && !video {
                std::thread::sleep(Duration::from_micros(500));
                continue;
            }
            if audio {
                next_audio += Duration::from_millis(20);
            }
            if video {
                next_video += Duration::from_secs(1) / 30;
            }
            // Per viewer its frame, then its audio: the engine's outbox order.
            queue.clear();
            for to in &addrs {
                if video {
                    for size in VIDEO {
                        queue.push((BytesMut::zeroed(size), *to));
                    }
                }
                if audio {
                    queue.push((BytesMut::zeroed(AUDIO), *to));
                }
            }
            // The engine's own batching and segmentation.
            let mut rest = &queue[..];
            while !rest.is_empty() {
                let (sent, _) = feiyan::relay::send_batch(&sender, rest, !args.no_gso)?;
                datagrams += sent as u64;
                rest = &rest[sent..];
            }
        }
        let after = thread_cpu_ms();
        let (cpu_ms, system_ms) = (after.0 - before.0, after.1 - before.1);
        let elapsed = start.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        let _ = drain.join();
        Ok(format!(
            "viewers {}, {}: {:.0} datagrams/s, sending thread {:.0} core-ms over {:.1} s = {:.3} core-ms per viewer-second, {:.3} of it in the kernel",
            args.viewers,
            if args.no_gso {
                "one message per datagram"
            } else {
                "a frame's datagrams in one UDP_SEGMENT message"
            },
            datagrams as f64 / elapsed,
            cpu_ms,
            elapsed,
            cpu_ms / elapsed / args.viewers as f64,
            system_ms / elapsed / args.viewers as f64,
        ))
    }

    /// Drains every receiver on one thread (epoll), as a client process would.
    fn receive(sockets: Vec<UdpSocket>, stop: &AtomicBool) {
        // SAFETY: plain epoll calls on descriptors owned by `sockets`, alive until return.
        let epoll = unsafe { libc::epoll_create1(0) };
        if epoll < 0 {
            return;
        }
        for (i, s) in sockets.iter().enumerate() {
            let _ = s.set_nonblocking(true);
            let mut event = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: i as u64,
            };
            // SAFETY: see above.
            unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, s.as_raw_fd(), &mut event) };
        }
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::Relaxed) {
            // SAFETY: `events` has room for 256 entries.
            let n = unsafe { libc::epoll_wait(epoll, events.as_mut_ptr(), 256, 100) };
            for e in events.iter().take(n.max(0) as usize) {
                let socket = &sockets[e.u64 as usize];
                while socket.recv(&mut buf).is_ok() {}
            }
        }
        // SAFETY: closes the epoll descriptor made above.
        unsafe { libc::close(epoll) };
    }

    /// CPU time of the calling thread (user + system, and system alone), in ms.
    fn thread_cpu_ms() -> (f64, f64) {
        // SAFETY: getrusage fills the struct it is given.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
        let ms = |t: libc::timeval| t.tv_sec as f64 * 1000.0 + t.tv_usec as f64 / 1000.0;
        (ms(usage.ru_utime) + ms(usage.ru_stime), ms(usage.ru_stime))
    }
}

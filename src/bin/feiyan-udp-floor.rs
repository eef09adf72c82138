//! `feiyan-udp-floor`: what the kernel alone charges a sender for a relay's datagrams.
//!
//! Sends the datagram pattern of a 600 kbps lecture to N local UDP sockets — per viewer 50
//! audio datagrams a second (one message each) and 30 video frames a second of two
//! datagrams (one `UDP_SEGMENT` message, or two without `--no-gso`) — in `sendmmsg` batches
//! of 64 messages, as the relay engine does, with no RTP, SRTP or bookkeeping at all. The
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
    /// Messages per `sendmmsg`, as the engine.
    const BATCH: usize = 64;

    /// One message: destination and datagram sizes (more than one: segmented).
    struct Message {
        to: socket2::SockAddr,
        sizes: &'static [usize],
    }

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
        let socket = socket2::SockRef::from(&sender);
        socket.set_send_buffer_size(8 << 20)?;

        let frame: &'static [usize] = &VIDEO;
        let duration = Duration::try_from_secs_f64(args.duration)
            .map_err(|_| std::io::Error::other("invalid --duration"))?;
        let start = Instant::now();
        let before = thread_cpu_ms();
        let (mut next_audio, mut next_video) = (start, start);
        let mut datagrams = 0u64;
        let mut messages: Vec<Message> = Vec::with_capacity(args.viewers * 3);
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
            messages.clear();
            for to in &addrs {
                if video {
                    if args.no_gso {
                        for size in frame {
                            messages.push(Message {
                                to: (*to).into(),
                                sizes: std::slice::from_ref(size),
                            });
                        }
                    } else {
                        messages.push(Message {
                            to: (*to).into(),
                            sizes: frame,
                        });
                    }
                }
                if audio {
                    messages.push(Message {
                        to: (*to).into(),
                        sizes: &[AUDIO],
                    });
                }
            }
            for batch in messages.chunks(BATCH) {
                datagrams += send(&sender, batch)?;
            }
        }
        let cpu_ms = thread_cpu_ms() - before;
        let elapsed = start.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        let _ = drain.join();
        Ok(format!(
            "viewers {}, {}: {:.0} datagrams/s, sending thread {:.0} core-ms over {:.1} s = {:.3} core-ms per viewer-second",
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
        ))
    }

    /// Sends one batch with `sendmmsg`, returning the datagrams that went.
    fn send(socket: &UdpSocket, batch: &[Message]) -> std::io::Result<u64> {
        static PAYLOAD: [u8; 1500] = [7; 1500];
        let iovs: Vec<Vec<libc::iovec>> = batch
            .iter()
            .map(|m| {
                m.sizes
                    .iter()
                    .map(|&len| libc::iovec {
                        iov_base: PAYLOAD.as_ptr() as *mut libc::c_void,
                        iov_len: len,
                    })
                    .collect()
            })
            .collect();
        let mut controls: Vec<[u64; 4]> = vec![[0; 4]; batch.len()];
        // SAFETY: CMSG_SPACE only computes a size.
        let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<u16>() as u32) } as usize;
        let mut msgs: Vec<libc::mmsghdr> = Vec::with_capacity(batch.len());
        for ((m, iov), control) in batch.iter().zip(&iovs).zip(&mut controls) {
            // SAFETY: an all-zero msghdr is valid (no control data, no flags).
            let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
            hdr.msg_name = m.to.as_ptr() as *mut libc::c_void;
            hdr.msg_namelen = m.to.len();
            hdr.msg_iov = iov.as_ptr() as *mut libc::iovec;
            hdr.msg_iovlen = iov.len() as _;
            if m.sizes.len() > 1 {
                hdr.msg_control = control.as_mut_ptr() as *mut libc::c_void;
                hdr.msg_controllen = space as _;
                // SAFETY: the aligned control buffer has room for one u16 option.
                unsafe {
                    let cmsg = libc::CMSG_FIRSTHDR(&hdr);
                    (*cmsg).cmsg_level = libc::SOL_UDP;
                    (*cmsg).cmsg_type = libc::UDP_SEGMENT;
                    (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as u32) as _;
                    std::ptr::write_unaligned(libc::CMSG_DATA(cmsg) as *mut u16, VIDEO[0] as u16);
                }
            }
            msgs.push(libc::mmsghdr {
                msg_hdr: hdr,
                msg_len: 0,
            });
        }
        // SAFETY: every pointer in `msgs` points into `batch`, `iovs`, `controls` and
        // `PAYLOAD`, which outlive the call; the kernel only reads them.
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
        Ok(batch[..sent as usize]
            .iter()
            .map(|m| m.sizes.len() as u64)
            .sum())
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

    /// CPU time of the calling thread (user + system), in ms.
    fn thread_cpu_ms() -> f64 {
        // SAFETY: getrusage fills the struct it is given.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
        let ms = |t: libc::timeval| t.tv_sec as f64 * 1000.0 + t.tv_usec as f64 / 1000.0;
        ms(usage.ru_utime) + ms(usage.ru_stime)
    }
}

//! The HTTP target: HLS and replay request paths (and a `Range` header) sent to a running
//! server over loopback. Any answer of 500 or more, or none,
//! is a finding: bad paths must get a 4xx.

use std::io::{Read, Write};

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::targets::Target;

/// Characters a request path may carry as bytes on the wire; others are mapped onto these
/// so that every input stays a request the server parses (not one hyper refuses first).
const PATH_FILL: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-._~/?=&%";

/// How long a request may take: live HLS holds a request for the open segment or the
/// hinted next part until it is cut, at most `max(3 x segment target, 6 s)` (see
/// `hls::routes`); longer is a hang.
pub const WAIT_LIMIT: Duration = Duration::from_secs(10);

/// `PATH\nRANGE` (the path without its leading `/`) as a GET to the server at `addr`.
/// A numeric `_HLS_msn` is sent as 0 (see [`without_blocking_reload`]).
pub fn paths(addr: SocketAddr) -> Target {
    let mut connection = Connection { addr, sock: None };
    Target {
        name: "paths",
        max_len: 512,
        hang_limit: WAIT_LIMIT,
        run: Box::new(move |input| {
            let (path, range) = match input.iter().position(|&b| b == b'\n') {
                Some(at) => (&input[..at], Some(&input[at + 1..])),
                None => (input, None),
            };
            let path: String = path
                .iter()
                .map(|&b| {
                    if (0x21..=0x7e).contains(&b) && b != b'#' {
                        b as char
                    } else {
                        PATH_FILL[usize::from(b) % PATH_FILL.len()] as char
                    }
                })
                .collect();
            let path = without_blocking_reload(&path);
            let mut request = format!("GET /{path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
            if let Some(range) = range {
                let range: String = range
                    .iter()
                    .filter(|b| (0x20..=0x7e).contains(*b))
                    .map(|&b| b as char)
                    .collect();
                request.push_str(&format!("Range: {}\r\n", range.trim()));
            }
            request.push_str("\r\n");
            let (status, first_line) = connection.exchange(&request);
            assert!(
                (100..500).contains(&status),
                "GET /{path} (Range {range:?}) was answered {status}: {first_line}"
            );
            // The answer's words name the kind of refusal; leave out what echoes the path.
            let words: Vec<&str> = first_line
                .split(|c: char| !c.is_ascii_alphabetic())
                .filter(|w| !w.is_empty() && !path.contains(*w))
                .take(4)
                .collect();
            format!("{status} {}", words.join(" "))
        }),
    }
}

/// One keep-alive connection to the server, opened again when the server closes it.
struct Connection {
    addr: SocketAddr,
    sock: Option<std::io::BufReader<TcpStream>>,
}

impl Connection {
    /// Sends `request` and returns the status and the body's first line (status 0: no
    /// answer, after one retry on a fresh connection for a kept-alive one the server had
    /// closed).
    fn exchange(&mut self, request: &str) -> (u16, String) {
        for _ in 0..2 {
            let reused = self.sock.is_some();
            if let Some(answer) = self.try_exchange(request) {
                return answer;
            }
            self.sock = None;
            if !reused {
                break;
            }
        }
        (0, "no answer".into())
    }

    fn try_exchange(&mut self, request: &str) -> Option<(u16, String)> {
        use std::io::BufRead;
        if self.sock.is_none() {
            let sock = TcpStream::connect(self.addr).ok()?;
            sock.set_read_timeout(Some(WAIT_LIMIT + Duration::from_secs(5)))
                .ok()?;
            self.sock = Some(std::io::BufReader::new(sock));
        }
        let reader = self.sock.as_mut()?;
        reader.get_mut().write_all(request.as_bytes()).ok()?;
        let mut status_line = String::new();
        reader.read_line(&mut status_line).ok()?;
        let status: u16 = status_line
            .strip_prefix("HTTP/1.1 ")?
            .get(..3)?
            .parse()
            .ok()?;
        let (mut length, mut chunked, mut close) = (0usize, false, false);
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).ok()?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':')?;
            let value = value.trim();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.parse().ok()?,
                "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                "connection" => close = value.eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                let mut size = String::new();
                reader.read_line(&mut size).ok()?;
                let size = usize::from_str_radix(size.trim(), 16).ok()?;
                let mut chunk = vec![0u8; size + 2];
                reader.read_exact(&mut chunk).ok()?;
                if size == 0 {
                    break;
                }
                chunk.truncate(size);
                body.extend_from_slice(&chunk);
            }
        } else {
            body.resize(length, 0);
            reader.read_exact(&mut body).ok()?;
        }
        if close {
            self.sock = None;
        }
        let first = if (200..400).contains(&status) {
            // Media bytes or a playlist: their size class says enough.
            format!("{} bytes", usize::BITS - body.len().leading_zeros())
        } else {
            let text = String::from_utf8_lossy(&body);
            text.lines().next().unwrap_or("").to_string()
        };
        Some((status, first))
    }
}

/// `path` with the number of every `_HLS_msn=` made 0: a blocking playlist reload for a
/// segment ahead of the live edge waits by design (LL-HLS, up to 3 target durations),
/// which would read as a hang; segment 0 is never ahead, so the answer comes at once.
/// Values that are not numbers are left for the parser to refuse.
pub fn without_blocking_reload(path: &str) -> String {
    const KEY: &str = "_HLS_msn=";
    let mut out = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(at) = rest.find(KEY) {
        out.push_str(&rest[..at + KEY.len()]);
        rest = &rest[at + KEY.len()..];
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let value = &rest[..digits];
        let tail = &rest[digits..];
        if !value.is_empty() && (tail.is_empty() || tail.starts_with('&')) {
            out.push('0');
            rest = tail;
        }
    }
    out.push_str(rest);
    out
}

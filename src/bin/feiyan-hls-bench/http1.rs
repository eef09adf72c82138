//! One player's HTTP/1.1 keep-alive connection (hyper's client connection, no pool).

use std::net::SocketAddr;

use hyper::body::{Body, Bytes};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;

/// A connection to the server, reconnected when the server closes it.
pub struct Connection {
    addr: SocketAddr,
    host: String,
    send: Option<SendRequest<String>>,
    /// Connections opened (1 when keep-alive held throughout).
    pub opened: u64,
}

/// An answer: status, `Location`, and the body (kept only when asked for).
pub struct Answer {
    pub status: StatusCode,
    pub location: Option<String>,
    pub body: Vec<u8>,
    /// Body bytes received (kept or not).
    pub len: u64,
}

impl Connection {
    pub fn new(addr: SocketAddr) -> Connection {
        Connection {
            addr,
            host: addr.to_string(),
            send: None,
            opened: 0,
        }
    }

    async fn sender(&mut self) -> std::io::Result<&mut SendRequest<String>> {
        let usable = self.send.as_ref().is_some_and(|s| !s.is_closed());
        if !usable {
            let stream = tokio::net::TcpStream::connect(self.addr).await?;
            stream.set_nodelay(true)?;
            let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(std::io::Error::other)?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            self.opened += 1;
            self.send = Some(send);
        }
        self.send
            .as_mut()
            .ok_or_else(|| std::io::Error::other("no connection"))
    }

    /// GETs `path` (with its query); keeps the body when `keep`.
    pub async fn get(&mut self, path: &str, keep: bool) -> std::io::Result<Answer> {
        let request = Request::get(path)
            .header("host", &self.host)
            .header("user-agent", "feiyan-hls-bench")
            .body(String::new())
            .map_err(std::io::Error::other)?;
        let send = self.sender().await?;
        send.ready().await.map_err(std::io::Error::other)?;
        let response = match send.send_request(request).await {
            Ok(r) => r,
            Err(e) => {
                self.send = None;
                return Err(std::io::Error::other(e));
            }
        };
        let status = response.status();
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut body = response.into_body();
        let mut kept = Vec::new();
        let mut len = 0u64;
        loop {
            let frame =
                std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await;
            match frame {
                None => break,
                Some(Err(e)) => {
                    self.send = None;
                    return Err(std::io::Error::other(e));
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        let data: Bytes = data;
                        len += data.len() as u64;
                        if keep {
                            kept.extend_from_slice(&data);
                        }
                    }
                }
            }
        }
        Ok(Answer {
            status,
            location,
            body: kept,
            len,
        })
    }
}

//! The HTTP door under hostile clients (issue 23 item 7): raw TCP clients that trickle
//! headers or a body, hold connections open, or never read their answer; and
//! unauthenticated admin uploads that must be refused before their body is read.

mod common;

use std::time::{Duration, Instant};

use feiyan::catalog::Scope;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

fn addr(t: &common::TestServer) -> std::net::SocketAddr {
    t.server.http_addr
}

/// Reads until the server closes the connection (EOF or reset) or `limit` passes;
/// what was read and whether it closed.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (got, true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (got, false),
        }
    }
}

/// The value of the un-labelled metric `name` in `/metrics`.
async fn metric(base: &str, name: &str) -> Option<f64> {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_trickled_one_byte_a_second_are_cut_at_the_header_timeout() {
    let t = common::start_server_with(|c| {
        c.http.header_timeout_secs = 2;
        c.http.idle_timeout_secs = 60;
    })
    .await;
    let mut s = TcpStream::connect(addr(&t)).await.unwrap();
    let started = Instant::now();
    s.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    let header = b"Host: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    let mut closed_after = None;
    let mut buf = [0u8; 1024];
    'trickle: for byte in header.iter().cycle().take(12) {
        if s.write_all(&[*byte]).await.is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        // A second between bytes, watching for the server closing meanwhile.
        let tick = Instant::now() + Duration::from_secs(1);
        while Instant::now() < tick {
            let left = tick.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    closed_after = Some(started.elapsed());
                    break 'trickle;
                }
                Ok(Ok(_)) => {} // a 408 before the close is fine
                Err(_) => break,
            }
        }
    }
    let closed_after =
        closed_after.expect("a client trickling its headers was still connected after 12 s");
    assert!(
        closed_after < Duration::from_secs(5),
        "closed only after {closed_after:?} (header timeout 2 s)"
    );
    // The server still answers others.
    let r = reqwest::get(format!("{}/healthz", t.base)).await.unwrap();
    assert!(r.status().is_success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_trickled_in_gets_408_at_the_body_timeout() {
    let t = common::start_server_with(|c| {
        c.http.body_timeout_secs = 2;
        c.http.idle_timeout_secs = 60;
    })
    .await;
    let mut s = TcpStream::connect(addr(&t)).await.unwrap();
    let started = Instant::now();
    s.write_all(
        b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 1000\r\n\r\n{\"username\":",
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    let mut closed = false;
    let mut buf = [0u8; 4096];
    for _ in 0..24 {
        if s.write_all(b" ").await.is_err() {
            closed = true;
            break;
        }
        match tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    if !closed {
        let (rest, c) = read_until_closed(&mut s, Duration::from_secs(1)).await;
        answer.extend(rest);
        closed = c;
    }
    let elapsed = started.elapsed();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "after {elapsed:?} of a trickled body the answer was {answer:?} (closed: {closed})"
    );
    assert!(elapsed < Duration::from_secs(6), "took {elapsed:?}");
    assert!(closed, "the connection stayed open after the 408");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_are_closed_at_accept_and_counted() {
    let t = common::start_server_with(|c| {
        c.http.max_connections = 20;
        c.http.idle_timeout_secs = 60;
        c.http.header_timeout_secs = 60;
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(TcpStream::connect(addr(&t)).await.unwrap());
    }
    // Give the accept loop time to take all twenty.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut extra = TcpStream::connect(addr(&t)).await.unwrap();
    let _ = extra
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let (answer, closed) = read_until_closed(&mut extra, Duration::from_secs(3)).await;
    assert!(
        closed && answer.is_empty(),
        "the 21st connection was served: {:?}",
        String::from_utf8_lossy(&answer)
    );
    drop(idle);
    // Once the twenty are gone, requests are served again.
    let base = t.base.clone();
    assert!(
        common::wait_until(Duration::from_secs(5), || {
            let base = base.clone();
            async move { metric(&base, "feiyan_http_connections_refused_total").await >= Some(1.0) }
        })
        .await,
        "feiyan_http_connections_refused_total never counted the refused connection"
    );
    let r = reqwest::get(format!("{}/healthz", t.base)).await.unwrap();
    assert!(r.status().is_success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_may_hold_only_its_share_of_connections() {
    let t = common::start_server_with(|c| {
        c.http.max_connections_per_client = 5;
        c.http.idle_timeout_secs = 60;
        c.http.header_timeout_secs = 60;
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..5 {
        idle.push(TcpStream::connect(addr(&t)).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut sixth = TcpStream::connect(addr(&t)).await.unwrap();
    let _ = sixth
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let (answer, closed) = read_until_closed(&mut sixth, Duration::from_secs(3)).await;
    assert!(
        closed && answer.is_empty(),
        "the 6th connection from one address was served: {:?}",
        String::from_utf8_lossy(&answer)
    );
    drop(idle);
    let base = t.base.clone();
    assert!(
        common::wait_until(Duration::from_secs(5), || {
            let base = base.clone();
            async move { reqwest::get(format!("{base}/healthz")).await.is_ok() }
        })
        .await,
        "no request was served after the five closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_its_answer_is_dropped_at_the_write_timeout() {
    let vendor = tempfile::tempdir().unwrap();
    // Far more than the kernel buffers on both ends hold.
    let size = 48 * 1024 * 1024;
    std::fs::write(vendor.path().join("hls.min.js"), vec![b'/'; size]).unwrap();
    let dir = vendor.path().to_path_buf();
    let t = common::start_server_with(move |c| {
        c.http.write_timeout_secs = 2;
        c.http.idle_timeout_secs = 60;
        c.http.vendor_dir = dir;
    })
    .await;
    let before = metric(&t.base, "feiyan_http_connections").await;
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut s = socket.connect(addr(&t)).await.unwrap();
    s.write_all(b"GET /assets/vendor/hls.min.js HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // Never read for a while: the server's writes stall.
    tokio::time::sleep(Duration::from_secs(6)).await;
    // Now read what is there: a cut connection ends (EOF or reset) before the whole file.
    let (got, closed) = read_until_closed(&mut s, Duration::from_secs(20)).await;
    assert!(
        closed && got.len() < size,
        "the server kept the stalled answer going: read {} of {size} bytes (closed: {closed})",
        got.len()
    );
    // The server's count of open connections is back where it was (this probe's own
    // connection included both times).
    let base = t.base.clone();
    assert!(
        before.is_some(),
        "no feiyan_http_connections gauge in /metrics"
    );
    assert!(
        common::wait_until(Duration::from_secs(5), || {
            let base = base.clone();
            async move { metric(&base, "feiyan_http_connections").await <= before }
        })
        .await,
        "feiyan_http_connections did not return to {before:?}"
    );
}

/// Sends only the head of a POST (no body) and returns the status line of the answer,
/// if one comes within 3 s.
async fn post_head_only(
    t: &common::TestServer,
    path: &str,
    length: u64,
    auth: Option<&str>,
) -> Option<String> {
    let mut s = TcpStream::connect(addr(t)).await.unwrap();
    let auth = auth
        .map(|a| format!("Authorization: Bearer {a}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{auth}\
         Content-Length: {length}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&buf[..n]).to_string();
    text.lines().next().map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_uploads_are_refused_before_their_body_is_read() {
    let t = common::start_server().await;
    for (path, length) in [
        ("/api/admin/import", 5 * 1024 * 1024),
        ("/api/admin/import", 50 * 1024 * 1024),
        ("/api/admin/centers", 60 * 1024),
        ("/api/admin/accounts", 60 * 1024),
        ("/api/admin/sessions/1", 60 * 1024),
        ("/api/admin/topics", 60 * 1024),
    ] {
        let status = post_head_only(&t, path, length, None).await;
        assert_eq!(
            status.as_deref(),
            Some("HTTP/1.1 401 Unauthorized"),
            "POST {path} with Content-Length {length} and no token, body never sent"
        );
        let status = post_head_only(&t, path, length, Some("not-a-token")).await;
        assert_eq!(
            status.as_deref(),
            Some("HTTP/1.1 401 Unauthorized"),
            "POST {path} with Content-Length {length} and a wrong token, body never sent"
        );
    }
    // A logged-in city administrator still imports, and gets 413 past the limit.
    t.server
        .catalog
        .add_account("city", "secret-password", Scope::City)
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let login: serde_json::Value = http
        .post(format!("{}/api/login", t.base))
        .json(&serde_json::json!({"username": "city", "password": "secret-password"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"].as_str().unwrap().to_string();
    let r = http
        .post(format!("{}/api/admin/centers", t.base))
        .bearer_auth(&token)
        .json(&serde_json::json!({"name": "新中心"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let r = http
        .post(format!("{}/api/admin/centers", t.base))
        .bearer_auth(&token)
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("JSON"));
    let status = post_head_only(&t, "/api/admin/import", 50 * 1024 * 1024, Some(&token)).await;
    assert_eq!(status.as_deref(), Some("HTTP/1.1 413 Payload Too Large"));
}

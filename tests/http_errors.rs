//! Bad input on WHIP/WHEP gets a clear 4xx and leaves the server working.

mod common;

use common::start_server;
use reqwest::StatusCode;

const FAKE_OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
a=group:BUNDLE 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\n\
a=mid:0\r\na=sendonly\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n\
a=fingerprint:sha-256 00:11:zz\r\na=setup:actpass\r\na=rtpmap:96 VP8/90000\r\n";

async fn post(
    url: &str,
    content_type: Option<&str>,
    token: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> (StatusCode, String) {
    let mut req = reqwest::Client::new().post(url).body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status();
    (status, resp.text().await.unwrap_or_default())
}

#[tokio::test]
async fn whip_and_whep_reject_bad_input_with_reasons() {
    let t = start_server().await;
    let whip = format!("{}/whip/{}", t.base, t.station.channel);
    let whep = format!("{}/whep/{}", t.base, t.station.channel);
    let key = t.station.stream_key.as_str();

    // Missing and wrong stream key -> 401.
    let (s, body) = post(&whip, Some("application/sdp"), None, FAKE_OFFER).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body.contains("Bearer"), "{body}");
    let (s, body) = post(&whip, Some("application/sdp"), Some("fy_wrong"), FAKE_OFFER).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body.contains("wrong stream key"), "{body}");

    // Wrong content type -> 415, naming what is expected.
    let (s, body) = post(&whip, Some("application/json"), Some(key), "{}").await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    assert!(body.contains("application/sdp"), "{body}");
    let (s, _) = post(&whep, Some("text/plain"), None, FAKE_OFFER).await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // Over 64 KiB -> 413.
    let big = "a".repeat(65 * 1024);
    let (s, body) = post(&whip, Some("application/sdp"), Some(key), big).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{body}");

    // Malformed SDP -> 400 with the reason.
    let (s, body) = post(&whip, Some("application/sdp"), Some(key), "hello world").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("v=0"), "{body}");
    let (s, body) = post(&whip, Some("application/sdp"), Some(key), FAKE_OFFER).await;
    assert_eq!(
        s,
        StatusCode::BAD_REQUEST,
        "a broken fingerprint is refused: {body}"
    );
    assert!(body.contains("fingerprint"), "{body}");
    let (s, body) = post(
        &whip,
        Some("application/sdp"),
        Some(key),
        vec![0xff_u8, 0xfe, 0x00],
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");

    // WHEP on a channel that is not live -> 404 saying so; unknown channel -> 404.
    let (s, body) = post(&whep, Some("application/sdp"), None, FAKE_OFFER).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
    assert!(body.contains("not live"), "{body}");
    let (s, _) = post(
        &format!("{}/whep/no-such", t.base),
        Some("application/sdp"),
        None,
        FAKE_OFFER,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = post(
        &format!("{}/whip/no-such", t.base),
        Some("application/sdp"),
        Some(key),
        FAKE_OFFER,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // DELETE of an unknown session -> 404.
    let client = reqwest::Client::new();
    for path in ["whip", "whep"] {
        let r = client
            .delete(format!(
                "{}/{path}/{}/nonexistent",
                t.base, t.station.channel
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }

    // PATCH (trickle ICE) is answered per RFC 9725 when unsupported: 405.
    let r = client
        .patch(format!("{}/whip/{}/x", t.base, t.station.channel))
        .header("content-type", "application/trickle-ice-sdpfrag")
        .body("a=end-of-candidates\r\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);

    // CORS preflight works for a page on another origin.
    let r = client
        .request(reqwest::Method::OPTIONS, &whip)
        .header("origin", "https://example.org")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert_eq!(r.headers()["accept-post"], "application/sdp");

    // Nothing leaked: no live channel, no open session, the server still answers.
    let live: serde_json::Value = client
        .get(format!("{}/api/live", t.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(live, serde_json::json!([]));
    let health = client
        .get(format!("{}/healthz", t.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    t.server.shutdown().await;
}

/// A keep-alive connection with no request for `http.idle_timeout_secs` is closed by the
/// server (each one holds buffers; every viewer's browser leaves one behind), while a
/// connection that keeps asking stays open.
#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = common::start_server_with(|c| c.http.idle_timeout_secs = 1).await;
    let addr = t.server.http_addr;
    let request = b"GET /healthz HTTP/1.1\r\nHost: feiyan\r\n\r\n";

    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    idle.write_all(request).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "healthz answered");

    // A second connection asks every 300 ms for 2 s: never idle for a whole second.
    let mut busy = tokio::net::TcpStream::connect(addr).await.unwrap();
    let started = std::time::Instant::now();
    for _ in 0..7 {
        busy.write_all(request).await.unwrap();
        let n = busy.read(&mut buf).await.unwrap();
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 200"),
            "busy connection still served"
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    assert!(started.elapsed() >= std::time::Duration::from_millis(2000));

    // By now the idle one has been closed: the read sees end of stream, not a timeout.
    let closed = tokio::time::timeout(std::time::Duration::from_secs(1), idle.read(&mut buf))
        .await
        .expect("the idle connection was closed within its timeout");
    assert_eq!(closed.unwrap(), 0, "end of stream on the idle connection");
    t.server.shutdown().await;
}

/// Filters served by our accept loop see the client's address.
#[tokio::test]
async fn filters_see_the_client_address() {
    use warp::Filter;
    use warp::Reply;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let routes = feiyan::http::serve::client_addr()
        .map(|remote: Option<std::net::SocketAddr>| format!("{remote:?}").into_response());
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(feiyan::http::serve::serve(
        listener,
        routes,
        feiyan::http::serve::Limits {
            idle: std::time::Duration::from_secs(5),
            ..feiyan::http::serve::Limits::from_config(&Default::default())
        },
        None,
        Default::default(),
        Default::default(),
        stopped,
    ));
    let client = reqwest::Client::new();
    let text = client
        .get(format!("http://{addr}/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.starts_with("Some(127.0.0.1:"),
        "client address seen: {text}"
    );
    // Stopping closes the idle keep-alive connection at once, then returns.
    stop.send(()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), server)
        .await
        .expect("the server stops with a connection still open")
        .unwrap();
}

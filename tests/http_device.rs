//! The device id over HTTP (DECISIONS.md, "One resident, one id"): the player pages give a
//! browser without a valid `fy_dev` cookie a new one and leave a valid one alone; WHEP
//! counts a `vid` as the viewer only when it verifies, and records a TV's User-Agent as
//! `tv`. And the assets the HLS fallback needs: the TV page's, and hls.js from
//! `[http] vendor_dir` (a clear 404 when `scripts/deps.sh` has not fetched it).

mod common;

use std::time::Duration;

use common::{start_server, start_server_with, test_media, wait_live, wait_until};
use feiyan::client::{ConnectOptions, ViewerOptions, WhepViewer, WhipPublisher};

/// The `fy_dev` id a `Set-Cookie` header gives, after checking its attributes.
fn issued_id(set_cookie: &str) -> String {
    let mut parts = set_cookie.split("; ");
    let id = parts
        .next()
        .and_then(|p| p.strip_prefix("fy_dev="))
        .unwrap_or_else(|| panic!("not a fy_dev cookie: {set_cookie}"));
    let attrs: Vec<&str> = parts.collect();
    assert_eq!(
        attrs,
        ["Path=/", "Max-Age=34560000", "SameSite=Lax"],
        "plain HTTP: no Secure; never HttpOnly (the page script sends it): {set_cookie}"
    );
    let (random, tag) = id.split_once('.').expect("random.tag");
    assert_eq!((random.len(), tag.len()), (32, 16), "{id}");
    id.to_string()
}

async fn get(
    http: &reqwest::Client,
    url: &str,
    cookie: Option<&str>,
) -> (reqwest::StatusCode, reqwest::header::HeaderMap, String) {
    let mut req = http.get(url);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let r = req.send().await.expect("answers");
    let status = r.status();
    let headers = r.headers().clone();
    (status, headers, r.text().await.unwrap_or_default())
}

fn set_cookies(h: &reqwest::header::HeaderMap) -> Vec<String> {
    h.get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn player_pages_give_a_device_id_once_and_replace_a_forged_one() {
    let t = start_server().await;
    let channel = t.station.channel.to_string();
    let http = reqwest::Client::new();

    // The replay page of any id: the page says whether the replay exists.
    for (page, what) in [
        ("watch", channel.as_str()),
        ("tv", channel.as_str()),
        ("replay", "1"),
    ] {
        let url = format!("{}/{page}/{what}", t.base);
        // No cookie: a new id; the answer is kept out of shared caches.
        let (status, h, body) = get(&http, &url, None).await;
        assert_eq!(status, 200, "{url}");
        assert!(
            h["content-type"].to_str().unwrap().starts_with("text/html"),
            "{url}"
        );
        assert!(body.contains(&format!("/assets/{page}.js")), "{url}");
        let cookies = set_cookies(&h);
        assert_eq!(cookies.len(), 1, "{url}: {cookies:?}");
        let id = issued_id(&cookies[0]);
        assert_eq!(h["cache-control"], "private, no-store", "{url}");

        // Each browser gets its own.
        let (_, h2, _) = get(&http, &url, None).await;
        assert_ne!(issued_id(&set_cookies(&h2)[0]), id, "{url}");

        // A valid id comes back: kept, nothing set.
        let (status, h, _) = get(&http, &url, Some(&format!("a=1; fy_dev={id}; b=2"))).await;
        assert_eq!(status, 200);
        assert!(set_cookies(&h).is_empty(), "{url}: {:?}", set_cookies(&h));
        assert!(h.get("cache-control").is_none(), "{url}");

        // Forged (one tag digit changed), made up, or empty: replaced.
        let mut forged = id.clone().into_bytes();
        let last = forged.len() - 1;
        forged[last] = if forged[last] == b'0' { b'1' } else { b'0' };
        let forged = String::from_utf8(forged).unwrap();
        for bad in [
            forged.as_str(),
            "0123456789abcdef0123456789abcdef.0123456789abcdef",
            "my-own-id",
            "",
        ] {
            let (status, h, _) = get(&http, &url, Some(&format!("fy_dev={bad}"))).await;
            assert_eq!(status, 200);
            let cookies = set_cookies(&h);
            assert_eq!(cookies.len(), 1, "{url} with {bad:?}: {cookies:?}");
            let new = issued_id(&cookies[0]);
            assert_ne!(new, bad);
            assert_ne!(new, id);
        }
    }

    // The other pages set no cookie.
    for path in ["/".to_string(), format!("/publish/{channel}")] {
        let (status, h, _) = get(&http, &format!("{}{path}", t.base), None).await;
        assert_eq!(status, 200, "{path}");
        assert!(set_cookies(&h).is_empty(), "{path}");
    }

    // The TV and replay pages' own assets.
    for (path, ct) in [
        ("/assets/tv.js", "text/javascript"),
        ("/assets/tv.css", "text/css"),
        ("/assets/replay.js", "text/javascript"),
        ("/assets/replay.css", "text/css"),
    ] {
        let (status, h, body) = get(&http, &format!("{}{path}", t.base), None).await;
        assert_eq!(status, 200, "{path}");
        assert!(
            h["content-type"].to_str().unwrap().starts_with(ct),
            "{path}"
        );
        assert!(!body.is_empty(), "{path}");
    }
    t.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hls_js_is_served_from_the_vendor_folder() {
    let version = feiyan::config::HLS_JS_VERSION;
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("vendor/hls.js/{version}/hls.min.js"));
    let on_disk = std::fs::read(&file).unwrap_or_else(|e| {
        panic!(
            "{}: {e}. Run scripts/deps.sh: it fetches the pinned hls.js from the npm registry",
            file.display()
        )
    });
    // The default `[http] vendor_dir` is relative to the working directory, which is the
    // package root for `cargo test`.
    let t = start_server().await;
    let http = reqwest::Client::new();
    let (status, h, body) = get(&http, &format!("{}/assets/vendor/hls.min.js", t.base), None).await;
    assert_eq!(status, 200);
    assert_eq!(h["content-type"], "text/javascript; charset=utf-8");
    assert_eq!(h["cache-control"], "public, max-age=86400");
    assert!(h.get("content-security-policy").is_some());
    assert_eq!(body.as_bytes(), on_disk.as_slice(), "the file as fetched");

    // Only that file: no other name, no way out of the folder.
    for path in [
        "/assets/vendor/hls.js",
        "/assets/vendor/..%2F..%2FCargo.toml",
    ] {
        let (status, _, _) = get(&http, &format!("{}{path}", t.base), None).await;
        assert_eq!(status, 404, "{path}");
    }
    t.server.shutdown().await;

    // A server whose vendor folder is empty says what to do.
    let empty = tempfile::tempdir().unwrap();
    let folder = empty.path().to_path_buf();
    let t = start_server_with(move |c| c.http.vendor_dir = folder).await;
    let (status, h, body) = get(&http, &format!("{}/assets/vendor/hls.min.js", t.base), None).await;
    assert_eq!(status, 404);
    assert!(
        h["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert!(body.contains("scripts/deps.sh"), "{body}");
    assert!(
        !body.contains(&empty.path().display().to_string()),
        "no server path in the answer: {body}"
    );
    t.server.shutdown().await;
}

/// Two WHEP sessions with one valid id count once; a forged id counts as no id (each of its
/// sessions once); a TV's User-Agent is recorded as `tv`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whep_counts_a_vid_only_when_it_verifies() {
    let t = start_server().await;
    let channel = t.station.channel.to_string();
    let http = reqwest::Client::new();
    let (_, h, _) = get(&http, &format!("{}/watch/{channel}", t.base), None).await;
    let id = issued_id(&set_cookies(&h)[0]);
    let forged = format!(
        "{}{}",
        &id[..id.len() - 1],
        if id.ends_with('0') { '1' } else { '0' }
    );

    let dir = tempfile::tempdir().unwrap();
    let media = test_media(dir.path()).await;
    let publisher = WhipPublisher::connect(
        &format!("{}/whip/{channel}", t.base),
        Some(&t.station.stream_key),
        media,
        Default::default(),
    )
    .await
    .expect("publisher connects");
    let session = wait_live(&t.base, &channel).await;

    let tv_client = reqwest::Client::builder()
        .user_agent("Mozilla/5.0 (SMART-TV; LINUX; Tizen 6.0) AppleWebKit/537.36 (KHTML, like Gecko) 76.0.3809.146/6.0 TV Safari/537.36")
        .build()
        .unwrap();
    let mut viewers = Vec::new();
    for (vid, client) in [
        (&id, None),
        (&id, Some(tv_client.clone())),
        (&forged, None),
        (&forged, None),
    ] {
        let opts = ViewerOptions {
            connect: ConnectOptions {
                http_client: client,
                ..Default::default()
            },
            ..Default::default()
        };
        let url = format!("{}/whep/{channel}?vid={vid}", t.base);
        viewers.push(
            WhepViewer::connect(&url, None, opts)
                .await
                .expect("viewer connects"),
        );
    }
    // A row opens at a viewer's first packet.
    let catalog = t.server.catalog.clone();
    let opened = wait_until(Duration::from_secs(10), || {
        let catalog = catalog.clone();
        async move { catalog.session_viewers(session).await.unwrap().len() == 4 }
    })
    .await;
    let rows = catalog.session_viewers(session).await.unwrap();
    assert!(opened, "four viewer rows: {rows:?}");
    let summary = catalog
        .session_summary(session, feiyan::audience::now_ms())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(summary.viewer_sessions, 4, "{summary:?}");
    assert_eq!(
        summary.unique_viewers, 3,
        "one valid id twice, a forged id twice: {summary:?}"
    );
    let tv = rows.iter().filter(|r| r.2 == "tv").count();
    assert_eq!(tv, 1, "{rows:?}");

    for viewer in viewers {
        viewer.close().await.ok();
    }
    publisher.stop().await.ok();
    t.server.shutdown().await;
}

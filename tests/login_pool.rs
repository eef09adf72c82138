//! 50 concurrent logins with random names (issue 23, item 1): argon2 needs 19 MiB per
//! check, so the checks run on a bounded pool; the server's peak memory stays within the
//! pool's share and every answer is 401 or 429 with Retry-After.
//! Alone in its file: it reads this process's peak RSS (`VmHWM`).

mod common;

use std::collections::BTreeMap;

use common::start_server_with;
use feiyan::config::Config;
use reqwest::{Client, StatusCode};
use serde_json::json;

/// Peak resident set of this process (the server runs in it), in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

/// 50 concurrent logins, each a new random name; `forwarded` gives each its own
/// `X-Forwarded-For` address. Returns the answers by status and how much the peak RSS
/// grew (MiB).
async fn fifty_logins(base: &str, forwarded: bool) -> (BTreeMap<u16, usize>, u64) {
    let http = Client::new();
    // Resets VmHWM to the current RSS (Linux >= 4.0).
    std::fs::write("/proc/self/clear_refs", "5").expect("peak RSS resets");
    let before = peak_rss_kib();
    let answers = futures::future::join_all((0..50).map(|i| {
        let name = format!("guess-{}", uuid::Uuid::new_v4().simple());
        let mut r = http
            .post(format!("{base}/api/login"))
            .json(&json!({"username": name, "password": "wrong-password"}));
        if forwarded {
            r = r.header("x-forwarded-for", format!("198.51.100.{}", i + 1));
        }
        r.send()
    }))
    .await;
    let grown_mib = (peak_rss_kib().saturating_sub(before)) / 1024;
    let mut counts = BTreeMap::new();
    for r in answers {
        let r = r.unwrap();
        *counts.entry(r.status().as_u16()).or_insert(0) += 1;
        match r.status() {
            StatusCode::UNAUTHORIZED => {}
            StatusCode::TOO_MANY_REQUESTS => assert!(r.headers().contains_key("retry-after")),
            other => panic!("unexpected {other}"),
        }
    }
    (counts, grown_mib)
}

/// Warms up with one check, so argon2's first allocation is in the baseline.
async fn warm_up(base: &str) {
    let r = Client::new()
        .post(format!("{base}/api/login"))
        .json(&json!({"username": "nobody", "password": "wrong-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_logins_with_random_names_stay_within_the_pool() {
    // The default pool checks 2 at once (19 MiB each); allow for the HTTP side.
    let limit_mib = 4 * 19 + 40;

    // From one address: the per-client limit answers most of them.
    let t = start_server_with(|_| {}).await;
    warm_up(&t.base).await;
    let (counts, grown_mib) = fifty_logins(&t.base, false).await;
    println!("one address: answers {counts:?}; peak RSS grew {grown_mib} MiB");
    assert!(
        grown_mib < limit_mib,
        "peak RSS grew {grown_mib} MiB for 50 logins ({counts:?})"
    );
    t.server.shutdown().await;

    // 50 addresses behind a trusted proxy (a botnet): every login reaches the pool, which
    // checks 2 at a time; the rest wait their turn or get 429.
    let t = start_server_with(|c| {
        let extra = Config::from_toml("[http]\ntrusted_proxies = [\"127.0.0.1\"]").unwrap();
        c.http.trusted_proxies = extra.http.trusted_proxies;
    })
    .await;
    warm_up(&t.base).await;
    let (counts, grown_mib) = fifty_logins(&t.base, true).await;
    println!("50 addresses: answers {counts:?}; peak RSS grew {grown_mib} MiB");
    assert!(
        grown_mib < limit_mib,
        "peak RSS grew {grown_mib} MiB for 50 logins ({counts:?})"
    );
    assert!(counts.get(&401).copied().unwrap_or(0) >= 2, "{counts:?}");
    t.server.shutdown().await;
}

//! 50 concurrent logins with random names (issue 23, item 1): argon2 needs 19 MiB per
//! check, so the checks run on a bounded pool; the server's peak memory stays within the
//! pool's share and every answer is 401 or 429 with Retry-After.
//! Alone in its file: it reads this process's peak RSS (`VmHWM`).

mod common;

use common::start_server_with;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_logins_with_random_names_stay_within_the_pool() {
    let t = start_server_with(|_| {}).await;
    let http = Client::new();
    // Warm up: one check, so argon2's first allocation is in the baseline.
    let r = http
        .post(format!("{}/api/login", t.base))
        .json(&json!({"username": "nobody", "password": "wrong-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Resets VmHWM to the current RSS (Linux >= 4.0).
    std::fs::write("/proc/self/clear_refs", "5").expect("peak RSS resets");
    let before = peak_rss_kib();

    let answers = futures::future::join_all((0..50).map(|_| {
        let name = format!("guess-{}", uuid::Uuid::new_v4().simple());
        http.post(format!("{}/api/login", t.base))
            .json(&json!({"username": name, "password": "wrong-password"}))
            .send()
    }))
    .await;
    let grown_mib = (peak_rss_kib().saturating_sub(before)) / 1024;
    let mut counts = std::collections::BTreeMap::new();
    for r in answers {
        let r = r.unwrap();
        *counts.entry(r.status().as_u16()).or_insert(0) += 1;
        match r.status() {
            StatusCode::UNAUTHORIZED => {}
            StatusCode::TOO_MANY_REQUESTS => assert!(r.headers().contains_key("retry-after")),
            other => panic!("unexpected {other}"),
        }
    }
    println!("answers {counts:?}; peak RSS grew {grown_mib} MiB");
    // The default pool checks 2 at once (19 MiB each); allow for the HTTP side.
    assert!(
        grown_mib < 4 * 19 + 40,
        "peak RSS grew {grown_mib} MiB for 50 logins ({counts:?})"
    );
    t.server.shutdown().await;
}

//! `POST /api/login` cannot take the server down (issue 23, item 1): wrong guesses sent in
//! parallel are each counted before any password is hashed, over-long fields are 400, and
//! `X-Forwarded-For` is believed only from `[http] trusted_proxies`.

mod common;

use common::start_server_with;
use feiyan::catalog::Scope;
use feiyan::config::Config;
use reqwest::{Client, StatusCode};
use serde_json::json;

async fn login(
    http: &Client,
    base: &str,
    user: &str,
    password: &str,
    forwarded: Option<&str>,
) -> reqwest::Response {
    let mut r = http
        .post(format!("{base}/api/login"))
        .json(&json!({"username": user, "password": password}));
    if let Some(f) = forwarded {
        r = r.header("x-forwarded-for", f);
    }
    r.send().await.unwrap()
}

/// Applies `[http]` keys written as TOML (so this file compiles before they exist).
fn http_keys(config: &mut Config, toml: &str) {
    let extra = Config::from_toml(&format!("[http]\n{toml}")).expect("known [http] keys");
    let listen = config.http.listen;
    config.http = extra.http;
    config.http.listen = listen;
}

/// Twelve wrong guesses at once: the throttle counts each before its hash, so only the
/// free ones (and the one that starts the wait) reach argon2; the rest are 429 with a
/// Retry-After, and then even the right password must wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_wrong_guesses_are_each_counted_before_the_hash() {
    let t = start_server_with(|_| {}).await;
    t.server
        .catalog
        .add_account("admin", "secret-password", Scope::City)
        .await
        .unwrap();
    let http = Client::new();
    let guesses: Vec<String> = (0..12).map(|i| format!("wrong-{i}")).collect();
    let answers = futures::future::join_all(
        guesses
            .iter()
            .map(|g| login(&http, &t.base, "admin", g, None)),
    )
    .await;
    let mut statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    statuses.sort();
    let hashed = statuses.iter().filter(|&&s| s == 401).count();
    assert!(
        hashed <= 4,
        "only 3 free failures and the one that starts the wait may be checked: {statuses:?}"
    );
    for r in answers
        .iter()
        .filter(|r| r.status() == StatusCode::TOO_MANY_REQUESTS)
    {
        assert!(r.headers().contains_key("retry-after"));
    }
    let right = login(&http, &t.base, "admin", "secret-password", None).await;
    assert_eq!(right.status(), StatusCode::TOO_MANY_REQUESTS);
    t.server.shutdown().await;
}

/// Over-long usernames and passwords are refused before any lookup or hash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_long_usernames_and_passwords_are_400() {
    let t = start_server_with(|_| {}).await;
    let http = Client::new();
    let long_name = "n".repeat(201);
    let r = login(&http, &t.base, &long_name, "whatever-password", None).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body = r.text().await.unwrap();
    assert!(body.contains("username") && body.contains("200"), "{body}");
    let long_password = "p".repeat(50_000);
    let r = login(&http, &t.base, "admin", &long_password, None).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body = r.text().await.unwrap();
    assert!(body.contains("password") && body.contains("256"), "{body}");
    t.server.shutdown().await;
}

/// Without trusted proxies, `X-Forwarded-For` is ignored: rotating it does not escape the
/// per-client limit. With the test's address trusted, each forwarded address is its own
/// client (and the pool still bounds the work).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let http = Client::new();

    let t = start_server_with(|_| {}).await;
    let mut limited = false;
    for i in 0..40 {
        let r = login(
            &http,
            &t.base,
            &format!("user-{i}"),
            "wrong-password",
            Some(&format!("10.9.{}.{}", i / 200, i % 200 + 1)),
        )
        .await;
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = true;
            break;
        }
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    assert!(
        limited,
        "an untrusted X-Forwarded-For escaped the per-client limit"
    );
    t.server.shutdown().await;

    let t = start_server_with(|c| http_keys(c, "trusted_proxies = [\"127.0.0.0/8\"]")).await;
    for i in 0..40 {
        let r = login(
            &http,
            &t.base,
            &format!("user-{i}"),
            "wrong-password",
            Some(&format!("203.0.113.7, 10.9.0.{}", i + 1)),
        )
        .await;
        assert_eq!(
            r.status(),
            StatusCode::UNAUTHORIZED,
            "attempt {i}: each forwarded address is its own client"
        );
    }
    t.server.shutdown().await;
}

//! Security and CORS headers per route class, over real HTTP: every answer carries the CSP
//! and `nosniff`; `Access-Control-Allow-Origin: *` only on WHIP/WHEP (preflights included,
//! exposing `Location`) and the public reads, never on administrator routes, statistics,
//! CSV exports or `/metrics`.

mod common;

use common::start_server;
use feiyan::catalog::Scope;
use reqwest::{Method, Response};
use serde_json::{Value, json};

const ORIGIN: &str = "https://elsewhere.example";

fn acao(r: &Response) -> Option<String> {
    r.headers()
        .get("access-control-allow-origin")
        .map(|v| v.to_str().unwrap().to_string())
}

/// The headers every answer has, whatever its class.
fn assert_security_headers(r: &Response, what: &str) {
    let h = r.headers();
    assert_eq!(h["x-content-type-options"], "nosniff", "{what}");
    assert_eq!(h["x-frame-options"], "DENY", "{what}");
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self';"), "{what}: {csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
    assert!(
        h.get("strict-transport-security").is_none(),
        "{what}: HSTS over plain HTTP"
    );
}

#[tokio::test]
async fn cors_only_on_media_and_public_reads_and_security_headers_everywhere() {
    let t = start_server().await;
    let c = reqwest::Client::new();
    let ch = t.station.channel.to_string();
    let send = async |method: Method, path: &str, token: Option<&str>, body: Option<Value>| {
        let mut req = c
            .request(method.clone(), format!("{}{path}", t.base))
            .header("origin", ORIGIN);
        if method == Method::OPTIONS {
            req = req.header("access-control-request-method", "POST").header(
                "access-control-request-headers",
                "authorization, content-type",
            );
        }
        if let Some(tok) = token {
            req = req.bearer_auth(tok);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.expect("request sent")
    };

    // WHIP/WHEP: any origin, preflight included, Location exposed; error answers too.
    for (method, path) in [
        (Method::OPTIONS, format!("/whip/{ch}")),
        (Method::OPTIONS, format!("/whep/{ch}")),
        (Method::OPTIONS, format!("/whep/{ch}/abc")),
        (Method::POST, format!("/whip/{ch}")),
        (Method::POST, format!("/whep/{ch}")),
        (Method::DELETE, format!("/whep/{ch}/abc")),
    ] {
        let r = send(method.clone(), &path, None, None).await;
        let what = format!("{method} {path} ({})", r.status());
        assert_security_headers(&r, &what);
        assert_eq!(acao(&r).as_deref(), Some("*"), "{what}");
        let h = r.headers();
        let methods = h["access-control-allow-methods"].to_str().unwrap();
        assert!(
            methods.contains("POST") && methods.contains("DELETE"),
            "{what}: {methods}"
        );
        let allowed = h["access-control-allow-headers"].to_str().unwrap();
        assert!(allowed.contains("authorization"), "{what}: {allowed}");
        let exposed = h["access-control-expose-headers"].to_str().unwrap();
        assert!(exposed.contains("location"), "{what}: {exposed}");
    }

    // Public reads: any origin may read them.
    for path in [
        "/api/live".to_string(),
        format!("/api/channels/{ch}"),
        "/api/channels/no-such-channel".to_string(),
        "/healthz".to_string(),
    ] {
        let r = send(Method::GET, &path, None, None).await;
        let what = format!("GET {path} ({})", r.status());
        assert_security_headers(&r, &what);
        assert_eq!(acao(&r).as_deref(), Some("*"), "{what}");
    }

    // Administrators, statistics, CSV exports, metrics, pages: no CORS at all.
    t.server
        .catalog
        .add_account("city", "secret-password", Scope::City)
        .await
        .expect("account added");
    let login = send(
        Method::POST,
        "/api/login",
        None,
        Some(json!({ "username": "city", "password": "secret-password" })),
    )
    .await;
    assert_eq!(login.status(), 200);
    assert_eq!(acao(&login), None, "POST /api/login");
    assert_security_headers(&login, "POST /api/login");
    let token = login.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    for (method, path, tok) in [
        (Method::OPTIONS, "/api/login", None),
        (Method::OPTIONS, "/api/admin/hierarchy", None),
        (Method::GET, "/api/me", Some(token.as_str())),
        (Method::GET, "/api/admin/hierarchy", Some(token.as_str())),
        (Method::GET, "/api/admin/hierarchy", None),
        (Method::GET, "/api/stats/table", Some(token.as_str())),
        (
            Method::GET,
            "/api/stats/sessions?format=csv",
            Some(token.as_str()),
        ),
        (Method::GET, "/api/sessions/1", None),
        (Method::GET, "/api/sources", None),
        (Method::GET, "/metrics", None),
        (Method::GET, "/admin", None),
        (Method::GET, "/", None),
        (Method::POST, "/api/logout", Some(token.as_str())),
    ] {
        let r = send(method.clone(), path, tok, None).await;
        let what = format!("{method} {path} ({})", r.status());
        assert_security_headers(&r, &what);
        assert_eq!(acao(&r), None, "{what}");
        assert!(
            r.headers().get("access-control-allow-methods").is_none(),
            "{what}"
        );
        if path.contains("format=csv") {
            assert_eq!(r.status(), 200, "{what}");
            assert!(
                r.headers()["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("text/csv"),
                "{what}"
            );
        }
    }

    // The pages' scripts are served as JavaScript (nosniff makes the type matter).
    for name in ["feiyan", "index", "watch", "publish", "admin"] {
        let r = send(Method::GET, &format!("/assets/{name}.js"), None, None).await;
        assert_eq!(r.status(), 200, "{name}.js");
        assert_eq!(
            r.headers()["content-type"],
            "text/javascript; charset=utf-8",
            "{name}.js"
        );
    }
    let r = send(Method::GET, "/assets/nothing.js", None, None).await;
    assert_eq!(r.status(), 404);
    t.server.shutdown().await;
}

//! `feiyan menu ...` and `feiyan request ...`, the real binary against a SQLite catalog:
//! a center keeps its menu (another center cannot), requests are listed in scope with
//! phones masked, a center administrator schedules them (another center and a station
//! cannot), the assigned station accepts and declines (another station cannot).

use std::process::Command;

use feiyan::audience::now_ms;
use feiyan::catalog::{Catalog, NewRequest, RequestStatus};
use feiyan::ids::CenterId;

const PHONE: &str = "13812345678";

/// Runs `feiyan` against the catalog at `url`; (success, stdout, stderr).
fn feiyan(url: &str, args: &[&str]) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_feiyan"))
        .args(args)
        .current_dir(dir.path())
        .env("FEIYAN_DATABASE_URL", url)
        .env("RUST_LOG", "error")
        .output()
        .expect("feiyan runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Owned arguments as the `&str` list the helpers take.
fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// `feiyan`, expecting success: its standard output.
fn ok(url: &str, args: &[&str]) -> String {
    let (ok, out, err) = feiyan(url, args);
    assert!(ok, "feiyan {args:?} failed: {out}{err}");
    out
}

/// `feiyan`, expecting a refusal that says `words`.
fn refused(url: &str, args: &[&str], words: &str) {
    let (ok, out, err) = feiyan(url, args);
    assert!(!ok, "feiyan {args:?} should be refused: {out}");
    assert!(err.contains(words), "feiyan {args:?}: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn menus_and_requests_from_the_command_line_keep_the_api_scopes() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/catalog.db", dir.path().display());
    let catalog = Catalog::connect(&url).await.unwrap();
    let here = catalog.add_station("甲中心", "所", "甲站").await.unwrap();
    let next = catalog.add_station("甲中心", "所", "乙站").await.unwrap();
    let far = catalog.add_station("丙中心", "所", "丙站").await.unwrap();
    let center = catalog
        .station_placement(here.station_id)
        .await
        .unwrap()
        .center_id;
    let far_center = catalog
        .station_placement(far.station_id)
        .await
        .unwrap()
        .center_id;
    let (c, fc) = (format!("center:{center}"), format!("center:{far_center}"));
    let (ch, next_ch) = (here.channel.to_string(), next.channel.to_string());
    let center_arg = center.to_string();

    // The menu: the center adds and lists; another center cannot add to it.
    refused(
        &url,
        &[
            "menu",
            "add",
            "--center",
            &center_arg,
            "--title",
            "别处",
            "--scope",
            &fc,
        ],
        "outside the scope",
    );
    refused(
        &url,
        &["menu", "add", "--kind", "film_class", "--scope", &c],
        "film",
    );
    let added = ok(
        &url,
        &[
            "menu",
            "add",
            "--title",
            "党史故事",
            "--speaker",
            "王老师",
            "--scope",
            &c,
        ],
    );
    assert!(added.contains("党史故事"), "{added}");
    let extra = ok(
        &url,
        &[
            "menu",
            "add",
            "--center",
            &center_arg,
            "--title",
            "垃圾分类",
        ],
    );
    let extra_id: String = extra
        .split_whitespace()
        .nth(2)
        .expect("menu item <id> added")
        .to_string();
    let menu = ok(&url, &["menu", "list", "--scope", &format!("station:{ch}")]);
    assert!(
        menu.contains("\tlecture\t党史故事\t王老师\t") && menu.contains("垃圾分类"),
        "{menu}"
    );
    refused(
        &url,
        &["menu", "remove", &extra_id, "--scope", &fc],
        "outside the scope",
    );
    ok(&url, &["menu", "remove", &extra_id, "--scope", &c]);
    let menu = ok(&url, &["menu", "list", "--center", &center_arg]);
    assert!(!menu.contains("垃圾分类"), "{menu}");
    let item = catalog.service_menu(CenterId(center.0)).await.unwrap()[0].clone();

    // Two residents ask at the station, one with a phone (consent given).
    let mut ids = Vec::new();
    for (device, phone) in [("dev-a", Some(PHONE)), ("dev-b", None)] {
        let r = catalog
            .create_request(
                here.station_id,
                CenterId(center.0),
                device,
                &NewRequest {
                    menu_id: item.id,
                    period: "周六上午".into(),
                    nickname: "李阿姨".into(),
                    phone: phone.map(str::to_string),
                    consent: phone.is_some(),
                },
                now_ms(),
            )
            .await
            .unwrap();
        ids.push(r.id.to_string());
    }

    // Listing: in scope, phones masked; another center sees none.
    let listed = ok(&url, &["request", "list", "--scope", &c]);
    assert!(
        listed.contains("138****5678") && !listed.contains(PHONE),
        "{listed}"
    );
    assert_eq!(
        listed
            .lines()
            .filter(|l| l.contains("\trequested\t"))
            .count(),
        2,
        "{listed}"
    );
    assert!(
        listed.contains("\t党史故事\t甲站\t2\t2"),
        "counts: {listed}"
    );
    let far_list = ok(&url, &["request", "list", "--scope", &fc]);
    assert!(!far_list.contains("李阿姨"), "{far_list}");
    let all = ok(&url, &["request", "list"]);
    assert!(!all.contains(PHONE), "the city's listing masks too: {all}");

    // 制单/派单: another center and a station cannot; the center schedules both.
    let at = "2030-06-01T19:00:00+08:00";
    let schedule = |scope: &str| {
        let mut args = vec!["request", "schedule"];
        args.extend(ids.iter().map(String::as_str));
        args.extend(["--station", ch.as_str(), "--at", at, "--scope"]);
        args.push(scope);
        args.into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    let far_try = schedule(&fc);
    refused(&url, &args(&far_try), "outside the scope");
    let station_try = schedule(&format!("station:{ch}"));
    refused(&url, &args(&station_try), "a station accepts or declines");
    let unchanged = ok(&url, &["request", "list"]);
    assert!(unchanged.contains("\trequested\t"), "{unchanged}");
    let own = schedule(&c);
    let done = ok(&url, &args(&own));
    assert!(
        done.contains("scheduled as item") && done.contains(&ch),
        "{done}"
    );

    // 接单: another station cannot; the assigned one accepts one and declines one.
    refused(
        &url,
        &[
            "request",
            "accept",
            &ids[0],
            "--scope",
            &format!("station:{next_ch}"),
        ],
        "outside the scope",
    );
    let accepted = ok(
        &url,
        &[
            "request",
            "accept",
            &ids[0],
            "--scope",
            &format!("station:{ch}"),
        ],
    );
    assert!(accepted.contains("is accepted"), "{accepted}");
    refused(
        &url,
        &[
            "request",
            "accept",
            &ids[0],
            "--scope",
            &format!("station:{ch}"),
        ],
        "only a scheduled one",
    );
    let declined = ok(
        &url,
        &[
            "request",
            "decline",
            &ids[1],
            "--reason",
            "场地维修",
            "--scope",
            &c,
        ],
    );
    assert!(declined.contains("is declined"), "{declined}");
    let first = catalog.request(ids[0].parse().unwrap()).await.unwrap();
    assert_eq!(first.request.status, RequestStatus::Accepted);
    assert_eq!(first.assigned_station_id, Some(here.station_id.0));
    let station_view = ok(
        &url,
        &["request", "list", "--scope", &format!("station:{ch}")],
    );
    assert!(
        station_view.contains("\taccepted\t") && station_view.contains("场地维修"),
        "{station_view}"
    );
    let next_view = ok(
        &url,
        &["request", "list", "--scope", &format!("station:{next_ch}")],
    );
    assert!(!next_view.contains("李阿姨"), "{next_view}");
    refused(&url, &["request", "list", "--scope", "town:1"], "--scope");
}

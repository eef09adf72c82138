//! Live interaction (issue 26, item 1) over real HTTP: 50 residents with their own device
//! cookies in one live session (a real WHIP publisher) post messages, questions, likes and
//! check-ins at the allowed rates while 50 Server-Sent-Events watchers follow; every
//! watcher gets every message once and in order, the host's answer mark, pin and delete;
//! the word list holds a message for the host alone until approved; over-rate posts get
//! 429 with a retry time; bad input gets 4xx with a reason; the session's counts in the
//! statistics (JSON and CSV) match what was posted. An administrator in scope moderates
//! through the same API; another station's administrator gets 403.

mod catalog_db;
mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::replays::admin_token;
use common::{start_server_with, test_media, wait_live, wait_until};
use feiyan::catalog::Scope;
use feiyan::client::WhipPublisher;
use reqwest::StatusCode;
use serde_json::{Value, json};

const RESIDENTS: usize = 50;
const MESSAGES_EACH: usize = 3;

/// What one SSE watcher saw, applied as the page applies it.
#[derive(Debug, Default)]
struct Seen {
    snapshot: bool,
    last_ev: i64,
    /// Message ids in the order they arrived (duplicates kept, to be caught).
    messages: Vec<i64>,
    texts: Vec<String>,
    answered: HashSet<i64>,
    deleted: HashSet<i64>,
    pinned: Option<i64>,
    likes: i64,
    checkins: i64,
}

impl Seen {
    fn apply(&mut self, event: &str, data: &str) {
        let v: Value = serde_json::from_str(data).expect("event data is JSON");
        match event {
            "snapshot" => {
                self.snapshot = true;
                self.last_ev = v["ev"].as_i64().unwrap();
                for m in v["messages"].as_array().unwrap() {
                    self.messages.push(m["id"].as_i64().unwrap());
                }
            }
            "batch" => {
                for e in v["events"].as_array().unwrap() {
                    let ev = e["ev"].as_i64().unwrap();
                    if ev <= self.last_ev {
                        continue;
                    }
                    assert_eq!(ev, self.last_ev + 1, "events arrive in order: {v}");
                    self.last_ev = ev;
                    match e["type"].as_str().unwrap() {
                        "message" => {
                            self.messages.push(e["message"]["id"].as_i64().unwrap());
                            self.texts
                                .push(e["message"]["text"].as_str().unwrap().to_string());
                            assert!(
                                e["message"].get("device").is_none(),
                                "no device key for residents: {e}"
                            );
                        }
                        "answered" => {
                            if e["answered"] == true {
                                self.answered.insert(e["id"].as_i64().unwrap());
                            }
                        }
                        "deleted" => {
                            self.deleted.insert(e["id"].as_i64().unwrap());
                        }
                        "pinned" => self.pinned = e["message"]["id"].as_i64(),
                        other => panic!("unexpected event {other}: {e}"),
                    }
                }
                self.likes = v["likes"].as_i64().unwrap();
                self.checkins = v["checkins"].as_i64().unwrap();
            }
            other => panic!("unexpected SSE event {other:?}"),
        }
    }
}

/// Follows `url` as an SSE stream until dropped, applying every event to `seen`.
async fn watch(url: String, seen: Arc<Mutex<Seen>>) {
    let http = reqwest::Client::new();
    let mut r = http.get(&url).send().await.expect("events stream opens");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let mut buf = String::new();
    while let Some(chunk) = r.chunk().await.expect("stream reads") {
        buf.push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            let (mut event, mut data) = (String::new(), String::new());
            for line in frame.lines() {
                if let Some(e) = line.strip_prefix("event:") {
                    event = e.trim().to_string();
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.strip_prefix(' ').unwrap_or(d));
                }
            }
            if !data.is_empty() {
                seen.lock().unwrap().apply(&event, &data);
            }
        }
    }
}

/// A resident: its own `fy_dev` cookie from the watch page.
async fn resident(http: &reqwest::Client, base: &str, channel: &str) -> String {
    let r = http
        .get(format!("{base}/watch/{channel}"))
        .send()
        .await
        .unwrap();
    let set = r.headers()["set-cookie"].to_str().unwrap();
    set.split(';').next().unwrap().to_string()
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    cookie: Option<&str>,
    body: Value,
) -> (StatusCode, Option<String>, Value) {
    let mut req = http.post(url).json(&body);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (status, retry, r.json().await.unwrap_or(Value::Null))
}

async fn host(http: &reqwest::Client, url: &str, method: &str, key: &str) -> (StatusCode, Value) {
    let req = match method {
        "GET" => http.get(url),
        "DELETE" => http.delete(url),
        _ => http.post(url),
    };
    let r = req.bearer_auth(key).send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_residents_chat_in_one_live_session() {
    let t = start_server_with(|c| {
        c.interaction.held_words = vec!["广告".into()];
    })
    .await;
    let channel = t.station.channel.to_string();
    let key = t.station.stream_key.clone();
    let base = t.base.clone();
    let api = format!("{base}/api/interaction/{channel}");
    let http = reqwest::Client::new();

    // Before the session: posting is refused with the reason, watching works.
    let cookie0 = resident(&http, &base, &channel).await;
    let (status, _, body) = post(
        &http,
        &format!("{api}/messages"),
        Some(&cookie0),
        json!({"nickname": "早到", "text": "开始了吗"}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("not live"),
        "{body}"
    );

    let dir = tempfile::tempdir().unwrap();
    let publisher = WhipPublisher::connect(
        &format!("{base}/whip/{channel}"),
        Some(&key),
        test_media(dir.path()).await,
        Default::default(),
    )
    .await
    .expect("publisher connects");
    let session = wait_live(&base, &channel).await;

    // 50 residents, each also watching over SSE.
    let mut cookies = Vec::new();
    for _ in 0..RESIDENTS {
        cookies.push(resident(&http, &base, &channel).await);
    }
    let seen: Vec<Arc<Mutex<Seen>>> = (0..RESIDENTS).map(|_| Arc::default()).collect();
    let watchers: Vec<_> = seen
        .iter()
        .map(|s| tokio::spawn(watch(format!("{api}/events"), s.clone())))
        .collect();
    assert!(
        wait_until(Duration::from_secs(20), || async {
            seen.iter().all(|s| s.lock().unwrap().snapshot)
        })
        .await,
        "every watcher got its snapshot"
    );

    // Each resident: check in, then MESSAGES_EACH posts (the second a question) 2.1 s
    // apart, with likes between; all residents at once.
    let posting = Instant::now();
    let mut tasks = Vec::new();
    for (i, cookie) in cookies.iter().enumerate() {
        let (http, api, cookie) = (http.clone(), api.clone(), cookie.clone());
        tasks.push(tokio::spawn(async move {
            let nickname = format!("居民{i}");
            let (s, _, b) = post(
                &http,
                &format!("{api}/checkin"),
                Some(&cookie),
                json!({"nickname": nickname}),
            )
            .await;
            assert_eq!((s, b["new"].as_bool()), (StatusCode::OK, Some(true)), "{b}");
            let mut likes = 0;
            for n in 0..MESSAGES_EACH {
                let kind = if n == 1 { "question" } else { "chat" };
                let (s, _, b) = post(
                    &http,
                    &format!("{api}/messages"),
                    Some(&cookie),
                    json!({"nickname": nickname, "text": format!("{nickname}的第{n}条"), "kind": kind}),
                )
                .await;
                assert_eq!(s, StatusCode::CREATED, "{b}");
                assert_eq!(b["state"], "visible");
                let count = (i % 5 + 1) as u32;
                let (s, _, b) = post(
                    &http,
                    &format!("{api}/likes"),
                    Some(&cookie),
                    json!({ "count": count }),
                )
                .await;
                assert_eq!(s, StatusCode::OK, "{b}");
                likes += i64::from(count);
                tokio::time::sleep(Duration::from_millis(2100)).await;
            }
            // A second check-in changes nothing.
            let (s, _, b) = post(
                &http,
                &format!("{api}/checkin"),
                Some(&cookie),
                json!({"nickname": nickname}),
            )
            .await;
            assert_eq!((s, b["new"].as_bool()), (StatusCode::OK, Some(false)), "{b}");
            likes
        }));
    }
    let mut likes = 0;
    for task in tasks {
        likes += task.await.expect("resident task");
    }
    let posted = (RESIDENTS * MESSAGES_EACH) as i64;
    let all: Vec<i64> = (1..=posted).collect();
    let delivered = wait_until(Duration::from_secs(10), || async {
        seen.iter()
            .all(|s| s.lock().unwrap().messages.len() >= all.len())
    })
    .await;
    for (w, s) in seen.iter().enumerate() {
        let s = s.lock().unwrap();
        assert!(
            delivered,
            "watcher {w} got {} of {posted}",
            s.messages.len()
        );
        assert_eq!(s.messages, all, "watcher {w}: every message once, in order");
        assert_eq!(s.texts.len(), all.len());
    }
    eprintln!(
        "{posted} messages from {RESIDENTS} residents to {RESIDENTS} watchers in {:?}",
        posting.elapsed()
    );
    assert!(
        wait_until(Duration::from_secs(5), || async {
            seen.iter().all(|s| {
                let s = s.lock().unwrap();
                s.likes == likes && s.checkins == RESIDENTS as i64
            })
        })
        .await,
        "likes ({likes}) and check-ins reach every watcher"
    );

    // The host: questions in order; mark one answered, everyone sees it.
    let (status, view) = host(&http, &format!("{api}/host"), "GET", &key).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    let questions: Vec<i64> = view["questions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["id"].as_i64().unwrap())
        .collect();
    assert_eq!(questions.len(), RESIDENTS);
    assert!(questions.windows(2).all(|w| w[0] < w[1]), "{questions:?}");
    let q = questions[7];
    let (status, _) = host(&http, &format!("{api}/messages/{q}/answer"), "POST", &key).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        wait_until(Duration::from_secs(5), || async {
            seen.iter().all(|s| s.lock().unwrap().answered.contains(&q))
        })
        .await,
        "every watcher sees question {q} answered"
    );
    // An administrator in scope may do the same; one outside it may not.
    let city = admin_token(&t, "city", Scope::City).await;
    let (status, view) = host(&http, &format!("{api}/host"), "GET", &city).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert!(view["questions"][7]["answered"] == true, "{view}");
    let other = t
        .server
        .catalog
        .add_station("别的中心", "别的所", "别的站")
        .await
        .unwrap();
    let (status, body) = host(&http, &format!("{api}/host"), "GET", &other.stream_key).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    // A station's administrator moderates its own station, not another one (403).
    let own_op = admin_token(&t, "own-op", Scope::Station(t.station.station_id)).await;
    let (status, view) = host(&http, &format!("{api}/host"), "GET", &own_op).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    let other_op = admin_token(&t, "other-op", Scope::Station(other.station_id)).await;
    for (method, path) in [
        ("GET", "host".to_string()),
        ("POST", format!("messages/{q}/unanswer")),
        ("DELETE", format!("messages/{q}")),
    ] {
        let (status, body) = host(&http, &format!("{api}/{path}"), method, &other_op).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {body}");
        assert!(body["error"].is_string(), "{body}");
    }

    // Pin the first question, delete an early message: everyone sees both.
    let pinned = questions[0];
    let (status, _) = host(&http, &format!("{api}/messages/{pinned}/pin"), "POST", &key).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = host(&http, &format!("{api}/messages/4"), "DELETE", &key).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        wait_until(Duration::from_secs(5), || async {
            seen.iter().all(|s| {
                let s = s.lock().unwrap();
                s.pinned == Some(pinned) && s.deleted.contains(&4)
            })
        })
        .await,
        "pin and delete reach every watcher"
    );
    // A new watcher starts from the backlog: the pinned one, the last 50 without the
    // deleted one.
    let late = Arc::new(Mutex::new(Seen::default()));
    let late_task = tokio::spawn(watch(format!("{api}/events"), late.clone()));
    assert!(
        wait_until(Duration::from_secs(5), || async {
            late.lock().unwrap().snapshot
        })
        .await
    );
    {
        let l = late.lock().unwrap();
        assert_eq!(l.messages.len(), 50);
        assert_eq!(*l.messages.last().unwrap(), posted);
    }

    // Over the rate: 429 with a retry time, JSON reason.
    let c = &cookies[0];
    let (s, _, b) = post(
        &http,
        &format!("{api}/messages"),
        Some(c),
        json!({"nickname": "甲", "text": "第一条"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, retry, b) = post(
        &http,
        &format!("{api}/messages"),
        Some(c),
        json!({"nickname": "甲", "text": "紧跟着第二条"}),
    )
    .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{b}");
    let retry: u64 = retry.expect("Retry-After").parse().unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    assert!(b["error"].as_str().unwrap().contains("wait"), "{b}");
    assert_eq!(b["retry_after_s"], retry);
    let (s, retry, _) = post(&http, &format!("{api}/likes"), Some(c), json!({"count": 1})).await;
    let (s2, retry2, b) = post(&http, &format!("{api}/likes"), Some(c), json!({"count": 1})).await;
    assert_eq!(s, StatusCode::OK, "{retry:?}");
    assert_eq!(s2, StatusCode::TOO_MANY_REQUESTS, "{b}");
    assert!(retry2.is_some());
    likes += 1;

    // The word list: held for the host alone until approved.
    let c = &cookies[1];
    let (s, _, b) = post(
        &http,
        &format!("{api}/messages"),
        Some(c),
        json!({"nickname": "乙", "text": "加微信看广告"}),
    )
    .await;
    assert_eq!(
        (s, b["state"].as_str()),
        (StatusCode::CREATED, Some("held")),
        "{b}"
    );
    let held = b["id"].as_i64().unwrap();
    let (_, view) = host(&http, &format!("{api}/host"), "GET", &key).await;
    assert_eq!(view["held"][0]["id"], held, "{view}");
    // Several batches go by (the first message above is in one of them) without it.
    let first = posted + 1;
    assert!(
        wait_until(Duration::from_secs(5), || async {
            seen.iter()
                .all(|s| s.lock().unwrap().messages.contains(&first))
        })
        .await
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    for s in &seen {
        assert!(
            !s.lock().unwrap().messages.contains(&held),
            "held message leaked"
        );
    }
    assert!(!late.lock().unwrap().messages.contains(&held));
    let (status, _) = host(
        &http,
        &format!("{api}/messages/{held}/approve"),
        "POST",
        &key,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        wait_until(Duration::from_secs(5), || async {
            seen.iter()
                .all(|s| s.lock().unwrap().messages.contains(&held))
        })
        .await,
        "the approved message reaches everyone"
    );

    // Mute: that device's next post is refused for the session.
    let (status, _) = host(&http, &format!("{api}/messages/{held}/mute"), "POST", &key).await;
    assert_eq!(status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (s, _, b) = post(
        &http,
        &format!("{api}/messages"),
        Some(c),
        json!({"nickname": "乙", "text": "还能说话吗"}),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert!(b["error"].as_str().unwrap().contains("muted"), "{b}");

    // Bad input: 4xx with a reason a person can act on.
    let c = &cookies[2];
    let long = "长".repeat(201);
    for (body, cookie, want, says) in [
        (
            json!({"nickname": "丙", "text": "   "}),
            Some(c.as_str()),
            400,
            "empty",
        ),
        (
            json!({"nickname": "丙", "text": long}),
            Some(c),
            400,
            "at most 200",
        ),
        (
            json!({"nickname": "", "text": "hi"}),
            Some(c),
            400,
            "nickname is empty",
        ),
        (
            json!({"nickname": "丙", "text": "hi", "kind": "shout"}),
            Some(c),
            400,
            "chat or question",
        ),
        (json!({"nickname": "丙"}), Some(c), 400, "JSON"),
        (
            json!({"nickname": "丙", "text": "hi"}),
            None,
            400,
            "device id",
        ),
        (
            json!({"nickname": "丙", "text": "hi"}),
            Some("fy_dev=forged.0000"),
            400,
            "device id",
        ),
    ] {
        let (s, _, b) = post(&http, &format!("{api}/messages"), cookie, body.clone()).await;
        assert_eq!(s.as_u16(), want, "{body}: {b}");
        assert!(b["error"].as_str().unwrap().contains(says), "{body}: {b}");
    }
    let (s, _, b) = post(&http, &format!("{api}/likes"), Some(c), json!({"count": 0})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let (s, _, b) = post(
        &http,
        &format!("{base}/api/interaction/no-such/messages"),
        Some(c),
        json!({"nickname": "丙", "text": "hi"}),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    let (s, b) = host(&http, &format!("{api}/messages/99999/answer"), "POST", &key).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    let (s, b) = host(&http, &format!("{api}/messages/1/answer"), "POST", &key).await;
    assert_eq!(s, StatusCode::CONFLICT, "not a question: {b}");
    let (s, b) = host(&http, &format!("{api}/host"), "GET", "wrong").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");

    // The counts in the statistics: every post (the over-rate one's first and the held
    // one included), questions and the answered one, likes, one check-in per device.
    let messages = posted + 2;
    let stats = |path: String| {
        let (http, city) = (http.clone(), city.clone());
        async move {
            http.get(path)
                .bearer_auth(&city)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    let want = json!({
        "messages": messages, "questions": RESIDENTS, "questions_answered": 1,
        "likes": likes, "checkins": RESIDENTS,
    });
    let row_of = |rows: &Value, id: i64, key: &str| -> Value {
        let r = rows
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r[key] == id)
            .cloned()
            .unwrap_or(Value::Null);
        json!({
            "messages": r["messages"], "questions": r["questions"],
            "questions_answered": r["questions_answered"], "likes": r["likes"],
            "checkins": r["checkins"],
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last;
    let matched = loop {
        let rows: Value =
            serde_json::from_str(&stats(format!("{base}/api/stats/sessions")).await).unwrap();
        last = row_of(&rows, session.0, "id");
        if last == want || Instant::now() > deadline {
            break last == want;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(matched, "session counts {last} != {want}");
    let table: Value =
        serde_json::from_str(&stats(format!("{base}/api/stats/table?group=station")).await)
            .unwrap();
    assert_eq!(row_of(&table, t.station.station_id.0, "group_id"), want);
    let csv = stats(format!("{base}/api/stats/sessions?format=csv")).await;
    let header = csv.lines().next().unwrap();
    assert!(
        header.ends_with(",互动消息,提问,已答提问,点赞,线上签到"),
        "{header}"
    );
    let line = csv
        .lines()
        .find(|l| l.starts_with(&format!("{},", session.0)))
        .unwrap();
    assert!(
        line.ends_with(&format!(",{messages},{RESIDENTS},1,{likes},{RESIDENTS}")),
        "{line}"
    );

    // Kept with the session for its replay: the visible messages, deleted one gone.
    let replay: Value = http
        .get(format!(
            "{base}/api/interaction/sessions/{}/messages",
            session.0
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<i64> = replay
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len() as i64, messages - 1, "all but the deleted one");
    assert!(!ids.contains(&4));
    assert!(
        !replay.to_string().contains("device"),
        "no device keys in public"
    );

    for w in watchers {
        w.abort();
    }
    late_task.abort();
    let _ = publisher.stop().await;
    t.server.shutdown().await;
}

/// The catalog side on both databases: writes in batches, what a restarted server resumes
/// from, the replay's messages and the counts in both statistics reads.
async fn catalog_round_trip(catalog: &feiyan::catalog::Catalog) {
    use feiyan::catalog::{InteractionWrite, StatsQuery, StoredMessage};
    let station = catalog.add_station("中心", "所", "站").await.unwrap();
    let now = feiyan::audience::now_ms();
    let session = catalog_db::open_lecture(catalog, &station, now - 60_000).await;
    let msg = |seq: i64, kind: &str, state: &str| {
        InteractionWrite::Message(StoredMessage {
            session,
            seq,
            kind: kind.into(),
            device_key: format!("dev{seq}"),
            nickname: "居民".into(),
            body: format!("第{seq}条"),
            state: state.into(),
            answered: false,
            created_at: now - 1000 + seq,
        })
    };
    let checkin = |key: &str| InteractionWrite::CheckIn {
        session,
        device_key: key.into(),
        nickname: "居民".into(),
        at: now,
    };
    catalog
        .write_interaction(&[
            msg(1, "chat", "visible"),
            msg(2, "question", "visible"),
            msg(3, "chat", "held"),
            msg(4, "chat", "visible"),
            InteractionWrite::Likes { session, count: 7 },
            checkin("a"),
            checkin("b"),
        ])
        .await
        .unwrap();
    catalog
        .write_interaction(&[
            InteractionWrite::Answered {
                session,
                seq: 2,
                answered: true,
            },
            // Twice: counted once.
            InteractionWrite::Answered {
                session,
                seq: 2,
                answered: true,
            },
            InteractionWrite::State {
                session,
                seq: 4,
                state: "deleted",
            },
            InteractionWrite::Pinned {
                session,
                seq: Some(2),
            },
            InteractionWrite::Likes { session, count: 5 },
            checkin("a"),
            // Twice: kept once; a restarted server keeps the mute.
            InteractionWrite::Mute {
                session,
                device_key: "dev3".into(),
            },
            InteractionWrite::Mute {
                session,
                device_key: "dev3".into(),
            },
        ])
        .await
        .unwrap();
    let resume = catalog.interaction_resume(session, 50).await.unwrap();
    assert_eq!(resume.max_seq, 4);
    assert_eq!(resume.likes, 12);
    assert_eq!(resume.pinned, Some(2));
    let mut keys = resume.checked_in.clone();
    keys.sort();
    assert_eq!(keys, ["a", "b"]);
    assert_eq!(resume.muted, ["dev3"]);
    let kept: Vec<(i64, &str)> = resume
        .messages
        .iter()
        .map(|m| (m.seq, m.state.as_str()))
        .collect();
    assert_eq!(kept, [(1, "visible"), (2, "visible"), (3, "held")]);
    assert!(resume.messages[1].answered);
    let replay: Vec<i64> = catalog
        .session_messages(session, 100)
        .await
        .unwrap()
        .iter()
        .map(|m| m.seq)
        .collect();
    assert_eq!(replay, [1, 2]);
    let want = feiyan::catalog::InteractionCounts {
        messages: 4,
        questions: 1,
        questions_answered: 1,
        likes: 12,
        checkins: 2,
    };
    assert_eq!(
        catalog.interaction_counts(&[session.0]).await.unwrap()[&session.0],
        want
    );
    for group in ["all", "center", "institute", "station"] {
        let q = StatsQuery::parse(&[("group".to_string(), group.to_string())].into()).unwrap();
        let rows = catalog.stats(&q, now).await.unwrap();
        assert_eq!(rows.len(), 1, "{group}: {rows:?}");
        assert_eq!(rows[0].interaction, want, "{group}");
        assert_eq!(rows[0].sessions, 1, "{group}");
    }
    let q = StatsQuery::parse(&Default::default()).unwrap();
    let listed = catalog.stats_sessions(&q, now).await.unwrap();
    assert_eq!(listed[0].interaction, want);
}

#[tokio::test]
async fn sqlite_interaction_catalog() {
    let db = catalog_db::sqlite().await;
    catalog_round_trip(&db.catalog).await;
    db.finish().await;
}

#[tokio::test]
async fn postgres_interaction_catalog() {
    let db = catalog_db::postgres().await;
    catalog_round_trip(&db.catalog).await;
    db.finish().await;
}

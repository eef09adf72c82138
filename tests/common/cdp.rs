//! Headless Chromium driven over the DevTools protocol (CDP), for browser tests.
//!
//! [`Browser::launch`] starts Chromium in its own process group with a fresh profile and
//! `--remote-debugging-port=0`, reads the port from `DevToolsActivePort` in the profile and
//! connects to the browser's websocket. [`Browser::new_page`] opens a tab ([`Page`]) that
//! records CSP violations from its first script on. A page is driven the way a person
//! would: the test fills fields and clicks buttons by evaluating JavaScript; the pages
//! carry no test hooks. [`Page::peer_connection_stats`] finds the page's
//! `RTCPeerConnection`s with `Runtime.queryObjects` and reads their `getStats()`;
//! [`Page::video_playback`] reads HLS (or any) playback of a `<video>` with
//! `getVideoPlaybackQuality()`; [`Page::requests`] lists what the page fetched once
//! [`Page::record_requests`] turned the Network domain on.
//!
//! Chromium: `/usr/bin/chromium`, or the path in `FEIYAN_CHROMIUM`. A missing browser
//! fails the test; it is never skipped.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

/// How many lines of Chromium's stderr are kept for failure reports.
const STDERR_TAIL_LINES: usize = 40;
/// The longest any one CDP command may take (a `getStats()` or a page load included).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// The flags every test browser gets (../shared/FIELD-NOTES.md, headless Chromium).
const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    // Chromium's default mDNS (.local) host candidates stay on, as in real browsers: the
    // server learns the real address from the browser's checks.
    "--autoplay-policy=no-user-gesture-required",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--remote-debugging-port=0",
    // Page console messages (JS errors, failed fetches) go to stderr too.
    "--enable-logging=stderr",
];

/// Registered before any page script runs: every CSP violation the page sees is kept in
/// `window.__feiyanCspViolations` (the test's own variable, not the page's).
const CSP_LISTENER: &str = r#"(() => {
  const seen = [];
  Object.defineProperty(window, '__feiyanCspViolations', { value: seen });
  document.addEventListener('securitypolicyviolation', (e) => {
    seen.push(`${e.effectiveDirective} blocked ${e.blockedURI || '(inline)'} at ${e.sourceFile}:${e.lineNumber} ${e.sample || ''}`.trim());
  }, true);
})();"#;

/// Reads one page's peer connections; `this` is the array from `Runtime.queryObjects`.
const PC_STATS: &str = r#"async function () {
  const out = [];
  for (const pc of this) {
    const entry = {
      connectionState: pc.connectionState,
      iceConnectionState: pc.iceConnectionState,
      inbound: {}, outbound: {},
      remoteSdp: pc.currentRemoteDescription ? pc.currentRemoteDescription.sdp : null,
    };
    const add = (side, kind, r, fields) => {
      const acc = entry[side][kind] || (entry[side][kind] = {});
      for (const f of fields) if (typeof r[f] === 'number') acc[f] = (acc[f] || 0) + r[f];
      if (r.frameWidth) { acc.frameWidth = r.frameWidth; acc.frameHeight = r.frameHeight || 0; }
    };
    try {
      const report = await pc.getStats();
      report.forEach((r) => {
        const kind = r.kind || r.mediaType;
        if (r.type === 'inbound-rtp') {
          add('inbound', kind, r, ['packetsReceived', 'bytesReceived', 'framesDecoded', 'packetsLost']);
        } else if (r.type === 'outbound-rtp') {
          add('outbound', kind, r, ['packetsSent', 'bytesSent', 'framesEncoded', 'targetBitrate']);
          if (r.qualityLimitationReason) entry.outbound[kind].qualityLimitationReason = r.qualityLimitationReason;
        } else if (r.type === 'candidate-pair' && r.nominated && r.state === 'succeeded') {
          if (typeof r.availableOutgoingBitrate === 'number') {
            entry.availableOutgoingBitrate = r.availableOutgoingBitrate;
          }
        }
      });
    } catch (e) { entry.error = String(e); }
    out.push(entry);
  }
  return out;
}"#;

/// The Chromium binary: `FEIYAN_CHROMIUM` or `/usr/bin/chromium`; panics with how to get
/// one when it is missing.
pub fn chromium_path() -> PathBuf {
    let path = std::env::var_os("FEIYAN_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.is_file(),
        "Chromium not found at {} — this test needs a real browser. Install it \
         (`apt-get install -y chromium`) or set FEIYAN_CHROMIUM to its path.",
        path.display()
    );
    path
}

/// A CDP error: the browser's own (`{code, message}`), a JavaScript exception, or a
/// broken connection.
#[derive(Debug)]
pub struct CdpError(pub String);

impl std::fmt::Display for CdpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CdpError {}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Value, CdpError>>>>>;

/// One websocket to the browser; page sessions share it (flat sessions).
struct Connection {
    /// Outgoing messages, written by one task.
    out: mpsc::UnboundedSender<String>,
    /// Commands waiting for their answer, by id. A std `Mutex`: never held across `.await`.
    pending: Pending,
    next_id: AtomicU64,
    /// Every event: `(sessionId, method, params)`.
    events: broadcast::Sender<(String, String, Value)>,
    /// `Log.entryAdded` entries per session, kept from the moment the page is attached.
    logs: Arc<Mutex<HashMap<String, Vec<Value>>>>,
    /// Requests and responses per session (`Network` events), once a page records them.
    network: Arc<Mutex<HashMap<String, Vec<Value>>>>,
}

impl Connection {
    async fn send(
        &self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, CdpError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        if self.out.send(msg.to_string()).is_err() {
            self.pending.lock().unwrap().remove(&id);
            return Err(CdpError(format!(
                "{method}: the browser connection is closed"
            )));
        }
        match tokio::time::timeout(COMMAND_TIMEOUT, rx).await {
            Ok(Ok(result)) => result.map_err(|e| CdpError(format!("{method}: {e}"))),
            Ok(Err(_)) => Err(CdpError(format!("{method}: the browser connection closed"))),
            Err(_) => {
                self.pending.lock().unwrap().remove(&id);
                Err(CdpError(format!(
                    "{method}: no answer within {COMMAND_TIMEOUT:?}"
                )))
            }
        }
    }
}

/// A headless Chromium in its own process group (renderer, GPU and network processes die
/// with it) with its own profile directory, connected over CDP. Dropping it kills the
/// whole group.
pub struct Browser {
    /// Shown in failure reports.
    pub name: String,
    child: tokio::process::Child,
    pid: i32,
    conn: Arc<Connection>,
    stderr: Arc<Mutex<VecDeque<String>>>,
    /// Whether [`Browser::new_page`] has used the tab Chromium opened at start.
    first_tab_taken: std::sync::atomic::AtomicBool,
    killed: bool,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium with the test flags, `extra_args` (e.g.
    /// `--ignore-certificate-errors-spki-list=...`, `--host-resolver-rules=MAP feiyan.test
    /// 127.0.0.1`) and a temporary profile, and connects to it.
    pub async fn launch(name: &str, extra_args: &[&str]) -> Browser {
        let chromium = chromium_path();
        let profile = tempfile::tempdir().expect("profile dir");
        let mut cmd = tokio::process::Command::new(&chromium);
        cmd.args(FLAGS)
            .args(extra_args)
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} ({name}): {e}", chromium.display()));
        let pid = child.id().expect("chromium pid") as i32;
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        tokio::spawn(keep_tail(
            child.stderr.take().expect("stderr piped"),
            stderr.clone(),
        ));

        // Chromium writes the port it picked, then the browser target's path.
        let port_file = profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(20);
        let (port, path) = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                let mut lines = text.lines();
                if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                    break (port.trim().to_string(), path.trim().to_string());
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "{name} chromium exited before it opened its debugging port ({status}):\n{}",
                    tail_text(&stderr)
                );
            }
            assert!(
                Instant::now() < deadline,
                "{name} chromium wrote no {} within 20 s:\n{}",
                port_file.display(),
                tail_text(&stderr)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let url = format!("ws://127.0.0.1:{port}{path}");
        let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .unwrap_or_else(|e| panic!("{name} chromium: cannot connect to {url}: {e}"));
        let (mut sink, mut stream) = ws.split();

        let (out, mut out_rx) = mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            while let Some(text) = out_rx.recv().await {
                if sink.send(Message::text(text)).await.is_err() {
                    break;
                }
            }
        });
        let pending: Pending = Arc::default();
        let (events, _) = broadcast::channel(1024);
        let logs: Arc<Mutex<HashMap<String, Vec<Value>>>> = Arc::default();
        let network: Arc<Mutex<HashMap<String, Vec<Value>>>> = Arc::default();
        {
            let pending = pending.clone();
            let events = events.clone();
            let logs = logs.clone();
            let network = network.clone();
            tokio::spawn(async move {
                while let Some(Ok(msg)) = stream.next().await {
                    let Message::Text(text) = msg else { continue };
                    let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else {
                        continue;
                    };
                    if let Some(id) = v["id"].as_u64() {
                        if let Some(tx) = pending.lock().unwrap().remove(&id) {
                            let _ = tx.send(match v.get("error") {
                                Some(e) => Err(CdpError(e.to_string())),
                                None => Ok(v["result"].clone()),
                            });
                        }
                        continue;
                    }
                    let session = v["sessionId"].as_str().unwrap_or("").to_string();
                    let method = v["method"].as_str().unwrap_or("").to_string();
                    if method == "Log.entryAdded" {
                        logs.lock()
                            .unwrap()
                            .entry(session.clone())
                            .or_default()
                            .push(v["params"]["entry"].clone());
                    }
                    let seen = match method.as_str() {
                        "Network.requestWillBeSent" => Some(json!({
                            "request": v["params"]["request"]["method"],
                            "url": v["params"]["request"]["url"],
                            "type": v["params"]["type"],
                        })),
                        "Network.responseReceived" => Some(json!({
                            "status": v["params"]["response"]["status"],
                            "url": v["params"]["response"]["url"],
                            "type": v["params"]["type"],
                        })),
                        "Network.loadingFailed" => Some(json!({
                            "failed": v["params"]["errorText"],
                            "type": v["params"]["type"],
                            "blocked": v["params"]["blockedReason"],
                        })),
                        _ => None,
                    };
                    if let Some(seen) = seen {
                        network
                            .lock()
                            .unwrap()
                            .entry(session.clone())
                            .or_default()
                            .push(seen);
                    }
                    // No receiver is fine: nobody waits for this event.
                    let _ = events.send((session, method, v["params"].clone()));
                }
                // Dropping the pending senders fails every waiting command.
                pending.lock().unwrap().clear();
            });
        }
        println!("[browser] started {name} chromium (pid {pid}), CDP on port {port}");
        Browser {
            name: name.to_string(),
            child,
            pid,
            conn: Arc::new(Connection {
                out,
                pending,
                next_id: AtomicU64::new(1),
                events,
                logs,
                network,
            }),
            stderr,
            first_tab_taken: Default::default(),
            killed: false,
            _profile: profile,
        }
    }

    /// Opens a new tab on `about:blank`, attached, with Page, Runtime and Log enabled and
    /// the CSP violation listener installed for every document it loads.
    pub async fn new_page(&self) -> Page {
        self.try_new_page()
            .await
            .unwrap_or_else(|e| panic!("{} chromium: cannot open a page: {e}", self.name))
    }

    async fn try_new_page(&self) -> Result<Page, CdpError> {
        // The first page is the tab Chromium opened at start (the foreground one); later
        // pages are new tabs.
        let mut target_id = String::new();
        if !self.first_tab_taken.swap(true, Ordering::Relaxed) {
            let targets = self.conn.send(None, "Target.getTargets", json!({})).await?;
            if let Some(t) = targets["targetInfos"].as_array().and_then(|all| {
                all.iter()
                    .find(|t| t["type"] == "page" && t["url"] == "about:blank")
            }) {
                target_id = t["targetId"].as_str().unwrap_or_default().to_string();
            }
        }
        if target_id.is_empty() {
            let target = self
                .conn
                .send(None, "Target.createTarget", json!({ "url": "about:blank" }))
                .await?;
            target_id = target["targetId"].as_str().unwrap_or_default().to_string();
        }
        let attached = self
            .conn
            .send(
                None,
                "Target.attachToTarget",
                json!({ "targetId": target_id, "flatten": true }),
            )
            .await?;
        let session = attached["sessionId"]
            .as_str()
            .ok_or_else(|| CdpError(format!("no session in {attached}")))?
            .to_string();
        let page = Page {
            conn: self.conn.clone(),
            session,
            target_id,
        };
        page.send("Page.enable", json!({})).await?;
        page.send("Runtime.enable", json!({})).await?;
        page.send("Log.enable", json!({})).await?;
        page.send(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({ "source": CSP_LISTENER }),
        )
        .await?;
        Ok(page)
    }

    /// `Some(status)` if the browser exited on its own (not killed by this test).
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) if !self.killed => Some(status.to_string()),
            _ => None,
        }
    }

    /// SIGKILL to the whole process group: no page gets a chance to send anything.
    pub async fn kill(&mut self) {
        self.kill_group();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }

    fn kill_group(&mut self) {
        if !self.killed && self.pid > 1 {
            // SAFETY: plain syscall; the group is the one this helper created for this child.
            unsafe {
                libc::kill(-self.pid, libc::SIGKILL);
            }
        }
        self.killed = true;
    }

    /// The last lines of Chromium's stderr (D-Bus and ALSA noise left out), for failures.
    pub fn stderr_tail(&self) -> String {
        tail_text(&self.stderr)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.kill_group();
    }
}

async fn keep_tail(pipe: tokio::process::ChildStderr, tail: Arc<Mutex<VecDeque<String>>>) {
    let mut lines = BufReader::new(pipe);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match lines.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf).trim_end().to_string();
                // No D-Bus and no sound card in a headless test box: that noise would
                // fill the tail.
                if line.contains(":dbus/")
                    || line.contains("D-Bus")
                    || line.starts_with("ALSA lib ")
                {
                    continue;
                }
                let mut t = tail.lock().unwrap();
                if t.len() == STDERR_TAIL_LINES {
                    t.pop_front();
                }
                t.push_back(line);
            }
        }
    }
}

fn tail_text(tail: &Mutex<VecDeque<String>>) -> String {
    let t = tail.lock().unwrap();
    if t.is_empty() {
        return "    (no stderr output)".into();
    }
    t.iter()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// One tab of a [`Browser`]. It stays usable while its browser lives.
pub struct Page {
    conn: Arc<Connection>,
    session: String,
    /// The CDP target id of the tab.
    pub target_id: String,
}

impl Page {
    /// Sends any CDP command to this page's session and returns its result.
    pub async fn send(&self, method: &str, params: Value) -> Result<Value, CdpError> {
        self.conn.send(Some(&self.session), method, params).await
    }

    /// Loads `url` and waits for its `load` event.
    pub async fn navigate(&self, url: &str) -> Result<(), CdpError> {
        let mut events = self.conn.events.subscribe();
        let nav = self.send("Page.navigate", json!({ "url": url })).await?;
        if let Some(err) = nav["errorText"].as_str().filter(|e| !e.is_empty()) {
            return Err(CdpError(format!("navigating to {url}: {err}")));
        }
        let wait = async {
            loop {
                match events.recv().await {
                    Ok((session, method, _))
                        if session == self.session && method == "Page.loadEventFired" =>
                    {
                        return Ok(());
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => {
                        return Err(CdpError("the browser connection closed".into()));
                    }
                }
            }
        };
        tokio::time::timeout(COMMAND_TIMEOUT, wait)
            .await
            .map_err(|_| {
                CdpError(format!(
                    "{url} did not finish loading in {COMMAND_TIMEOUT:?}"
                ))
            })?
    }

    /// Evaluates `js` in the page (awaiting a promise, as a user gesture) and returns its
    /// value as JSON (`null` for `undefined`). A thrown exception is an error.
    pub async fn evaluate(&self, js: &str) -> Result<Value, CdpError> {
        let r = self
            .send(
                "Runtime.evaluate",
                json!({
                    "expression": js,
                    "awaitPromise": true,
                    "returnByValue": true,
                    "userGesture": true,
                }),
            )
            .await?;
        check_exception(js, &r)?;
        Ok(r["result"]["value"].clone())
    }

    /// Every `RTCPeerConnection` alive in the page (closed ones too, until collected), as
    /// `[{connectionState, iceConnectionState, remoteSdp, availableOutgoingBitrate,
    /// inbound: {video: {packetsReceived, bytesReceived, framesDecoded, packetsLost,
    /// frameWidth, frameHeight}, audio: {...}}, outbound: {video: {packetsSent, bytesSent,
    /// framesEncoded, targetBitrate, qualityLimitationReason, frameWidth, frameHeight},
    /// audio: {...}}}]`, summed per kind over the connection's RTP streams;
    /// `availableOutgoingBitrate` (the sender's bandwidth estimate, from the selected
    /// candidate pair) only when the browser has one.
    pub async fn peer_connection_stats(&self) -> Result<Value, CdpError> {
        const GROUP: &str = "feiyan-pc-stats";
        let result = async {
            let proto = self
                .send(
                    "Runtime.evaluate",
                    json!({ "expression": "RTCPeerConnection.prototype", "objectGroup": GROUP }),
                )
                .await?;
            check_exception("RTCPeerConnection.prototype", &proto)?;
            let proto_id = proto["result"]["objectId"]
                .as_str()
                .ok_or_else(|| CdpError(format!("no RTCPeerConnection in the page: {proto}")))?;
            let found = self
                .send(
                    "Runtime.queryObjects",
                    json!({ "prototypeObjectId": proto_id, "objectGroup": GROUP }),
                )
                .await?;
            let array_id = found["objects"]["objectId"]
                .as_str()
                .ok_or_else(|| CdpError(format!("queryObjects answered {found}")))?;
            let stats = self
                .send(
                    "Runtime.callFunctionOn",
                    json!({
                        "functionDeclaration": PC_STATS,
                        "objectId": array_id,
                        "awaitPromise": true,
                        "returnByValue": true,
                        "objectGroup": GROUP,
                    }),
                )
                .await?;
            check_exception("getStats()", &stats)?;
            Ok(stats["result"]["value"].clone())
        }
        .await;
        let _ = self
            .send(
                "Runtime.releaseObjectGroup",
                json!({ "objectGroup": GROUP }),
            )
            .await;
        result
    }

    /// The first connected entry of [`Page::peer_connection_stats`], or `Null`.
    pub async fn connected_peer_stats(&self) -> Result<Value, CdpError> {
        let all = self.peer_connection_stats().await?;
        Ok(all
            .as_array()
            .and_then(|a| a.iter().find(|pc| pc["connectionState"] == "connected"))
            .cloned()
            .unwrap_or(Value::Null))
    }

    /// The CSP violations seen by the current document (its `securitypolicyviolation`
    /// events) and, since the page was opened, the browser's log entries about the
    /// Content Security Policy. Empty when the policy held.
    pub async fn csp_violations(&self) -> Result<Vec<String>, CdpError> {
        let mut out: Vec<String> = self
            .evaluate("Array.from(window.__feiyanCspViolations || [])")
            .await?
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|v| format!("event: {}", v.as_str().unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default();
        let logs = self.conn.logs.lock().unwrap();
        for entry in logs.get(&self.session).into_iter().flatten() {
            let text = entry["text"].as_str().unwrap_or_default();
            if text.contains("Content Security Policy") || text.contains("Content-Security-Policy")
            {
                out.push(format!(
                    "log: {text} ({})",
                    entry["url"].as_str().unwrap_or("")
                ));
            }
        }
        Ok(out)
    }

    /// Turns the Network domain on: from now on [`Page::requests`] lists what the page
    /// asks for (the `<video>` element's own playlist and segment requests included).
    pub async fn record_requests(&self) -> Result<(), CdpError> {
        self.send("Network.enable", json!({})).await.map(|_| ())
    }

    /// What the page fetched since [`Page::record_requests`], in order: `{request: METHOD,
    /// url, type}` when a request goes out, `{status, url, type}` when its answer arrives,
    /// `{failed, type, blocked}` when it fails.
    pub fn requests(&self) -> Vec<Value> {
        self.conn
            .network
            .lock()
            .unwrap()
            .get(&self.session)
            .cloned()
            .unwrap_or_default()
    }

    /// Playback of the page's first `<video>` matching `selector` (`"video"` for the only
    /// one): `{totalVideoFrames, droppedVideoFrames}` from `getVideoPlaybackQuality()`
    /// (how HLS playback is read, DECISIONS.md "Browser tests"), `currentTime`, `paused`,
    /// `readyState`, `videoWidth`, `videoHeight`, and `error` (the media error code or
    /// null); `null` when there is no such element.
    pub async fn video_playback(&self, selector: &str) -> Result<Value, CdpError> {
        self.evaluate(&format!(
            "(() => {{ const v = document.querySelector({}); if (!v) return null; \
             const q = v.getVideoPlaybackQuality(); \
             return {{ totalVideoFrames: q.totalVideoFrames, \
               droppedVideoFrames: q.droppedVideoFrames, currentTime: v.currentTime, \
               paused: v.paused, readyState: v.readyState, videoWidth: v.videoWidth, \
               videoHeight: v.videoHeight, error: v.error ? v.error.code : null }}; }})()",
            Value::from(selector)
        ))
        .await
    }

    /// Every log entry of this page so far (`Log.entryAdded`: source, level, text, url).
    pub fn log_entries(&self) -> Vec<Value> {
        self.conn
            .logs
            .lock()
            .unwrap()
            .get(&self.session)
            .cloned()
            .unwrap_or_default()
    }

    /// Closes the tab (the page gets its `pagehide`, as when a person closes it).
    pub async fn close(&self) -> Result<(), CdpError> {
        self.conn
            .send(
                None,
                "Target.closeTarget",
                json!({ "targetId": self.target_id }),
            )
            .await
            .map(|_| ())
    }
}

fn check_exception(what: &str, result: &Value) -> Result<(), CdpError> {
    match result.get("exceptionDetails") {
        Some(e) => Err(CdpError(format!(
            "{what}: {}",
            e["exception"]["description"]
                .as_str()
                .or_else(|| e["text"].as_str())
                .unwrap_or("exception")
        ))),
        None => Ok(()),
    }
}

//! The served pages as a browser test drives them: a [`Tab`] (one Chromium and its page),
//! the publish form filled as a person would, each page's state read over CDP (its peer
//! connection's stats and what it shows), and [`Ctx`], which polls for a state and, on a
//! failure, prints everything needed to explain it. The pages carry no test hooks.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::cdp::{Browser, Page};

/// A browser and the one page a test drives in it.
pub struct Tab {
    pub browser: Browser,
    pub page: Page,
}

impl Tab {
    pub async fn open(name: &str) -> Tab {
        let browser = Browser::launch(name, &[]).await;
        let page = browser.new_page().await;
        Tab { browser, page }
    }

    /// A fresh browser on the watch page of `channel` (`query` after it, e.g.
    /// `?quality=180p`), with `on_new_document` run in every document before the page's own
    /// scripts.
    pub async fn watch(
        base: &str,
        channel: &str,
        query: &str,
        on_new_document: Option<&str>,
    ) -> Tab {
        let tab = Tab::open("watch").await;
        if let Some(source) = on_new_document {
            tab.page
                .send(
                    "Page.addScriptToEvaluateOnNewDocument",
                    json!({ "source": source }),
                )
                .await
                .expect("script installed before the page's own");
        }
        tab.page
            .navigate(&format!("{base}/watch/{channel}{query}"))
            .await
            .expect("watch page loads");
        tab
    }
}

pub fn num(v: &Value, pointer: &str) -> u64 {
    v.pointer(pointer)
        .and_then(Value::as_f64)
        .map(|f| f as u64)
        .unwrap_or(0)
}

/// A JavaScript string literal.
pub fn js_str(s: &str) -> String {
    Value::from(s).to_string()
}

/// Opens the publish page, types the key and title as a person would, and presses 开始直播.
pub async fn start_publishing(page: &Page, base: &str, channel: &str, key: &str, title: &str) {
    page.navigate(&format!("{base}/publish/{channel}"))
        .await
        .expect("publish page loads");
    page.evaluate(&format!(
        "(() => {{ document.getElementById('key').value = {}; \
         document.getElementById('title').value = {}; \
         document.getElementById('start').click(); }})()",
        js_str(key),
        js_str(title)
    ))
    .await
    .expect("the publish form is filled and submitted");
}

/// What the watch page shows: its video element and quality menu.
pub const WATCH_VIEW: &str = "(() => { \
    const v = document.getElementById('video'); \
    const box = document.getElementById('quality-box'); \
    const sel = document.getElementById('quality'); \
    return { videoWidth: v.videoWidth, videoHeight: v.videoHeight, currentTime: v.currentTime, \
      paused: v.paused, status: document.body.getAttribute('data-status'), \
      qualityChoices: box.hidden ? 0 : sel.options.length, quality: sel.value || 'source' }; })()";

/// Watch page state: `{pc: <connected peer connection stats or null>, view: WATCH_VIEW}`.
pub async fn watch_state(page: &Page) -> Value {
    let pc = page
        .connected_peer_stats()
        .await
        .unwrap_or_else(|e| json!({ "error": e.to_string() }));
    let view = page
        .evaluate(WATCH_VIEW)
        .await
        .unwrap_or_else(|e| json!({ "error": e.to_string() }));
    json!({ "pc": pc, "view": view })
}

/// Publish page state: its connected peer connection's stats and the page's status.
pub async fn publish_state(page: &Page) -> Value {
    let pc = page
        .connected_peer_stats()
        .await
        .unwrap_or_else(|e| json!({ "error": e.to_string() }));
    let status = page
        .evaluate("document.body.getAttribute('data-status')")
        .await
        .unwrap_or_else(|e| json!(e.to_string()));
    json!({ "pc": pc, "status": status })
}

pub async fn channel_info(http: &reqwest::Client, base: &str, channel: &str) -> Value {
    let res = async {
        http.get(format!("{base}/api/channels/{channel}"))
            .send()
            .await?
            .error_for_status()?
            .json::<Value>()
            .await
    }
    .await;
    res.unwrap_or_else(|e| json!({ "error": e.to_string() }))
}

/// Everything needed to explain a failure.
pub struct Ctx {
    pub started: Instant,
    pub http: reqwest::Client,
    pub base: String,
    pub channel: String,
    pub publisher: Option<Tab>,
    pub viewer: Option<Tab>,
}

impl Ctx {
    pub fn new(base: &str, channel: &str) -> Ctx {
        Ctx {
            started: Instant::now(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap(),
            base: base.to_string(),
            channel: channel.to_string(),
            publisher: None,
            viewer: None,
        }
    }

    pub fn t(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    pub async fn info(&self) -> Value {
        channel_info(&self.http, &self.base, &self.channel).await
    }

    pub fn publish_page(&self) -> &Page {
        &self.publisher.as_ref().expect("publisher open").page
    }

    pub fn watch_page(&self) -> &Page {
        &self.viewer.as_ref().expect("viewer open").page
    }

    /// Fails early if a browser died on its own.
    pub fn check_browsers(&mut self) -> Option<String> {
        for tab in [self.publisher.as_mut(), self.viewer.as_mut()]
            .into_iter()
            .flatten()
        {
            if let Some(status) = tab.browser.exited() {
                return Some(format!(
                    "{} chromium exited on its own: {status}",
                    tab.browser.name
                ));
            }
        }
        None
    }

    pub async fn fail(&self, msg: &str) -> ! {
        // Let the stderr readers catch up with a browser that just died.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let info = self.info().await;
        let mut out = format!(
            "\n==== browser test failed at {:.1} s: {msg}\napi /api/channels/{}: {info}\n",
            self.t(),
            self.channel
        );
        if let Some(tab) = &self.publisher {
            out.push_str(&format!(
                "publish page: {}\n",
                publish_state(&tab.page).await
            ));
        }
        if let Some(tab) = &self.viewer {
            out.push_str(&format!("watch page: {}\n", watch_state(&tab.page).await));
        }
        for tab in [self.publisher.as_ref(), self.viewer.as_ref()]
            .into_iter()
            .flatten()
        {
            out.push_str(&format!(
                "---- {} chromium stderr (last lines):\n{}\n",
                tab.browser.name,
                tab.browser.stderr_tail()
            ));
        }
        eprintln!("{out}");
        panic!("{msg} (diagnostics above)");
    }

    /// Polls `check` every 250 ms until it yields `Ok`, a browser dies, or `timeout` passes.
    pub async fn wait_for<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut check: impl AsyncFnMut(&Ctx) -> Result<T, String>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(dead) = self.check_browsers() {
                self.fail(&format!("{dead} while waiting for {what}")).await;
            }
            let last = match check(self).await {
                Ok(v) => return v,
                Err(why) => why,
            };
            if Instant::now() >= deadline {
                self.fail(&format!(
                    "timed out after {:.0} s waiting for {what}; last state: {last}",
                    timeout.as_secs_f64()
                ))
                .await;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits until the publish page is live and sending video and audio.
    pub async fn wait_publishing(&mut self, timeout: Duration) {
        self.wait_for(
            "the channel to go live and the publish page to send video and audio",
            timeout,
            async |c: &Ctx| {
                let info = c.info().await;
                let state = publish_state(c.publish_page()).await;
                if info["live"].as_bool() == Some(true)
                    && num(&state, "/pc/outbound/video/packetsSent") > 0
                    && num(&state, "/pc/outbound/audio/packetsSent") > 0
                {
                    Ok(())
                } else {
                    Err(format!("api {info}; publish page {state}"))
                }
            },
        )
        .await;
    }
}

/// Fails with the page's violations, if any.
pub async fn assert_no_csp_violation(page: &Page, what: &str) {
    let violations = page.csp_violations().await.expect("violations readable");
    assert!(
        violations.is_empty(),
        "CSP violations on {what}:\n{}",
        violations.join("\n")
    );
}

/// Publishes a moving 1280x720 canvas and a tone from `about:blank` over WHIP to `whip`
/// (a feiyan page cannot send what this can: simulcast layers `h`, `m` (half size) and
/// `l` (quarter) when `simulcast`, or a codec of the test's choosing, `codec` being a
/// mime type such as `video/VP8`). `about:blank` is no secure context, so there is no
/// `getUserMedia` there: the camera is a canvas. The test POSTs the offer itself:
/// Chromium blocks a fetch from `about:blank` to a loopback address (Private Network
/// Access). The connection is kept in `window.__pc`; returns the answer.
pub async fn publish_canvas(
    page: &Page,
    whip: &str,
    key: &str,
    codec: &str,
    simulcast: bool,
) -> String {
    publish_canvas_mapped(page, whip, key, codec, simulcast, |answer| answer).await
}

/// [`publish_canvas`], applying `map(answer)` instead of the server's answer: a publisher
/// that reaches the server by another address than the one it advertises (the test of a
/// server whose advertised address viewers cannot reach rewrites its candidates).
pub async fn publish_canvas_mapped(
    page: &Page,
    whip: &str,
    key: &str,
    codec: &str,
    simulcast: bool,
    map: impl FnOnce(String) -> String,
) -> String {
    page.navigate("about:blank").await.expect("about:blank");
    let encodings = if simulcast {
        "[{ rid: 'h' }, { rid: 'm', scaleResolutionDownBy: 2 }, { rid: 'l', scaleResolutionDownBy: 4 }]"
    } else {
        "undefined"
    };
    let script = format!(
        r#"(async () => {{
  const canvas = document.createElement('canvas');
  canvas.width = 1280; canvas.height = 720;
  document.body.appendChild(canvas);
  const g = canvas.getContext('2d');
  let n = 0;
  setInterval(() => {{
    n += 1;
    g.fillStyle = `hsl(${{(n * 3) % 360}}, 70%, 50%)`;
    g.fillRect(0, 0, 1280, 720);
    for (let i = 0; i < 40; i++) {{
      g.fillStyle = `hsl(${{(n * 7 + i * 37) % 360}}, 80%, ${{30 + (i % 5) * 10}}%)`;
      g.fillRect((n * 5 + i * 97) % 1280, (n * 3 + i * 53) % 720, 120, 90);
    }}
    g.fillStyle = '#fff'; g.font = '96px sans-serif'; g.fillText('frame ' + n, 80, 360);
  }}, 33);
  const audio = new AudioContext();
  const tone = audio.createOscillator();
  const sink = audio.createMediaStreamDestination();
  tone.connect(sink); tone.start();
  const stream = new MediaStream([
    ...canvas.captureStream(30).getVideoTracks(), ...sink.stream.getAudioTracks()]);
  const pc = new RTCPeerConnection();
  window.__pc = pc;
  const [video] = stream.getVideoTracks();
  const t = pc.addTransceiver(video, {{
    direction: 'sendonly', streams: [stream], sendEncodings: {encodings},
  }});
  const wanted = {codec};
  const codecs = RTCRtpSender.getCapabilities('video').codecs.filter((c) =>
    c.mimeType === wanted && (wanted !== 'video/H264'
      || (/packetization-mode=1/.test(c.sdpFmtpLine || '')
        && /profile-level-id=42e01f/.test(c.sdpFmtpLine || ''))));
  if (!codecs.length) throw new Error('no ' + wanted + ' in this Chromium');
  t.setCodecPreferences(codecs);
  for (const a of stream.getAudioTracks()) pc.addTransceiver(a, {{ direction: 'sendonly', streams: [stream] }});
  await pc.setLocalDescription(await pc.createOffer());
  return pc.localDescription.sdp;
}})()"#,
        codec = js_str(codec),
    );
    let offer = page
        .evaluate(&script)
        .await
        .expect("the publish script runs");
    let offer = offer.as_str().expect("an offer").to_string();
    let posted = reqwest::Client::new()
        .post(whip)
        .header("Content-Type", "application/sdp")
        .bearer_auth(key)
        .body(offer)
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 201, "WHIP answer: {posted:?}");
    let answer = map(posted.text().await.unwrap());
    page.evaluate(&format!(
        "window.__pc.setRemoteDescription({{ type: 'answer', sdp: {} }})",
        js_str(&answer)
    ))
    .await
    .expect("the answer applies");
    answer
}

// feiyan publish page (/publish/{channel}): WHIP from the camera. Served at /assets/publish.js.
(function () {
  'use strict';

  // ---------- helpers (shared, /assets/feiyan.js) ----------
  var $ = window.Feiyan.$;
  var noop = window.Feiyan.noop;
  var channelFromPath = window.Feiyan.channelFromPath;
  var errMsg = window.Feiyan.errMsg;
  var fetchWithTimeout = window.Feiyan.fetchWithTimeout;
  var safeText = window.Feiyan.safeText;
  var shorten = window.Feiyan.shorten;
  var waitIceGathering = window.Feiyan.waitIceGathering;
  var pcState = window.Feiyan.pcState;
  var deleteResource = window.Feiyan.deleteResource;


  // Order codecs: video H.264 (packetization-mode=1, constrained baseline
  // first) then VP8, then everything else; audio Opus first.
  function preferCodecs(transceiver, kind) {
    if (!transceiver || typeof transceiver.setCodecPreferences !== 'function') return;
    if (typeof RTCRtpSender === 'undefined' || typeof RTCRtpSender.getCapabilities !== 'function') return;
    var caps = RTCRtpSender.getCapabilities(kind);
    if (!caps || !caps.codecs || !caps.codecs.length) return;
    function rank(c) {
      var mime = String(c.mimeType || '').toLowerCase();
      var fmtp = String(c.sdpFmtpLine || '').toLowerCase();
      if (kind === 'video') {
        if (mime === 'video/h264' && /packetization-mode=1/.test(fmtp)) {
          if (/profile-level-id=42e0/.test(fmtp)) return 0;
          if (/profile-level-id=42/.test(fmtp)) return 1;
          return 2;
        }
        if (mime === 'video/vp8') return 3;
        return 10;
      }
      return mime === 'audio/opus' ? 0 : 10;
    }
    var sorted = caps.codecs.map(function (c, i) { return { c: c, r: rank(c), i: i }; })
      .sort(function (a, b) { return a.r - b.r || a.i - b.i; })
      .map(function (x) { return x.c; });
    try { transceiver.setCodecPreferences(sorted); } catch (e) { /* keep browser default */ }
  }

  // Lectures: slides must stay legible, so the encoder keeps the camera's resolution
  // (720p) and lowers its frame rate when the link is short; the server's congestion
  // feedback (transport-cc) lets the bitrate ramp to this ceiling within seconds.
  var MAX_VIDEO_BITRATE = 2500000;
  async function setForLectures(sender) {
    if (!sender || typeof sender.getParameters !== 'function') return;
    try {
      var p = sender.getParameters();
      p.degradationPreference = 'maintain-resolution';
      if (p.encodings && p.encodings.length) p.encodings[0].maxBitrate = MAX_VIDEO_BITRATE;
      await sender.setParameters(p);
    } catch (e) { /* keep the browser's defaults */ }
  }

  function mediaErrorText(e) {
    var name = e && e.name;
    if (name === 'NotAllowedError' || name === 'PermissionDeniedError' || name === 'SecurityError')
      return '没有获得摄像头/麦克风权限，请在浏览器中允许访问后重试。';
    if (name === 'NotFoundError' || name === 'DevicesNotFoundError')
      return '未找到摄像头或麦克风，请检查设备连接。';
    if (name === 'NotReadableError' || name === 'TrackStartError')
      return '摄像头或麦克风正被其他程序占用，请关闭后重试。';
    if (name === 'OverconstrainedError')
      return '摄像头不支持所需的画面参数。';
    return '无法打开摄像头/麦克风：' + errMsg(e);
  }

  var HTTP_REASONS = {
    400: '请求无效',
    401: '推流密钥错误',
    403: '无权在该频道推流',
    404: '频道不存在',
    409: '该频道已在直播中（可能有其他设备正在推流，或上一场刚断开，请稍候再试）',
    413: '请求内容过大',
    415: '请求格式不受支持'
  };
  function httpErrorText(status, text) {
    var base = HTTP_REASONS[status] || (status >= 500 ? '服务器内部错误' : '推流失败');
    var extra = text && text !== base ? '：' + text : '';
    return base + '（HTTP ' + status + extra + '）';
  }

  // ---------- elements & state ----------
  var form = $('form');
  var keyInput = $('key');
  var showKey = $('show-key');
  var rememberKey = $('remember-key');
  var titleInput = $('title');
  var startBtn = $('start');
  var stopBtn = $('stop');
  var preview = $('preview');
  var placeholder = $('placeholder');
  var onair = $('onair');
  var statusEl = $('status');
  var detailEl = $('detail');
  var statsEl = $('stats');
  var headingEl = $('heading');
  var stationEl = $('station');
  var shareEl = $('share');

  var channel = channelFromPath('publish');
  var params = new URLSearchParams(location.search);
  var STORE_KEY = 'feiyan.streamKey.' + channel;
  var WHIP_URL = '/whip/' + encodeURIComponent(channel);
  var INFO_URL = '/api/channels/' + encodeURIComponent(channel);

  var LABELS = {
    idle: '未开始',
    media: '正在打开摄像头和麦克风',
    connecting: '连接中',
    live: '直播中',
    reconnecting: '连接断开，正在重连',
    stopping: '正在停止',
    stopped: '已停止',
    error: '出错'
  };

  var S = {
    running: false,     // operator wants to be live
    stream: null,       // local MediaStream
    pc: null,
    resource: null,     // absolute WHIP session URL
    gen: 0,
    status: 'idle',
    key: '',
    title: '',
    attempt: 0,
    retryTimer: null,
    discTimer: null,
    connectTimer: null,
    lastBytes: 0,
    lastTs: 0
  };

  // The key is kept in this browser only while 记住密钥 is ticked: stored once a publish
  // with it succeeds, removed as soon as the box is unticked. It never comes from the URL.
  function loadKey() {
    try { return localStorage.getItem(STORE_KEY) || ''; } catch (e) { return ''; }
  }
  function saveKey(k) {
    try { localStorage.setItem(STORE_KEY, k); } catch (e) { /* private mode */ }
  }
  function forgetKey() {
    try { localStorage.removeItem(STORE_KEY); } catch (e) { /* private mode */ }
  }

  function updateControls() {
    var busy = S.running || S.status === 'stopping';
    startBtn.disabled = busy;
    stopBtn.disabled = !S.running;
    keyInput.disabled = busy;
    titleInput.disabled = busy;
    onair.hidden = S.status !== 'live';
    placeholder.hidden = !!S.stream;
  }

  function setStatus(status, detail) {
    S.status = status;
    statusEl.textContent = LABELS[status] || status;
    detailEl.textContent = detail || '';
    document.body.setAttribute('data-status', status);
    updateControls();
  }

  // ---------- media ----------
  function stopMedia() {
    var s = S.stream;
    S.stream = null;
    if (s) s.getTracks().forEach(function (t) { try { t.stop(); } catch (e) { /* ignore */ } });
    preview.srcObject = null;
    updateControls();
  }

  // ---------- WHIP session ----------
  function clearTimers() {
    clearTimeout(S.discTimer); S.discTimer = null;
    clearTimeout(S.connectTimer); S.connectTimer = null;
  }

  function teardownPc(sendDelete) {
    S.gen++;
    clearTimers();
    var pc = S.pc;
    S.pc = null;
    if (pc) { try { pc.close(); } catch (e) { /* ignore */ } }
    var r = S.resource;
    S.resource = null;
    if (r && sendDelete) deleteResource(r, false);
  }

  // Unrecoverable: release everything and show the reason.
  function fatal(msg) {
    S.running = false;
    clearTimeout(S.retryTimer); S.retryTimer = null;
    teardownPc(true);
    stopMedia();
    statsEl.textContent = '';
    setStatus('error', msg);
  }

  // Connection lost while live: re-publish with backoff (1, 2, 4 … 30 s).
  function scheduleRetry(reason) {
    if (!S.running) return;
    teardownPc(true);
    var delay = Math.min(30, Math.pow(2, S.attempt));
    S.attempt = Math.min(S.attempt + 1, 10);
    setStatus('reconnecting', reason + '，' + delay + ' 秒后自动重新推流（第 ' + S.attempt + ' 次）');
    clearTimeout(S.retryTimer);
    S.retryTimer = setTimeout(function () {
      S.retryTimer = null;
      if (S.running) negotiate(true);
    }, delay * 1000);
  }

  function onPcState(pc, gen) {
    if (gen !== S.gen || !S.running) return;
    var st = pcState(pc);
    if (st === 'connected') {
      clearTimers();
      S.attempt = 0;
      if (S.status !== 'live') setStatus('live', '正在向服务器发送画面和声音');
    } else if (st === 'disconnected') {
      if (S.status === 'live') detailEl.textContent = '网络不稳定，正在恢复…';
      if (!S.discTimer) {
        S.discTimer = setTimeout(function () {
          S.discTimer = null;
          if (gen === S.gen && pcState(pc) !== 'connected') scheduleRetry('网络连接中断');
        }, 5000);
      }
    } else if (st === 'failed' || st === 'closed') {
      scheduleRetry('连接失败');
    }
  }

  async function negotiate(isRetry) {
    clearTimeout(S.retryTimer); S.retryTimer = null;
    teardownPc(true);
    var gen = ++S.gen;
    var stream = S.stream;
    if (!S.running || !stream) return;
    if (!isRetry) setStatus('connecting', '正在连接服务器…');
    else detailEl.textContent = '正在重新推流…';

    var pc;
    try {
      pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
    } catch (e) {
      fatal('创建连接失败：' + errMsg(e));
      return;
    }
    S.pc = pc;

    var audioTrack = stream.getAudioTracks()[0];
    var videoTrack = stream.getVideoTracks()[0];
    if (audioTrack) preferCodecs(pc.addTransceiver(audioTrack, { direction: 'sendonly', streams: [stream] }), 'audio');
    if (videoTrack) {
      var video = pc.addTransceiver(videoTrack, {
        direction: 'sendonly', streams: [stream], sendEncodings: [{ maxBitrate: MAX_VIDEO_BITRATE }]
      });
      preferCodecs(video, 'video');
      await setForLectures(video.sender);
    }
    var onState = function () { onPcState(pc, gen); };
    pc.addEventListener('connectionstatechange', onState);
    pc.addEventListener('iceconnectionstatechange', onState);

    var url = WHIP_URL + (S.title ? '?title=' + encodeURIComponent(S.title) : '');
    var res;
    try {
      var offer = await pc.createOffer();
      if (gen !== S.gen) return;
      await pc.setLocalDescription(offer);
      await waitIceGathering(pc, 2000);
      if (gen !== S.gen) return;
      res = await fetchWithTimeout(url, {
        method: 'POST',
        headers: { 'Content-Type': 'application/sdp', 'Authorization': 'Bearer ' + S.key },
        body: pc.localDescription.sdp,
        cache: 'no-store'
      }, 15000);
    } catch (e) {
      if (gen !== S.gen) return;
      var netMsg = '无法连接服务器（' + errMsg(e) + '）';
      if (isRetry) scheduleRetry(netMsg); else fatal(netMsg);
      return;
    }

    var loc = res.headers.get('Location');
    var resourceUrl = loc ? new URL(loc, res.url || location.href).href : null;
    if (gen !== S.gen) {
      if (resourceUrl && res.status === 201) deleteResource(resourceUrl, false);
      return;
    }

    if (res.status !== 201 && res.status !== 200) {
      var text = shorten(await safeText(res));
      if (gen !== S.gen) return;
      var msg = httpErrorText(res.status, text);
      // While re-publishing, a 409 usually means the old session is still
      // being reaped; 5xx may be transient. Keep trying in those cases.
      if (isRetry && (res.status === 409 || res.status >= 500)) scheduleRetry(msg);
      else fatal(msg);
      return;
    }

    S.resource = resourceUrl;
    var answer = await safeText(res);
    if (gen !== S.gen) return;
    try {
      await pc.setRemoteDescription({ type: 'answer', sdp: answer });
    } catch (e) {
      if (gen !== S.gen) return;
      fatal('服务器应答无效（' + errMsg(e) + '）');
      return;
    }
    if (gen !== S.gen) return;
    if (rememberKey.checked) saveKey(S.key); else forgetKey();
    if (pcState(pc) !== 'connected') detailEl.textContent = '服务器已接受，正在建立媒体连接…';
    S.connectTimer = setTimeout(function () {
      S.connectTimer = null;
      if (gen === S.gen && pcState(pc) !== 'connected') scheduleRetry('媒体连接超时');
    }, 20000);
  }

  async function start() {
    if (S.running || S.status === 'stopping') return;
    var key = keyInput.value.trim();
    var title = titleInput.value.trim();
    if (!channel) { setStatus('error', '地址中缺少频道编号（应为 /publish/频道编号）。'); return; }
    if (!key) { setStatus('error', '请输入推流密钥。'); keyInput.focus(); return; }
    if (!navigator.mediaDevices || typeof navigator.mediaDevices.getUserMedia !== 'function') {
      setStatus('error', '无法访问摄像头：浏览器不支持，或页面不是通过 HTTPS（或 localhost）打开的。');
      return;
    }
    if (typeof RTCPeerConnection === 'undefined') {
      setStatus('error', '当前浏览器不支持 WebRTC，请使用新版 Chrome、Edge、Firefox 或 Safari。');
      return;
    }

    S.running = true;
    S.attempt = 0;
    S.key = key;
    S.title = title;
    setStatus('media', '请在浏览器弹出的提示中允许使用摄像头和麦克风');

    var stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { width: 1280, height: 720 }, audio: true });
    } catch (e) {
      if (!S.running) return;
      S.running = false;
      setStatus('error', mediaErrorText(e));
      return;
    }
    if (!S.running) { // stopped while waiting for permission
      stream.getTracks().forEach(function (t) { t.stop(); });
      return;
    }
    S.stream = stream;
    preview.srcObject = stream;
    var p = preview.play();
    if (p && typeof p.catch === 'function') p.catch(noop);
    updateControls();
    stream.getTracks().forEach(function (t) {
      t.addEventListener('ended', function () {
        if (S.running && S.stream === stream) stop('摄像头或麦克风已断开，直播已停止。');
      });
    });
    await negotiate(false);
  }

  async function stop(errorReason) {
    if (!S.running) return;
    S.running = false;
    clearTimeout(S.retryTimer); S.retryTimer = null;
    var r = S.resource;
    S.resource = null;
    teardownPc(false);
    stopMedia();
    statsEl.textContent = '';
    setStatus('stopping', '正在通知服务器结束直播…');
    var genAfter = S.gen;
    if (r) {
      try { await fetchWithTimeout(r, { method: 'DELETE' }, 5000); } catch (e) { /* ignore */ }
    }
    if (S.gen !== genAfter || S.running) return;
    if (errorReason) setStatus('error', errorReason);
    else setStatus('stopped', '直播已结束。');
  }

  form.addEventListener('submit', function (ev) {
    ev.preventDefault();
    start();
  });
  stopBtn.addEventListener('click', function () { stop(); });
  showKey.addEventListener('change', function () {
    keyInput.type = showKey.checked ? 'text' : 'password';
  });
  rememberKey.addEventListener('change', function () {
    if (!rememberKey.checked) forgetKey();
    else if (S.status === 'live' && S.key) saveKey(S.key);
  });

  // ---------- stats (shown under the form) ----------
  async function collect() {
    var pc = S.pc;
    var out = {
      state: pc ? pcState(pc) : 'idle',
      framesEncoded: 0, packetsSent: 0, audioPacketsSent: 0,
      bytesSent: 0, width: 0, height: 0, fps: 0, videoCodec: '', audioCodec: ''
    };
    if (!pc) return out;
    try {
      var report = await pc.getStats();
      var codecs = {};
      report.forEach(function (r) { if (r.type === 'codec') codecs[r.id] = r.mimeType || ''; });
      report.forEach(function (r) {
        if (r.type !== 'outbound-rtp' || r.isRemote) return;
        var kind = r.kind || r.mediaType;
        out.bytesSent += r.bytesSent || 0;
        if (kind === 'video') {
          out.framesEncoded += r.framesEncoded || 0;
          out.packetsSent += r.packetsSent || 0;
          if (r.frameWidth) { out.width = r.frameWidth; out.height = r.frameHeight || 0; }
          if (r.framesPerSecond) out.fps = Math.round(r.framesPerSecond);
          if (r.codecId && codecs[r.codecId]) out.videoCodec = codecs[r.codecId].replace(/^video\//i, '');
        } else if (kind === 'audio') {
          out.audioPacketsSent += r.packetsSent || 0;
          if (r.codecId && codecs[r.codecId]) out.audioCodec = codecs[r.codecId].replace(/^audio\//i, '');
        }
      });
    } catch (e) { /* pc closed meanwhile */ }
    return out;
  }

  setInterval(function () {
    if (!S.pc || S.status !== 'live') { S.lastTs = 0; return; }
    collect().then(function (s) {
      if (S.status !== 'live') return;
      var now = Date.now();
      var parts = [];
      if (s.width) parts.push('分辨率 ' + s.width + '×' + s.height + (s.fps ? ' · ' + s.fps + ' 帧/秒' : ''));
      if (S.lastTs && s.bytesSent >= S.lastBytes) {
        parts.push('码率 ' + Math.round((s.bytesSent - S.lastBytes) * 8 / (now - S.lastTs)) + ' kbps');
      }
      if (s.videoCodec || s.audioCodec) parts.push('编码 ' + [s.videoCodec, s.audioCodec].filter(Boolean).join(' / '));
      S.lastBytes = s.bytesSent;
      S.lastTs = now;
      statsEl.textContent = parts.join(' · ');
    });
  }, 1000);

  // ---------- channel info ----------
  function pollInfo() {
    fetch(INFO_URL, { cache: 'no-store', headers: { Accept: 'application/json' } })
      .then(function (res) {
        if (res.status === 404) {
          stationEl.textContent = '频道编号 ' + channel + ' 不存在，请核对推流地址。';
          return;
        }
        if (!res.ok) return;
        return res.json().then(function (info) {
          if (!info) return;
          var parts = [];
          if (info.station) parts.push(String(info.station));
          parts.push('频道编号 ' + channel);
          if (info.live) {
            var v = Number(info.viewers);
            parts.push('在线观众 ' + (isFinite(v) && v > 0 ? Math.floor(v) : 0) + ' 人');
          }
          stationEl.textContent = parts.join(' · ');
          if (info.station) {
            headingEl.textContent = '推流 · ' + info.station;
            document.title = '飞燕 · 推流 · ' + info.station;
          }
        });
      })
      .catch(noop)
      .then(function () { setTimeout(pollInfo, 5000); });
  }

  // ---------- lifecycle ----------
  window.addEventListener('pagehide', function () {
    if (!S.running && !S.resource) return;
    var r = S.resource;
    S.resource = null;
    if (r) deleteResource(r, true);
    S.running = false;
    clearTimeout(S.retryTimer); S.retryTimer = null;
    teardownPc(false);
    stopMedia();
    setStatus('stopped', '页面已离开，直播已结束。');
  });

  // ---------- init ----------
  if (channel) {
    headingEl.textContent = '推流 · ' + channel;
    stationEl.textContent = '频道编号 ' + channel;
    var watchUrl = location.origin + '/watch/' + encodeURIComponent(channel);
    shareEl.textContent = '观看地址：';
    var a = document.createElement('a');
    a.href = watchUrl;
    a.target = '_blank';
    a.rel = 'noopener';
    a.textContent = watchUrl;
    shareEl.appendChild(a);
    pollInfo();
  } else {
    setStatus('error', '地址中缺少频道编号（应为 /publish/频道编号）。');
  }

  keyInput.value = loadKey();
  rememberKey.checked = !!keyInput.value;
  if (params.has('title')) titleInput.value = params.get('title');
  updateControls();
})();

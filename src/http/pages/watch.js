// feiyan watch page (/watch/{channel}): WHEP player, with HLS as the fallback when WebRTC
// cannot connect or play here. Served at /assets/watch.js.
//
// In a cluster the page goes where there is room: a node at its capacity answers the WHEP
// POST with 307 and names a node with room in /api/channels/{c} (`watch_on`); the page
// then opens itself on that node (same path), so everything it fetches stays same-origin
// there (the CSP's connect-src 'self' holds). When this node stops answering (it died),
// the page opens itself on another node it learnt of (`nodes` in the channel info).
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
  var deviceId = window.Feiyan.deviceId;
  var hlsUrl = window.Feiyan.hlsUrl;
  var playHls = window.Feiyan.playHls;


  // ---------- elements & state ----------
  var video = $('video');
  var overlay = $('overlay');
  var overlayText = $('overlay-text');
  var playBtn = $('play-btn');
  var unmuteBtn = $('unmute');
  var fsBtn = $('fullscreen');
  var statusEl = $('status');
  var detailEl = $('detail');
  var titleEl = embedded ? null : $('title');
  var stationEl = embedded ? null : $('station');
  var viewersEl = $('viewers');

  // On /watch/{channel} the page is the player; a resident page (/s/{channel}, /e/{id})
  // that embeds it names the channel in its body's data-channel and has no title, station
  // or replay list of ours (its own headings stay its own).
  var embedded = document.body.hasAttribute('data-channel');
  var channel = document.body.getAttribute('data-channel') || channelFromPath('watch');
  var params = new URLSearchParams(location.search);
  // The rendition asked for (?quality= in the page address, else the last choice here);
  // '' is the source. The server lists what a channel offers in /api/channels/{c}.
  var quality = params.get('quality') || '';
  if (!quality) {
    try { quality = localStorage.getItem('feiyan.quality') || ''; } catch (e) { quality = ''; }
  }
  var qualityBox = $('quality-box');
  var qualitySelect = $('quality');
  function whepUrl() {
    var q = [];
    // The server's device id (cookie fy_dev), so a resident who reconnects counts once.
    var vid = deviceId();
    if (vid) q.push('vid=' + encodeURIComponent(vid));
    if (quality) q.push('quality=' + encodeURIComponent(quality));
    return '/whep/' + encodeURIComponent(channel) + (q.length ? '?' + q.join('&') : '');
  }
  var INFO_URL = '/api/channels/' + encodeURIComponent(channel);
  // Whether the server is ICE-lite (`ice_lite` in the channel info): then the offer goes
  // out at once, without waiting for ICE gathering; the server answers with its own
  // candidates and learns ours from our connectivity checks. Unknown (the first info
  // request has not answered, or failed): wait for gathering, as a full ICE agent needs.
  var iceLite = null;
  var iceLiteWaiters = [];
  function setIceLite(value) {
    iceLite = value;
    iceLiteWaiters.splice(0).forEach(function (resolve) { resolve(value); });
  }
  function serverIsIceLite() {
    if (iceLite !== null) return Promise.resolve(iceLite);
    return new Promise(function (resolve) {
      iceLiteWaiters.push(resolve);
      setTimeout(function () { resolve(false); }, 2000); // info slow: gather, as before
    });
  }

  var OFFLINE_RETRY_MS = 5000;
  var STALL_MS = 12000;
  // WebRTC that has not connected and decoded video this long after the start goes over
  // to HLS (UDP blocked, an unreachable advertised address, no common codec).
  var WEBRTC_GRACE_MS = 4000;

  var LABELS = {
    connecting: '连接中',
    playing: '播放中',
    offline: '未开播',
    reconnecting: '连接断开，自动重连',
    error: '无法播放'
  };

  var S = {
    pc: null,           // current RTCPeerConnection
    resource: null,     // absolute WHEP session URL (from Location)
    gen: 0,             // bumps on every teardown; stale async work checks it
    status: 'connecting',
    attempt: 0,         // reconnect backoff exponent
    retryTimer: null,
    discTimer: null,
    connectTimer: null,
    lastCount: -1,
    lastProgress: 0,
    autoplayBlocked: false,
    mode: 'webrtc',     // 'webrtc', or 'hls' once WebRTC did not work here (for good)
    hls: null,          // the HLS player ({engine, destroy}) in HLS mode
    fallbackTimer: null,
    netFails: 0,        // requests in a row this node did not answer (cluster failover)
    nodes: [],          // the cluster's other nodes (base URLs), from the channel info
    watchOn: null       // a node with room when this one is full (`watch_on`)
  };

  // ---------- cluster: the node with room, another node when this one dies ----------
  // Opens this page on `base` (same path and query). The hops travel in the address
  // (#fyhop=n, cleared once it plays), so nodes that keep sending it on cannot bounce it
  // for ever.
  var hopMatch = /(?:^#|&)fyhop=(\d+)/.exec(location.hash);
  var hops = hopMatch ? parseInt(hopMatch[1], 10) : 0;
  function goToNode(base, why) {
    base = String(base || '').replace(/\/+$/, '');
    if (!/^https?:\/\//.test(base) || base === location.origin || hops >= 4) return false;
    if (window.console) console.info('feiyan: watching on ' + base + ' (' + why + ')');
    setStatus('connecting', '正在切换到其他服务器…', '正在切换到其他服务器…');
    teardown(true);
    location.replace(base + location.pathname + location.search + '#fyhop=' + (hops + 1));
    return true;
  }
  function clearHops() {
    if (!hops) return;
    hops = 0;
    try { history.replaceState(null, '', location.pathname + location.search); } catch (e) { /* ignore */ }
  }

  // This node did not answer (a network error): after two in a row, another node.
  function nodeSilent() {
    S.netFails++;
    if (S.netFails < 2 || !S.nodes.length) return false;
    return goToNode(S.nodes[Math.floor(Math.random() * S.nodes.length)], 'this node does not answer');
  }

  // Where a 307 from a full node leads: the node the channel info names.
  function followFullNode() {
    return fetchWithTimeout(INFO_URL, { cache: 'no-store', headers: { Accept: 'application/json' } }, 5000)
      .then(function (res) { return res.ok ? res.json() : null; })
      .then(function (info) {
        var to = info && info.watch_on;
        if (!to && info && Array.isArray(info.nodes) && info.nodes.length) to = info.nodes[0];
        return to ? goToNode(to, 'this node is full') : false;
      }, function () { return false; });
  }

  function setStatus(status, detail, overlayMsg) {
    S.status = status;
    statusEl.textContent = (LABELS[status] || status) + (S.mode === 'hls' ? ' · HLS' : '');
    document.body.setAttribute('data-status', status);
    detailEl.textContent = detail || '';
    if (status === 'playing') clearHops();
    if (status === 'playing' && !S.autoplayBlocked) {
      overlay.hidden = true;
    } else {
      overlay.hidden = false;
      overlayText.textContent = S.autoplayBlocked && status === 'playing'
        ? '浏览器阻止了自动播放'
        : (overlayMsg || LABELS[status] || '');
    }
  }

  // ---------- playback ----------
  function tryPlay() {
    var p;
    try { p = video.play(); } catch (e) { return; }
    if (!p || typeof p.then !== 'function') return;
    p.then(function () {
      S.autoplayBlocked = false;
      playBtn.hidden = true;
      if (S.status === 'playing') overlay.hidden = true;
    }, function (e) {
      if (e && e.name === 'NotAllowedError' && !video.muted) {
        // Sound needs a gesture here: play muted; 取消静音 stays visible.
        video.muted = true;
        updateMuteButton();
        tryPlay();
        return;
      }
      if (e && e.name === 'NotAllowedError') {
        S.autoplayBlocked = true;
        playBtn.hidden = false;
        overlay.hidden = false;
        overlayText.textContent = '浏览器阻止了自动播放';
      }
      // AbortError (source replaced during reconnect) is expected; ignore.
    });
  }

  function updateMuteButton() {
    unmuteBtn.textContent = video.muted ? '取消静音' : '静音';
  }

  unmuteBtn.addEventListener('click', function () {
    video.muted = !video.muted;
    if (!video.muted) video.volume = 1;
    updateMuteButton();
    tryPlay();
  });
  video.addEventListener('volumechange', updateMuteButton);
  playBtn.addEventListener('click', tryPlay);

  window.Feiyan.fullscreenButton(fsBtn, $('player'), video);

  // ---------- WHEP session ----------
  function clearTimers() {
    clearTimeout(S.discTimer); S.discTimer = null;
    clearTimeout(S.connectTimer); S.connectTimer = null;
    clearTimeout(S.fallbackTimer); S.fallbackTimer = null;
  }

  function teardown(sendDelete) {
    S.gen++;
    clearTimers();
    var pc = S.pc;
    S.pc = null;
    if (pc) {
      pc.ontrack = null;
      try { pc.close(); } catch (e) { /* ignore */ }
    }
    var r = S.resource;
    S.resource = null;
    if (r && sendDelete) deleteResource(r, false);
    var hls = S.hls;
    S.hls = null;
    if (hls) hls.destroy();
  }

  function scheduleConnect(ms) {
    clearTimeout(S.retryTimer);
    S.retryTimer = setTimeout(function () { S.retryTimer = null; connect(); }, ms);
  }

  // Failure / disconnect: reconnect with exponential backoff (1, 2, 4 … 30 s).
  function fail(reason) {
    teardown(true);
    var delay = Math.min(30, Math.pow(2, S.attempt));
    S.attempt = Math.min(S.attempt + 1, 10);
    setStatus('reconnecting',
      (reason ? reason + '，' : '') + delay + ' 秒后自动重连…',
      '连接断开，' + delay + ' 秒后自动重连');
    scheduleConnect(delay * 1000);
  }

  // Channel not live: wait and retry every 5 s.
  function goOffline() {
    teardown(true);
    S.attempt = 0;
    setStatus('offline', '该频道当前未直播，开播后将自动播放（每 5 秒检查一次）', '该频道当前未直播');
    scheduleConnect(OFFLINE_RETRY_MS);
  }

  function onPcState(pc, gen) {
    if (gen !== S.gen) return;
    var st = pcState(pc);
    if (st === 'connected') {
      clearTimers();
      if (S.status !== 'playing') {
        S.attempt = 0;
        S.lastCount = -1;
        S.lastProgress = Date.now();
        setStatus('playing');
        tryPlay();
      } else {
        detailEl.textContent = '';
      }
    } else if (st === 'disconnected') {
      if (S.status === 'playing') detailEl.textContent = '网络不稳定，正在恢复…';
      if (!S.discTimer) {
        S.discTimer = setTimeout(function () {
          S.discTimer = null;
          if (gen === S.gen && pcState(pc) !== 'connected') fail('网络连接中断');
        }, 5000);
      }
    } else if (st === 'failed' || st === 'closed') {
      fail('连接失败');
    }
  }

  // ---------- HLS (the fallback) ----------
  // From now on this page plays HLS: natively where the browser can, else with hls.js.
  function useHls(why) {
    if (S.mode !== 'hls') {
      S.mode = 'hls';
      qualityBox.hidden = true; // HLS picks its rendition itself
      if (window.console) console.info('feiyan: playing HLS (' + why + ')');
    }
    connect();
  }

  function connectHls(gen) {
    if (S.status !== 'reconnecting' && S.status !== 'offline') setStatus('connecting', '', '连接中…');
    var player = playHls(video, hlsUrl(channel), {
      ready: function () {
        if (gen !== S.gen) return;
        S.connectTimer = setTimeout(function () {
          S.connectTimer = null;
          if (gen === S.gen && S.status !== 'playing') fail('连接超时');
        }, 20000);
        tryPlay();
      },
      offline: function () { if (gen === S.gen) goOffline(); },
      error: function (msg) { if (gen === S.gen) fail(msg); }
    });
    S.hls = player;
  }

  video.addEventListener('playing', function () {
    if (S.mode !== 'hls' || !S.hls || S.status === 'playing') return;
    clearTimers();
    S.attempt = 0;
    S.lastCount = -1;
    S.lastProgress = Date.now();
    setStatus('playing');
  });

  // WebRTC gets WEBRTC_GRACE_MS to connect and show a decoded frame; then HLS.
  function armFallback(pc, gen) {
    S.fallbackTimer = setTimeout(function () {
      S.fallbackTimer = null;
      if (gen !== S.gen || !S.resource) return; // torn down, or no session (offline, error)
      collectStats().then(function (s) {
        if (gen !== S.gen) return;
        if (pcState(pc) !== 'connected' || s.framesDecoded === 0) useHls('WebRTC did not play within ' + WEBRTC_GRACE_MS + ' ms');
      });
    }, WEBRTC_GRACE_MS);
  }

  async function connect() {
    clearTimeout(S.retryTimer);
    S.retryTimer = null;
    teardown(true);
    var gen = ++S.gen;

    if (!channel) {
      setStatus('error', '地址中缺少频道编号，请从直播列表进入。', '无效的频道地址');
      return;
    }
    if (S.mode === 'hls') {
      connectHls(gen);
      return;
    }
    if (typeof RTCPeerConnection === 'undefined') {
      useHls('no RTCPeerConnection');
      return;
    }
    // Keep "未开播" / "连接断开，自动重连" visible while a retry is in flight.
    if (S.status !== 'reconnecting' && S.status !== 'offline') setStatus('connecting', '', '连接中…');

    var pc;
    try {
      pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
    } catch (e) {
      fail('创建连接失败：' + errMsg(e));
      return;
    }
    S.pc = pc;
    armFallback(pc, gen);

    var stream = new MediaStream();
    pc.addTransceiver('audio', { direction: 'recvonly' });
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.ontrack = function (ev) {
      if (gen !== S.gen) return;
      if (stream.getTracks().indexOf(ev.track) < 0) stream.addTrack(ev.track);
      if (video.srcObject !== stream) video.srcObject = stream;
      tryPlay();
    };
    var onState = function () { onPcState(pc, gen); };
    pc.addEventListener('connectionstatechange', onState);
    pc.addEventListener('iceconnectionstatechange', onState);

    var res;
    try {
      var offer = await pc.createOffer();
      if (gen !== S.gen) return;
      await pc.setLocalDescription(offer);
      if (!(await serverIsIceLite())) await waitIceGathering(pc, 2000);
      if (gen !== S.gen) return;
      res = await fetchWithTimeout(whepUrl(), {
        method: 'POST',
        headers: { 'Content-Type': 'application/sdp' },
        body: pc.localDescription.sdp,
        cache: 'no-store',
        // A full node's 307 names another node: the page goes there (see goToNode).
        redirect: 'manual'
      }, 15000);
    } catch (e) {
      if (gen !== S.gen) return;
      if (nodeSilent()) return;
      fail('网络错误（' + errMsg(e) + '）');
      return;
    }
    S.netFails = 0;
    if (res.type === 'opaqueredirect' || res.status === 307) {
      var moved = await followFullNode();
      if (gen !== S.gen || moved) return;
      fail('服务器已满');
      return;
    }

    var loc = res.headers.get('Location');
    var resourceUrl = loc ? new URL(loc, res.url || location.href).href : null;
    if (gen !== S.gen) {
      if (resourceUrl && res.status === 201) deleteResource(resourceUrl, false);
      return;
    }

    if (res.status === 404) {
      await safeText(res);
      if (gen !== S.gen) return;
      goOffline();
      return;
    }
    if (res.status === 406) {
      // No video format in common with this browser: HLS carries H.264 it can play.
      await safeText(res);
      if (gen !== S.gen) return;
      useHls('WHEP answered 406');
      return;
    }
    if (res.status === 400 && quality) {
      // The chosen rendition is not offered (any more): fall back to the source.
      await safeText(res);
      if (gen !== S.gen) return;
      quality = '';
      connect();
      return;
    }
    var retryAfter = parseInt(res.headers.get('Retry-After') || '', 10);
    if ((res.status === 429 || res.status === 503) && retryAfter > 0 && retryAfter <= 60) {
      // Many viewers arriving at once (one NAT, a lecture starting): come back when the
      // server says, spread over two more seconds so an audience turned away together
      // does not return together.
      await safeText(res);
      if (gen !== S.gen) return;
      teardown(true);
      var wait = retryAfter * 1000 + Math.floor(Math.random() * 2000);
      setStatus('reconnecting', '观看人数较多，' + Math.ceil(wait / 1000) + ' 秒后自动重试…',
        '观看人数较多，稍后自动重试');
      scheduleConnect(wait);
      return;
    }
    if (res.status !== 201 && res.status !== 200) {
      var errText = shorten(await safeText(res));
      if (gen !== S.gen) return;
      fail('服务器返回 ' + res.status + (errText ? '：' + errText : ''));
      return;
    }

    S.resource = resourceUrl;
    var answer = await safeText(res);
    if (gen !== S.gen) return;
    try {
      await pc.setRemoteDescription({ type: 'answer', sdp: answer });
    } catch (e) {
      if (gen !== S.gen) return;
      fail('服务器应答无效（' + errMsg(e) + '）');
      return;
    }
    if (gen !== S.gen) return;
    S.connectTimer = setTimeout(function () {
      S.connectTimer = null;
      if (gen === S.gen && pcState(pc) !== 'connected') fail('连接超时');
    }, 20000);
  }

  // ---------- stats (for the stall watchdog) ----------
  async function collectStats() {
    var pc = S.pc;
    var out = { framesDecoded: 0, audioPacketsReceived: 0 };
    if (!pc) return out;
    try {
      var report = await pc.getStats();
      report.forEach(function (r) {
        if (r.type !== 'inbound-rtp' || r.isRemote) return;
        var kind = r.kind || r.mediaType;
        if (kind === 'video') out.framesDecoded += r.framesDecoded || 0;
        else if (kind === 'audio') out.audioPacketsReceived += r.packetsReceived || 0;
      });
    } catch (e) { /* pc closed meanwhile */ }
    return out;
  }

  // Stall watchdog: connected but no new frames / audio packets for a while.
  setInterval(function () {
    if (S.status !== 'playing' || !(S.pc || S.hls)) return;
    if (S.hls && video.paused) return; // waiting for 点击播放, not stalled
    var gen = S.gen;
    var progress = S.hls
      ? Promise.resolve(Math.floor(video.currentTime * 10))
      : collectStats().then(function (s) { return s.framesDecoded + s.audioPacketsReceived; });
    progress.then(function (count) {
      if (gen !== S.gen || S.status !== 'playing') return;
      var now = Date.now();
      if (count !== S.lastCount) {
        S.lastCount = count;
        S.lastProgress = now;
      } else if (now - S.lastProgress > STALL_MS) {
        fail('长时间未收到音视频数据');
      }
    });
  }, 2000);

  // ---------- channel info (title, viewers) ----------
  function pollInfo() {
    var genAtStart = S.gen;
    fetch(INFO_URL, { cache: 'no-store', headers: { Accept: 'application/json' } })
      .then(function (res) {
        S.netFails = 0;
        if (!res.ok && iceLite === null) setIceLite(false);
        if (res.status === 404) {
          showReplays(false);
          viewersEl.textContent = '';
          if (embedded) return;
          titleEl.textContent = '频道不存在';
          stationEl.textContent = '频道编号：' + channel;
          document.title = '飞燕 · 观看直播';
          return;
        }
        if (!res.ok) return;
        return res.json().then(function (info) {
          if (!info) return;
          if (iceLite === null) setIceLite(info.ice_lite === true);
          if (Array.isArray(info.nodes)) S.nodes = info.nodes.filter(function (n) { return typeof n === 'string'; });
          S.watchOn = typeof info.watch_on === 'string' ? info.watch_on : null;
          // Full here and not playing yet: watch where there is room.
          if (S.watchOn && info.live && S.status !== 'playing' && goToNode(S.watchOn, 'this node is full')) return;
          var title = info.title ? String(info.title) : (info.live ? '直播中' : '暂未开播');
          var v = Number(info.viewers);
          viewersEl.textContent = info.live ? '在线 ' + (isFinite(v) && v > 0 ? Math.floor(v) : 0) + ' 人' : '';
          if (!embedded) {
            titleEl.textContent = title;
            stationEl.textContent = info.station ? String(info.station) : '频道编号：' + channel;
            document.title = (info.title ? info.title + ' · ' : '') + '飞燕 · 直播';
          }
          showQualities(Array.isArray(info.qualities) ? info.qualities : []);
          showReplays(!info.live);
          if (genAtStart !== S.gen) return; // a (re)connect happened meanwhile
          if (!info.live && S.status === 'playing') goOffline();
          else if (info.live && S.status === 'offline') connect();
        });
      })
      .catch(function () {
        // No answer at all: this node may be gone; another one plays on.
        if (S.status !== 'playing' || S.mode === 'hls') nodeSilent();
      })
      .then(function () {
        if (iceLite === null) setIceLite(false); // no usable answer: wait for gathering
        setTimeout(pollInfo, 5000);
      });
  }

  // ---------- the station's replays (while the channel is not live) ----------
  var REPLAYS_URL = '/api/recordings?station=' + encodeURIComponent(channel);
  var REPLAYS_SHOWN = 10;
  // A lecture that just ended is listed within seconds: look often for a minute after
  // the channel goes off the air, then once a minute.
  var REPLAYS_SOON_MS = 10000;
  var REPLAYS_LATER_MS = 60000;
  var replaysEl = embedded ? null : $('replays');
  var replayListEl = $('replay-list');
  var R = { loadedAt: 0, loading: false, offlineSince: 0 };

  function replayWhen(rfc3339) {
    var t = window.Feiyan.shanghaiParts(rfc3339);
    if (!t) return '';
    var thisYear = window.Feiyan.shanghaiParts(new Date().toISOString());
    return (thisYear && thisYear.year === t.year ? '' : t.year + '年') +
      t.month + '月' + t.day + '日 ' + t.hh + ':' + t.mm;
  }

  function renderReplays(list) {
    while (replayListEl.firstChild) replayListEl.removeChild(replayListEl.firstChild);
    list.slice(0, REPLAYS_SHOWN).forEach(function (r) {
      if (!r || r.id === undefined || r.id === null) return;
      var li = document.createElement('li');
      var a = document.createElement('a');
      a.href = '/replay/' + encodeURIComponent(String(r.id));
      var title = document.createElement('span');
      title.className = 'replay-title';
      title.textContent = r.title ? String(r.title) : (r.film ? String(r.film) : '（未命名）');
      var meta = document.createElement('time');
      meta.className = 'replay-meta';
      meta.textContent = replayWhen(r.started_at);
      if (r.started_at) meta.setAttribute('datetime', String(r.started_at));
      a.appendChild(title);
      a.appendChild(meta);
      li.appendChild(a);
      replayListEl.appendChild(li);
    });
    replaysEl.hidden = !replayListEl.firstChild || !R.offlineSince;
  }

  function showReplays(offline) {
    if (!replaysEl) return; // embedded: the page lists its own past sessions
    var now = Date.now();
    if (!offline) {
      R.offlineSince = 0;
      replaysEl.hidden = true;
      return;
    }
    if (!R.offlineSince) R.offlineSince = now;
    replaysEl.hidden = !replayListEl.firstChild;
    var every = now - R.offlineSince < 60000 ? REPLAYS_SOON_MS : REPLAYS_LATER_MS;
    if (R.loading || (R.loadedAt && now - R.loadedAt < every)) return;
    R.loading = true;
    fetch(REPLAYS_URL, { cache: 'no-store', headers: { Accept: 'application/json' } })
      .then(function (res) { return res.ok ? res.json() : null; })
      .then(function (list) {
        // Newest first, as the server lists them.
        if (Array.isArray(list)) renderReplays(list);
      })
      .catch(noop)
      .then(function () { R.loading = false; R.loadedAt = Date.now(); });
  }

  // ---------- quality choice ----------
  var shownQualities = '';
  function showQualities(list) {
    var key = list.join(',');
    if (key === shownQualities) return;
    shownQualities = key;
    qualityBox.hidden = list.length < 2 || S.mode === 'hls';
    while (qualitySelect.firstChild) qualitySelect.removeChild(qualitySelect.firstChild);
    list.forEach(function (name) {
      var opt = document.createElement('option');
      opt.value = name === 'source' ? '' : name;
      opt.textContent = name === 'source' ? '原画' : name;
      qualitySelect.appendChild(opt);
    });
    qualitySelect.value = list.indexOf(quality) >= 0 ? quality : '';
  }
  qualitySelect.addEventListener('change', function () {
    quality = qualitySelect.value;
    try { localStorage.setItem('feiyan.quality', quality); } catch (e) { /* private mode */ }
    var url = new URL(location.href);
    if (quality) url.searchParams.set('quality', quality); else url.searchParams.delete('quality');
    history.replaceState(null, '', url.href);
    connect();
  });

  // ---------- lifecycle ----------
  window.addEventListener('pagehide', function () {
    clearTimeout(S.retryTimer);
    S.retryTimer = null;
    var r = S.resource;
    S.resource = null;
    if (r) deleteResource(r, true);
    teardown(false);
  });
  window.addEventListener('pageshow', function (ev) {
    if (ev.persisted) connect(); // restored from back/forward cache
  });
  window.addEventListener('online', function () {
    if (S.status === 'reconnecting' || S.status === 'offline') connect();
  });

  updateMuteButton();
  setStatus('connecting', '', '连接中…');
  pollInfo();
  connect();
})();

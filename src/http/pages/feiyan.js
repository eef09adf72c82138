// feiyan pages: helpers shared by the watch, TV, replay and publish
// pages. Served at /assets/feiyan.js.
(function () {
  'use strict';
  function $(id) { return document.getElementById(id); }
  function noop() {}

  function channelFromPath(prefix) {
    var parts = location.pathname.split('/').filter(function (p) { return p; });
    var i = parts.indexOf(prefix);
    var raw = i >= 0 ? parts[i + 1] : '';
    if (!raw) return '';
    try { return decodeURIComponent(raw); } catch (e) { return raw; }
  }

  function errMsg(e) {
    if (!e) return '未知错误';
    if (e.name === 'AbortError') return '请求超时';
    return e.message || String(e);
  }

  function fetchWithTimeout(url, opts, ms) {
    if (typeof AbortController === 'undefined') return fetch(url, opts);
    var ac = new AbortController();
    var t = setTimeout(function () { ac.abort(); }, ms);
    return fetch(url, Object.assign({}, opts, { signal: ac.signal })).then(
      function (r) { clearTimeout(t); return r; },
      function (e) { clearTimeout(t); throw e; });
  }

  function safeText(res) {
    return res.text().then(function (t) { return t; }, function () { return ''; });
  }

  function shorten(text) {
    text = String(text || '').trim();
    return text.length > 300 ? text.slice(0, 300) + '…' : text;
  }

  // Non-trickle: resolve once ICE gathering is complete, or after `ms`.
  function waitIceGathering(pc, ms) {
    return new Promise(function (resolve) {
      if (pc.iceGatheringState === 'complete') { resolve(); return; }
      var t;
      function done() {
        clearTimeout(t);
        pc.removeEventListener('icegatheringstatechange', onState);
        pc.removeEventListener('icecandidate', onCandidate);
        resolve();
      }
      function onState() { if (pc.iceGatheringState === 'complete') done(); }
      function onCandidate(ev) { if (!ev.candidate) done(); }
      t = setTimeout(done, ms);
      pc.addEventListener('icegatheringstatechange', onState);
      pc.addEventListener('icecandidate', onCandidate);
    });
  }

  function pcState(pc) {
    if (pc.connectionState) return pc.connectionState;
    var s = pc.iceConnectionState;
    if (s === 'completed') return 'connected';
    if (s === 'checking') return 'connecting';
    return s;
  }

  function deleteResource(url, keepalive) {
    try {
      fetch(url, { method: 'DELETE', keepalive: !!keepalive }).catch(noop);
    } catch (e) { /* ignore */ }
  }
  // The device id the server gave this browser (cookie fy_dev, set by the /watch, /tv and
  // /replay pages), sent as `vid` on WHEP and HLS so a resident counts once; '' without
  // cookies.
  function deviceId() {
    var m = /(?:^|;\s*)fy_dev=([^;]*)/.exec(document.cookie || '');
    if (!m) return '';
    try { return decodeURIComponent(m[1]); } catch (e) { return ''; }
  }

  // A time as Beijing time (Asia/Shanghai, which has no daylight saving time), whatever the
  // device's own zone: { year, month, day, weekday ('日'…'六'), hh, mm }, or null.
  function shanghaiParts(rfc3339) {
    var ms = Date.parse(rfc3339);
    if (!isFinite(ms)) return null;
    var d = new Date(ms + 8 * 3600 * 1000);
    function pad(n) { return n < 10 ? '0' + n : String(n); }
    return {
      year: d.getUTCFullYear(), month: d.getUTCMonth() + 1, day: d.getUTCDate(),
      weekday: '日一二三四五六'.charAt(d.getUTCDay()),
      hh: pad(d.getUTCHours()), mm: pad(d.getUTCMinutes())
    };
  }

  // The channel's HLS: the low-latency fMP4 multivariant playlist.
  function hlsUrl(channel) {
    var vid = deviceId();
    return '/hls/' + encodeURIComponent(channel) + '/index.m3u8' +
      (vid ? '?vid=' + encodeURIComponent(vid) : '');
  }

  // hls.js, loaded on first use only (never up front): resolves with window.Hls.
  var hlsJs = null;
  function loadHlsJs() {
    if (window.Hls) return Promise.resolve(window.Hls);
    if (hlsJs) return hlsJs;
    hlsJs = new Promise(function (resolve, reject) {
      var s = document.createElement('script');
      s.src = '/assets/vendor/hls.min.js';
      s.async = true;
      s.onload = function () {
        if (window.Hls) resolve(window.Hls); else reject(new Error('hls.js did not load'));
      };
      s.onerror = function () {
        hlsJs = null; // a later attempt may find it installed
        if (s.parentNode) s.parentNode.removeChild(s);
        reject(new Error('HLS 播放组件（hls.js）未能加载'));
      };
      document.head.appendChild(s);
    });
    return hlsJs;
  }

  function nativeHls(video) {
    try { return !!video.canPlayType('application/vnd.apple.mpegurl'); } catch (e) { return false; }
  }

  function hasMse() {
    return !!(window.MediaSource || window.ManagedMediaSource || window.WebKitMediaSource);
  }

  // Plays `url` (an HLS playlist) in `video`: natively where the browser plays HLS itself
  // (Safari, iOS, many TVs), else with hls.js on Media Source Extensions. `on.ready()`
  // once the stream can start, `on.offline()` when the playlist is not there (the channel
  // is not live, the replay does not exist), `on.error(message)` on a fatal error.
  // `opts` (optional): `vod` for a replay (no low-latency catch-up), `headers` sent on
  // every request (an administrator's Authorization); a browser's own player cannot send
  // them, so with headers hls.js plays wherever Media Source is there.
  // Returns { engine: 'native' | 'hls.js', destroy() }.
  function playHls(video, url, on, opts) {
    opts = opts || {};
    var headers = opts.headers || null;
    var dead = false;
    var ctl = { engine: '', destroy: noop };
    video.srcObject = null;
    if (nativeHls(video) && !(headers && hasMse())) {
      ctl.engine = 'native';
      var onMeta = function () { if (!dead) on.ready(); };
      var onError = function () {
        if (dead) return;
        // The element does not say why; ask the playlist itself.
        fetch(url, { cache: 'no-store', headers: headers || {} }).then(function (r) {
          if (dead) return;
          if (r.status === 404) on.offline(); else on.error('播放出错（' + r.status + '）');
        }, function (e) { if (!dead) on.error(errMsg(e)); });
      };
      video.addEventListener('loadedmetadata', onMeta);
      video.addEventListener('error', onError);
      video.src = url;
      ctl.destroy = function () {
        dead = true;
        video.removeEventListener('loadedmetadata', onMeta);
        video.removeEventListener('error', onError);
        video.removeAttribute('src');
        try { video.load(); } catch (e) { /* ignore */ }
      };
      return ctl;
    }
    ctl.engine = 'hls.js';
    var hls = null;
    ctl.destroy = function () {
      dead = true;
      if (hls) { try { hls.destroy(); } catch (e) { /* ignore */ } hls = null; }
    };
    loadHlsJs().then(function (Hls) {
      if (dead) return;
      if (!Hls.isSupported()) { on.error(opts.vod ? '当前浏览器无法播放回看视频' : '当前浏览器无法播放 HLS 直播'); return; }
      var mediaRecovered = false;
      // Live: catch up with the live edge by playing up to 1.5x when behind; without it
      // hls.js stays where it started, 2.5 s behind (docs/benchmarks.md, glass-to-glass).
      // A replay starts at its beginning and plays at normal speed.
      var config = opts.vod
        ? { lowLatencyMode: false, startPosition: 0 }
        : { lowLatencyMode: true, maxLiveSyncPlaybackRate: 1.5 };
      if (headers) {
        config.xhrSetup = function (xhr) {
          Object.keys(headers).forEach(function (name) { xhr.setRequestHeader(name, headers[name]); });
        };
      }
      hls = new Hls(config);
      hls.on(Hls.Events.MANIFEST_PARSED, function () { if (!dead) on.ready(); });
      hls.on(Hls.Events.ERROR, function (ev, data) {
        if (dead || !data || !data.fatal) return;
        var code = data.response && data.response.code;
        if (data.type === Hls.ErrorTypes.NETWORK_ERROR && code === 404) {
          on.offline();
        } else if (data.type === Hls.ErrorTypes.MEDIA_ERROR && !mediaRecovered) {
          mediaRecovered = true;
          hls.recoverMediaError();
        } else {
          on.error('HLS 播放出错（' + (data.details || data.type) + '）');
        }
      });
      hls.loadSource(url);
      hls.attachMedia(video);
    }, function (e) {
      if (!dead) on.error(errMsg(e));
    });
    return ctl;
  }

  // A 全屏 button for `box` (the player: video and its overlays), or for the bare `video`
  // on an iPhone; hidden where the browser cannot do either.
  function fullscreenButton(button, box, video) {
    button.hidden = !(box.requestFullscreen || box.webkitRequestFullscreen || video.webkitEnterFullscreen);
    button.addEventListener('click', function () {
      var p;
      if (document.fullscreenElement || document.webkitFullscreenElement) {
        if (document.exitFullscreen) p = document.exitFullscreen();
        else if (document.webkitExitFullscreen) document.webkitExitFullscreen();
      } else if (box.requestFullscreen) {
        p = box.requestFullscreen();
      } else if (box.webkitRequestFullscreen) {
        box.webkitRequestFullscreen();
      } else if (video.webkitEnterFullscreen) {
        video.webkitEnterFullscreen(); // iPhone
      }
      if (p && typeof p.catch === 'function') p.catch(noop);
    });
    function onChange() {
      button.textContent = (document.fullscreenElement || document.webkitFullscreenElement) ? '退出全屏' : '全屏';
    }
    document.addEventListener('fullscreenchange', onChange);
    document.addEventListener('webkitfullscreenchange', onChange);
  }

  window.Feiyan = {
    fullscreenButton: fullscreenButton,
    $: $,
    noop: noop,
    channelFromPath: channelFromPath,
    errMsg: errMsg,
    fetchWithTimeout: fetchWithTimeout,
    safeText: safeText,
    shorten: shorten,
    waitIceGathering: waitIceGathering,
    pcState: pcState,
    deleteResource: deleteResource,
    deviceId: deviceId,
    hlsUrl: hlsUrl,
    shanghaiParts: shanghaiParts,
    playHls: playHls,
  };
})();

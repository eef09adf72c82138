// feiyan TV page (/tv/{channel}): HLS first (the TV's own player, else hls.js), WebRTC only
// when HLS fails; big type and a remote control's keys. Served at /assets/tv.js.
(function () {
  'use strict';

  var F = window.Feiyan;
  var $ = F.$;
  var noop = F.noop;

  var video = $('video');
  var titleEl = $('title');
  var liveEl = $('live');
  var stationEl = $('station');
  var messageEl = $('message');
  var modeEl = $('mode');
  var playBtn = $('play');
  var muteBtn = $('mute');
  var reloadBtn = $('reload');
  var controls = [playBtn, muteBtn, reloadBtn];

  var channel = F.channelFromPath('tv');
  var INFO_URL = '/api/channels/' + encodeURIComponent(channel);
  var OFFLINE_RETRY_MS = 5000;
  var STALL_MS = 15000;
  var IDLE_MS = 6000;

  var S = {
    gen: 0,            // bumps on every (re)start; stale async work checks it
    player: null,      // { engine, destroy() } of the running HLS or WebRTC player
    status: 'connecting',
    attempt: 0,        // backoff exponent
    retryTimer: null,
    userPaused: false,
    needsUnmute: false, // autoplay with sound was refused: OK/Enter turns it on
    lastTime: -1,
    lastProgress: 0
  };

  function message(text) {
    messageEl.textContent = text || '';
    messageEl.hidden = !text;
  }

  function setStatus(status, text) {
    S.status = status;
    document.body.setAttribute('data-status', status);
    message(text);
  }

  function showMode(engine) {
    modeEl.textContent = engine === 'webrtc' ? 'WebRTC' : engine ? 'HLS' : '';
  }

  // ---------- playback ----------
  function updateButtons() {
    playBtn.textContent = video.paused ? '播放' : '暂停';
    muteBtn.textContent = video.muted ? '开启声音' : '静音';
  }

  function tryPlay() {
    var p;
    try { p = video.play(); } catch (e) { return; }
    if (!p || typeof p.then !== 'function') return;
    p.then(noop, function (e) {
      if (!e || e.name !== 'NotAllowedError') return; // AbortError: source replaced
      if (!video.muted) {
        // Sound needs a key press first: play muted, OK/Enter turns the sound on.
        video.muted = true;
        S.needsUnmute = true;
        updateButtons();
        tryPlay();
      } else {
        message('按 OK 键开始播放');
      }
    });
  }

  function stopPlayer() {
    S.gen++;
    clearTimeout(S.retryTimer);
    S.retryTimer = null;
    var p = S.player;
    S.player = null;
    if (p) p.destroy();
  }

  function retry(ms) {
    clearTimeout(S.retryTimer);
    S.retryTimer = setTimeout(function () { S.retryTimer = null; start(); }, ms);
  }

  function offline() {
    stopPlayer();
    S.attempt = 0;
    showMode('');
    setStatus('offline', '该频道当前未直播，开播后将自动播放');
    retry(OFFLINE_RETRY_MS);
  }

  function failed(why) {
    stopPlayer();
    var delay = Math.min(30, Math.pow(2, S.attempt));
    S.attempt = Math.min(S.attempt + 1, 10);
    setStatus('reconnecting', (why ? why + '，' : '') + delay + ' 秒后重试');
    retry(delay * 1000);
  }

  // HLS first.
  function start() {
    stopPlayer();
    var gen = S.gen;
    if (!channel) {
      setStatus('error', '地址中缺少频道编号');
      return;
    }
    if (S.status !== 'offline' && S.status !== 'reconnecting') setStatus('connecting', '连接中…');
    S.player = F.playHls(video, F.hlsUrl(channel), {
      ready: function () { if (gen === S.gen) tryPlay(); },
      offline: function () { if (gen === S.gen) offline(); },
      error: function (why) {
        if (gen !== S.gen) return;
        if (typeof RTCPeerConnection === 'undefined') failed(why);
        else startWebrtc(why);
      }
    });
    showMode(S.player.engine);
  }

  // WebRTC (WHEP) only when HLS failed here.
  function startWebrtc(hlsError) {
    stopPlayer();
    var gen = S.gen;
    var pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
    var resource = null;
    var closed = false;
    S.player = {
      engine: 'webrtc',
      destroy: function () {
        closed = true;
        try { pc.close(); } catch (e) { /* ignore */ }
        if (resource) F.deleteResource(resource, false);
        video.srcObject = null;
      }
    };
    showMode('webrtc');
    var stream = new MediaStream();
    pc.addTransceiver('audio', { direction: 'recvonly' });
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.ontrack = function (ev) {
      if (closed) return;
      stream.addTrack(ev.track);
      if (video.srcObject !== stream) video.srcObject = stream;
      tryPlay();
    };
    setTimeout(function () {
      if (gen === S.gen && F.pcState(pc) !== 'connected') failed('连接超时');
    }, 20000);
    pc.addEventListener('connectionstatechange', function () {
      if (gen !== S.gen) return;
      var st = F.pcState(pc);
      if (st === 'failed' || st === 'closed') failed('连接失败');
    });
    var vid = F.deviceId();
    var url = '/whep/' + encodeURIComponent(channel) + (vid ? '?vid=' + encodeURIComponent(vid) : '');
    pc.createOffer()
      .then(function (offer) { return pc.setLocalDescription(offer); })
      .then(function () { return F.waitIceGathering(pc, 2000); })
      .then(function () {
        if (gen !== S.gen) return null;
        return F.fetchWithTimeout(url, {
          method: 'POST',
          headers: { 'Content-Type': 'application/sdp' },
          body: pc.localDescription.sdp,
          cache: 'no-store'
        }, 15000);
      })
      .then(function (res) {
        if (!res || gen !== S.gen) return null;
        if (res.status === 404) { offline(); return null; }
        if (res.status !== 201) { failed(hlsError || '服务器返回 ' + res.status); return null; }
        var loc = res.headers.get('Location');
        resource = loc ? new URL(loc, location.href).href : null;
        return F.safeText(res);
      })
      .then(function (answer) {
        if (answer === null || answer === undefined || gen !== S.gen) return;
        return pc.setRemoteDescription({ type: 'answer', sdp: answer });
      })
      .catch(function (e) { if (gen === S.gen) failed(F.errMsg(e)); });
  }

  video.addEventListener('playing', function () {
    S.attempt = 0;
    S.lastProgress = Date.now();
    setStatus('playing', S.needsUnmute ? '按 OK 键开启声音' : '');
  });
  video.addEventListener('play', updateButtons);
  video.addEventListener('pause', updateButtons);
  video.addEventListener('volumechange', updateButtons);

  // Stall watchdog: playing, not paused by the viewer, and the picture stopped moving.
  setInterval(function () {
    if (S.status !== 'playing' || !S.player || video.paused) return;
    var now = Date.now();
    if (video.currentTime !== S.lastTime) {
      S.lastTime = video.currentTime;
      S.lastProgress = now;
    } else if (now - S.lastProgress > STALL_MS) {
      failed('长时间没有画面');
    }
  }, 2000);

  // Back to the live edge after a pause (a live lecture, not a recording).
  function goLive() {
    var r = video.seekable;
    if (r && r.length && isFinite(r.end(r.length - 1))) {
      var edge = r.end(r.length - 1) - 2;
      if (edge > video.currentTime + 4) video.currentTime = Math.max(r.start(r.length - 1), edge);
    }
  }

  // ---------- controls ----------
  function unmute() {
    video.muted = false;
    video.volume = 1;
    S.needsUnmute = false;
    if (S.status === 'playing') message('');
    tryPlay();
  }

  playBtn.addEventListener('click', function () {
    if (video.paused) {
      S.userPaused = false;
      goLive();
      tryPlay();
    } else {
      S.userPaused = true;
      video.pause();
    }
  });
  muteBtn.addEventListener('click', function () {
    if (video.muted) unmute(); else video.muted = true;
  });
  reloadBtn.addEventListener('click', function () { location.reload(); });

  // Arrow keys move between the controls; OK/Enter presses the focused one (the browser
  // does that for a focused button), or turns the sound on first when autoplay was muted.
  var KEY_LEFT = { ArrowLeft: 1, Left: 1, 37: 1 };
  var KEY_RIGHT = { ArrowRight: 1, Right: 1, 39: 1 };
  var KEY_UPDOWN = { ArrowUp: 1, Up: 1, ArrowDown: 1, Down: 1, 38: 1, 40: 1 };
  var KEY_ENTER = { Enter: 1, Accept: 1, 13: 1 };
  // Media keys of TV remotes: MediaPlayPause (179), Play (415), Pause (19), Tizen's 10252.
  var KEY_PLAYPAUSE = { MediaPlayPause: 1, MediaPlay: 1, MediaPause: 1, 179: 1, 415: 1, 19: 1, 10252: 1 };

  var idleTimer = null;
  function wake() {
    document.body.classList.remove('idle');
    clearTimeout(idleTimer);
    idleTimer = setTimeout(function () {
      if (S.status === 'playing' && !video.paused) document.body.classList.add('idle');
    }, IDLE_MS);
  }

  // The ring follows a class as well as :focus: a TV browser whose window the system has
  // not focused (or a kiosk shell) still shows where OK will land.
  function focusAt(i) {
    var n = controls.length;
    var target = controls[((i % n) + n) % n];
    controls.forEach(function (c) { c.classList.toggle('focused', c === target); });
    target.focus();
  }

  document.addEventListener('keydown', function (ev) {
    var key = ev.key || ev.keyCode;
    var code = ev.keyCode;
    var wasIdle = document.body.classList.contains('idle');
    wake();
    var at = controls.indexOf(document.activeElement);
    if (KEY_ENTER[key] || KEY_ENTER[code]) {
      if (S.needsUnmute || (video.paused && !S.userPaused)) {
        ev.preventDefault();
        unmute();
        if (at < 0) focusAt(0);
      } else if (at < 0) {
        ev.preventDefault();
        focusAt(0);
      }
      return;
    }
    if (KEY_LEFT[key] || KEY_LEFT[code]) {
      ev.preventDefault();
      focusAt(at < 0 ? 0 : at - 1);
    } else if (KEY_RIGHT[key] || KEY_RIGHT[code]) {
      ev.preventDefault();
      focusAt(at < 0 ? 0 : at + 1);
    } else if (KEY_UPDOWN[key] || KEY_UPDOWN[code]) {
      ev.preventDefault();
      if (at < 0 || wasIdle) focusAt(at < 0 ? 0 : at);
    } else if (KEY_PLAYPAUSE[key] || KEY_PLAYPAUSE[code]) {
      ev.preventDefault();
      playBtn.click();
    }
  });
  document.addEventListener('mousemove', function () {
    document.body.classList.add('pointer');
    wake();
  });

  // ---------- channel info: title and live state ----------
  function pollInfo() {
    fetch(INFO_URL, { cache: 'no-store', headers: { Accept: 'application/json' } })
      .then(function (res) {
        if (res.status === 404) {
          titleEl.textContent = '频道不存在';
          liveEl.textContent = '未开播';
          document.body.setAttribute('data-live', 'no');
          return;
        }
        if (!res.ok) return;
        return res.json().then(function (info) {
          if (!info) return;
          titleEl.textContent = info.title ? String(info.title) : (info.live ? '直播中' : '暂未开播');
          stationEl.textContent = info.station ? String(info.station) : '';
          var v = Number(info.viewers);
          liveEl.textContent = info.live
            ? '直播中' + (isFinite(v) && v > 0 ? ' · ' + Math.floor(v) + ' 人在看' : '')
            : '未开播';
          document.body.setAttribute('data-live', info.live ? 'yes' : 'no');
          document.title = (info.title ? info.title + ' · ' : '') + '飞燕 · 电视观看';
          if (info.live && S.status === 'offline') start();
        });
      })
      .catch(noop)
      .then(function () { setTimeout(pollInfo, 5000); });
  }

  window.addEventListener('pagehide', function () {
    stopPlayer();
  });

  updateButtons();
  focusAt(0);
  wake();
  pollInfo();
  start();
})();

// feiyan replay page (/replay/{id}): one recorded lecture or film class, played as VOD HLS
// (the browser's own player, else hls.js), with a download link, and what residents said
// during the live session: its answered questions and its messages, read-only (from
// /api/interaction/sessions/{id}/messages). Served at /assets/replay.js.
(function () {
  'use strict';

  var F = window.Feiyan;
  var $ = F.$;
  var noop = F.noop;

  var KIND_LABELS = { lecture: '理论宣讲', film_class: '电影党史课' };

  var video = $('video');
  var overlay = $('overlay');
  var overlayText = $('overlay-text');
  var overlayBtn = $('play-btn');
  var statusEl = $('status');
  var detailEl = $('detail');
  var playBtn = $('play');
  var muteBtn = $('unmute');
  var backBtn = $('back');
  var fsBtn = $('fullscreen');
  var downloadEl = $('download');

  var LABELS = {
    loading: '加载中',
    ready: '可以播放',
    playing: '播放中',
    paused: '已暂停',
    buffering: '缓冲中',
    ended: '播放结束',
    error: '无法播放'
  };

  var S = {
    id: '',
    rec: null,
    player: null,    // { engine, destroy() } from Feiyan.playHls
    status: 'loading',
    resumeAt: 0,     // where to continue after a reload (seconds)
    overlayAction: null
  };

  // An administrator signed in on /admin in this tab may preview a hidden replay: the
  // admin page keeps its token in sessionStorage.
  function adminToken() {
    try { return sessionStorage.getItem('feiyan_token') || ''; } catch (e) { return ''; }
  }

  function replayId() {
    var raw = F.channelFromPath('replay');
    return /^[0-9]{1,18}$/.test(raw) ? raw : '';
  }

  // ---------- what the page shows ----------
  function showOverlay(text, buttonLabel, action) {
    overlay.hidden = false;
    overlayText.textContent = text;
    S.overlayAction = action || null;
    overlayBtn.hidden = !buttonLabel;
    if (buttonLabel) overlayBtn.textContent = buttonLabel;
  }

  function hideOverlay() {
    overlay.hidden = true;
    S.overlayAction = null;
  }

  function setStatus(status, detail) {
    S.status = status;
    document.body.setAttribute('data-status', status);
    statusEl.textContent = LABELS[status] || status;
    detailEl.textContent = detail || '';
    updateButtons();
  }

  function updateButtons() {
    playBtn.textContent = video.paused || video.ended ? (video.ended ? '重新播放' : '播放') : '暂停';
    muteBtn.textContent = video.muted ? '取消静音' : '静音';
  }

  // No such replay (never was, deleted, hidden), or it cannot be loaded at all: the
  // heading says which, the box below what to do.
  function gone(title, text, retry) {
    stopPlayer();
    $('player').hidden = true;
    $('controls').hidden = true;
    $('title').textContent = title;
    $('gone-text').textContent = text;
    $('gone').hidden = false;
    var again = $('gone-retry');
    if (retry && !again) {
      again = document.createElement('button');
      again.type = 'button';
      again.id = 'gone-retry';
      again.className = 'btn';
      again.textContent = '重试';
      again.addEventListener('click', function () { location.reload(); });
      $('gone').appendChild(again);
    }
    if (again) again.hidden = !retry;
    document.body.setAttribute('data-status', 'error');
  }

  function notFound() {
    $('station').textContent = '回看编号：' + (S.id || '无');
    $('kind').hidden = true;
    $('facts').hidden = true;
    document.title = '回看不存在 · 飞燕';
    gone('回看不存在或已删除',
      '这个回看可能已被删除、暂时隐藏，或者地址有误。请返回首页，看看其他直播和回看。', false);
  }

  // "2026年12月6日 星期日 15:30", Beijing time, whatever the device's own time zone.
  function shanghaiTime(rfc3339) {
    var t = F.shanghaiParts(rfc3339);
    if (!t) return '';
    return t.year + '年' + t.month + '月' + t.day + '日 星期' + t.weekday + ' ' + t.hh + ':' + t.mm;
  }

  function durationText(ms) {
    var s = Math.round(Number(ms) / 1000);
    if (!isFinite(s) || s <= 0) return '不到 1 秒';
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    if (h) return h + ' 小时' + (m ? ' ' + m + ' 分钟' : '');
    if (m) return m + ' 分钟' + (sec && m < 10 ? ' ' + sec + ' 秒' : '');
    return sec + ' 秒';
  }

  function render(rec) {
    var title = rec.title ? String(rec.title) : (rec.film ? String(rec.film) : '（未命名）');
    $('title').textContent = title;
    document.title = title + ' · 飞燕回看';
    var kind = $('kind');
    var label = KIND_LABELS[rec.session_kind];
    kind.hidden = !label;
    if (label) {
      kind.textContent = label + ' · 回看';
      kind.className = 'kind kind-' + rec.session_kind;
    }
    var place = [rec.station, rec.institute, rec.center].filter(function (x) { return x; }).join(' · ');
    $('station').textContent = place || '\u00a0';
    var when = $('when');
    when.textContent = shanghaiTime(rec.started_at);
    if (rec.started_at) when.setAttribute('datetime', String(rec.started_at));
    $('duration').textContent = durationText(rec.duration_ms);
    var who = rec.session_kind === 'film_class' && rec.film
      ? ['影片', rec.film]
      : (rec.speaker ? ['主讲', rec.speaker] : null);
    $('who-row').hidden = !who;
    if (who) {
      $('who-label').textContent = who[0];
      $('who').textContent = String(who[1]);
    }
    $('facts').hidden = false;
    // A hidden replay (an administrator's preview) has no public download.
    if (rec.published === false) {
      downloadEl.hidden = true;
      $('note').textContent = '此回看已隐藏，居民看不到；您以管理员身份预览。';
      $('note').hidden = false;
    } else {
      // The server names the file (station, day, id) in its Content-Disposition.
      downloadEl.href = String(rec.download);
    }
    $('player').hidden = false;
    $('controls').hidden = false;
  }

  // ---------- playback ----------
  function tryPlay() {
    var p;
    try { p = video.play(); } catch (e) { return; }
    if (!p || typeof p.then !== 'function') return;
    p.then(noop, function (e) {
      if (!e || e.name !== 'NotAllowedError') return; // AbortError: source replaced
      if (!video.muted) {
        // Sound needs a tap first here: play muted; 取消静音 stays in view.
        video.muted = true;
        updateButtons();
        tryPlay();
        return;
      }
      showOverlay('请点击播放', '点击播放', tryPlay);
      setStatus('ready');
    });
  }

  function stopPlayer() {
    var p = S.player;
    S.player = null;
    if (p) p.destroy();
  }

  function startPlayer() {
    stopPlayer();
    var rec = S.rec;
    var vid = F.deviceId();
    // The server's device id, so this resident's replay minutes count once; without one
    // the server adds a new id by redirect.
    var url = String(rec.playlist) + (vid ? '?vid=' + encodeURIComponent(vid) : '');
    var token = adminToken();
    var opts = { vod: true };
    if (token && rec.published === false) opts.headers = { Authorization: 'Bearer ' + token };
    // While it loads the player shows its own spinner; the status line says 加载中.
    setStatus('loading');
    hideOverlay();
    var player = F.playHls(video, url, {
      ready: function () {
        if (S.player !== player) return;
        if (S.resumeAt > 0) {
          try { video.currentTime = S.resumeAt; } catch (e) { /* not seekable yet */ }
        }
        setStatus('ready');
        tryPlay();
      },
      offline: function () { if (S.player === player) notFound(); },
      error: function (msg) {
        if (S.player !== player) return;
        S.resumeAt = video.currentTime || S.resumeAt;
        stopPlayer();
        setStatus('error', msg + '。请检查网络后点击“重新加载”。');
        showOverlay('播放出错了', '重新加载', startPlayer);
      }
    }, opts);
    S.player = player;
  }

  video.addEventListener('playing', function () {
    S.resumeAt = 0;
    hideOverlay();
    setStatus('playing');
  });
  video.addEventListener('pause', function () {
    if (S.status === 'playing' || S.status === 'buffering') setStatus(video.ended ? 'ended' : 'paused');
  });
  video.addEventListener('waiting', function () {
    if (S.status === 'playing') setStatus('buffering');
  });
  video.addEventListener('ended', function () {
    setStatus('ended', '已播放完毕。');
    showOverlay('播放结束', '重新播放', function () { video.currentTime = 0; tryPlay(); });
  });
  video.addEventListener('volumechange', updateButtons);
  video.addEventListener('play', updateButtons);

  overlayBtn.addEventListener('click', function () {
    var action = S.overlayAction;
    if (action) action();
  });
  playBtn.addEventListener('click', function () {
    if (!S.player) { startPlayer(); return; }
    if (video.ended) { video.currentTime = 0; tryPlay(); } else if (video.paused) tryPlay(); else video.pause();
  });
  muteBtn.addEventListener('click', function () {
    video.muted = !video.muted;
    if (!video.muted) video.volume = 1;
    updateButtons();
  });
  backBtn.addEventListener('click', function () {
    video.currentTime = Math.max(0, (video.currentTime || 0) - 15);
  });

  F.fullscreenButton(fsBtn, $('player'), video);

  // ---------- the replay's row ----------
  function load() {
    S.id = replayId();
    if (!S.id) { notFound(); return; }
    var headers = { Accept: 'application/json' };
    var token = adminToken();
    if (token) headers.Authorization = 'Bearer ' + token;
    F.fetchWithTimeout('/api/recordings/' + S.id, { cache: 'no-store', headers: headers }, 15000)
      .then(function (res) {
        if (res.status === 404) { notFound(); return; }
        if (!res.ok) {
          return F.safeText(res).then(function (text) {
            var why = F.shorten(text);
            gone('暂时无法打开回看',
              '服务器返回 ' + res.status + (why ? '（' + why + '）' : '') + '，请稍后重试。', true);
          });
        }
        return res.json().then(function (rec) {
          if (!rec || !rec.playlist) {
            gone('暂时无法打开回看', '服务器的回答无法识别，请稍后重试。', true);
            return;
          }
          S.rec = rec;
          render(rec);
          startPlayer();
          if (F.mountRating && rec.session_id) {
            $('rating').hidden = false;
            F.mountRating($('rating'), rec.session_id);
          }
          if (rec.session_id) showInteraction(rec.session_id);
        });
      })
      .catch(function (e) {
        gone('暂时无法打开回看', '网络错误（' + F.errMsg(e) + '），请检查网络后重试。', true);
      });
  }

  // ---------- the live session's messages (read-only) ----------
  function showInteraction(sessionId) {
    var box = $('replay-chat');
    F.fetchWithTimeout('/api/interaction/sessions/' + encodeURIComponent(sessionId) + '/messages',
      { cache: 'no-store' }, 15000)
      .then(function (res) { return res.ok ? res.json() : []; })
      .then(function (messages) {
        if (!messages || !messages.length) return;
        function el(tag, cls, text) {
          var e = document.createElement(tag);
          if (cls) e.className = cls;
          if (text !== undefined) e.textContent = text;
          return e;
        }
        function item(m) {
          var li = el('li', 'ia-msg' + (m.answered ? ' answered' : ''));
          li.setAttribute('data-id', String(m.id));
          if (m.kind === 'question') li.appendChild(el('span', 'ia-badge', '问'));
          li.appendChild(el('span', 'ia-who', m.nickname));
          li.appendChild(el('span', 'ia-body', m.text));
          li.appendChild(el('span', 'ia-done', '已回答'));
          return li;
        }
        box.textContent = '';
        box.appendChild(el('h2', 'ia-title', '直播时的互动'));
        var answered = messages.filter(function (m) { return m.kind === 'question' && m.answered; });
        if (answered.length) {
          box.appendChild(el('h3', '', '已回答的提问（' + answered.length + '）'));
          var qa = el('ol', 'ia-list'); qa.setAttribute('data-list', 'answered');
          answered.forEach(function (m) { qa.appendChild(item(m)); });
          box.appendChild(qa);
        }
        box.appendChild(el('h3', '', '消息和提问（' + messages.length + '）'));
        var all = el('ol', 'ia-list'); all.setAttribute('data-list', 'messages');
        messages.forEach(function (m) { all.appendChild(item(m)); });
        box.appendChild(all);
        box.hidden = false;
      })
      .catch(noop);
  }

  window.addEventListener('pagehide', stopPlayer);
  window.addEventListener('pageshow', function (ev) {
    if (ev.persisted && S.rec) startPlayer(); // back/forward cache
  });

  updateButtons();
  load();
})();

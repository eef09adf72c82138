// feiyan item page (/e/{id}): one planned lecture or film class. Before it starts, a
// countdown; while it is live, the player (watch.js, on the same page); afterwards its
// replay or a summary. Reads /api/items/{id}: every 5 s around the start and while
// waiting for it, every 10 s before, every 30 s after. Served at /assets/item.js.
(function () {
  'use strict';
  var P = window.Portal;
  function $(id) { return document.getElementById(id); }

  var id = document.body.getAttribute('data-item') || '';
  var URL_ITEM = '/api/items/' + encodeURIComponent(id);
  var S = { item: null, tick: null, poll: null };

  var box = $('countdown-box'), countdownEl = $('countdown'), stateLine = $('state-line');
  var liveSection = $('live-section'), after = $('after'), afterText = $('after-text');
  var replayLink = $('replay-link');

  function setText(e, t) { if (e.textContent !== t) e.textContent = t; }

  function startsMs() { return S.item ? Date.parse(S.item.starts_at) : NaN; }

  function tick() {
    var left = startsMs() - Date.now();
    if (!(left > 0)) {
      box.hidden = true;
      setText(stateLine, '即将开始，正在等待直播信号…');
      clearInterval(S.tick);
      S.tick = null;
      schedule(1000);
      return;
    }
    setText(countdownEl, P.countdown(left));
  }

  function facts(it) {
    setText($('item-title'), it.title || '（未命名）');
    document.title = (it.title || '节目') + ' · 飞燕';
    var kind = $('item-kind');
    setText(kind, P.KIND[it.kind] || '节目');
    kind.className = 'kind kind-' + (P.KIND[it.kind] ? it.kind : 'other');
    var when = $('item-when');
    setText(when, P.when(it.starts_at) + (it.ends_at ? ' 至 ' + P.when(it.ends_at).replace(/^.* /, '') : ''));
    if (it.starts_at) when.setAttribute('datetime', it.starts_at);
  }

  function render(it) {
    S.item = it;
    document.body.setAttribute('data-state', it.status || '');
    facts(it);
    var status = it.status;
    var counting = status === 'scheduled' && startsMs() > Date.now();
    box.hidden = !counting;
    if (counting) {
      setText(stateLine, '');
      if (!S.tick) S.tick = setInterval(tick, 1000);
      tick();
    } else {
      clearInterval(S.tick);
      S.tick = null;
    }
    liveSection.hidden = status !== 'live';
    if (status === 'live') {
      setText(stateLine, '正在直播');
      P.loadPlayer();
    } else if (status === 'scheduled' && !counting) {
      setText(stateLine, '即将开始，正在等待直播信号…');
    }
    var done = status === 'ended' || status === 'cancelled' || status === 'missed';
    after.hidden = !done;
    if (done) {
      var text = status === 'cancelled' ? '本场已取消。' : status === 'missed' ? '本场未能按时开始。' : '本场已结束。';
      if (status === 'ended' && typeof it.headcount === 'number') text += '现场参加 ' + it.headcount + ' 人。';
      var replay = status === 'ended' && it.replay_id !== null && it.replay_id !== undefined;
      if (status === 'ended') text += replay ? '可以观看回看。' : '回看暂未发布。';
      setText(afterText, text);
      setText(stateLine, '');
      replayLink.hidden = !replay;
      if (replay) replayLink.href = '/replay/' + encodeURIComponent(String(it.replay_id));
      // Residents who were there (online or in the room, from the poster's QR code) rate it.
      var F = window.Feiyan;
      if (status === 'ended' && it.session_id && F && F.mountRating && S.rated !== it.session_id) {
        S.rated = it.session_id;
        $('item-rating').hidden = false;
        F.mountRating($('item-rating'), it.session_id);
      }
    }
  }

  function interval() {
    var it = S.item;
    if (!it) return 5000;
    if (it.status === 'live') return 15000;
    if (it.status !== 'scheduled') return 30000;
    return startsMs() - Date.now() > 10 * 60000 ? 10000 : 5000;
  }

  function schedule(ms) {
    clearTimeout(S.poll);
    S.poll = setTimeout(refresh, ms);
  }

  function refresh() {
    clearTimeout(S.poll);
    P.getJson(URL_ITEM).then(function (it) {
      render(it);
      schedule(interval());
    }, function (e) {
      if (e && e.status === 404) {
        setText(stateLine, '这个节目已不存在。');
        box.hidden = true;
        return;
      }
      setText(stateLine, '暂时无法获取节目状态，正在自动重试…');
      schedule(10000);
    });
  }

  document.addEventListener('visibilitychange', function () { if (!document.hidden) refresh(); });
  refresh();
})();

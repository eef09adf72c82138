// feiyan station page (/s/{channel}): live now (the player), the programme ahead, past
// sessions with their replays and headcounts; "my station" on this device. The server
// filled the names and the share card; this fills the rest from
// /api/stations/{channel}/page every 30 s (10 s while live). Served at /assets/station.js.
(function () {
  'use strict';
  var P = window.Portal;
  function $(id) { return document.getElementById(id); }

  var channel = document.body.getAttribute('data-channel') || '';
  var URL_PAGE = '/api/stations/' + encodeURIComponent(channel) + '/page';
  var upcomingEl = $('upcoming'), recentEl = $('recent'), noteEl = $('note');
  var liveSection = $('live-section'), mineBtn = $('mine');
  var stationName = $('station-name').textContent;
  var timer = null;

  function showMine() {
    var mine = P.myStation();
    var is = !!(mine && mine.channel === channel);
    mineBtn.textContent = is ? '✓ 已设为我的站点' : '设为我的站点';
    mineBtn.setAttribute('aria-pressed', is ? 'true' : 'false');
  }
  mineBtn.addEventListener('click', function () {
    var mine = P.myStation();
    if (mine && mine.channel === channel) P.setMyStation(null);
    else P.setMyStation({ channel: channel, name: stationName });
    showMine();
  });
  showMine();

  function recentRow(s) {
    var li = P.el('li', 'item-row');
    var box = P.el(s.replay_id !== null && s.replay_id !== undefined ? 'a' : 'div', 'item-link', li);
    if (box.tagName === 'A') box.href = '/replay/' + encodeURIComponent(String(s.replay_id));
    var head = P.el('span', 'item-head', box);
    var t = P.el('time', 'item-when', head, P.when(s.started_at));
    if (s.started_at) t.setAttribute('datetime', String(s.started_at));
    P.el('span', 'badge kind-' + (P.KIND[s.kind] ? s.kind : 'other'), head, P.KIND[s.kind] || '直播');
    P.el('span', 'item-title', box, s.title || '（未命名）');
    var bits = [];
    if (typeof s.headcount === 'number') bits.push('现场 ' + s.headcount + ' 人');
    if (box.tagName === 'A') bits.push('▶ 观看回看');
    if (bits.length) P.el('span', 'item-about', box, bits.join(' · '));
    return li;
  }

  function render(data) {
    if (data.station) {
      stationName = data.station.name || stationName;
      $('station-name').textContent = stationName;
      var where = [data.station.center && data.station.center.name, data.station.institute && data.station.institute.name]
        .filter(function (x) { return x; }).join(' · ');
      if (where) $('station-where').textContent = where;
    }
    var live = data.live;
    if (live) {
      $('live-title').textContent = live.title || '';
      $('live-item-link').href = live.item_id !== null && live.item_id !== undefined
        ? '/e/' + encodeURIComponent(String(live.item_id)) : '/watch/' + encodeURIComponent(channel);
      $('live-item-link').textContent = live.item_id !== null && live.item_id !== undefined ? '本场节目页 →' : '在观看页打开 →';
      liveSection.hidden = false;
      P.loadPlayer();
    } else {
      liveSection.hidden = true;
    }
    var upcoming = Array.isArray(data.upcoming) ? data.upcoming : [];
    P.clear(upcomingEl);
    upcoming.forEach(function (it) { upcomingEl.appendChild(P.itemRow(it)); });
    $('upcoming-empty').hidden = upcoming.length > 0;
    var recent = Array.isArray(data.recent) ? data.recent : [];
    P.clear(recentEl);
    recent.forEach(function (s) { recentEl.appendChild(recentRow(s)); });
    $('recent-empty').hidden = recent.length > 0;
    noteEl.textContent = '';
    noteEl.hidden = true;
    return !!live;
  }

  function refresh() {
    clearTimeout(timer);
    P.getJson(URL_PAGE).then(render, function () {
      noteEl.hidden = false;
      noteEl.textContent = '节目单暂时无法获取，正在自动重试…';
      return false;
    }).then(function (live) {
      timer = setTimeout(refresh, live ? 10000 : 30000);
    });
  }
  document.addEventListener('visibilitychange', function () { if (!document.hidden) refresh(); });
  refresh();
})();

// feiyan TV home (/tv): the live channels (and this set's own station) as big tiles; a
// remote's arrow keys move between them, OK (Enter) opens /tv/{channel}. Refreshed every
// 10 s without moving the focus. Served at /assets/tvhome.js.
(function () {
  'use strict';
  var P = window.Portal;
  function $(id) { return document.getElementById(id); }
  var liveEl = $('live'), mineEl = $('mine'), emptyEl = $('empty');

  function tile(parent, channel, title, sub, badge) {
    var a = P.el('a', 'tvh-tile', parent);
    a.href = '/tv/' + encodeURIComponent(channel);
    a.setAttribute('role', 'listitem');
    a.setAttribute('data-channel', channel);
    if (badge) P.el('span', 'tvh-badge', a, badge);
    P.el('span', 'tvh-title', a, title);
    if (sub) P.el('span', 'tvh-sub', a, sub);
    return a;
  }

  function tiles() { return Array.prototype.slice.call(document.querySelectorAll('.tvh-tile')); }

  function render(list) {
    var focused = document.activeElement && document.activeElement.getAttribute('data-channel');
    var inMine = document.activeElement && mineEl.contains(document.activeElement);
    var mine = P.myStation();
    P.clear(mineEl);
    P.clear(liveEl);
    var live = {};
    list.forEach(function (it) { if (it && it.channel) live[it.channel] = it; });
    if (mine) {
      var l = live[mine.channel];
      tile(mineEl, mine.channel, mine.name || mine.channel, l ? l.title || '正在直播' : '暂未开播', l ? '直播中' : '');
    }
    $('mine-section').hidden = !mine;
    list.forEach(function (it) {
      if (!it || !it.channel) return;
      var sub = [it.station, it.center].filter(function (x) { return x; }).join(' · ');
      tile(liveEl, String(it.channel), it.title || it.station || String(it.channel), sub, P.KIND[it.kind] || '直播中');
    });
    emptyEl.hidden = list.length > 0;
    // Keep the focus where the remote left it; else on the first tile.
    var again = null;
    if (focused) {
      again = (inMine ? mineEl : liveEl).querySelector('[data-channel="' + CSS.escape(focused) + '"]');
    }
    var all = tiles();
    if (again) again.focus();
    else if (!document.activeElement || document.activeElement === document.body) { if (all[0]) all[0].focus(); }
  }

  // The tile nearest to the focused one in the arrow's direction.
  function move(dx, dy) {
    var all = tiles();
    if (!all.length) return;
    var cur = document.activeElement;
    if (all.indexOf(cur) < 0) { all[0].focus(); return; }
    var a = cur.getBoundingClientRect();
    var ax = a.left + a.width / 2, ay = a.top + a.height / 2;
    var best = null, bestScore = Infinity;
    all.forEach(function (t) {
      if (t === cur) return;
      var b = t.getBoundingClientRect();
      var x = b.left + b.width / 2 - ax, y = b.top + b.height / 2 - ay;
      var along = x * dx + y * dy;
      if (along <= 1) return;
      var across = Math.abs(x * dy) + Math.abs(y * dx);
      var score = along + across * 2;
      if (score < bestScore) { bestScore = score; best = t; }
    });
    if (best) {
      best.focus();
      if (best.scrollIntoView) best.scrollIntoView({ block: 'nearest' });
    }
  }

  document.addEventListener('keydown', function (ev) {
    var k = ev.key;
    if (k === 'ArrowRight') move(1, 0);
    else if (k === 'ArrowLeft') move(-1, 0);
    else if (k === 'ArrowDown') move(0, 1);
    else if (k === 'ArrowUp') move(0, -1);
    else if (k === 'Enter' && document.activeElement && document.activeElement.classList.contains('tvh-tile')) {
      ev.preventDefault();
      location.href = document.activeElement.href;
      return;
    } else return;
    ev.preventDefault();
  });

  var timer = null;
  function refresh() {
    clearTimeout(timer);
    P.getJson('/api/live').then(function (list) { render(Array.isArray(list) ? list : []); }, function () {
      if (!tiles().length) render([]);
    }).then(function () { timer = setTimeout(refresh, 10000); });
  }
  refresh();
})();

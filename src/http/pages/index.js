// feiyan home page (/): the live list, refreshed every 5 s. Served at /assets/index.js.
(function () {
  'use strict';

  var REFRESH_MS = 5000;
  var KIND_LABELS = { lecture: '理论宣讲', film_class: '电影党史课' };

  var listEl = document.getElementById('list');
  var emptyEl = document.getElementById('empty');
  var emptyTitle = document.getElementById('empty-title');
  var emptyText = document.getElementById('empty-text');
  var noteEl = document.getElementById('note');
  var summaryEl = document.getElementById('summary');

  var cards = new Map(); // channel -> <li>
  var loadedOnce = false;
  var timer = null;

  function pad(n) { return n < 10 ? '0' + n : String(n); }

  function setText(el, text) {
    if (el.textContent !== text) el.textContent = text;
  }

  function formatStart(date) {
    var now = new Date();
    var hm = pad(date.getHours()) + ':' + pad(date.getMinutes());
    if (date.toDateString() === now.toDateString()) return hm;
    return (date.getMonth() + 1) + '月' + date.getDate() + '日 ' + hm;
  }

  function formatElapsed(date) {
    var mins = Math.floor((Date.now() - date.getTime()) / 60000);
    if (mins < 1) return '刚刚开播';
    if (mins < 60) return '已播 ' + mins + ' 分钟';
    var h = Math.floor(mins / 60), m = mins % 60;
    return '已播 ' + h + ' 小时' + (m ? ' ' + m + ' 分' : '');
  }

  function toCount(v) {
    var n = Number(v);
    return isFinite(n) && n >= 0 ? Math.floor(n) : 0;
  }

  function el(tag, className, parent) {
    var e = document.createElement(tag);
    if (className) e.className = className;
    if (parent) parent.appendChild(e);
    return e;
  }

  function createCard() {
    var li = el('li', 'item');
    var a = el('a', 'card', li);
    var head = el('div', 'card-head', a);
    var badge = el('span', 'badge', head);
    var live = el('span', 'live', head);
    live.textContent = '直播中';
    var title = el('h2', 'card-title', a);
    var station = el('p', 'card-station', a);
    var org = el('p', 'card-org', a);
    var meta = el('div', 'card-meta', a);
    var time = el('time', 'started', meta);
    var viewers = el('span', 'viewers', meta);
    var cta = el('span', 'card-cta', a);
    cta.textContent = '进入观看 →';
    li._f = { a: a, badge: badge, title: title, station: station, org: org, time: time, viewers: viewers };
    return li;
  }

  function updateCard(li, it) {
    var f = li._f;
    var href = '/watch/' + encodeURIComponent(String(it.channel));
    if (f.a.getAttribute('href') !== href) f.a.setAttribute('href', href);

    var kindLabel = KIND_LABELS[it.kind] || '直播';
    setText(f.badge, kindLabel);
    var badgeClass = 'badge kind-' + (KIND_LABELS[it.kind] ? it.kind : 'other');
    if (f.badge.className !== badgeClass) f.badge.className = badgeClass;

    setText(f.title, it.title ? String(it.title) : '（未命名直播）');
    setText(f.station, it.station ? String(it.station) : String(it.channel));
    var org = [it.center, it.institute].filter(function (x) { return x; }).join(' · ');
    setText(f.org, org);
    f.org.hidden = !org;

    var started = it.started_at ? new Date(it.started_at) : null;
    if (started && !isNaN(started.getTime())) {
      setText(f.time, formatStart(started) + ' 开播 · ' + formatElapsed(started));
      if (f.time.getAttribute('datetime') !== it.started_at) f.time.setAttribute('datetime', it.started_at);
    } else {
      setText(f.time, '');
    }
    setText(f.viewers, toCount(it.viewers) + ' 人在看');
  }

  function render(items) {
    var wanted = [];
    var seen = new Set();
    items.forEach(function (it) {
      if (!it || it.channel === undefined || it.channel === null) return;
      var key = String(it.channel);
      if (seen.has(key)) return;
      seen.add(key);
      wanted.push({ key: key, item: it });
    });

    // Remove channels that went offline first, so surviving cards are not
    // moved around (moving a node would drop keyboard / TV-remote focus).
    cards.forEach(function (li, key) {
      if (!seen.has(key)) {
        if (li.parentNode) li.parentNode.removeChild(li);
        cards.delete(key);
      }
    });

    wanted.forEach(function (w, i) {
      var li = cards.get(w.key);
      if (!li) {
        li = createCard();
        cards.set(w.key, li);
      }
      updateCard(li, w.item);
      var at = listEl.children[i] || null;
      if (at !== li) listEl.insertBefore(li, at);
    });

    var n = wanted.length;
    listEl.hidden = n === 0;
    emptyEl.hidden = n !== 0;
    if (n === 0) {
      setText(emptyTitle, '当前没有正在进行的直播');
      setText(emptyText, '各站点开播后会自动出现在这里，本页每 5 秒自动刷新。');
    }
    setText(summaryEl, n ? '共 ' + n + ' 个频道正在直播' : '');
  }

  function refresh() {
    clearTimeout(timer);
    timer = null;
    fetch('/api/live', { cache: 'no-store', headers: { Accept: 'application/json' } })
      .then(function (res) {
        if (!res.ok) throw new Error('HTTP ' + res.status);
        return res.json();
      })
      .then(function (data) {
        loadedOnce = true;
        render(Array.isArray(data) ? data : []);
        var now = new Date();
        noteEl.className = 'note';
        setText(noteEl, '每 5 秒自动刷新 · 更新于 ' + pad(now.getHours()) + ':' + pad(now.getMinutes()) + ':' + pad(now.getSeconds()));
      })
      .catch(function () {
        noteEl.className = 'note warn';
        setText(noteEl, '直播列表暂时无法获取，正在自动重试…');
        if (!loadedOnce) {
          listEl.hidden = true;
          emptyEl.hidden = false;
          setText(emptyTitle, '暂时无法连接服务器');
          setText(emptyText, '请检查网络，本页会自动重试。');
        }
      })
      .then(schedule);
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(refresh, REFRESH_MS);
  }

  // Coming back to the tab (or waking a TV/phone screen): refresh at once.
  document.addEventListener('visibilitychange', function () {
    if (!document.hidden) refresh();
  });

  refresh();
})();

// feiyan resident pages (/, /stations, /s/{channel}, /e/{id}, /tv): what they share:
// the programme's words and times, the resident's own station on this device, an item's
// line in a list, the countdown, and the live player (watch.js) brought in on demand.
// Needs nothing else. Served at /assets/portal.js.
(function () {
  'use strict';

  var KIND = { lecture: '理论宣讲', film_class: '电影党史课' };
  var STATUS = {
    scheduled: '待开始', live: '直播中', ended: '已结束', cancelled: '已取消', missed: '未开播'
  };
  var MINE = 'feiyan.myStation';

  function el(tag, className, parent, text) {
    var e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (parent) parent.appendChild(e);
    return e;
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

  // GET url as JSON; rejects with an Error whose `status` is the HTTP status.
  function getJson(url) {
    return fetch(url, { cache: 'no-store', headers: { Accept: 'application/json' } }).then(function (r) {
      if (!r.ok) { var e = new Error('HTTP ' + r.status); e.status = r.status; throw e; }
      return r.json();
    });
  }

  function pad(n) { return n < 10 ? '0' + n : String(n); }

  // Beijing time (Asia/Shanghai has no daylight saving time) whatever the device's zone.
  function parts(ms) {
    var d = new Date(ms + 8 * 3600 * 1000);
    return {
      year: d.getUTCFullYear(), month: d.getUTCMonth() + 1, day: d.getUTCDate(),
      weekday: '日一二三四五六'.charAt(d.getUTCDay()), hh: pad(d.getUTCHours()), mm: pad(d.getUTCMinutes())
    };
  }

  function dayKey(p) { return p.year * 10000 + p.month * 100 + p.day; }

  // "今天 19:30", "明天 19:30", "12月9日 周三 19:30" (with the year when not this year).
  function when(rfc3339) {
    var ms = Date.parse(rfc3339);
    if (!isFinite(ms)) return '';
    var p = parts(ms), now = parts(Date.now()), tomorrow = parts(Date.now() + 86400000);
    var hm = p.hh + ':' + p.mm;
    if (dayKey(p) === dayKey(now)) return '今天 ' + hm;
    if (dayKey(p) === dayKey(tomorrow)) return '明天 ' + hm;
    return (p.year === now.year ? '' : p.year + '年') + p.month + '月' + p.day + '日 周' + p.weekday + ' ' + hm;
  }

  // Time left as "2 天 3 小时 5 分 9 秒" (the larger units only when not zero).
  function countdown(msLeft) {
    var s = Math.max(0, Math.floor(msLeft / 1000));
    var d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
    var out = [];
    if (d) out.push(d + ' 天');
    if (d || h) out.push(h + ' 小时');
    if (d || h || m) out.push(m + ' 分');
    out.push(s % 60 + ' 秒');
    return out.join(' ');
  }

  // The resident's own station on this device: { channel, name } or null.
  function myStation() {
    try {
      var v = JSON.parse(localStorage.getItem(MINE) || 'null');
      return v && typeof v.channel === 'string' && v.channel ? v : null;
    } catch (e) { return null; }
  }
  function setMyStation(v) {
    try {
      if (v) localStorage.setItem(MINE, JSON.stringify({ channel: v.channel, name: v.name || v.channel }));
      else localStorage.removeItem(MINE);
    } catch (e) { /* private mode: nothing remembered */ }
  }

  // What an item is about: "主讲：张三 · 主题：……" or "影片：……".
  function about(it) {
    var bits = [];
    if (it.speaker) bits.push('主讲：' + it.speaker);
    if (it.topic) bits.push('主题：' + it.topic);
    if (it.film && it.film.title) bits.push('影片：《' + it.film.title + '》');
    return bits.join(' · ');
  }

  // One planned item as a list line linking to its page /e/{id}.
  function itemRow(it) {
    var li = el('li', 'item-row');
    var a = el('a', 'item-link', li);
    a.href = '/e/' + encodeURIComponent(String(it.id));
    var head = el('span', 'item-head', a);
    var t = el('time', 'item-when', head, when(it.starts_at));
    if (it.starts_at) t.setAttribute('datetime', String(it.starts_at));
    el('span', 'badge kind-' + (KIND[it.kind] ? it.kind : 'other'), head, KIND[it.kind] || '节目');
    if (it.status && it.status !== 'scheduled') el('span', 'item-status status-' + it.status, head, STATUS[it.status] || it.status);
    el('span', 'item-title', a, it.title || '（未命名）');
    var more = about(it);
    if (more) el('span', 'item-about', a, more);
    return li;
  }

  // Brings in the live player (/assets/watch.js) once; it plays the channel named by the
  // body's data-channel into the page's #player elements.
  var playerLoaded = false;
  function loadPlayer() {
    if (playerLoaded) return;
    playerLoaded = true;
    var s = document.createElement('script');
    s.src = '/assets/watch.js';
    document.body.appendChild(s);
  }

  window.Portal = {
    KIND: KIND, STATUS: STATUS, el: el, clear: clear, getJson: getJson, when: when,
    countdown: countdown, myStation: myStation, setMyStation: setMyStation, about: about,
    itemRow: itemRow, loadPlayer: loadPlayer
  };
})();

// feiyan directory (/stations): centers, then a center's institutes and their stations
// (?center=ID), or the stations whose name holds what was typed (?q=TEXT). Reads
// /api/directory. Every state is a real address, so Back works and a link can be shared.
// Served at /assets/stations.js.
(function () {
  'use strict';
  var P = window.Portal;
  function $(id) { return document.getElementById(id); }

  var listEl = $('list'), noteEl = $('note'), heading = $('heading'), crumbs = $('crumbs');
  var input = $('q');
  var params = new URLSearchParams(location.search);
  var q = (params.get('q') || '').trim();
  var center = params.get('center') || '';
  var seq = 0;
  input.value = q;

  function note(text) { noteEl.textContent = text; noteEl.hidden = !text; }

  function stationLink(parent, s, sub) {
    var li = P.el('li', 'dir-item', parent);
    var a = P.el('a', 'dir-link', li);
    a.href = '/s/' + encodeURIComponent(String(s.channel));
    P.el('span', 'dir-name', a, s.name);
    if (sub) P.el('span', 'dir-sub', a, sub);
    return li;
  }

  function centers() {
    heading.textContent = '找到我的站点';
    P.getJson('/api/directory').then(function (d) {
      var list = Array.isArray(d.centers) ? d.centers : [];
      P.clear(listEl);
      list.forEach(function (c) {
        var li = P.el('li', 'dir-item', listEl);
        var a = P.el('a', 'dir-link', li);
        a.href = '/stations?center=' + encodeURIComponent(String(c.id));
        P.el('span', 'dir-name', a, c.name);
        P.el('span', 'dir-sub', a, (c.stations || 0) + ' 个站点');
      });
      note(list.length ? '共 ' + list.length + ' 个中心，选择所在的中心：' : '还没有任何站点。');
    }, function () { note('目录暂时无法获取，请稍后刷新。'); });
  }

  function oneCenter(id) {
    P.getJson('/api/directory?center=' + encodeURIComponent(id)).then(function (d) {
      var name = d.center && d.center.name ? d.center.name : '中心';
      heading.textContent = name;
      document.title = name + ' · 找站点 · 飞燕';
      P.el('span', null, crumbs, ' › ' + name);
      var institutes = Array.isArray(d.institutes) ? d.institutes : [];
      P.clear(listEl);
      institutes.forEach(function (inst) {
        var li = P.el('li', 'dir-group', listEl);
        var details = P.el('details', 'dir-details', li);
        var stations = Array.isArray(inst.stations) ? inst.stations : [];
        var summary = P.el('summary', 'dir-summary', details);
        P.el('span', 'dir-name', summary, inst.name);
        P.el('span', 'dir-sub', summary, stations.length + ' 个站点');
        var ul = P.el('ul', 'dir-list nested', details);
        stations.forEach(function (s) { stationLink(ul, s); });
      });
      note(institutes.length ? '共 ' + institutes.length + ' 个所，点开所在的所，选择站点：' : '这个中心还没有站点。');
    }, function (e) {
      note(e && e.status === 404 ? '没有这个中心。' : '目录暂时无法获取，请稍后刷新。');
    });
  }

  function search(text) {
    var mine = ++seq;
    heading.textContent = '搜索：' + text;
    P.getJson('/api/directory?q=' + encodeURIComponent(text)).then(function (d) {
      if (mine !== seq) return;
      var list = Array.isArray(d.stations) ? d.stations : [];
      P.clear(listEl);
      list.forEach(function (s) {
        var c = s.center && typeof s.center === 'object' ? s.center.name : s.center;
        var i = s.institute && typeof s.institute === 'object' ? s.institute.name : s.institute;
        stationLink(listEl, s, [c, i].filter(function (x) { return x; }).join(' · '));
      });
      note(list.length ? '找到 ' + list.length + (list.length >= 50 ? '+' : '') + ' 个站点：' : '没有名称含“' + text + '”的站点，换个字试试。');
    }, function (e) {
      if (mine === seq) note(e && e.status === 400 ? '请换一个搜索词。' : '搜索暂时不可用，请稍后再试。');
    });
  }

  // Results follow the typing (after a short pause); the address follows too.
  var typing = null;
  input.addEventListener('input', function () {
    clearTimeout(typing);
    typing = setTimeout(function () {
      var text = input.value.trim();
      var url = text ? '/stations?q=' + encodeURIComponent(text) : '/stations';
      history.replaceState(null, '', url);
      if (text) search(text); else centers();
    }, 300);
  });

  if (q) search(q);
  else if (center) oneCenter(center);
  else centers();
})();

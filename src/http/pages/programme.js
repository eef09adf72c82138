// feiyan programme page (/programme, 节目单): today's or this week's lectures and film
// classes, city-wide or for one center or institute, by kind. The choice is kept in the
// URL (?center=&institute=&range=today|week&kind=) so a programme can be shared. Reads
// /api/directory and /api/programme. Served at /assets/programme.js.
(function () {
  'use strict';
  var P = window.Portal;
  function $(id) { return document.getElementById(id); }

  var center = $('center'), institute = $('institute'), range = $('range'), kind = $('kind');
  var note = $('note'), days = $('days');
  var query = new URLSearchParams(location.search);

  function option(select, value, text) {
    var o = P.el('option', null, select, text);
    o.value = String(value);
    return o;
  }

  // YYYY-MM-DD in Beijing time, `plus` days from today.
  function day(plus) {
    return new Date(Date.now() + 8 * 3600e3 + plus * 86400e3).toISOString().slice(0, 10);
  }

  function keep() {
    var q = new URLSearchParams();
    if (center.value) q.set('center', center.value);
    if (institute.value) q.set('institute', institute.value);
    if (range.value !== 'today') q.set('range', range.value);
    if (kind.value) q.set('kind', kind.value);
    var s = q.toString();
    history.replaceState(null, '', '/programme' + (s ? '?' + s : ''));
  }

  function load() {
    keep();
    var q = new URLSearchParams();
    if (institute.value) { q.set('level', 'institute'); q.set('id', institute.value); }
    else if (center.value) { q.set('level', 'center'); q.set('id', center.value); }
    else q.set('level', 'city');
    q.set('from', day(0));
    q.set('to', day(range.value === 'week' ? 6 : 0));
    if (kind.value) q.set('kind', kind.value);
    note.hidden = false;
    note.textContent = '正在加载…';
    P.getJson('/api/programme?' + q).then(function (res) {
      P.clear(days);
      var items = res.items || [];
      if (!items.length) { note.textContent = '这段时间没有安排节目。'; return; }
      note.textContent = '共 ' + items.length + ' 场' + (res.truncated ? '（只显示前 ' + items.length + ' 场，请缩小范围）' : '') + '。';
      var list = null, shown = '';
      items.forEach(function (it) {
        var heading = P.when(it.starts_at).replace(/ \d\d:\d\d$/, '');
        if (heading !== shown) {
          shown = heading;
          P.el('h2', 'day-head', days, heading);
          list = P.el('ol', 'items', days);
        }
        var li = P.itemRow(it);
        if (it.station && it.station.name) {
          var where = P.el('a', 'item-about', li, '地点：' + it.station.name);
          where.href = '/s/' + encodeURIComponent(it.station.channel);
        }
        list.appendChild(li);
      });
    }, function (e) {
      note.textContent = '暂时无法加载节目单（' + (e.status ? 'HTTP ' + e.status : '网络错误') + '），请稍后重试。';
    });
  }

  function loadInstitutes(then) {
    P.clear(institute);
    option(institute, '', '全部');
    institute.disabled = !center.value;
    if (!center.value) { then(); return; }
    P.getJson('/api/directory?center=' + encodeURIComponent(center.value)).then(function (d) {
      (d.institutes || []).forEach(function (i) { option(institute, i.id, i.name); });
      then();
    }, then);
  }

  center.addEventListener('change', function () { loadInstitutes(load); });
  [institute, range, kind].forEach(function (s) { s.addEventListener('change', load); });
  $('filters').addEventListener('submit', function (ev) { ev.preventDefault(); load(); });

  if (query.get('range') === 'week') range.value = 'week';
  if (query.get('kind') === 'lecture' || query.get('kind') === 'film_class') kind.value = query.get('kind');
  P.getJson('/api/directory').then(function (d) {
    (d.centers || []).forEach(function (c) { option(center, c.id, c.name); });
    if (query.get('center')) center.value = query.get('center');
    loadInstitutes(function () {
      if (query.get('institute')) institute.value = query.get('institute');
      load();
    });
  }, load);
})();

// feiyan home page (/): today's programme across the city, and the resident's own
// station, remembered on this device by its station page (设为我的站点): live now and its
// next three items, from /api/stations/{channel}/page every 60 s. The live list itself is
// index.js's.
// Served at /assets/home.js.
(function () {
  'use strict';
  var P = window.Portal;
  function $(id) { return document.getElementById(id); }

  // Today's programme across the city (Beijing day): what has not ended yet, the first
  // five by start, from /api/programme (at most 40 items read).
  function today() {
    var d = new Date(Date.now() + 8 * 3600 * 1000);
    var day = d.toISOString().slice(0, 10);
    P.getJson('/api/programme?level=city&from=' + day + '&to=' + day + '&limit=40').then(function (p) {
      var items = (Array.isArray(p.items) ? p.items : []).filter(function (it) {
        return it.status === 'scheduled' || it.status === 'live';
      });
      var list = $('today-list');
      P.clear(list);
      items.slice(0, 5).forEach(function (it) {
        var li = P.itemRow(it);
        if (it.station && it.station.name) P.el('span', 'item-about', li.firstChild, it.station.name);
        list.appendChild(li);
      });
      var more = $('today-more');
      more.hidden = !(items.length > 5 || p.truncated);
      more.textContent = '还有更多节目，请到各站点页面查看。';
      $('today').hidden = items.length === 0;
    }, function () { /* the live list below still works */ });
  }
  today();

  var mine = P.myStation();
  if (!mine) return;
  var box = $('mine-box'), link = $('mine-link'), list = $('mine-upcoming');
  link.textContent = mine.name || mine.channel;
  link.href = '/s/' + encodeURIComponent(mine.channel);
  box.hidden = false;

  function refresh() {
    P.getJson('/api/stations/' + encodeURIComponent(mine.channel) + '/page').then(function (d) {
      if (d.station && d.station.name) link.textContent = d.station.name;
      var live = d.live;
      $('mine-live').hidden = !live;
      if (live) {
        var a = $('mine-live-link');
        a.textContent = live.title || '进入观看';
        a.href = live.item_id !== null && live.item_id !== undefined
          ? '/e/' + encodeURIComponent(String(live.item_id)) : '/watch/' + encodeURIComponent(mine.channel);
      }
      var upcoming = (Array.isArray(d.upcoming) ? d.upcoming : []).slice(0, 3);
      P.clear(list);
      upcoming.forEach(function (it) { list.appendChild(P.itemRow(it)); });
      $('mine-empty').hidden = upcoming.length > 0;
    }, function (e) {
      // A station that no longer exists is forgotten.
      if (e && e.status === 404) { P.setMyStation(null); box.hidden = true; }
    }).then(function () { setTimeout(refresh, 60000); });
  }
  refresh();
})();

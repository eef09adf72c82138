// feiyan request menu (点单) on the station page (/s/{channel}): the station's center's
// service menu, a request form (nickname, preferred period, optional phone kept only with
// the consent box ticked) and this device's requests with their states. Fills
// #station-interaction from /api/stations/{channel}/menu and .../requests/mine; posts to
// .../requests. The device is the fy_dev cookie the page set. Served at /assets/request.js.
(function () {
  'use strict';
  var box = document.getElementById('station-interaction');
  if (!box) return;
  var channel = box.getAttribute('data-channel') || '';
  var base = '/api/stations/' + encodeURIComponent(channel);
  var STATUS = {
    requested: '已提交，等待安排', scheduled: '已安排，等待站点接单', accepted: '站点已接单',
    declined: '站点未能接单', done: '已完成', cancelled: '已撤回'
  };
  var KIND = { lecture: '理论宣讲', film_class: '电影党史课' };

  function el(tag, className, parent, text) {
    var e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined && text !== null) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }
  function json(url, opts) {
    opts = opts || {};
    opts.credentials = 'same-origin';
    opts.cache = 'no-store';
    opts.headers = opts.headers || {};
    opts.headers.Accept = 'application/json';
    return fetch(url, opts).then(function (r) {
      return r.text().then(function (t) {
        // Errors come as plain text a person can act on.
        if (!r.ok) throw new Error((t || '').trim() || ('HTTP ' + r.status));
        try { return t ? JSON.parse(t) : null; } catch (e) { return null; }
      });
    });
  }

  var section = el('section', 'block request-block', box);
  section.id = 'request-section';
  section.setAttribute('aria-labelledby', 'request-heading');
  var h = el('h2', null, section, '我要点单');
  h.id = 'request-heading';
  el('p', 'sub', section, '从服务菜单里选一项，告诉站点您想听的宣讲或想看的电影。');
  var form = el('form', 'request-form', section);
  form.id = 'request-form';
  form.noValidate = true;

  function field(label, input) {
    var l = el('label', 'request-field', form);
    el('span', null, l, label);
    l.appendChild(input);
    return input;
  }
  var select = document.createElement('select');
  select.id = 'request-item';
  select.required = true;
  field('服务项目', select);
  var nick = document.createElement('input');
  nick.id = 'request-nickname';
  nick.maxLength = 40;
  nick.required = true;
  nick.autocomplete = 'nickname';
  nick.placeholder = '如：李阿姨';
  field('称呼', nick);
  var period = document.createElement('input');
  period.id = 'request-period';
  period.maxLength = 100;
  period.placeholder = '如：下周六上午';
  field('期望时间', period);
  var phone = document.createElement('input');
  phone.id = 'request-phone';
  phone.type = 'tel';
  phone.inputMode = 'tel';
  phone.maxLength = 20;
  phone.autocomplete = 'tel';
  phone.placeholder = '选填';
  field('联系电话（选填）', phone);
  var consentLabel = el('label', 'request-consent', form);
  var consent = document.createElement('input');
  consent.type = 'checkbox';
  consent.id = 'request-consent';
  consentLabel.appendChild(consent);
  el('span', null, consentLabel, '我同意保留电话，仅供管理员联系我；请求结束 90 天后删除。');
  var submit = el('button', 'btn primary', form, '提交点单');
  submit.type = 'submit';
  submit.id = 'request-submit';
  var note = el('p', 'note', form);
  note.id = 'request-note';
  note.setAttribute('aria-live', 'polite');

  var mineHead = el('h3', null, section, '我的点单');
  mineHead.id = 'request-mine-heading';
  var mineList = el('ul', 'items', section);
  mineList.id = 'request-mine';
  var mineEmpty = el('p', 'empty-line', section, '这台设备还没有在本站点单。');
  mineEmpty.id = 'request-mine-empty';

  function loadMenu() {
    return json(base + '/menu').then(function (data) {
      var items = data && Array.isArray(data.items) ? data.items : [];
      while (select.firstChild) select.removeChild(select.firstChild);
      var first = el('option', null, select, items.length ? '请选择' : '本中心暂未设置服务菜单');
      first.value = '';
      items.forEach(function (it) {
        var text = '【' + (KIND[it.kind] || it.kind) + '】' + it.title + (it.speaker ? '（' + it.speaker + '）' : '');
        var o = el('option', null, select, text);
        o.value = String(it.id);
      });
      submit.disabled = items.length === 0;
    }, function (e) {
      note.textContent = '服务菜单暂时无法获取：' + e.message;
    });
  }

  function loadMine() {
    return json(base + '/requests/mine').then(function (data) {
      var list = data && Array.isArray(data.requests) ? data.requests : [];
      while (mineList.firstChild) mineList.removeChild(mineList.firstChild);
      list.forEach(function (r) {
        var li = el('li', 'item-row request-row', mineList);
        li.setAttribute('data-status', r.status);
        el('span', 'item-title', li, (r.item && r.item.title) || '');
        var bits = [STATUS[r.status] || r.status];
        if (r.decline_reason) bits.push('原因：' + r.decline_reason);
        if (r.period) bits.push('期望：' + r.period);
        el('span', 'item-about request-status', li, bits.join(' · '));
        if (r.planned_item_id !== null && r.planned_item_id !== undefined) {
          var a = el('a', null, li, '查看节目 →');
          a.href = '/e/' + encodeURIComponent(String(r.planned_item_id));
        }
      });
      mineEmpty.hidden = list.length > 0;
    }, function () { /* keep what is shown */ });
  }

  form.addEventListener('submit', function (ev) {
    ev.preventDefault();
    var id = parseInt(select.value, 10);
    if (!id) { note.textContent = '请先选择服务项目。'; select.focus(); return; }
    if (!nick.value.trim()) { note.textContent = '请填写称呼。'; nick.focus(); return; }
    var body = { menu_id: id, nickname: nick.value.trim(), period: period.value.trim() };
    if (phone.value.trim()) {
      if (!consent.checked) { note.textContent = '留电话需要勾选同意；不留电话也可以提交。'; consent.focus(); return; }
      body.phone = phone.value.trim();
      body.consent = true;
    }
    submit.disabled = true;
    note.textContent = '正在提交…';
    json(base + '/requests', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body)
    }).then(function () {
      note.textContent = '已提交，站点安排后这里会显示进展。';
      phone.value = '';
      consent.checked = false;
      return loadMine();
    }, function (e) {
      note.textContent = '未能提交：' + e.message;
    }).then(function () { submit.disabled = false; });
  });

  loadMenu();
  loadMine();
  setInterval(function () { if (!document.hidden) loadMine(); }, 60000);
})();

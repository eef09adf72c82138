// feiyan live interaction, the host's panel: questions in order (mark answered), messages
// held by the word list (approve), recent messages; pin, delete, mute a device for the
// session. Served at /assets/chat-host.js. It mounts into
//   <section id="interaction-host" data-channel="st-1" data-key-input="key"></section>
// (data-channel optional: else the path segment after /publish/; data-key-input: the id
// of the input holding the station's stream key or an administrator's token, default
// "key"; without such an input, the dashboard's login in sessionStorage `feiyan_token`,
// so the same element works on /admin) and reads /api/interaction/{channel}/host every
// 2 s while it has one. /admin mounts one panel per chosen live session itself:
// window.feiyanChatHost.mount(element, channel) -> { stop() }.
(function () {
  'use strict';
  function channelName(root) {
    if (root.getAttribute('data-channel')) return root.getAttribute('data-channel');
    var parts = location.pathname.split('/').filter(function (p) { return p; });
    var i = parts.indexOf('publish');
    try { return i >= 0 && parts[i + 1] ? decodeURIComponent(parts[i + 1]) : ''; } catch (e) { return ''; }
  }
  window.feiyanChatHost = { mount: mount };
  var auto = document.getElementById('interaction-host');
  if (auto && channelName(auto)) mount(auto, channelName(auto));

function mount(root, channel) {
  var base = '/api/interaction/' + encodeURIComponent(channel);
  var keyInput = document.getElementById(root.getAttribute('data-key-input') || 'key');

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  root.classList.add('ia', 'ia-host');
  root.appendChild(el('h2', 'ia-title', '互动管理'));
  var summary = el('p', 'ia-counts', '填写推流密钥后显示观众的提问和消息。');
  root.appendChild(summary);
  var pinBox = el('div', 'ia-pin'); pinBox.hidden = true; root.appendChild(pinBox);
  var sections = {};
  [['held', '待审核（含敏感词）'], ['questions', '提问（按时间）'], ['recent', '最新消息']].forEach(function (s) {
    root.appendChild(el('h3', '', s[1]));
    var ol = el('ol', 'ia-list'); ol.setAttribute('data-list', s[0]);
    root.appendChild(ol);
    sections[s[0]] = ol;
  });
  var note = el('p', 'ia-note', ''); note.setAttribute('role', 'status'); root.appendChild(note);

  function bearer() {
    if (keyInput) return keyInput.value.trim();
    try { return sessionStorage.getItem('feiyan_token') || ''; } catch (e) { return ''; }
  }
  function call(method, path) {
    return fetch(base + path, { method: method, headers: { authorization: 'Bearer ' + bearer() } })
      .then(function (r) {
        return r.json().then(function (j) { return { ok: r.ok, status: r.status, body: j }; },
          function () { return { ok: r.ok, status: r.status, body: {} }; });
      });
  }
  function act(method, path) {
    call(method, path).then(function (res) {
      note.textContent = res.ok ? '' : ((res.body && res.body.error) || ('操作失败（' + res.status + '）'));
      note.classList.toggle('bad', !res.ok);
      refresh();
    }, function () { note.textContent = '网络错误'; note.classList.add('bad'); });
  }
  function button(label, method, path) {
    var b = el('button', '', label); b.type = 'button';
    b.addEventListener('click', function () { act(method, path); });
    return b;
  }
  function item(m, list) {
    var li = el('li', 'ia-msg' + (m.state === 'held' ? ' held' : '') + (m.answered ? ' answered' : ''));
    li.setAttribute('data-id', String(m.id));
    if (m.kind === 'question') li.appendChild(el('span', 'ia-badge', '问'));
    li.appendChild(el('span', 'ia-who', m.nickname));
    li.appendChild(el('span', 'ia-body', m.text));
    li.appendChild(el('span', 'ia-dev', '设备 ' + m.device + (m.muted ? '（已禁言）' : '')));
    var p = '/messages/' + m.id;
    if (m.state === 'held') li.appendChild(button('通过', 'POST', p + '/approve'));
    if (list === 'questions') {
      li.appendChild(m.answered ? button('取消已答', 'POST', p + '/unanswer') : button('标记已答', 'POST', p + '/answer'));
    }
    if (m.state !== 'held') li.appendChild(button('置顶', 'POST', p + '/pin'));
    li.appendChild(button('删除', 'DELETE', p));
    if (!m.muted) li.appendChild(button('禁言', 'POST', p + '/mute'));
    return li;
  }
  function show(view) {
    summary.textContent = (view.session_id ? '场次 ' + view.session_id : '尚未开播') +
      ' · 在看互动 ' + view.watchers + ' · 点赞 ' + view.likes + ' · 签到 ' + view.checkins +
      ' · 提问 ' + view.questions.length + '（未答 ' + view.questions.filter(function (q) { return !q.answered; }).length + '）' +
      (view.muted ? ' · 禁言设备 ' + view.muted : '');
    pinBox.textContent = '';
    pinBox.hidden = !view.pinned;
    if (view.pinned) {
      pinBox.appendChild(el('span', 'ia-pin-label', '置顶'));
      pinBox.appendChild(el('span', 'ia-who', view.pinned.nickname));
      pinBox.appendChild(el('span', 'ia-body', view.pinned.text + ' '));
      pinBox.appendChild(button('取消置顶', 'DELETE', '/pin'));
    }
    Object.keys(sections).forEach(function (k) {
      var ol = sections[k];
      ol.textContent = '';
      var rows = view[k] || [];
      if (k === 'recent') rows = rows.slice().reverse();
      rows.forEach(function (m) { ol.appendChild(item(m, k)); });
    });
  }
  var busy = false;
  function refresh() {
    if (busy || !bearer()) return;
    busy = true;
    call('GET', '/host').then(function (res) {
      busy = false;
      if (res.ok) show(res.body);
      else summary.textContent = (res.body && res.body.error) || ('无法读取互动（' + res.status + '）');
    }, function () { busy = false; });
  }
  var timer = setInterval(refresh, 2000);
  if (keyInput) keyInput.addEventListener('change', refresh);
  refresh();
  return { stop: function () { clearInterval(timer); } };
}
})();

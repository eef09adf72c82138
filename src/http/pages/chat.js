// feiyan live interaction widget: chat (聊天), questions (提问), likes (点赞) and
// check-in (签到) for residents. Served at /assets/chat.js; self-contained (no other
// script needed). It mounts into
//   <section id="interaction" data-channel="st-1"></section>
// (data-channel optional: else the channel is the path segment after /watch/ or /s/),
// and shows the host's pinned message in <div id="interaction-pin" hidden></div> when the
// page has one (put it above the player), else at the top of the section.
// News arrives over Server-Sent Events from /api/interaction/{channel}/events.
(function () {
  'use strict';
  var root = document.getElementById('interaction');
  if (!root || typeof EventSource === 'undefined') return;

  function channelName() {
    if (root.getAttribute('data-channel')) return root.getAttribute('data-channel');
    var parts = location.pathname.split('/').filter(function (p) { return p; });
    var i = Math.max(parts.indexOf('watch'), parts.indexOf('s'));
    try { return i >= 0 && parts[i + 1] ? decodeURIComponent(parts[i + 1]) : ''; } catch (e) { return ''; }
  }
  var channel = channelName();
  if (!channel) return;
  var base = '/api/interaction/' + encodeURIComponent(channel);

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function store(key, value) {
    try {
      if (value === undefined) return localStorage.getItem(key) || '';
      localStorage.setItem(key, value);
    } catch (e) { /* private mode */ }
    return '';
  }

  // ---------- markup ----------
  root.classList.add('ia');
  root.setAttribute('aria-label', '互动');
  var pin = document.getElementById('interaction-pin');
  if (!pin) { pin = el('div'); pin.id = 'interaction-pin'; pin.hidden = true; root.appendChild(pin); }
  pin.classList.add('ia-pin');
  pin.setAttribute('role', 'status');
  var head = el('div', 'ia-head');
  head.appendChild(el('h2', 'ia-title', '互动'));
  var counts = el('span', 'ia-counts', '');
  counts.setAttribute('aria-live', 'off');
  head.appendChild(counts);
  root.appendChild(head);
  var list = el('ol', 'ia-list');
  list.setAttribute('aria-live', 'polite');
  list.setAttribute('aria-label', '互动消息');
  root.appendChild(list);
  var empty = el('p', 'ia-empty', '还没有消息，来说两句吧。');
  root.appendChild(empty);

  var form = el('form', 'ia-form');
  form.setAttribute('autocomplete', 'off');
  form.noValidate = true;
  var nick = el('input', 'ia-nick');
  nick.type = 'text'; nick.maxLength = 20; nick.placeholder = '昵称'; nick.setAttribute('aria-label', '昵称');
  nick.value = store('feiyan.nickname');
  var text = el('input', 'ia-text');
  text.type = 'text'; text.maxLength = 200; text.placeholder = '说点什么，或向主讲人提问'; text.setAttribute('aria-label', '消息内容');
  var send = el('button', 'btn primary ia-send', '发送'); send.type = 'submit';
  var ask = el('button', 'btn ia-ask', '提问'); ask.type = 'button';
  var like = el('button', 'btn ia-like', '👍 点赞'); like.type = 'button';
  var checkin = el('button', 'btn ia-checkin', '签到'); checkin.type = 'button';
  var row1 = el('div', 'ia-row'); row1.appendChild(nick); row1.appendChild(text);
  var row2 = el('div', 'ia-row'); row2.appendChild(send); row2.appendChild(ask); row2.appendChild(like); row2.appendChild(checkin);
  form.appendChild(row1); form.appendChild(row2);
  var note = el('p', 'ia-note', '');
  note.setAttribute('role', 'status');
  root.appendChild(form);
  root.appendChild(note);

  // ---------- state ----------
  var lastEv = -1;
  var items = {};   // id -> li
  var likes = 0, checkins = 0;

  function say(msg, bad) { note.textContent = msg || ''; note.classList.toggle('bad', !!bad); }
  function showCounts() { counts.textContent = '点赞 ' + likes + ' · 签到 ' + checkins; }

  function render(m) {
    var li = el('li', 'ia-msg' + (m.kind === 'question' ? ' q' : '') + (m.answered ? ' answered' : ''));
    li.setAttribute('data-id', String(m.id));
    if (m.kind === 'question') li.appendChild(el('span', 'ia-badge', '问'));
    li.appendChild(el('span', 'ia-who', m.nickname));
    li.appendChild(el('span', 'ia-body', m.text));
    li.appendChild(el('span', 'ia-done', '已回答'));
    return li;
  }
  function add(m) {
    if (items[m.id]) return;
    var li = render(m);
    items[m.id] = li;
    var stick = list.scrollTop + list.clientHeight >= list.scrollHeight - 30;
    list.appendChild(li);
    while (list.children.length > 200) {
      var old = list.firstChild;
      delete items[old.getAttribute('data-id')];
      list.removeChild(old);
    }
    empty.hidden = true;
    if (stick) list.scrollTop = list.scrollHeight;
  }
  function setPinned(m) {
    pin.textContent = '';
    pin.hidden = !m;
    if (!m) return;
    pin.appendChild(el('span', 'ia-pin-label', '置顶'));
    pin.appendChild(el('span', 'ia-who', m.nickname));
    pin.appendChild(el('span', 'ia-body', m.text));
  }
  function reset(snap) {
    list.textContent = '';
    items = {};
    (snap.messages || []).forEach(add);
    empty.hidden = list.children.length > 0;
    setPinned(snap.pinned);
    likes = snap.likes || 0; checkins = snap.checkins || 0;
    showCounts();
    lastEv = snap.ev;
  }
  function apply(e) {
    if (e.ev <= lastEv) return;
    if (e.type === 'message') add(e.message);
    else if (e.type === 'deleted') {
      var li = items[e.id];
      if (li) { li.parentNode.removeChild(li); delete items[e.id]; }
      empty.hidden = list.children.length > 0;
    } else if (e.type === 'answered') {
      if (items[e.id]) items[e.id].classList.toggle('answered', e.answered);
    } else if (e.type === 'pinned') setPinned(e.message);
    else if (e.type === 'session') { reset(e.snapshot); return; }
    lastEv = e.ev;
  }

  function connect() {
    var es = new EventSource(base + '/events');
    es.addEventListener('snapshot', function (m) {
      try { reset(JSON.parse(m.data)); } catch (e) { /* ignore a bad frame */ }
    });
    es.addEventListener('batch', function (m) {
      var b;
      try { b = JSON.parse(m.data); } catch (e) { return; }
      (b.events || []).forEach(apply);
      if (b.ev > lastEv) lastEv = b.ev;
      likes = b.likes; checkins = b.checkins;
      showCounts();
    });
    // EventSource reconnects by itself (the server asks for 2 s) and starts from a new
    // snapshot; nothing else to do.
  }
  connect();

  // ---------- sending ----------
  function post(path, body) {
    return fetch(base + path, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body)
    }).then(function (r) {
      return r.json().then(function (j) { return { ok: r.ok, status: r.status, body: j }; },
        function () { return { ok: r.ok, status: r.status, body: {} }; });
    });
  }
  function reason(res) {
    if (res.status === 429) return '发得太快了，请 ' + (res.body.retry_after_s || 1) + ' 秒后再试';
    if (res.status === 409) return '直播开始后才能互动';
    if (res.status === 403) return '主持人已将本设备禁言';
    return (res.body && res.body.error) || ('发送失败（' + res.status + '）');
  }
  function nickname() {
    var n = nick.value.trim();
    if (!n) { say('请先填写昵称', true); nick.focus(); return ''; }
    store('feiyan.nickname', n);
    return n;
  }
  function sendText(kind) {
    var n = nickname();
    if (!n) return;
    var t = text.value.trim();
    if (!t) { say('请输入内容', true); text.focus(); return; }
    post('/messages', { nickname: n, text: t, kind: kind }).then(function (res) {
      if (!res.ok) { say(reason(res), true); return; }
      text.value = '';
      say(res.body.state === 'held' ? '已提交，主持人审核后显示' : (kind === 'question' ? '提问已发送' : ''));
    }, function () { say('网络错误，请稍后再试', true); });
  }
  form.addEventListener('submit', function (e) { e.preventDefault(); sendText('chat'); });
  ask.addEventListener('click', function () { sendText('question'); });

  // Taps are counted here and sent together at most once a second.
  var taps = 0, timer = null;
  function flushLikes() {
    timer = null;
    var n = Math.min(taps, 20);
    if (!n) return;
    taps -= n;
    post('/likes', { count: n }).then(function (res) {
      if (res.ok) { likes = Math.max(likes, res.body.likes); showCounts(); }
      else if (res.status === 429) { taps += n; timer = setTimeout(flushLikes, 1000); }
      else say(reason(res), true);
    }, function () { /* dropped */ });
    if (taps && !timer) timer = setTimeout(flushLikes, 1100);
  }
  like.addEventListener('click', function () {
    taps++;
    likes++; showCounts();
    if (!timer) timer = setTimeout(flushLikes, 300);
  });
  checkin.addEventListener('click', function () {
    var n = nickname();
    if (!n) return;
    post('/checkin', { nickname: n }).then(function (res) {
      if (!res.ok) { say(reason(res), true); return; }
      checkin.disabled = true;
      checkin.textContent = '已签到';
      checkins = Math.max(checkins, res.body.checkins); showCounts();
      say(res.body['new'] ? '签到成功' : '您已签到');
    }, function () { say('网络错误，请稍后再试', true); });
  });
})();

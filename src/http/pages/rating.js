// feiyan rating widget (评单): residents rate a session that has ended, 1 to 5 stars and an
// optional comment, once per device. Served at /assets/rating.js; a page calls
// Feiyan.mountRating(element, sessionId) once it knows the session (the replay page; the
// event page after its session ends). The element gets the form, the public average, and
// the server's reason when a rating is refused.
(function () {
  'use strict';

  var F = window.Feiyan;
  var MAX_COMMENT = 300;

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text) e.textContent = text;
    return e;
  }

  function summaryText(r) {
    if (!r || !r.count) return '还没有人评价，欢迎第一个评价。';
    return '平均 ' + Number(r.average).toFixed(1) + ' 分 · ' + r.count + ' 人评价';
  }

  function mountRating(root, sessionId) {
    if (!root || !/^[0-9]{1,18}$/.test(String(sessionId))) return;
    var url = '/api/sessions/' + sessionId + '/ratings';
    root.textContent = '';
    root.classList.add('rating');
    root.appendChild(el('h2', { 'class': 'rating-title' }, '为这场活动评分'));
    var summary = el('p', { 'class': 'rating-summary', 'aria-live': 'polite' }, '加载中…');
    root.appendChild(summary);

    var form = el('form', { 'class': 'rating-form', hidden: '' });
    var stars = el('div', { 'class': 'stars', role: 'radiogroup', 'aria-label': '评分（1 到 5 星）' });
    var chosen = 0;
    var buttons = [];
    function paint() {
      buttons.forEach(function (b, i) {
        b.classList.toggle('on', i < chosen);
        b.setAttribute('aria-checked', i + 1 === chosen ? 'true' : 'false');
      });
      send.disabled = chosen === 0;
    }
    for (var i = 1; i <= 5; i++) {
      var b = el('button', { type: 'button', 'class': 'star', role: 'radio', 'aria-label': i + ' 星', 'data-score': String(i) }, '★');
      b.addEventListener('click', function (ev) {
        chosen = Number(ev.currentTarget.getAttribute('data-score'));
        paint();
      });
      buttons.push(b);
      stars.appendChild(b);
    }
    form.appendChild(stars);
    var comment = el('textarea', { 'class': 'rating-comment', rows: '3', maxlength: String(MAX_COMMENT), placeholder: '说说您的感受（可不填，最多 300 字）', 'aria-label': '评价内容' });
    form.appendChild(comment);
    var send = el('button', { type: 'submit', 'class': 'btn primary' }, '提交评价');
    form.appendChild(send);
    var problem = el('p', { 'class': 'rating-problem', role: 'alert', hidden: '' });
    form.appendChild(problem);
    root.appendChild(form);
    paint();

    function thanks(r) {
      form.hidden = true;
      summary.textContent = '感谢您的评价！' + summaryText(r);
    }

    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      if (!chosen) return;
      send.disabled = true;
      problem.hidden = true;
      F.fetchWithTimeout(url, {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ score: chosen, comment: comment.value.trim() })
      }, 15000).then(function (res) {
        if (res.ok) return res.json().then(thanks);
        return F.safeText(res).then(function (text) {
          if (res.status === 409 && /already rated/.test(text)) { load(); return; }
          problem.hidden = false;
          problem.textContent = '未能提交（' + res.status + '）：' + F.shorten(text);
          send.disabled = false;
        });
      }).catch(function (e) {
        problem.hidden = false;
        problem.textContent = '网络错误（' + F.errMsg(e) + '），请稍后再试。';
        send.disabled = false;
      });
    });

    function load() {
      F.fetchWithTimeout(url, { cache: 'no-store', credentials: 'same-origin' }, 15000)
        .then(function (res) { return res.ok ? res.json() : null; })
        .then(function (r) {
          if (!r) { summary.textContent = '暂时无法加载评价。'; return; }
          if (r.rated) { thanks(r); return; }
          summary.textContent = summaryText(r);
          form.hidden = false;
        })
        .catch(function () { summary.textContent = '暂时无法加载评价。'; });
    }
    load();
  }

  F.mountRating = mountRating;
})();

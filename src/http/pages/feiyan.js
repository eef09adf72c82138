// feiyan pages: helpers shared by the watch and publish pages. Served at /assets/feiyan.js.
(function () {
  'use strict';
  function $(id) { return document.getElementById(id); }
  function noop() {}

  function channelFromPath(prefix) {
    var parts = location.pathname.split('/').filter(function (p) { return p; });
    var i = parts.indexOf(prefix);
    var raw = i >= 0 ? parts[i + 1] : '';
    if (!raw) return '';
    try { return decodeURIComponent(raw); } catch (e) { return raw; }
  }

  function errMsg(e) {
    if (!e) return '未知错误';
    if (e.name === 'AbortError') return '请求超时';
    return e.message || String(e);
  }

  function fetchWithTimeout(url, opts, ms) {
    if (typeof AbortController === 'undefined') return fetch(url, opts);
    var ac = new AbortController();
    var t = setTimeout(function () { ac.abort(); }, ms);
    return fetch(url, Object.assign({}, opts, { signal: ac.signal })).then(
      function (r) { clearTimeout(t); return r; },
      function (e) { clearTimeout(t); throw e; });
  }

  function safeText(res) {
    return res.text().then(function (t) { return t; }, function () { return ''; });
  }

  function shorten(text) {
    text = String(text || '').trim();
    return text.length > 300 ? text.slice(0, 300) + '…' : text;
  }

  // Non-trickle: resolve once ICE gathering is complete, or after `ms`.
  function waitIceGathering(pc, ms) {
    return new Promise(function (resolve) {
      if (pc.iceGatheringState === 'complete') { resolve(); return; }
      var t;
      function done() {
        clearTimeout(t);
        pc.removeEventListener('icegatheringstatechange', onState);
        pc.removeEventListener('icecandidate', onCandidate);
        resolve();
      }
      function onState() { if (pc.iceGatheringState === 'complete') done(); }
      function onCandidate(ev) { if (!ev.candidate) done(); }
      t = setTimeout(done, ms);
      pc.addEventListener('icegatheringstatechange', onState);
      pc.addEventListener('icecandidate', onCandidate);
    });
  }

  function pcState(pc) {
    if (pc.connectionState) return pc.connectionState;
    var s = pc.iceConnectionState;
    if (s === 'completed') return 'connected';
    if (s === 'checking') return 'connecting';
    return s;
  }

  function deleteResource(url, keepalive) {
    try {
      fetch(url, { method: 'DELETE', keepalive: !!keepalive }).catch(noop);
    } catch (e) { /* ignore */ }
  }
  window.Feiyan = {
    $: $,
    noop: noop,
    channelFromPath: channelFromPath,
    errMsg: errMsg,
    fetchWithTimeout: fetchWithTimeout,
    safeText: safeText,
    shorten: shorten,
    waitIceGathering: waitIceGathering,
    pcState: pcState,
    deleteResource: deleteResource,
  };
})();

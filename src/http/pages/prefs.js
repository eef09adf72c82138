// feiyan resident pages: the large-type mode (大字模式), remembered on this device.
// Loaded in <head>, so the page never paints in small type first. Served at /assets/prefs.js.
(function () {
  'use strict';
  var KEY = 'feiyan.bigType';
  var root = document.documentElement;

  function stored() {
    try { return localStorage.getItem(KEY) === '1'; } catch (e) { return false; }
  }

  function apply(on) {
    if (on) root.classList.add('big-type'); else root.classList.remove('big-type');
    var buttons = document.querySelectorAll('[data-big-type]');
    for (var i = 0; i < buttons.length; i++) {
      buttons[i].setAttribute('aria-pressed', on ? 'true' : 'false');
      buttons[i].textContent = on ? '标准字号' : '大字模式';
    }
  }

  apply(stored());

  document.addEventListener('DOMContentLoaded', function () {
    apply(root.classList.contains('big-type'));
    var buttons = document.querySelectorAll('[data-big-type]');
    for (var i = 0; i < buttons.length; i++) {
      buttons[i].addEventListener('click', function () {
        var on = !root.classList.contains('big-type');
        try { localStorage.setItem(KEY, on ? '1' : '0'); } catch (e) { /* private mode */ }
        apply(on);
      });
    }
  });
})();

// feiyan poster (/e/{id}/poster): the print button. Served at /assets/poster.js.
(function () {
  'use strict';
  var b = document.getElementById('print');
  if (b) b.addEventListener('click', function () { window.print(); });
})();

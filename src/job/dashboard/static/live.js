// Live update: every 3 s, each element with data-live="<fragment url>" is refetched and its
// contents swapped (same origin only; no inline script, so CSP script-src 'self' holds).
(function () {
  "use strict";
  function refresh() {
    document.querySelectorAll("[data-live]").forEach(function (el) {
      var url = el.getAttribute("data-live");
      fetch(url, { credentials: "same-origin", headers: { "X-Requested-With": "live.js" } })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) { if (html !== null) { el.innerHTML = html; } })
        .catch(function () { /* keep the last view */ });
    });
  }
  setInterval(refresh, 3000);
})();

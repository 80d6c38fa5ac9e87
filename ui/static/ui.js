// fleetctl ui: refreshes a page's live part (#live) every few seconds by
// fetching the same page with ?fragment=live. Without JavaScript the pages
// work the same; they just do not update until reloaded.
"use strict";
(function () {
  document.documentElement.classList.add("js");
  var live = document.getElementById("live");
  if (!live) return;
  var every = 5000;
  function url() {
    var u = new URL(window.location.href);
    u.searchParams.set("fragment", "live");
    return u.toString();
  }
  function refresh() {
    // Leave the part alone while a control inside it has the focus, so
    // that a keyboard user does not lose their place.
    if (live.contains(document.activeElement) && document.activeElement !== live) {
      setTimeout(refresh, every);
      return;
    }
    fetch(url(), { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) { live.innerHTML = html; })
      .catch(function () { /* the next round tries again */ })
      .finally(function () { setTimeout(refresh, every); });
  }
  setTimeout(refresh, every);
})();

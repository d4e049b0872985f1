// Rewrites <time data-local> elements (written in the catalog's time zone by the `when`
// template filter) in the reader's own time zone, as "7 Dec 2026, 14:05". The exact ISO
// time stays in the title, shown on hover.
(function () {
  "use strict";
  function pad(n) { return n < 10 ? "0" + n : String(n); }
  var months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  function localize(root) {
    var nodes = (root || document).querySelectorAll("time[data-local]");
    for (var i = 0; i < nodes.length; i++) {
      var node = nodes[i];
      var at = new Date(node.getAttribute("datetime"));
      if (isNaN(at.getTime())) { continue; }
      node.textContent = at.getDate() + " " + months[at.getMonth()] + " " + at.getFullYear() + ", " +
        pad(at.getHours()) + ":" + pad(at.getMinutes());
      node.removeAttribute("data-local");
    }
  }
  document.addEventListener("DOMContentLoaded", function () { localize(document); });
  document.addEventListener("htmx:afterSwap", function (event) { localize(event.target); });
})();

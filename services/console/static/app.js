// Live updates over server-sent events: new deliveries appear at the top of
// the deliveries table, and every outcome badge follows its worker's newest
// result. Text goes in through textContent only.
(function () {
  "use strict";
  var table = document.getElementById("deliveries");
  var live = document.getElementById("live");
  var title = document.querySelector("[data-event]");
  var replayed = document.querySelector(".replayed");
  if (!table && !title && !replayed) return;
  var kinds = { succeeded: "ok", duplicate: "ok", failed: "warn", dead_lettered: "bad", denied: "bad" };
  function badge(worker, outcome) {
    var b = document.createElement("span");
    b.className = "badge " + (kinds[outcome] || "info");
    b.dataset.worker = worker;
    b.textContent = worker + ": " + outcome;
    return b;
  }
  function cell(tr, text, href) {
    var td = document.createElement("td");
    if (href) { var a = document.createElement("a"); a.href = href; a.textContent = text; td.appendChild(a); }
    else { td.textContent = text; }
    tr.appendChild(td);
    return td;
  }
  function stamp(s) { return s ? s.replace("T", " ").replace(/\.\d+Z$/, "Z") : "-"; }
  var since = document.body.dataset.since || "";
  var es = new EventSource("/events/stream?since=" + encodeURIComponent(since));
  es.onopen = function () { if (live) live.textContent = "live"; };
  es.onerror = function () { if (live) live.textContent = "reconnecting…"; };
  es.addEventListener("expired", function () { es.close(); window.location.assign("/login"); });
  es.addEventListener("delivery", function (e) {
    if (!table || table.dataset.filtered) return;
    var d = JSON.parse(e.data);
    var body = table.tBodies[0];
    if (body.querySelector('tr[data-ev="' + CSS.escape(d.event_id) + '"]')) return;
    var empty = body.querySelector("tr.empty");
    if (empty) empty.remove();
    var tr = document.createElement("tr");
    tr.dataset.ev = d.event_id;
    tr.className = "fresh";
    cell(tr, stamp(d.accepted_at), "/deliveries/" + encodeURIComponent(d.event_id));
    cell(tr, d.event); cell(tr, d.repo); cell(tr, d.ref || ""); cell(tr, d.sender || "");
    cell(tr, "").className = "badges";
    body.insertBefore(tr, body.firstChild);
  });
  es.addEventListener("outcome", function (e) {
    var u = JSON.parse(e.data);
    var rows = document.querySelectorAll("[data-ev]");
    rows.forEach(function (row) {
      if (row.dataset.ev !== u.event_id) return;
      var old = row.querySelector('[data-worker="' + CSS.escape(u.worker) + '"]');
      var b = badge(u.worker, u.outcome);
      if (old) { old.replaceWith(b); return; }
      var place = row.querySelector(".badges") || row;
      place.appendChild(b); place.appendChild(document.createTextNode(" "));
    });
    if (title && title.dataset.event === u.event_id) {
      // The timeline has a new step: show it.
      window.setTimeout(function () { window.location.reload(); }, 300);
    }
  });
})();

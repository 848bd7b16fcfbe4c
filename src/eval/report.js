// lmc HTML report: sortable tables and the example filter.
// Inlined into every report (no network, no external assets). Every
// `table.sortable` sorts on a header click (again to reverse); the filter
// bar narrows the examples table by text, outcome kind, expected label and
// score range. The view is kept in the URL fragment
// (#sort=score&dir=asc&q=word&kind=wrong&label=positive&min=0&max=0.5), so a
// link or a bookmark reopens the same view.
(function () {
  "use strict";
  var $ = function (id) { return document.getElementById(id); };

  function cellValue(row, i, numeric) {
    var td = row.cells[i];
    var v = td.getAttribute("data-v");
    if (v === null) v = td.textContent;
    return numeric ? parseFloat(v) : v.toLowerCase();
  }

  function sortTable(table, i, dir) {
    var ths = table.tHead.rows[0].cells;
    for (var k = 0; k < ths.length; k++) ths[k].removeAttribute("aria-sort");
    var th = ths[i];
    th.setAttribute("aria-sort", dir === "asc" ? "ascending" : "descending");
    var numeric = th.getAttribute("data-type") === "n";
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = cellValue(a, i, numeric), y = cellValue(b, i, numeric);
      var c = x < y ? -1 : x > y ? 1 : 0;
      // Ties keep dataset order, whatever the direction.
      if (c === 0) return (+a.getAttribute("data-row")) - (+b.getAttribute("data-row"));
      return dir === "asc" ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }

  var state = new URLSearchParams(location.hash.slice(1));

  function save() {
    var s = state.toString();
    history.replaceState(null, "", s ? "#" + s : location.pathname + location.search);
  }

  document.querySelectorAll("table.sortable").forEach(function (table) {
    var ths = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(ths, function (th, i) {
      // Headers are buttons for the keyboard too: Tab to one, Enter sorts.
      th.tabIndex = 0;
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); th.click(); }
      });
      th.addEventListener("click", function () {
        var dir = th.getAttribute("aria-sort") === "ascending" ? "desc" : "asc";
        sortTable(table, i, dir);
        if (table.id === "examples") {
          state.set("sort", th.getAttribute("data-key"));
          state.set("dir", dir);
          save();
        }
      });
    });
  });

  var table = $("examples");
  if (!table) return;
  var controls = { q: $("f-q"), kind: $("f-kind"), label: $("f-label"), min: $("f-min"), max: $("f-max") };

  function applyFilter() {
    var q = controls.q.value.trim().toLowerCase();
    var kind = controls.kind.value;
    var label = controls.label ? controls.label.value : "";
    var min = controls.min.value === "" ? -Infinity : parseFloat(controls.min.value);
    var max = controls.max.value === "" ? Infinity : parseFloat(controls.max.value);
    var rows = table.tBodies[0].rows, shown = 0;
    for (var i = 0; i < rows.length; i++) {
      var r = rows[i];
      var score = parseFloat(r.getAttribute("data-score"));
      var ok = (!q || r.textContent.toLowerCase().indexOf(q) >= 0) &&
        (!kind || r.getAttribute("data-kind") === kind) &&
        (!label || r.getAttribute("data-label") === label) &&
        score >= min && score <= max;
      r.hidden = !ok;
      if (ok) shown++;
    }
    $("f-shown").textContent = shown + " of " + rows.length + " examples shown";
    table.setAttribute("data-shown", String(shown));
  }

  Object.keys(controls).forEach(function (k) {
    var el = controls[k];
    if (!el) return;
    if (state.has(k)) el.value = state.get(k);
    el.addEventListener("input", function () {
      if (el.value === "") state.delete(k); else state.set(k, el.value);
      save();
      applyFilter();
    });
  });
  $("f-reset").addEventListener("click", function () {
    Object.keys(controls).forEach(function (k) { if (controls[k]) controls[k].value = ""; });
    state = new URLSearchParams();
    save();
    applyFilter();
  });

  var key = state.get("sort");
  if (key) {
    var ths = table.tHead.rows[0].cells;
    for (var i = 0; i < ths.length; i++) {
      if (ths[i].getAttribute("data-key") === key) {
        sortTable(table, i, state.get("dir") === "desc" ? "desc" : "asc");
      }
    }
  }
  applyFilter();
})();

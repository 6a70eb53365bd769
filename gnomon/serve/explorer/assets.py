"""The explorer's stylesheet and script, served by the explorer itself.

Kept as Python strings so they ship inside the package (its package data is gnomon/data
only) and nothing is fetched from elsewhere at run time: the pages work on a cluster login
node with no internet.
"""

from __future__ import annotations

CSS = """
:root { --fg: #1b1f23; --muted: #5a6370; --line: #d8dde3; --accent: #1f5fa8; --stable: #e7f5ea; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg);
       margin: 0; }
header { background: #17324f; color: #fff; padding: .6rem 1.2rem; display: flex; gap: 1.5rem;
         align-items: center; flex-wrap: wrap; }
header a { color: #fff; text-decoration: none; font-weight: 600; }
header form { margin-left: auto; }
header input { padding: .2rem .4rem; }
main { padding: 1rem 1.2rem 3rem; max-width: 1200px; }
a { color: var(--accent); }
h1 { font-size: 1.5rem; margin: .4rem 0 .8rem; }
h2 { font-size: 1.15rem; margin: 1.6rem 0 .6rem; }
.muted { color: var(--muted); }
.error { color: #a11; }
table { border-collapse: collapse; margin: .4rem 0 1rem; font-size: 14px; }
th, td { border-bottom: 1px solid var(--line); padding: .25rem .6rem; text-align: left; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
th button { all: unset; cursor: pointer; font-weight: 600; }
th button:focus-visible { outline: 2px solid var(--accent); }
th[aria-sort="ascending"] button::after { content: " \\25B2"; }
th[aria-sort="descending"] button::after { content: " \\25BC"; }
tr.stable td { background: var(--stable); }
#phases td, #results td { white-space: nowrap; }
#results th[aria-sort="ascending"] a::after { content: " \\25B2"; }
#results th[aria-sort="descending"] a::after { content: " \\25BC"; }
.schemes a { margin-right: .8rem; }
.schemes a.current { font-weight: 700; text-decoration: none; color: var(--fg); }
.figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
#hull img { max-width: min(100%, 560px); }
.systems { columns: 6 9rem; padding-left: 1.2rem; }
.filter { margin: .6rem 0; }
.filter input { width: 7rem; }
dl.props { display: grid; grid-template-columns: max-content auto; gap: .15rem 1rem; }
dl.props dt { color: var(--muted); }
dl.props dd { margin: 0; }
.downloads a { margin-right: 1rem; font-weight: 600; }
.cell-view { display: flex; gap: 2rem; align-items: flex-start; flex-wrap: wrap; }
.legend span { margin-right: .8rem; }
.legend i { display: inline-block; width: .8rem; height: .8rem; border-radius: 50%;
            margin-right: .25rem; vertical-align: -1px; }
.skip { position: absolute; left: -999px; top: 0; background: #fff; padding: .4rem .8rem; }
.skip:focus { left: .5rem; z-index: 10; }
a:focus-visible, button:focus-visible, input:focus-visible, select:focus-visible,
.plot:focus-visible, summary:focus-visible { outline: 3px solid #f0a030; outline-offset: 2px; }
figure { margin: .6rem 0 1rem; }
figcaption { color: var(--muted); font-size: 14px; max-width: 70rem; }
.plot { width: 100%; min-height: 320px; }
#hull-plot { max-width: 900px; min-height: 480px; }
.viewer { flex: 1 1 420px; min-width: 0; }
#structure-plot { min-height: 460px; border: 1px solid var(--line); }
#xrd-plot { max-width: 900px; }
.toggle button { padding: .3rem .7rem; border: 1px solid var(--line); background: #f4f6f8;
                 cursor: pointer; font: inherit; }
.toggle button[aria-pressed="true"] { background: var(--accent); color: #fff; }
.static-figure summary { cursor: pointer; color: var(--accent); }
.static-figure img { max-width: min(100%, 560px); }
.table-wrap { overflow-x: auto; max-width: 100%; }
ol.lineage { padding-left: 1.4rem; }
ol.lineage h3 { font-size: 1rem; margin: .8rem 0 .3rem; }
form.search { display: flex; flex-wrap: wrap; gap: .8rem; align-items: flex-end; }
form.search fieldset { border: 1px solid var(--line); display: flex; flex-wrap: wrap;
                       gap: .5rem 1rem; }
form.search label.wide input { width: min(40rem, 80vw); }
section.api code { background: #f4f6f8; padding: .1rem .3rem; word-break: break-all; }
nav.pages { display: flex; gap: 1rem; margin: .6rem 0; }
form.compare { margin: 1rem 0; }
@media (max-width: 640px) {
  body { font-size: 15px; }
  header { gap: .6rem; padding: .5rem .8rem; }
  header form { margin-left: 0; }
  main { padding: .6rem .7rem 2rem; }
  .systems { columns: 3 6rem; }
  dl.props { grid-template-columns: 1fr; }
  dl.props dd { margin-bottom: .3rem; }
  #hull-plot { min-height: 380px; }
  #structure-plot { min-height: 360px; }
  .cell-view { display: block; }
}
"""

JS = """
(function () {
  "use strict";

  function cellValue(row, index, type) {
    var cell = row.cells[index];
    if (!cell) return null;
    var raw = cell.getAttribute("data-value");
    if (raw === null) raw = cell.textContent.trim();
    if (type === "number") {
      var v = parseFloat(raw);
      return isNaN(v) ? null : v;
    }
    return raw.toLowerCase();
  }

  // Sort a table's rows by one column; a second click reverses. Missing values go last.
  function sortTable(table, th) {
    var index = Array.prototype.indexOf.call(th.parentNode.children, th);
    var type = th.getAttribute("data-type") || "text";
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    table.querySelectorAll("thead th").forEach(function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (r1, r2) {
      var a = cellValue(r1, index, type), b = cellValue(r2, index, type);
      if (a === null || b === null) return (a === null) - (b === null);
      var c = a < b ? -1 : (a > b ? 1 : 0);
      return ascending ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }

  // Hide the rows whose energy above the hull exceeds the threshold (eV/atom).
  function applyFilter(table, input, counter) {
    var text = input.value.trim();
    var max = text === "" ? NaN : parseFloat(text);
    var rows = table.tBodies[0].rows, shown = 0;
    for (var i = 0; i < rows.length; i++) {
      var e = parseFloat(rows[i].getAttribute("data-e-above-hull"));
      var hide = !isNaN(max) && (isNaN(e) || e > max + 1e-12);
      rows[i].hidden = hide;
      if (!hide) shown++;
    }
    if (counter) counter.textContent = shown + " of " + rows.length + " phases shown";
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("table.sortable").forEach(function (table) {
      table.querySelectorAll("thead th[data-type] button").forEach(function (button) {
        button.addEventListener("click", function () { sortTable(table, button.closest("th")); });
      });
    });
    var table = document.getElementById("phases");
    var input = document.getElementById("max-e-above-hull");
    if (table && input) {
      var counter = document.getElementById("shown-count");
      input.addEventListener("input", function () { applyFilter(table, input, counter); });
      applyFilter(table, input, counter);
    }
  });
})();
"""

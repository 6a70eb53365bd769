// Fill in the novelty the server had not computed when it sent the page.
//
// A table with data-facts-src="URL" has rows <tr data-id="ID"> with cells
// <td data-fact="novelty">; URL answers {ID: {novelty, novelty_text}}. The table gets
// data-facts="ready" when filled (or "error"). Sorting reads each cell's data-value.
// A phase page's <dl data-novelty-src="URL"> has <dd data-novelty="verdict|amd|nearest">;
// URL answers {verdict, amd, nearest, nearest_url}.
(function () {
  "use strict";

  function getJson(url) {
    return fetch(url, { headers: { Accept: "application/json" } }).then(function (response) {
      if (!response.ok) throw new Error(String(response.status));
      return response.json();
    });
  }

  function fillTable(table, facts) {
    table.querySelectorAll("tbody tr[data-id]").forEach(function (row) {
      var fact = facts[row.getAttribute("data-id")];
      if (!fact) return;
      row.querySelectorAll("td[data-fact=novelty]").forEach(function (cell) {
        cell.textContent = fact.novelty_text || "–";
        cell.setAttribute("data-value", fact.novelty || "");
      });
    });
  }

  function fillPhase(list, fact) {
    list.querySelectorAll("dd[data-novelty]").forEach(function (dd) {
      var key = dd.getAttribute("data-novelty");
      var value = fact[key];
      dd.textContent = "";
      if (key === "nearest" && value && fact.nearest_url) {
        var link = document.createElement("a");
        link.href = fact.nearest_url;
        link.textContent = value;
        dd.appendChild(link);
      } else {
        dd.textContent = value === null || value === undefined ? "–" : String(value);
      }
    });
  }

  function load(el, attr, fill) {
    el.setAttribute("aria-busy", "true");
    getJson(el.getAttribute(attr))
      .then(function (data) {
        fill(el, data);
        el.setAttribute("data-facts", "ready");
      })
      .catch(function () { el.setAttribute("data-facts", "error"); })
      .then(function () { el.removeAttribute("aria-busy"); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("table[data-facts-src]").forEach(function (table) {
      load(table, "data-facts-src", fillTable);
    });
    document.querySelectorAll("[data-novelty-src]").forEach(function (list) {
      load(list, "data-novelty-src", fillPhase);
    });
  });
})();

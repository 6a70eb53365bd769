// The explorer's interactive figures: plotly.js draws the figure JSON the server sends.
//
// An element with data-figure="URL" gets the figure at URL. With data-links, a click on a
// point opens the address in its customdata[0] (the hull's phase pages). Buttons with
// data-figure-target="ID" and data-figure-src="URL" redraw element ID from URL (the
// structure's conventional/primitive toggle). An element gets data-ready="1" once drawn, or
// data-ready="error" with the reason as its text. No code of this file is inline in a page.
(function () {
  "use strict";

  var CONFIG = { responsive: true, displaylogo: false, scrollZoom: true };

  function fail(el, message) {
    el.textContent = "The interactive figure could not be drawn: " + message;
    el.setAttribute("data-ready", "error");
  }

  // A phone-width figure: the labels were placed for a wide one and would overlap, so they go
  // (each point still names itself on hover), the colour bar moves under the plot, and the
  // legend of the hull's two marker kinds is left to the caption (stars: on the hull).
  function fitNarrow(el, figure) {
    if (el.clientWidth >= 640) return;
    figure.data.forEach(function (trace) {
      if (trace.mode === "markers+text") trace.mode = "markers";
      if (trace.marker && trace.marker.showscale) {
        trace.marker.colorbar = Object.assign({}, trace.marker.colorbar,
          { orientation: "h", x: 0.5, xanchor: "center", y: -0.12, yanchor: "top",
            len: 0.9, thickness: 12 });
      }
    });
    figure.layout.height = Math.max(380, Math.round(el.clientWidth * 1.25));
    figure.layout.margin = { l: 30, r: 20, t: 30, b: 30 };
    if (el.hasAttribute("data-links")) figure.layout.showlegend = false;
  }

  function openOnClick(el) {
    if (!el.hasAttribute("data-links") || el.getAttribute("data-linked")) return;
    el.setAttribute("data-linked", "1");
    el.on("plotly_click", function (event) {
      var point = event && event.points && event.points[0];
      var url = point && point.customdata && point.customdata[0];
      if (typeof url === "string" && url.charAt(0) === "/") window.location.assign(url);
    });
  }

  function draw(el) {
    var src = el.getAttribute("data-figure");
    el.setAttribute("data-ready", "0");
    el.setAttribute("aria-busy", "true");
    return fetch(src, { headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) {
          return response.text().then(function (text) { throw new Error(text || response.status); });
        }
        return response.json();
      })
      .then(function (figure) {
        fitNarrow(el, figure);
        return Plotly.react(el, figure.data, figure.layout, CONFIG);
      })
      .then(function () {
        openOnClick(el);
        el.setAttribute("data-ready", "1");
        el.removeAttribute("aria-busy");
      })
      .catch(function (err) { fail(el, err.message || String(err)); });
  }

  function toggle(button) {
    var target = document.getElementById(button.getAttribute("data-figure-target"));
    if (!target) return;
    target.setAttribute("data-figure", button.getAttribute("data-figure-src"));
    var group = button.closest("[role=group]");
    if (group) {
      group.querySelectorAll("button").forEach(function (b) {
        b.setAttribute("aria-pressed", b === button ? "true" : "false");
      });
    }
    draw(target);
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (typeof Plotly === "undefined") {
      document.querySelectorAll("[data-figure]").forEach(function (el) {
        fail(el, "plotly.js did not load");
      });
      return;
    }
    document.querySelectorAll("[data-figure]").forEach(draw);
    document.querySelectorAll("button[data-figure-target]").forEach(function (button) {
      button.addEventListener("click", function () { toggle(button); });
    });
  });
})();

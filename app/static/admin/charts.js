/* Charts of the admin pages (app/templates/admin): every <canvas data-chart="ID"> is drawn
   with Chart.js from the JSON in <script type="application/json" id="ID">
   ({type, labels, datasets: [{label, data, color?}], stacked}). The same numbers are in a table
   beside each chart. No inline script: the pages' CSP forbids it. */
(function () {
  "use strict";
  var palette = ["#1f6b3a", "#0b57d0", "#b3261e", "#8a5a00", "#6b3fa0", "#00796b", "#c2185b", "#5d6d7e",
                 "#2e7d32", "#ef6c00"];

  function draw(canvas) {
    var source = document.getElementById(canvas.getAttribute("data-chart"));
    if (!source || typeof Chart === "undefined") { return; }
    var spec = JSON.parse(source.textContent);
    var styles = getComputedStyle(document.documentElement);
    var fg = styles.getPropertyValue("--fg").trim() || "#1b1f1c";
    var line = styles.getPropertyValue("--line").trim() || "#d5dad6";
    var datasets = spec.datasets.map(function (set, i) {
      var colour = set.color || palette[i % palette.length];
      return {label: set.label, data: set.data, borderColor: colour, backgroundColor: colour,
              borderWidth: spec.type === "line" ? 2 : 0, pointRadius: spec.type === "line" ? 1 : 0, tension: 0.2};
    });
    var axis = function (stacked) {
      return {stacked: !!stacked, ticks: {color: fg}, grid: {color: line}};
    };
    canvas.chart = new Chart(canvas, {
      type: spec.type,
      data: {labels: spec.labels, datasets: datasets},
      options: {
        responsive: true, maintainAspectRatio: false, animation: false,
        plugins: {legend: {labels: {color: fg}, display: datasets.length > 1}},
        scales: {x: axis(spec.stacked), y: Object.assign(axis(spec.stacked), {beginAtZero: true})}
      }
    });
    canvas.setAttribute("data-drawn", "true");
  }

  function drawAll() {
    Array.prototype.forEach.call(document.querySelectorAll("canvas[data-chart]"), draw);
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", drawAll);
  } else {
    drawAll();
  }
}());

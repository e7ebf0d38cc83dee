/* Draws every chart of a dashboard page from the numbers of its own table (so the chart, the
   table and the CSV show the same numbers), the sparklines, and colours the heat map. */
(function () {
  "use strict";
  var dark = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
  var palette = ["#1f6b3a", "#b45309", "#1d4ed8", "#be185d", "#0f766e", "#6d28d9", "#4d7c0f", "#9f1239"];
  if (dark) { palette = ["#6fcf8e", "#fbbf24", "#93c5fd", "#f9a8d4", "#5eead4", "#c4b5fd", "#bef264", "#fda4af"]; }
  var ink = dark ? "#e8ece9" : "#1b1f1c";
  var grid = dark ? "#343b36" : "#d5dad6";

  function number(cell) {
    var raw = cell.getAttribute("data-value");
    return raw === null || raw === "" ? null : Number(raw);
  }

  function readTable(table) {
    var heads = table.tHead.rows[0].cells, series = [], labels = [];
    for (var i = 0; i < heads.length; i++) {
      if (heads[i].hasAttribute("data-series")) { series.push({ index: i, label: heads[i].textContent, data: [] }); }
    }
    var rows = table.tBodies[0].rows;
    for (var r = 0; r < rows.length; r++) {
      labels.push(rows[r].cells[0].textContent);
      for (var s = 0; s < series.length; s++) { series[s].data.push(number(rows[r].cells[series[s].index])); }
    }
    return { labels: labels, series: series };
  }

  function draw(canvas) {
    var table = document.getElementById(canvas.getAttribute("data-chart-for"));
    if (!table || !window.Chart) { return; }
    var kind = table.getAttribute("data-chart") || "bar";
    var data = readTable(table);
    var whole = data.series.every(function (s) { return s.data.every(function (v) { return v === null || v % 1 === 0; }); });
    new window.Chart(canvas, {
      type: kind,
      data: {
        labels: data.labels,
        datasets: data.series.map(function (s, i) {
          return { label: s.label, data: s.data, backgroundColor: palette[i % palette.length],
                   borderColor: palette[i % palette.length], borderWidth: kind === "line" ? 2 : 0,
                   pointRadius: kind === "line" ? 2 : 0, spanGaps: true };
        })
      },
      options: {
        responsive: true, maintainAspectRatio: false, animation: false,
        plugins: { legend: { labels: { color: ink } } },
        scales: { x: { ticks: { color: ink, maxRotation: 60, autoSkip: true }, grid: { color: grid } },
                  y: { ticks: { color: ink, precision: whole ? 0 : undefined }, grid: { color: grid },
                       beginAtZero: kind === "bar" } }
      }
    });
    canvas.setAttribute("data-drawn", "1");
  }

  function spark(canvas) {
    if (!window.Chart) { return; }
    var values = canvas.getAttribute("data-spark").split(",").map(Number);
    new window.Chart(canvas, {
      type: "line",
      data: { labels: values.map(function (_, i) { return i + 1; }),
              datasets: [{ data: values, borderColor: palette[0], borderWidth: 2, pointRadius: 0 }] },
      options: { responsive: true, maintainAspectRatio: false, animation: false, events: [],
                 plugins: { legend: { display: false }, tooltip: { enabled: false } },
                 scales: { x: { display: false }, y: { display: false, beginAtZero: true } } }
    });
    canvas.setAttribute("data-drawn", "1");
  }

  function heat(table) {
    var cells = table.querySelectorAll("td[data-value]"), max = 0, i;
    for (i = 0; i < cells.length; i++) { max = Math.max(max, number(cells[i]) || 0); }
    for (i = 0; i < cells.length; i++) {
      var share = max ? (number(cells[i]) || 0) / max : 0;
      cells[i].style.backgroundColor = "rgba(31, 107, 58, " + (0.08 + share * 0.85).toFixed(3) + ")";
      if (share > 0.55) { cells[i].style.color = "#ffffff"; }
    }
    table.setAttribute("data-drawn", "1");
  }

  document.querySelectorAll("canvas[data-chart-for]").forEach(draw);
  document.querySelectorAll("canvas[data-spark]").forEach(spark);
  document.querySelectorAll("table[data-chart='heat']").forEach(heat);
})();

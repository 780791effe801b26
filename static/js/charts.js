/* Draws every <canvas data-chart="ID"> from the JSON in <script id="ID"> (sparklin/charts.py).
   Runs on page load and on every fragment htmx swaps in, so a polled partial updates its chart. */
(function () {
  "use strict";
  var palette = ["#0a7d5a", "#f59e0b", "#2563eb", "#db2777", "#7c3aed", "#65a30d", "#64748b"];

  function draw(canvas) {
    if (!window.Chart) { return; }
    var source = document.getElementById(canvas.dataset.chart);
    if (!source) { return; }
    var spec = JSON.parse(source.textContent);
    var old = window.Chart.getChart(canvas);
    if (old) { old.destroy(); }
    var lang = document.documentElement.lang || undefined;
    var datasets = spec.series.map(function (s, i) {
      var colour = palette[i % palette.length];
      return {
        type: s.kind,
        label: s.label,
        data: s.values,
        borderColor: colour,
        backgroundColor: s.kind === "line" ? colour : colour + "cc",
        borderWidth: s.kind === "line" ? 2 : 0,
        borderDash: s.dashed ? [6, 4] : [],
        pointRadius: 0,
        fill: false,
        spanGaps: false,
        stack: spec.stacked && s.kind === "bar" ? "stack" : undefined
      };
    });
    new window.Chart(canvas, {
      data: { labels: spec.labels, datasets: datasets },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        locale: lang,
        interaction: { mode: "index", intersect: false },
        plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } },
        scales: {
          x: { stacked: spec.stacked, ticks: { autoSkip: true, maxRotation: 0 } },
          y: { stacked: spec.stacked, beginAtZero: true, title: { display: !!spec.unit, text: spec.unit } }
        }
      }
    });
  }

  function drawAll(root) {
    var canvases = (root || document).querySelectorAll("canvas[data-chart]");
    for (var i = 0; i < canvases.length; i++) { draw(canvases[i]); }
  }

  document.addEventListener("DOMContentLoaded", function () { drawAll(document); });
  document.addEventListener("htmx:load", function (event) { drawAll(event.target); });
})();

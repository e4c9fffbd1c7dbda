// The usage page's charts, drawn with Chart.js from the JSON island the server wrote
// (id "usage-charts"); every chart's numbers are also in the table below it.
(function () {
  "use strict";

  // Colours that keep apart for people with the common colour-vision deficiencies (Okabe-Ito).
  var PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"];
  // Outcomes keep their meaning: succeeded green, errored red, canceled grey, expired amber.
  var OUTCOMES = { Succeeded: "#15803d", Errored: "#b91c1c", Canceled: "#8a93a3", Expired: "#b45309" };

  function draw() {
    var island = document.getElementById("usage-charts");
    if (!island || typeof window.Chart === "undefined") return;
    var charts = JSON.parse(island.textContent);
    var style = getComputedStyle(document.documentElement);
    window.Chart.defaults.font.family = style.fontFamily;
    window.Chart.defaults.color = style.getPropertyValue("--muted").trim() || "#5d6778";
    window.Chart.defaults.borderColor = style.getPropertyValue("--border").trim() || "#e2e5ea";
    // On a dark page, black and the outcome colours of the light page would not show.
    var dark = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
    var palette = dark ? PALETTE.map(function (c) { return c === "#000000" ? "#ffffff" : c; }) : PALETTE;
    var outcomes = dark ? { Succeeded: "#4ade80", Errored: "#f87171", Canceled: "#a7b0bf", Expired: "#fbbf24" } : OUTCOMES;
    charts.forEach(function (chart) {
      var canvas = document.getElementById("chart-" + chart.id);
      if (!canvas) return;
      var datasets = chart.series.map(function (series, index) {
        var colour = outcomes[series.name] || palette[index % palette.length];
        return {
          label: series.name,
          data: series.values,
          backgroundColor: colour,
          borderColor: colour,
          borderWidth: chart.kind === "line" ? 2 : 0,
          spanGaps: true,
          pointRadius: chart.kind === "line" ? 3 : 0,
        };
      });
      new window.Chart(canvas, {
        type: chart.kind,
        data: { labels: chart.labels, datasets: datasets },
        options: {
          responsive: true,
          maintainAspectRatio: false,
          animation: false,
          interaction: { mode: "index", intersect: false },
          plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } },
          scales: {
            x: { stacked: chart.stacked, ticks: { maxRotation: 0, autoSkip: true, autoSkipPadding: 12 } },
            y: { stacked: chart.stacked, beginAtZero: true },
          },
        },
      });
      canvas.setAttribute("data-drawn", "");
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();

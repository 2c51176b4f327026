/* The provider's charts: draw window.vitalchainCharts (from the page's JSON block, built by
   vitalchain.portal.charts) with uPlot, and show every <time data-local> in the user's own
   time zone.  No data is computed here: which points, gaps, bands and alerts are shown is the
   server's (tested) decision; this only draws it. */
(function () {
  "use strict";

  var COLOURS = { systolic: "#1f3f7a", diastolic: "#8a3b00" };
  var DEFAULT_COLOUR = "#1f3f7a";
  var BAND_FILL = "rgba(11, 90, 30, 0.10)";
  var BAND_EDGE = "rgba(11, 90, 30, 0.55)";
  var PRIORITY = { high: "#b00020", medium: "#b08a00", low: "#1a7f93" };

  function localTimes() {
    var format = new Intl.DateTimeFormat(undefined, {
      year: "numeric", month: "short", day: "numeric",
      hour: "2-digit", minute: "2-digit", timeZoneName: "short"
    });
    document.querySelectorAll("time[data-local]").forEach(function (el) {
      var when = new Date(el.getAttribute("datetime"));
      if (!isNaN(when.getTime())) {
        el.textContent = format.format(when);
      }
    });
  }

  function readData() {
    var block = document.getElementById("chart-data");
    if (!block) {
      return {};
    }
    try {
      return JSON.parse(block.textContent || "{}");
    } catch (e) {
      return {};
    }
  }

  /* Threshold bands (green) and alert markers (triangles at the reading), drawn under and
     over the series. */
  function overlay(chart) {
    function bands(u) {
      var ctx = u.ctx;
      var left = u.bbox.left;
      var width = u.bbox.width;
      Object.keys(chart.bands).forEach(function (name) {
        var band = chart.bands[name];
        if (!band) {
          return;
        }
        var top = u.valToPos(band[1], "y", true);
        var bottom = u.valToPos(band[0], "y", true);
        ctx.save();
        ctx.fillStyle = BAND_FILL;
        ctx.fillRect(left, top, width, bottom - top);
        ctx.strokeStyle = BAND_EDGE;
        ctx.setLineDash([4, 4]);
        ctx.beginPath();
        ctx.moveTo(left, top);
        ctx.lineTo(left + width, top);
        ctx.moveTo(left, bottom);
        ctx.lineTo(left + width, bottom);
        ctx.stroke();
        ctx.restore();
      });
    }
    function markers(u) {
      var ctx = u.ctx;
      var size = 7 * (window.devicePixelRatio || 1);
      chart.alerts.forEach(function (alert) {
        var x = u.valToPos(alert.t, "x", true);
        var y = u.valToPos(alert.value, "y", true);
        ctx.save();
        ctx.fillStyle = PRIORITY[alert.priority] || PRIORITY.high;
        ctx.beginPath();
        ctx.moveTo(x, y - size * 2);
        ctx.lineTo(x - size, y - size * 3.5);
        ctx.lineTo(x + size, y - size * 3.5);
        ctx.closePath();
        ctx.fill();
        ctx.restore();
      });
    }
    return { hooks: { drawClear: [bands], draw: [markers] } };
  }

  function yRange(chart) {
    var values = [];
    Object.keys(chart.series).forEach(function (name) {
      chart.series[name].forEach(function (v) {
        if (v !== null) {
          values.push(v);
        }
      });
      var band = chart.bands[name];
      if (band) {
        values.push(band[0], band[1]);
      }
    });
    chart.alerts.forEach(function (a) { values.push(a.value); });
    var lo = Math.min.apply(null, values);
    var hi = Math.max.apply(null, values);
    var pad = Math.max((hi - lo) * 0.1, 1);
    return [lo - pad, hi + pad];
  }

  function draw(key, chart) {
    var target = document.getElementById("chart-" + key);
    if (!target || typeof uPlot === "undefined" || chart.x.length === 0) {
      return null;
    }
    var names = Object.keys(chart.series);
    var series = [{}].concat(names.map(function (name) {
      return {
        label: name,
        stroke: COLOURS[name] || DEFAULT_COLOUR,
        width: 2,
        spanGaps: false,
        points: { show: true, size: 5 }
      };
    }));
    var range = yRange(chart);
    var options = {
      width: Math.max(target.clientWidth, 320),
      height: 260,
      series: series,
      legend: { show: false },
      scales: {
        x: chart.span
          ? { time: true, range: function () { return chart.span; } }
          : { time: true },
        y: { range: function () { return range; } }
      },
      axes: [{}, { label: chart.unit }],
      plugins: [overlay(chart)]
    };
    var data = [chart.x].concat(names.map(function (name) { return chart.series[name]; }));
    return new uPlot(options, data, target);
  }

  function start() {
    localTimes();
    var data = readData();
    window.vitalchainCharts = data;
    window.vitalchainPlots = {};
    Object.keys(data).forEach(function (key) {
      window.vitalchainPlots[key] = draw(key, data[key]);
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();

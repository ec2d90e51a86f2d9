// One way to draw a time chart with uPlot across the pages.
"use strict";

// xRange: [first, last] in seconds, so a range with few days still spans the range asked.
function timeChart(el, series, data, height = 260, xRange = null) {
  el.textContent = "";
  const scales = [...new Set(series.map((s) => s.scale))];
  // room for labels such as 500,000 beside the plot
  const yAxis = (scale, side) => ({ scale, side, size: 72,
    values: (u, vals) => vals.map((v) => v.toLocaleString()) });
  const axes = [{}, yAxis(scales[0], 3)];
  if (scales.length > 1) axes.push(yAxis(scales[1], 1));
  return new uPlot({ width: Math.max(320, el.clientWidth - 8), height, series: [{}, ...series],
    scales: { x: xRange ? { time: true, range: () => xRange } : { time: true } }, axes },
  data, el);
}

const dayTs = (day) => Date.parse(day + "T12:00:00") / 1000;

// One way to draw a time chart with uPlot across the pages.
"use strict";

function timeChart(el, series, data, height = 260) {
  el.textContent = "";
  const scales = [...new Set(series.map((s) => s.scale))];
  const axes = [{}, { scale: scales[0] }];
  if (scales.length > 1) axes.push({ scale: scales[1], side: 1 });
  return new uPlot({ width: Math.max(320, el.clientWidth - 8), height, series: [{}, ...series],
    scales: { x: { time: true } }, axes }, data, el);
}

const dayTs = (day) => Date.parse(day + "T12:00:00") / 1000;

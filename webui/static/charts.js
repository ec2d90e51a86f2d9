// The pages' charts, drawn with the vendored uPlot: as wide as their container (and redrawn when
// it changes, down to a phone's width), light text on the dark theme, every axis titled, value
// axes that hold zero (so a 1 % change looks like one), times in the site's time zone.
"use strict";

const CHART_TEXT = "#c9d1d9";
const CHART_GRID = "rgba(201, 209, 217, 0.10)";
const SOURCE_ORDER = ["pv", "battery", "grid", "unpriced"];
const SOURCE_NAMES = { pv: "solar", battery: "battery", grid: "grid", unpriced: "unpriced" };
const SOURCE_COLOURS = { pv: "#f5b82e", battery: "#b07cff", grid: "#8b96a1", unpriced: "#56616c" };
const sunrigCharts = {};  // by element id: the drawn charts, their data open to the tests

// A time as the site's clock shows it, with the zone's name: the browser may be elsewhere.
function siteTime(iso, tz, withDate = true) {
  if (!iso) return "–";
  const opts = { timeZone: tz, hour: "2-digit", minute: "2-digit", timeZoneName: "short" };
  if (withDate) Object.assign(opts, { year: "numeric", month: "2-digit", day: "2-digit" });
  return new Date(iso).toLocaleString([], opts);
}

// A value range that always holds zero, with a little headroom above the largest value.
function fromZero(u, min, max) {
  const lo = Math.min(0, min ?? 0), hi = Math.max(0, max ?? 0);
  if (lo === hi) return [0, 1];
  return [lo < 0 ? lo * 1.08 : 0, hi > 0 ? hi * 1.08 : 0];
}

function valueAxis(scale, label, side, fmt) {
  return { scale, label, side, stroke: CHART_TEXT, labelSize: 20, size: 58,
    font: "12px system-ui, sans-serif", labelFont: "12px system-ui, sans-serif",
    grid: { stroke: CHART_GRID, width: 1 }, ticks: { stroke: CHART_GRID, width: 1 },
    values: (u, vals) => vals.map(fmt || ((v) => v.toLocaleString())) };
}

// spec: { series: [{label, scale, stroke, ...}], data: [xs, ...ys], tz, axes: [{scale, label,
// fmt}] (first on the left, second on the right), xRange: [first, last] s, height, hooks,
// signed: scales that may go below zero (all do; only their zero is always shown) }
function timeChart(el, spec) {
  el.textContent = "";
  const height = spec.height || 260;
  const scales = { x: { time: true, ...(spec.xRange ? { range: () => spec.xRange } : {}) } };
  for (const a of spec.axes) scales[a.scale] = { range: fromZero };
  const axes = [{ stroke: CHART_TEXT, grid: { stroke: CHART_GRID, width: 1 },
    ticks: { stroke: CHART_GRID, width: 1 }, font: "12px system-ui, sans-serif",
    label: spec.xLabel || `time (${spec.tz})`, labelSize: 20,
    labelFont: "12px system-ui, sans-serif", ...(spec.xTicks ? barTicks(spec.xTicks) : {}) }];
  spec.axes.forEach((a, i) => axes.push(valueAxis(a.scale, a.label, i === 0 ? 3 : 1, a.fmt)));
  const u = new uPlot({ width: widthOf(el), height, series: [{}, ...spec.series], scales, axes,
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), spec.tz), hooks: spec.hooks || {},
    legend: { live: true } }, spec.data, el);
  followWidth(el, u, height);
  sunrigCharts[el.id] = u;
  return u;
}

// Ticks under bars (a day's or a month's): at the bars' middles, labelled with their names,
// every so many bars where all would crowd a narrow chart. ticks: {at: [s], names: [text]}
function barTicks(ticks) {
  const name = new Map(ticks.at.map((t, i) => [t, ticks.names[i]]));
  return { splits: (u) => {
    const every = Math.ceil(56 / Math.max(1, u.bbox.width / devicePixelRatio / ticks.at.length));
    return ticks.at.filter((_, i) => i % every === 0);
  }, values: (u, splits) => splits.map((t) => name.get(t) ?? "") };
}

// Large amounts as 500K, 1.2M: an axis of a CapEx needs no six digits.
const compact = (v) => v.toLocaleString([], { notation: "compact", maximumFractionDigits: 1 });

const widthOf = (el) => Math.max(200, el.clientWidth);

// Redraw at the container's width whenever it changes (a phone turned, a window resized).
function followWidth(el, u, height) {
  if (el._sized) el._sized.disconnect();
  el._sized = new ResizeObserver(() => {
    if (Math.abs(widthOf(el) - u.width) > 1) u.setSize({ width: widthOf(el), height });
  });
  el._sized.observe(el);
}

// Bars per source stacked one on the other: each series is drawn from zero to the sum of its
// own and every source below it, the top one first, so what shows of each is its own part;
// the legend gives each source's own value. stacks: [{key, values}] bottom first.
function stackedSeries(stacks, scale, fmt) {
  const sums = [];
  let acc = stacks.length ? stacks[0].values.map(() => 0) : [];
  for (const s of stacks) {
    acc = acc.map((a, i) => a + (s.values[i] || 0));
    sums.push(acc);
  }
  const bars = uPlot.paths.bars({ size: [0.8, 64], align: 0 });
  const series = stacks.map((s) => ({ label: SOURCE_NAMES[s.key] || s.key, scale,
    stroke: SOURCE_COLOURS[s.key] || "#95a5a6", fill: SOURCE_COLOURS[s.key] || "#95a5a6",
    width: 0, paths: bars, points: { show: false },
    value: (u, v, si, i) => (i === null || i === undefined) ? "–" : fmt(s.values[i] || 0) }));
  return { series: series.reverse(), data: sums.reverse() };
}

// The sources present in any of `rows` (each with a `by` object of source: value), in order.
function sourcesIn(rows, by) {
  const seen = new Set(rows.flatMap((r) => Object.keys(r[by] || {})));
  return [...SOURCE_ORDER.filter((s) => seen.has(s)), ...[...seen].filter((s) => !SOURCE_ORDER.includes(s)).sort()];
}

// A vertical line at `ts` (the "now" of a plan), labelled, drawn over the plot.
function nowLineHook(ts, label) {
  return (u) => {
    const x = u.valToPos(ts, "x", true);
    if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) return;
    const ctx = u.ctx;
    ctx.save();
    ctx.strokeStyle = "#e6e9ec";
    ctx.setLineDash([4, 3]);
    ctx.lineWidth = 1.5 * devicePixelRatio;
    ctx.beginPath();
    ctx.moveTo(x, u.bbox.top);
    ctx.lineTo(x, u.bbox.top + u.bbox.height);
    ctx.stroke();
    ctx.fillStyle = "#e6e9ec";
    ctx.font = `${11 * devicePixelRatio}px system-ui, sans-serif`;
    ctx.fillText(label, x + 4 * devicePixelRatio, u.bbox.top + 12 * devicePixelRatio);
    ctx.restore();
  };
}

// Shaded time windows ([start, end] in seconds) behind the series, e.g. GPUs kept for the owner.
function windowsHook(windows, colour) {
  return (u) => {
    const ctx = u.ctx;
    ctx.save();
    ctx.fillStyle = colour;
    for (const [a, b] of windows) {
      const x0 = Math.max(u.bbox.left, u.valToPos(a, "x", true));
      const x1 = Math.min(u.bbox.left + u.bbox.width, u.valToPos(b, "x", true));
      if (x1 > x0) ctx.fillRect(x0, u.bbox.top, x1 - x0, u.bbox.height);
    }
    ctx.restore();
  };
}

const dayTs = (day) => Date.parse(day + "T12:00:00Z") / 1000;

// A projected payback date (node.planning.projection.outlook) in words.
function outlookText(o) {
  if (!o) return "–";
  if (o.state === "young") return `not enough history yet (${o.history_days} day${o.history_days === 1 ? "" : "s"})`;
  if (o.state === "never") return "not at this pace";
  if (o.state === "beyond") return `later than ${o.horizon.slice(0, 4)}`;
  return o.date;
}

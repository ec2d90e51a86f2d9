// The plan from /api/plan: prices, the solar and house forecasts, what is offered and kept for
// the owner, and the margin it expects, slot by slot, with "now" marked and the reserved
// windows (more GPUs kept local than the standing reservation) shaded behind each chart.
"use strict";

const MARKET_COLOURS = ["#3ecf8e", "#4aa3ff", "#e67e22", "#e84393"];
const FLOOR_COLOURS = ["#c39bff", "#f5b82e", "#e0604f", "#95a5a6"];

// Spans of consecutive slots that keep more GPUs for the owner than always.
function reservedWindows(p, t, ends) {
  const out = [];
  p.slots.forEach((s, i) => {
    if (s.local_gpus <= p.reserved_gpus) return;
    const prev = out[out.length - 1];
    if (prev && prev[1] === t[i]) prev[1] = ends[i];
    else out.push([t[i], ends[i]]);
  });
  return out;
}

function draw(id, p, marks, series, data, axes) {
  return timeChart(document.getElementById(id), { series, data, axes, tz: p.timezone,
    hooks: { drawClear: [windowsHook(marks.reserved, "rgba(74, 163, 255, 0.14)")],
      draw: [nowLineHook(marks.now, "now")] } });
}

function drawOffers(p, t, marks) {
  const step = uPlot.paths.stepped({ align: 1 });
  const markets = Object.keys(p.slots[0].offered);
  const series = [{ label: "local GPUs", scale: "gpus", stroke: "#4aa3ff", width: 2, paths: step }];
  const data = [t, p.slots.map((s) => s.local_gpus)];
  markets.forEach((m, i) => {
    series.push({ label: `${m} GPUs`, scale: "gpus", stroke: MARKET_COLOURS[i % 4], width: 2, paths: step });
    data.push(p.slots.map((s) => s.offered[m]));
  });
  markets.forEach((m, i) => {
    series.push({ label: `${m} floor`, scale: "floor", stroke: FLOOR_COLOURS[i % 4], width: 1.5, dash: [5, 3], paths: step });
    data.push(p.slots.map((s) => s.floor_per_gpu_hour[m]));
  });
  draw("offer-chart", p, marks, series, data, [{ scale: "gpus", label: "GPUs" },
    { scale: "floor", label: `${p.currency}/GPU-hour`, fmt: (v) => v.toFixed(2) }]);
}

async function load() {
  const r = await fetch("/api/plan");
  const p = await r.json();
  const info = document.getElementById("plan-info");
  if (!p.ok || !p.slots.length) { info.textContent = "No plan yet: prices are not known."; return; }
  const t = p.slots.map((s) => Date.parse(s.start) / 1000);
  const ends = p.slots.map((s) => Date.parse(s.end) / 1000);
  const marks = { now: Date.parse(p.now) / 1000, reserved: reservedWindows(p, t, ends) };
  const kw = (w) => w === null ? null : w / 1000;
  draw("prices-chart", p, marks, [
    { label: "import", scale: "price", stroke: "#e0604f", width: 2 },
    { label: "feed-in", scale: "price", stroke: "#4aa3ff", width: 2 },
  ], [t, p.slots.map((s) => s.import_per_kwh), p.slots.map((s) => s.export_per_kwh)],
  [{ scale: "price", label: `${p.currency}/kWh`, fmt: (v) => v.toFixed(2) }]);
  draw("forecast-chart", p, marks, [
    { label: "solar forecast", scale: "kw", stroke: "#f5b82e", fill: "rgba(245,184,46,0.15)", width: 2 },
    { label: "house load forecast", scale: "kw", stroke: "#c9d1d9", width: 2 },
  ], [t, p.slots.map((s) => kw(s.pv_w)), p.slots.map((s) => kw(s.house_w))],
  [{ scale: "kw", label: "kW" }]);
  drawOffers(p, t, marks);
  draw("margin-chart", p, marks, [{ label: "expected margin", scale: "money", stroke: "#3ecf8e",
    fill: "rgba(62,207,142,0.35)", width: 0, paths: uPlot.paths.bars({ size: [0.9, 40], align: 1 }),
    points: { show: false } }], [t, p.slots.map((s) => s.expected_margin)],
  [{ scale: "money", label: p.currency, fmt: (v) => v.toFixed(2) }]);
  const stepMin = t.length > 1 ? Math.round((t[1] - t[0]) / 60) : 0;
  const hours = Math.round(p.slots.length * stepMin / 60);
  info.textContent = `Planned ${siteTime(p.made, p.timezone)} ` +
    `(${p.planner === "milp" ? "optimised" : "simple rules"}), ${hours} hours ahead in ` +
    `${stepMin}-minute steps; times in ${p.timezone}; ` +
    `${p.reserved_gpus} GPU(s) always kept for the owner`;
  document.body.dataset.drawn = "yes";  // the browser tests wait for this
}

load();
setInterval(load, 60000);

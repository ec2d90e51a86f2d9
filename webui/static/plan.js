// Draws the next 48 hours of the plan from /api/plan with uPlot (vendored, no CDN).
"use strict";

function sizeOf(el) {
  return { width: Math.max(320, el.clientWidth - 8), height: 260 };
}

function draw(el, series, data) {
  el.textContent = "";
  return new uPlot({ ...sizeOf(el), series: [{}, ...series], scales: { x: { time: true } },
    axes: [{}, { scale: series[0].scale }, { scale: series[series.length - 1].scale, side: 1 }] },
    data, el);
}

async function load() {
  const r = await fetch("/api/plan");
  const p = await r.json();
  const info = document.getElementById("plan-info");
  if (!p.ok || !p.slots.length) { info.textContent = "No plan yet: prices are not known."; return; }
  const t = p.slots.map((s) => Date.parse(s.start) / 1000);
  const markets = Object.keys(p.slots[0].offered);
  draw(document.getElementById("prices-chart"), [
    { label: "import", scale: "price", stroke: "#c0392b", width: 2 },
    { label: "feed-in", scale: "price", stroke: "#2980b9", width: 2 },
    { label: "PV forecast", scale: "kw", stroke: "#f1c40f", fill: "rgba(241,196,15,0.15)" },
  ], [t, p.slots.map((s) => s.import_per_kwh), p.slots.map((s) => s.export_per_kwh),
      p.slots.map((s) => s.pv_w === null ? null : s.pv_w / 1000)]);
  const series = [], data = [t];
  for (const m of markets) {
    series.push({ label: `${m} GPUs`, scale: "gpus", stroke: "#27ae60", width: 2 });
    data.push(p.slots.map((s) => s.offered[m]));
  }
  for (const m of markets) {
    series.push({ label: `${m} floor`, scale: "floor", stroke: "#8e44ad", width: 2 });
    data.push(p.slots.map((s) => s.floor_per_gpu_hour[m]));
  }
  draw(document.getElementById("offer-chart"), series, data);
  info.textContent = `${p.planner} plan made ${new Date(p.made).toLocaleString()}, ` +
    `${p.slots.length} slots`;
  document.body.dataset.drawn = "yes";  // the browser tests wait for this
}

load();
setInterval(load, 60000);

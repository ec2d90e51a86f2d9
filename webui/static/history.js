// The rig's energy by source and the money over a period from /api/history: stacked bars a
// step at a time (hours of a day, days of a week or month, months of a year), totals above.
"use strict";

const STEP_NAMES = { "15m": "15 minutes", hour: "hour", day: "day", month: "month" };
let preset = "week";

// Where each bar ends: the next one's start, the last one a step on.
function barEnds(h) {
  const ts = h.bars.map((b) => b.ts);
  const step = { "15m": 900, hour: 3600, day: 86400, month: 30.44 * 86400 }[h.step];
  return ts.map((t, i) => (i + 1 < ts.length ? ts[i + 1] : t + step));
}

// A day (2026-12-02) or a month (2026-12) as a short name: "2 Dec", "Dec 26".
function barName(label) {
  const d = new Date((label.length === 7 ? label + "-15" : label) + "T12:00:00Z");
  return d.toLocaleDateString([], label.length === 7 ? { month: "short", year: "2-digit", timeZone: "UTC" }
    : { month: "short", day: "numeric", timeZone: "UTC" });
}

function showTotals(h) {
  const t = h.totals, cur = h.currency;
  const kwh = Object.values(t.kwh_by_source).reduce((a, b) => a + b, 0);
  const split = (by, fmt) => sourcesIn([t], by).map((s) => `${SOURCE_NAMES[s] || s} ${fmt(t[by][s])}`).join(" · ");
  document.getElementById("total-kwh").textContent = kwh.toFixed(1) + " kWh";
  document.getElementById("total-split").textContent = split("kwh_by_source", (v) => v.toFixed(1) + " kWh");
  document.getElementById("total-solar").textContent = t.solar_share_pct === null ? "–" : t.solar_share_pct.toFixed(0) + " %";
  document.getElementById("total-cost").textContent = t.energy_cost.toFixed(2) + " " + cur;
  document.getElementById("total-cost-split").textContent = split("energy_cost_by_source", (v) => v.toFixed(2) + " " + cur);
  document.getElementById("total-net").textContent = t.net.toFixed(2) + " " + cur;
}

function showCharts(h) {
  const ends = barEnds(h);
  const mids = h.bars.map((b, i) => (b.ts + ends[i]) / 2);
  const xRange = [h.bars[0].ts, ends[ends.length - 1]];
  const xTicks = h.step === "day" || h.step === "month" ? { at: mids, names: h.bars.map((b) => barName(b.label)) } : null;
  const sources = sourcesIn(h.bars, "kwh_by_source");
  const kwh = (v) => v.toFixed(v < 10 ? 2 : 1) + " kWh";
  const stacked = stackedSeries(sources.map((s) => ({ key: s,
    values: h.bars.map((b) => b.kwh_by_source[s] || 0) })), "kwh", kwh);
  timeChart(document.getElementById("kwh-chart"), { series: stacked.series,
    data: [mids, ...stacked.data], tz: h.timezone, xRange, xTicks, xLabel: xTicks ? "date" : null,
    axes: [{ scale: "kwh", label: `kWh per ${STEP_NAMES[h.step]}` }] });
  const bars = uPlot.paths.bars({ size: [0.8, 64], align: 0 });
  const money = (v) => v.toFixed(2) + " " + h.currency;
  timeChart(document.getElementById("money-chart"), { tz: h.timezone, xRange, xTicks, xLabel: xTicks ? "date" : null,
    series: [
      { label: "revenue", scale: "money", stroke: "#3ecf8e", fill: "#3ecf8e", paths: bars, width: 0, points: { show: false }, value: (u, v) => v === null ? "–" : money(v) },
      { label: "energy cost", scale: "money", stroke: "#e0604f", fill: "#e0604f", paths: bars, width: 0, points: { show: false }, value: (u, v) => v === null ? "–" : money(-v) },
      { label: "net", scale: "money", stroke: "#f5b82e", width: 2, value: (u, v) => v === null ? "–" : money(v) }],
    data: [mids, h.bars.map((b) => b.revenue), h.bars.map((b) => -b.energy_cost), h.bars.map((b) => b.net)],
    axes: [{ scale: "money", label: `${h.currency} per ${STEP_NAMES[h.step]} (cost below zero)` }] });
}

// The same days as numbers, newest first.
function showTable(h) {
  const sources = sourcesIn(h.days, "kwh_by_source");
  const head = document.querySelector("#days thead tr");
  head.replaceChildren(...["Day", "Revenue", "Energy cost", "Net", ...sources.map((s) => (SOURCE_NAMES[s] || s) + " kWh")]
    .map((label) => Object.assign(document.createElement("th"), { textContent: label })));
  const money = (v) => v.toFixed(2) + " " + h.currency;
  document.querySelector("#days tbody").replaceChildren(...[...h.days].reverse().map((d) => {
    const tr = document.createElement("tr");
    for (const v of [d.day, money(d.revenue), money(d.energy_cost), money(d.net),
      ...sources.map((s) => (d.kwh_by_source[s] || 0).toFixed(1))]) {
      tr.appendChild(Object.assign(document.createElement("td"), { textContent: v }));
    }
    return tr;
  }));
}

async function show(event) {
  if (event) { event.preventDefault(); preset = null; }
  const q = new URLSearchParams();
  if (preset) q.set("preset", preset);
  else {
    for (const id of ["from", "to"]) if (document.getElementById(id).value) q.set(id, document.getElementById(id).value);
  }
  const r = await fetch("/api/history?" + q);
  const h = await r.json();
  const info = document.getElementById("range-info");
  if (!h.ok) { info.textContent = h.error; return; }
  document.getElementById("from").value = h.from;
  document.getElementById("to").value = h.to;
  document.getElementById("csv").href = "/api/history.csv?" + new URLSearchParams({ from: h.from, to: h.to });
  for (const b of document.querySelectorAll("[data-preset]")) b.classList.toggle("here", b.dataset.preset === preset);
  info.textContent = `${h.from} to ${h.to}, a bar per ${STEP_NAMES[h.step]}, times in ${h.timezone}`;
  showTotals(h);
  showCharts(h);
  showTable(h);
  sunrigCharts.history = h;  // what was drawn, as the API answered it
  document.body.dataset.drawn = "yes";
  document.body.dataset.preset = preset || "";
}

// A link may ask for a period: ?preset=year, or ?from=2026-05-01&to=2026-05-31.
const asked = new URLSearchParams(location.search);
if (asked.get("from") || asked.get("to")) {
  preset = null;
  document.getElementById("from").value = asked.get("from") || "";
  document.getElementById("to").value = asked.get("to") || "";
} else if (asked.get("preset")) preset = asked.get("preset");

document.getElementById("range").addEventListener("submit", show);
for (const b of document.querySelectorAll("[data-preset]")) {
  b.addEventListener("click", () => { preset = b.dataset.preset; document.body.dataset.drawn = ""; show(); });
}
show();

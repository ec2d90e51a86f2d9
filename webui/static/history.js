// Daily history from /api/history over a chosen range; the CSV link follows the range.
"use strict";

async function show(event) {
  if (event) event.preventDefault();
  const q = new URLSearchParams();
  if (document.getElementById("from").value) q.set("from", document.getElementById("from").value);
  if (document.getElementById("to").value) q.set("to", document.getElementById("to").value);
  document.getElementById("csv").href = "/api/history.csv?" + q;
  const h = await (await fetch("/api/history?" + q)).json();
  if (!h.ok) return;
  document.getElementById("from").value = h.from;
  document.getElementById("to").value = h.to;
  const t = h.days.map((d) => dayTs(d.day));
  timeChart(document.getElementById("money-chart"), [
    { label: "revenue", scale: "money", stroke: "#27ae60", width: 2 },
    { label: "energy cost", scale: "money", stroke: "#c0392b", width: 2 },
    { label: "net", scale: "money", stroke: "#f39c12", width: 2 },
  ], [t, h.days.map((d) => d.revenue), h.days.map((d) => d.energy_cost), h.days.map((d) => d.net)]);
  const sources = [...new Set(h.days.flatMap((d) => Object.keys(d.kwh_by_source)))].sort();
  const colours = { pv: "#f1c40f", battery: "#16a085", grid: "#7f8c8d" };
  timeChart(document.getElementById("kwh-chart"),
    sources.map((s) => ({ label: s, scale: "kwh", stroke: colours[s] || "#95a5a6", width: 2 })),
    [t, ...sources.map((s) => h.days.map((d) => d.kwh_by_source[s] || 0))]);
  document.body.dataset.drawn = "yes";
}

document.getElementById("range").addEventListener("submit", show);
show();

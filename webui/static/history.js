// Daily history from /api/history over a chosen range; the CSV link follows the range.
"use strict";

// The same days as numbers, newest first.
function showTable(h, sources) {
  const head = document.querySelector("#days thead tr");
  head.replaceChildren(...["Day", "Revenue", "Energy cost", "Net", ...sources.map((s) => s + " kWh")]
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
  const range = [dayTs(h.from) - 43200, dayTs(h.to) + 43200];
  timeChart(document.getElementById("money-chart"), [
    { label: "revenue", scale: "money", stroke: "#27ae60", width: 2 },
    { label: "energy cost", scale: "money", stroke: "#c0392b", width: 2 },
    { label: "net", scale: "money", stroke: "#f39c12", width: 2 },
  ], [t, h.days.map((d) => d.revenue), h.days.map((d) => d.energy_cost), h.days.map((d) => d.net)],
  260, range);
  const sources = [...new Set(h.days.flatMap((d) => Object.keys(d.kwh_by_source)))].sort();
  const colours = { pv: "#f1c40f", battery: "#16a085", grid: "#7f8c8d" };
  timeChart(document.getElementById("kwh-chart"),
    sources.map((s) => ({ label: s, scale: "kwh", stroke: colours[s] || "#95a5a6", width: 2 })),
    [t, ...sources.map((s) => h.days.map((d) => d.kwh_by_source[s] || 0))], 260, range);
  showTable(h, sources);
  document.body.dataset.drawn = "yes";
}

document.getElementById("range").addEventListener("submit", show);
show();

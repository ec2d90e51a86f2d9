// The owner's local inference over a period from /api/local: totals, a bar per day (requests,
// and their value at the reference prices), the users' table and each model's latency.
"use strict";

function cells(tr, values) {
  for (const v of values) tr.appendChild(Object.assign(document.createElement("td"), { textContent: v }));
  return tr;
}

function showTotals(v, currency) {
  const sum = (rows, key) => rows.reduce((a, r) => a + r[key], 0);
  document.getElementById("total-requests").textContent = sum(v.users, "requests").toLocaleString();
  document.getElementById("total-errors").textContent = sum(v.users, "errors").toLocaleString() + " answered with an error";
  document.getElementById("total-tokens").textContent = (sum(v.users, "prompt_tokens") + sum(v.users, "completion_tokens")).toLocaleString();
  document.getElementById("total-value").textContent = sum(v.days, "value").toFixed(2) + " " + currency;
  document.getElementById("gpu-hour").textContent = v.value_per_gpu_hour === null ? "–" : v.value_per_gpu_hour.toFixed(2) + " " + currency;
}

// A day's bar stands at its noon; the axis names the days in the site's time zone.
function showChart(v, currency) {
  const el = document.getElementById("local-chart");
  if (!v.days.length) { el.textContent = "No requests in this period."; return; }
  const mids = v.days.map((d) => Date.parse(d.day + "T12:00:00Z") / 1000);
  const bars = uPlot.paths.bars({ size: [0.6, 48], align: 0 });
  timeChart(el, { tz: v.timezone, xRange: [mids[0] - 43200, mids[mids.length - 1] + 43200],
    series: [
      { label: "requests", scale: "n", stroke: "#58a6ff", fill: "#58a6ff", paths: bars, width: 0, points: { show: false } },
      { label: "value", scale: "money", stroke: "#3ecf8e", width: 2, value: (u, x) => x === null ? "–" : x.toFixed(2) + " " + currency }],
    data: [mids, v.days.map((d) => d.requests), v.days.map((d) => d.value)],
    axes: [{ scale: "n", label: "requests per day" }, { scale: "money", label: `${currency} per day` }] });
}

function showTables(v) {
  document.querySelector("#users tbody").replaceChildren(...v.users.map((u) => cells(document.createElement("tr"),
    [u.user, u.model, u.requests, u.errors, u.prompt_tokens, u.completion_tokens])));
  const ms = (x) => x === null ? "–" : x.toFixed(1) + " ms";
  document.querySelector("#latency tbody").replaceChildren(...Object.entries(v.latency_ms).map(([m, l]) => cells(document.createElement("tr"),
    [m, ms(l.p50), ms(l.p95), l.n])));
}

async function show(event) {
  if (event) event.preventDefault();
  const q = new URLSearchParams();
  for (const id of ["from", "to"]) if (document.getElementById(id).value) q.set(id, document.getElementById(id).value);
  const r = await fetch("/api/local?" + q);
  const v = await r.json();
  const info = document.getElementById("range-info");
  if (!v.ok) { info.textContent = v.error; return; }
  const currency = document.getElementById("totals").dataset.currency;
  document.getElementById("from").value = v.from;
  document.getElementById("to").value = v.to;
  info.textContent = `${v.from} to ${v.to}, days in ${v.timezone}`;
  showTotals(v, currency);
  showChart(v, currency);
  showTables(v);
  sunrigCharts.local = v;  // what was drawn, as the API answered it
  document.body.dataset.drawn = "yes";
}

document.getElementById("range").addEventListener("submit", show);
show();

// The cumulative net cash flow against the CapEx, and the cost items, from /api/payback.
"use strict";

// The projection from the simulated year: its date, and what the year it rests on was.
function showSimulation(sim, fmt) {
  const big = document.getElementById("projected-sim");
  const detail = document.getElementById("sim-detail");
  const r = sim.result;
  if (!sim.enabled && !r) {
    big.textContent = "off";
    detail.textContent = "set [simulation] project_payback = true";
  } else if (r && !r.ok) {
    big.textContent = "failed";
    detail.textContent = r.error;
  } else if (r) {
    big.textContent = sim.projected_date || "not at this pace";
    detail.textContent = `${fmt(r.net_per_day)} a day over ${Math.round(r.days)} days from ` +
      `${r.period_start} (${r.policy}, ${(r.utilization * 100).toFixed(0)} % sold)` +
      (sim.running ? "; re-running for the new settings" : "");
  } else {
    big.textContent = "simulating…";
    detail.textContent = "a year of this site runs in the background";
  }
}

// The cash flow so far, and from today a dashed line to each projected payback date.
function paybackChart(p) {
  const last = p.cumulative[p.cumulative.length - 1];
  const projections = [["at the last 30 days' pace", p.projected_date, "#f5b82e"],
    ["at the simulated year's pace", p.simulation.projected_date, "#4aa3ff"]]
    .filter(([, date]) => last && date && date > last.day);
  const days = [...new Set([...p.cumulative.map((c) => c.day),
    ...projections.map(([, date]) => date)])].sort();
  const net = new Map(p.cumulative.map((c) => [c.day, c.net]));
  const series = [{ label: "net cash flow", scale: "money", stroke: "#27ae60", width: 2 },
    { label: "CapEx", scale: "money", stroke: "#c0392b", dash: [6, 4] }];
  const data = [days.map(dayTs), days.map((d) => net.has(d) ? net.get(d) : null),
    days.map(() => p.capex)];
  for (const [label, date, colour] of projections) {
    series.push({ label, scale: "money", stroke: colour, dash: [3, 3], spanGaps: true });
    data.push(days.map((d) => d === last.day ? last.net : d === date ? p.capex : null));
  }
  timeChart(document.getElementById("payback-chart"), series, data);
}

async function load() {
  const p = await (await fetch("/api/payback")).json();
  const cur = p.currency;
  const fmt = (v) => v === null ? "–" : Math.round(v).toLocaleString() + " " + cur;
  document.getElementById("capex").textContent = fmt(p.capex);
  document.getElementById("net").textContent = fmt(p.net_to_date);
  document.getElementById("pct").textContent = p.paid_back_pct.toFixed(1) + " %";
  document.getElementById("projected").textContent = p.projected_date || "not at this pace";
  document.getElementById("per-day").textContent = fmt(p.net_per_day_30d) + " a day";
  showSimulation(p.simulation, fmt);
  paybackChart(p);
  const body = document.getElementById("items");
  body.replaceChildren();
  for (const i of p.items) {
    const tr = document.createElement("tr");
    for (const v of [i.name, i.kind, i.amount ? fmt(i.amount) : "", i.amount_per_month ?
                     fmt(i.amount_per_month) : "", i.date]) {
      const td = document.createElement("td");
      td.textContent = v;
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
  document.body.dataset.drawn = "yes";
  const sim = p.simulation;
  if (sim.enabled && (sim.running || !sim.result)) setTimeout(load, 10000);  // not done yet
}

load();

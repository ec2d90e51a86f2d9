// The payback from /api/payback: the simulated year's date first (a whole year of seasons), the
// last 30 days' pace only once there are 30 days booked, what the net to date is made of, and
// the cumulative net against the CapEx on a chart that ends at a date that means something.
"use strict";

const text = (id, value) => { document.getElementById(id).textContent = value; };

// The projection from the simulated year: its date, and what the year it rests on was.
function showSimulation(sim, fmt) {
  const r = sim.result;
  if (!sim.enabled && !r) {
    text("projected-sim", "off");
    text("sim-detail", "set [simulation] project_payback = true to run a year of this site");
  } else if (r && !r.ok) {
    text("projected-sim", "failed");
    text("sim-detail", r.error);
  } else if (r) {
    text("projected-sim", outlookText(sim.outlook));
    text("sim-detail", `${fmt(r.net_per_day)} a day over ${Math.round(r.days)} days from ` +
      `${r.period_start} of this site's sun, prices and market run through the planner, after ` +
      `energy and OpEx; ${(r.utilization * 100).toFixed(0)} % of GPU-hours sold` +
      (sim.running ? "; re-running for the new settings" : ""));
  } else {
    text("projected-sim", "simulating…");
    text("sim-detail", "a year of this site runs in the background");
  }
}

function showPace(p, fmt) {
  text("projected", outlookText(p.pace));
  text("per-day", p.pace.state === "young"
    ? `a pace needs ${p.pace.min_days} days booked; a lease starting or ending swings a shorter one`
    : `${fmt(p.net_per_day_30d)} a day over the last 30 days, after energy and OpEx`);
}

function showNet(p, fmt) {
  const parts = p.parts;
  text("net", fmt(p.net_to_date));
  text("net-detail", `since ${p.since}: revenue and local value less energy and OpEx`);
  text("pct", p.paid_back_pct.toFixed(1) + " %");
  text("pct-detail", `net to date of the ${fmt(p.capex)} CapEx`);
  text("capex", fmt(p.capex));
  text("capex-detail", `${p.items.filter((i) => i.kind === "capex").length} items (below)`);
  const rows = [["Market revenue", parts.revenue, "from the first lease on"],
    ["Local inference value", parts.local_value, "the owner's tokens at the reference prices"],
    ["Rig energy", -parts.energy_cost, "solar, battery and grid at their prices (History)"],
    ["OpEx", -parts.opex, `each item from its own date, the first ${p.since}`],
    ["Net to date", p.net_to_date, "what counts against the CapEx"]];
  document.querySelector("#parts tbody").replaceChildren(...rows.map(([label, v, why]) => {
    const tr = document.createElement("tr");
    const name = Object.assign(document.createElement("td"), { textContent: label });
    name.appendChild(Object.assign(document.createElement("div"), { className: "muted", textContent: why }));
    tr.append(name, Object.assign(document.createElement("td"), { className: "num", textContent: fmt(v) }));
    return tr;
  }));
  text("parts-note", "History's net is the cash of its days (revenue less energy): it leaves out OpEx and local value, so it differs from the net here.");
}

// The cash flow so far, and from today a dashed line to each projected date that means
// something; the chart ends at the latest such date (never past the horizon) or today.
function paybackChart(p) {
  const last = p.cumulative[p.cumulative.length - 1];
  const projections = [["at the simulated year's pace", p.simulation.outlook, "#4aa3ff"],
    ["at the last 30 days' pace", p.pace, "#f5b82e"]]
    .filter(([, o]) => last && o && o.state === "ok" && o.date > last.day);
  const days = [...new Set([p.since, ...p.cumulative.map((c) => c.day), p.today,
    ...projections.map(([, o]) => o.date)])].sort();
  const net = new Map(p.cumulative.map((c) => [c.day, c.net]));
  const series = [{ label: "net cash flow", scale: "money", stroke: "#3ecf8e", width: 2, spanGaps: true },
    { label: "CapEx", scale: "money", stroke: "#e0604f", dash: [6, 4], width: 1.5 }];
  const data = [days.map(dayTs), days.map((d) => net.has(d) ? net.get(d) : d === p.since ? 0 : null),
    days.map(() => p.capex)];
  for (const [label, o, colour] of projections) {
    series.push({ label, scale: "money", stroke: colour, dash: [3, 3], width: 2, spanGaps: true });
    data.push(days.map((d) => d === last.day ? last.net : d === o.date ? p.capex : null));
  }
  timeChart(document.getElementById("payback-chart"), { series, data, tz: "UTC", xLabel: "date",
    axes: [{ scale: "money", label: p.currency, fmt: compact }] });
  text("chart-note", projections.length ? "" : `No projected date within ${p.pace.horizon.slice(0, 4)} to draw yet: the chart ends today.`);
}

function showItems(items, fmt) {
  document.getElementById("items").replaceChildren(...items.map((i) => {
    const tr = document.createElement("tr");
    for (const v of [i.name, i.kind, i.amount ? fmt(i.amount) : "", i.amount_per_month ?
      fmt(i.amount_per_month) : "", i.date]) {
      tr.appendChild(Object.assign(document.createElement("td"), { textContent: v }));
    }
    return tr;
  }));
}

async function load() {
  const p = await (await fetch("/api/payback")).json();
  if (!p.ok) return;
  const fmt = (v) => v === null ? "–" : Math.round(v).toLocaleString() + " " + p.currency;
  showSimulation(p.simulation, fmt);
  showPace(p, fmt);
  showNet(p, fmt);
  paybackChart(p);
  showItems(p.items, fmt);
  document.body.dataset.drawn = "yes";
  const sim = p.simulation;
  if (sim.enabled && (sim.running || !sim.result)) setTimeout(load, 10000);  // not done yet
}

load();

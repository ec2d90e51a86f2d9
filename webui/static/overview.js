// Renders /api/status into the overview page and refreshes it every few seconds.
"use strict";

const kw = (w) => (w === null || w === undefined) ? "–" : (Math.abs(w) >= 1000 ? (w / 1000).toFixed(2) + " kW" : Math.round(w) + " W");
const money = (v, cur) => (v === null || v === undefined) ? "–" : v.toFixed(2) + " " + cur;
const text = (id, value) => { document.getElementById(id).textContent = value; };
let siteZone = "UTC";
const localTime = (iso) => siteTime(iso, siteZone);

// Which way power flows; under 20 W is noise, not a direction.
function flow(w, positive, negative) {
  if (w === null || w === undefined) return "";
  if (Math.abs(w) < 20) return "idle";
  return w > 0 ? positive : negative;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) {
    const td = document.createElement("td");
    td.textContent = c;
    tr.appendChild(td);
  }
  return tr;
}

// The flows as a two-column diagram: where power comes from (left) and where it goes (right),
// each band as wide as its share of the largest flow.
const SVG = "http://www.w3.org/2000/svg";
const FLOW_SOURCES = { pv: ["Solar", 45], battery: ["Battery", 135], grid: ["Grid", 225] };
const FLOW_SINKS = { house: ["House", 30], rig: ["Rig", 100], battery: ["Battery", 170], grid: ["Grid", 240] };
const FLOW_COLOURS = { pv: "#f5b82e", battery: "#b07cff", grid: "#8b96a1" };

function svgEl(name, attrs, content) {
  const el = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (content !== undefined) el.textContent = content;
  return el;
}

function drawFlows(site) {
  const svg = document.getElementById("flows");
  const flows = (site && !site.stale && site.flows) || [];
  document.getElementById("no-flows").hidden = Boolean(site && !site.stale);
  const parts = [];
  const biggest = Math.max(1, ...flows.map((f) => f.power_w));
  const labelYs = [];
  for (const f of flows) {
    const y0 = FLOW_SOURCES[f.from][1], y1 = FLOW_SINKS[f.to][1];
    const width = 2 + 16 * f.power_w / biggest;
    parts.push(svgEl("path", { d: `M150 ${y0} C320 ${y0}, 320 ${y1}, 490 ${y1}`, fill: "none",
      stroke: FLOW_COLOURS[f.from], "stroke-width": width, "stroke-opacity": 0.7,
      class: "flow", "data-from": f.from, "data-to": f.to },
    undefined));
    let y = (y0 + y1) / 2 - 4;
    while (labelYs.some((u) => Math.abs(u - y) < 13)) y += 14;  // labels must not overlap
    labelYs.push(y);
    parts.push(svgEl("text", { x: 320, y, "text-anchor": "middle", class: "flow-label" },
      kw(f.power_w)));
  }
  const node = (x, anchor, [label, y], side, key) => {
    const total = flows.filter((f) => f[side] === key).reduce((a, f) => a + f.power_w, 0);
    parts.push(svgEl("text", { x, y: y - 2, "text-anchor": anchor, class: "flow-node" }, label));
    parts.push(svgEl("text", { x, y: y + 15, "text-anchor": anchor, class: "flow-total" },
      total ? kw(total) : "–"));
  };
  for (const [key, spec] of Object.entries(FLOW_SOURCES)) node(140, "end", spec, "from", key);
  for (const [key, spec] of Object.entries(FLOW_SINKS)) node(500, "start", spec, "to", key);
  svg.replaceChildren(...parts);
}

// What each source's kWh is priced at in the books.
const PRICED_AT = { pv: "the feed-in it forgoes", grid: "the import price",
  battery: "what charged it", unpriced: "no price known then" };

// Today's rig energy by source: the split as one bar, and a row per source with its cost.
function renderEnergyToday(today, cur) {
  const by = today.energy_kwh_by_source || {};
  const total = Object.values(by).reduce((a, b) => a + b, 0);
  const sources = sourcesIn([today], "energy_kwh_by_source");
  text("energy-kwh", total.toFixed(1) + " kWh");
  text("energy-zone", siteZone);
  text("solar-share", today.solar_share_pct === null ? "–" : today.solar_share_pct.toFixed(0) + " %");
  document.getElementById("source-bar").replaceChildren(...sources.filter((k) => by[k] > 0).map((k) => {
    const seg = document.createElement("span");
    seg.style.width = (100 * by[k] / total) + "%";
    seg.style.background = SOURCE_COLOURS[k];
    seg.title = `${SOURCE_NAMES[k] || k} ${by[k].toFixed(1)} kWh`;
    seg.dataset.source = k;
    return seg;
  }));
  const cost = today.energy_cost_by_source || {};
  document.querySelector("#sources tbody").replaceChildren(...sources.map((k) => row([
    SOURCE_NAMES[k] || k, by[k].toFixed(2), total > 0 ? (100 * by[k] / total).toFixed(0) + " %" : "–",
    money(cost[k] || 0, cur), PRICED_AT[k] || ""])));
}

// The last 24 hours of the rig's power, stacked by source, from the ledger's 15-minute books.
async function drawPower() {
  let h;
  try {
    const r = await fetch("/api/history?preset=24h");
    if (!r.ok) return;
    h = await r.json();
  } catch (e) { return; }  // the agent may be restarting; drawn again next time
  const sources = sourcesIn(h.bars, "kwh_by_source");
  document.getElementById("no-power").hidden = sources.length > 0;
  const perHour = 3600 / 900;  // a 15-minute bar's kWh as its mean kW
  const stacked = stackedSeries(sources.map((k) => ({ key: k,
    values: h.bars.map((b) => (b.kwh_by_source[k] || 0) * perHour) })), "kw", (v) => v.toFixed(2) + " kW");
  const mids = h.bars.map((b) => b.ts + 450);
  timeChart(document.getElementById("power-chart"), { series: stacked.series,
    data: [mids, ...stacked.data], tz: h.timezone, height: 220,
    xRange: [h.bars[0].ts, h.bars[h.bars.length - 1].ts + 900],
    axes: [{ scale: "kw", label: "kW (mean over 15 min)" }] });
  document.body.dataset.drawn = "yes";
}

// What markets are told (the host preflight behind tee/type) comes first; the host's own NVML
// evidence is the operator's diagnostic, and a tenant checks a lease with `sunrig verify-lease`.
function renderTee(tee) {
  const pre = tee.preflight;
  const failed = pre ? pre.findings.filter((f) => !f.ok) : [];
  text("tee", tee.advertised ? `advertised: ${pre.tee_type}` : "not advertised");
  const why = tee.advertised
    ? `preflight passed ${siteTime(pre.checked, siteZone)}, +${tee.premium_pct} % premium`
    : failed.length ? `${failed[0].name}: ${failed[0].detail}` +
      (failed.length > 1 ? ` (+${failed.length - 1} more)` : "") + "; run sunrig cc preflight"
    : "no confidential-computing preflight on this rig";
  const host = tee.available ? `; host attestation (operator diagnostic): ${tee.mode || "unknown"}` : "";
  text("tee-detail", `${why}${host}. Tenants check a lease with sunrig verify-lease.`);
}

function render(s) {
  const cur = s.currency;
  siteZone = s.timezone || "UTC";
  renderEnergyToday(s.today, cur);
  text("clock", localTime(s.ts) + (s.clock_speed !== 1 ? `  ·  simulated ×${s.clock_speed}` : ""));
  const site = s.site || {};
  text("pv", kw(site.pv_w));
  text("load", kw(site.load_w));
  text("rig", kw(s.rig_power_w));
  text("grid", kw(site.grid_w === undefined || site.grid_w === null ? null : Math.abs(site.grid_w)));
  text("grid-dir", flow(site.grid_w, "importing", "exporting"));
  drawFlows(s.site);
  text("battery", kw(site.battery_w === undefined || site.battery_w === null ? null : Math.abs(site.battery_w)));
  text("soc", site.soc_pct === null || site.soc_pct === undefined ? "no battery"
    : [flow(site.battery_w, "charging", "discharging"), site.soc_pct.toFixed(0) + " %"].filter(Boolean).join(" · "));
  text("price-import", s.price ? s.price.import_per_kwh.toFixed(3) + " " + cur + "/kWh" : "unknown");
  text("price-export", s.price ? "feed-in " + s.price.export_per_kwh.toFixed(3) : "");
  text("revenue", money(s.today.revenue, cur));
  const earnings = document.querySelector("#earnings tbody");
  earnings.replaceChildren(...Object.entries(s.earnings || {}).map(([m, e]) =>
    row([m, money(e.today, cur), money(e.last_30_days, cur), money(e.lifetime, cur)])));
  text("cost", money(s.today.energy_cost, cur));
  const costs = document.querySelector("#costs tbody");
  const withKwh = (v, wh) => money(v, cur) + " · " + wh.toFixed(1) + " kWh";
  costs.replaceChildren(...Object.entries(s.energy_cost_by_role || {}).map(([role, c]) =>
    row([role.replace("_", " "), withKwh(c.today, c.kwh_today),
      withKwh(c.last_30_days, c.kwh_last_30_days), withKwh(c.lifetime, c.kwh_lifetime)])));
  text("kwh", s.today.energy_kwh.toFixed(1) + " kWh");
  text("net", money(s.today.net, cur));
  text("payback", s.payback.capex > 0 ? s.payback.paid_back_pct.toFixed(1) + " %" : "no CapEx set");
  const sim = s.payback.simulation || {};
  text("payback-date", [sim.outlook && "simulated year: " + outlookText(sim.outlook),
    s.payback.pace && "last 30 days: " + outlookText(s.payback.pace)].filter(Boolean).join(" · "));
  if (s.plan) {
    const offered = Object.values(s.plan.offered).reduce((a, b) => a + b, 0);
    text("plan", `${offered} GPUs offered · ${s.plan.local_gpus} kept for the owner`);
    text("floor", Object.entries(s.plan.floor_per_gpu_hour).map(([m, f]) =>
      `lowest price on ${m}: ${f.toFixed(2)} ${cur} per GPU-hour`).join(", "));
  } else {
    text("plan", "no plan");
    text("floor", "");
  }
  renderTee(s.tee || {});
  const gpus = document.querySelector("#gpus tbody");
  gpus.replaceChildren(...s.gpus.map((g) => {
    const tr = row([g.index, g.name, g.role + (g.market ? " · " + g.market : ""), g.lease_id || "",
      kw(g.power_w), kw(g.power_limit_w), g.util_pct === null ? "–" : g.util_pct.toFixed(0) + " %",
      g.temp_c === null ? "–" : g.temp_c.toFixed(0) + " °C"]);
    tr.className = "role-" + g.role;
    return tr;
  }));
  const leases = document.querySelector("#leases tbody");
  leases.replaceChildren(...s.leases.map((l) => row([l.market, l.lease_id, l.gpus,
    l.price_per_gpu_hour.toFixed(2) + " " + cur, localTime(l.started)])));
  document.getElementById("no-leases").hidden = s.leases.length > 0;
  const failing = Object.entries(s.jobs).filter(([, j]) => !j.ok);
  text("jobs", failing.length === 0 ? "All jobs healthy." : "Failing: " + failing.map(([n, j]) => `${n} (${j.last_error})`).join("; "));
}

render(JSON.parse(document.getElementById("initial-status").textContent));
drawPower();
setInterval(drawPower, 60000);
setInterval(async () => {
  try {
    const r = await fetch("/api/status");
    if (r.ok) render(await r.json());
  } catch (e) { /* the agent may be restarting; try again next tick */ }
}, 3000);

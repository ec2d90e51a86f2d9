// The cumulative net cash flow against the CapEx, and the cost items, from /api/payback.
"use strict";

(async () => {
  const p = await (await fetch("/api/payback")).json();
  const cur = p.currency;
  const fmt = (v) => v === null ? "–" : Math.round(v).toLocaleString() + " " + cur;
  document.getElementById("capex").textContent = fmt(p.capex);
  document.getElementById("net").textContent = fmt(p.net_to_date);
  document.getElementById("pct").textContent = p.paid_back_pct.toFixed(1) + " %";
  document.getElementById("projected").textContent = p.projected_date || "not at this pace";
  document.getElementById("per-day").textContent = fmt(p.net_per_day_30d) + " a day";
  const t = p.cumulative.map((c) => dayTs(c.day));
  timeChart(document.getElementById("payback-chart"), [
    { label: "net cash flow", scale: "money", stroke: "#27ae60", width: 2 },
    { label: "CapEx", scale: "money", stroke: "#c0392b", dash: [6, 4] },
  ], [t, p.cumulative.map((c) => c.net), p.cumulative.map(() => p.capex)]);
  const body = document.getElementById("items");
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
})();

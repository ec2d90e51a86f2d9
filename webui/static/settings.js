// The settings form: read /api/settings, send changes as JSON with the CSRF token, and show
// each error beside its field.
"use strict";

const $ = (id) => document.getElementById(id);
const PLANNER = ["wear_per_gpu_hour", "margin_per_gpu_hour", "min_floor_per_gpu_hour"];

function scheduleText(windows) {
  return windows.map((w) => `${w.days.join(",")} ${w.start}-${w.end} ${w.gpus}`).join("\n");
}

function parseSchedule(text) {
  return text.split("\n").map((l) => l.trim()).filter((l) => l).map((line) => {
    const m = line.match(/^([a-z,]+)\s+(\d\d:\d\d)-(\d\d:\d\d)\s+(\d+)$/);
    if (!m) throw new Error(`"${line}" is not like "mon,tue 08:00-18:00 2"`);
    return { days: m[1].split(","), start: m[2], end: m[3], gpus: Number(m[4]) };
  });
}

function showError(field, message) {
  for (const el of document.querySelectorAll(".error")) {  // "capex.items[1].date" -> items
    el.textContent = field && field.startsWith(el.dataset.for) ? message : "";
  }
}

const TARIFF = ["kind", "import_per_kwh", "export_per_kwh", "import_formula", "export_formula"];

function itemsText(items, amountKey, dateKey) {
  return items.map((i) => `${i.name}; ${i[amountKey]}; ${i[dateKey]}`).join("\n");
}

function parseItems(text, amountKey, dateKey, field) {
  return text.split("\n").map((l) => l.trim()).filter((l) => l).map((line) => {
    const parts = line.split(";").map((p) => p.trim());
    if (parts.length !== 3 || parts[1] === "" || isNaN(Number(parts[1]))) {
      throw { field, message: `"${line}" is not like "name; amount; 2026-01-15"` };
    }
    return { name: parts[0], [amountKey]: Number(parts[1]), [dateKey]: parts[2] };
  });
}

async function load() {
  const s = await (await fetch("/api/settings")).json();
  $("local.reserved_gpus").value = s.local.reserved_gpus;
  $("local.schedule").value = scheduleText(s.local.schedule);
  $("local.reservation").value = s.local.reservation;
  for (const k of PLANNER) $(`planner.${k}`).value = s.planner[k];
  $("capex.items").value = itemsText(s.capex.items, "amount", "date");
  $("capex.opex").value = itemsText(s.capex.opex, "amount_per_month", "since");
  for (const k of TARIFF) $(`tariff.${k}`).value = s.tariff[k];
  document.body.dataset.loaded = "yes";
}

async function save(event) {
  event.preventDefault();
  let schedule;
  try { schedule = parseSchedule($("local.schedule").value); }
  catch (e) { showError("local.schedule", e.message); return; }
  let capex;
  try {
    capex = { items: parseItems($("capex.items").value, "amount", "date", "capex.items"),
              opex: parseItems($("capex.opex").value, "amount_per_month", "since", "capex.opex") };
  } catch (e) { showError(e.field, e.message); return; }
  const tariff = Object.fromEntries(TARIFF.map((k) => [k, $(`tariff.${k}`).value]));
  tariff.import_per_kwh = Number(tariff.import_per_kwh);
  tariff.export_per_kwh = Number(tariff.export_per_kwh);
  const body = { local: { reserved_gpus: Number($("local.reserved_gpus").value), schedule,
                          reservation: $("local.reservation").value },
                 planner: Object.fromEntries(PLANNER.map((k) => [k, Number($(`planner.${k}`).value)])),
                 capex, tariff };
  const session = await (await fetch("/api/session")).json();
  if (!session.logged_in) { location.href = "/login?next=/settings"; return; }
  const r = await fetch("/api/settings", { method: "POST", body: JSON.stringify(body),
    headers: { "Content-Type": "application/json", "X-CSRF-Token": session.csrf_token } });
  const answer = await r.json();
  if (answer.ok) {
    showError("", "");
    $("saved").textContent = "Saved at " + new Date().toLocaleTimeString();
  } else {
    showError(answer.field || "", answer.error);
    $("saved").textContent = "";
  }
}

$("settings").addEventListener("submit", save);
load();

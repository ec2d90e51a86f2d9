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
  for (const el of document.querySelectorAll(".error")) {
    el.textContent = el.dataset.for === field ? message : "";
  }
}

async function load() {
  const s = await (await fetch("/api/settings")).json();
  $("local.reserved_gpus").value = s.local.reserved_gpus;
  $("local.schedule").value = scheduleText(s.local.schedule);
  for (const k of PLANNER) $(`planner.${k}`).value = s.planner[k];
  document.body.dataset.loaded = "yes";
}

async function save(event) {
  event.preventDefault();
  let schedule;
  try { schedule = parseSchedule($("local.schedule").value); }
  catch (e) { showError("local.schedule", e.message); return; }
  const body = { local: { reserved_gpus: Number($("local.reserved_gpus").value), schedule },
                 planner: Object.fromEntries(PLANNER.map((k) => [k, Number($(`planner.${k}`).value)])) };
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

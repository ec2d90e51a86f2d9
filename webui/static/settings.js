// The settings form: read /api/settings, edit schedule windows and cost items as rows, send the
// change as the JSON the API takes, and show every error the server names beside its field.
// A save while logged out keeps the edits (in the page and in sessionStorage) and sends them
// once the owner has logged in again.
"use strict";

const $ = (id) => document.getElementById(id);
const PLANNER = ["wear_per_gpu_hour", "margin_per_gpu_hour", "min_floor_per_gpu_hour"];
const TARIFF = ["kind", "import_per_kwh", "export_per_kwh", "import_formula", "export_formula"];
const PENDING = "sunrig.settings.pending";  // the edits a save could not send: not logged in
const CURRENCY = $("settings").dataset.currency;
// each list of rows: its container's id, its template, and the item's amount and date keys
const LISTS = {
  "capex.items": { template: "item-row", amount: "amount", date: "date",
                   unit: CURRENCY, dateLabel: "Bought on" },
  "capex.opex": { template: "item-row", amount: "amount_per_month", date: "since",
                  unit: `${CURRENCY} per month`, dateLabel: "Since" },
};

// --- rows ---------------------------------------------------------------------------------------
function addRow(listId, templateId, fill) {
  const row = $(templateId).content.firstElementChild.cloneNode(true);
  row.querySelector(".remove").addEventListener("click", () => { row.remove(); renumber(listId); });
  fill(row);
  $(listId).append(row);
  renumber(listId);
  return row;
}

function renumber(listId) {  // each row's error span answers to "local.schedule[2]" and below
  [...$(listId).children].forEach((row, i) => {
    row.querySelector(".row-error").dataset.for = `${listId}[${i}]`;
  });
}

function addWindow(w = { days: [], start: "08:00", end: "18:00", gpus: 1 }) {
  return addRow("local.schedule", "window-row", (row) => {
    for (const box of row.querySelectorAll(".days input")) box.checked = w.days.includes(box.value);
    row.querySelector(".start").value = w.start;
    row.querySelector(".end").value = w.end === "24:00" ? "00:00" : w.end;  // midnight
    row.querySelector(".gpus").value = w.gpus;
  });
}

function readWindow(row) {
  const end = row.querySelector(".end").value;
  return { days: [...row.querySelectorAll(".days input:checked")].map((b) => b.value),
           start: row.querySelector(".start").value,
           end: end === "00:00" ? "24:00" : end,  // a window cannot end before it starts
           gpus: numberOf(row.querySelector(".gpus")) };
}

function addItem(listId, item = {}) {
  const list = LISTS[listId];
  return addRow(listId, list.template, (row) => {
    row.querySelector(".unit").textContent = list.unit;
    row.querySelector(".amount-label").textContent = listId === "capex.opex" ? "Per month" : "Amount";
    row.querySelector(".date-label").textContent = list.dateLabel;
    row.querySelector(".name").value = item.name || "";
    row.querySelector(".amount").value = item[list.amount] ?? "";
    row.querySelector(".date").value = item[list.date] || "";
  });
}

function readItem(listId, row) {
  const list = LISTS[listId];
  return { name: row.querySelector(".name").value.trim(),
           [list.amount]: numberOf(row.querySelector(".amount")),
           [list.date]: row.querySelector(".date").value };
}

function rows(listId) { return [...$(listId).children]; }

// --- the whole form -----------------------------------------------------------------------------
function numberOf(input) {  // an empty or unreadable field is sent as null: the server names it
  return input.value === "" || input.validity.badInput ? null : Number(input.value);
}

function fill(s) {
  $("local.reserved_gpus").value = s.local.reserved_gpus;
  $("local.schedule").replaceChildren();
  s.local.schedule.forEach((w) => addWindow(w));
  $("local.reservation").value = s.local.reservation;
  for (const k of PLANNER) $(`planner.${k}`).value = s.planner[k];
  for (const listId of Object.keys(LISTS)) {
    $(listId).replaceChildren();
    s.capex[listId.split(".")[1]].forEach((item) => addItem(listId, item));
  }
  for (const k of TARIFF) $(`tariff.${k}`).value = s.tariff[k];
}

function read() {
  const tariff = Object.fromEntries(TARIFF.map((k) => [k, $(`tariff.${k}`).value]));
  tariff.import_per_kwh = numberOf($("tariff.import_per_kwh"));
  tariff.export_per_kwh = numberOf($("tariff.export_per_kwh"));
  return {
    local: { reserved_gpus: numberOf($("local.reserved_gpus")),
             schedule: rows("local.schedule").map(readWindow),
             reservation: $("local.reservation").value },
    planner: Object.fromEntries(PLANNER.map((k) => [k, numberOf($(`planner.${k}`))])),
    capex: { items: rows("capex.items").map((r) => readItem("capex.items", r)),
             opex: rows("capex.opex").map((r) => readItem("capex.opex", r)) },
    tariff,
  };
}

// --- errors -------------------------------------------------------------------------------------
function spanFor(field) {  // the most specific span whose field is this one or holds it
  let best = null;
  for (const el of document.querySelectorAll(".error[data-for]")) {
    const f = el.dataset.for;
    const holds = field === f || field.startsWith(f + ".") || field.startsWith(f + "[");
    if (holds && (!best || f.length > best.dataset.for.length)) best = el;
  }
  return best;
}

function showErrors(errors) {
  for (const el of document.querySelectorAll(".error[data-for]")) el.textContent = "";
  for (const el of document.querySelectorAll(".invalid")) el.classList.remove("invalid");
  const unplaced = [];
  for (const { field, error } of errors) {
    const span = spanFor(field || "");
    if (!span) { unplaced.push(`${field || "the change"}: ${error}`); continue; }
    const inner = field.slice(span.dataset.for.length).replace(/^\./, "");  // "amount", "days[0]"
    span.textContent += (span.textContent ? "; " : "") + (inner ? `${inner}: ` : "") + error;
    span.closest(".row, .field")?.classList.add("invalid");
  }
  const problems = $("problems");
  problems.hidden = errors.length === 0;
  problems.textContent = errors.length === 0 ? "" :
    `${errors.length === 1 ? "One field needs" : `${errors.length} fields need`} a change before this is saved.` +
    (unplaced.length ? " " + unplaced.join("; ") : "");
  if (errors.length) document.querySelector(".invalid, #problems").scrollIntoView({ block: "center" });
}

// --- saving -------------------------------------------------------------------------------------
function keepForLater(body) {
  sessionStorage.setItem(PENDING, JSON.stringify(body));
  $("saved").textContent = "";
  const note = $("login-note");
  note.replaceChildren("Not saved: your login has expired. Your edits are kept; ");
  const link = Object.assign(document.createElement("a"),
    { href: "/login?next=/settings", id: "login-again", textContent: "log in again" });
  note.append(link, " and they are saved then.");
  note.hidden = false;
  note.scrollIntoView({ block: "center" });
}

async function send(body) {
  const session = await (await fetch("/api/session")).json();
  if (!session.logged_in) { keepForLater(body); return; }
  const r = await fetch("/api/settings", { method: "POST", body: JSON.stringify(body),
    headers: { "Content-Type": "application/json", "X-CSRF-Token": session.csrf_token } });
  if (r.status === 401) { keepForLater(body); return; }  // expired between the two requests
  const answer = await r.json();
  sessionStorage.removeItem(PENDING);
  $("login-note").hidden = true;
  if (answer.ok) {
    showErrors([]);
    fill(answer);
    $("saved").textContent = "Saved at " + savedAt(new Date());
  } else {
    showErrors(answer.errors || [{ field: answer.field || "", error: answer.error }]);
    $("saved").textContent = "Not saved.";
  }
}

function savedAt(now) {  // on the site's clock, as every other time on the dashboard
  const zone = $("settings").dataset.timezone;
  const opts = { hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short" };
  try { return now.toLocaleTimeString([], zone ? { ...opts, timeZone: zone } : opts); }
  catch (e) { return now.toLocaleTimeString([], opts); }  // a zone this browser does not know
}

async function save(event) {
  event.preventDefault();
  $("save").disabled = true;
  try { await send(read()); } finally { $("save").disabled = false; }
}

async function load() {
  const pending = sessionStorage.getItem(PENDING);
  const [settings, session] = await Promise.all([
    fetch("/api/settings").then((r) => r.json()), fetch("/api/session").then((r) => r.json())]);
  fill(pending ? JSON.parse(pending) : settings);
  $("login-note").hidden = session.logged_in;
  if (pending && session.logged_in) await send(JSON.parse(pending));  // back from the login
  else if (pending) keepForLater(JSON.parse(pending));
  document.body.dataset.loaded = "yes";
}

$("add-window").addEventListener("click", () => addWindow().querySelector("input").focus());
$("add-item").addEventListener("click", () => addItem("capex.items").querySelector("input").focus());
$("add-opex").addEventListener("click", () => addItem("capex.opex").querySelector("input").focus());
$("settings").addEventListener("submit", save);
load();

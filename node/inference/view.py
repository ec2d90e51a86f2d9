"""The Local AI page's data: who used the owner's models, how much, how fast, and what it was
worth, between two local days. Read from the store only (the live servers come with the
agent's status); no prompt or completion text exists to show.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any

from node.inference.metering import latency_percentiles
from node.inference.value import local_value_per_gpu_hour
from node.storage.store import Store

DEFAULT_DAYS = 30
MAX_DAYS = 3660
LATENCY_ROWS = 100_000  # the newest answers the percentiles are taken over


def local_view(store: Store, query: Mapping[str, str], now: datetime) -> dict[str, Any]:
    """`from` and `to` (ISO dates, default the last 30 days to today): per user and model the
    requests, errors and tokens; per model the latency's p50 and p95; per day the requests,
    tokens and booked value; and the value of a local GPU-hour over the last week."""
    first, last = _range(query, now.astimezone(store.tz).date())
    span = [first.isoformat(), last.isoformat()]
    users = store.inference_usage_by_day(*span)
    return {"from": span[0], "to": span[1], "timezone": str(store.tz), "users": _per_user(users),
            "latency_ms": _latency(store, span), "days": _per_day(store, users, span),
            "value_per_gpu_hour": _rounded(local_value_per_gpu_hour(store, now))}


def _range(query: Mapping[str, str], today: date) -> tuple[date, date]:
    try:
        last = date.fromisoformat(query.get("to") or today.isoformat())
        first = date.fromisoformat(query.get("from") or
                                   (last - timedelta(days=DEFAULT_DAYS - 1)).isoformat())
    except ValueError:
        raise ValueError("from and to must be dates like 2026-11-22") from None
    if first > last or (last - first).days > MAX_DAYS:
        raise ValueError("from must be before to, and at most ten years apart")
    return first, last


def _per_user(rows: list[dict]) -> list[dict[str, Any]]:
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        t = out.setdefault((r["user"], r["model"]), {
            "user": r["user"], "model": r["model"], "requests": 0, "errors": 0,
            "prompt_tokens": 0, "completion_tokens": 0})
        for key in ("requests", "errors", "prompt_tokens", "completion_tokens"):
            t[key] += r[key] or 0
    return [out[k] for k in sorted(out)]


def _latency(store: Store, span: list[str]) -> dict[str, dict[str, Any]]:
    rows = store.query("SELECT model, latency_ms FROM inference_usage WHERE day BETWEEN ? AND ? "
                       "AND status < 400 ORDER BY id DESC LIMIT ?", [*span, LATENCY_ROWS])
    by_model: dict[str, list[float]] = {}
    for r in rows:
        by_model.setdefault(r["model"], []).append(r["latency_ms"])
    return {m: latency_percentiles(v) for m, v in sorted(by_model.items())}


def _per_day(store: Store, users: list[dict], span: list[str]) -> list[dict[str, Any]]:
    days: dict[str, dict[str, Any]] = {}
    for r in users:
        d = days.setdefault(r["day"], _day(r["day"]))
        d["requests"] += r["requests"]
        d["tokens"] += (r["prompt_tokens"] or 0) + (r["completion_tokens"] or 0)
    for r in store.query("SELECT day, sum(amount) AS value FROM local_value_bookings "
                         "WHERE day BETWEEN ? AND ? GROUP BY day", span):
        days.setdefault(r["day"], _day(r["day"]))["value"] = round(r["value"], 6)
    return [days[k] for k in sorted(days)]


def _day(day: str) -> dict[str, Any]:
    return {"day": day, "requests": 0, "tokens": 0, "value": 0.0}


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def status_lines(local: Mapping[str, Any]) -> list[str]:
    """`sunrig status`'s lines for local inference (the status's `local_inference`): the
    gateway, each server's state and GPUs, and what local demand asks for."""
    if not local.get("enabled"):
        return ["local inference: off"]
    demand = local.get("demand") or {}
    lines = [f"local inference: {local.get('url', '?')}, demand asks for "
             f"{demand.get('gpus_wanted', 0)} GPU(s)" + (" (requests waiting)"
                                                         if demand.get("held_up") else "")]
    for sv in local.get("servers") or []:
        gpus = ",".join(sv.get("gpu_uuids") or []) or "no GPU"
        label = f"{sv['model']}{' (simulated)' if sv.get('simulated') else ''}"
        lines.append(f"  {label:<24} {sv['state']:<16} {gpus}; {sv.get('inflight', 0)} in "
                     f"flight, {sv.get('restarts', 0)} restarts")
    return lines

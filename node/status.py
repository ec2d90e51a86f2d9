"""The agent's state as plain JSON-ready data: what `/api/status` and `sunrig status` show."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from energy.flows import power_flows
from market_adapter.base import ACTIVE
from node.agent import Agent
from node.books.ledger import LOCAL_VALUE, Payback, day_summary, payback, signed_amount
from node.planning.planner import price_at
from node.planning.projection import outlook, projected_date
from node.storage.store import from_epoch
from node.wiring import still_needs


def _iso(value: datetime | float | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        value = from_epoch(value)
    return value.isoformat()


def agent_status(agent: Agent, local_inference: Any = None) -> dict[str, Any]:
    now = agent.clock.now()
    store = agent.store
    today = store.local_day(now)
    summary = day_summary(store, today)
    local_date = now.astimezone(store.tz).date()
    pb = payback(store, local_date)
    return {
        "ts": _iso(now),
        "site_name": agent.cfg.site.name,
        "needs": still_needs(agent.cfg),  # what the owner has still to configure
        "currency": agent.cfg.site.currency,
        "timezone": agent.cfg.site.timezone,
        "clock_speed": agent.clock.speed,
        "site": _site(agent),
        "rig_power_w": round(agent.rig_power_w(), 1),
        "price": _price(agent, now),
        "gpus": _gpus(agent),
        "roles": _role_counts(agent),
        "plan": _plan_slot(agent, now),
        "leases": [_lease(r) for r in store.leases(ACTIVE)],
        "markets": _markets(agent),
        "today": {"day": today, "revenue": summary.revenue, "energy_cost": summary.energy_cost,
                  "net": round(summary.revenue - summary.energy_cost, 4),
                  "energy_kwh": round(summary.energy_wh / 1000.0, 3),
                  "revenue_by_market": summary.revenue_by_market,
                  "energy_cost_by_role": summary.cost_by_role,
                  "energy_kwh_by_source": summary.kwh_by_source,
                  "energy_cost_by_source": summary.cost_by_source,
                  "solar_share_pct": _solar_share_pct(summary.kwh_by_source)},
        "earnings": _totals(store, "revenue", local_date),
        "energy_cost_by_role": _totals(store, "energy", local_date),
        "payback": _payback_status(agent, pb, local_date),
        "jobs": {name: {"ok": h.ok, "last_ok": _iso(h.last_ok), "last_error": h.last_error,
                        "failures": h.failures} for name, h in agent.state.jobs.items()},
        "tee": _tee(agent),
        "local_inference": local_inference_view(store, local_inference,
                                                local_date),
        "healthy": agent.healthy(),
    }


def _payback_status(agent: Agent, pb: Payback, today: date) -> dict[str, Any]:
    return {"capex": pb.capex, "net_to_date": pb.net_to_date,
            "cash_to_date": pb.cash_to_date, "local_value_to_date": pb.local_value_to_date,
            "net_per_day_30d": pb.net_per_day_30d, "paid_back_pct": pb.paid_back_pct,
            "projected_date": pb.projected_date.isoformat() if pb.projected_date else None,
            "pace": pace_outlook(agent.store, pb, today),
            "simulation": _year_projection(agent, pb, today)}


def pace_outlook(store: Any, pb: Payback, today: date) -> dict[str, Any]:
    """The last 30 days' payback date, or why there is none: too young a store, a pace that
    never pays back, or a date past the horizon."""
    started = costs_start(store.cost_items(), today)
    return outlook(pb.projected_date, today, booked_days(store, started, today))


def costs_start(items: list[dict], today: date) -> date:
    """Where the payback counts from: the earliest CapEx or OpEx item's date."""
    return min((date.fromisoformat(i["date"]) for i in items), default=today)


def local_inference_view(store: Any, runtime: Any, today: date,
                         days: int = 30) -> dict[str, Any]:
    """The owner's local inference as plain data: servers and gateway (while it runs), users
    with their tokens, and per day the requests, tokens and value at the reference prices."""
    first = (today - timedelta(days=days - 1)).isoformat()
    view = runtime.view() if runtime is not None else {"enabled": False, "servers": []}
    value = store.query("SELECT day, name AS model, amount FROM ledger_daily WHERE category = "
                        "'local_value' AND day >= ? ORDER BY day, name", [first])
    users = [{k: r[k] for k in ("name", "requests", "prompt_tokens", "completion_tokens")}
             | {"active": r["revoked"] is None} for r in store.inference_users()]
    pb = payback(store, today)
    return {**view, "users": users, "payback": {"net_to_date": pb.net_to_date,
                                                "cash_to_date": pb.cash_to_date,
                                                "local_value_to_date": pb.local_value_to_date},
            "usage_by_day": store.inference_usage_by_day(first, today.isoformat()),
            "value_by_day": value, "value_today": round(sum(
                r["amount"] for r in value if r["day"] == today.isoformat()), 4)}


def _tee(agent: Agent) -> dict[str, Any]:
    """What markets are told (the host preflight's gate) beside the host's own NVML evidence, an
    operator diagnostic: with the GPUs bound to vfio-pci the host may have no evidence at all."""
    st, gate = agent.state, agent.parts.tee_gate
    told = {"advertised": bool(gate is not None and gate.open),
            "preflight": gate.last.to_dict() if gate is not None and gate.last else None}
    if agent.parts.tee is None:
        return {"available": False, "mode": "unavailable", **told, "verdict": None,
                "checked": None, "message": "this host has no NVML attestation (no "
                "confidential-computing GPUs it can reach, or TEE switched off)"}
    return {"available": True, "mode": st.tee_state.mode if st.tee_state else None,
            "state": st.tee_state.as_dict() if st.tee_state else None,
            **told, "premium_pct": agent.cfg.tee.premium_pct,
            "verdict": st.tee_verdict.as_dict() if st.tee_verdict else None,
            "checked": _iso(st.tee_checked), "message": st.tee_message}


def _markets(agent: Agent) -> dict[str, dict[str, Any]]:
    """Each market's health as the planner sees it: down (its last sync failed, or it answered a
    shape sunrig does not know: degraded), and the records it skipped as unreadable, and why."""
    out = {}
    for name, market in agent.parts.markets.items():
        chain = getattr(market, "chain", market)
        out[name] = {"down": name in agent.state.markets_down,
                     "status": getattr(market, "status", "ok"),
                     "why": getattr(market, "degraded_why", "") or None,
                     "skipped": dict(getattr(chain, "unreadable", None) or {})}
    return out


def _solar_share_pct(kwh_by_source: dict[str, float]) -> float | None:
    """The share of the rig's energy that came straight from the panels."""
    total = sum(kwh_by_source.values())
    return round(100.0 * kwh_by_source.get("pv", 0.0) / total, 1) if total > 0 else None


def _site(agent: Agent) -> dict | None:
    s = agent.state.site
    if s is None:
        return None
    flows = [] if s.stale else power_flows(s.pv_w, s.load_w, agent.rig_power_w(), s.battery_w,
                                           s.grid_w)
    return {"ts": _iso(s.ts), "pv_w": s.pv_w, "load_w": s.load_w, "grid_w": s.grid_w,
            "battery_w": s.battery_w, "soc_pct": s.soc_pct, "stale": s.stale,
            "flows": [{"from": f.source, "to": f.sink, "power_w": f.power_w} for f in flows],
            "rejected": _rejected_values(agent.parts.site)}


def _rejected_values(reader: Any) -> dict[str, dict[str, int]]:
    """What the site source turned away since the start: values outside the site's limits by
    field, and (MQTT) payloads that did not parse by topic."""
    return {"implausible": dict(getattr(reader, "implausible", None) or {}),
            "malformed": dict(getattr(reader, "malformed", None) or {})}


def _price(agent: Agent, now: datetime) -> dict | None:
    r = agent.store.price_at(now)
    if r is None:
        return None
    return {"start": _iso(r["start"]), "end": _iso(r["end"]),
            "import_per_kwh": r["import_per_kwh"], "export_per_kwh": r["export_per_kwh"]}


def _gpus(agent: Agent) -> list[dict]:
    out = []
    for index, snap in sorted(agent.state.gpus.items()):
        a = agent.state.assignments.get(index)
        out.append({"index": index, "uuid": snap.uuid, "name": snap.name,
                    "role": a.role if a else None, "market": a.market if a else None,
                    "lease_id": a.lease_id if a else None, "power_w": snap.power_w,
                    "power_limit_w": snap.power_limit_w, "util_pct": snap.util_pct,
                    "temp_c": snap.temp_c, "memory_used_bytes": snap.memory_used_bytes,
                    "memory_total_bytes": snap.memory_total_bytes, "cc_mode": snap.cc_mode})
    return out


def _role_counts(agent: Agent) -> dict[str, int]:
    counts = {"local": 0, "market": 0, "parked": 0}
    for a in agent.state.assignments.values():
        counts[a.role] += 1
    return counts


def _plan_slot(agent: Agent, now: datetime) -> dict | None:
    plan = agent.state.plan
    slot = plan.slot_at(now) if plan else None
    if slot is None:
        return None
    return {"planner": plan.planner, "start": _iso(slot.start), "end": _iso(slot.end),
            "offered": dict(slot.offered), "floor_per_gpu_hour": dict(slot.floor_per_gpu_hour),
            "local_gpus": slot.local_gpus, "expected_margin": slot.expected_margin}


def _lease(r: dict) -> dict:
    return {"market": r["market"], "lease_id": r["lease_id"], "gpus": r["gpus"],
            "gpu_indexes": r["gpu_indexes"], "price_per_gpu_hour": r["price_per_gpu_hour"],
            "state": r["state"], "started": _iso(r["started"]), "ended": _iso(r["ended"])}


def plan_view(agent: Agent) -> dict[str, Any]:
    """The current plan slot by slot, with the prices and forecasts it was made with."""
    plan, inp = agent.state.plan, agent.state.plan_inputs
    if plan is None or inp is None:
        return {"planner": None, "slots": []}
    slots = []
    for s in plan.slots:
        price = price_at(inp.prices, s.start)
        slots.append({
            "start": _iso(s.start), "end": _iso(s.end),
            "import_per_kwh": price.import_per_kwh if price else None,
            "export_per_kwh": price.export_per_kwh if price else None,
            "pv_w": round(inp.pv_w_at(s.start), 1) if inp.pv_w_at else None,
            "house_w": round(inp.house_w_at(s.start), 1) if inp.house_w_at else None,
            "local_gpus": s.local_gpus, "offered": dict(s.offered),
            "floor_per_gpu_hour": dict(s.floor_per_gpu_hour),
            "expected_margin": s.expected_margin})
    return {"planner": plan.planner, "made": _iso(plan.created), "now": _iso(agent.clock.now()),
            "timezone": agent.cfg.site.timezone, "currency": agent.cfg.site.currency,
            "reserved_gpus": agent.cfg.local.reserved_gpus, "slots": slots}


HISTORY_PRESETS = {"24h": ("15m", 1), "day": ("hour", 1), "week": ("day", 7),
                   "month": ("day", 30), "year": ("month", 365)}
MONTH_BARS_AFTER_DAYS = 92  # a longer range asked by dates is drawn a bar a month
STEP_S = {"15m": 900, "hour": 3600}


def history_view(agent: Agent, args: dict[str, str]) -> dict[str, Any]:
    """The rig's energy by source and the money, between `from` and `to` (ISO dates, default
    the last 30 days) or over a `preset` (24h, day, week, month, year): `days` from the daily
    ledger, and `bars` a step at a time (15 minutes, an hour, a day or a month, in the site's
    time zone) with every step of the range present, zero where nothing was booked."""
    store, now = agent.store, agent.clock.now()
    preset = args.get("preset") or None
    first, last, step = _history_range(args, preset, now.astimezone(store.tz).date())
    if step in STEP_S:
        span = _short_span(store, now, preset, last)
        first = from_epoch(span[0]).astimezone(store.tz).date()
        days = _history_days(store, first, last)
        bars = _short_bars(store, span, STEP_S[step])
    else:
        days = _history_days(store, first, last)
        bars = _long_bars(store, days, first, last, step)
    return {"from": first.isoformat(), "to": last.isoformat(), "preset": preset, "step": step,
            "timezone": agent.cfg.site.timezone, "currency": agent.cfg.site.currency,
            "days": days, "bars": bars, "totals": _history_totals(bars)}


def _history_range(args: dict[str, str], preset: str | None,
                   today: date) -> tuple[date, date, str]:
    if preset is not None and preset not in HISTORY_PRESETS:
        raise ValueError(f"preset must be one of {', '.join(HISTORY_PRESETS)}, not "
                         f"{preset[:20]!r}")
    try:
        last = date.fromisoformat(args.get("to") or today.isoformat())
        if preset is not None:
            step, n_days = HISTORY_PRESETS[preset]
            return last - timedelta(days=n_days - 1), last, step
        first = date.fromisoformat(args.get("from") or (last - timedelta(days=29)).isoformat())
    except ValueError:
        raise ValueError("from and to must be dates like 2026-11-22") from None
    if first > last or (last - first).days > 3660:
        raise ValueError("from must be before to, and at most ten years apart")
    return first, last, "month" if (last - first).days >= MONTH_BARS_AFTER_DAYS else "day"


def _history_days(store: Any, first: date, last: date) -> list[dict[str, Any]]:
    """Per day with anything booked: revenue per market, energy cost and kWh by source, net."""
    days: dict[str, dict[str, Any]] = {}
    for r in store.daily_range(first, last):
        d = days.setdefault(r["day"], {"day": r["day"], "revenue": 0.0, "energy_cost": 0.0,
                                        "local_value": 0.0, "revenue_by_market": {},
                                        "kwh_by_source": {}, "energy_cost_by_source": {}})
        if r["category"] == "revenue":
            d["revenue"] += r["amount"]
            _add(d["revenue_by_market"], r["name"], r["amount"], 4)
        elif r["category"] == "energy":
            d["energy_cost"] += r["amount"]
            _add(d["kwh_by_source"], r["source"], r["energy_wh"] / 1000.0, 3)
            _add(d["energy_cost_by_source"], r["source"], r["amount"], 4)
        else:  # local_value: the owner's own use of the rig, at the reference token prices
            d["local_value"] += r["amount"]
    rows = []
    for d in sorted(days.values(), key=lambda d: d["day"]):
        for key in ("revenue", "energy_cost", "local_value"):
            d[key] = round(d[key], 4)
        d["net"] = round(d["revenue"] - d["energy_cost"], 4)  # cash
        d["net_with_local_value"] = round(d["net"] + d["local_value"], 4)
        rows.append(d)
    return rows


def _add(into: dict[str, float], key: str, value: float, digits: int) -> None:
    into[key] = round(into.get(key, 0.0) + value, digits)


def _empty_bar(ts: float, label: str) -> dict[str, Any]:
    return {"ts": ts, "label": label, "kwh_by_source": {}, "energy_cost_by_source": {},
            "revenue": 0.0,
            "energy_cost": 0.0, "local_value": 0.0, "net": 0.0}


def _long_bars(store: Any, days: list[dict], first: date, last: date,
               step: str) -> list[dict[str, Any]]:
    """A bar per day (or per month) of the range, summed from the daily rows."""
    by_label: dict[str, dict[str, Any]] = {}
    d = first
    while d <= last:
        label = d.isoformat() if step == "day" else d.isoformat()[:7]
        if label not in by_label:
            start = datetime(d.year, d.month, d.day, tzinfo=store.tz)
            by_label[label] = _empty_bar(start.timestamp(), label)
        d += timedelta(days=1)
    for row in days:
        bar = by_label[row["day"] if step == "day" else row["day"][:7]]
        for key in ("kwh_by_source", "energy_cost_by_source"):
            for source, value in row[key].items():
                _add(bar[key], source, value, 4)
        for key in ("revenue", "energy_cost", "local_value", "net"):
            bar[key] = round(bar[key] + row[key], 4)
    return list(by_label.values())


def _short_span(store: Any, now: datetime, preset: str | None,
                last: date) -> tuple[float, float]:
    """The last 24 hours up to the current 15 minutes, or the local day `last`."""
    if preset == "24h":
        end = (now.timestamp() // 900 + 1) * 900
        return end - 86400.0, end
    start = datetime(last.year, last.month, last.day, tzinfo=store.tz)
    following = last + timedelta(days=1)
    return start.timestamp(), datetime(following.year, following.month, following.day,
                                       tzinfo=store.tz).timestamp()


def _short_bars(store: Any, span: tuple[float, float], step_s: int) -> list[dict[str, Any]]:
    """Bars of 15 minutes or an hour from the energy bookings and the payouts' times."""
    start, end = span
    bars = {}
    ts = start
    while ts < end:
        bars[ts] = _empty_bar(ts, from_epoch(ts).astimezone(store.tz).isoformat())
        ts += step_s

    def bar_at(t: float) -> dict[str, Any]:
        return bars[start + (t - start) // step_s * step_s]

    for r in store.query("SELECT bucket, source, sum(energy_wh) AS wh, sum(cost) AS cost FROM "
                         "energy_bookings WHERE bucket >= ? AND bucket < ? GROUP BY bucket, "
                         "source", [start, end]):
        bar = bar_at(r["bucket"])
        _add(bar["kwh_by_source"], r["source"], r["wh"] / 1000.0, 4)
        _add(bar["energy_cost_by_source"], r["source"], r["cost"], 4)
        bar["energy_cost"] = round(bar["energy_cost"] + r["cost"], 4)
    for r in store.query("SELECT ts, amount FROM payouts WHERE ts >= ? AND ts < ?",
                         [start, end]):
        bar_at(r["ts"])["revenue"] += r["amount"]
    for bar in bars.values():
        bar["revenue"] = round(bar["revenue"], 4)
        bar["net"] = round(bar["revenue"] - bar["energy_cost"], 4)
    return list(bars.values())


def _history_totals(bars: list[dict]) -> dict[str, Any]:
    """The bars in all: the rig's kWh and energy cost by source, the solar share, net."""
    kwh: dict[str, float] = {}
    cost: dict[str, float] = {}
    for bar in bars:
        for source, value in bar["kwh_by_source"].items():
            _add(kwh, source, value, 3)
        for source, value in bar["energy_cost_by_source"].items():
            _add(cost, source, value, 4)
    return {"kwh_by_source": kwh, "energy_cost_by_source": cost,
            "solar_share_pct": _solar_share_pct(kwh),
            **{key: round(sum(bar[key] for bar in bars), 4)
               for key in ("revenue", "energy_cost", "local_value", "net")}}


def payback_view(agent: Agent) -> dict[str, Any]:
    """Cumulative net cash flow day by day against the CapEx, the cost items, what the net to
    date is made of, and each projected date as the owner should read it."""
    store = agent.store
    today = agent.clock.now().astimezone(store.tz).date()
    items = store.cost_items()
    started = costs_start(items, today)
    rows = store.daily_range(started, today)
    cumulative = _cumulative_net(rows, items, started, today)
    pb = payback(store, today)
    return {"currency": agent.cfg.site.currency, "timezone": agent.cfg.site.timezone,
            "today": today.isoformat(), "capex": pb.capex, "since": started.isoformat(),
            "net_to_date": pb.net_to_date, "cash_to_date": pb.cash_to_date,
            "local_value_to_date": pb.local_value_to_date, "parts": _net_parts(rows, pb),
            "net_per_day_30d": pb.net_per_day_30d, "paid_back_pct": pb.paid_back_pct,
            "projected_date": pb.projected_date.isoformat() if pb.projected_date else None,
            "pace": pace_outlook(store, pb, today),
            "simulation": _year_projection(agent, pb, today),
            "items": items, "cumulative": cumulative}


def _cumulative_net(rows: list[dict], items: list[dict], started: date,
                    today: date) -> list[dict[str, Any]]:
    """Day by day from the first cost item: the net as the payback counts it (revenue and local
    value in, energy and each OpEx item from its own date out), so its last day is the net to
    date."""
    per_day: dict[str, float] = {}
    for r in rows:
        per_day[r["day"]] = per_day.get(r["day"], 0.0) + signed_amount(r)
    opex = [(date.fromisoformat(i["date"]), i["amount_per_month"] * 12 / 365)
            for i in items if i["kind"] == "opex"]
    out, total, day = [], 0.0, started
    while day <= today:
        total += per_day.get(day.isoformat(), 0.0) - sum(a for since, a in opex if since <= day)
        out.append({"day": day.isoformat(), "net": round(total, 2)})
        day += timedelta(days=1)
    return out


def booked_days(store: Any, started: date, today: date) -> int:
    """Days from the first booked day (not before the cost items start) to today, inclusive."""
    first = store.query("SELECT min(day) AS day FROM ledger_daily")[0]["day"]
    if first is None:
        return 0
    return max(0, (today - max(started, date.fromisoformat(first))).days + 1)


def _net_parts(rows: list[dict], pb: Payback) -> dict[str, float]:
    """What the net to date is made of: revenue and local value in, energy and OpEx out. OpEx
    is what remains of the payback's net, since it accrues from each item's own date."""
    sums = {category: sum(r["amount"] for r in rows if r["category"] == category)
            for category in ("revenue", "energy", LOCAL_VALUE)}
    opex = sums["revenue"] + sums[LOCAL_VALUE] - sums["energy"] - pb.net_to_date
    return {"revenue": round(sums["revenue"], 2), "local_value": round(sums[LOCAL_VALUE], 2),
            "energy_cost": round(sums["energy"], 2), "opex": round(opex, 2)}


def _year_projection(agent: Agent, pb: Payback, today: date) -> dict[str, Any]:
    """The payback date at the pace of the simulated year, and how that year went."""
    stored = agent.projection.stored()
    when = projected_date(stored, pb.capex - pb.net_to_date, today)
    result = {k: v for k, v in (stored or {}).items() if k != "fingerprint"}
    return {"enabled": agent.cfg.simulation.project_payback,
            "running": agent.projection.running,
            "projected_date": when.isoformat() if when else None, "result": result or None,
            "outlook": outlook(when, today) if stored and stored.get("ok") else None}


def _totals(store, category: str, today: date) -> dict[str, dict[str, float]]:
    """Per ledger name (a market's revenue, a role's energy cost): amount and kWh today, over
    the last 30 days and in all."""
    rows = store.query(
        "SELECT name, sum(CASE WHEN day = :today THEN amount ELSE 0 END) AS today, "
        "sum(CASE WHEN day >= :d30 THEN amount ELSE 0 END) AS d30, sum(amount) AS lifetime, "
        "sum(CASE WHEN day = :today THEN energy_wh ELSE 0 END) AS wh_today, "
        "sum(CASE WHEN day >= :d30 THEN energy_wh ELSE 0 END) AS wh_d30, "
        "sum(energy_wh) AS wh_lifetime FROM ledger_daily WHERE category = :category "
        "GROUP BY name ORDER BY name",
        {"today": today.isoformat(), "d30": (today - timedelta(days=29)).isoformat(),
         "category": category})
    periods = {"today": "today", "last_30_days": "d30", "lifetime": "lifetime"}
    out = {}
    for r in rows:
        out[r["name"]] = {name: round(r[col], 2) for name, col in periods.items()}
        if category == "energy":
            out[r["name"]] |= {f"kwh_{name}": round(r[f"wh_{col}"] / 1000.0, 2)
                               for name, col in periods.items()}
    return out

"""The payback date projected from a year simulation, beside the one from the last 30 days.

The last 30 days say little in December about a rig that earns most from summer sun. The year
simulation runs the planner over the configured year of site data, prices and market orders
(`[simulation]`, the same run as `sunrig simulate`) and gives the net cash flow per day over a
whole year, seasons included. It runs in a child process at the lowest CPU priority, so the agent
and the dashboard never wait for it, and again only when the owner changes something it depends
on. The result is kept in the store, so a restart does not run it again.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import logging
import math
import multiprocessing
import os
import signal
from datetime import date, datetime
from typing import Any

from node.books.ledger import date_at_pace
from node.config import Config
from node.storage.store import Store

log = logging.getLogger("sunrig.projection")
META_KEY = "year_projection"
POLICY = "planner"


def fingerprint(cfg: Config) -> str:
    """What the simulation's answer depends on; the dashboard and store settings are not."""
    parts = (cfg.site, cfg.gpus.simulated, cfg.local, cfg.energy.simulated, cfg.tariff,
             cfg.markets.sim, cfg.planner, cfg.capex, cfg.simulation)
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def simulate_year(cfg: Config) -> dict[str, Any]:
    """The planner over the configured period; net per day after energy, shortfall and OpEx."""
    from node.planning.economics import load_site, simulate  # heavy: only in the child
    from node.planning.policies import POLICIES

    site = load_site(cfg)
    result = simulate(cfg, site, POLICIES[POLICY](cfg, site), POLICY)
    years, _ = result.payback()
    return {"policy": POLICY, "period_start": cfg.simulation.start, "days": result.days,
            "profit": round(result.profit, 2), "opex": round(result.opex, 2),
            "net_per_day": round((result.profit - result.opex) / result.days, 2),
            "utilization": round(result.utilization, 4), "payback_years": years}


def _child(cfg: Config, conn, niceness: int) -> None:
    with contextlib.suppress(OSError):  # a sandbox may forbid it: then at normal priority
        os.nice(niceness)
    _die_with_parent()
    try:
        conn.send({"ok": True, **simulate_year(cfg)})
    except Exception as exc:  # noqa: BLE001 - the parent shows whatever went wrong
        conn.send({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
    finally:
        conn.close()


def _die_with_parent() -> None:
    """A killed agent must not leave its simulation running (Linux: PR_SET_PDEATHSIG)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: the simulation ends by itself, its answer unread
    if os.getppid() == 1:  # the parent died before the line above
        os._exit(1)


class YearProjection:
    """Owns at most one running simulation; `poll` starts or collects it."""

    # How much nicer than the agent the child runs: 19, only the CPU nothing else wants. On a
    # machine kept busy by other work it may then wait indefinitely, which is right for the
    # owner's rig but not for a test that waits for its answer: those set it to 0.
    niceness = 19

    def __init__(self, store: Store):
        self.store = store
        self._proc: multiprocessing.process.BaseProcess | None = None
        self._conn = None
        self._running_for: str | None = None
        self._corrupt_logged: str | None = None  # the unreadable stored value last logged

    def stored(self) -> dict[str, Any] | None:
        """The last run's result; None when there is none, or when what is stored cannot be
        read (logged once): the next poll then runs the simulation again."""
        text = self.store.get_meta(META_KEY)
        if not text:
            return None
        try:
            return _checked_result(json.loads(text))
        except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
            if text != self._corrupt_logged:
                log.warning("the stored year simulation is unreadable (%s); it is run again",
                            str(exc)[:200])
                self._corrupt_logged = text
            return None

    @property
    def running(self) -> bool:
        return self._proc is not None

    def poll(self, cfg: Config, now: datetime) -> None:
        """Collect a finished run; start one when none is stored for this config."""
        if not cfg.simulation.project_payback:
            return
        if self._proc is not None:
            self._collect(now)
            return
        stored = self.stored()
        wanted = fingerprint(cfg)
        if stored is None or stored.get("fingerprint") != wanted:
            self._start(cfg, wanted)

    def _start(self, cfg: Config, wanted: str) -> None:
        ctx = multiprocessing.get_context("spawn")  # no threads or sockets carried over
        parent, child = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(target=_child, args=(cfg, child, self.niceness), daemon=True,
                                 name="sunrig-year-projection")
        self._proc.start()
        child.close()
        self._conn, self._running_for = parent, wanted
        log.info("year simulation started for the payback projection")

    def _collect(self, now: datetime) -> None:
        assert self._proc is not None and self._conn is not None
        if self._conn.poll():
            try:
                result = self._conn.recv()
            except EOFError:
                result = {"ok": False, "error": "the simulation ended without an answer"}
        elif self._proc.is_alive():
            return
        else:
            result = {"ok": False, "error": f"the simulation died (exit {self._proc.exitcode})"}
        result |= {"fingerprint": self._running_for, "run_at": now.isoformat()}
        self._proc.join(5)
        self._reset()
        with self.store.transaction() as db:
            self.store.set_meta(db, META_KEY, json.dumps(result))
        if result["ok"]:
            log.info("year simulation: %.2f a day net, payback in %s years",
                     result["net_per_day"], result["payback_years"])
        else:
            log.warning("year simulation failed: %s", result["error"])

    def _reset(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = self._running_for = None

    def stop(self) -> None:
        """Stop a run in progress; the next start runs it again."""
        if self._proc is not None:
            self._proc.terminate()
            self._proc.join(5)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join()
            self._reset()


def _checked_result(doc: object) -> dict[str, Any]:
    """A stored result as the status page and the payback use it, or a ValueError."""
    if not isinstance(doc, dict) or not isinstance(doc.get("ok"), bool):
        raise ValueError("not an object with ok = true or false")
    net = doc.get("net_per_day")
    if doc["ok"] and (isinstance(net, bool) or not isinstance(net, int | float)
                      or not math.isfinite(net)):
        raise ValueError("net_per_day is not a finite number")
    return doc


def projected_date(stored: dict[str, Any] | None, remaining: float, today: date) -> date | None:
    """When the rest of the CapEx is paid back at the simulated year's pace."""
    if not stored or not stored.get("ok"):
        return None
    return date_at_pace(today, remaining, stored["net_per_day"])


# A pace read from fewer days than this swings with every lease that starts or ends: a
# projection from it is noise, so the page says how many days it has instead.
MIN_PACE_DAYS = 30
# Beyond this no date is given: a rig's hardware does not last that long, and a chart that
# ran to such a date would squash the years that matter into a sliver.
HORIZON_YEARS = 25


def outlook(when: date | None, today: date, history_days: int | None = None) -> dict[str, Any]:
    """A projected payback date as the owner should read it: `state` is "young" (fewer than
    MIN_PACE_DAYS of booked history, where `history_days` is given), "never" (the pace does not
    pay back), "beyond" (later than the horizon) or "ok" with its `date`."""
    horizon = horizon_date(today)
    doc: dict[str, Any] = {"date": None, "horizon": horizon.isoformat(),
                           "history_days": history_days, "min_days": MIN_PACE_DAYS}
    if history_days is not None and history_days < MIN_PACE_DAYS:
        return doc | {"state": "young"}
    if when is None:
        return doc | {"state": "never"}
    if when > horizon:
        return doc | {"state": "beyond"}
    return doc | {"state": "ok", "date": when.isoformat()}


def horizon_date(today: date) -> date:
    """Today HORIZON_YEARS on (29 February falls back to the 28th)."""
    try:
        return today.replace(year=today.year + HORIZON_YEARS)
    except ValueError:
        return today.replace(year=today.year + HORIZON_YEARS, day=28)

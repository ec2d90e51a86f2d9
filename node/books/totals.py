"""Lifetime totals read from the store: what `/metrics` serves as counters and Home Assistant as
its lifetime sensors, from one source.

A counter must never go down, not even across a restart, so nothing here is counted in memory:
revenue, the rig's energy and the value of local inference are summed from the daily ledger
(`ledger_daily`, rebuilt from bookings that only ever grow), and local inference from the usage
rows (`inference_usage`, append-only). The ledger is summed in integers (millionths of the
currency, milliwatt-hours), exactly, so a total that grew is never shown smaller because
floating-point additions ran in another order (or in other batches, before a restart and
after); latencies likewise, in microseconds.

The usage table grows with every request; its sums are kept per process and only the rows
added since the last read are queried (the table's ids only increase), so a scrape does not
scan every request ever made. A restart reads them all once.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Any

from node.storage.store import Store

# seconds; from a short completion on a local GPU to a long one on a busy server
LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
ERROR_STATUS = 400  # an answer at or above it is an error; its latency is not in the histogram
MICRO = 1_000_000  # money is summed in millionths of the currency, latency in microseconds
MILLI = 1_000  # energy in milliwatt-hours
CHUNK_ROWS = 20_000  # usage rows per query while catching up (a few tenths of a second each)


def ledger_totals(store: Store) -> dict[str, Any]:
    """Revenue per market, the rig's energy (Wh) per role and source, and the value of local
    inference per model, since the first booking."""
    rows = store.query(
        "SELECT category, name, source, "
        f"sum(CAST(round(energy_wh * {MILLI}) AS INTEGER)) AS mwh, "
        f"sum(CAST(round(amount * {MICRO}) AS INTEGER)) AS micro "
        "FROM ledger_daily GROUP BY category, name, source ORDER BY category, name, source")
    money: dict[str, dict[str, float]] = defaultdict(dict)
    for r in rows:
        if r["category"] != "energy":  # revenue by market, local_value by model
            money[r["category"]][r["name"]] = r["micro"] / MICRO
    return {"revenue_by_market": money["revenue"],
            "energy_wh": [{"role": r["name"], "source": r["source"],
                           "energy_wh": r["mwh"] / MILLI}
                          for r in rows if r["category"] == "energy"],
            "local_value_by_model": money["local_value"]}


class InferenceTotals:
    """Local inference per user, model and status since the first request, and per model a
    latency histogram of the answered requests; read from the store, new rows only."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_id = 0
        self._counts: dict[tuple[str, str, int], list[int]] = {}
        self._latency: dict[str, dict[str, Any]] = {}

    def read(self, store: Store) -> dict[str, Any]:
        with self._lock:
            self._catch_up(store)
            requests = [{"user": u, "model": m, "status": s, "requests": c[0],
                         "prompt_tokens": c[1], "completion_tokens": c[2]}
                        for (u, m, s), c in sorted(self._counts.items())]
            latency = {m: {"buckets": list(h["buckets"]), "count": h["count"],
                           "sum_s": h["sum_us"] / MICRO}
                       for m, h in sorted(self._latency.items())}
        return {"requests": requests, "latency": latency,
                "latency_buckets_s": list(LATENCY_BUCKETS_S)}

    def _catch_up(self, store: Store) -> None:
        """Add the rows written since the last read, a slice of ids at a time: the store has
        one lock, and a first read of years of requests must not hold up its other users."""
        top = store.query("SELECT coalesce(max(id), 0) AS top FROM inference_usage")[0]["top"]
        while self._last_id < top:
            upto = min(top, self._last_id + CHUNK_ROWS)
            self._add(store.query(_NEW_USAGE_SQL, [*LATENCY_BUCKETS_S, self._last_id, upto]))
            self._last_id = upto  # ids only grow: every row up to the top read is committed

    def _add(self, rows: list[dict]) -> None:
        for r in rows:
            c = self._counts.setdefault((r["user"], r["model"], r["status"]), [0, 0, 0])
            c[0] += r["n"]
            c[1] += r["prompt_tokens"]
            c[2] += r["completion_tokens"]
            h = self._latency.setdefault(r["model"], {
                "buckets": [0] * len(LATENCY_BUCKETS_S), "count": 0, "sum_us": 0})
            for i in range(len(LATENCY_BUCKETS_S)):
                h["buckets"][i] += r[f"le{i}"]
            h["count"] += r["answered"]
            h["sum_us"] += r["latency_us"]


def _new_usage_sql() -> str:
    answered = f"status < {ERROR_STATUS}"
    buckets = ", ".join(f"sum({answered} AND latency_ms <= ? * 1000.0) AS le{i}"
                        for i in range(len(LATENCY_BUCKETS_S)))
    return ("SELECT user, model, status, count(*) AS n, "
            "sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens, "
            f"sum({answered}) AS answered, "
            f"coalesce(sum(CASE WHEN {answered} THEN CAST(round(latency_ms * 1000) AS INTEGER) "
            "END), 0) AS latency_us, "
            f"{buckets} FROM inference_usage WHERE id > ? AND id <= ? "
            "GROUP BY user, model, status")


_NEW_USAGE_SQL = _new_usage_sql()


class Totals:
    """The one source of lifetime totals for the metrics and Home Assistant."""

    def __init__(self, store: Store):
        self.store = store
        self.inference = InferenceTotals()

    def lifetime(self) -> dict[str, Any]:
        """Plain data (JSON as it stands): the ledger's totals and local inference's."""
        return {**ledger_totals(self.store), "inference": self.inference.read(self.store)}

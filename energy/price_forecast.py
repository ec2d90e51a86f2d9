"""Prices beyond what is published: the past week's mean at the same local time of day.

Day-ahead prices are known until midnight tomorrow at best; a 48-hour plan needs the rest. Each
missing slot gets the mean of the known prices at the same local time of day over the past week,
so the plan keeps its evening peaks and its sunny-noon dips. The result is a forecast for the
planner only; nothing stores it as a price.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from zoneinfo import ZoneInfo

from energy.types import PriceSlot


def extend(known: list[PriceSlot], history: list[PriceSlot], until: datetime,
           tz: ZoneInfo) -> list[PriceSlot]:
    """`known` (in time order) followed by forecast slots up to `until`."""
    if not known:
        return []
    step = known[-1].end - known[-1].start
    by_time: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for slot in history + known:
        by_time[_minute_of_day(slot.start, tz)].append((slot.import_per_kwh,
                                                        slot.export_per_kwh))
    out = list(known)
    ts = known[-1].end
    while ts < until:
        seen = by_time.get(_minute_of_day(ts, tz)) or _nearest(by_time, ts, tz)
        imp = sum(p[0] for p in seen) / len(seen)
        exp = sum(p[1] for p in seen) / len(seen)
        out.append(PriceSlot(ts, ts + step, round(imp, 6), round(exp, 6)))
        ts += step
    return out


def _minute_of_day(ts: datetime, tz: ZoneInfo) -> int:
    local = ts.astimezone(tz)
    return local.hour * 60 + local.minute


def _nearest(by_time: dict[int, list[tuple[float, float]]], ts: datetime, tz: ZoneInfo
             ) -> list[tuple[float, float]]:
    """Slots of another length than the history's: the closest time of day that is known."""
    minute = _minute_of_day(ts, tz)
    best = min(by_time, key=lambda m: min(abs(m - minute), 1440 - abs(m - minute)))
    return by_time[best]

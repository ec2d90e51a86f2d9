"""Forecasts from the site's own history: the coming days look like the past week.

Each value is the mean of the same local time of day over the history given, from weekdays for a
weekday and from weekend days for a weekend day where both are known (a house runs differently
on Saturdays), else from all days. No history gives no forecast: the caller falls back to what it
measures now.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo


class ProfileForecast:
    def __init__(self, tz: ZoneInfo, slot_minutes: int = 15):
        self.tz = tz
        self.slot_minutes = slot_minutes
        self._sums: dict[tuple[bool, int], list[float]] = defaultdict(lambda: [0.0, 0])

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[float, float | None]], tz: ZoneInfo,
                  slot_minutes: int = 15) -> ProfileForecast:
        """Rows of (epoch seconds, value); missing values are skipped, not taken as zero."""
        forecast = cls(tz, slot_minutes)
        for ts, value in rows:
            if value is not None:
                forecast.add(datetime.fromtimestamp(ts, UTC), float(value))
        return forecast

    def add(self, ts: datetime, value: float) -> None:
        cell = self._sums[self._key(ts)]
        cell[0] += value
        cell[1] += 1

    def at(self, ts: datetime) -> float | None:
        weekend, slot = self._key(ts)
        own = self._sums.get((weekend, slot))
        other = self._sums.get((not weekend, slot))
        if own and own[1]:
            return own[0] / own[1]
        if other and other[1]:
            return other[0] / other[1]
        return None

    def _key(self, ts: datetime) -> tuple[bool, int]:
        local = ts.astimezone(self.tz)
        return local.weekday() >= 5, (local.hour * 60 + local.minute) // self.slot_minutes

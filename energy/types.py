"""Plain types every site reader and tariff hands back."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


class SourceUnavailable(Exception):
    """A site source could not be read; its values are marked stale until it recovers."""


@dataclass(frozen=True)
class SiteSample:
    """One reading of the site. Grid power is positive while importing; battery positive while
    charging. Values a source does not provide are None."""

    ts: datetime
    pv_w: float | None
    load_w: float | None
    grid_w: float | None
    battery_w: float | None
    soc_pct: float | None
    stale: bool = False


@dataclass(frozen=True)
class PriceSlot:
    """Energy prices for [start, end) in the site currency."""

    start: datetime
    end: datetime
    import_per_kwh: float
    export_per_kwh: float

    def covers(self, ts: datetime) -> bool:
        return self.start <= ts < self.end


class SiteReader(Protocol):
    """Every reader also has `implausible`: values turned away as outside what the site allows,
    counted by field (energy/plausible.py), for the status to show."""

    def read(self, ts: datetime) -> SiteSample:
        """Read the site now; raise SourceUnavailable when the source cannot answer."""
        ...


class Tariff(Protocol):
    def slots(self, start: datetime, end: datetime) -> list[PriceSlot]:
        """Price slots overlapping [start, end), in time order."""
        ...

"""What a site value can be on this site, and the one check every site reader applies.

A device that sends garbage rarely says so: a saturated int16, a scale factor at the edge of its
range, a SoC register holding a not-implemented pattern of another type, a float that overflows
once scaled. Each field therefore has a range built from what the site's connection and its
configured array and battery allow, with a margin. A value outside it (or not finite) is missing,
never a reading: it is counted per field, the count is there for the status to show, and it is
logged once per field and source so a broken device does not flood the log.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass

log = logging.getLogger("sunrig.site")

# A breaker carries 1.13 times its rating indefinitely and trips within minutes well above that
# (IEC 60898); a quarter over any rating is a measurement error, not power that flowed.
MARGIN = 1.25
# At night an inverter draws its own standby from the AC side and reports it as negative output,
# and a house meter's zero wanders by a few watts either way.
STANDBY_W = 200.0
DEFAULT_BREAKER_W = 25_000.0  # the config's default connection, for readers built without one


@dataclass(frozen=True)
class Range:
    low: float
    high: float

    def holds(self, value: float) -> bool:
        return math.isfinite(value) and self.low <= value <= self.high


@dataclass(frozen=True)
class SiteLimits:
    """The plausible range of each site field (and of a hybrid inverter's AC power, from which
    the house load is derived)."""

    pv_w: Range
    load_w: Range
    grid_w: Range
    battery_w: Range
    inverter_w: Range
    soc_pct: Range = Range(0.0, 100.0)

    @classmethod
    def for_site(cls, breaker_w: float, array_w: float = 0.0,
                 battery_w: float = 0.0) -> SiteLimits:
        """Limits for a connection of `breaker_w`; an array or battery of unknown size (0) is
        bounded by the connection, which grid operators size to what feeds into it."""
        grid = breaker_w * MARGIN
        pv = (array_w if array_w > 0 else breaker_w) * MARGIN
        battery = (battery_w if battery_w > 0 else breaker_w) * MARGIN
        return cls(pv_w=Range(-STANDBY_W, pv),
                   load_w=Range(-STANDBY_W, grid + pv + battery),  # all that can feed the house
                   grid_w=Range(-grid, grid),
                   battery_w=Range(-battery, battery),
                   inverter_w=Range(-battery - STANDBY_W, pv + battery))  # PV and battery share it


DEFAULT_LIMITS = SiteLimits.for_site(DEFAULT_BREAKER_W)


class Plausibility:
    """Screens one source's values against the site's limits and counts what it turns away."""

    def __init__(self, source: str, limits: SiteLimits = DEFAULT_LIMITS):
        self.source, self.limits = source, limits
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()  # MQTT screens on its network thread, the agent reads

    def __call__(self, field: str, value: float | None) -> float | None:
        """`value` if it is plausible for `field`, else None (and counted)."""
        if value is None:
            return None
        allowed: Range = getattr(self.limits, field)
        if allowed.holds(value):
            return value
        with self._lock:
            self._counts[field] = self._counts.get(field, 0) + 1
            first = self._counts[field] == 1
        if first:
            log.warning("%s: %s = %.6g is outside %.6g..%.6g; treated as missing, counted, not "
                        "logged again", self.source, field, value, allowed.low, allowed.high)
        return None

    @property
    def counts(self) -> dict[str, int]:
        """Implausible values turned away so far, by field."""
        with self._lock:
            return dict(self._counts)

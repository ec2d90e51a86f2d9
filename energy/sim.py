"""A simulated site: a recorded household (PV and load) plus an optional battery.

The rig's own consumption is not in the recording; the caller passes it in (`rig_power_w`), as a
real grid meter would see it, so grid import and export respond to what the GPUs draw. Given the
site's limits, the live agent screens it like any device (energy/plausible.py): a recording with a
value no site could read is shown as missing, as a device's would be.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from energy.plausible import Plausibility, SiteLimits
from energy.series import Series, load_series
from energy.types import SiteSample

DEFAULT_HOUSEHOLD = "embedded:household_2024_30min.csv.gz"
MAX_BATTERY_STEP_S = 3600.0  # after a long pause, do not pretend the battery ran unattended


@dataclass(frozen=True)
class BatterySpec:
    capacity_kwh: float
    max_charge_w: float
    max_discharge_w: float
    min_soc_pct: float = 10.0
    efficiency: float = 0.95  # round trip, applied on charge


class SimulatedSite:
    """Replays the recorded household through a self-consumption battery."""

    def __init__(self, source: str = DEFAULT_HOUSEHOLD, pv_scale: float = 1.0,
                 battery: BatterySpec | None = None, initial_soc_pct: float = 50.0,
                 rig_power_w: Callable[[], float] = lambda: 0.0, replay: bool = True,
                 limits: SiteLimits | None = None):
        """`limits`: None replays the recording as it is (simulations of any size)."""
        self._series: Series = load_series(source, "ts_utc", ["load_w", "pv_w"])
        self._pv_scale = pv_scale
        self._battery = battery
        self._soc_pct = initial_soc_pct
        self._rig_power_w = rig_power_w
        self._replay = replay
        self._last_ts: datetime | None = None
        self.plausible = None if limits is None else Plausibility(f"recording {source}", limits)

    @property
    def implausible(self) -> dict[str, int]:
        return {} if self.plausible is None else self.plausible.counts

    def _interpolated(self, column: str, ts: datetime) -> float | None:
        mapped = self._series.map_time(ts, self._replay)
        i = self._series.index_at(ts, self._replay)
        if mapped is None or i is None:
            return None
        values = self._series.columns[column]
        here = values[i]
        after = values[i + 1] if i + 1 < len(values) else None
        if here is None or after is None:
            return here if here is not None else after
        frac = (mapped - self._series.ts[i]) / self._series.step
        return here + (after - here) * frac

    def read(self, ts: datetime) -> SiteSample:
        pv_w = self._screened("pv_w", self._interpolated("pv_w", ts), self._pv_scale)
        load = self._screened("load_w", self._interpolated("load_w", ts))
        rig_w = self._rig_power_w()
        net_w = (load or 0.0) + rig_w - (pv_w or 0.0)
        battery_w = self._step_battery(ts, net_w)
        grid_w = net_w + (battery_w or 0.0)
        soc = None if self._battery is None else round(self._soc_pct, 2)
        stale = pv_w is None or load is None
        return SiteSample(ts, pv_w, load, self._screened("grid_w", round(grid_w, 1)), battery_w,
                          soc, stale)

    def _screened(self, field: str, value: float | None, scale: float = 1.0) -> float | None:
        value = None if value is None else value * scale
        return value if self.plausible is None else self.plausible(field, value)

    def _step_battery(self, ts: datetime, net_w: float) -> float | None:
        """Charge from surplus, discharge to cover demand; returns battery power (+ charging)."""
        bat = self._battery
        if bat is None:
            return None
        dt_s = 0.0 if self._last_ts is None else (ts - self._last_ts).total_seconds()
        self._last_ts = ts
        dt_h = max(0.0, min(dt_s, MAX_BATTERY_STEP_S)) / 3600.0
        capacity_wh = bat.capacity_kwh * 1000.0
        if net_w < 0:
            room_wh = capacity_wh * (100.0 - self._soc_pct) / 100.0
            power = min(-net_w, bat.max_charge_w, _energy_limit_w(room_wh, dt_h, bat.max_charge_w))
            self._soc_pct += power * bat.efficiency * dt_h / capacity_wh * 100.0
        else:
            avail_wh = capacity_wh * max(0.0, self._soc_pct - bat.min_soc_pct) / 100.0
            power = -min(net_w, bat.max_discharge_w,
                         _energy_limit_w(avail_wh, dt_h, bat.max_discharge_w))
            self._soc_pct += power * dt_h / capacity_wh * 100.0
        self._soc_pct = min(100.0, max(0.0, self._soc_pct))
        return round(power, 1)


def _energy_limit_w(energy_wh: float, dt_h: float, max_w: float) -> float:
    """The power that moves at most `energy_wh` within `dt_h` (full power on a first reading)."""
    if energy_wh <= 0:
        return 0.0
    return energy_wh / dt_h if dt_h else max_w

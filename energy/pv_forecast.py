"""PV forecast from the sun's path: pvlib's clear sky on the array's plane, corrected by how the
array actually did lately.

The clear-sky output (Ineichen, transposed onto the array's tilt and azimuth, times a system
derate) is what a cloudless sky would give; the ratio of measured output to that clear-sky output
over the recent daylight hours carries today's weather and the array's soiling and shading into
the coming hours. The clear sky is computed once per day and array (the planner asks for the
same days every cycle), a fortnight at a time, by pvlib in a short-lived child process: pvlib
brings pandas and scipy (some 50 MiB and a second or two of imports) that the agent would hold
for good to draw one curve a day. Where pvlib is loaded already, it is used in place.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from pathlib import Path

# pvlib still calls pandas API that pandas now deprecates. Filtered once for pvlib's own modules:
# catch_warnings() around each call is not thread-safe, and the agent's jobs run in threads.
warnings.filterwarnings("ignore", message=r".*deprecated.*", module=r"pvlib(\.|$)")

SYSTEM_DERATE = 0.85  # inverter, wiring, temperature: what a well-built array keeps
MIN_CLEAR_W = 50.0  # below this the ratio is mostly noise (dawn, dusk)
RATIO_BOUNDS = (0.0, 1.2)


@dataclass(frozen=True)
class Array:
    latitude: float
    longitude: float
    kwp: float
    tilt_deg: float = 35.0
    azimuth_deg: float = 180.0  # south
    altitude_m: float = 0.0


CURVE_STEP_MIN = 5  # the day's clear-sky curve: fine enough that straight lines between follow it
CACHED_DAYS = 64  # curves kept: a forecast spans three days, a weather ratio three more
DAYS_AT_ONCE = 14  # curves one child process draws: one start-up a fortnight, not one a day
CHILD_TIMEOUT_S = 300.0


def clear_sky_w(array: Array, times: list[datetime]) -> list[float]:
    """Clear-sky AC output in W at each time (UTC-aware datetimes), read off the day's curve:
    pvlib's sun position and clear sky are computed once per day and array, not per call."""
    out = []
    for t in times:
        utc = t.astimezone(UTC)
        minute = (utc - utc.replace(hour=0, minute=0, second=0, microsecond=0)
                  ) / timedelta(minutes=CURVE_STEP_MIN)
        curve = _day_curve(array, utc.date())
        k = min(int(minute), len(curve) - 2)
        out.append(float(curve[k] + (curve[k + 1] - curve[k]) * (minute - k)))
    return out


@lru_cache(maxsize=CACHED_DAYS)
def _day_curve(array: Array, day: date) -> tuple[float, ...]:
    """Clear-sky W every CURVE_STEP_MIN minutes over a UTC day, both midnights included."""
    with _drawing:
        curve = _drawn.pop((array, day), None)
        if curve is None:
            days = [day + timedelta(days=k) for k in range(DAYS_AT_ONCE)]
            curves = _curves_here(array, days) if "pvlib" in sys.modules else _curves_apart(
                array, days)
            _drawn.clear()  # only the days after this one are kept, until asked for
            _drawn.update({(array, d): c for d, c in zip(days[1:], curves[1:], strict=True)})
            curve = curves[0]
    return curve


_drawn: dict[tuple[Array, date], tuple[float, ...]] = {}  # drawn ahead, not yet asked for
_drawing = threading.Lock()


def _curves_here(array: Array, days: list[date]) -> list[tuple[float, ...]]:
    import pandas as pd
    from pvlib import irradiance, location

    out = []
    for day in days:
        first = datetime.combine(day, datetime.min.time(), UTC)
        times = [first + timedelta(minutes=CURVE_STEP_MIN * k)
                 for k in range(24 * 60 // CURVE_STEP_MIN + 1)]
        out.append(tuple(_clear_sky_w(array, times, pd, irradiance, location)))
    return out


def _curves_apart(array: Array, days: list[date]) -> list[tuple[float, ...]]:
    """The same curves, drawn by this module run as a child process (JSON in and out)."""
    request = json.dumps({"array": asdict(array), "days": [d.isoformat() for d in days]})
    root = str(Path(__file__).resolve().parent.parent)  # where the energy package lives
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [root, *filter(None, [os.environ.get("PYTHONPATH")])])}
    done = subprocess.run([sys.executable, "-m", "energy.pv_forecast"], input=request,
                          capture_output=True, text=True, env=env, timeout=CHILD_TIMEOUT_S)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["no message"]
        raise RuntimeError(f"the clear-sky curves could not be drawn: {tail[0]}")
    return [tuple(c) for c in json.loads(done.stdout)]


def _clear_sky_w(array: Array, times: list[datetime], pd, irradiance, location) -> list[float]:
    index = pd.DatetimeIndex(times)
    site = location.Location(array.latitude, array.longitude, "UTC", array.altitude_m)
    sky = site.get_clearsky(index, model="ineichen")
    sun = site.get_solarposition(index)
    poa = irradiance.get_total_irradiance(array.tilt_deg, array.azimuth_deg,
                                          sun["apparent_zenith"], sun["azimuth"],
                                          sky["dni"], sky["ghi"], sky["dhi"])["poa_global"]
    watts = poa.fillna(0.0).clip(lower=0.0) / 1000.0 * array.kwp * 1000.0 * SYSTEM_DERATE
    return [float(w) for w in watts]


def weather_ratio(array: Array, measured: Iterable[tuple[datetime, float]]) -> float | None:
    """Measured over clear-sky energy across the given samples' daylight; None without daylight."""
    samples = [(t, w) for t, w in measured if w is not None]
    clear = clear_sky_w(array, [t for t, _ in samples])
    return measured_ratio([(w, c) for (_, w), c in zip(samples, clear, strict=True)],
                          RATIO_BOUNDS)


def measured_ratio(pairs: Iterable[tuple[float | None, float | None]],
                   bounds: tuple[float, float]) -> float | None:
    """Measured over forecast energy, from (measured W, forecast W) pairs at the same times,
    where the forecast saw real daylight; within bounds, None where it saw none. The clear
    sky's correction and a forecast service's are the same rule."""
    got = possible = 0.0
    for measured_w, forecast_w in pairs:
        if measured_w is not None and forecast_w is not None and forecast_w >= MIN_CLEAR_W:
            got += measured_w
            possible += forecast_w
    if possible <= 0:
        return None
    return min(bounds[1], max(bounds[0], got / possible))


class PvForecast:
    """Forecast PV for the planner: clear sky times the recent weather ratio, or, where a
    forecast service is given and has a value for a slot, the service's value times its own
    measured ratio, never above what the clear sky allows."""

    def __init__(self, array: Array, ratio: float, start: datetime, hours: int, step_min: int = 15,
                 service: Callable[[datetime], float | None] | None = None,
                 service_ratio: float = 1.0):
        self.start, self.step = start, timedelta(minutes=step_min)
        times = [start + self.step * k for k in range(hours * 60 // step_min + 1)]
        clear = clear_sky_w(array, times)
        self.ratio, self.service_ratio = ratio, service_ratio
        self.service_slots = 0  # how many slots the service's value is used for
        self._w = []
        for k, t in enumerate(times[:-1]):
            said = service(t + self.step / 2) if service else None  # the slot's middle
            if said is None:
                self._w.append(clear[k] * ratio)
                continue
            # a cloudless sky bounds what any forecast may say, at either end of the slot
            self._w.append(min(said * service_ratio, max(clear[k], clear[k + 1]) * RATIO_BOUNDS[1]))
            self.service_slots += 1

    def at(self, ts: datetime) -> float | None:
        k = int((ts - self.start) / self.step)
        return self._w[k] if 0 <= k < len(self._w) else None


def main() -> None:
    """Child process: read {"array": {...}, "days": ["YYYY-MM-DD", ...]} on stdin, print each
    day's curve (a JSON list of lists)."""
    request = json.load(sys.stdin)
    days = [date.fromisoformat(d) for d in request["days"]]
    print(json.dumps(_curves_here(Array(**request["array"]), days)))


if __name__ == "__main__":
    main()

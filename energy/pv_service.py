"""PV forecast from a forecast service the owner already uses: forecast.solar or Open-Meteo.

A service knows tomorrow's clouds, which the clear sky does not. Its answer is checked as a whole
before any of it is used: JSON of a bounded size and depth, every value a finite power the array
can give, every time a real time, and no power forecast while the sun is down there (which is
what times read in the wrong time zone look like). An answer that fails is refused whole with a
FeedError naming what was wrong; the forecast already fetched is kept, and the slots without a
service value fall back to the clear sky. A failure is logged once, and so is the recovery.

The API key of forecast.solar's paid tier travels in the URL's path: it is registered as a secret
and no error or log carries the URL.
"""

from __future__ import annotations

import bisect
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from energy.http_json import FeedError, fetch_json
from energy.pv_forecast import SYSTEM_DERATE, Array, clear_sky_w, measured_ratio
from energy.redact import register

log = logging.getLogger("sunrig.pv")

Point = tuple[datetime, float]  # UTC time, AC power in W
FORECAST_SOLAR_URL = "https://api.forecast.solar"
OPEN_METEO_URL = "https://api.open-meteo.com/v1/forecast"
# forecast.solar's free tier allows 12 calls an hour per IP and its forecasts change at most every
# 15 minutes (doc.forecast.solar/api): hourly is the most often any service is asked
MIN_REFRESH_S = 3600.0
MAX_POINTS = 3000  # a week of 15-minute values is 672
MAX_TEXT_CHARS = 64  # a time key or a time zone name
MAX_OVER_KWP = 1.1  # AC power above the modules' peak rating: a wrong answer, not weather
MAX_IRRADIANCE_W_M2 = 1500.0  # the solar constant is 1361 W/m2; cloud edges add a little
NIGHT_SHARE_OF_KWP = 0.1  # more than this while the sun is down: the times are wrong
KEPT = timedelta(days=4)  # past forecasts are kept for the ratio over the last three days
MAX_GAP = timedelta(minutes=90)  # no value is drawn across a longer gap (the night)
SERVICE_RATIO_BOUNDS = (0.0, 2.0)  # measured over the service's forecast, days of it


def forecast_solar(array: Array, api_key: str = "", base_url: str | None = None,
                   timeout_s: float = 10.0) -> Callable[[], list[Point]]:
    """forecast.solar's estimate for the array (doc.forecast.solar/api:estimate): one plane,
    azimuth -180..180 with 0 = south, watts keyed by local time in message.info.timezone."""
    register(api_key)  # it is part of the URL's path, which a failure would otherwise show
    path = "/".join([f"{array.latitude:.4f}", f"{array.longitude:.4f}",
                     str(round(array.tilt_deg)), str(round(south_zero_azimuth(array))),
                     f"{array.kwp:g}"])
    base = (base_url or FORECAST_SOLAR_URL).rstrip("/")
    url = f"{base}/{api_key + '/' if api_key else ''}estimate/{path}"

    def fetch() -> list[Point]:
        return parse_forecast_solar(fetch_json(url, {}, timeout_s, "forecast.solar"), array)
    return fetch


def open_meteo(array: Array, base_url: str | None = None, timeout_s: float = 10.0,
               performance_ratio: float = SYSTEM_DERATE) -> Callable[[], list[Point]]:
    """Open-Meteo's irradiance on the array's plane (open-meteo.com/en/docs: tilt 0..90,
    azimuth 0 = south), 15-minute means over the last three days and the next three, turned
    into AC power with the array's kWp and a performance ratio."""
    params = {"latitude": f"{array.latitude:.4f}", "longitude": f"{array.longitude:.4f}",
              "minutely_15": "global_tilted_irradiance", "tilt": f"{array.tilt_deg:g}",
              "azimuth": f"{south_zero_azimuth(array):g}", "past_days": 3, "forecast_days": 3,
              "timezone": "GMT", "timeformat": "unixtime"}

    def fetch() -> list[Point]:
        doc = fetch_json(base_url or OPEN_METEO_URL, params, timeout_s, "Open-Meteo")
        return parse_open_meteo(doc, array, performance_ratio)
    return fetch


def south_zero_azimuth(array: Array) -> float:
    """pvlib's azimuth (180 = south, 90 = east) as both services take it: 0 = south,
    -90 = east, 90 = west, within -180..180."""
    return (array.azimuth_deg - 180.0 + 180.0) % 360.0 - 180.0


def parse_forecast_solar(doc: dict, array: Array) -> list[Point]:
    """result.watts, keyed by local times ('2024-06-10 05:15:00') in message.info.timezone, or
    by ISO 8601 times with their offset where the request asked for them."""
    try:
        watts, zone = doc["result"]["watts"], doc["message"]["info"]["timezone"]
    except (KeyError, TypeError):
        raise FeedError("forecast.solar: answer lacks result.watts or message.info.timezone"
                        ) from None
    if not isinstance(watts, dict):
        raise FeedError("forecast.solar: result.watts is not an object of times")
    tz = _zone(zone, "forecast.solar")
    limit_w = array.kwp * 1000.0 * MAX_OVER_KWP
    return _points(((_local_time(key, tz), value) for key, value in _bounded(watts.items())),
                   limit_w, "forecast.solar")


def parse_open_meteo(doc: dict, array: Array, performance_ratio: float = SYSTEM_DERATE
                     ) -> list[Point]:
    """minutely_15 (or hourly) global_tilted_irradiance: each the mean over the step before its
    time, so its power is placed at the middle of that step. A null is a slot without a value;
    a negative value is the model's night artefact, taken as no sun."""
    block_name = "minutely_15" if "minutely_15" in doc else "hourly"
    step = timedelta(minutes=15) if block_name == "minutely_15" else timedelta(hours=1)
    try:
        block = doc[block_name]
        times, gti = block["time"], block["global_tilted_irradiance"]
    except (KeyError, TypeError):
        raise FeedError("Open-Meteo: answer lacks minutely_15 (or hourly) time and "
                        "global_tilted_irradiance") from None
    if not isinstance(times, list) or not isinstance(gti, list) or len(times) != len(gti):
        raise FeedError("Open-Meteo: time and global_tilted_irradiance are not lists of one "
                        "length")
    unit = (doc.get(f"{block_name}_units") or {}).get("global_tilted_irradiance", "W/m²")
    if unit not in ("W/m²", "W/m2"):
        raise FeedError(f"Open-Meteo: irradiance in {str(unit)[:20]!r}, not W/m²")
    w_per_w_m2 = array.kwp * performance_ratio  # kWp is the output at 1000 W/m2
    pairs = []
    for t, g in _bounded(zip(times, gti, strict=True)):
        if g is None:
            continue
        g = _number(g, MAX_IRRADIANCE_W_M2, "Open-Meteo", "W/m²", negative_ok=True)
        pairs.append((_unix_time(t) - step / 2, max(0.0, g) * w_per_w_m2))
    return _points(pairs, array.kwp * 1000.0 * MAX_OVER_KWP, "Open-Meteo")


def _bounded(items: Iterable) -> list:
    items = list(items)
    if len(items) > MAX_POINTS:
        raise FeedError(f"forecast service: {len(items)} values, more than {MAX_POINTS}")
    return items


def _points(pairs: Iterable[tuple[datetime, object]], limit_w: float, name: str
            ) -> list[Point]:
    return sorted((t, _number(w, limit_w, name, "W")) for t, w in pairs)


def _number(value: object, most: float, name: str, unit: str, negative_ok: bool = False
            ) -> float:
    """The one rule for a value from a service: a finite number within what is possible."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FeedError(f"{name}: a value is a {type(value).__name__}, not a number")
    try:
        value = float(value)
    except OverflowError:  # an integer of hundreds of digits
        raise FeedError(f"{name}: a value is too large to be a number of {unit}") from None
    if not math.isfinite(value) or value > most or (value < 0 and not negative_ok):
        raise FeedError(f"{name}: {value:.6g} {unit} is not a value from 0 to {most:.6g} {unit}")
    return value


def _zone(name: object, service: str) -> ZoneInfo:
    if not isinstance(name, str) or not 0 < len(name) <= MAX_TEXT_CHARS:
        raise FeedError(f"{service}: the time zone is not a name")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise FeedError(f"{service}: unknown time zone {name[:MAX_TEXT_CHARS]!r}") from None


def _local_time(key: object, tz: ZoneInfo) -> datetime:
    try:
        if not isinstance(key, str) or len(key) > MAX_TEXT_CHARS:
            raise ValueError
        t = datetime.fromisoformat(key)
    except ValueError:
        raise FeedError(f"forecast.solar: {str(key)[:MAX_TEXT_CHARS]!r} is not a time") from None
    return (t if t.tzinfo else t.replace(tzinfo=tz)).astimezone(UTC)


def _unix_time(value: object) -> datetime:
    # 2000 to 2100: anything else is not a forecast for now, whatever the clock says
    if isinstance(value, bool) or not isinstance(value, int) or not (
            946_684_800 <= value <= 4_102_444_800):
        raise FeedError(f"Open-Meteo: time {str(value)[:20]!r} is not a Unix time in seconds")
    return datetime.fromtimestamp(value, UTC)


def check_daylight(points: list[Point], array: Array, name: str) -> None:
    """Refuse power forecast while the sun is down at the array: times read in a wrong time
    zone, or for another place, look like that."""
    night_w = array.kwp * 1000.0 * NIGHT_SHARE_OF_KWP
    half = timedelta(minutes=30)
    for t, w in points:
        if w > night_w and max(clear_sky_w(array, [t - half, t, t + half])) <= 0.0:
            raise FeedError(f"{name}: {w:.0f} W forecast at {t:%Y-%m-%d %H:%M} UTC, when the sun "
                            "is down at the array: the answer's times or time zone are wrong")


class ServicePv:
    """A forecast service's PV power for the planner: fetched at most every `refresh_s`, past
    values kept for the ratio of measured to forecast, the last good forecast kept when a
    fetch fails. `at` is None where the service has no value (the caller's clear sky)."""

    def __init__(self, fetch: Callable[[], list[Point]], name: str, array: Array,
                 refresh_s: float = MIN_REFRESH_S, clock: Callable[[], float] = time.monotonic):
        self.fetch, self.name, self.array = fetch, name, array
        self.refresh_s = max(MIN_REFRESH_S, refresh_s)
        self._clock = clock
        self._lock = threading.Lock()
        # times and watts replaced together: the planner reads while a refresh may write
        self._series: tuple[list[datetime], list[float]] = ([], [])
        self._fetched_at: float | None = None
        self.failing: str | None = None  # why the last fetch failed; None while it answers

    def refresh(self, now: datetime) -> None:
        """Fetch where the last fetch (good or not) is older than the refresh interval."""
        with self._lock:
            mono = self._clock()
            if self._fetched_at is not None and mono - self._fetched_at < self.refresh_s:
                return
            self._fetched_at = mono
            try:
                points = self.fetch()
                check_daylight(points, self.array, self.name)
            except FeedError as exc:
                if self.failing is None:
                    log.warning("%s failing, the PV forecast falls back to the clear sky: %s",
                                self.name, exc)
                self.failing = str(exc)
                return
            if self.failing is not None:
                log.info("%s answers again", self.name)
            self.failing = None
            self._keep(points, now)

    def _keep(self, points: list[Point], now: datetime) -> None:
        """The new answer replaces what the old said over its span; older is forgotten."""
        old = list(zip(*self._series, strict=True))
        if points:
            first, last = points[0][0], points[-1][0]
            old = [(t, w) for t, w in old if t < first or t > last]
        merged = sorted(p for p in old + points if p[0] >= now - KEPT)
        self._series = ([t for t, _ in merged], [w for _, w in merged])

    def at(self, ts: datetime) -> float | None:
        """The power at a time, drawn straight between the values either side of it."""
        times, watts = self._series
        k = bisect.bisect_left(times, ts)
        if k < len(times) and times[k] == ts:
            return watts[k]
        if k == 0 or k == len(times) or times[k] - times[k - 1] > MAX_GAP:
            return None
        share = (ts - times[k - 1]) / (times[k] - times[k - 1])
        return watts[k - 1] + (watts[k] - watts[k - 1]) * share

    def ratio(self, measured: Iterable[tuple[datetime, float]]) -> float | None:
        """Measured over the service's forecast for the same times; None without overlap."""
        samples = list(measured)
        return measured_ratio([(w, self.at(t)) for t, w in samples], SERVICE_RATIO_BOUNDS)


def pv_service(kind: str, array: Array, api_key: str = "", refresh_s: float = MIN_REFRESH_S,
               base_url: str | None = None) -> ServicePv:
    """The configured service ('forecast_solar' or 'open_meteo') for the array; base_url
    for a self-hosted or test copy of the service."""
    if kind == "forecast_solar":
        return ServicePv(forecast_solar(array, api_key, base_url), "forecast.solar", array,
                         refresh_s)
    if kind == "open_meteo":
        return ServicePv(open_meteo(array, base_url), "Open-Meteo", array, refresh_s)
    raise ValueError(f"unknown PV forecast service {kind!r}")

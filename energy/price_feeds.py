"""Day-ahead prices from the web: aWATTar (DE, AT) and the ENTSO-E Transparency Platform.

Both give spot prices per MWh for hourly or 15-minute slots; the tariff's formulas turn them into
import and feed-in prices, negative prices included as they are. Prices already fetched are kept:
a feed that fails (no network, a refused token, garbage) keeps the slots it gave before and says
why once; only when nothing at all is known for the period asked does it raise.
"""

from __future__ import annotations

import logging
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import requests

from energy.http_json import FeedError, fetch_json
from energy.redact import http_failure, register
from energy.tariff import compile_formula
from energy.types import PriceSlot, SourceUnavailable

log = logging.getLogger("sunrig.prices")

Spot = tuple[datetime, datetime, float]  # start, end, EUR per MWh
AWATTAR_URL = {"de": "https://api.awattar.de/v1/marketdata",
               "at": "https://api.awattar.at/v1/marketdata"}
ENTSOE_URL = "https://web-api.tp.entsoe.eu/api"
RESOLUTIONS = {"PT15M": timedelta(minutes=15), "PT30M": timedelta(minutes=30),
               "PT60M": timedelta(hours=1)}


def awattar(country: str = "de", base_url: str | None = None, timeout_s: float = 10.0
            ) -> Callable[[datetime, datetime], list[Spot]]:
    url = base_url or AWATTAR_URL[country]

    def fetch(start: datetime, end: datetime) -> list[Spot]:
        doc = fetch_json(url, {"start": int(start.timestamp() * 1000),
                              "end": int(end.timestamp() * 1000)}, timeout_s, "aWATTar")
        try:
            return [(datetime.fromtimestamp(d["start_timestamp"] / 1000, UTC),
                     datetime.fromtimestamp(d["end_timestamp"] / 1000, UTC),
                     _per_mwh(float(d["marketprice"]), d.get("unit", "Eur/MWh")))
                    for d in doc["data"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise FeedError(f"aWATTar: unexpected answer ({exc!r})") from None
    return fetch


def _per_mwh(price: float, unit: str) -> float:
    unit = unit.lower().replace(" ", "")
    if unit in ("eur/mwh", "€/mwh"):
        return price
    if unit in ("eur/kwh", "€/kwh"):
        return price * 1000.0
    raise FeedError(f"aWATTar: price unit {unit!r} is not EUR/MWh")


def entsoe(token: str, zone: str, base_url: str = ENTSOE_URL, timeout_s: float = 20.0
           ) -> Callable[[datetime, datetime], list[Spot]]:
    """Day-ahead prices (document A44) of a bidding zone, e.g. 10YNL----------L."""
    register(token)  # it travels in the query string, which every failure would show

    def fetch(start: datetime, end: datetime) -> list[Spot]:
        params = {"securityToken": token, "documentType": "A44", "in_Domain": zone,
                  "out_Domain": zone, "periodStart": _entsoe_time(start),
                  "periodEnd": _entsoe_time(end)}
        try:
            r = requests.get(base_url, params=params, timeout=timeout_s)
        except requests.RequestException as exc:
            raise FeedError(f"ENTSO-E: request failed: {http_failure(exc)}") from None
        if r.status_code == 401:
            raise FeedError("ENTSO-E: the security token was refused (HTTP 401)")
        return parse_entsoe(r.text, r.status_code)
    return fetch


def _entsoe_time(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y%m%d%H00")


def parse_entsoe(text: str, status: int = 200) -> list[Spot]:
    """A Publication_MarketDocument's prices; an Acknowledgement saying there is no data yet is
    no prices, any other is an error. Curve A03 leaves out points equal to the one before."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise FeedError(f"ENTSO-E: answer is not XML (HTTP {status}): {exc}") from None
    for element in root.iter():  # the schema version is in the namespace: match on names
        element.tag = element.tag.rsplit("}", 1)[-1]
    if root.tag == "Acknowledgement_MarketDocument":
        code = root.findtext("Reason/code", default="")
        why = root.findtext("Reason/text", default="")
        if code == "999":  # "No matching data found": not published yet
            return []
        raise FeedError(f"ENTSO-E refused: {code} {why}".strip())
    out: list[Spot] = []
    if root.tag != "Publication_MarketDocument":
        raise FeedError(f"ENTSO-E: answered a {root.tag}, not prices")
    for period in root.iterfind(".//TimeSeries/Period"):
        try:
            start = _iso(period.findtext("timeInterval/start"))
            end = _iso(period.findtext("timeInterval/end"))
            step = RESOLUTIONS[period.findtext("resolution")]
            points = {int(p.findtext("position")): float(p.findtext("price.amount"))
                      for p in period.iterfind("Point")}
        except (KeyError, TypeError, ValueError) as exc:
            raise FeedError(f"ENTSO-E: a period is malformed ({exc!r})") from None
        count = round((end - start) / step)
        price = None
        for pos in range(1, count + 1):
            price = points.get(pos, price)
            if price is not None:
                s = start + (pos - 1) * step
                out.append((s, s + step, price))
    return sorted(out)


def _iso(text: str | None) -> datetime:
    if not text:
        raise ValueError("missing time")
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class FeedTariff:
    """Retail prices from a spot feed: fetched at most every `refresh_s`, kept when it fails."""

    def __init__(self, fetch: Callable[[datetime, datetime], list[Spot]], import_formula: str,
                 export_formula: str, name: str, refresh_s: float = 900.0,
                 clock: Callable[[], float] = time.monotonic):
        self.fetch, self.name, self.refresh_s = fetch, name, refresh_s
        self._import, self._export = compile_formula(import_formula), compile_formula(
            export_formula)
        self._clock = clock
        self._lock = threading.Lock()
        self._spots: dict[datetime, Spot] = {}
        self._fetched_at: float | None = None
        self._failing: str | None = None

    def slots(self, start: datetime, end: datetime) -> list[PriceSlot]:
        with self._lock:
            now = self._clock()
            if self._fetched_at is None or now - self._fetched_at >= self.refresh_s:
                self._refresh(start, end)
                self._fetched_at = now
            spots = [s for s in sorted(self._spots.values()) if s[1] > start and s[0] < end]
        if not spots and self._failing:
            raise SourceUnavailable(f"{self.name}: no prices for {start.isoformat()}: "
                                    f"{self._failing}")
        return [PriceSlot(s, e, round(self._import(p / 1000.0), 6),
                          round(self._export(p / 1000.0), 6)) for s, e, p in spots]

    def _refresh(self, start: datetime, end: datetime) -> None:
        day = start.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        try:
            fetched = self.fetch(day, max(end, day + timedelta(days=2)))
        except FeedError as exc:
            if self._failing is None:
                log.warning("%s failing, keeping the prices known: %s", self.name, exc)
            self._failing = str(exc)
            return
        if self._failing is not None:
            log.info("%s answers again", self.name)
        self._failing = None
        for spot in fetched:
            self._spots[spot[0]] = spot
        horizon = start - timedelta(days=2)  # forget what is long past
        for key in [k for k in self._spots if k < horizon]:
            del self._spots[key]

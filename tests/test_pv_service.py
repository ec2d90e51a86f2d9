"""The PV forecast from forecast.solar and Open-Meteo, served by a local HTTP server.

The recorded answers follow the services' own documentation:
- forecast.solar: doc.forecast.solar/api:estimate (GET /:apikey/estimate/:lat/:lon/:dec/:az/:kwp,
  az -180..180 with 0 = south) and doc.forecast.solar/api (result.watts keyed by local times
  '2017-09-18 01:00:00' unless ?time=... is given, message.info.timezone, message.ratelimit; HTTP
  429 over the rate limit, 503 in maintenance), as evcc's forecast-solar template reads them
  (evcc-io/evcc templates/definition/tariff/forecast-solar.yaml).
- Open-Meteo: open-meteo.com/en/docs (GET /v1/forecast with minutely_15=global_tilted_irradiance,
  tilt, azimuth 0 = south, timeformat=unixtime; each radiation value the mean over the preceding
  15 minutes; HTTP 400 with {"error": true, "reason": ...}), as evcc's open-meteo template asks
  (templates/definition/tariff/open-meteo.yaml).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import socket
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from energy import pv_service
from energy.http_json import FeedError
from energy.pv_forecast import RATIO_BOUNDS, Array, PvForecast, clear_sky_w
from energy.pv_service import ServicePv, forecast_solar, open_meteo

ARRAY = Array(52.09, 5.12, 5.0, tilt_deg=35, azimuth_deg=180)
NOW = datetime(2024, 6, 10, 7, 0, tzinfo=UTC)
KEY = "AbCdEf0123456789"  # forecast.solar's keys match [A-Za-z0-9]{16}

# forecast.solar, public tier, 5 kWp near Utrecht: sunrise to sunset in Europe/Amsterdam
FORECAST_SOLAR = {
    "result": {
        "watts": {
            "2024-06-10 05:20:00": 0, "2024-06-10 06:00:00": 180, "2024-06-10 07:00:00": 620,
            "2024-06-10 08:00:00": 1210, "2024-06-10 09:00:00": 1850,
            "2024-06-10 10:00:00": 2430, "2024-06-10 11:00:00": 2890,
            "2024-06-10 12:00:00": 3150, "2024-06-10 13:00:00": 3260,
            "2024-06-10 14:00:00": 3170, "2024-06-10 15:00:00": 2900,
            "2024-06-10 16:00:00": 2450, "2024-06-10 17:00:00": 1880,
            "2024-06-10 18:00:00": 1260, "2024-06-10 19:00:00": 690,
            "2024-06-10 20:00:00": 260, "2024-06-10 21:00:00": 60, "2024-06-10 21:57:00": 0,
        },
        "watt_hours_period": {"2024-06-10 06:00:00": 60, "2024-06-10 07:00:00": 400},
        "watt_hours": {"2024-06-10 06:00:00": 60, "2024-06-10 07:00:00": 460},
        "watt_hours_day": {"2024-06-10": 29120},
    },
    "message": {
        "code": 0, "type": "success", "text": "",
        "info": {"latitude": 52.09, "longitude": 5.12, "distance": 0,
                 "place": "Utrecht, Netherlands", "timezone": "Europe/Amsterdam",
                 "time": "2024-06-10T09:00:12+02:00", "time_utc": "2024-06-10T07:00:12+00:00"},
        "ratelimit": {"zone": "IP", "period": 3600, "limit": 12, "remaining": 11},
    },
}

# Open-Meteo, minutely_15, unixtime: a night with the model's small negative artefact, then a
# June morning 09:15 to 11:00 UTC with one slot the model has no value for (null)
OPEN_METEO = {
    "latitude": 52.1, "longitude": 5.12, "generationtime_ms": 0.61, "utc_offset_seconds": 0,
    "timezone": "GMT", "timezone_abbreviation": "GMT", "elevation": 5.0,
    "minutely_15_units": {"time": "unixtime", "global_tilted_irradiance": "W/m²"},
    "minutely_15": {
        "time": [1717978500, 1717979400, 1718010900, 1718011800, 1718012700, 1718013600,
                 1718014500, 1718015400, 1718016300, 1718017200],
        "global_tilted_irradiance": [-1.0, 0.0, 612.0, 655.5, 698.0, None, 760.2, 788.0,
                                     803.4, 815.0],
    },
}


class Peer:
    """A local forecast service: answers each request with the status and body set."""

    def __init__(self) -> None:
        self.status, self.body, self.delay_s = 200, b"{}", 0.0
        self.requests: list[str] = []
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                peer.requests.append(self.path)
                time.sleep(peer.delay_s)
                self.send_response(peer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(peer.body)))
                self.end_headers()
                with contextlib.suppress(OSError):  # the client gave up first (a timeout)
                    self.wfile.write(peer.body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, doc: object, status: int = 200) -> None:
        self.status = status
        self.body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()


@pytest.fixture
def peer():
    p = Peer()
    yield p
    p.server.shutdown()
    p.server.server_close()


def fs_service(peer: Peer, **kw) -> ServicePv:
    return ServicePv(forecast_solar(ARRAY, base_url=peer.url, timeout_s=kw.pop("timeout_s", 5)),
                     "forecast.solar", ARRAY, **kw)


def om_service(peer: Peer) -> ServicePv:
    return ServicePv(open_meteo(ARRAY, base_url=peer.url, timeout_s=5), "Open-Meteo", ARRAY)


def test_forecast_solar_is_asked_for_the_array_with_south_as_zero_and_read_in_its_time_zone(peer):
    peer.answer(FORECAST_SOLAR)
    svc = fs_service(peer)
    svc.refresh(NOW)
    assert svc.failing is None
    assert peer.requests == ["/estimate/52.0900/5.1200/35/0/5"]
    # 13:00 in Amsterdam in June is 11:00 UTC; between two values, the straight line
    assert svc.at(datetime(2024, 6, 10, 11, 0, tzinfo=UTC)) == 3260
    assert svc.at(datetime(2024, 6, 10, 11, 30, tzinfo=UTC)) == pytest.approx(3215)
    assert svc.at(datetime(2024, 6, 10, 1, 0, tzinfo=UTC)) is None  # before sunrise: no value


@pytest.mark.parametrize("pvlib_deg, service_deg", [(180, 0), (90, -90), (270, 90), (0, -180),
                                                    (359, 179), (135, -45)])
def test_azimuth_is_turned_into_the_services_convention(peer, pvlib_deg, service_deg):
    peer.answer(FORECAST_SOLAR)
    array = replace(ARRAY, azimuth_deg=pvlib_deg)
    ServicePv(forecast_solar(array, base_url=peer.url), "forecast.solar", array).refresh(NOW)
    assert peer.requests[-1].split("/")[5] == str(service_deg)
    ServicePv(open_meteo(array, base_url=peer.url), "Open-Meteo", array).refresh(NOW)
    assert parse_qs(urlparse(peer.requests[-1]).query)["azimuth"] == [f"{service_deg:g}"]


def test_open_meteo_irradiance_becomes_ac_power_at_the_middle_of_its_quarter_hour(peer):
    peer.answer(OPEN_METEO)
    svc = om_service(peer)
    svc.refresh(NOW)
    assert svc.failing is None
    query = parse_qs(urlparse(peer.requests[0]).query)
    assert query["minutely_15"] == ["global_tilted_irradiance"]
    assert query["tilt"] == ["35"] and query["azimuth"] == ["0"]
    assert query["timeformat"] == ["unixtime"]
    # 612 W/m2 over 09:00-09:15 UTC on 5 kWp at a performance ratio of 0.85
    assert svc.at(datetime(2024, 6, 10, 9, 7, 30, tzinfo=UTC)) == pytest.approx(612 * 5 * 0.85)
    assert svc.at(datetime(2024, 6, 10, 0, 7, 30, tzinfo=UTC)) == 0.0  # -1 W/m2 at night
    # the null slot is left out: the line is drawn over it from its neighbours
    assert svc.at(datetime(2024, 6, 10, 9, 52, 30, tzinfo=UTC)) == pytest.approx(
        (698.0 + 760.2) / 2 * 5 * 0.85)


def _doc(watts=None, timezone="Europe/Amsterdam") -> dict:
    doc = json.loads(json.dumps(FORECAST_SOLAR))
    if watts is not None:
        doc["result"]["watts"] = watts
    doc["message"]["info"]["timezone"] = timezone
    return doc


def _with(key: str, value) -> dict:
    watts = dict(FORECAST_SOLAR["result"]["watts"])
    watts[key] = value
    return _doc(watts)


DEEP = b"[" * 200_000 + b"]" * 200_000
ANSWERS = {  # a hostile or broken 200 answer, and the words its error says
    "html": (b"<html><body>Bad gateway</body></html>", "not JSON"),
    "empty": (b"", "not JSON"),
    "not utf-8": (b'{"result": "\xff\xfe"}', "not JSON"),
    "deeply nested": (DEEP, "nested too deeply"),
    "NaN literal": (json.dumps(_doc()).replace("3150", "NaN").encode(), "not JSON"),
    "Infinity literal": (json.dumps(_doc()).replace("3150", "Infinity").encode(), "not JSON"),
    "1e400": (json.dumps(_doc()).replace("3150", "1e400").encode(), "not a value"),
    "5000 digits": (json.dumps(_doc()).replace("3150", "9" * 5000).encode(), "not JSON"),
    "negative watts": (_with("2024-06-10 12:00:00", -5), "not a value"),
    "huge watts": (_with("2024-06-10 12:00:00", 1e9), "not a value"),
    "above the array's peak": (_with("2024-06-10 12:00:00", 5600), "not a value"),
    "watts as text": (_with("2024-06-10 12:00:00", "3150"), "not a number"),
    "watts as true": (_with("2024-06-10 12:00:00", True), "not a number"),
    "watts null": (_with("2024-06-10 12:00:00", None), "not a number"),
    "no result": ({"message": FORECAST_SOLAR["message"]}, "lacks result.watts"),
    "no time zone": ({"result": FORECAST_SOLAR["result"], "message": {"info": {}}},
                     "lacks result.watts"),
    "message a text": ({"result": FORECAST_SOLAR["result"], "message": "ok"},
                       "lacks result.watts"),
    "unknown time zone": (_doc(timezone="Mars/Olympus_Mons"), "unknown time zone"),
    "time zone a path": (_doc(timezone="../../etc/passwd"), "unknown time zone"),
    "time zone a number": (_doc(timezone=2), "not a name"),
    "wrong time zone (New York)": (_doc(timezone="America/New_York"), "sun is down"),
    "wrong time zone (Tokyo)": (_doc(timezone="Asia/Tokyo"), "sun is down"),
    "time key not a time": (_with("noon", 100), "not a time"),
    "time key too long": (_with("2024-06-10 12:00:00" + " " * 100, 100), "not a time"),
    "watts a list": (_doc(watts=[1, 2, 3]), "not an object"),
    "answer a list": ([FORECAST_SOLAR], "JSON list"),
    "too many values": (_doc(watts={f"2024-06-10 12:{m // 60:02d}:{m % 60:02d}": 0
                                    for m in range(3600)}), "more than"),
    "too large": (b'{"pad": "' + b"x" * (3 << 20) + b'"}', "larger than"),
}


@pytest.mark.parametrize("name", list(ANSWERS))
def test_a_hostile_answer_is_refused_and_the_clear_sky_stands_in(peer, name):
    body, words = ANSWERS[name]
    peer.answer(body)
    svc = fs_service(peer)
    svc.refresh(NOW)
    assert svc.failing and words in svc.failing
    _assert_clear_sky_stands_in(svc)


def _assert_clear_sky_stands_in(svc: ServicePv) -> None:
    start = NOW.replace(hour=0)
    forecast = PvForecast(ARRAY, 0.7, start, 24, service=svc.at, service_ratio=1.0)
    times = [start + timedelta(minutes=15 * k) for k in range(96)]
    clear = clear_sky_w(ARRAY, times)
    assert forecast.service_slots == 0
    for t, c in zip(times, clear, strict=True):
        assert forecast.at(t) == pytest.approx(c * 0.7)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 429, 500, 502, 503])
def test_an_http_error_is_a_feed_error_saying_the_status(peer, status):
    peer.answer({"result": None, "message": {"code": 1, "type": "error",
                                             "text": "Rate limit for API calls reached."}},
                status)
    svc = fs_service(peer)
    svc.refresh(NOW)
    assert svc.failing and ("HTTP 429" in svc.failing if status == 429 else
                            f"HTTP {status}: Rate limit" in svc.failing)
    _assert_clear_sky_stands_in(svc)


def test_a_deeply_nested_error_answer_is_still_a_clear_error(peer):
    peer.answer(DEEP, 500)
    svc = fs_service(peer)
    svc.refresh(NOW)
    assert svc.failing == "forecast.solar: HTTP 500"


def test_a_service_that_does_not_answer_in_time_or_at_all_is_a_feed_error(peer):
    peer.answer(FORECAST_SOLAR)
    peer.delay_s = 1.5
    slow = fs_service(peer, timeout_s=0.3)
    slow.refresh(NOW)
    assert slow.failing == "forecast.solar: request failed: timed out"
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gone = ServicePv(forecast_solar(ARRAY, base_url=f"http://127.0.0.1:{port}"),
                     "forecast.solar", ARRAY)
    gone.refresh(NOW)
    assert gone.failing and gone.failing.startswith("forecast.solar: request failed: connection")
    _assert_clear_sky_stands_in(gone)


OPEN_METEO_ANSWERS = {
    "irradiance in kW": ({"minutely_15_units": {"global_tilted_irradiance": "kW/m²"}},
                         "not W/m²"),
    "lists of two lengths": ({"minutely_15": {"time": [1718010900, 1718011800],
                                              "global_tilted_irradiance": [1.0]}},
                             "one length"),
    "time as text": ({"minutely_15": {"time": ["2024-06-10T09:15"],
                                      "global_tilted_irradiance": [600.0]}}, "Unix time"),
    "time in 1970": ({"minutely_15": {"time": [900], "global_tilted_irradiance": [600.0]}},
                     "Unix time"),
    "time in milliseconds": ({"minutely_15": {"time": [1718010900000],
                                              "global_tilted_irradiance": [600.0]}},
                             "Unix time"),
    "irradiance beyond the sun's": ({"minutely_15": {"time": [1718010900],
                                                     "global_tilted_irradiance": [5000.0]}},
                                    "not a value"),
    "irradiance as text": ({"minutely_15": {"time": [1718010900],
                                            "global_tilted_irradiance": ["600"]}},
                           "not a number"),
    "no series": ({"minutely_15": {"time": [1718010900]}}, "lacks"),
    "block a list": ({"minutely_15": [1, 2]}, "lacks"),
    "sun at midnight": ({"minutely_15": {"time": [1717977600 + 900],
                                         "global_tilted_irradiance": [700.0]}}, "sun is down"),
}


@pytest.mark.parametrize("name", list(OPEN_METEO_ANSWERS))
def test_a_hostile_open_meteo_answer_is_refused(peer, name):
    change, words = OPEN_METEO_ANSWERS[name]
    doc = dict(OPEN_METEO)
    if "minutely_15" in change:
        doc.pop("minutely_15_units")
    doc.update(change)
    peer.answer(doc)
    svc = om_service(peer)
    svc.refresh(NOW)
    assert svc.failing and words in svc.failing
    _assert_clear_sky_stands_in(svc)


def test_open_meteo_refusing_the_request_says_its_reason(peer):
    peer.answer({"error": True, "reason": "Parameter 'tilt' must be between 0 and 90"}, 400)
    svc = om_service(peer)
    svc.refresh(NOW)
    assert svc.failing == ("Open-Meteo: HTTP 400: Parameter 'tilt' must be between 0 and 90")


def test_the_key_goes_in_the_path_and_never_into_an_error_or_a_log(peer, caplog):
    echo = {"message": {"type": "error", "text": f"invalid key {KEY} for /{KEY}/estimate"}}
    peer.answer(echo, 403)
    svc = ServicePv(forecast_solar(ARRAY, KEY, base_url=peer.url), "forecast.solar", ARRAY)
    with caplog.at_level(logging.INFO, logger="sunrig.pv"):
        svc.refresh(NOW)
    assert peer.requests == [f"/{KEY}/estimate/52.0900/5.1200/35/0/5"]
    assert svc.failing and "HTTP 403" in svc.failing
    for text in (svc.failing, caplog.text):
        assert KEY not in text and peer.url not in text
    with pytest.raises(FeedError) as err:  # a failed connection names no URL either
        forecast_solar(ARRAY, KEY, base_url="http://127.0.0.1:9", timeout_s=1)()
    assert KEY not in str(err.value) and "127.0.0.1" not in str(err.value)


def test_a_failure_is_logged_once_and_its_recovery_once_keeping_the_last_good_forecast(
        peer, caplog):
    clock = [0.0]
    svc = fs_service(peer, clock=lambda: clock[0])
    noon = datetime(2024, 6, 10, 11, 0, tzinfo=UTC)
    peer.answer(FORECAST_SOLAR)
    svc.refresh(NOW)
    with caplog.at_level(logging.INFO, logger="sunrig.pv"):
        for _ in range(3):
            clock[0] += 3600
            peer.answer(b"garbage")
            svc.refresh(NOW)
            assert svc.at(noon) == 3260  # what it said before stays
        clock[0] += 3600
        peer.answer(_doc(_with("2024-06-10 13:00:00", 2000)["result"]["watts"]))
        svc.refresh(NOW)
    failing = [r for r in caplog.records if "failing" in r.getMessage()]
    again = [r for r in caplog.records if "answers again" in r.getMessage()]
    assert len(failing) == 1 and len(again) == 1
    assert svc.failing is None and svc.at(noon) == 2000


def test_the_service_is_asked_at_most_hourly_whatever_the_refresh_set(peer):
    clock = [0.0]
    peer.answer(FORECAST_SOLAR)
    svc = fs_service(peer, refresh_s=60, clock=lambda: clock[0])
    assert svc.refresh_s == 3600
    for _ in range(12):  # a plan every five minutes for an hour
        svc.refresh(NOW)
        clock[0] += 299
    assert len(peer.requests) == 1
    clock[0] += 3600
    svc.refresh(NOW)
    assert len(peer.requests) == 2


def test_the_plan_uses_the_configured_service_and_its_measured_ratio(peer, monkeypatch, tmp_path):
    from node.config import default_config
    from node.planning import inputs as plan_inputs
    from node.storage.store import epoch

    key_file = tmp_path / "forecast.key"
    key_file.write_text(KEY + "\n")
    cfg = default_config()
    cfg = replace(cfg, site=replace(cfg.site, latitude=52.09, longitude=5.12, pv_kwp=5.0,
                                    pv_forecast="forecast_solar",
                                    pv_forecast_api_key_file=str(key_file)))
    monkeypatch.setattr(pv_service, "FORECAST_SOLAR_URL", peer.url)
    plan_inputs._service.cache_clear()
    peer.answer(FORECAST_SOLAR)
    now = datetime(2024, 6, 10, 12, 0, tzinfo=UTC)
    # the morning measured at 80 % of what the service said for it
    said = {datetime(2024, 6, 10, h, tzinfo=UTC): w for h, w in
            ((6, 1210), (7, 1850), (8, 2430), (9, 2890), (10, 3150), (11, 3260))}
    rows = [{"ts": epoch(t), "pv_w": 0.8 * w} for t, w in said.items()]
    forecast = plan_inputs._pv_forecast(cfg, rows, now)
    assert peer.requests[0].startswith(f"/{KEY}/estimate/")
    assert forecast.service_ratio == pytest.approx(0.8)
    # the slot 13:45-14:00 UTC, read at its middle between 15:00 (2900 W) and 16:00 (2450 W)
    # in Amsterdam, times the ratio
    slot = forecast.at(datetime(2024, 6, 10, 13, 45, tzinfo=UTC))
    assert slot == pytest.approx(0.8 * (2450 + (2900 - 2450) * 7.5 / 60))
    # asked again within the hour: the same service object, no second request
    plan_inputs._pv_forecast(cfg, rows, now + timedelta(minutes=15))
    assert len(peer.requests) == 1
    plan_inputs._service.cache_clear()


def test_an_unreadable_key_file_leaves_the_plan_on_the_clear_sky(peer, monkeypatch, tmp_path,
                                                                caplog):
    from node.config import default_config
    from node.planning import inputs as plan_inputs

    cfg = default_config()
    cfg = replace(cfg, site=replace(cfg.site, pv_kwp=5.0, pv_forecast="forecast_solar",
                                    pv_forecast_api_key_file=str(tmp_path / "missing.key")))
    monkeypatch.setattr(pv_service, "FORECAST_SOLAR_URL", peer.url)
    plan_inputs._service.cache_clear()
    with caplog.at_level(logging.WARNING):
        forecast = plan_inputs._pv_forecast(cfg, [], NOW)
        plan_inputs._pv_forecast(cfg, [], NOW + timedelta(minutes=15))
    assert forecast.service_slots == 0 and peer.requests == []
    assert sum("pv_forecast_api_key_file" in r.getMessage() for r in caplog.records) == 1
    plan_inputs._service.cache_clear()


@pytest.mark.parametrize("text, key", [
    ('pv_forecast = "solcast"', "site.pv_forecast"),
    ('pv_forecast = 1', "site.pv_forecast"),
    ("pv_forecast_refresh_s = 600", "site.pv_forecast_refresh_s"),
    ("pv_forecast_refresh_s = nan", "site.pv_forecast_refresh_s"),
    ("pv_forecast_api_key_file = 7", "site.pv_forecast_api_key_file"),
])
def test_the_forecast_source_keys_are_checked(tmp_path, text, key):
    from node.config import parse_config
    from node.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        parse_config(f"[site]\n{text}\n", "sunrig.toml", tmp_path)
    assert err.value.key == key
    cfg = parse_config('[site]\npv_forecast = "open_meteo"\n', "sunrig.toml", tmp_path)
    assert cfg.site.pv_forecast == "open_meteo" and cfg.site.pv_forecast_refresh_s == 3600


def test_nothing_absurd_reaches_the_plan_from_a_service_value_above_the_clear_sky():
    points = [(datetime(2024, 6, 10, 11, 0, tzinfo=UTC), 5400.0),
              (datetime(2024, 6, 10, 11, 30, tzinfo=UTC), 5400.0)]
    svc = ServicePv(lambda: points, "test", ARRAY)
    svc.refresh(NOW)
    start = datetime(2024, 6, 10, 11, 0, tzinfo=UTC)
    forecast = PvForecast(ARRAY, 0.7, start, 1, service=svc.at, service_ratio=2.0)
    clear = clear_sky_w(ARRAY, [start + timedelta(minutes=15 * k) for k in range(3)])
    assert forecast.service_slots == 2
    for k in range(2):
        w = forecast.at(start + timedelta(minutes=15 * k))
        assert math.isfinite(w) and w <= max(clear[k], clear[k + 1]) * RATIO_BOUNDS[1]

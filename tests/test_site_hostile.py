"""Hostile hardware and hostile payloads, through real peers: registers written into a real
pymodbus server, payloads published through a real mosquitto. Whatever a device sends ends as a
missing value (counted when it was a number no site can read) or a stale source, never as an
error of sunrig's own; and the reader reads the next good value afterwards."""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import random
import socket
import struct
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from energy import sunspec
from energy.modbus import ModbusHub, ModbusLink, SunSpecSite
from energy.modbus_server import RegisterImageServer
from energy.mqtt import Mapping, MqttDisconnected, MqttSettings, MqttSilent, MqttSite
from energy.mqtt_tariff import MqttTariff
from energy.plausible import DEFAULT_LIMITS, SiteLimits
from energy.register_maps import MAPS, RegisterMapSite
from energy.series import SeriesError
from energy.sim import SimulatedSite
from energy.sunspec_sim import SunSpecSimServer
from energy.types import SiteSample, SourceUnavailable
from tests.conftest import HANG_S, wait_until
from tests.mosquitto import Broker
from tests.test_modbus import NOON, sim_site
from tests.test_mqtt import publisher, wait_for, wait_subscribed
from tests.test_register_maps import DEVICES, f32_low_first, s32

FIELDS = ("pv_w", "load_w", "grid_w", "battery_w", "soc_pct")
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def within_limits(sample: SiteSample, limits: SiteLimits = DEFAULT_LIMITS) -> bool:
    return all(getattr(sample, f) is None or getattr(limits, f).holds(getattr(sample, f))
               for f in FIELDS)


# --- SunSpec ------------------------------------------------------------------------------------

class StillServer(SunSpecSimServer):
    """The simulated device, its registers changed only when a test says so."""

    def tick(self) -> None:
        pass


@pytest.fixture(scope="module")
def sunspec_server():
    srv = StillServer(sim_site(), lambda: NOON, refresh_s=0.2).start()
    yield srv
    srv.stop()


def corrupt(srv: SunSpecSimServer, registers: dict[int, int]) -> None:
    srv.corrupt = registers
    srv.refresh()


def fresh_reader(srv: SunSpecSimServer, map_ttl_s: float = 600.0) -> SunSpecSite:
    return SunSpecSite(ModbusHub(timeout_s=HANG_S).link("127.0.0.1", srv.port),
                       rig_power_w=lambda: 4000.0, map_ttl_s=map_ttl_s)


def reads_again(site: SunSpecSite) -> SiteSample:
    """The good sample a reader gets once the device is sane again (a reader that saw a broken
    map walks it anew after a failed read; a failed connection waits its back-off first)."""
    def good() -> SiteSample | None:
        try:
            sample = site.read(NOON)
        except SourceUnavailable:
            return None
        return None if sample.stale else sample
    return wait_until(good, "the reader reading the good values again")


# (model, offset from its id register, value, the field left missing, the field counted).
# At noon the simulated site makes about 21 kW of PV, charges 8 kW, exports about 8 kW.
IMPLAUSIBLE_SUNSPEC = [
    (203, 18, 0x7FFF, "grid_w", "grid_w"),  # 32767 x 10 W
    (203, 18, 0x8001, "grid_w", "grid_w"),
    (203, 22, 10, "grid_w", "grid_w"),  # the spec's largest scale factor, on a real reading
    (203, 22, 4, "grid_w", "grid_w"),
    (203, 22, 3, "grid_w", "grid_w"),
    (103, 15, 10, "load_w", "inverter_w"),  # the inverter's W: the house load is derived from it
    (103, 14, 0x7FFF, "load_w", "inverter_w"),
    (103, 14, 0x8001, "load_w", "inverter_w"),
    (103, 15, 5, "load_w", "inverter_w"),
    (802, 47, 0x7FFF, "battery_w", "battery_w"),  # 32767 W, beyond the connection
    (802, 47, 0x8001, "battery_w", "battery_w"),
    (802, 63, 10, "battery_w", "battery_w"),
    (802, 63, 3, "battery_w", "battery_w"),
    (802, 11, 0x8000, "soc_pct", "soc_pct"),  # 3276.8 %
    (802, 11, 0xFFFE, "soc_pct", "soc_pct"),  # 6553.4 %
    (802, 11, 0x7FFF, "soc_pct", "soc_pct"),
    (802, 11, 1001, "soc_pct", "soc_pct"),  # 100.1 %
    (802, 56, 0, "soc_pct", "soc_pct"),  # SoC_SF 0: 500 %
    (802, 56, 1, "soc_pct", "soc_pct"),
    (802, 56, 10, "soc_pct", "soc_pct"),
    (160, 4, 10, "pv_w", "pv_w"),  # DCW_SF
    (160, 4, 2, "pv_w", "pv_w"),
    (160, 21, 0x7FFF, "pv_w", "pv_w"),  # the first string's DCW: 32767 W on top of the other
    (160, 41, 0xFFFE, "pv_w", "pv_w"),
]


@pytest.mark.parametrize("model, offset, value, missing, counted", IMPLAUSIBLE_SUNSPEC)
def test_an_implausible_sunspec_value_is_missing_counted_and_the_next_good_one_read(
        sunspec_server, model, offset, value, missing, counted):
    site = fresh_reader(sunspec_server)
    corrupt(sunspec_server, {sunspec_server.addr[model] + offset: value})
    try:
        sample = site.read(NOON)
    finally:
        corrupt(sunspec_server, {})
    assert getattr(sample, missing) is None and within_limits(sample)
    assert site.implausible[counted] == 1
    assert getattr(reads_again(site), missing) is not None


def test_a_scale_factor_of_ten_on_a_saturated_register_never_reaches_the_sample(sunspec_server):
    inverter = sunspec_server.addr[103]
    site = fresh_reader(sunspec_server)
    corrupt(sunspec_server, {inverter + 14: 0x7FFF, inverter + 15: 10})  # 3.3e14 W
    try:
        sample = site.read(NOON)
    finally:
        corrupt(sunspec_server, {})
    assert sample.load_w is None and within_limits(sample)


# (model, offset, value): garbage in the map's structure or in a value's frame. The map must
# end as a missing value or a stale source; the field named must then be missing.
GARBAGE_SUNSPEC = [
    (160, 8, 0, "pv_w"),  # no strings
    (160, 8, 0xFFFF, "pv_w"),  # string count not implemented
    (160, 8, 3, "pv_w"),  # more strings than the model holds
    (160, 8, 1000, "pv_w"),
    (160, 21, 0xFFFF, "pv_w"),  # one string's DCW not implemented: no sum of the rest
    (160, 41, 0xFFFF, "pv_w"),
    (160, 4, 0x8000, "pv_w"),  # DCW_SF not implemented
    (160, 4, 0x7FFF, "pv_w"),  # DCW_SF outside -10..10
    (160, 4, 11, "pv_w"),
    (160, 4, 0xFFF5, "pv_w"),  # -11
    (203, 22, 11, "grid_w"),
    (203, 22, 0x8000, "grid_w"),
    (203, 18, 0x8000, "grid_w"),
    (802, 56, 0xFFF5, "soc_pct"),
    (802, 11, 0xFFFF, "soc_pct"),
    (103, 0, 0, "load_w"),  # the inverter's id gone: no AC side to derive the load from
    (103, 0, 0x1234, "load_w"),
    (160, 1, 8, None),  # the MPPT model shortened: the walk lands in its strings
    (160, 1, 0, None),
    (160, 1, 2000, None),  # runs past the map
    (203, 1, 0, None),
    (203, 1, 2000, None),
    (203, 1, 0xFFFF, None),
    (802, 1, 10, None),  # too short to hold its scale factors
    (802, 0, 124, None),  # the battery claims to be another model
    (160, 0, 0x1234, None),  # an unknown model where the strings were
    (1, 1, 1, None),
    (1, 0, 0xFFFF, None),  # an end marker at the start
    (1, -2, 0, None),  # "SunS" gone
    (1, -1, 0x1234, None),
]


@pytest.mark.parametrize("model, offset, value, missing", GARBAGE_SUNSPEC)
def test_garbage_from_a_sunspec_device_is_a_missing_value_or_a_stale_source(
        sunspec_server, model, offset, value, missing):
    site = fresh_reader(sunspec_server, map_ttl_s=0.0)  # walks the map at every read
    corrupt(sunspec_server, {sunspec_server.addr[model] + offset: value})
    try:
        sample = site.read(NOON)
    except SourceUnavailable:
        sample = None
    finally:
        corrupt(sunspec_server, {})
    if sample is not None:
        assert within_limits(sample)
        if missing is not None:
            assert getattr(sample, missing) is None and (missing != "pv_w" or sample.stale)
    again = reads_again(site)
    assert all(getattr(again, f) is not None for f in FIELDS)


def test_the_end_of_the_map_replaced_by_garbage_is_a_stale_source(sunspec_server):
    end = sunspec_server.addr[203] + 2 + 105
    for registers in ({end: 0}, {end: 7, end + 1: 0}, {end: 7, end + 1: 1999}):
        corrupt(sunspec_server, registers)
        try:
            with pytest.raises(SourceUnavailable):
                fresh_reader(sunspec_server).read(NOON)
        finally:
            corrupt(sunspec_server, {})


def test_random_garbage_in_every_model_never_escapes_as_an_error(sunspec_server):
    rng = random.Random(14)
    nasty = (0, 1, 2, 10, 11, 0x7FFF, 0x8000, 0x8001, 0xFFF5, 0xFFFE, 0xFFFF)
    starts = [sunspec_server.addr[m] for m in (103, 160, 802, 203)]
    outcomes = {"sample": 0, "stale source": 0}
    for _ in range(60):
        registers = {rng.choice(starts) + rng.randrange(0, 50):
                     rng.choice(nasty) if rng.random() < 0.7 else rng.randrange(0x10000)
                     for _ in range(rng.randint(1, 6))}
        corrupt(sunspec_server, registers)
        try:
            sample = fresh_reader(sunspec_server).read(NOON)
            assert within_limits(sample), registers
            outcomes["sample"] += 1
        except SourceUnavailable:
            outcomes["stale source"] += 1
    corrupt(sunspec_server, {})
    assert outcomes["sample"] > 0
    assert reads_again(fresh_reader(sunspec_server)).grid_w is not None


def test_a_map_that_runs_past_the_last_register_is_a_sunspec_error():
    def endless(address: int, count: int) -> list[int]:  # models of 2000 registers, no end
        return list(sunspec.MARKER) if address == 0 else [64000, 2000][:count]
    with pytest.raises(sunspec.SunSpecError, match="runs past|has length"):
        sunspec.discover(endless)


@pytest.mark.parametrize("address, count", [(-1, 1), (0xFFFF, 2), (65000, 600), (0, 0),
                                            (0, 126), (70000, 2)])
def test_a_read_outside_the_register_space_is_a_stale_source_not_a_client_error(address, count):
    link = ModbusLink("127.0.0.1", 1, timeout_s=HANG_S)  # refused before any I/O
    with pytest.raises(SourceUnavailable, match="no read of"):
        link.read(1, address, count)


@pytest.mark.parametrize("registers, expect", [
    ([0x7FC0, 0], None), ([0x7F80, 0], None), ([0xFF80, 0], None),  # NaN, +inf, -inf
])
def test_float32_patterns_and_all_ones_accumulators_are_missing(registers, expect):
    assert sunspec.value(registers, sunspec.Point(0, "float32", size=2)) is expect
    assert sunspec.value([0xFFFF, 0xFFFF], sunspec.Point(0, "acc32", size=2)) is None


def answer_frame(request: bytes, pdu: bytes, length: int | None = None,
                 unit: int | None = None, tid: bytes | None = None) -> bytes:
    """A Modbus TCP answer to `request` carrying `pdu`, its header fields forged when given."""
    size = len(pdu) + 1 if length is None else length
    return ((tid or request[:2]) + b"\0\0" + struct.pack(">H", size)
            + bytes([request[6] if unit is None else unit]) + pdu)


MARKER_PDU = b"\x03\x04" + struct.pack(">HH", *sunspec.MARKER)
# Answers the client reads whole and turns away at once, with what it says about them.
WIRE_GARBAGE = {
    "byte count past the frame": (lambda r: answer_frame(r, b"\x03\xff" + b"\0" * 4),
                                  "Unable to decode"),
    "cut short": (lambda r: answer_frame(r, b"\x03\x04\x00"), "Unable to decode"),
    "another function": (lambda r: answer_frame(r, b"\x10\x00\x00\x00\x01"), "got 0"),
    "an unknown exception code": (lambda r: answer_frame(r, b"\x83\xff"), "no SunSpec marker"),
    "an odd byte count": (lambda r: answer_frame(r, b"\x03\x03SuS"), "got 1"),
    "more registers than asked": (lambda r: answer_frame(r, b"\x03\x08" + b"SunS" * 2),
                                  "got 4"),
}
# Answers the client skips or keeps reading for: no answer ever completes, so its timeout ends it.
WIRE_NEVER_ANSWERS = {
    "noise": lambda r: bytes(range(7, 40)),
    "another transaction": lambda r: answer_frame(r, MARKER_PDU, tid=b"\xff\xff"),
    "another unit": lambda r: answer_frame(r, MARKER_PDU, unit=99),
    "a length of 65535": lambda r: answer_frame(r, MARKER_PDU, length=65535),
    "a length of 0": lambda r: answer_frame(r, MARKER_PDU, length=0),
    "nothing": lambda r: b"",
}


def garbage_peer(answer) -> socket.socket:
    """A listener on 127.0.0.1 that answers every request on its first connection with
    `answer(request)`; closing it ends the peer."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            with conn:
                while request := conn.recv(260):
                    conn.sendall(answer(request))
    threading.Thread(target=serve, daemon=True).start()
    return listener


@pytest.mark.parametrize("kind", WIRE_GARBAGE)
def test_garbage_on_the_wire_is_a_stale_source(kind):
    answer, why = WIRE_GARBAGE[kind]
    listener = garbage_peer(answer)
    try:  # a generous timeout: the answer itself, not the clock, must end the read
        site = SunSpecSite(ModbusHub(timeout_s=HANG_S).link("127.0.0.1",
                                                            listener.getsockname()[1]))
        with pytest.raises(SourceUnavailable, match=why):
            site.read(NOON)
    finally:
        listener.close()


@pytest.mark.parametrize("kind", WIRE_NEVER_ANSWERS)
def test_garbage_that_never_makes_an_answer_times_out_as_a_stale_source(kind):
    listener = garbage_peer(WIRE_NEVER_ANSWERS[kind])
    try:  # a test of the timeout itself: a short one
        site = SunSpecSite(ModbusHub(timeout_s=0.5).link("127.0.0.1",
                                                         listener.getsockname()[1]))
        with pytest.raises(SourceUnavailable, match="No response received"):
            site.read(NOON)
    finally:
        listener.close()


def test_the_agent_stays_healthy_while_its_inverter_sends_garbage(tmp_path):
    from tests.conftest import make_agent, run_for

    agent, clock = make_agent(tmp_path)
    srv = SunSpecSimServer(sim_site(), clock.now).start()
    mppt = srv.addr[160]
    try:
        agent.parts.site = SunSpecSite(ModbusHub(timeout_s=HANG_S).link("127.0.0.1", srv.port))
        for registers in ({mppt + 8: 0}, {mppt + 8: 0xFFFF}, {mppt + 1: 2000},
                          {srv.addr[802] + 11: 0x8000}):
            srv.corrupt = registers
            run_for(agent, clock, hours=0.1)
            health = agent.state.jobs["sample_site"]
            assert not health.internal_error, health.last_error
            assert agent.watchdog_ok()
        rows = agent.store.query("SELECT pv_w, soc_pct FROM site_samples")
        assert rows and all(r["soc_pct"] is None or 0 <= r["soc_pct"] <= 100 for r in rows)
        srv.corrupt = {}
        run_for(agent, clock, hours=0.1)
        assert agent.state.site is not None and agent.state.site.pv_w is not None
    finally:
        srv.stop()
        agent.store.close()


# --- register maps ------------------------------------------------------------------------------

GOOD_IMAGES = {name: image for name, image, _ in DEVICES}


@pytest.fixture(scope="module")
def map_servers():
    servers: dict[str, RegisterImageServer] = {}
    yield servers
    for server in servers.values():
        server.stop()


def map_site(servers: dict[str, RegisterImageServer], name: str,
             image: dict[int, list[int]]) -> RegisterMapSite:
    if name not in servers:
        servers[name] = RegisterImageServer(65000, unit=MAPS[name].unit).start()
    for address, values in image.items():
        servers[name].set(address, values)
    return RegisterMapSite(ModbusHub(timeout_s=HANG_S).link("127.0.0.1", servers[name].port),
                           MAPS[name], rig_power_w=lambda: 1000.0)


INF = float("inf")
# (map, registers over the good image, the field left missing, the field counted or None when
# the registers hold a not-implemented pattern or a bad scale factor)
HOSTILE_MAPS = [
    ("huawei_sun2000", {37760: [65534]}, "soc_pct", "soc_pct"),
    ("huawei_sun2000", {37760: [0x8000]}, "soc_pct", "soc_pct"),
    ("huawei_sun2000", {37760: [1001]}, "soc_pct", "soc_pct"),
    ("huawei_sun2000", {32064: s32(0x7FFFFFFF)}, "pv_w", "pv_w"),
    ("huawei_sun2000", {32064: s32(-5000)}, "pv_w", "pv_w"),
    ("huawei_sun2000", {37113: s32(10**8)}, "grid_w", "grid_w"),
    ("huawei_sun2000", {37765: s32(-10**6)}, "battery_w", "battery_w"),
    ("huawei_sun2000", {37765: s32(-2**31)}, "battery_w", None),
    ("victron_gx", {843: [0x8000]}, "soc_pct", "soc_pct"),
    ("victron_gx", {843: [101]}, "soc_pct", "soc_pct"),
    ("victron_gx", {843: [0xFFFF]}, "soc_pct", None),
    ("victron_gx", {842: [0x7FFF]}, "battery_w", "battery_w"),
    ("victron_gx", {820: [0x7FFF], 821: [0x7FFF], 822: [0x7FFF]}, "grid_w", "grid_w"),
    ("victron_gx", {808: [65534]}, "pv_w", "pv_w"),
    ("victron_gx", {850: [40000]}, "pv_w", "pv_w"),
    ("victron_gx", {821: [0x8000]}, "grid_w", None),
    ("sma_hybrid", {30845: s32(0xFFFFFFFE)}, "soc_pct", "soc_pct"),
    ("sma_hybrid", {30845: s32(101)}, "soc_pct", "soc_pct"),
    ("sma_hybrid", {30773: s32(0x7FFFFFFF)}, "pv_w", "pv_w"),
    ("sma_hybrid", {30865: s32(10**6)}, "grid_w", "grid_w"),
    ("sma_hybrid", {31393: s32(10**5)}, "battery_w", "battery_w"),
    ("sma_hybrid", {31395: [0xFFFF, 0xFFFF]}, "battery_w", None),
    ("solaredge_meter", {62852: f32_low_first(-1.0)}, "soc_pct", "soc_pct"),
    ("solaredge_meter", {62852: f32_low_first(100.5)}, "soc_pct", "soc_pct"),
    ("solaredge_meter", {62852: f32_low_first(1e30)}, "soc_pct", "soc_pct"),
    ("solaredge_meter", {62852: f32_low_first(INF)}, "soc_pct", None),
    ("solaredge_meter", {62852: f32_low_first(float("nan"))}, "soc_pct", None),
    ("solaredge_meter", {62836: f32_low_first(3.4e38)}, "battery_w", "battery_w"),
    ("solaredge_meter", {62836: f32_low_first(-1e5)}, "battery_w", "battery_w"),
    ("solaredge_meter", {40210: [10]}, "grid_w", "grid_w"),
    ("solaredge_meter", {40210: [4]}, "grid_w", "grid_w"),
    ("solaredge_meter", {40210: [0x7FFF]}, "grid_w", None),
    ("solaredge_meter", {40210: [11]}, "grid_w", None),
    ("solaredge_meter", {40206: [0x7FFF], 40210: [0]}, "grid_w", "grid_w"),
]


@pytest.mark.parametrize("name, registers, missing, counted", HOSTILE_MAPS)
def test_a_hostile_register_map_value_is_missing_and_the_next_good_one_read(
        map_servers, name, registers, missing, counted):
    site = map_site(map_servers, name, {**GOOD_IMAGES[name], **registers})
    sample = site.read(NOW)
    assert getattr(sample, missing) is None and within_limits(sample)
    assert site.implausible == ({counted: 1} if counted else {})
    if missing in ("pv_w", "grid_w", "battery_w"):
        assert sample.load_w is None  # never derived from a part that is missing
    good = map_site(map_servers, name, GOOD_IMAGES[name]).read(NOW)
    assert getattr(good, missing) is not None


# --- MQTT ---------------------------------------------------------------------------------------

TOPICS = {"pv_w": "h/pv", "load_w": "h/load", "grid_w": "h/grid", "battery_w": "h/battery",
          "soc_pct": "h/soc"}
KW_TOPIC, JSON_TOPIC = "h/grid_kw", "h/meter"


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = Broker(tmp_path_factory.mktemp("mosquitto")).start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def mqtt_site(broker):
    mappings = [Mapping(t, f, timeout_s=3600) for f, t in TOPICS.items()]
    mappings += [Mapping(KW_TOPIC, "grid_w", scale=1000.0, timeout_s=3600),
                 Mapping(JSON_TOPIC, "grid_w", "ENERGY.Power", timeout_s=3600)]
    s = MqttSite(MqttSettings(port=broker.port, client_id=f"hostile-{time.monotonic_ns()}",
                              mappings=mappings)).start()
    pub = publisher(broker.port)
    wait_subscribed(s)
    yield s, pub
    pub.loop_stop()
    s.stop()


GOOD = itertools.count()


def publish_then_good(site: MqttSite, pub, topic: str, field: str, bad: bytes | str) -> None:
    """Publish the bad payload and then a good one, different from the last, on the same topic;
    the broker keeps their order, so once the good one is read the bad one has been handled."""
    good = 1.0 + next(GOOD) % 90  # a value every field allows
    pub.publish(topic, bad)
    pub.publish(topic, json.dumps({"ENERGY": {"Power": good}}) if topic == JSON_TOPIC
                else str(good / 1000.0 if topic == KW_TOPIC else good))
    wait_for(lambda: site.fresh()[field] == pytest.approx(good))


IMPLAUSIBLE_MQTT = [
    ("soc_pct", "-50"), ("soc_pct", "250"), ("soc_pct", "100.5"), ("soc_pct", "-0.01"),
    ("soc_pct", "3276.8"), ("soc_pct", "6553.4"), ("soc_pct", "1e308"),
    ("pv_w", "-5000"), ("pv_w", "1e9"), ("pv_w", "32767"), ("pv_w", "1e308"),
    ("grid_w", "1e6"), ("grid_w", "-1e6"), ("grid_w", "40000"), ("grid_w", "-1e308"),
    ("battery_w", "32767"), ("battery_w", "-40000"), ("battery_w", "1e12"),
    ("load_w", "-1000"), ("load_w", "1e9"), ("load_w", "2e5"),
]


@pytest.mark.parametrize("field, payload", IMPLAUSIBLE_MQTT)
def test_an_implausible_mqtt_value_is_counted_and_never_stored(mqtt_site, field, payload):
    site, pub = mqtt_site
    counted, received = site.implausible.get(field, 0), site.received
    publish_then_good(site, pub, TOPICS[field], field, payload)
    assert site.implausible[field] == counted + 1
    assert site.received == received + 1  # only the good one was stored


@pytest.mark.parametrize("payload", ["40", "1e305", "-50"])
def test_a_scaled_mqtt_value_is_checked_once_scaled(mqtt_site, payload):
    site, pub = mqtt_site
    counted = site.implausible.get("grid_w", 0)
    publish_then_good(site, pub, KW_TOPIC, "grid_w", payload)
    assert site.implausible["grid_w"] == counted + 1


NESTED = "[" * 60_000
MALFORMED_MQTT = [
    (JSON_TOPIC, NESTED), (JSON_TOPIC, "{\"a\":" * 20_000), (JSON_TOPIC, "[" * 1500 + "]" * 1500),
    (JSON_TOPIC, '{"ENERGY": {"Power": ' + "9" * 5000 + "}}"),  # beyond int digits
    (JSON_TOPIC, '{"ENERGY": {"Power": ' + "9" * 400 + "}}"),  # overflows a float
    (JSON_TOPIC, '{"ENERGY": {"Power": 1e400}}'), (JSON_TOPIC, '{"ENERGY": {"Power": NaN}}'),
    (JSON_TOPIC, '{"ENERGY": {"Power": -Infinity}}'), (JSON_TOPIC, '{"ENERGY": {"Power": []}}'),
    (JSON_TOPIC, '{"ENERGY": {"Power": {"x": 1}}}'), (JSON_TOPIC, '{"ENERGY": {"Power": true}}'),
    (JSON_TOPIC, '{"ENERGY": {"Power": "1e999"}}'), (JSON_TOPIC, '{"ENERGY": [1]}'),
    (JSON_TOPIC, '"ENERGY"'), (JSON_TOPIC, "null"), (JSON_TOPIC, b"\xff\xfe{}"),
    (JSON_TOPIC, ""), (JSON_TOPIC, "x" * (65 * 1024)),
    (KW_TOPIC, "1e308"), (KW_TOPIC, "1e400"), (KW_TOPIC, "nan"), (KW_TOPIC, "-inf"),
    (KW_TOPIC, "9" * 400), (TOPICS["grid_w"], NESTED), (TOPICS["grid_w"], "\x00"),
    (TOPICS["grid_w"], "0x10"), (TOPICS["grid_w"], "Infinity"), (TOPICS["soc_pct"], " "),
]


@pytest.mark.parametrize("topic, payload", MALFORMED_MQTT,
                         ids=lambda v: v[:20] if isinstance(v, str) else None)
def test_a_malformed_mqtt_payload_is_counted_and_the_client_keeps_reading(
        mqtt_site, topic, payload):
    site, pub = mqtt_site
    field = "soc_pct" if topic == TOPICS["soc_pct"] else "grid_w"
    before, received = site.malformed.get(topic, 0), site.received
    publish_then_good(site, pub, topic, field, payload)
    assert site.malformed[topic] == before + 1 and site.received == received + 1
    assert site.connected.is_set() and not site.client.loop_ended.is_set()
    assert site.connection.restarts == 0


def test_a_dead_network_thread_is_noticed_and_the_client_restarted(broker):
    s = MqttSite(MqttSettings(port=broker.port, client_id=f"dies-{time.monotonic_ns()}",
                              mappings=[Mapping("d/pv", "pv_w", timeout_s=3600)])).start()
    pub = publisher(broker.port)
    try:
        wait_subscribed(s)

        def boom(*_):  # a failure inside paho's own thread, past any payload handling
            raise RuntimeError("network loop failure")
        s.client.on_message = boom
        pub.publish("d/pv", "1")
        wait_for(s.client.loop_ended.is_set)
        with pytest.raises(SourceUnavailable):
            s.read(NOW)  # notices, restarts; nothing fresh yet
        assert s.connection.restarts == 1
        wait_subscribed(s)  # the new client's own subscription
        pub.publish("d/pv", "2500")
        wait_for(lambda: s.fresh()["pv_w"] == 2500.0)
        assert s.read(NOW).pv_w == 2500.0
    finally:
        s.stop()
        pub.loop_stop()


def test_connected_and_silent_is_told_apart_from_disconnected(tmp_path):
    b = Broker(tmp_path).start()
    now = [0.0]
    s = MqttSite(MqttSettings(port=b.port, client_id=f"silent-{time.monotonic_ns()}",
                              mappings=[Mapping("q/grid", "grid_w", timeout_s=30)]),
                 clock=lambda: now[0]).start()
    pub = publisher(b.port)
    try:
        wait_for(s.connected.is_set)
        with pytest.raises(MqttSilent, match="connected, but .*nothing has arrived"):
            s.read(NOW)
        wait_subscribed(s)
        pub.publish("q/grid", "400")
        wait_for(lambda: s.received == 1)
        now[0] += 31
        with pytest.raises(MqttSilent, match="last message came 31 s ago"):
            s.read(NOW)
        pub.loop_stop()
        b.stop()
        wait_for(lambda: not s.connected.is_set())
        with pytest.raises(MqttDisconnected, match="not connected"):
            s.read(NOW)
    finally:
        s.stop()
        b.stop()


def test_the_broker_password_is_never_in_the_settings_repr_or_an_error():
    settings = MqttSettings(username="owner", password="hunter2-secret")
    assert "hunter2" not in repr(settings)
    s = MqttSite(settings)
    with pytest.raises(SourceUnavailable) as err:
        s.read(NOW)
    assert "hunter2" not in str(err.value)


PRICE_SLOT = {"start": "2026-11-20T12:00:00+00:00", "end": "2026-11-20T12:15:00+00:00"}
MALFORMED_PRICES = [
    NESTED, "{\"a\":" * 20_000, "[" + "9" * 5000 + "]",
    json.dumps([{**PRICE_SLOT, "spot_per_mwh": 1e308}]),  # no market's price
    json.dumps([{**PRICE_SLOT, "import_per_kwh": -2e6, "export_per_kwh": 0}]),
    json.dumps([{**PRICE_SLOT, "spot_per_mwh": True}]),
    '[{"start": "2026-11-20T12:00:00+00:00", "end": "2026-11-20T12:15:00+00:00", '
    '"spot_per_mwh": ' + "9" * 400 + "}]",
    json.dumps([{**PRICE_SLOT, "import_per_kwh": "inf", "export_per_kwh": 0}]),
    json.dumps([{**PRICE_SLOT, "end": "2026-11-20T12:15:00", "spot_per_mwh": 1}]),
    json.dumps([1]), json.dumps(["x"]), json.dumps([[]]), json.dumps([None]),
    json.dumps([{**PRICE_SLOT, "start": 5, "spot_per_mwh": 1}]), b"\xff", "",
]


@pytest.mark.parametrize("payload", MALFORMED_PRICES,
                         ids=lambda v: v[:20] if isinstance(v, str) else None)
def test_a_malformed_price_list_is_counted_and_the_feed_keeps_reading(broker, payload):
    t = MqttTariff("127.0.0.1", broker.port, "h/prices", "spot * 1.21", "spot",
                   client_id=f"tariff-{time.monotonic_ns()}").start()
    pub = publisher(broker.port)
    start = datetime(2026, 11, 20, 12, tzinfo=UTC)
    try:
        wait_subscribed(t)
        pub.publish("h/prices", payload)
        pub.publish("h/prices", json.dumps([{**PRICE_SLOT, "spot_per_mwh": 100.0}]))
        wait_for(lambda: len(t.slots(start, start + timedelta(hours=1))) == 1)
        assert t.malformed == 1 and t.connection.restarts == 0
        slot = t.slots(start, start + timedelta(hours=1))[0]
        assert math.isfinite(slot.import_per_kwh) and slot.import_per_kwh == 0.121
    finally:
        t.stop()
        pub.loop_stop()


# --- the simulated site and the limits ----------------------------------------------------------

def test_the_site_limits_come_from_its_breaker_array_and_battery(tmp_path):
    from dataclasses import replace

    from node.config import default_config
    from node.wiring import site_limits
    base = default_config()
    cfg = replace(base, site=replace(base.site, breaker_limit_w=10_000.0, pv_kwp=4.0),
                  energy=replace(base.energy, simulated=replace(
                      base.energy.simulated, battery=replace(
                          base.energy.simulated.battery, capacity_kwh=10.0,
                          max_charge_w=3000.0, max_discharge_w=5000.0))))
    limits = site_limits(cfg)
    assert limits.pv_w.holds(4800) and not limits.pv_w.holds(5100)
    assert limits.battery_w.holds(-6000) and not limits.battery_w.holds(6500)
    assert limits.grid_w.holds(-12_000) and not limits.grid_w.holds(12_600)
    assert not limits.soc_pct.holds(100.01) and not limits.grid_w.holds(float("nan"))
    unknown = SiteLimits.for_site(10_000.0)  # no array, no battery: the connection bounds both
    assert unknown.pv_w.holds(12_000) and not unknown.pv_w.holds(12_600)


def recording(tmp_path, pv: str, load: str) -> str:
    csv = tmp_path / "site.csv"
    csv.write_text("ts_utc,load_w,pv_w\n"
                   f"2024-06-12T10:00:00+00:00,{load},{pv}\n"
                   "2024-06-12T10:30:00+00:00,400,2000\n")
    return str(csv)


@pytest.mark.parametrize("pv, load, column", [("nan", "500", "pv_w"), ("inf", "500", "pv_w"),
                                              ("2000", "1e12", "load_w")])
def test_a_recording_with_a_cell_that_is_no_number_is_refused_naming_it(tmp_path, pv, load,
                                                                         column):
    with pytest.raises(SeriesError, match=f"site.csv, line 2, column {column}"):
        SimulatedSite(recording(tmp_path, pv, load), replay=False)


@pytest.mark.parametrize("pv, load", [("1e9", "500"), ("2000", "-5000"), ("-1e6", "400")])
def test_a_recording_with_impossible_values_is_screened_like_a_device(tmp_path, pv, load):
    site = SimulatedSite(recording(tmp_path, pv, load),
                         limits=SiteLimits.for_site(25_000.0, 5_000.0), replay=False)
    sample = site.read(datetime(2024, 6, 12, 10, 0, tzinfo=UTC))
    assert sample.stale and within_limits(sample)
    assert sum(site.implausible.values()) >= 1
    good = site.read(datetime(2024, 6, 12, 10, 30, tzinfo=UTC))
    assert (good.pv_w, good.load_w) == (2000.0, 400.0) and not good.stale


def test_probe_modbus_shows_what_it_turned_away(sunspec_server, capsys):
    from node.cli.commands import main
    corrupt(sunspec_server, {sunspec_server.addr[802] + 11: 0x8000})
    try:
        assert main(["probe", "modbus", f"127.0.0.1:{sunspec_server.port}",
                     "--timeout", str(HANG_S)]) == 0
    finally:
        corrupt(sunspec_server, {})
    doc = json.loads(capsys.readouterr().out)
    assert doc["implausible"] == {"soc_pct": 1} and doc["sample"]["soc_pct"] is None


def test_probe_mqtt_names_a_number_no_meter_reads(broker, capsys):
    from node.cli.commands import main
    pub = publisher(broker.port)
    try:  # retained, and acknowledged (QoS 1): the broker hands it to the probe's subscription
        pub.publish("probe/meter", "1e9", qos=1, retain=True).wait_for_publish(HANG_S)
    finally:
        pub.loop_stop()
    args = ["probe", "mqtt", f"127.0.0.1:{broker.port}", "--topic", "probe/meter",
            "--wait", str(HANG_S)]
    assert main(args) == 1
    assert "no site's meter reads" in capsys.readouterr().err

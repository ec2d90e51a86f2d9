"""MQTT site values through a real mosquitto: presets, expiry, malformed and oversized
payloads, and a broker that restarts."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt
import pytest

from energy.mqtt import Mapping, MqttSettings, MqttSite, parse, preset
from energy.types import SourceUnavailable
from tests.conftest import HANG_S, wait_until
from tests.mosquitto import Broker

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path).start()
    yield b
    b.stop()


def publisher(port: int) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-pub")
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def wait_for(condition, what: str = "the awaited condition") -> None:
    wait_until(condition, what, poll_s=0.02)


def wait_subscribed(reader) -> None:
    """Until the broker has confirmed every subscription of `reader` (a site or a price feed):
    a message published before that is never delivered to it."""
    connection = getattr(reader, "connection", reader)
    wait_for(connection.subscribed.is_set, "the broker confirming the subscriptions")


def site(port: int, mappings, **kw) -> MqttSite:
    return MqttSite(MqttSettings(port=port, client_id=f"sunrig-{time.monotonic_ns()}",
                                 mappings=mappings, **kw)).start()


def test_presets_parse_plain_tasmota_shelly_and_victron(broker):
    maps = [preset("plain", "home/pv/power", "pv_w"),
            preset("tasmota", "heatpump", "load_w"),
            preset("shelly_gen2", "shellypro3em-1", "grid_w"),
            preset("victron", "c0619ab1/battery/512/Soc", "soc_pct")]
    s = site(broker.port, maps, victron_portal="c0619ab1")
    pub = publisher(broker.port)
    try:
        wait_subscribed(s)
        pub.publish("home/pv/power", "4215.5")
        pub.publish("tele/heatpump/SENSOR", json.dumps(
            {"Time": "2026-11-20T12:00:00", "ENERGY": {"Power": 812, "Voltage": 231}}))
        pub.publish("shellypro3em-1/status/em:0", json.dumps(
            {"id": 0, "a_act_power": -400.1, "total_act_power": -1210.4}))
        pub.publish("N/c0619ab1/battery/512/Soc", json.dumps({"value": 63.5}))
        wait_for(lambda: s.received >= 4)
        sample = s.read(NOW)
        assert (sample.pv_w, sample.load_w, sample.grid_w, sample.soc_pct) == (
            4215.5, 812.0, -1210.4, 63.5)
        assert sample.stale is False
    finally:
        s.stop()
        pub.loop_stop()


def test_values_expire_after_their_timeout():
    now = [100.0]
    s = MqttSite(MqttSettings(mappings=[Mapping("a", "pv_w", timeout_s=30),
                                        Mapping("b", "grid_w", timeout_s=5)]), lambda: now[0])
    msg = type("M", (), {})
    for topic, payload in (("a", b"100"), ("b", b"-50")):
        m = msg()
        m.topic, m.payload = topic, payload
        s._on_message(None, None, m)
    assert s.fresh() == {"pv_w": 100.0, "grid_w": -50.0}
    now[0] += 10
    sample = s.read(NOW)
    assert sample.pv_w == 100.0 and sample.grid_w is None and sample.stale
    now[0] += 30
    with pytest.raises(SourceUnavailable, match="no fresh value"):
        s.read(NOW)


def test_malformed_and_oversized_payloads_are_counted_never_stored(broker, caplog):
    s = site(broker.port, [Mapping("meter/grid", "grid_w", "power", scale=1000.0)])
    pub = publisher(broker.port)
    try:
        wait_subscribed(s)
        pub.publish("meter/grid", json.dumps({"power": 1.5}))  # kW, scaled to W
        wait_for(lambda: s.received == 1)
        for bad in (b"{not json", json.dumps({"power": "lots"}), json.dumps({"watts": 3}),
                    json.dumps({"power": None}), b"\xff\xfe", b"x" * (70 * 1024),
                    json.dumps({"power": float("nan")})):
            pub.publish("meter/grid", bad)
        wait_for(lambda: s.malformed.get("meter/grid", 0) == 7)
        assert s.read(NOW).grid_w == 1500.0  # the last good value, nothing wrong stored
        assert sum("malformed" in r.message for r in caplog.records) == 1
    finally:
        s.stop()
        pub.loop_stop()


def test_a_broker_restart_reconnects_and_resubscribes(broker):
    s = site(broker.port, [Mapping("pv", "pv_w")], keepalive_s=5)
    try:
        wait_for(s.connected.is_set)
        broker.stop()
        wait_for(lambda: not s.connected.is_set())
        assert not s.subscribed.is_set()  # a lost connection's subscriptions are gone with it
        broker.start()
        wait_subscribed(s)  # subscribed anew: the restarted broker had forgotten the topics
        pub = publisher(broker.port)
        pub.publish("pv", "321")
        wait_for(lambda: s.received == 1)
        pub.loop_stop()
        assert s.read(NOW).pv_w == 321.0
    finally:
        s.stop()


def test_parse_names_what_is_wrong():
    with pytest.raises(ValueError, match="not a number"):
        parse(b"abc", Mapping("t", "pv_w"))
    with pytest.raises(ValueError, match="no 'ENERGY.Power'"):
        parse(b'{"ENERGY": {}}', Mapping("t", "pv_w", "ENERGY.Power"))
    with pytest.raises(ValueError, match="unknown preset"):
        preset("zigbee", "x", "pv_w")
    assert parse(b" 12.5 ", Mapping("t", "pv_w", scale=2)) == 25.0


def test_the_config_builds_an_mqtt_site_and_needs_a_topic(broker, tmp_path):
    from node.clock import SimulatedClock
    from node.config import parse_config
    from node.errors import ConfigError
    from node.wiring import build_parts
    from tests.conftest import START

    text = (f'[energy]\nsource = "mqtt"\n[energy.mqtt]\nport = {broker.port}\n'
            '[[energy.mqtt.mappings]]\ntopic = "tele/meter/SENSOR"\nfield = "grid_w"\n'
            'json_path = "ENERGY.Power"\n')
    parts = build_parts(parse_config(text, "t.toml", tmp_path), SimulatedClock(START, speed=0),
                        tmp_path, lambda: 0.0)
    pub = publisher(broker.port)
    try:
        wait_subscribed(parts.site)
        pub.publish("tele/meter/SENSOR", json.dumps({"ENERGY": {"Power": -640}}))
        wait_for(lambda: parts.site.received == 1)
        assert parts.site.read(NOW).grid_w == -640
    finally:
        parts.close()
        pub.loop_stop()
    with pytest.raises(ConfigError, match="needs at least one topic"):
        parse_config('[energy]\nsource = "mqtt"\n', "t.toml", tmp_path)


def test_probe_mqtt_prints_the_parsed_value(broker, capsys):
    from node.cli.commands import main

    pub = publisher(broker.port)
    try:  # retained, and acknowledged (QoS 1): the broker hands it to the probe's subscription
        pub.publish("tele/pv/SENSOR", json.dumps({"ENERGY": {"Power": 2.5}}), qos=1,
                    retain=True).wait_for_publish(HANG_S)
    finally:
        pub.loop_stop()
    args = ["probe", "mqtt", f"127.0.0.1:{broker.port}", "--topic", "tele/pv/SENSOR",
            "--json-path", "ENERGY.Power", "--scale", "1000", "--wait", str(HANG_S)]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out) == {"topic": "tele/pv/SENSOR", "value": 2500.0}
    # a topic nothing publishes: the probe's own wait is what ends it
    assert main(["probe", "mqtt", f"127.0.0.1:{broker.port}", "--topic", "none",
                 "--wait", "1"]) == 1
    assert "no message on none" in capsys.readouterr().err


def test_prices_from_an_mqtt_topic_keep_the_last_good_list(broker):
    from energy.mqtt_tariff import MqttTariff
    t = MqttTariff("127.0.0.1", broker.port, "home/prices", "spot * 1.21 + 0.1", "spot",
                   client_id=f"tariff-{time.monotonic_ns()}").start()
    pub = publisher(broker.port)
    start = datetime(2026, 11, 20, 12, tzinfo=UTC)
    try:
        good = [{"start": "2026-11-20T12:00:00+00:00", "end": "2026-11-20T12:15:00+00:00",
                 "spot_per_mwh": -20.0},
                {"start": "2026-11-20T12:15:00+00:00", "end": "2026-11-20T12:30:00+00:00",
                 "import_per_kwh": 0.31, "export_per_kwh": 0.07}]
        wait_subscribed(t)
        pub.publish("home/prices", json.dumps(good))
        wait_for(lambda: len(t.slots(start, start + timedelta(hours=1))) == 2)
        first, second = t.slots(start, start + timedelta(hours=1))
        assert first.export_per_kwh == -0.02  # negative, kept
        assert first.import_per_kwh == pytest.approx(-0.02 * 1.21 + 0.1)
        assert (second.import_per_kwh, second.export_per_kwh) == (0.31, 0.07)
        for bad in ("not json", json.dumps({"start": 1}), json.dumps([{"start": "x"}]),
                    json.dumps([{**good[0], "end": good[0]["start"]}]),
                    json.dumps([{**good[1], "import_per_kwh": "NaN"}])):
            pub.publish("home/prices", bad)
        wait_for(lambda: t.malformed == 5)
        assert len(t.slots(start, start + timedelta(hours=1))) == 2
    finally:
        t.stop()
        pub.loop_stop()

"""Home Assistant discovery and state through a real mosquitto."""

from __future__ import annotations

import json
import threading

import paho.mqtt.client as mqtt
import pytest

from tests.conftest import wait_until
from tests.mosquitto import Broker
from webui.homeassistant import HaPublisher, HaSettings

STATUS = {"site_name": "Owner rig", "currency": "EUR", "rig_power_w": 3440.9,
          "today": {"revenue": 41.2, "energy_kwh": 18.5},
          "payback": {"paid_back_pct": 7.25},
          "gpus": [{"lease_id": "a"}, {"lease_id": "a"}, {"lease_id": None}]}


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path).start()
    yield b
    b.stop()


def test_discovery_and_state_reach_the_broker(broker):
    seen: dict[str, bytes] = {}
    lock = threading.Lock()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="ha-test")

    def on_message(client, userdata, msg):
        with lock:
            seen[msg.topic] = msg.payload
    sub.on_message = on_message
    subscribed = threading.Event()
    sub.on_connect = lambda c, *_: c.subscribe([("homeassistant/#", 0), ("sunrig/#", 0)])
    sub.on_subscribe = lambda *_: subscribed.set()
    sub.connect("127.0.0.1", broker.port)
    sub.loop_start()
    wait_until(subscribed.is_set, "subscribed to the broker")
    pub = HaPublisher(HaSettings(port=broker.port, every_s=0.2), lambda: dict(STATUS)).start()
    try:
        wait_until(lambda: "sunrig/sunrig/state" in seen, "the state published", poll_s=0.05)
        power = json.loads(seen["homeassistant/sensor/sunrig/rig_power/config"])
        assert power["device_class"] == "power" and power["unit_of_measurement"] == "W"
        assert power["device"]["name"] == "Owner rig"
        money = json.loads(seen["homeassistant/sensor/sunrig/earnings_today/config"])
        assert money["unit_of_measurement"] == "EUR" and money["device_class"] == "monetary"
        energy = json.loads(seen["homeassistant/sensor/sunrig/rig_energy_today/config"])
        assert energy["state_class"] == "total_increasing"
        assert json.loads(seen["sunrig/sunrig/state"]) == {
            "gpus_sold": 2, "rig_power": 3440.9, "rig_energy_today": 18.5,
            "earnings_today": 41.2, "payback": 7.25}
        assert seen["sunrig/sunrig/availability"] == b"online"
    finally:
        pub.stop()
        sub.loop_stop()

"""Home Assistant discovery and state through a real mosquitto.

What Home Assistant accepts is taken from its own code (home-assistant/core):
`homeassistant/components/sensor/const.py` (DEVICE_CLASS_STATE_CLASSES: energy takes total or
total_increasing, monetary only total), `homeassistant/components/mqtt/sensor.py`
(`last_reset_value_template` only with state class total, rendered from the state topic and
parsed as a datetime) and `homeassistant/components/energy/validate.py` (a device's energy for
the energy dashboard: device class energy, a unit of energy, state class total or
total_increasing, not negative). Templates are rendered with Jinja2, the engine Home Assistant
renders them with, over the payload as it came from the broker.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime

import jinja2
import paho.mqtt.client as mqtt
import pytest

from node.service import status_with_totals
from tests.conftest import make_agent, run_for, wait_until
from tests.mosquitto import Broker
from webui.homeassistant import HaPublisher, HaSettings, state

STATUS = {"site_name": "Owner rig", "currency": "EUR", "rig_power_w": 3440.9,
          "today": {"day": "2026-03-29", "revenue": 41.2, "energy_kwh": 18.5},
          "payback": {"paid_back_pct": 7.25},
          "gpus": [{"lease_id": "a"}, {"lease_id": "a"}, {"lease_id": None}],
          "lifetime": {"revenue_by_market": {"akash": 900.5, "hyperbolic": 99.5},
                       "energy_wh": [{"role": "market", "source": "pv", "energy_wh": 1500.0},
                                     {"role": "market", "source": "grid", "energy_wh": 500.0},
                                     {"role": "local", "source": "battery",
                                      "energy_wh": 250.0}]}}
# energy sensors' state classes Home Assistant accepts (sensor/const.py), and monetary's
ENERGY_STATE_CLASSES = {"total", "total_increasing"}
MONETARY_STATE_CLASSES = {"total"}


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path).start()
    yield b
    b.stop()


class Listener:
    """A subscriber, as Home Assistant is one: every message by topic, with its retain flag."""

    def __init__(self, port: int, client_id: str):
        self.seen: dict[str, mqtt.MQTTMessage] = {}
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: c.subscribe([("homeassistant/#", 0),
                                                            ("sunrig/#", 0)])
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        wait_until(self.subscribed.is_set, "subscribed to the broker")

    def _on_message(self, client, userdata, msg) -> None:
        with self.lock:
            self.seen[msg.topic] = msg

    def json(self, topic: str) -> dict:
        return json.loads(self.seen[topic].payload)

    def configs(self) -> list[dict]:
        with self.lock:
            return [json.loads(m.payload) for t, m in self.seen.items()
                    if t.endswith("/config")]

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def render(template: str, payload: bytes) -> str:
    return jinja2.Environment().from_string(template).render(value_json=json.loads(payload),
                                                             value=payload.decode())


def test_discovery_and_state_reach_the_broker(broker):
    ha = Listener(broker.port, "ha-test")
    pub = HaPublisher(HaSettings(port=broker.port, every_s=0.2), lambda: dict(STATUS)).start()
    try:
        wait_until(lambda: "sunrig/sunrig/state" in ha.seen, "the state published", poll_s=0.05)
        power = ha.json("homeassistant/sensor/sunrig/rig_power/config")
        assert power["device_class"] == "power" and power["unit_of_measurement"] == "W"
        assert power["device"]["name"] == "Owner rig"
        assert power["unique_id"] == "sunrig_rig_power"  # the node's id once, not twice
        money = ha.json("homeassistant/sensor/sunrig/earnings_today/config")
        assert money["unit_of_measurement"] == "EUR" and money["device_class"] == "monetary"
        assert json.loads(ha.seen["sunrig/sunrig/state"].payload) == state(STATUS)
        assert state(STATUS) | {"today_start": None} == {
            "gpus_sold": 2, "rig_power": 3440.9, "rig_energy_today": 18.5,
            "earnings_today": 41.2, "payback": 7.25, "today_start": None,
            "rig_energy": 2.25, "earnings": 1000.0, "rig_energy_pv": 1.5,
            "rig_energy_battery": 0.25, "rig_energy_grid": 0.5, "rig_energy_market": 2.0,
            "rig_energy_local": 0.25, "rig_energy_parked": 0.0}
        assert ha.seen["sunrig/sunrig/availability"].payload == b"online"
        ids = [c["unique_id"] for c in ha.configs()]
        assert len(ids) == len(set(ids)) and not any(i.startswith("sunrig_sunrig") for i in ids)
    finally:
        pub.stop()
        ha.stop()


def test_state_is_retained_for_a_home_assistant_that_starts_later(broker):
    first = Listener(broker.port, "ha-first")
    pub = HaPublisher(HaSettings(port=broker.port, every_s=0.2), lambda: dict(STATUS)).start()
    try:
        wait_until(lambda: "sunrig/sunrig/state" in first.seen, "the state published")
        late = Listener(broker.port, "ha-late")  # subscribes after the configs went out
        wait_until(lambda: "sunrig/sunrig/state" in late.seen, "the state")
        with late.lock:
            configs = [m for t, m in late.seen.items() if t.endswith("/config")]
        assert len(configs) == len(first.configs()) and all(m.retain for m in configs)
        late.stop()
        # with the publisher stopped, only a retained state can reach a new subscriber
        pub.stop()
        again = Listener(broker.port, "ha-after-stop")
        wait_until(lambda: "sunrig/sunrig/state" in again.seen, "the state kept by the broker")
        assert again.seen["sunrig/sunrig/state"].retain
        assert again.seen["sunrig/sunrig/availability"].payload == b"offline"
        again.stop()
    finally:
        pub.stop()
        first.stop()


def test_energy_sensors_are_ready_for_the_energy_dashboard(broker):
    ha = Listener(broker.port, "ha-energy")
    settings = HaSettings(port=broker.port, every_s=0.2, timezone="Europe/Amsterdam")
    pub = HaPublisher(settings, lambda: dict(STATUS)).start()
    try:
        wait_until(lambda: "sunrig/sunrig/state" in ha.seen, "the state published")
        payload = ha.seen["sunrig/sunrig/state"].payload
        configs = {c["unique_id"]: c for c in ha.configs()}
        energy = [c for c in configs.values() if c.get("device_class") == "energy"]
        assert {c["unique_id"] for c in energy} >= {
            "sunrig_rig_energy", "sunrig_rig_energy_pv", "sunrig_rig_energy_battery",
            "sunrig_rig_energy_grid", "sunrig_rig_energy_market", "sunrig_rig_energy_local"}
        for c in energy:
            assert c["unit_of_measurement"] == "kWh", c["unique_id"]
            assert c["state_class"] in ENERGY_STATE_CLASSES, c["unique_id"]
            assert float(render(c["value_template"], payload)) >= 0, c["unique_id"]
        for c in configs.values():
            if c.get("device_class") == "monetary":
                assert c["state_class"] in MONETARY_STATE_CLASSES, c["unique_id"]
            if "last_reset_value_template" in c:  # Home Assistant refuses it on other classes
                assert c["state_class"] == "total", c["unique_id"]
        lifetime = configs["sunrig_rig_energy"]
        assert lifetime["state_class"] == "total_increasing"
        assert render(lifetime["value_template"], payload) == "2.25"
        today = configs["sunrig_earnings_today"]
        reset = datetime.fromisoformat(render(today["last_reset_value_template"], payload))
        # the site's midnight of the books' day, still winter time (summer time begins at 02:00)
        assert reset == datetime(2026, 3, 28, 23, 0, tzinfo=UTC)
        assert configs["sunrig_earnings"]["state_class"] == "total"
        assert "last_reset_value_template" not in configs["sunrig_earnings"]
    finally:
        pub.stop()
        ha.stop()


def test_lifetime_sensors_read_the_same_totals_as_the_metrics(tmp_path):
    from prometheus_client.parser import text_string_to_metric_families

    from webui.app import create_app

    agent, clock = make_agent(tmp_path, start=datetime(2024, 6, 12, 8, 0, tzinfo=UTC))
    run_for(agent, clock, hours=1)
    agent.run_job("ledger")
    status = status_with_totals(agent, None)
    values = state(status(), "Europe/Amsterdam")
    text = create_app(status).test_client().get("/metrics").get_data(as_text=True)
    agent.store.close()
    joules = {tuple(sorted(s.labels.items())): s.value
              for f in text_string_to_metric_families(text) for s in f.samples
              if s.name == "sunrig_rig_energy_joules_total"}
    assert values["rig_energy"] > 0
    assert values["rig_energy"] == pytest.approx(sum(joules.values()) / 3.6e6, abs=1e-4)
    pv = sum(v for k, v in joules.items() if ("source", "pv") in k)
    assert values["rig_energy_pv"] == pytest.approx(pv / 3.6e6, abs=1e-4)


def test_lifetime_sensors_are_unknown_rather_than_zero_without_totals():
    values = state({k: v for k, v in STATUS.items() if k != "lifetime"})
    assert values["rig_energy"] is None and values["earnings"] is None
    # Home Assistant reads the rendered "None" as no value (mqtt/const.py PAYLOAD_NONE)
    assert render("{{ value_json.rig_energy }}", json.dumps(values).encode()) == "None"

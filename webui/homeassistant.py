"""Home Assistant MQTT discovery: the rig as a device with its main sensors.

Discovery configs are published retained under `<prefix>/sensor/<node>/<sensor>/config` whenever
the client connects (Home Assistant may have restarted with the broker), and one JSON state
message every `every_s` on `sunrig/<node>/state`; each sensor picks its value with a template.
The energy sensor counts up within a day (state_class total_increasing), so Home Assistant's
energy dashboard can show the rig.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt

from energy.redact import register

log = logging.getLogger("sunrig.homeassistant")

# key: (name, unit, device_class, state_class, value path in the status)
SENSORS: dict[str, tuple[str, str | None, str | None, str, str]] = {
    "rig_power": ("Rig power", "W", "power", "measurement", "rig_power_w"),
    "rig_energy_today": ("Rig energy today", "kWh", "energy", "total_increasing",
                         "today.energy_kwh"),
    "earnings_today": ("Earnings today", "{currency}", "monetary", "total", "today.revenue"),
    "gpus_sold": ("GPUs sold", None, None, "measurement", "gpus_sold"),
    "payback": ("Paid back", "%", None, "measurement", "payback.paid_back_pct"),
}


@dataclass(frozen=True)
class HaSettings:
    host: str = "127.0.0.1"
    port: int = 1883
    username: str = ""
    password: str = ""
    prefix: str = "homeassistant"
    node_id: str = "sunrig"
    every_s: float = 30.0


def discovery(settings: HaSettings, site_name: str, currency: str) -> dict[str, dict]:
    """Topic to config document, one per sensor."""
    device = {"identifiers": [f"sunrig_{settings.node_id}"], "name": site_name,
              "manufacturer": "sunrig", "model": "GPU rig agent"}
    out = {}
    for key, (name, unit, device_class, state_class, _) in SENSORS.items():
        doc = {"name": name, "unique_id": f"sunrig_{settings.node_id}_{key}",
               "state_topic": state_topic(settings),
               "value_template": f"{{{{ value_json.{key} }}}}",
               "state_class": state_class, "device": device,
               "availability_topic": f"sunrig/{settings.node_id}/availability"}
        if unit:
            doc["unit_of_measurement"] = unit.format(currency=currency)
        if device_class:
            doc["device_class"] = device_class
        out[f"{settings.prefix}/sensor/{settings.node_id}/{key}/config"] = doc
    return out


def state_topic(settings: HaSettings) -> str:
    return f"sunrig/{settings.node_id}/state"


def state(status: dict[str, Any]) -> dict[str, float | None]:
    leased = sum(1 for g in status.get("gpus") or [] if g.get("lease_id"))
    values = {"gpus_sold": leased}
    for key, (*_, path) in SENSORS.items():
        if key in values:
            continue
        node: Any = status
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        values[key] = node
    return values


class HaPublisher:
    def __init__(self, settings: HaSettings, status: Callable[[], dict[str, Any]]):
        self.settings, self.status = settings, status
        register(settings.password)  # however it was read, it never reaches a log line
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"sunrig-ha-{settings.node_id}")
        if settings.username:
            self.client.username_pw_set(settings.username, settings.password or None)
        avail = f"sunrig/{settings.node_id}/availability"
        self.client.will_set(avail, "offline", retain=True)
        self.client.on_connect = self._on_connect
        self.client.reconnect_delay_set(1, 30)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> HaPublisher:
        self.client.connect_async(self.settings.host, self.settings.port)
        self.client.loop_start()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="ha-publish")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self.client.is_connected():
            self.client.publish(f"sunrig/{self.settings.node_id}/availability", "offline",
                                retain=True).wait_for_publish(2)
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("Home Assistant broker refused the connection: %s", reason_code)
            return
        s = self.status()
        for topic, doc in discovery(self.settings, s.get("site_name", "sunrig"),
                                    s.get("currency", "EUR")).items():
            client.publish(topic, json.dumps(doc), retain=True)
        client.publish(f"sunrig/{self.settings.node_id}/availability", "online", retain=True)
        self.publish_state()

    def publish_state(self) -> None:
        if self.client.is_connected():
            self.client.publish(state_topic(self.settings), json.dumps(state(self.status())))

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.every_s):
            try:
                self.publish_state()
            except Exception:  # noqa: BLE001 - a status hiccup must not end the publishing
                log.exception("Home Assistant state not published")

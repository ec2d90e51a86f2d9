"""Home Assistant MQTT discovery: the rig as a device with its main sensors.

Discovery configs are published retained under `<prefix>/sensor/<node>/<sensor>/config` whenever
the client connects (Home Assistant may have restarted with the broker), and one JSON state
message, retained too, every `every_s` on `sunrig/<node>/state`, so a Home Assistant that starts
later shows the last values at once instead of "unknown" (MQTT sensor docs: "If messages in this
state_topic are published with RETAIN flag, the sensor will receive an instant update with last
known value"). Each sensor picks its value with a template.

The sensors follow what Home Assistant's own code accepts (home-assistant/core):
- `components/sensor/const.py` DEVICE_CLASS_STATE_CLASSES: energy takes `total` or
  `total_increasing`, monetary only `total`;
- `components/mqtt/sensor.py`: `last_reset_value_template` only with state class `total`, read
  from the state topic and parsed as a datetime;
- `components/energy/validate.py` (the energy dashboard, "individual devices" included): device
  class energy, a unit of energy (kWh), state class total or total_increasing, never negative.
So the energy dashboard gets lifetime kWh totals from the store (`node.books.totals`: they only
grow, so `total_increasing` never sees a false new cycle), and the sensors for today carry
`last_reset` at the site's local midnight, when the books start a new day.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt

from energy.flows import SOURCES
from energy.redact import register
from node.roles import LOCAL, MARKET, PARKED
from webui.metrics import running_version

log = logging.getLogger("sunrig.homeassistant")

TODAY_START = "today_start"  # the state's key for the local midnight the day's totals began at


@dataclass(frozen=True)
class Sensor:
    name: str
    unit: str | None  # "{currency}" is the site's currency
    device_class: str | None
    state_class: str
    resets_daily: bool = False  # a figure for today: last_reset at the local midnight


def _sensors() -> dict[str, Sensor]:
    out = {
        "rig_power": Sensor("Rig power", "W", "power", "measurement"),
        "rig_energy_today": Sensor("Rig energy today", "kWh", "energy", "total", True),
        "rig_energy": Sensor("Rig energy", "kWh", "energy", "total_increasing"),
        "earnings_today": Sensor("Earnings today", "{currency}", "monetary", "total", True),
        "earnings": Sensor("Earnings", "{currency}", "monetary", "total"),
        "gpus_sold": Sensor("GPUs sold", None, None, "measurement"),
        "payback": Sensor("Paid back", "%", None, "measurement"),
    }
    for source in SOURCES:  # where the rig's energy came from: each one a device's total
        out[f"rig_energy_{source}"] = Sensor(f"Rig energy from {source}", "kWh", "energy",
                                             "total_increasing")
    for role in (MARKET, LOCAL, PARKED):  # what the GPUs did with it
        out[f"rig_energy_{role}"] = Sensor(f"Rig energy, {role} GPUs", "kWh", "energy",
                                           "total_increasing")
    return out


SENSORS = _sensors()


@dataclass(frozen=True)
class HaSettings:
    host: str = "127.0.0.1"
    port: int = 1883
    username: str = ""
    password: str = ""
    prefix: str = "homeassistant"
    node_id: str = "sunrig"
    every_s: float = 30.0
    timezone: str = "UTC"  # the site's: the day's totals start at its midnight


def discovery(settings: HaSettings, site_name: str, currency: str) -> dict[str, dict]:
    """Topic to config document, one per sensor."""
    device = {"identifiers": [f"sunrig_{settings.node_id}"], "name": site_name,
              "manufacturer": "sunrig", "model": "GPU rig agent", "sw_version": running_version()}
    origin = {"name": "sunrig", "sw_version": running_version()}
    out = {}
    for key, sensor in SENSORS.items():
        doc = {"name": sensor.name, "unique_id": f"{settings.node_id}_{key}",
               "state_topic": state_topic(settings),
               "value_template": f"{{{{ value_json.{key} }}}}",
               "state_class": sensor.state_class, "device": device, "origin": origin,
               "availability_topic": availability_topic(settings)}
        if sensor.unit:
            doc["unit_of_measurement"] = sensor.unit.format(currency=currency)
        if sensor.device_class:
            doc["device_class"] = sensor.device_class
        if sensor.resets_daily:
            doc["last_reset_value_template"] = f"{{{{ value_json.{TODAY_START} }}}}"
        out[f"{settings.prefix}/sensor/{settings.node_id}/{key}/config"] = doc
    return out


def state_topic(settings: HaSettings) -> str:
    return f"sunrig/{settings.node_id}/state"


def availability_topic(settings: HaSettings) -> str:
    return f"sunrig/{settings.node_id}/availability"


def state(status: dict[str, Any], timezone: str = "UTC") -> dict[str, Any]:
    """The state document: every sensor's value (None while unknown) and the local midnight
    that today's sensors count from."""
    today = status.get("today") or {}
    lifetime = status.get("lifetime") or {}
    values: dict[str, Any] = {
        "rig_power": status.get("rig_power_w"),
        "rig_energy_today": today.get("energy_kwh"),
        "earnings_today": today.get("revenue"),
        "gpus_sold": sum(1 for g in status.get("gpus") or [] if g.get("lease_id")),
        "payback": (status.get("payback") or {}).get("paid_back_pct"),
        TODAY_START: _day_start(today.get("day"), timezone)}
    return values | _lifetime_values(lifetime)


PARTS = (*SOURCES, MARKET, LOCAL, PARKED)  # lifetime energy sensors by source and by role


def _lifetime_values(lifetime: dict[str, Any]) -> dict[str, float | None]:
    """The lifetime totals, or None for each while the status carries none (never a 0 that
    Home Assistant would read as a meter that started again). Rows come in the store's fixed
    order and only grow, so these sums only grow too."""
    if not lifetime:
        return dict.fromkeys(["rig_energy", "earnings", *(f"rig_energy_{p}" for p in PARTS)])
    wh = dict.fromkeys(PARTS, 0.0)
    total_wh = 0.0
    for r in lifetime.get("energy_wh") or []:
        total_wh += r["energy_wh"]
        for part in {r["source"], r["role"]} & set(PARTS):  # "unpriced" is in the total only
            wh[part] += r["energy_wh"]
    out = {f"rig_energy_{p}": round(v / 1000.0, 4) for p, v in wh.items()}
    out["rig_energy"] = round(total_wh / 1000.0, 4)
    out["earnings"] = round(sum((lifetime.get("revenue_by_market") or {}).values()), 4)
    return out


def _day_start(day: str | None, timezone: str) -> str | None:
    if not day:
        return None
    return datetime.combine(date.fromisoformat(day), time(), ZoneInfo(timezone)).isoformat()


class HaPublisher:
    def __init__(self, settings: HaSettings, status: Callable[[], dict[str, Any]]):
        self.settings, self.status = settings, status
        register(settings.password)  # however it was read, it never reaches a log line
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"sunrig-ha-{settings.node_id}")
        if settings.username:
            self.client.username_pw_set(settings.username, settings.password or None)
        self.client.will_set(availability_topic(settings), "offline", retain=True)
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
            self.client.publish(availability_topic(self.settings), "offline",
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
        client.publish(availability_topic(self.settings), "online", retain=True)
        self._publish(s)

    def publish_state(self) -> None:
        if self.client.is_connected():
            self._publish(self.status())

    def _publish(self, status: dict[str, Any]) -> None:
        self.client.publish(state_topic(self.settings),
                            json.dumps(state(status, self.settings.timezone)), retain=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.every_s):
            try:
                self.publish_state()
            except Exception:  # noqa: BLE001 - a status hiccup must not end the publishing
                log.exception("Home Assistant state not published")

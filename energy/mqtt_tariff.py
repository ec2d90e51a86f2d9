"""Prices published on an MQTT topic, as some home energy systems share their tariff.

The payload is a JSON list of slots: {"start": ISO time, "end": ISO time} with either
"spot_per_mwh" (turned into retail prices by the tariff's formulas) or "import_per_kwh" and
"export_per_kwh" directly. A payload that breaks these rules is counted, logged once, and leaves
the prices from the last good one in place; negative prices are kept as they are.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from datetime import datetime

import paho.mqtt.client as mqtt

from energy.mqtt import MAX_PAYLOAD_BYTES
from energy.tariff import compile_formula
from energy.types import PriceSlot

log = logging.getLogger("sunrig.prices")
MAX_SLOTS = 2000


class MqttTariff:
    def __init__(self, host: str, port: int, topic: str, import_formula: str,
                 export_formula: str, client_id: str = "sunrig-tariff"):
        self.topic = topic
        self._import, self._export = compile_formula(import_formula), compile_formula(
            export_formula)
        self._lock = threading.Lock()
        self._slots: list[PriceSlot] = []
        self.malformed = 0
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.on_connect = lambda c, *_: c.subscribe(topic)  # again after a reconnect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 30)
        self.client.connect_async(host, port)

    def start(self) -> MqttTariff:
        self.client.loop_start()
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def slots(self, start: datetime, end: datetime) -> list[PriceSlot]:
        with self._lock:
            return [s for s in self._slots if s.end > start and s.start < end]

    def _on_message(self, client, userdata, msg) -> None:
        try:
            slots = self.parse(msg.payload)
        except ValueError as exc:
            self.malformed += 1
            if self.malformed == 1:
                log.warning("prices on %s: %s; keeping the last good prices", self.topic, exc)
            return
        with self._lock:
            self._slots = slots

    def parse(self, payload: bytes) -> list[PriceSlot]:
        if len(payload) > MAX_PAYLOAD_BYTES * 16:
            raise ValueError(f"{len(payload)} bytes is too large for a price list")
        try:
            doc = json.loads(payload)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ValueError("not JSON") from None
        if not isinstance(doc, list) or not doc or len(doc) > MAX_SLOTS:
            raise ValueError(f"not a list of 1 to {MAX_SLOTS} slots")
        out = []
        for i, item in enumerate(doc):
            try:
                start = datetime.fromisoformat(item["start"])
                end = datetime.fromisoformat(item["end"])
                if start.tzinfo is None or end <= start:
                    raise ValueError("times need a zone and end after start")
                if "spot_per_mwh" in item:
                    spot = _finite(item["spot_per_mwh"]) / 1000.0
                    imp, exp = self._import(spot), self._export(spot)
                else:
                    imp, exp = _finite(item["import_per_kwh"]), _finite(item["export_per_kwh"])
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"slot {i}: {exc}") from None
            out.append(PriceSlot(start, end, round(imp, 6), round(exp, 6)))
        return sorted(out, key=lambda s: s.start)


def _finite(value: object) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a price")
    number = float(value)  # type: ignore[arg-type]
    if not math.isfinite(number):
        raise ValueError(f"{number} is not a price")
    return number

"""Prices published on an MQTT topic, as some home energy systems share their tariff.

The payload is a JSON list of slots: {"start": ISO time, "end": ISO time} with either
"spot_per_mwh" (turned into retail prices by the tariff's formulas) or "import_per_kwh" and
"export_per_kwh" directly. A payload that breaks these rules, or with a price no market could
set (not finite, or a million per kWh), is counted, logged once, and leaves the prices from the
last good one in place; negative prices are kept as they are. The connection is the site's MQTT
connection (energy/mqtt.py): no payload ends its network thread, and a thread that ends all the
same is replaced at the next look-up.
"""

from __future__ import annotations

import logging
import math
import threading
from datetime import datetime

import paho.mqtt.client as mqtt

from energy.mqtt import MAX_PAYLOAD_BYTES, Broker, MqttConnection, load_json
from energy.tariff import compile_formula
from energy.types import PriceSlot

log = logging.getLogger("sunrig.prices")
MAX_SLOTS = 2000
# A million per kWh in any currency: no market's price cap comes near it, so only garbage does.
MAX_PRICE_PER_KWH = 1e6


class MqttTariff:
    def __init__(self, host: str, port: int, topic: str, import_formula: str,
                 export_formula: str, client_id: str = "sunrig-tariff"):
        self.topic = topic
        self._import, self._export = compile_formula(import_formula), compile_formula(
            export_formula)
        self._lock = threading.Lock()
        self._slots: list[PriceSlot] = []
        self.connection = MqttConnection(Broker(host, port, client_id=client_id), (topic,),
                                         self._take)

    @property
    def client(self) -> mqtt.Client:
        return self.connection.client

    @property
    def malformed(self) -> int:
        """Price payloads turned away so far."""
        return sum(self.connection.malformed.values())

    def start(self) -> MqttTariff:
        self.connection.start()
        return self

    def stop(self) -> None:
        self.connection.stop()

    def slots(self, start: datetime, end: datetime) -> list[PriceSlot]:
        self.connection.ensure_running()
        with self._lock:
            return [s for s in self._slots if s.end > start and s.start < end]

    def _take(self, topic: str, payload: bytes) -> None:
        """A price list (on the network thread); what parse raises is counted as malformed."""
        slots = self.parse(payload)
        with self._lock:
            self._slots = slots

    def parse(self, payload: bytes) -> list[PriceSlot]:
        if len(payload) > MAX_PAYLOAD_BYTES * 16:
            raise ValueError(f"{len(payload)} bytes is too large for a price list")
        doc = load_json(payload)
        if not isinstance(doc, list) or not doc or len(doc) > MAX_SLOTS:
            raise ValueError(f"not a list of 1 to {MAX_SLOTS} slots")
        out = []
        for i, item in enumerate(doc):
            try:
                out.append(self._slot(item))
            except (KeyError, TypeError, ValueError, OverflowError) as exc:
                raise ValueError(f"slot {i}: {exc}") from None
        return sorted(out, key=lambda s: s.start)

    def _slot(self, item: dict) -> PriceSlot:
        start = datetime.fromisoformat(item["start"])
        end = datetime.fromisoformat(item["end"])
        if start.tzinfo is None or end.tzinfo is None or end <= start:
            raise ValueError("times need a zone and end after start")
        if "spot_per_mwh" in item:
            spot = _finite(item["spot_per_mwh"], per=1000.0)  # per MWh
            imp, exp = _finite(self._import(spot)), _finite(self._export(spot))
        else:
            imp, exp = _finite(item["import_per_kwh"]), _finite(item["export_per_kwh"])
        return PriceSlot(start, end, round(imp, 6), round(exp, 6))


def _finite(value: object, per: float = 1.0) -> float:
    """A price per kWh from one per `per` kWh; ValueError for anything else."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a price")
    number = float(value) / per  # type: ignore[arg-type]
    if not (math.isfinite(number) and abs(number) <= MAX_PRICE_PER_KWH):
        raise ValueError(f"{number:.6g} is not a price")
    return number

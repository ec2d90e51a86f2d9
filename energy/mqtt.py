"""Site values from MQTT topics (paho-mqtt 2): plain numbers, Tasmota, Shelly Gen2, Victron.

Each mapping turns one topic into one site field, optionally through a JSON path and a scale.
Every value carries the time it arrived and expires after its own timeout: an old value is
stale, never silently reused. The client reconnects and resubscribes by itself; a payload that
is not what its mapping expects (not JSON, no such path, not a number, too large) is counted
and logged once per topic, and never stops the source.
"""

from __future__ import annotations

import json
import logging
import math
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import paho.mqtt.client as mqtt

from energy.types import SiteSample, SourceUnavailable

log = logging.getLogger("sunrig.mqtt")

FIELDS = ("pv_w", "load_w", "grid_w", "battery_w", "soc_pct")
MAX_PAYLOAD_BYTES = 64 * 1024
VICTRON_KEEPALIVE_S = 30.0  # a Venus GX stops publishing about a minute after the last one


@dataclass(frozen=True)
class Mapping:
    topic: str
    field: str  # one of FIELDS
    json_path: str = ""  # "ENERGY.Power", "value"; empty: the payload is the number
    scale: float = 1.0
    timeout_s: float = 60.0


def preset(kind: str, name: str, field: str, timeout_s: float = 60.0) -> Mapping:
    """The mapping for a common device: `name` is the plain topic, the Tasmota topic, the Shelly
    prefix, or the Victron portal id and path ("<portal>/grid/30/Ac/Power")."""
    if kind == "plain":
        return Mapping(name, field, timeout_s=timeout_s)
    if kind == "tasmota":
        return Mapping(f"tele/{name}/SENSOR", field, "ENERGY.Power", timeout_s=timeout_s)
    if kind == "shelly_gen2":
        return Mapping(f"{name}/status/em:0", field, "total_act_power", timeout_s=timeout_s)
    if kind == "victron":
        return Mapping(f"N/{name}", field, "value", timeout_s=timeout_s)
    raise ValueError(f"unknown preset {kind!r}; allowed: plain, tasmota, shelly_gen2, victron")


@dataclass
class _Value:
    value: float
    at: float  # time.monotonic()


@dataclass
class MqttSettings:
    host: str = "127.0.0.1"
    port: int = 1883
    username: str = ""
    password: str = ""
    tls_ca_file: str = ""  # set: TLS with this CA
    keepalive_s: int = 30
    client_id: str = "sunrig"
    victron_portal: str = ""  # set: publish the keepalive a Venus GX needs
    mappings: list[Mapping] = field(default_factory=list)


class MqttSite:
    def __init__(self, settings: MqttSettings, clock: Callable[[], float] = time.monotonic):
        self.settings = settings
        self._clock = clock
        self._lock = threading.Lock()
        self._values: dict[str, _Value] = {}
        self.malformed: dict[str, int] = {}
        self.received = 0
        self.connected = threading.Event()
        self._by_topic: dict[str, list[Mapping]] = {}
        for m in settings.mappings:
            if m.field not in FIELDS:
                raise ValueError(f"mapping for {m.topic}: field {m.field!r} is not one of "
                                 f"{', '.join(FIELDS)}")
            self._by_topic.setdefault(m.topic, []).append(m)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=settings.client_id)
        if settings.username:
            self.client.username_pw_set(settings.username, settings.password or None)
        if settings.tls_ca_file:
            self.client.tls_set(ca_certs=settings.tls_ca_file, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self._stop = threading.Event()
        self._keepalive: threading.Thread | None = None

    def start(self) -> MqttSite:
        self.client.connect_async(self.settings.host, self.settings.port,
                                  self.settings.keepalive_s)
        self.client.loop_start()
        if self.settings.victron_portal:
            self._keepalive = threading.Thread(target=self._victron_keepalive, daemon=True,
                                               name="victron-keepalive")
            self._keepalive.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.client.disconnect()
        self.client.loop_stop()

    # --- paho callbacks (its network thread) ----------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("mqtt %s:%s refused the connection: %s", self.settings.host,
                        self.settings.port, reason_code)
            return
        for topic in self._by_topic:  # a broker restart forgets subscriptions: ask again
            client.subscribe(topic, qos=0)
        if not self.connected.is_set():
            log.info("mqtt connected to %s:%s", self.settings.host, self.settings.port)
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self.connected.is_set() and not self._stop.is_set():
            log.warning("mqtt %s:%s lost: %s; reconnecting", self.settings.host,
                        self.settings.port, reason_code)
        self.connected.clear()

    def _on_message(self, client, userdata, msg) -> None:
        for m in self._by_topic.get(msg.topic, ()):
            try:
                value = parse(msg.payload, m)
            except ValueError as exc:
                self._malformed(msg.topic, str(exc))
                continue
            with self._lock:
                self._values[m.field] = _Value(value, self._clock())
                self.received += 1

    def _malformed(self, topic: str, why: str) -> None:
        with self._lock:
            self.malformed[topic] = self.malformed.get(topic, 0) + 1
            first = self.malformed[topic] == 1
        if first:  # once per topic: a broken device must not flood the log
            log.warning("mqtt %s: malformed payload (%s); counting, not logging again", topic, why)

    def _victron_keepalive(self) -> None:
        topic = f"R/{self.settings.victron_portal}/keepalive"
        while not self._stop.is_set():
            if self.connected.wait(1.0):
                self.client.publish(topic, "")
                self._stop.wait(VICTRON_KEEPALIVE_S)

    # --- the SiteReader -------------------------------------------------------------------------
    def fresh(self) -> dict[str, float | None]:
        """Each field's value, or None where it never came or is older than its timeout."""
        now = self._clock()
        timeouts = {m.field: m.timeout_s for m in self.settings.mappings}
        with self._lock:
            return {f: (v.value if (v := self._values.get(f)) and now - v.at <= timeouts[f]
                        else None) for f in timeouts}

    def read(self, ts: datetime) -> SiteSample:
        values = self.fresh()
        if all(v is None for v in values.values()):
            state = "connected" if self.connected.is_set() else "not connected"
            raise SourceUnavailable(f"mqtt {self.settings.host}:{self.settings.port} "
                                    f"({state}): no fresh value on any mapped topic")
        stale = any(v is None for v in values.values())
        return SiteSample(ts, values.get("pv_w"), values.get("load_w"), values.get("grid_w"),
                          values.get("battery_w"), values.get("soc_pct"), stale)


def parse(payload: bytes, m: Mapping) -> float:
    """One payload through its mapping; ValueError says what was wrong."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"{len(payload)} bytes, over {MAX_PAYLOAD_BYTES}")
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ValueError("not UTF-8") from None
    if m.json_path:
        try:
            node = json.loads(text)
        except json.JSONDecodeError:
            raise ValueError("not JSON") from None
        for key in m.json_path.split("."):
            if not isinstance(node, dict) or key not in node:
                raise ValueError(f"no {m.json_path!r} in it")
            node = node[key]
        raw = node
    else:
        raw = text
    if isinstance(raw, bool) or raw is None:
        raise ValueError(f"{raw!r} is not a number")
    try:
        number = float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"{str(raw)[:40]!r} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{number} is not a finite number")
    return number * m.scale

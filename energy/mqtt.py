"""Site values from MQTT topics (paho-mqtt 2): plain numbers, Tasmota, Shelly Gen2, Victron.

Each mapping turns one topic into one site field, optionally through a JSON path and a scale.
Every value carries the time it arrived and expires after its own timeout: an old value is
stale, never silently reused. The client reconnects and resubscribes by itself; a payload that
is not what its mapping expects (not JSON, nested too deep, no such path, not a number, too
large) is counted and logged once per topic, and never stops the source or the client's network
thread; a value outside what the site allows is counted as implausible (energy/plausible.py).
Should the network thread end all the same, the next read starts a new client. A source with no
fresh value says whether the broker is away or connected and silent.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

import paho.mqtt.client as mqtt

from energy.files import tls_client_context
from energy.plausible import DEFAULT_LIMITS, Plausibility, SiteLimits
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


@dataclass(frozen=True)
class Broker:
    host: str = "127.0.0.1"
    port: int = 1883
    username: str = ""
    password: str = field(default="", repr=False)  # never in a log line or an error
    tls_ca_file: str = ""  # set: TLS with this CA
    keepalive_s: int = 30
    client_id: str = "sunrig"


class MqttDisconnected(SourceUnavailable):
    """The broker cannot be reached; the client keeps trying."""


class MqttSilent(SourceUnavailable):
    """The broker is connected, but no mapped topic has published within its timeout."""


class _Client(mqtt.Client):
    """paho's client, telling when the network loop that loop_start runs has ended (paho offers
    no public way to ask), so that a loop killed by a bug of its own is noticed and replaced."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.loop_ended = threading.Event()

    def loop_forever(self, *args, **kwargs) -> mqtt.MQTTErrorCode:
        try:
            return super().loop_forever(*args, **kwargs)
        except Exception:  # noqa: BLE001 - recorded here; the connection starts a new client
            log.exception("mqtt client %s: its network loop failed", self._client_id.decode())
            return mqtt.MQTTErrorCode.MQTT_ERR_UNKNOWN
        finally:
            self.loop_ended.set()


class MqttConnection:
    """One broker connection on paho's network thread, subscribed to `topics`, handing each
    message to `handle`. Whatever `handle` raises counts as a malformed payload on that topic
    (logged once per topic): no payload can end the network thread. Should the thread end all the
    same, `ensure_running` replaces the client with a fresh one."""

    def __init__(self, broker: Broker, topics: Iterable[str],
                 handle: Callable[[str, bytes], None]):
        self.broker, self.topics, self._handle = broker, tuple(topics), handle
        self.connected = threading.Event()
        # set once the broker has answered every subscription of this connection: a message
        # published before that is not delivered to it, so whoever must not miss one waits here
        self.subscribed = threading.Event()
        self._unanswered: set[int] = set()  # message ids of subscriptions not yet answered
        self.malformed: dict[str, int] = {}
        self.restarts = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        # the CA file is read once, here: a broken one is a clear error now, and a client
        # started later (ensure_running) never meets a file changed or gone meanwhile
        self._tls = tls_client_context(broker.tls_ca_file) if broker.tls_ca_file else None
        self.client = self._new_client()

    @property
    def name(self) -> str:
        return f"mqtt {self.broker.host}:{self.broker.port}"

    def _new_client(self) -> _Client:
        b = self.broker
        client = _Client(mqtt.CallbackAPIVersion.VERSION2, client_id=b.client_id)
        if b.username:
            client.username_pw_set(b.username, b.password or None)
        if self._tls is not None:
            client.tls_set_context(self._tls)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    def start(self) -> MqttConnection:
        self.client.connect_async(self.broker.host, self.broker.port, self.broker.keepalive_s)
        self.client.loop_start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.client.disconnect()
        self.client.loop_stop()

    def ensure_running(self) -> bool:
        """Start a fresh client if the network loop has ended without being stopped; True if
        it had. The broker hands the old client's session to the new one (same client id)."""
        if self._stop.is_set() or not self.client.loop_ended.is_set():
            return False
        old, self.restarts = self.client, self.restarts + 1
        self.connected.clear()
        self.subscribed.clear()
        log.warning("%s: the client's network loop had ended; starting a new client", self.name)
        with contextlib.suppress(Exception):  # the old client is abandoned in whatever state
            old.disconnect()
        self.client = self._new_client()
        self.start()
        return True

    # --- paho callbacks (its network thread) ----------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("%s refused the connection: %s", self.name, reason_code)
            return
        self.subscribed.clear()
        self._unanswered.clear()  # answers to an earlier connection's subscriptions never come
        for topic in self.topics:  # a broker restart forgets subscriptions: ask again
            _, mid = client.subscribe(topic, qos=0)
            self._unanswered.add(mid)
        if not self._unanswered:
            self.subscribed.set()
        if not self.connected.is_set():
            log.info("%s connected", self.name)
        self.connected.set()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        self._unanswered.discard(mid)
        if not self._unanswered:
            self.subscribed.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self.connected.is_set() and not self._stop.is_set():
            log.warning("%s lost: %s; reconnecting", self.name, reason_code)
        self.subscribed.clear()
        self.connected.clear()

    def _on_message(self, client, userdata, msg) -> None:
        topic = "(a topic that is not UTF-8)"
        try:
            topic = msg.topic
            self._handle(topic, msg.payload)
        except Exception as exc:  # noqa: BLE001 - a payload must never end the network thread
            self._malformed(topic, exc)

    def _malformed(self, topic: str, exc: Exception) -> None:
        with self._lock:
            self.malformed[topic] = self.malformed.get(topic, 0) + 1
            first = self.malformed[topic] == 1
        if first:  # once per topic: a broken device must not flood the log
            why = str(exc) if isinstance(exc, ValueError) else type(exc).__name__
            log.warning("%s %s: malformed payload (%s); counted, not logged again", self.name,
                        topic, why[:200])


@dataclass(frozen=True)
class MqttSettings(Broker):
    victron_portal: str = ""  # set: publish the keepalive a Venus GX needs
    mappings: list[Mapping] = field(default_factory=list)


class MqttSite:
    def __init__(self, settings: MqttSettings, clock: Callable[[], float] = time.monotonic,
                 limits: SiteLimits = DEFAULT_LIMITS):
        self.settings = settings
        self._clock = clock
        self._lock = threading.Lock()
        self._values: dict[str, _Value] = {}
        self._last_message: float | None = None
        self.received = 0
        self._by_topic: dict[str, list[Mapping]] = {}
        for m in settings.mappings:
            if m.field not in FIELDS:
                raise ValueError(f"mapping for {m.topic}: field {m.field!r} is not one of "
                                 f"{', '.join(FIELDS)}")
            self._by_topic.setdefault(m.topic, []).append(m)
        self.connection = MqttConnection(settings, self._by_topic, self._take)
        self.plausible = Plausibility(self.connection.name, limits)
        self._stop = threading.Event()
        self._keepalive: threading.Thread | None = None

    @property
    def client(self) -> mqtt.Client:
        return self.connection.client

    @property
    def connected(self) -> threading.Event:
        return self.connection.connected

    @property
    def subscribed(self) -> threading.Event:
        """Set while every mapped topic's subscription stands confirmed by the broker."""
        return self.connection.subscribed

    @property
    def malformed(self) -> dict[str, int]:
        """Payloads that did not parse, by topic."""
        return self.connection.malformed

    @property
    def implausible(self) -> dict[str, int]:
        """Values that parsed but are outside what the site allows, by field."""
        return self.plausible.counts

    def start(self) -> MqttSite:
        self.connection.start()
        if self.settings.victron_portal:
            self._keepalive = threading.Thread(target=self._victron_keepalive, daemon=True,
                                               name="victron-keepalive")
            self._keepalive.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.connection.stop()

    def _on_message(self, client, userdata, msg) -> None:
        """paho's message callback, as the connection installs it."""
        self.connection._on_message(client, userdata, msg)

    def _take(self, topic: str, payload: bytes) -> None:
        """One message (on the network thread); ValueError: malformed, counted by the caller."""
        with self._lock:
            self._last_message = self._clock()
        for m in self._by_topic.get(topic, ()):
            value = self.plausible(m.field, parse(payload, m))
            if value is None:
                continue  # counted; the last good value stands until its own timeout
            with self._lock:
                self._values[m.field] = _Value(value, self._clock())
                self.received += 1

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
        self.connection.ensure_running()
        values = self.fresh()
        if all(v is None for v in values.values()):
            raise self._why_nothing()
        stale = any(v is None for v in values.values())
        return SiteSample(ts, values.get("pv_w"), values.get("load_w"), values.get("grid_w"),
                          values.get("battery_w"), values.get("soc_pct"), stale)

    def _why_nothing(self) -> SourceUnavailable:
        """Why no field has a value: the broker is away, or it is there and nothing publishes."""
        name = self.connection.name
        if not self.connected.is_set():
            return MqttDisconnected(f"{name}: no fresh value on any mapped topic: not connected "
                                    "to the broker; reconnecting")
        with self._lock:
            last = self._last_message
        heard = ("nothing has arrived since the start" if last is None
                 else f"the last message came {self._clock() - last:.0f} s ago")
        return MqttSilent(f"{name}: no fresh value on any mapped topic: connected, but none has "
                          f"published within its timeout ({heard})")


def parse(payload: bytes, m: Mapping) -> float:
    """One payload through its mapping; ValueError says what was wrong."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"{len(payload)} bytes, over {MAX_PAYLOAD_BYTES}")
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ValueError("not UTF-8") from None
    if m.json_path:
        node = load_json(text)
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
        number = float(raw) * m.scale  # finite only if it stays finite once scaled
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{str(raw)[:40]!r} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{str(raw)[:40]} is not a finite number once scaled by {m.scale}")
    return number


def load_json(text: str | bytes) -> object:
    """A payload's JSON; ValueError for anything that is not JSON sunrig can hold: malformed,
    nested deeper than the parser's recursion allows, an integer of thousands of digits."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deep") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise ValueError(f"not JSON ({str(exc)[:80]})") from None

"""Modbus TCP sources: one shared client per host:port, and SunSpec devices read through it.

Many inverters accept one Modbus client only, so every device behind a host:port shares one
pymodbus client behind a lock, each with its own unit id. A failed connection waits before the
next try, 20 ms doubling to 10 s, so a dead inverter is not hammered; a failed read makes the
source unavailable (the agent stores nothing for it: stale, never a wrong value), is logged once
when it starts and once when it recovers, and never holds up other sources. Whatever a device
answers ends as a missing value or an unavailable source, never as an error of sunrig's own.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from pymodbus.client import ModbusTcpClient
from pymodbus.exceptions import ModbusException

from energy import sunspec
from energy.plausible import DEFAULT_LIMITS, Plausibility, SiteLimits
from energy.types import SiteSample, SourceUnavailable

log = logging.getLogger("sunrig.modbus")

BACKOFF_FIRST_S, BACKOFF_MAX_S = 0.02, 10.0


class DeviceRefused(SourceUnavailable):
    """The device answered with a Modbus exception (an address it does not have, say)."""


class ModbusLink:
    """One TCP connection to a host:port, shared by the devices behind it."""

    def __init__(self, host: str, port: int, timeout_s: float = 2.0):
        self.host, self.port = host, port
        self.client = ModbusTcpClient(host, port=port, timeout=timeout_s, retries=0,
                                      reconnect_delay=0)
        self.lock = threading.Lock()
        self._backoff_s = 0.0
        self._next_try = 0.0

    def read(self, unit: int, address: int, count: int) -> list[int]:
        if not (1 <= count <= sunspec.MAX_READ and address >= 0
                and address + count - 1 <= sunspec.MAX_ADDRESS):
            # addresses come from the device's own map: one that points nowhere is its fault
            raise SourceUnavailable(f"modbus {self.host}:{self.port} unit {unit}: no read of "
                                    f"{count} registers at {address} exists")
        with self.lock:
            now = time.monotonic()
            if not self.client.connected:
                if now < self._next_try:
                    raise SourceUnavailable(f"modbus {self.host}:{self.port}: reconnecting in "
                                            f"{self._next_try - now:.2f} s")
                if not self.client.connect():
                    self._back_off(now)
                    raise SourceUnavailable(f"modbus {self.host}:{self.port}: cannot connect")
            try:
                rr = self.client.read_holding_registers(address, count=count, device_id=unit)
            except (ModbusException, OSError, ValueError, struct.error) as exc:
                # a frame the client cannot make sense of: start over on a fresh connection
                self.client.close()
                self._back_off(now)
                raise SourceUnavailable(f"modbus {self.host}:{self.port} unit {unit}: read of "
                                        f"{count} at {address} failed: {exc}") from None
            if rr.isError():
                raise DeviceRefused(f"modbus {self.host}:{self.port} unit {unit}: read of "
                                        f"{count} at {address} answered {rr}")
            regs = list(rr.registers)
            if len(regs) != count:
                raise SourceUnavailable(f"modbus {self.host}:{self.port} unit {unit}: asked "
                                        f"{count} registers at {address}, got {len(regs)}")
            self._backoff_s = 0.0
            return regs

    def _back_off(self, now: float) -> None:
        self._backoff_s = min(BACKOFF_MAX_S, max(BACKOFF_FIRST_S, self._backoff_s * 2))
        self._next_try = now + self._backoff_s

    def close(self) -> None:
        with self.lock:
            self.client.close()


@dataclass
class ModbusHub:
    """The links, one per host:port."""

    timeout_s: float = 2.0
    links: dict[tuple[str, int], ModbusLink] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def link(self, host: str, port: int) -> ModbusLink:
        with self._lock:
            key = (host, port)
            if key not in self.links:
                self.links[key] = ModbusLink(host, port, self.timeout_s)
            return self.links[key]

    def close(self) -> None:
        for link in self.links.values():
            link.close()


class SunSpecSite:
    """A site read from SunSpec devices: an inverter (101-103, 111-113, with MPPT 160), a grid
    meter (201-204) and a battery (124 or 802), on one unit or several."""

    def __init__(self, link: ModbusLink, units: tuple[int, ...] = (1,),
                 meter_import_positive: bool = True, battery_charge_positive: bool = True,
                 rig_power_w: Callable[[], float] = lambda: 0.0,
                 limits: SiteLimits = DEFAULT_LIMITS, map_ttl_s: float = 600.0):
        self.link, self.units = link, units
        # a map walked while the device was garbled would otherwise hide a model for good
        self.map_ttl_s = map_ttl_s
        self.rig_power_w = rig_power_w  # the meter sees the rig; the house load is the rest
        self.plausible = Plausibility(f"modbus {link.host}:{link.port}", limits)
        self.meter_sign = 1.0 if meter_import_positive else -1.0
        self.battery_sign = 1.0 if battery_charge_positive else -1.0
        self._maps: dict[int, tuple[float, list[sunspec.ModelAt]]] = {}  # walked at, models
        self._failing: str | None = None

    def models(self, unit: int) -> list[sunspec.ModelAt]:
        walked = self._maps.get(unit)
        if walked is None or time.monotonic() - walked[0] > self.map_ttl_s:
            try:
                _, found = sunspec.discover(lambda a, n: self.link.read(unit, a, n),
                                            not_here=(DeviceRefused,))
            except sunspec.SunSpecError as exc:
                raise SourceUnavailable(f"modbus {self.link.host}:{self.link.port} unit "
                                        f"{unit}: {exc}") from None
            if not any(m.model_id in sunspec.MODELS and m.model_id != 1 for m in found):
                # a device still starting, or a garbled map: ask again next time
                raise SourceUnavailable(f"modbus {self.link.host}:{self.link.port} unit "
                                        f"{unit}: no model sunrig reads in "
                                        f"{[m.model_id for m in found]}")
            walked = self._maps[unit] = (time.monotonic(), found)
        return walked[1]

    def points(self) -> dict[int, dict]:
        """Decoded points of every model sunrig knows, by model id, across the units."""
        out: dict[int, dict] = {}
        for unit in self.units:
            for model in self.models(unit):
                if model.model_id in sunspec.MODELS:
                    regs = sunspec.read_model(lambda a, n, u=unit: self.link.read(u, a, n), model)
                    if regs[0] != model.model_id:  # the map moved: walk it again next time
                        self._maps.pop(unit, None)
                        raise SourceUnavailable(f"unit {unit}: model {model.model_id} is no "
                                                f"longer at {model.address}")
                    out[model.model_id] = sunspec.decode(model.model_id, regs)
        return out

    @property
    def implausible(self) -> dict[str, int]:
        """Values turned away as implausible, by field, since the reader was built."""
        return self.plausible.counts

    def read(self, ts: datetime) -> SiteSample:
        try:
            pts = self.points()
        except SourceUnavailable as exc:
            if self._failing is None:
                log.warning("site source failing: %s", exc)
            self._failing = str(exc)
            raise
        if self._failing is not None:
            log.info("site source recovered")
            self._failing = None
        return self._sample(ts, pts)

    def _sample(self, ts: datetime, pts: dict[int, dict]) -> SiteSample:
        check = self.plausible
        inverter = next((pts[m] for m in (103, 102, 101, 113, 112, 111) if m in pts), {})
        meter = next((pts[m] for m in (203, 204, 202, 201) if m in pts), {})
        ac_w = check("inverter_w", inverter.get("W"))
        # with MPPT strings the array's own DC power; a hybrid's AC side also carries the
        # battery, so it is PV only where the inverter says nothing about its strings
        pv_w = check("pv_w", pts[160].get("DCW") if 160 in pts else ac_w)
        grid_w = check("grid_w", _signed(meter.get("W"), self.meter_sign))
        battery = pts.get(802) or {}
        soc = battery.get("SoC")
        if soc is None:
            soc = (pts.get(124) or {}).get("ChaState")
        battery_w = check("battery_w", _signed(battery.get("W"), self.battery_sign))
        load_w = (None if ac_w is None or grid_w is None
                  else check("load_w", max(0.0, ac_w + grid_w - self.rig_power_w())))
        stale = pv_w is None or grid_w is None
        return SiteSample(ts, pv_w, load_w, grid_w, battery_w, check("soc_pct", soc), stale)


def _signed(value: float | None, sign: float) -> float | None:
    return None if value is None else value * sign

"""Site devices without SunSpec, read through one generic reader driven by a map per model.

A map is data: for each site field the registers that make it (they add up), each with its
address, type, word order, scale (a negative scale turns the vendor's sign into sunrig's:
grid + importing, battery + charging) and an optional scale-factor register. Addresses come from
the vendors' public register documentation:
- Huawei SUN2000 (hybrid, no SunSpec): input power 32064, meter active power 37113 (+ feeding
  the grid), battery SoC 37760 (0.1 %), battery power 37765 (+ charging); unit 1;
- Victron GX (com.victronenergy.system, unit 100): AC PV on output and grid 808-813, DC PV 850,
  grid L1-L3 820-822 (+ importing), battery power 842 (+ charging), SoC 843;
- SMA hybrid (Sunny Tripower Smart Energy, unit 3): DC power 30773 and 30961, grid import 30865
  and export 30867, battery charge 31393 and discharge 31395, SoC 30845;
- SolarEdge (meter on the inverter, unit 1): meter power 40206 with scale factor 40210 (+
  exporting), battery power 62836 and state of energy 62852 as float32 with the low word first.
A value at its type's not-implemented pattern (0x8000, 0xFFFF, 0x80000000, 0xFFFFFFFF, NaN), with
a scale factor outside -10..10, or outside what the site allows (energy/plausible.py) makes the
field missing, never zero.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from energy.modbus import ModbusLink
from energy.plausible import DEFAULT_LIMITS, Plausibility, SiteLimits
from energy.sunspec import scale_factor
from energy.types import SiteSample

SIZES = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2}
MISSING = {"int16": 0x8000, "uint16": 0xFFFF, "int32": 0x80000000, "uint32": 0xFFFFFFFF}


@dataclass(frozen=True)
class Reg:
    address: int
    kind: str  # int16 uint16 int32 uint32 float32
    scale: float = 1.0
    word_order: str = "big"  # "little": the low word first
    sf_address: int | None = None  # an int16 power-of-ten scale factor register


@dataclass(frozen=True)
class DeviceMap:
    name: str
    unit: int
    fields: dict[str, tuple[Reg, ...]]  # pv_w, grid_w, battery_w, soc_pct, load_w


MAPS: dict[str, DeviceMap] = {m.name: m for m in (
    DeviceMap("huawei_sun2000", 1, {
        "pv_w": (Reg(32064, "int32"),),
        "grid_w": (Reg(37113, "int32", -1.0),),
        "soc_pct": (Reg(37760, "uint16", 0.1),),
        "battery_w": (Reg(37765, "int32"),)}),
    DeviceMap("victron_gx", 100, {
        "pv_w": tuple(Reg(a, "uint16") for a in (808, 809, 810, 811, 812, 813, 850)),
        "grid_w": tuple(Reg(a, "int16") for a in (820, 821, 822)),
        "battery_w": (Reg(842, "int16"),),
        "soc_pct": (Reg(843, "uint16"),)}),
    DeviceMap("sma_hybrid", 3, {
        "pv_w": (Reg(30773, "int32"), Reg(30961, "int32")),
        "grid_w": (Reg(30865, "uint32"), Reg(30867, "uint32", -1.0)),
        "battery_w": (Reg(31393, "uint32"), Reg(31395, "uint32", -1.0)),
        "soc_pct": (Reg(30845, "uint32"),)}),
    DeviceMap("solaredge_meter", 1, {
        "grid_w": (Reg(40206, "int16", -1.0, sf_address=40210),),
        "battery_w": (Reg(62836, "float32", word_order="little"),),
        "soc_pct": (Reg(62852, "float32", word_order="little"),)}),
)}


def decode(raw: list[int], reg: Reg) -> float | None:
    words = raw if reg.word_order == "big" else raw[::-1]
    if reg.kind == "float32":
        value = struct.unpack(">f", struct.pack(">HH", *words))[0]
        return None if math.isnan(value) or math.isinf(value) else value
    number = words[0] if len(words) == 1 else words[0] << 16 | words[1]
    if number == MISSING[reg.kind]:
        return None
    if reg.kind.startswith("int"):
        bits = 16 * SIZES[reg.kind]
        number -= (1 << bits) if number & (1 << (bits - 1)) else 0
    return float(number)


class RegisterMapSite:
    """A SiteReader for a device map; the house load is the energy balance less the rig."""

    def __init__(self, link: ModbusLink, device: DeviceMap, unit: int | None = None,
                 rig_power_w: Callable[[], float] = lambda: 0.0,
                 limits: SiteLimits = DEFAULT_LIMITS):
        self.link, self.device = link, device
        self.unit = device.unit if unit is None else unit
        self.rig_power_w = rig_power_w
        self.plausible = Plausibility(f"{device.name} at {link.host}:{link.port}", limits)

    @property
    def implausible(self) -> dict[str, int]:
        """Values turned away as implausible, by field, since the reader was built."""
        return self.plausible.counts

    def read(self, ts: datetime) -> SiteSample:
        v = {name: self.plausible(name, self._field(regs))
             for name, regs in self.device.fields.items()}
        pv, grid, battery = v.get("pv_w"), v.get("grid_w"), v.get("battery_w")
        load = v.get("load_w")
        if load is None and grid is not None and pv is not None and (
                battery is not None or "battery_w" not in self.device.fields):
            load = pv + grid - (battery or 0.0)  # what flows in, less what the battery takes
        if load is not None:
            load = self.plausible("load_w", max(0.0, load - self.rig_power_w()))
        stale = grid is None or ("pv_w" in self.device.fields and pv is None)
        return SiteSample(ts, pv, load, grid, battery, v.get("soc_pct"), stale)

    def _field(self, regs: tuple[Reg, ...]) -> float | None:
        total = 0.0
        for reg in regs:
            value = decode(self.link.read(self.unit, reg.address, SIZES[reg.kind]), reg)
            if value is None:
                return None  # one part missing: the sum would be wrong
            if reg.sf_address is not None:
                factor = scale_factor(self.link.read(self.unit, reg.sf_address, 1)[0])
                if factor is None:
                    return None
                value *= factor
            total += value * reg.scale
        return total

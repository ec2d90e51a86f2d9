"""SunSpec over Modbus: find the map, walk its models, decode the points sunrig needs.

A SunSpec device starts its map with the marker "SunS" at 40000, 0 or 50000; then come models,
each a model id, a length and that many registers, until the id 0xFFFF. The points below are the
few sunrig reads, at their offsets from the model's start (its id register), with the register
holding their scale factor: device models as data, checked against the SunSpec model definitions.
A value at its "not implemented" pattern (0x8000 for int16 and scale factors, 0xFFFF for uint16
and enums, 0 for acc32 and the all-ones some devices use there, NaN for float32) is missing, never
zero, and so is one whose scale factor is outside the spec's -10..10 or lies beyond the model.
Nothing a device sends makes decoding raise: garbage in a map is a SunSpecError, garbage in a
value is a missing value.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass

BASES = (40000, 0, 50000)
MARKER = (0x5375, 0x6E53)  # "SunS"
END = 0xFFFF
MAX_MODELS = 64
MAX_READ = 125  # registers per Modbus read
MAX_ADDRESS = 0xFFFF  # the last Modbus register
SF_RANGE = (-10, 10)  # sunssf, by the SunSpec information model


class SunSpecError(Exception):
    """The device's map is not SunSpec, or breaks its own structure; the message says where."""


@dataclass(frozen=True)
class Point:
    offset: int  # from the model's id register
    kind: str  # int16 uint16 acc32 float32 enum16 string16 uint32 int32
    sf: int | None = None  # offset of the scale-factor register, if scaled
    size: int = 1


INVERTER_INT = {"W": Point(14, "int16", 15), "WH": Point(24, "acc32", 26, 2),
                "DCW": Point(31, "int16", 32), "St": Point(38, "enum16")}
INVERTER_FLOAT = {"W": Point(22, "float32", size=2), "WH": Point(32, "float32", size=2),
                  "DCW": Point(38, "float32", size=2), "St": Point(48, "enum16")}
METER = {"W": Point(18, "int16", 22), "TotWhExp": Point(38, "acc32", 54, 2),
         "TotWhImp": Point(46, "acc32", 54, 2)}
MODELS: dict[int, dict[str, Point]] = {
    1: {"Mn": Point(2, "string", size=16), "Md": Point(18, "string", size=16),
        "Vr": Point(42, "string", size=8), "SN": Point(50, "string", size=16)},
    101: INVERTER_INT, 102: INVERTER_INT, 103: INVERTER_INT,
    111: INVERTER_FLOAT, 112: INVERTER_FLOAT, 113: INVERTER_FLOAT,
    201: METER, 202: METER, 203: METER, 204: METER,
    124: {"WChaMax": Point(2, "uint16", 18), "ChaState": Point(8, "uint16", 22),
          "ChaSt": Point(11, "enum16")},
    802: {"WHRtg": Point(3, "uint16", 53), "SoC": Point(11, "uint16", 56),
          "W": Point(47, "int16", 63), "ChaSt": Point(16, "enum16")},
    701: {"W": Point(10, "int16", 116)},
    # MPPT: scale factors in the header, then N modules of 20 registers from offset 10
    160: {"N": Point(8, "uint16")},
}
MPPT_MODULE = {"DCA": Point(9, "uint16", 2), "DCV": Point(10, "uint16", 3),
               "DCW": Point(11, "uint16", 4)}
MPPT_FIRST, MPPT_SIZE = 10, 20

Reader = Callable[[int, int], list[int]]  # (address, count) -> registers


@dataclass(frozen=True)
class ModelAt:
    model_id: int
    address: int  # of its id register
    length: int  # registers after the id and length


def discover(read: Reader, not_here: tuple[type[Exception], ...] = ()
             ) -> tuple[int, list[ModelAt]]:
    """The base address and the model list, walked to the end marker. `not_here`: what `read`
    raises for an address the device does not have (the next base is tried)."""
    base = None
    for candidate in BASES:
        try:
            if tuple(read(candidate, 2)) == MARKER:
                base = candidate
                break
        except not_here:
            continue
    if base is None:
        raise SunSpecError("no SunSpec marker 'SunS' at 40000, 0 or 50000")
    models, addr = [], base + 2
    for _ in range(MAX_MODELS):
        if addr + 1 > MAX_ADDRESS:
            raise SunSpecError(f"the map runs past register {MAX_ADDRESS} without an end marker")
        model_id, length = read(addr, 2)
        if model_id == END:
            return base, models
        if length == 0 or length > 2000 or addr + 1 + length > MAX_ADDRESS:
            raise SunSpecError(f"model {model_id} at {addr} has length {length}")
        models.append(ModelAt(model_id, addr, length))
        addr += 2 + length
    raise SunSpecError(f"no end marker after {MAX_MODELS} models from {base}")


def read_model(read: Reader, model: ModelAt) -> list[int]:
    """The whole model, id and length included, in reads of at most 125 registers."""
    regs: list[int] = []
    total = model.length + 2
    while len(regs) < total:
        n = min(MAX_READ, total - len(regs))
        regs.extend(read(model.address + len(regs), n))
    return regs


def decode(model_id: int, regs: list[int]) -> dict[str, float | str | None]:
    """The points sunrig knows in one model's registers; missing ones are None."""
    points = MODELS.get(model_id, {})
    out = {name: value(regs, p) for name, p in points.items() if p.offset + p.size <= len(regs)}
    if model_id == 160:
        out.update(_mppt_power(regs, out.get("N")))
    return out


def _mppt_power(regs: list[int], count: float | str | None) -> dict[str, float | None]:
    """Each string's DC power and their sum. The sum is the array's power only when every string
    the count declares is in the model and reports its power: one missing string would make it a
    lower figure that looks real, so the sum is then missing too. A count that is missing, zero or
    larger than the model holds is a broken model, and its power is missing."""
    strings = int(count) if isinstance(count, float) else 0
    if strings < 1 or MPPT_FIRST + strings * MPPT_SIZE > len(regs):
        return {"DCW": None}
    powers = [_float(value(regs, MPPT_MODULE["DCW"], MPPT_FIRST + i * MPPT_SIZE))
              for i in range(strings)]
    out: dict[str, float | None] = {f"DCW[{i}]": w for i, w in enumerate(powers)}
    known = [w for w in powers if w is not None]
    out["DCW"] = sum(known) if len(known) == strings else None
    return out


def _float(v: float | str | None) -> float | None:
    return v if isinstance(v, float) else None


def value(regs: list[int], p: Point, base: int = 0) -> float | str | None:
    raw = regs[base + p.offset: base + p.offset + p.size]
    if p.kind == "string":
        text = struct.pack(f">{len(raw)}H", *raw).split(b"\0", 1)[0]
        return text.decode("ascii", "replace").strip() or None
    number = _number(raw, p.kind)
    if number is None or p.sf is None:
        return number
    if p.sf >= len(regs):
        return None  # a model too short to hold its own scale factor
    factor = scale_factor(regs[p.sf])  # from the model's start, also for repeating blocks
    return None if factor is None else number * factor


def scale_factor(register: int) -> float | None:
    """The multiplier a sunssf register stands for, or None when it is not implemented or
    outside -10..10: a value scaled by it would be a guess."""
    sf = _number([register], "sunssf")
    if sf is None or not SF_RANGE[0] <= sf <= SF_RANGE[1]:
        return None
    return 10.0 ** sf


def _number(raw: list[int], kind: str) -> float | None:
    if kind in ("int16", "sunssf"):
        v = raw[0]
        return None if v == 0x8000 else float(v - 0x10000 if v & 0x8000 else v)
    if kind in ("uint16", "enum16"):
        return None if raw[0] == 0xFFFF else float(raw[0])
    if kind == "acc32":
        v = raw[0] << 16 | raw[1]
        return None if v in (0, 0xFFFFFFFF) else float(v)
    if kind == "uint32":
        v = raw[0] << 16 | raw[1]
        return None if v == 0xFFFFFFFF else float(v)
    if kind == "int32":
        v = raw[0] << 16 | raw[1]
        return None if v == 0x80000000 else float(v - (1 << 32) if v & 0x80000000 else v)
    if kind == "float32":
        f = struct.unpack(">f", struct.pack(">HH", raw[0], raw[1]))[0]
        return None if math.isnan(f) or math.isinf(f) else f
    raise SunSpecError(f"unknown point type {kind}")

"""Vendor register maps through one generic reader, each served by a real pymodbus server with
the registers a device of that make would hold."""

from __future__ import annotations

import struct
from datetime import UTC, datetime

import pytest

from energy.modbus import ModbusHub
from energy.modbus_server import RegisterImageServer
from energy.register_maps import MAPS, Reg, RegisterMapSite, decode
from tests.conftest import HANG_S

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)


def s32(v: int) -> list[int]:
    v &= 0xFFFFFFFF
    return [v >> 16, v & 0xFFFF]


def f32_low_first(v: float) -> list[int]:
    hi, lo = struct.unpack(">HH", struct.pack(">f", v))
    return [lo, hi]


def serve(name: str, image: dict[int, list[int]]) -> tuple[RegisterImageServer, RegisterMapSite]:
    device = MAPS[name]
    server = RegisterImageServer(65000, unit=device.unit).start()
    for address, values in image.items():
        server.set(address, values)
    site = RegisterMapSite(ModbusHub(timeout_s=HANG_S).link("127.0.0.1", server.port), device,
                           rig_power_w=lambda: 1000.0)
    return server, site


# What a device of each make holds, and the sample sunrig reads from it
DEVICES = [
    # Huawei: 6.2 kW in, meter +1.5 kW = feeding the grid, battery charging 2 kW at 55.5 %
    ("huawei_sun2000", {32064: s32(6200), 37113: s32(1500), 37760: [555], 37765: s32(2000)},
     {"pv_w": 6200, "grid_w": -1500, "battery_w": 2000, "soc_pct": 55.5, "load_w": 1700}),
    # Victron: AC PV on output 1.2 kW on L1, DC PV 3 kW, importing 400 W on two phases,
    # battery discharging 800 W at 71 %
    ("victron_gx", {808: [1200], 850: [3000], 820: [300], 821: [100], 822: [0],
                    842: [(-800) & 0xFFFF], 843: [71]},
     {"pv_w": 4200, "grid_w": 400, "battery_w": -800, "soc_pct": 71, "load_w": 4400}),
    # SMA: two DC inputs, exporting 900 W, discharging 500 W at 40 %
    ("sma_hybrid", {30773: s32(2500), 30961: s32(1500), 30865: s32(0), 30867: s32(900),
                    31393: s32(0), 31395: s32(500), 30845: s32(40)},
     {"pv_w": 4000, "grid_w": -900, "battery_w": -500, "soc_pct": 40, "load_w": 2600}),
    # SolarEdge: meter 123 x 10 W exporting, battery charging 1.5 kW, 82.5 % state of energy
    ("solaredge_meter", {40206: [123], 40210: [1], 62836: f32_low_first(1500.0),
                         62852: f32_low_first(82.5)},
     {"pv_w": None, "grid_w": -1230, "battery_w": 1500, "soc_pct": 82.5, "load_w": None}),
]


@pytest.mark.parametrize("name, image, expect", DEVICES)
def test_each_map_reads_like_its_device_with_sunrigs_signs(name, image, expect):
    server, site = serve(name, image)
    try:
        sample = site.read(NOW)
    finally:
        server.stop()
    for field, value in expect.items():
        got = getattr(sample, field)
        assert got == (None if value is None else pytest.approx(value)), field


def test_not_implemented_patterns_leave_the_field_missing():
    server, site = serve("sma_hybrid", {30773: [0x8000, 0], 30961: s32(10), 30865: s32(100),
                                        30867: s32(0), 31393: [0xFFFF, 0xFFFF],
                                        31395: s32(0), 30845: s32(50)})
    try:
        sample = site.read(NOW)
    finally:
        server.stop()
    assert sample.pv_w is None and sample.battery_w is None and sample.stale
    assert sample.grid_w == 100
    assert decode(list(struct.unpack(">HH", struct.pack(">f", float("nan")))),
                  Reg(0, "float32")) is None
    assert decode([0x8000], Reg(0, "int16")) is None


def test_the_config_reads_a_register_map_or_sunspec_device(tmp_path):
    from energy.sim import SimulatedSite
    from energy.sunspec_sim import SunSpecSimServer
    from node.clock import SimulatedClock
    from node.config import parse_config
    from node.wiring import build_parts
    from tests.conftest import START

    server, _ = serve("victron_gx", {820: [250], 843: [64], 808: [100]})
    sunspec = SunSpecSimServer(SimulatedSite(), lambda: START).start()
    try:
        for text, grid in ((f'[energy]\nsource = "modbus"\n[energy.modbus]\nport = {server.port}\n'
                            'map = "victron_gx"\nunits = [100]\n', 250),
                           (f'[energy]\nsource = "modbus"\n[energy.modbus]\n'
                            f'port = {sunspec.port}\n', None)):
            cfg = parse_config(text, "t.toml", tmp_path)
            parts = build_parts(cfg, SimulatedClock(START, speed=0), tmp_path, lambda: 0.0)
            sample = parts.site.read(START)
            parts.close()
            if grid is not None:
                assert sample.grid_w == grid and sample.soc_pct == 64
            else:
                assert sample.pv_w is not None and sample.grid_w is not None
    finally:
        server.stop()
        sunspec.stop()

"""The simulated site as a SunSpec device on a real Modbus TCP server (pymodbus), on 127.0.0.1.

It serves a hybrid inverter (common model 1, inverter 103, MPPT 160 with two strings), a battery
(802) and a grid meter (203) from the simulated site, refreshed from the site every `refresh_s`,
and whenever a request comes at a new time of the (possibly simulated) clock, so the demo and the
tests read the site through energy/modbus.py exactly as on a real rig.
`corrupt` lets fault tests put garbage or not-implemented patterns into chosen registers, the map's
structure included; each refresh lays the map out anew first, so emptying `corrupt` heals it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from datetime import datetime

from energy.modbus_server import RegisterImageServer
from energy.sunspec import MARKER
from energy.types import SiteReader, SiteSample

BASE = 40000
# model id, length after the header; offsets below are from the model's id register
LAYOUT = ((1, 66), (103, 50), (160, 48), (802, 62), (203, 105))


def _string(text: str, regs: int) -> list[int]:
    raw = text.encode("ascii")[: regs * 2].ljust(regs * 2, b"\0")
    return list(struct.unpack(f">{regs}H", raw))


def _s16(v: float) -> int:
    return int(round(v)) & 0xFFFF


class SunSpecSimServer(RegisterImageServer):
    def __init__(self, site: SiteReader, now: Callable[[], datetime], host: str = "127.0.0.1",
                 port: int = 0, unit: int = 1, refresh_s: float = 1.0, base: int = BASE):
        super().__init__(base + 400, unit, host, port, refresh_s)
        self.site, self.now, self.base = site, now, base
        self.addr = self._lay_out()
        self._layout = self.regs[base:base + 400]  # the map's structure and constant points
        self.corrupt: dict[int, int] = {}  # absolute register -> value forced after each refresh
        self.last: SiteSample | None = None
        self._refreshed_for: datetime | None = None

    def _lay_out(self) -> dict[int, int]:
        regs = [*MARKER]
        addr, at = self.base + 2, {}
        for model_id, length in LAYOUT:
            at[model_id] = addr
            regs += [model_id, length] + [0] * length
            addr += 2 + length
        regs += [0xFFFF, 0]
        self._set(self.base, regs)
        common = at[1]
        self._set(common + 2, _string("sunrig", 16))
        self._set(common + 18, _string("simulated hybrid", 16))
        self._set(common + 42, _string("1.0", 8))
        self._set(common + 50, _string("SIM-0001", 16))
        mppt = at[160]
        self._set(mppt + 2, [0xFFFE, 0xFFFF, 0, 0xFFFF])  # DCA_SF -2, DCV_SF -1, DCW_SF 0
        self._set(mppt + 8, [2])  # two strings
        return at

    def _set(self, address: int, values: list[int]) -> None:
        self.set(address, values)

    def before_answer(self) -> None:
        if self.now() != self._refreshed_for:  # a simulated clock may race ahead of real time
            self.refresh()

    def tick(self) -> None:
        self.refresh()

    def refresh(self) -> SiteSample:
        """Write the site's present state into the registers."""
        self._refreshed_for = self.now()
        self._set(self.base, self._layout)
        s = self.site.read(self._refreshed_for)
        self.last = s
        pv = s.pv_w or 0.0
        battery = s.battery_w or 0.0  # + charging
        ac = pv - battery  # a hybrid inverter: PV in, the battery's share out of its DC bus
        inv, mppt, bat, meter = (self.addr[m] for m in (103, 160, 802, 203))
        self._set(inv + 14, [_s16(ac / 10), 1])  # W, W_SF = 1 (tens of watts)
        self._set(inv + 38, [4])  # St: MPPT
        for i, share in enumerate((0.6, 0.4)):  # the two strings of the array
            module = mppt + 10 + i * 20
            self._set(module, [i + 1])
            self._set(module + 9, [_s16(pv * share / 600 * 100), _s16(600 * 10),
                                   _s16(pv * share)])  # DCA (0.01 A), DCV (0.1 V), DCW (W)
        self._set(bat + 3, [2000, 0xFFFF, 0xFFFF])  # WHRtg 2000 x 10 Wh (SF 1)
        self._set(bat + 53, [1])
        self._set(bat + 11, [_s16((s.soc_pct or 0.0) * 10)])  # SoC in 0.1 %
        self._set(bat + 56, [0xFFFF])  # SoC_SF -1
        self._set(bat + 47, [_s16(battery)])  # W, + charging
        self._set(bat + 63, [0])
        self._set(meter + 18, [_s16((s.grid_w or 0.0) / 10)])  # W in tens, + importing
        self._set(meter + 22, [1])
        for address, value in self.corrupt.items():
            self._set(address, [value])
        return s

    def start(self) -> SunSpecSimServer:
        self.refresh()
        super().start()
        return self

"""The rig's GPUs: NVML on a real rig, a simulated rig in the demo and tests.

NVML is initialised once per process, and every query goes through `_nvml`, which turns
NotSupported into None: consumer cards and virtualised GPUs lack many counters, and a missing
counter must never hide the ones that work.
"""

from __future__ import annotations

import logging
import math
import random
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from tee.gpu import cc_mode as system_cc_mode

log = logging.getLogger(__name__)


class GpuError(Exception):
    """A GPU could not be read or set; the message names the GPU and the call."""


@dataclass(frozen=True)
class GpuProcess:
    pid: int
    used_memory_bytes: int | None


@dataclass(frozen=True)
class GpuSnapshot:
    ts: datetime
    index: int
    uuid: str
    name: str
    pci_bus_id: str | None
    memory_total_bytes: int | None
    memory_used_bytes: int | None
    power_w: float | None
    power_limit_w: float | None
    power_limit_min_w: float | None
    power_limit_max_w: float | None
    power_limit_default_w: float | None
    energy_total_wh: float | None
    util_pct: float | None
    memory_util_pct: float | None
    temp_c: float | None
    processes: tuple[GpuProcess, ...]
    mig_enabled: bool | None
    cc_mode: str | None  # "on", "devtools", "off", or None where the GPU cannot tell


class GpuBackend(Protocol):
    def snapshots(self, ts: datetime) -> list[GpuSnapshot]:
        """One snapshot per GPU, in index order."""
        ...

    def set_power_limit(self, index: int, power_w: float) -> None:
        """Cap a GPU's power; raises GpuError when the GPU refuses."""
        ...


class PowerLimiter(Protocol):
    """Sets a GPU's power limit on the agent's behalf (node/powercap/client.py: the root helper)."""

    def set_power_limit(self, uuid: str, power_w: float) -> float: ...


class WorkloadPlacement(Protocol):
    """Optional capability of simulated rigs: what the provider software would run on a GPU."""

    def place_workload(self, index: int, kind: str) -> None: ...


# --- NVML --------------------------------------------------------------------------------------

_nvml_lock = threading.Lock()
_nvml_ready = False


def _pynvml() -> Any:
    import pynvml  # imported lazily: a simulated rig never needs the NVIDIA library

    return pynvml


def _init_nvml() -> None:
    global _nvml_ready
    with _nvml_lock:
        if not _nvml_ready:
            try:
                _pynvml().nvmlInit()
            except _pynvml().NVMLError as exc:
                raise GpuError(f"NVML could not start: {exc}") from None
            _nvml_ready = True


def _nvml(name: str, *args: Any) -> Any:
    """Call one NVML function by name; NotSupported becomes None, other errors name the call."""
    nv = _pynvml()
    try:
        return getattr(nv, name)(*args)
    except nv.NVMLError_NotSupported:
        return None
    except nv.NVMLError as exc:
        raise GpuError(f"{name} failed: {exc}") from None


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _milli(value: float | None) -> float | None:
    return None if value is None else value / 1000.0


class NvmlBackend:
    def __init__(self, limiter: PowerLimiter | None = None) -> None:
        """`limiter`: who sets power limits where this process may not (not root)."""
        _init_nvml()
        nv = _pynvml()
        count = _nvml("nvmlDeviceGetCount") or 0
        self._handles = [nv.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        self._limiter = limiter

    def snapshots(self, ts: datetime) -> list[GpuSnapshot]:
        cc_mode = system_cc_mode()  # once per pass: a system-wide setting
        out = []
        for index, handle in enumerate(self._handles):
            try:
                out.append(self._snapshot(ts, index, handle, cc_mode))
            except GpuError as exc:
                log.warning("GPU %d skipped this pass: %s", index, exc)
        return out

    def _snapshot(self, ts: datetime, index: int, h: Any, cc_mode: str | None) -> GpuSnapshot:
        nv = _pynvml()
        mem = _nvml("nvmlDeviceGetMemoryInfo", h)
        util = _nvml("nvmlDeviceGetUtilizationRates", h)
        limits = _nvml("nvmlDeviceGetPowerManagementLimitConstraints", h)
        pci = _nvml("nvmlDeviceGetPciInfo", h)
        mig = _nvml("nvmlDeviceGetMigMode", h)
        energy_mj = _nvml("nvmlDeviceGetTotalEnergyConsumption", h)
        procs = _nvml("nvmlDeviceGetComputeRunningProcesses", h) or []
        return GpuSnapshot(
            ts=ts, index=index,
            uuid=_text(_nvml("nvmlDeviceGetUUID", h)) or f"gpu-{index}",
            name=_text(_nvml("nvmlDeviceGetName", h)) or "unknown",
            pci_bus_id=_text(pci.busId) if pci is not None else None,
            memory_total_bytes=mem.total if mem is not None else None,
            memory_used_bytes=mem.used if mem is not None else None,
            power_w=_milli(_nvml("nvmlDeviceGetPowerUsage", h)),
            power_limit_w=_milli(_nvml("nvmlDeviceGetEnforcedPowerLimit", h)),
            power_limit_min_w=_milli(limits[0]) if limits is not None else None,
            power_limit_max_w=_milli(limits[1]) if limits is not None else None,
            power_limit_default_w=_milli(_nvml("nvmlDeviceGetPowerManagementDefaultLimit", h)),
            energy_total_wh=None if energy_mj is None else energy_mj / 3.6e6,
            util_pct=float(util.gpu) if util is not None else None,
            memory_util_pct=float(util.memory) if util is not None else None,
            temp_c=_nvml("nvmlDeviceGetTemperature", h, nv.NVML_TEMPERATURE_GPU),
            processes=tuple(GpuProcess(p.pid, _process_memory(p)) for p in procs),
            mig_enabled=None if mig is None else bool(mig[0]),
            cc_mode=cc_mode,
        )

    def set_power_limit(self, index: int, power_w: float) -> None:
        if self._limiter is None:
            _nvml("nvmlDeviceSetPowerManagementLimit", self._handles[index], int(power_w * 1000))
            return
        uuid = _text(_nvml("nvmlDeviceGetUUID", self._handles[index]))
        if uuid is None:
            raise GpuError(f"GPU {index}: no UUID to name it to the power-cap helper")
        self._limiter.set_power_limit(uuid, power_w)


def _process_memory(proc: Any) -> int | None:
    used = getattr(proc, "usedGpuMemory", None)
    # NVML reports "not available" (e.g. without permission) as an all-ones value
    return None if used is None or used >= 2**63 else int(used)


# --- Simulated rig -----------------------------------------------------------------------------

@dataclass(frozen=True)
class SimulatedGpuModel:
    name: str = "NVIDIA H200"
    memory_gib: float = 141.0
    idle_w: float = 90.0
    busy_w: float = 650.0
    power_limit_w: float = 700.0
    min_power_limit_w: float = 200.0


WORKLOAD_UTIL = {"idle": 0.0, "lease": 0.92, "local": 0.55}


class SimulatedRig:
    """A rig of identical GPUs whose draw follows the workload placed on each GPU."""

    def __init__(self, count: int = 8, model: SimulatedGpuModel | None = None,
                 seed: int = 7, uuid_prefix: str = "GPU-5e0a"):
        self.model = model or SimulatedGpuModel()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._workload = ["idle"] * count
        self._limit_w = [self.model.power_limit_w] * count
        self._energy_wh = [0.0] * count
        self._last_ts: datetime | None = None
        self._uuids = [f"{uuid_prefix}{seed:04x}-{i:04x}-4000-8000-{i:012x}" for i in range(count)]

    def place_workload(self, index: int, kind: str) -> None:
        if kind not in WORKLOAD_UTIL:
            raise ValueError(f"unknown workload {kind!r}; allowed: {', '.join(WORKLOAD_UTIL)}")
        with self._lock:
            self._workload[index] = kind

    def set_power_limit(self, index: int, power_w: float) -> None:
        m = self.model
        if not m.min_power_limit_w <= power_w <= m.power_limit_w:
            raise GpuError(f"GPU {index}: power limit {power_w:.0f} W outside "
                           f"{m.min_power_limit_w:.0f}..{m.power_limit_w:.0f} W")
        with self._lock:
            self._limit_w[index] = power_w

    def snapshots(self, ts: datetime) -> list[GpuSnapshot]:
        with self._lock:
            dt_h = 0.0 if self._last_ts is None else max(0.0, (ts - self._last_ts).total_seconds())
            dt_h = min(dt_h, 3600.0) / 3600.0
            self._last_ts = ts
            return [self._one(ts, i, dt_h) for i in range(len(self._workload))]

    def _one(self, ts: datetime, i: int, dt_h: float) -> GpuSnapshot:
        m = self.model
        target = WORKLOAD_UTIL[self._workload[i]]
        util = 0.0 if target == 0 else min(1.0, max(0.0, self._rng.gauss(target, 0.05)))
        noise_w = self._rng.uniform(-2.0, 2.0)
        power = min(m.idle_w + (m.busy_w - m.idle_w) * util + noise_w, self._limit_w[i])
        self._energy_wh[i] += power * dt_h
        mem_total = int(m.memory_gib * 2**30)
        return GpuSnapshot(
            ts=ts, index=i, uuid=self._uuids[i], name=m.name,
            pci_bus_id=f"00000000:{0x18 + i * 0x10:02X}:00.0",
            memory_total_bytes=mem_total, memory_used_bytes=int(mem_total * 0.85 * util) + 2**29,
            power_w=math.floor(power * 10) / 10, power_limit_w=self._limit_w[i],
            power_limit_min_w=m.min_power_limit_w, power_limit_max_w=m.power_limit_w,
            power_limit_default_w=m.power_limit_w, energy_total_wh=self._energy_wh[i],
            util_pct=round(util * 100, 1), memory_util_pct=round(util * 60, 1),
            temp_c=round(32 + 40 * power / m.power_limit_w, 1),
            processes=(GpuProcess(4000 + i, int(mem_total * 0.8)),) if util else (),
            mig_enabled=False, cc_mode="off",
        )

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pynvml
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node import gpus as gpus_mod
from node.gpus import GpuError, NvmlBackend, SimulatedGpuModel, SimulatedRig

T0 = datetime(2024, 6, 1, tzinfo=UTC)
H100_MEMORY = 85899345920  # 80 GiB


def not_supported(*_):
    raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)


def fake_nvml(gpu_lost: set, calls: dict) -> dict:
    """pynvml's functions for two H100 SXM GPUs as a real driver reports them, by name."""

    def per_gpu(value):
        def fn(h, *_):
            if h in gpu_lost:
                raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
            return value(h) if callable(value) else value
        return fn

    def by_uuid(uuid):
        for h in (0, 1):
            if uuid == f"GPU-8d3e1c2a-0000-4f00-9a00-00000000000{h}":
                return h
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)

    return {
        "nvmlInit": lambda: None,
        "nvmlDeviceGetCount": lambda: 2,
        "nvmlDeviceGetHandleByIndex": lambda i: i,
        "nvmlDeviceGetUUID": per_gpu(lambda h: f"GPU-8d3e1c2a-0000-4f00-9a00-00000000000{h}"),
        "nvmlDeviceGetName": per_gpu("NVIDIA H100 80GB HBM3"),
        "nvmlDeviceGetPciInfo": per_gpu(lambda h: SimpleNamespace(
            busId=f"00000000:{0x18 + h:02X}:00.0".encode())),
        "nvmlDeviceGetMemoryInfo": per_gpu(SimpleNamespace(total=H100_MEMORY, used=4194304000,
                                                           free=H100_MEMORY - 4194304000)),
        "nvmlDeviceGetPowerUsage": per_gpu(412345),
        "nvmlDeviceGetEnforcedPowerLimit": per_gpu(700000),
        "nvmlDeviceGetPowerManagementLimitConstraints": per_gpu((200000, 700000)),
        "nvmlDeviceGetPowerManagementDefaultLimit": per_gpu(700000),
        "nvmlDeviceGetTotalEnergyConsumption": per_gpu(7_200_000_000),  # mJ = 2 kWh
        "nvmlDeviceGetUtilizationRates": per_gpu(SimpleNamespace(gpu=87, memory=41)),
        "nvmlDeviceGetTemperature": per_gpu(61),
        "nvmlDeviceGetComputeRunningProcesses": per_gpu([
            SimpleNamespace(pid=4242, usedGpuMemory=3145728000),
            SimpleNamespace(pid=4243, usedGpuMemory=2**64 - 1)]),
        "nvmlDeviceGetMigMode": per_gpu((0, 0)),
        "nvmlSystemGetConfComputeState": lambda: SimpleNamespace(
            environment=pynvml.NVML_CC_SYSTEM_ENVIRONMENT_PROD,
            ccFeature=pynvml.NVML_CC_SYSTEM_FEATURE_DISABLED,
            devToolsMode=pynvml.NVML_CC_SYSTEM_DEVTOOLS_MODE_OFF),
        "nvmlDeviceSetPowerManagementLimit": lambda h, mw: calls["set_limit"].append((h, mw)),
        "nvmlDeviceGetHandleByUUID": by_uuid,
    }


@pytest.fixture
def nvml(monkeypatch):
    """pynvml with two H100 SXM GPUs as a real driver reports them."""
    gpu_lost = set()
    calls = {"set_limit": []}
    for name, fn in fake_nvml(gpu_lost, calls).items():
        monkeypatch.setattr(pynvml, name, fn)
    monkeypatch.setattr(gpus_mod, "_nvml_ready", False)
    return SimpleNamespace(lost=gpu_lost, calls=calls, set=lambda n, f: monkeypatch.setattr(
        pynvml, n, f))


def test_nvml_snapshot_converts_units(nvml):
    snaps = NvmlBackend().snapshots(T0)
    assert [s.index for s in snaps] == [0, 1]
    s = snaps[0]
    assert s.name == "NVIDIA H100 80GB HBM3" and s.uuid.startswith("GPU-8d3e")
    assert s.pci_bus_id == "00000000:18:00.0"
    assert s.power_w == 412.345 and s.power_limit_w == 700.0
    assert (s.power_limit_min_w, s.power_limit_max_w, s.power_limit_default_w) == (200, 700, 700)
    assert s.energy_total_wh == 2000.0
    assert s.util_pct == 87 and s.memory_util_pct == 41 and s.temp_c == 61
    assert s.memory_total_bytes == H100_MEMORY and s.memory_used_bytes == 4194304000
    assert s.processes[0].used_memory_bytes == 3145728000
    assert s.processes[1].used_memory_bytes is None  # NVML's "not available"
    assert s.mig_enabled is False and s.cc_mode == "off"


def test_not_supported_becomes_none_and_the_rest_still_reads(nvml):
    for name in ("nvmlDeviceGetTotalEnergyConsumption", "nvmlDeviceGetMigMode",
                 "nvmlDeviceGetPowerManagementLimitConstraints", "nvmlSystemGetConfComputeState",
                 "nvmlDeviceGetComputeRunningProcesses"):
        nvml.set(name, not_supported)
    s = NvmlBackend().snapshots(T0)[0]
    assert s.energy_total_wh is None and s.mig_enabled is None and s.cc_mode is None
    assert s.power_limit_min_w is None and s.processes == ()
    assert s.power_w == 412.345 and s.temp_c == 61


def test_a_lost_gpu_is_skipped_and_named(nvml, caplog):
    nvml.lost.add(1)
    snaps = NvmlBackend().snapshots(T0)
    assert [s.index for s in snaps] == [0]
    assert "GPU 1" in caplog.text and "nvmlDeviceGet" in caplog.text


def test_confidential_computing_modes(nvml):
    def state(feature, devtools):
        return lambda: SimpleNamespace(environment=2, ccFeature=feature, devToolsMode=devtools)
    nvml.set("nvmlSystemGetConfComputeState", state(1, 0))
    assert NvmlBackend().snapshots(T0)[0].cc_mode == "on"
    nvml.set("nvmlSystemGetConfComputeState", state(1, 1))
    assert NvmlBackend().snapshots(T0)[0].cc_mode == "devtools"


def test_power_limit_is_set_in_milliwatts(nvml):
    NvmlBackend().set_power_limit(1, 250.0)
    assert nvml.calls["set_limit"] == [(1, 250000)]


def test_a_refused_power_limit_is_a_gpu_error(nvml):
    nvml.set("nvmlDeviceSetPowerManagementLimit",
             lambda h, mw: (_ for _ in ()).throw(pynvml.NVMLError(pynvml.NVML_ERROR_NO_PERMISSION)))
    with pytest.raises(GpuError, match="nvmlDeviceSetPowerManagementLimit"):
        NvmlBackend().set_power_limit(0, 300.0)


def test_nvml_init_failure_is_a_gpu_error(nvml):
    nvml.set("nvmlInit", lambda: (_ for _ in ()).throw(
        pynvml.NVMLError(pynvml.NVML_ERROR_DRIVER_NOT_LOADED)))
    with pytest.raises(GpuError, match="NVML could not start"):
        NvmlBackend()


MODEL = SimulatedGpuModel()


@settings(max_examples=60, deadline=None)
@given(workloads=st.lists(st.sampled_from(["idle", "lease", "local"]), min_size=8, max_size=8),
       limits=st.lists(st.floats(200, 700), min_size=8, max_size=8),
       steps=st.integers(1, 20))
def test_simulated_power_stays_within_idle_and_limit(workloads, limits, steps):
    rig = SimulatedRig(8, MODEL, seed=1)
    for i, (w, lim) in enumerate(zip(workloads, limits, strict=True)):
        rig.place_workload(i, w)
        rig.set_power_limit(i, lim)
    energy = [0.0] * 8
    for k in range(steps):
        for s in rig.snapshots(T0 + timedelta(seconds=10 * k)):
            assert s.power_w <= s.power_limit_w
            assert s.power_w >= min(MODEL.idle_w, s.power_limit_w) - 2.0
            assert s.energy_total_wh >= energy[s.index]
            energy[s.index] = s.energy_total_wh


def test_simulated_rig_busy_draws_near_busy_power_and_parked_is_capped():
    rig = SimulatedRig(2, MODEL, seed=3)
    rig.place_workload(0, "lease")
    rig.place_workload(1, "lease")
    rig.set_power_limit(1, 200.0)
    draws = [[], []]
    for k in range(50):
        for s in rig.snapshots(T0 + timedelta(seconds=10 * k)):
            draws[s.index].append(s.power_w)
    assert 550 < sum(draws[0]) / 50 < 650
    assert max(draws[1]) <= 200.0


def test_simulated_rig_refuses_limits_outside_its_range():
    with pytest.raises(GpuError, match="outside"):
        SimulatedRig(1, MODEL).set_power_limit(0, 900)

"""Confidential-computing state and GPU evidence through NVML.

`NvmlTee` reads the system CC state, capabilities and settings, the GPUs' ready state and each
GPU's protected memory, and collects per GPU the SPDM attestation report for a nonce and the
attestation certificate chain. `FakeTee` stands beside it for the demo and tests.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from tee.evidence import NONCE_BYTES, OFF, CcState, GpuEvidence, TeeError

log = logging.getLogger(__name__)

_ENVIRONMENTS = {0: "unavailable", 1: "sim", 2: "prod"}
_CPU_CAPS = {0: "none", 1: "amd_sev", 2: "intel_tdx", 3: "amd_sev_snp", 4: "amd_snp_vtom"}
_MULTI_GPU = {0: "none", 1: "protected_pcie", 2: "nvle"}


def _pynvml() -> Any:
    import pynvml  # lazily: machines without NVIDIA drivers never load it

    return pynvml


def _call(name: str, *args: Any) -> Any:
    """One NVML call by name: None where the driver or GPU does not support it."""
    nv = _pynvml()
    fn = getattr(nv, name, None)
    if fn is None:
        return None  # bindings older than the call
    try:
        return fn(*args)
    except (nv.NVMLError_NotSupported, nv.NVMLError_FunctionNotFound):
        return None
    except nv.NVMLError as exc:
        raise TeeError(f"{name} failed: {exc}") from None


def _uuid_text(value: Any, index: int) -> str:
    """NVML's UUID is ASCII ('GPU-' and hex). Bytes that are not are refused, naming the GPU,
    rather than guessed at: the evidence is matched to its GPU by this UUID."""
    if not isinstance(value, bytes):
        return str(value)
    try:
        return value.decode("ascii")
    except UnicodeDecodeError:
        raise TeeError(f"GPU {index} reports a UUID that is not ASCII text "
                       f"({len(value)} bytes)") from None


class NvmlTee:
    def __init__(self) -> None:
        nv = _pynvml()
        try:
            nv.nvmlInit()  # reference-counted by NVML, so sharing it with the GPU backend is fine
        except nv.NVMLError as exc:
            raise TeeError(f"NVML could not start: {exc}") from None
        count = _call("nvmlDeviceGetCount") or 0
        self._handles = [nv.nvmlDeviceGetHandleByIndex(i) for i in range(count)]

    def state(self) -> CcState:
        state = _call("nvmlSystemGetConfComputeState")
        if state is None:
            return OFF
        caps = _call("nvmlSystemGetConfComputeCapabilities")
        ready = _call("nvmlSystemGetConfComputeGpusReadyState")
        memory = tuple(_protected_bytes(h) for h in self._handles)
        return CcState(
            environment=_ENVIRONMENTS.get(state.environment, f"unknown({state.environment})"),
            cc_feature=state.ccFeature == 1,
            devtools=state.devToolsMode == 1,
            multi_gpu_mode=self._multi_gpu_mode(),
            cpu_caps=None if caps is None else _CPU_CAPS.get(caps.cpuCaps, str(caps.cpuCaps)),
            gpus_cc_capable=None if caps is None else caps.gpusCaps == 1,
            gpus_ready=None if ready is None else ready == 1,
            protected_memory_bytes=memory)

    @staticmethod
    def _multi_gpu_mode() -> str | None:
        nv = _pynvml()
        if not hasattr(nv, "c_nvmlSystemConfComputeSettings_v1_t"):
            return None
        settings = nv.c_nvmlSystemConfComputeSettings_v1_t()
        # this binding hands back the return code instead of raising
        ret = _call("nvmlSystemGetConfComputeSettings", nv.byref(settings))
        if ret != nv.NVML_SUCCESS:
            return None
        return _MULTI_GPU.get(settings.multiGpuMode, str(settings.multiGpuMode))

    def evidence(self, nonce: bytes) -> list[GpuEvidence]:
        if len(nonce) != NONCE_BYTES:
            raise TeeError(f"nonce must be {NONCE_BYTES} bytes, got {len(nonce)}")
        out = []
        for index, handle in enumerate(self._handles):
            uuid = _uuid_text(_call("nvmlDeviceGetUUID", handle), index)
            report = _call("nvmlDeviceGetConfComputeGpuAttestationReport", handle, nonce)
            cert = _call("nvmlDeviceGetConfComputeGpuCertificate", handle)
            if report is None or cert is None:
                raise TeeError(f"GPU {index} ({uuid}) gives no attestation evidence; is "
                               "confidential computing on?")
            out.append(GpuEvidence(
                index=index, uuid=uuid,
                report=bytes(report.attestationReport[:report.attestationReportSize]),
                cert_chain_pem=bytes(
                    cert.attestationCertChain[:cert.attestationCertChainSize])))
        return out


def cc_mode() -> str | None:
    """The system's CC mode ("on", "devtools", "off"), or None where the driver cannot tell."""
    try:
        state = _call("nvmlSystemGetConfComputeState")
    except TeeError:
        return None  # drivers before CC support
    if state is None:
        return None
    return CcState(environment=_ENVIRONMENTS.get(state.environment, "unknown"),
                   cc_feature=state.ccFeature == 1, devtools=state.devToolsMode == 1,
                   multi_gpu_mode=None, cpu_caps=None, gpus_cc_capable=None,
                   gpus_ready=None).mode


def _protected_bytes(handle: Any) -> int | None:
    memory = _call("nvmlDeviceGetConfComputeProtectedMemoryUsage", handle)
    return None if memory is None else int(memory.total)


class FakeTee:
    """A TEE source for the demo and tests: a fixed state and evidence made by a function."""

    def __init__(self, state: CcState,
                 make_evidence: Callable[[bytes], Sequence[GpuEvidence]] | None = None) -> None:
        self._state, self._make = state, make_evidence

    def state(self) -> CcState:
        return self._state

    def evidence(self, nonce: bytes) -> list[GpuEvidence]:
        if self._make is None:
            raise TeeError("this rig has no confidential-computing GPUs")
        return list(self._make(nonce))

"""What the TEE code hands back: the confidential-computing state, evidence and verdicts.

Plain dataclasses only, so the node and the web UI can show them without importing any of the
collection or verification machinery.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PASS, FAIL, SKIP = "pass", "fail", "skip"
NONCE_BYTES = 32


class TeeError(Exception):
    """Evidence could not be collected or read; the message names the file, field or call."""


@dataclass(frozen=True)
class CcState:
    """The system's confidential-computing state as the GPU driver reports it."""

    environment: str  # "prod", "sim" or "unavailable"
    cc_feature: bool
    devtools: bool
    multi_gpu_mode: str | None  # "none", "protected_pcie", "nvle"; None where unknown
    cpu_caps: str | None  # "none", "amd_sev", "intel_tdx", "amd_sev_snp", "amd_snp_vtom"
    gpus_cc_capable: bool | None
    gpus_ready: bool | None
    protected_memory_bytes: tuple[int | None, ...] = ()

    @property
    def mode(self) -> str:
        if not self.cc_feature:
            return "off"
        return "devtools" if self.devtools else "on"

    @property
    def trustworthy(self) -> bool:
        """Only production CC without dev tools may be offered to tenants as a TEE."""
        return self.cc_feature and not self.devtools and self.environment == "prod"

    def as_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "environment": self.environment, "devtools": self.devtools,
                "multi_gpu_mode": self.multi_gpu_mode, "cpu_caps": self.cpu_caps,
                "gpus_cc_capable": self.gpus_cc_capable, "gpus_ready": self.gpus_ready,
                "trustworthy": self.trustworthy}


OFF = CcState(environment="unavailable", cc_feature=False, devtools=False, multi_gpu_mode=None,
              cpu_caps=None, gpus_cc_capable=None, gpus_ready=None)


@dataclass(frozen=True)
class GpuEvidence:
    index: int
    uuid: str
    report: bytes  # SPDM GET_MEASUREMENTS request followed by the signed response
    cert_chain_pem: bytes  # leaf first


@dataclass(frozen=True)
class CpuEvidence:
    provider: str  # "sev_guest" or "tdx_guest"
    report: bytes
    report_data: bytes  # the 64 bytes we asked the CPU to sign
    aux_blob: bytes = b""  # certificates the host attached, when it did


@dataclass(frozen=True)
class Evidence:
    nonce: bytes
    state: CcState
    gpus: tuple[GpuEvidence, ...]
    cpu: CpuEvidence | None = None


@dataclass(frozen=True)
class Check:
    name: str  # e.g. "gpu0.signature"
    status: str  # PASS, FAIL or SKIP
    detail: str
    required: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "detail": self.detail,
                "required": self.required}


@dataclass(frozen=True)
class Verdict:
    checks: tuple[Check, ...] = field(default_factory=tuple)

    @property
    def passed(self) -> bool:
        """True only when there are checks and every required one passed."""
        required = [c for c in self.checks if c.required]
        return bool(required) and all(c.status == PASS for c in required)

    @property
    def failed(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.required and c.status != PASS)

    def check(self, name: str) -> Check:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def as_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "checks": [c.as_dict() for c in self.checks]}

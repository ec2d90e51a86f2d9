"""Collect fresh evidence on this machine and verify it: what the agent and `sunrig attest` run."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Protocol

from tee.cpu import TSM_REPORT_ROOT, collect_cpu_report
from tee.evidence import (
    FAIL,
    NONCE_BYTES,
    PASS,
    CcState,
    Check,
    Evidence,
    GpuEvidence,
    TeeError,
    Verdict,
)
from tee.verify import Trust, report_binding, verify


class TeeSource(Protocol):
    def state(self) -> CcState: ...

    def evidence(self, nonce: bytes) -> list[GpuEvidence]: ...


def new_nonce() -> bytes:
    return secrets.token_bytes(NONCE_BYTES)


def collect_evidence(source: TeeSource, nonce: bytes,
                     tsm_root: Path = TSM_REPORT_ROOT) -> Evidence:
    """GPU reports for `nonce`, and a CPU report binding the nonce and those reports when the
    machine offers configfs-tsm (Linux 6.7 and later inside a confidential VM)."""
    if len(nonce) != NONCE_BYTES:
        raise TeeError(f"nonce must be {NONCE_BYTES} bytes, got {len(nonce)}")
    state = source.state()
    gpus = tuple(source.evidence(nonce))
    cpu = None
    if tsm_root.is_dir():
        cpu = collect_cpu_report(report_binding(nonce, [g.report for g in gpus]), tsm_root)
    return Evidence(nonce=nonce, state=state, gpus=gpus, cpu=cpu)


def attest(source: TeeSource, trust: Trust, nonce: bytes | None = None,
           tsm_root: Path = TSM_REPORT_ROOT) -> tuple[Evidence, Verdict]:
    """Collect and verify; the verdict also fails when the mode itself is not trustworthy."""
    nonce = nonce or new_nonce()
    evidence = collect_evidence(source, nonce, tsm_root)
    verdict = verify(evidence, nonce, trust)
    return evidence, Verdict((mode_check(evidence.state),) + verdict.checks)


def mode_check(state: CcState) -> Check:
    if state.trustworthy:
        return Check("mode", PASS, "confidential computing on, production environment, "
                     "dev tools off")
    why = ("confidential computing is off" if not state.cc_feature else
           "dev-tools mode is on: the GPU's memory can be inspected" if state.devtools else
           f"the environment is {state.environment!r}, not production")
    return Check("mode", FAIL, why)

"""Offline verification of TEE evidence: every check named, passed or failed, and why.

GPU, per report: the report parses; the request nonce is the tenant's; the ECDSA P-384 signature
(the last 96 bytes, over everything before them) verifies with the leaf certificate; the chain
leads to the NVIDIA Device Identity root; the leaf's firmware id matches the report's; and, when
the owner supplies RIMs, their signatures and chains hold, their versions match the report's
driver and VBIOS, and every measurement is one of the golden values.
CPU: the report data binds the nonce and the GPU evidence, and an SEV-SNP report's signature
verifies with the VCEK, whose chain leads to AMD's ARK.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from tee import rim as rims
from tee.certs import (
    chain_problem,
    describe,
    ecdsa_p384_problem,
    load_pem_chain,
    shipped_root,
    tcb_fwids,
)
from tee.evidence import (
    FAIL,
    PASS,
    SKIP,
    Check,
    CpuEvidence,
    Evidence,
    GpuEvidence,
    TeeError,
    Verdict,
)
from tee.snp import parse_snp_report, snp_signature_problem
from tee.spdm import SIGNATURE_BYTES, parse_report

DEVICE_ROOT_FILE, RIM_ROOT_FILE = "nvidia_device_identity_root.pem", "nvidia_rim_root.pem"


@dataclass(frozen=True)
class Trust:
    """What a verifier trusts, and when it judges validity."""

    device_root: x509.Certificate = field(default_factory=lambda: shipped_root(DEVICE_ROOT_FILE))
    rim_root: x509.Certificate = field(default_factory=lambda: shipped_root(RIM_ROOT_FILE))
    rims: tuple[rims.Rim, ...] = ()
    vcek: x509.Certificate | None = None
    amd_chain: tuple[x509.Certificate, ...] = ()  # ASK then ARK, as AMD's KDS serves them
    at: datetime | None = None  # None: now

    def when(self) -> datetime:
        return self.at or datetime.now(UTC)


def report_binding(nonce: bytes, gpu_reports: list[bytes]) -> bytes:
    """The 64 bytes of CPU report data: the tenant's nonce and a digest of every GPU report."""
    h = hashlib.sha512(b"sunrig-tee-binding-v1" + nonce)
    for report in gpu_reports:
        h.update(hashlib.sha384(report).digest())
    return h.digest()


def verify(evidence: Evidence, nonce: bytes, trust: Trust | None = None) -> Verdict:
    trust = trust or Trust()
    checks: list[Check] = []
    if not evidence.gpus:
        checks.append(Check("gpus", FAIL, "no GPU evidence"))
    for gpu in evidence.gpus:
        checks += verify_gpu(gpu, nonce, trust)
    if evidence.cpu is not None:
        checks += verify_cpu(evidence.cpu, nonce, [g.report for g in evidence.gpus], trust)
    else:
        checks.append(Check("cpu", SKIP, "no CPU evidence (no configfs-tsm on the machine that "
                            "collected it)", required=False))
    return Verdict(tuple(checks))


def _check(name: str, problem: str | None, ok: str, required: bool = True) -> Check:
    return Check(name, PASS if problem is None else FAIL, ok if problem is None else problem,
                 required)


def verify_gpu(gpu: GpuEvidence, nonce: bytes, trust: Trust) -> list[Check]:
    p = f"gpu{gpu.index}."
    at = trust.when()
    try:
        chain = load_pem_chain(gpu.cert_chain_pem, "certificate chain")
    except TeeError as exc:
        chain, chain_error = [], str(exc)
    else:
        chain_error = chain_problem(chain, trust.device_root, at)
    checks = [_check(p + "cert_chain", chain_error,
                     f"{len(chain)} certificates lead to '{describe(trust.device_root)}'")]
    # The signature needs no parsing: a flipped length byte must fail here too, not only in parse.
    checks.append(_check(p + "signature", _report_signature_problem(gpu.report, chain),
                         "ECDSA P-384/SHA-384 signature verifies with the leaf key"))
    try:
        report = parse_report(gpu.report)
    except TeeError as exc:
        return [Check(p + "report", FAIL, str(exc))] + checks
    checks.insert(0, Check(p + "report", PASS,
                           f"SPDM 1.1 report with {len(report.measurements)} measurements, "
                           f"driver {report.driver_version}, VBIOS {report.vbios_version}"))
    nonce_problem = None if report.request_nonce == nonce else (
        f"report was made for nonce {report.request_nonce.hex()}, not {nonce.hex()}")
    checks.insert(1, _check(p + "nonce", nonce_problem, "report is bound to the nonce"))
    checks.append(_fwid_check(p, report.fwid, chain))
    checks += _rim_checks(p, report, trust)
    return checks


def _report_signature_problem(raw: bytes, chain: list[x509.Certificate]) -> str | None:
    if not chain:
        return "no leaf certificate to check the signature with"
    if len(raw) <= SIGNATURE_BYTES:
        return f"report is {len(raw)} bytes, too short to hold a signature"
    sig = raw[-SIGNATURE_BYTES:]
    half = SIGNATURE_BYTES // 2
    return ecdsa_p384_problem(chain[0], raw[:-SIGNATURE_BYTES],
                              int.from_bytes(sig[:half], "big"), int.from_bytes(sig[half:], "big"))


def _fwid_check(p: str, fwid: bytes | None, chain: list[x509.Certificate]) -> Check:
    if not fwid:
        return Check(p + "fwid", FAIL, "report carries no firmware id")
    if not chain:
        return Check(p + "fwid", FAIL, "no leaf certificate to compare the firmware id with")
    try:
        cert_fwids = tcb_fwids(chain[0])
    except TeeError as exc:
        return Check(p + "fwid", FAIL, str(exc))
    problem = None if fwid in cert_fwids else (
        f"report firmware id {fwid.hex()[:16]}... is not in the leaf certificate "
        f"({', '.join(f.hex()[:16] + '...' for f in cert_fwids) or 'none'})")
    return _check(p + "fwid", problem, "leaf certificate names the report's firmware id")


def _rim_checks(p: str, report, trust: Trust) -> list[Check]:
    if not trust.rims:
        return [Check(p + "measurements", SKIP, "no reference manifests supplied", False)]
    at = trust.when()
    checks = []
    for rim in trust.rims:
        checks.append(_check(f"{p}rim[{rim.name}].signature", rims.signature_problem(rim),
                             "XML signature verifies"))
        checks.append(_check(f"{p}rim[{rim.name}].cert_chain",
                             rims.signer_chain_problem(rim, trust.rim_root, at),
                             f"signer leads to '{describe(trust.rim_root)}'"))
        expected = report.vbios_version if rim.kind == "vbios" else report.driver_version
        problem = None if (expected or "").lower() == rim.version.lower() else (
            f"{rim.kind} RIM is for {rim.version}, the report has {expected}")
        checks.append(_check(f"{p}rim[{rim.name}].version", problem,
                             f"{rim.kind} version {rim.version} matches"))
    problems = rims.measurement_problems(list(trust.rims), report.measurements)
    kinds = {r.kind for r in trust.rims}
    if kinds != {"driver", "vbios"}:
        problems.insert(0, f"need a driver and a VBIOS RIM, got {', '.join(sorted(kinds))}")
    checks.append(_check(p + "measurements", "; ".join(problems) or None,
                         "every measurement matches its golden value"))
    return checks


def verify_cpu(cpu: CpuEvidence, nonce: bytes, gpu_reports: list[bytes],
               trust: Trust) -> list[Check]:
    expected = report_binding(nonce, gpu_reports)
    checks = [_check("cpu.binding", None if cpu.report_data == expected else
                     "CPU report data does not bind this nonce and these GPU reports",
                     "CPU report data binds the nonce and the GPU reports")]
    if cpu.provider != "sev_guest":
        checks.append(Check("cpu.signature", FAIL, f"offline verification of {cpu.provider} "
                            "reports is not supported (it needs the vendor's online collateral)"))
        return checks
    try:
        snp = parse_snp_report(cpu.report)
    except TeeError as exc:
        return checks + [Check("cpu.report", FAIL, str(exc))]
    checks.append(_check("cpu.report_data", None if snp.report_data == cpu.report_data else
                         "the signed report holds other report data than was asked for",
                         "signed report holds the binding"))
    if trust.vcek is None:
        checks.append(Check("cpu.signature", FAIL, "no VCEK supplied to check the SEV-SNP "
                            "signature (fetch it from AMD's KDS for this chip and TCB)"))
        return checks
    checks.append(_check("cpu.signature", snp_signature_problem(snp, trust.vcek),
                         "SEV-SNP report signature verifies with the VCEK"))
    checks.append(_amd_chain_check(trust))
    return checks


def _amd_chain_check(trust: Trust) -> Check:
    if len(trust.amd_chain) != 2:
        return Check("cpu.cert_chain", FAIL, "AMD chain must be the ASK then the ARK")
    ask, ark = trust.amd_chain
    try:
        ark.verify_directly_issued_by(ark)
    except (ValueError, TypeError, InvalidSignature):
        return Check("cpu.cert_chain", FAIL, f"the ARK '{describe(ark)}' is not self-signed")
    problem = chain_problem([trust.vcek, ask, ark], ark, trust.when())
    return _check("cpu.cert_chain", problem, f"VCEK leads to '{describe(ark)}'")

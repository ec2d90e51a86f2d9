"""AMD SEV-SNP attestation reports (AMD SEV-SNP firmware ABI, ATTESTATION_REPORT, 1184 bytes).

Only the fields a verifier needs are parsed. The signature covers bytes 0..0x29F; it is ECDSA
P-384 with SHA-384, r and s stored little-endian in 72-byte fields.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from cryptography import x509

from tee.certs import ecdsa_p384_problem
from tee.evidence import TeeError

REPORT_BYTES = 0x4A0
SIGNED_BYTES = 0x2A0
ECDSA_P384_SHA384 = 1


@dataclass(frozen=True)
class Tcb:
    """Milan/Genoa TCB_VERSION: security version numbers of each firmware layer."""

    boot_loader: int
    tee: int
    snp: int
    microcode: int

    @classmethod
    def from_u64(cls, value: int) -> Tcb:
        b = value.to_bytes(8, "little")
        return cls(boot_loader=b[0], tee=b[1], snp=b[6], microcode=b[7])


@dataclass(frozen=True)
class SnpReport:
    raw: bytes
    version: int
    guest_svn: int
    policy: int
    vmpl: int
    signature_algo: int
    current_tcb: Tcb
    reported_tcb: Tcb
    report_data: bytes
    measurement: bytes
    host_data: bytes
    chip_id: bytes

    @property
    def debug_allowed(self) -> bool:
        """Policy bit 19: a guest that allows debugging is not confidential."""
        return bool(self.policy >> 19 & 1)


def parse_snp_report(raw: bytes) -> SnpReport:
    if len(raw) != REPORT_BYTES:
        raise TeeError(f"SEV-SNP report is {len(raw)} bytes, expected {REPORT_BYTES}")
    version, guest_svn, policy = struct.unpack_from("<IIQ", raw, 0x00)
    vmpl, signature_algo, current_tcb = struct.unpack_from("<IIQ", raw, 0x30)
    if version < 2:
        raise TeeError(f"SEV-SNP report version {version} is not supported (2 or later)")
    (reported_tcb,) = struct.unpack_from("<Q", raw, 0x180)
    return SnpReport(
        raw=raw, version=version, guest_svn=guest_svn, policy=policy, vmpl=vmpl,
        signature_algo=signature_algo, current_tcb=Tcb.from_u64(current_tcb),
        reported_tcb=Tcb.from_u64(reported_tcb), report_data=raw[0x50:0x90],
        measurement=raw[0x90:0xC0], host_data=raw[0xC0:0xE0], chip_id=raw[0x1A0:0x1E0])


def snp_signature_problem(report: SnpReport, vcek: x509.Certificate) -> str | None:
    if report.signature_algo != ECDSA_P384_SHA384:
        return f"signature algorithm {report.signature_algo} is not ECDSA P-384/SHA-384"
    sig = report.raw[SIGNED_BYTES:]
    r = int.from_bytes(sig[0:72], "little")
    s = int.from_bytes(sig[72:144], "little")
    return ecdsa_p384_problem(vcek, report.raw[:SIGNED_BYTES], r, s)

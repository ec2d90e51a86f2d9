"""AMD SEV-SNP offline: the processor family, its pinned roots, the VCEK/VLEK and the policy.

Follows confidential-containers/trustee `deps/verifier/src/snp/mod.rs` (commit 78962cd4): the
family comes from the report's CPUID family/model (report version 3 and later), each family has
its own ARK, ASK and ASVK (shipped in `tee/data/amd_<family>_ask_ark_asvk.pem`, copied from
trustee's `deps/verifier/src/snp/*_ask_ark_asvk.pem`), a VCEK chains ARK -> ASK -> VCEK and a VLEK
ARK -> ASVK -> VLEK, and the VEK's TCB extensions (and, for a VCEK, its hwID) must equal the
report's. Older reports (version 2) carry no CPUID, so the family is then read from the VEK's
productName extension; either way the chain must lead to that family's pinned ARK.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from importlib import resources

from cryptography import x509

from tee.certs import chain_problem, der_children, describe, load_pem_chain
from tee.evidence import TeeError
from tee.snp import SnpReport

FAMILIES = ("Milan", "Genoa", "Turin")
_AMD_ARC = "1.3.6.1.4.1.3704.1."
PRODUCT_NAME_OID = x509.ObjectIdentifier(_AMD_ARC + "2")
HW_ID_OID = x509.ObjectIdentifier(_AMD_ARC + "4")
# TCB component -> the VEK extension that states it (trustee: *_SPL_OID)
SPL_OIDS = {"boot_loader": _AMD_ARC + "3.1", "tee": _AMD_ARC + "3.2", "snp": _AMD_ARC + "3.3",
            "microcode": _AMD_ARC + "3.8", "fmc": _AMD_ARC + "3.9"}
POLICY_SMT, POLICY_MIGRATE_MA, POLICY_DEBUG = 16, 18, 19  # SEV-SNP ABI, GUEST_POLICY bits


@dataclass(frozen=True)
class SnpTcb:
    """TCB_VERSION by component; `fmc` exists on Turin only (the byte layout differs there)."""

    boot_loader: int
    tee: int
    snp: int
    microcode: int
    fmc: int | None = None

    @classmethod
    def from_raw(cls, raw: bytes, family: str) -> SnpTcb:
        if family == "Turin":
            return cls(boot_loader=raw[1], tee=raw[2], snp=raw[3], microcode=raw[7], fmc=raw[0])
        return cls(boot_loader=raw[0], tee=raw[1], snp=raw[6], microcode=raw[7])

    def below(self, minimum: SnpTcb) -> list[str]:
        """Components lower than `minimum` (an fmc the report lacks is not compared)."""
        out = []
        for name in ("boot_loader", "tee", "snp", "microcode", "fmc"):
            have, want = getattr(self, name), getattr(minimum, name)
            if want is not None and have is not None and have < want:
                out.append(f"{name} {have} < {want}")
        return out

    def __str__(self) -> str:
        fmc = "" if self.fmc is None else f" fmc={self.fmc}"
        return (f"bl={self.boot_loader} tee={self.tee} snp={self.snp} "
                f"ucode={self.microcode}{fmc}")


@dataclass(frozen=True)
class AmdRoots:
    """One family's ARK and the two keys it signs: ASK (signs VCEKs) and ASVK (signs VLEKs)."""

    ark: x509.Certificate
    ask: x509.Certificate
    asvk: x509.Certificate


@cache
def pinned_roots() -> dict[str, AmdRoots]:
    out = {}
    for family in FAMILIES:
        name = f"amd_{family.lower()}_ask_ark_asvk.pem"
        data = resources.files("tee").joinpath("data", name).read_bytes()
        ask, ark, asvk = load_pem_chain(data, f"shipped AMD chain {name}")
        out[family] = AmdRoots(ark=ark, ask=ask, asvk=asvk)
    return out


def report_family(report: SnpReport) -> str | None:
    """The family from CPUID family/model (report version 3+), None where the report has none."""
    if report.version < 3:
        return None
    family_id, model = report.raw[0x188], report.raw[0x189]
    if family_id == 0x19 and model <= 0x0F:
        return "Milan"
    if family_id == 0x19 and (0x10 <= model <= 0x1F or 0xA0 <= model <= 0xAF):
        return "Genoa"
    if family_id == 0x1A and model <= 0x11:
        return "Turin"
    raise TeeError(f"SEV-SNP report names CPU family 0x{family_id:02x} model 0x{model:02x}, "
                   "which is not Milan, Genoa or Turin")


def vek_family(vek: x509.Certificate) -> str | None:
    """The family from the VEK's productName ('Milan-B0', 'Genoa')."""
    raw = _extension(vek, PRODUCT_NAME_OID)
    if raw is None:
        return None
    text = der_children(raw)[0][1].decode("ascii", "replace") if raw[:1] == b"\x16" else ""
    family = text.split("-", 1)[0].capitalize()
    return family if family in FAMILIES else None


def reported_tcb(report: SnpReport, family: str) -> SnpTcb:
    return SnpTcb.from_raw(report.raw[0x180:0x188], family)


def signed_by_vlek(report: SnpReport) -> bool:
    """SIGNING_KEY (bits 2-4 of the flags at 0x48): 0 is the VCEK, 1 the VLEK."""
    (flags,) = struct.unpack_from("<I", report.raw, 0x48)
    return (flags >> 2) & 0b111 == 1


def vek_chain_problem(vek: x509.Certificate, roots: AmdRoots, at: datetime) -> str | None:
    """None when the VEK leads to the family's ARK through the ASK (VCEK) or ASVK (VLEK)."""
    for middle in (roots.ask, roots.asvk):
        if vek.issuer == middle.subject:
            return chain_problem([vek, middle, roots.ark], roots.ark, at)
    return (f"'{describe(vek)}' is issued by '{vek.issuer.rfc4514_string()}', neither "
            f"'{describe(roots.ask)}' nor '{describe(roots.asvk)}'")


def vek_binding_problem(vek: x509.Certificate, report: SnpReport, family: str) -> str | None:
    """None when the VEK was issued for the report's TCB and, for a VCEK, its chip."""
    tcb = reported_tcb(report, family)
    for name, oid in SPL_OIDS.items():
        want = getattr(tcb, name)
        if want is None:
            continue
        raw = _extension(vek, x509.ObjectIdentifier(oid))
        if raw is None:
            return f"'{describe(vek)}' states no {name} SPL"
        have = int.from_bytes(der_children(raw)[0][1], "big")
        if have != want:
            return f"the report's {name} SPL is {want}, '{describe(vek)}' was issued for {have}"
    hw_id = _extension(vek, HW_ID_OID)
    if hw_id is not None:  # VLEKs carry no hwID: they are not tied to one chip
        chip = hw_id if len(hw_id) in (8, 64) else der_children(hw_id)[0][1]
        if chip != report.chip_id[:len(chip)]:
            return (f"'{describe(vek)}' is for chip {chip.hex()[:16]}..., the report is from "
                    f"{report.chip_id.hex()[:16]}...")
    return None


def policy_problems(report: SnpReport, allow_debug: bool, allow_migration_agent: bool,
                    allow_smt: bool, max_vmpl: int = 0) -> list[str]:
    bits = {"debugging": (POLICY_DEBUG, allow_debug),
            "a migration agent": (POLICY_MIGRATE_MA, allow_migration_agent),
            "SMT": (POLICY_SMT, allow_smt)}
    out = [f"the guest policy allows {what} (bit {bit}), which the tenant does not accept"
           for what, (bit, allowed) in bits.items() if report.policy >> bit & 1 and not allowed]
    # the sidecar asks at VMPL 0; a report from a less privileged level speaks for less
    # (trustee refuses any VMPL but 0)
    if report.vmpl > max_vmpl:
        out.append(f"the report was made at VMPL {report.vmpl}, the tenant accepts up to "
                   f"{max_vmpl}")
    return out


def hw_id_for_kds(report: SnpReport, family: str) -> str:
    """KDS names a chip by its 64-byte id, Turin by the first 8 bytes (trustee's
    parse_hw_id_from_vcek)."""
    return (report.chip_id[:8] if family == "Turin" else report.chip_id).hex()


def _extension(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> bytes | None:
    try:
        value = cert.extensions.get_extension_for_oid(oid).value
    except x509.ExtensionNotFound:
        return None
    return value.value if isinstance(value, x509.UnrecognizedExtension) else None

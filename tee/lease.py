"""The tenant's verdict on an Akash lease's TEE evidence, offline, every check named.

Akash's own CLI (`cmd/provider-services/cmd/leaseAttestation.go` on the provider's
feature/confidential-compute branch) only looks for the nonce in the report. Here, besides the
nonce (or its TLS binding), every GPU's SPDM nonce must be the first 32 bytes of the CPU report
data, every GPU report is verified as tee/verify.py verifies the host's own, the SEV-SNP report's
signature must verify with a VCEK or VLEK that chains to AMD's pinned ARK for its family and was
issued for the report's TCB, and the guest policy and reported TCB must satisfy the tenant.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from cryptography import x509

from tee import amd
from tee import rim as rims
from tee.bundle import Bundle, amd_revocation_problem, chain_revocation_problem, rim_ids, vcek_key
from tee.certs import describe, load_certificate, load_pem_chain
from tee.cpu import aux_certificates
from tee.evidence import FAIL, PASS, SKIP, Check, GpuEvidence, TeeError, Verdict
from tee.sidecar import PEM_MARK, LeaseAnswer, LeaseGpu, expected_report_data
from tee.snp import SnpReport, parse_snp_report, snp_signature_problem
from tee.spdm import parse_report
from tee.verify import Trust, verify_gpu

VEK_NAMES = ("SEV-VCEK", "SEV-VLEK")


@dataclass(frozen=True)
class TenantPolicy:
    """What the tenant accepts. `gpus`: how many GPUs the lease has (None: any, at least one
    on a GPU platform)."""

    gpus: int | None = None
    allow_debug: bool = False
    allow_migration_agent: bool = False
    allow_smt: bool = True
    min_tcb: amd.SnpTcb | None = None
    require_measurements: bool = True
    max_vmpl: int = 0


@dataclass(frozen=True)
class LeaseTrust:
    gpu: Trust = field(default_factory=Trust)  # NVIDIA roots, RIMs given by hand, the time
    amd_roots: dict[str, amd.AmdRoots] = field(default_factory=amd.pinned_roots)
    vek: x509.Certificate | None = None  # a VCEK/VLEK the tenant fetched
    bundle: Bundle | None = None


def verify_lease(answer: LeaseAnswer, nonce: bytes, tls_pubkey_der: bytes | None = None,
                 policy: TenantPolicy | None = None,
                 trust: LeaseTrust | None = None) -> Verdict:
    policy, trust = policy or TenantPolicy(), trust or LeaseTrust()
    expected = expected_report_data(nonce, tls_pubkey_der)
    checks = [_binding_check(answer, tls_pubkey_der)]
    checks += _cpu_checks(answer, expected, policy, trust)
    checks.append(_gpu_count_check(answer, policy))
    for gpu in answer.gpus:
        checks += _gpu_checks(gpu, expected[:32], policy, trust)
    return Verdict(tuple(checks))


def _check(name: str, problem: str | None, ok: str) -> Check:
    return Check(name, PASS if problem is None else FAIL, ok if problem is None else problem)


def _binding_check(answer: LeaseAnswer, tls_pubkey_der: bytes | None) -> Check:
    if tls_pubkey_der is not None and not answer.tls_bound:
        return Check("tls_binding", FAIL, "a TLS key was given but the answer is not bound to "
                     "it (ask the sidecar with bind_tls)")
    if tls_pubkey_der is None and answer.tls_bound:
        return Check("tls_binding", FAIL, "the answer is bound to the sidecar's TLS key: give "
                     "that key to check it")
    return Check("tls_binding", PASS, "report data is SHA-512(TLS key || nonce)"
                 if tls_pubkey_der else "report data is the nonce itself (no TLS binding)")


def _gpu_count_check(answer: LeaseAnswer, policy: TenantPolicy) -> Check:
    indexes = [g.device_index for g in answer.gpus]
    has_gpus = answer.platform.endswith("-gpu")
    if len(set(indexes)) != len(indexes):
        problem = f"a GPU answers twice (device indexes {indexes})"
    elif policy.gpus is not None and len(indexes) != policy.gpus:
        problem = f"the lease has {policy.gpus} GPUs, the answer holds {len(indexes)}"
    elif has_gpus and not indexes:
        problem = f"platform {answer.platform} but no GPU evidence"
    elif indexes and not has_gpus:
        problem = f"GPU evidence on platform {answer.platform}, which has no GPUs"
    else:
        problem = None
    return _check("gpu_count", problem, f"{len(indexes)} GPUs answered, each once")


def _gpu_checks(gpu: LeaseGpu, gpu_nonce: bytes, policy: TenantPolicy,
                trust: LeaseTrust) -> list[Check]:
    p = f"gpu{gpu.device_index}."
    gpu_trust = _gpu_trust(gpu, trust)
    evidence = GpuEvidence(gpu.device_index, f"device {gpu.device_index}", gpu.report,
                           gpu.cert_chain_pem)
    checks = [_measured(c, policy) for c in verify_gpu(evidence, gpu_nonce, gpu_trust)]
    if gpu.cec_report:
        checks.append(Check(p + "cec", SKIP, f"a {len(gpu.cec_report)}-byte CEC report follows "
                            "the GPU report; it is not verified", False))
    if trust.bundle is not None:
        checks.append(_gpu_revocation(p, gpu, trust))
        if not trust.gpu.rims:  # the RIMs came from the bundle, with their signers' OCSP
            checks += [_rim_revocation(p, rim, trust) for rim in gpu_trust.rims]
    return checks


def _gpu_trust(gpu: LeaseGpu, trust: LeaseTrust) -> Trust:
    """The RIMs for this GPU's firmware: those given by hand, else the bundle's."""
    if trust.gpu.rims or trust.bundle is None:
        return trust.gpu
    try:
        ids = rim_ids(parse_report(gpu.report))
    except TeeError:
        return trust.gpu  # the report check names the problem
    found = tuple(rims.parse_rim(trust.bundle.rims[i], i) for i in ids if i in trust.bundle.rims)
    return replace(trust.gpu, rims=found)


def _measured(check: Check, policy: TenantPolicy) -> Check:
    if check.name.endswith(".measurements") and check.status == SKIP \
            and policy.require_measurements:
        return Check(check.name, FAIL, "no reference manifests for this GPU's firmware: give a "
                     "bundle or RIM files, or accept unmeasured firmware explicitly")
    return check


def _gpu_revocation(p: str, gpu: LeaseGpu, trust: LeaseTrust) -> Check:
    try:
        chain = load_pem_chain(gpu.cert_chain_pem, "certificate chain")
    except TeeError as exc:
        return Check(p + "revocation", FAIL, str(exc))
    problem = chain_revocation_problem(trust.bundle, chain, trust.gpu.device_root,
                                       trust.gpu.when())
    return _check(p + "revocation", problem, "OCSP: no certificate of the chain is revoked")


def _rim_revocation(p: str, rim: rims.Rim, trust: LeaseTrust) -> Check:
    problem = chain_revocation_problem(trust.bundle, list(rim.signers), trust.gpu.rim_root,
                                       trust.gpu.when(), skip_leaf=False)
    return _check(f"{p}rim[{rim.name}].revocation", problem,
                  "OCSP: no certificate of the signer's chain is revoked")


def _cpu_checks(answer: LeaseAnswer, expected: bytes, policy: TenantPolicy,
                trust: LeaseTrust) -> list[Check]:
    if answer.platform.startswith("tdx"):
        return [Check("cpu.report", FAIL, "Intel TDX quotes are not verified offline (they "
                      "need Intel's collateral)")]
    try:
        snp = parse_snp_report(answer.report)
    except TeeError as exc:
        return [Check("cpu.report", FAIL, str(exc))]
    checks = [Check("cpu.report", PASS, f"SEV-SNP report version {snp.version}"),
              _check("cpu.report_data", None if snp.report_data == expected else
                     f"report data is {snp.report_data.hex()[:32]}..., expected "
                     f"{expected.hex()[:32]}...", "report data is the tenant's")]
    vek = find_vek(answer, snp, trust)
    family = _family(snp, vek)
    # the TCB byte layout is the same for every family but Turin
    return checks + _snp_key_checks(snp, vek, family, trust) + \
        _snp_policy_checks(snp, family or "Milan", policy)


def _snp_key_checks(snp: SnpReport, vek: x509.Certificate | None, family: str | None,
                    trust: LeaseTrust) -> list[Check]:
    if vek is None or family is None:
        why = ("no VCEK or VLEK: the answer carries none; give one, or a bundle holding it"
               if vek is None else "the processor family is neither in the report nor the VEK")
        return [Check("cpu.vek_chain", FAIL, why), Check("cpu.signature", FAIL, why)]
    roots = trust.amd_roots.get(family)
    if roots is None:
        why = f"no AMD roots pinned for {family}"
        return [Check("cpu.vek_chain", FAIL, why), Check("cpu.signature", FAIL, why)]
    checks = [
        _check("cpu.vek_chain", amd.vek_chain_problem(vek, roots, trust.gpu.when()),
               f"'{describe(vek)}' leads to AMD's pinned ARK-{family}"),
        _check("cpu.signature", snp_signature_problem(snp, vek),
               "ECDSA P-384 signature verifies with the VEK"),
        _check("cpu.vek_tcb", _vek_kind_problem(snp, vek, roots)
               or amd.vek_binding_problem(vek, snp, family),
               "the VEK was issued for this chip and this reported TCB")]
    if trust.bundle is not None:
        checks.append(_check("cpu.revocation", amd_revocation_problem(
            trust.bundle, family, vek, roots, trust.gpu.when()), f"{family} CRL revokes none"))
    return checks


def _vek_kind_problem(snp: SnpReport, vek: x509.Certificate, roots: amd.AmdRoots) -> str | None:
    said = "VLEK" if amd.signed_by_vlek(snp) else "VCEK"
    given = "VLEK" if vek.issuer == roots.asvk.subject else "VCEK"
    return None if said == given else \
        f"the report says it is signed by the {said}, the key given is a {given}"


def _snp_policy_checks(snp: SnpReport, family: str, policy: TenantPolicy) -> list[Check]:
    problems = amd.policy_problems(snp, policy.allow_debug, policy.allow_migration_agent,
                                   policy.allow_smt, policy.max_vmpl)
    checks = [_check("cpu.policy", "; ".join(problems) or None,
                     f"guest policy 0x{snp.policy:x} meets the tenant's")]
    tcb = amd.reported_tcb(snp, family)
    if policy.min_tcb is None:
        checks.append(Check("cpu.tcb", SKIP, f"reported TCB {tcb}; no minimum given", False))
    else:
        low = tcb.below(policy.min_tcb)
        checks.append(_check("cpu.tcb", "reported TCB is below the minimum: " + ", ".join(low)
                             if low else None, f"reported TCB {tcb} meets {policy.min_tcb}"))
    return checks


def _family(snp: SnpReport, vek: x509.Certificate | None) -> str | None:
    try:
        family = amd.report_family(snp)
    except TeeError:
        return None
    return family or (amd.vek_family(vek) if vek is not None else None)


def find_vek(answer: LeaseAnswer, snp: SnpReport,
              trust: LeaseTrust) -> x509.Certificate | None:
    """The answer's own VEK first (the sidecar may attach one), then the tenant's, then the
    bundle's VCEK for this chip and TCB."""
    for cert in _answer_certs(answer):
        if _common_name(cert) in VEK_NAMES:
            return cert
    if trust.vek is not None:
        return trust.vek
    if trust.bundle is None:
        return None
    try:
        family = amd.report_family(snp)
    except TeeError:
        return None
    for fam in [family] if family else list(amd.FAMILIES):
        key = vcek_key(fam, amd.hw_id_for_kds(snp, fam), amd.reported_tcb(snp, fam))
        if key in trust.bundle.vceks:
            return load_certificate(trust.bundle.vceks[key], f"bundle VCEK {key}")
    return None


def _answer_certs(answer: LeaseAnswer) -> list[x509.Certificate]:
    certs: list[x509.Certificate] = []
    try:
        if answer.cert_chain:
            certs += (load_pem_chain(answer.cert_chain, "cert_chain") if PEM_MARK in
                      answer.cert_chain else [load_certificate(answer.cert_chain, "cert_chain")])
        if answer.auxblob:
            certs += list(aux_certificates(answer.auxblob).values())
    except TeeError:
        return certs  # unreadable attachments are ignored: the tenant's own VEK may follow
    return certs


def _common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""

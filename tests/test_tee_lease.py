"""`sunrig verify-lease`: recorded genuine evidence passes, each tampering fails on its check.

Recorded evidence (tests/data/tee/<source>/README.md says where each file comes from): SEV-SNP
reports with their VCEK and VLEK from trustee, single and four-GPU Hopper evidence from NVIDIA's
attestation SDK, and the Hopper sample shipped with the host verifier. No recorded SEV-SNP report
binds a recorded GPU nonce, so answers that join CPU and GPUs carry an SNP report signed by a
test AMD chain made here (AmdTestChain) and pinned in place of AMD's; the GPU evidence in them is
genuine. Answers are encoded as the sidecar encodes them (tee.sidecar.answer_json).
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from node.cli.commands import main
from tee import amd
from tee.bundle import vcek_key
from tee.certs import describe
from tee.evidence import PASS, TeeError
from tee.lease import LeaseTrust, TenantPolicy, verify_lease
from tee.rim import parse_rim
from tee.sidecar import LeaseGpu, answer_json, parse_answer, split_gpu_blob
from tee.verify import Trust
from tests.tee_helpers import CHAIN_PEM, REPORT, RIM_FILES, TEE_DATA

AT = datetime(2025, 6, 1, tzinfo=UTC)  # inside every recorded certificate's validity
TRUSTEE, SDK = TEE_DATA / "trustee", TEE_DATA / "attestation-sdk"
SNP_REPORT = (TRUSTEE / "test-report.bin").read_bytes()
VCEK = x509.load_der_x509_certificate((TRUSTEE / "test-vcek.der").read_bytes())
VLEK_REPORT = (TRUSTEE / "test-vlek-report.bin").read_bytes()
VLEK = x509.load_der_x509_certificate((TRUSTEE / "test-vlek.der").read_bytes())
TAIL = bytes(range(32))  # the second half of a nonce, which only the CPU report carries


def recorded_gpus(name: str) -> list[LeaseGpu]:
    """An attestation-SDK evidence file as the sidecar would concatenate each GPU's parts."""
    doc = json.loads((SDK / name).read_text())
    return [split_gpu_blob(i, base64.b64decode(g["evidence"]) + base64.b64decode(g["certificate"]))
            for i, g in enumerate(doc)]


def gpu_nonce(gpus: list[LeaseGpu]) -> bytes:
    return gpus[0].report[4:36]


SHIPPED_GPU = LeaseGpu(0, REPORT, CHAIN_PEM)
GPU_SETS = {"shipped": [SHIPPED_GPU], "sdk-single": recorded_gpus("hopper_evidence.json"),
            "sdk-four": recorded_gpus("multi_gpu_hopper.json")}


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test AMD"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _int_ext(value: int) -> bytes:
    body = value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big")
    return b"\x02" + bytes([len(body)]) + body


class AmdTestChain:
    """A Milan-like ARK -> ASK/ASVK -> VCEK chain (RSA-PSS CAs, P-384 VCEK, AMD's extensions)
    and SEV-SNP reports (version 3, CPUID family 0x19 model 0x01) signed by the VCEK."""

    CHIP = bytes(range(64))

    def __init__(self, tcb: tuple[int, int, int, int] = (3, 0, 8, 115)) -> None:
        self.tcb = tcb
        self.ark_key, self.ask_key = (rsa.generate_private_key(65537, 2048) for _ in range(2))
        self.vcek_key = ec.generate_private_key(ec.SECP384R1())
        self.ark = self._cert("ARK-Milan", self.ark_key, "ARK-Milan", self.ark_key, True)
        ask = self._cert("SEV-Milan", self.ask_key, "ARK-Milan", self.ark_key, True)
        asvk = self._cert("SEV-VLEK-Milan", self.ask_key, "ARK-Milan", self.ark_key, True)
        self.roots = {"Milan": amd.AmdRoots(ark=self.ark, ask=ask, asvk=asvk)}
        self.vcek = self._cert("SEV-VCEK", self.vcek_key, "SEV-Milan", self.ask_key, False)

    def _cert(self, cn: str, key, issuer: str, issuer_key, ca: bool) -> x509.Certificate:
        b = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(issuer))
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(AT - timedelta(days=30)).not_valid_after(AT + timedelta(days=30))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            for oid, value in zip(("3.1", "3.2", "3.3", "3.8"), self.tcb, strict=True):
                b = b.add_extension(x509.UnrecognizedExtension(
                    x509.ObjectIdentifier("1.3.6.1.4.1.3704.1." + oid), _int_ext(value)), False)
            b = b.add_extension(x509.UnrecognizedExtension(
                amd.HW_ID_OID, b"\x04\x40" + self.CHIP), False)
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
        return b.sign(issuer_key, hashes.SHA384(), rsa_padding=pss)

    def report(self, report_data: bytes, policy: int = 0x30000,
               tcb: tuple[int, int, int, int] | None = None) -> bytes:
        bl, tee, snp, ucode = tcb or self.tcb
        tcb_raw = bytes([bl, tee, 0, 0, 0, 0, snp, ucode])
        body = bytearray(0x2A0)
        struct.pack_into("<IIQ", body, 0, 3, 0, policy)
        struct.pack_into("<II", body, 0x30, 0, 1)
        body[0x38:0x40] = tcb_raw
        body[0x50:0x90] = report_data
        body[0x180:0x188] = tcb_raw
        body[0x188:0x18A] = b"\x19\x01"
        body[0x1A0:0x1E0] = self.CHIP
        r, s = decode_dss_signature(self.vcek_key.sign(bytes(body), ec.ECDSA(hashes.SHA384())))
        signature = r.to_bytes(72, "little") + s.to_bytes(72, "little")
        return bytes(body) + signature + bytes(0x4A0 - 0x2A0 - len(signature))

    def trust(self, **kw) -> LeaseTrust:
        return LeaseTrust(gpu=Trust(at=AT), amd_roots=self.roots, vek=self.vcek, **kw)


@pytest.fixture(scope="module")
def test_amd() -> AmdTestChain:
    return AmdTestChain()


def answer(platform: str, report: bytes, gpus=(), **kw):
    """Through the wire format and back, as the tenant receives it."""
    return parse_answer(answer_json(platform, report, list(gpus), **kw), "answer")


def failed(verdict) -> set[str]:
    return {c.name for c in verdict.failed}


def flip(data: bytes, pos: int) -> bytes:
    return data[:pos] + bytes([data[pos] ^ 0x01]) + data[pos + 1:]


GENUINE_TRUST = LeaseTrust(gpu=Trust(at=AT))
NO_RIMS = TenantPolicy(require_measurements=False)


def genuine_cpu(report: bytes = SNP_REPORT, vek: x509.Certificate = VCEK, **policy):
    """A CPU-only answer from a recorded SNP report; the tenant's nonce is its report data."""
    verdict = verify_lease(answer("snp", report), report[0x50:0x90],
                           policy=TenantPolicy(gpus=0, **policy),
                           trust=replace(GENUINE_TRUST, vek=vek))
    return verdict


def gpu_answer(amd_: AmdTestChain, gpus: list[LeaseGpu], **kw):
    nonce = gpu_nonce(gpus) + TAIL
    return answer("snp-gpu", amd_.report(nonce, **kw), gpus), nonce


# --- genuine answers -------------------------------------------------------------------------

@pytest.mark.parametrize(("report", "vek"), [(SNP_REPORT, VCEK), (VLEK_REPORT, VLEK)],
                         ids=["vcek", "vlek"])
def test_recorded_snp_answers_pass_with_amds_pinned_milan_root(report, vek):
    verdict = genuine_cpu(report, vek, max_vmpl=1)  # trustee's VLEK report is from VMPL 1
    assert verdict.passed, verdict.failed
    assert "ARK-Milan" in verdict.check("cpu.vek_chain").detail


def test_a_vcek_attached_by_the_sidecar_is_used(test_amd):
    der = VCEK.public_bytes(serialization.Encoding.DER)
    verdict = verify_lease(answer("snp", SNP_REPORT, cert_chain=der), SNP_REPORT[0x50:0x90],
                           policy=TenantPolicy(gpus=0), trust=GENUINE_TRUST)
    assert verdict.passed, verdict.failed


@pytest.mark.parametrize("name", sorted(GPU_SETS))
def test_recorded_gpu_evidence_passes_inside_a_bound_answer(test_amd, name):
    gpus = GPU_SETS[name]
    ans, nonce = gpu_answer(test_amd, gpus)
    verdict = verify_lease(ans, nonce, policy=replace(NO_RIMS, gpus=len(gpus)),
                           trust=test_amd.trust())
    assert verdict.passed, verdict.failed
    assert {f"gpu{g.device_index}.signature" for g in gpus} <= {
        c.name for c in verdict.checks if c.status == PASS}


def test_a_tls_bound_answer_passes_with_the_sidecars_key_only(test_amd):
    key = ec.generate_private_key(ec.SECP384R1()).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    nonce = bytes(range(64))
    bound = answer("snp", test_amd.report(hashlib.sha512(key + nonce).digest()), tls_bound=True)
    policy = TenantPolicy(gpus=0)
    assert verify_lease(bound, nonce, key, policy, test_amd.trust()).passed
    other = ec.generate_private_key(ec.SECP384R1()).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert failed(verify_lease(bound, nonce, other, policy, test_amd.trust())) == {
        "cpu.report_data"}
    assert failed(verify_lease(bound, nonce, None, policy, test_amd.trust())) == {
        "tls_binding", "cpu.report_data"}


# --- one tampering, one failed check ---------------------------------------------------------

@pytest.mark.parametrize(("pos", "what"), [(0x90, "measurement"), (0x1A0, "chip id"),
                                           (0x2A0, "signature r"), (0x2E8, "signature s")])
def test_a_flipped_byte_in_the_snp_report_fails_the_signature_only(pos, what):
    verdict = genuine_cpu(flip(SNP_REPORT, pos))
    expected = {"cpu.signature", "cpu.vek_tcb"} if what == "chip id" else {"cpu.signature"}
    assert failed(verdict) == expected


def test_a_flipped_byte_in_a_gpus_measurements_fails_its_signature_only(test_amd):
    gpus = list(GPU_SETS["sdk-four"])
    gpus[2] = replace(gpus[2], report=flip(gpus[2].report, 60))
    ans, nonce = gpu_answer(test_amd, gpus)
    assert failed(verify_lease(ans, nonce, policy=NO_RIMS, trust=test_amd.trust())) == {
        "gpu2.signature"}


def test_a_flipped_byte_in_a_gpus_signature_fails_its_signature_only(test_amd):
    gpus = list(GPU_SETS["sdk-four"])
    gpus[1] = replace(gpus[1], report=flip(gpus[1].report, len(gpus[1].report) - 1))
    ans, nonce = gpu_answer(test_amd, gpus)
    assert failed(verify_lease(ans, nonce, policy=NO_RIMS, trust=test_amd.trust())) == {
        "gpu1.signature"}


def _pem(certs: list[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def test_a_flipped_byte_in_a_gpu_certificate_fails_its_chain_only(test_amd):
    gpus = list(GPU_SETS["sdk-four"])
    certs = x509.load_pem_x509_certificates(gpus[3].cert_chain_pem)
    der = certs[2].public_bytes(serialization.Encoding.DER)
    certs[2] = x509.load_der_x509_certificate(flip(der, len(der) - 2))
    gpus[3] = replace(gpus[3], cert_chain_pem=_pem(certs))
    ans, nonce = gpu_answer(test_amd, gpus)
    assert failed(verify_lease(ans, nonce, policy=NO_RIMS, trust=test_amd.trust())) == {
        "gpu3.cert_chain"}


def test_a_gpu_chain_to_a_foreign_root_fails_its_chain_only(test_amd):
    gpus = list(GPU_SETS["sdk-single"])
    certs = x509.load_pem_x509_certificates(gpus[0].cert_chain_pem)
    key = ec.generate_private_key(ec.SECP384R1())
    fake = (x509.CertificateBuilder().subject_name(certs[-1].subject)
            .issuer_name(certs[-1].subject).public_key(key.public_key())
            .serial_number(1).not_valid_before(AT - timedelta(days=1))
            .not_valid_after(AT + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA384()))
    gpus[0] = replace(gpus[0], cert_chain_pem=_pem(certs[:-1] + [fake]))
    ans, nonce = gpu_answer(test_amd, gpus)
    assert failed(verify_lease(ans, nonce, policy=NO_RIMS, trust=test_amd.trust())) == {
        "gpu0.cert_chain"}


def test_a_wrong_nonce_fails_the_cpu_and_every_gpu_nonce(test_amd):
    gpus = GPU_SETS["sdk-four"]
    ans, nonce = gpu_answer(test_amd, gpus)
    verdict = verify_lease(ans, flip(nonce, 0), policy=NO_RIMS, trust=test_amd.trust())
    assert failed(verdict) == {"cpu.report_data"} | {f"gpu{i}.nonce" for i in range(4)}


def test_a_wrong_second_half_of_the_nonce_fails_the_cpu_report_data_only(test_amd):
    ans, nonce = gpu_answer(test_amd, GPU_SETS["sdk-four"])
    verdict = verify_lease(ans, flip(nonce, 40), policy=NO_RIMS, trust=test_amd.trust())
    assert failed(verdict) == {"cpu.report_data"}


def test_a_gpu_answering_for_another_nonce_fails_its_nonce_only(test_amd):
    gpus = list(GPU_SETS["sdk-four"])
    gpus[1] = replace(SHIPPED_GPU, device_index=1)  # genuine, for its own recorded nonce
    ans, nonce = gpu_answer(test_amd, gpus)
    assert failed(verify_lease(ans, nonce, policy=NO_RIMS, trust=test_amd.trust())) == {
        "gpu1.nonce"}


def test_a_dropped_gpu_fails_the_count_only(test_amd):
    ans, nonce = gpu_answer(test_amd, GPU_SETS["sdk-four"][:3])
    verdict = verify_lease(ans, nonce, policy=replace(NO_RIMS, gpus=4), trust=test_amd.trust())
    assert failed(verdict) == {"gpu_count"}
    assert "the lease has 4 GPUs, the answer holds 3" in verdict.check("gpu_count").detail


def test_a_gpu_answering_twice_fails_the_count(test_amd):
    gpus = GPU_SETS["sdk-four"]
    ans, nonce = gpu_answer(test_amd, gpus[:3] + [replace(gpus[3], device_index=0)])
    assert "gpu_count" in failed(verify_lease(ans, nonce, policy=NO_RIMS,
                                              trust=test_amd.trust()))


def test_a_gpu_platform_without_gpus_fails_the_count(test_amd):
    ans = answer("snp-gpu", test_amd.report(bytes(64)))
    assert failed(verify_lease(ans, bytes(64), trust=test_amd.trust())) == {"gpu_count"}


def test_an_snp_chain_to_a_foreign_ark_fails_the_vek_chain_only(test_amd):
    foreign = AmdTestChain()
    ans, nonce = gpu_answer(foreign, GPU_SETS["sdk-single"])
    trust = replace(test_amd.trust(), vek=foreign.vcek)  # pinned: test_amd's ARK
    assert failed(verify_lease(ans, nonce, policy=NO_RIMS, trust=trust)) == {"cpu.vek_chain"}


def test_recorded_snp_evidence_fails_under_another_familys_root():
    genoa = amd.pinned_roots()["Genoa"]
    trust = replace(GENUINE_TRUST, vek=VCEK, amd_roots={"Milan": genoa})
    verdict = verify_lease(answer("snp", SNP_REPORT), SNP_REPORT[0x50:0x90],
                           policy=TenantPolicy(gpus=0), trust=trust)
    assert failed(verdict) == {"cpu.vek_chain"}


def test_a_debug_policy_fails_the_policy_only(test_amd):
    ans, nonce = gpu_answer(test_amd, GPU_SETS["sdk-single"], policy=0x30000 | 1 << 19)
    verdict = verify_lease(ans, nonce, policy=NO_RIMS, trust=test_amd.trust())
    assert failed(verdict) == {"cpu.policy"}
    assert "debugging" in verdict.check("cpu.policy").detail


def test_a_migration_agent_fails_the_policy_unless_the_tenant_allows_it(test_amd):
    ans, nonce = gpu_answer(test_amd, GPU_SETS["sdk-single"], policy=0x30000 | 1 << 18)
    assert failed(verify_lease(ans, nonce, policy=NO_RIMS, trust=test_amd.trust())) == {
        "cpu.policy"}
    allow = replace(NO_RIMS, allow_migration_agent=True)
    assert verify_lease(ans, nonce, policy=allow, trust=test_amd.trust()).passed


def test_a_report_from_vmpl_1_fails_the_policy_unless_the_tenant_accepts_it():
    verdict = genuine_cpu(VLEK_REPORT, VLEK)
    assert failed(verdict) == {"cpu.policy"}
    assert "VMPL 1" in verdict.check("cpu.policy").detail


def test_smt_fails_the_recorded_policy_when_the_tenant_refuses_it():
    assert failed(genuine_cpu(allow_smt=False)) == {"cpu.policy"}  # policy 0x3001f allows SMT


def test_a_reported_tcb_below_the_minimum_fails_the_tcb_only():
    verdict = genuine_cpu(min_tcb=amd.SnpTcb(boot_loader=3, tee=0, snp=9, microcode=115))
    assert failed(verdict) == {"cpu.tcb"}
    assert "snp 8 < 9" in verdict.check("cpu.tcb").detail
    assert genuine_cpu(min_tcb=amd.SnpTcb(3, 0, 8, 115)).passed


def test_a_report_for_another_tcb_than_the_vceks_fails_the_vek_tcb_only(test_amd):
    ans, nonce = gpu_answer(test_amd, GPU_SETS["sdk-single"], tcb=(3, 0, 7, 115))
    verdict = verify_lease(ans, nonce, policy=NO_RIMS, trust=test_amd.trust())
    assert failed(verdict) == {"cpu.vek_tcb"}


@pytest.mark.parametrize("name", ["test-vcek-invalid-legacy.der", "test-vcek-invalid-new.der"])
def test_trustees_invalid_vceks_are_refused(name):
    vcek = x509.load_der_x509_certificate((TRUSTEE / name).read_bytes())
    verdict = genuine_cpu(vek=vcek)
    assert {"cpu.vek_chain", "cpu.signature"} <= failed(verdict)


def test_a_vlek_report_checked_with_a_vcek_fails():
    assert {"cpu.signature", "cpu.vek_tcb"} <= failed(genuine_cpu(VLEK_REPORT, VCEK))


def test_no_vek_anywhere_fails_named():
    verdict = verify_lease(answer("snp", SNP_REPORT), SNP_REPORT[0x50:0x90],
                           policy=TenantPolicy(gpus=0), trust=GENUINE_TRUST)
    assert "no VCEK or VLEK" in verdict.check("cpu.vek_chain").detail


def test_gpu_measurements_are_required_unless_the_tenant_waives_them(test_amd):
    ans, nonce = gpu_answer(test_amd, GPU_SETS["sdk-single"])
    assert failed(verify_lease(ans, nonce, trust=test_amd.trust())) == {"gpu0.measurements"}


def test_rims_for_other_firmware_fail_the_rim_version_checks(test_amd):
    ans, nonce = gpu_answer(test_amd, GPU_SETS["sdk-single"])
    rims = tuple(parse_rim(p.read_bytes(), p.name) for p in RIM_FILES)
    trust = replace(test_amd.trust(), gpu=Trust(at=AT, rims=rims))
    bad = failed(verify_lease(ans, nonce, trust=trust))
    assert {f"gpu0.rim[{p.name}].version" for p in RIM_FILES} <= bad


def test_a_tdx_answer_is_refused_as_unverifiable_offline(test_amd):
    ans = answer("tdx", bytes(1024))
    assert "Intel TDX" in verify_lease(ans, bytes(64)).check("cpu.report").detail


# --- the wire format -------------------------------------------------------------------------

def test_the_sidecars_concatenation_splits_back_with_a_cec_report():
    gpu = GPU_SETS["sdk-single"][0]
    blob = gpu.report + b"CEC-REPORT" + gpu.cert_chain_pem
    back = split_gpu_blob(5, blob)
    assert (back.report, back.cec_report, back.cert_chain_pem) == (
        gpu.report, b"CEC-REPORT", gpu.cert_chain_pem)


def _with_parts(gpu: LeaseGpu, chain: bytes) -> bytes:
    enc = lambda b: base64.b64encode(b).decode()  # noqa: E731
    doc = json.loads(answer_json("snp-gpu", SNP_REPORT, [gpu]))
    doc["gpu_reports"][0].update(attestation_report=enc(gpu.report),
                                 cec_report=enc(gpu.cec_report), certificate_chain=enc(chain))
    return json.dumps(doc).encode()


def test_parts_sent_apart_are_read_and_must_match_the_concatenation():
    gpu = replace(GPU_SETS["sdk-single"][0], cec_report=b"CEC")
    assert parse_answer(_with_parts(gpu, gpu.cert_chain_pem), "a").gpus[0] == gpu
    with pytest.raises(TeeError, match="report differs from attestation_report"):
        parse_answer(_with_parts(gpu, CHAIN_PEM), "a")


def test_a_cec_report_is_named_as_unverified_and_does_not_decide(test_amd):
    gpu = GPU_SETS["sdk-single"][0]
    ans, nonce = gpu_answer(test_amd, [replace(gpu, cec_report=b"CEC-REPORT")])
    verdict = verify_lease(ans, nonce, policy=NO_RIMS, trust=test_amd.trust())
    assert verdict.passed and "not verified" in verdict.check("gpu0.cec").detail


@pytest.mark.parametrize(("doc", "named"), [
    ({"tee_platform": "sev"}, "tee_platform"),
    ({"tee_platform": "snp"}, "report"),
    ({"tee_platform": "snp", "report": "!!"}, "report is not valid base64"),
    ({"tee_platform": "snp-gpu", "report": "AA==", "gpu_reports": [{"report": "AA=="}]},
     "device_index"),
    ({"tee_platform": "snp", "report": "AA==", "tls_bound": "yes"}, "tls_bound"),
])
def test_a_malformed_answer_is_refused_naming_the_field(doc, named):
    with pytest.raises(TeeError, match=named):
        parse_answer(json.dumps(doc).encode(), "answer")


# --- the command -----------------------------------------------------------------------------

def test_the_command_exits_0_on_a_genuine_answer_and_1_naming_a_tampering(tmp_path, capsys):
    good, bad, vek = tmp_path / "good.json", tmp_path / "bad.json", tmp_path / "vcek.der"
    good.write_bytes(answer_json("snp", SNP_REPORT, []))
    bad.write_bytes(answer_json("snp", flip(SNP_REPORT, 0x90), []))
    vek.write_bytes(VCEK.public_bytes(serialization.Encoding.DER))
    args = ["--nonce", SNP_REPORT[0x50:0x90].hex(), "--vek", str(vek), "--gpus", "0",
            "--at", AT.isoformat()]
    assert main(["verify-lease", str(good), *args]) == 0
    assert main(["verify-lease", str(bad), *args]) == 1
    assert "verdict: FAIL (cpu.signature)" in capsys.readouterr().out
    b64 = base64.b64encode(SNP_REPORT[0x50:0x90]).decode()
    assert main(["verify-lease", str(good), *args[2:], "--nonce", b64, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["passed"] is True


@pytest.mark.parametrize(("extra", "named"), [
    (["--nonce", "abcd"], "--nonce must be 64 bytes"),
    (["--nonce", "zz" * 64], "--nonce is neither"),
    (["--min-tcb", "bl=x"], "--min-tcb"),
    (["--tls-pubkey", "not-a-key"], "--tls-pubkey"),
])
def test_the_command_exits_2_on_bad_input_naming_it(tmp_path, capsys, extra, named):
    path = tmp_path / "a.json"
    path.write_bytes(answer_json("snp", SNP_REPORT, []))
    args = ["verify-lease", str(path), "--nonce", "00" * 64] + extra
    assert main(args) == 2
    assert named in capsys.readouterr().err


# --- AMD's pinned roots and layouts ----------------------------------------------------------

@pytest.mark.parametrize("family", amd.FAMILIES)
def test_each_pinned_ark_is_self_signed_and_signs_its_ask_and_asvk(family):
    roots = amd.pinned_roots()[family]
    assert (describe(roots.ark), describe(roots.ask), describe(roots.asvk)) == (
        f"ARK-{family}", f"SEV-{family}", f"SEV-VLEK-{family}")
    for cert in (roots.ark, roots.ask, roots.asvk):
        cert.verify_directly_issued_by(roots.ark)


def test_turin_tcb_layout_and_offline_store_name_follow_trustee():
    # trustee deps/verifier/src/snp/mod.rs test_format_tcb_prefix: Turin bl=3 tee=1 snp=8
    # ucode=15 fmc=5 is stored as "bl03_tee01_snp08_ucode15_fmc05"
    tcb = amd.SnpTcb.from_raw(bytes([5, 3, 1, 8, 0, 0, 0, 15]), "Turin")
    assert tcb == amd.SnpTcb(boot_loader=3, tee=1, snp=8, microcode=15, fmc=5)
    assert vcek_key("Turin", "ab", tcb) == "Turin/ab/bl03_tee01_snp08_ucode15_fmc05"
    milan = amd.SnpTcb.from_raw(bytes([2, 0, 0, 0, 0, 0, 6, 21]), "Milan")
    assert vcek_key("Milan", "cd", milan) == "Milan/cd/bl02_tee00_snp06_ucode21"


def test_a_genuine_driver_rim_for_another_driver_verifies_but_fails_its_version(test_amd):
    path = SDK / "NV_GPU_DRIVER_GH100_550.144.03.xml"
    rim = parse_rim(path.read_bytes(), path.name)
    ans, nonce = gpu_answer(test_amd, GPU_SETS["sdk-single"])  # driver 590.12
    trust = replace(test_amd.trust(), gpu=Trust(at=AT, rims=(rim,)))
    verdict = verify_lease(ans, nonce, trust=trust)
    p = f"gpu0.rim[{path.name}]."
    assert {p + "signature", p + "cert_chain"} <= {c.name for c in verdict.checks
                                                    if c.status == PASS}
    assert "driver RIM is for 550.144.03, the report has 590.12" in \
        verdict.check(p + "version").detail

"""Offline verification of the real Hopper evidence, and every way of tampering with it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from cryptography import x509
from hypothesis import given, settings
from hypothesis import strategies as st

from tee.certs import shipped_root, tcb_fwids
from tee.evidence import FAIL, PASS, SKIP, CpuEvidence, Evidence
from tee.rim import Rim, measurement_problems, parse_rim
from tee.spdm import parse_report
from tee.verify import RIM_ROOT_FILE, Trust, report_binding, verify
from tests.tee_helpers import (
    CHAIN_PEM,
    NONCE,
    REPORT,
    RIM_FILES,
    SIGNED_LEN,
    FakeAmd,
    chain_certs,
    gpu_evidence,
    pem,
)

TRUST = Trust()


def statuses(verdict) -> dict[str, str]:
    return {c.name: c.status for c in verdict.checks}


def flip(data: bytes, pos: int, mask: int = 0x01) -> bytes:
    return data[:pos] + bytes([data[pos] ^ mask]) + data[pos + 1:]


def test_real_hopper_evidence_verifies():
    verdict = verify(gpu_evidence(), NONCE, TRUST)
    assert verdict.passed, verdict.failed
    assert statuses(verdict) == {"gpu0.report": PASS, "gpu0.nonce": PASS,
                                 "gpu0.cert_chain": PASS, "gpu0.signature": PASS,
                                 "gpu0.fwid": PASS, "gpu0.measurements": SKIP, "cpu": SKIP}
    assert "driver 550.90.07, VBIOS 96.00.9F.00.01" in verdict.check("gpu0.report").detail


def test_report_fields_parse():
    report = parse_report(REPORT)
    assert report.request_nonce == NONCE
    assert sorted(report.measurements) == list(range(1, 65))
    assert all(len(v) == 48 for v in report.measurements.values())
    assert report.fwid in tcb_fwids(chain_certs()[0])


@pytest.mark.parametrize("pos", [0, 3, 4, 35, 36, 37, 41, 45, 200, 3000, SIGNED_LEN - 40,
                                 SIGNED_LEN - 1])
def test_a_flipped_byte_in_the_signed_part_fails_the_signature(pos):
    verdict = verify(gpu_evidence(flip(REPORT, pos)), NONCE, TRUST)
    assert not verdict.passed
    assert verdict.check("gpu0.signature").status == FAIL


def test_a_flipped_byte_in_the_signature_fails_the_signature_only():
    verdict = verify(gpu_evidence(flip(REPORT, len(REPORT) - 10)), NONCE, TRUST)
    assert [c.name for c in verdict.failed] == ["gpu0.signature"]


@settings(max_examples=60, deadline=None)
@given(pos=st.integers(0, len(REPORT) - 1), mask=st.integers(1, 255))
def test_no_single_byte_change_ever_verifies(pos, mask):
    verdict = verify(gpu_evidence(flip(REPORT, pos, mask)), NONCE, TRUST)
    assert not verdict.passed
    assert verdict.check("gpu0.signature").status == FAIL


def test_another_nonce_fails_the_nonce_check():
    other = bytes(32)
    verdict = verify(gpu_evidence(), other, TRUST)
    assert [c.name for c in verdict.failed] == ["gpu0.nonce"]
    assert NONCE.hex() in verdict.check("gpu0.nonce").detail


def test_a_missing_certificate_breaks_the_chain():
    certs = chain_certs()
    verdict = verify(gpu_evidence(chain=pem(certs[:1] + certs[2:])), NONCE, TRUST)
    assert [c.name for c in verdict.failed] == ["gpu0.cert_chain"]
    assert "link 0" in verdict.check("gpu0.cert_chain").detail


def test_reordered_certificates_break_the_chain():
    certs = chain_certs()
    reordered = [certs[0], certs[2], certs[1]] + certs[3:]
    verdict = verify(gpu_evidence(chain=pem(reordered)), NONCE, TRUST)
    assert verdict.check("gpu0.cert_chain").status == FAIL
    assert "not issued by" in verdict.check("gpu0.cert_chain").detail


def test_a_leaf_that_is_not_first_cannot_check_the_signature():
    certs = chain_certs()
    verdict = verify(gpu_evidence(chain=pem(certs[1:] + certs[:1])), NONCE, TRUST)
    assert verdict.check("gpu0.signature").status == FAIL


def test_a_chain_to_another_root_fails():
    verdict = verify(gpu_evidence(), NONCE, replace(TRUST, device_root=shipped_root(RIM_ROOT_FILE)))
    assert [c.name for c in verdict.failed] == ["gpu0.cert_chain"]
    assert "not the trusted root 'NVIDIA CoRIM signing Root CA'" in \
        verdict.check("gpu0.cert_chain").detail


def test_a_chain_without_the_root_is_completed_with_the_shipped_one():
    verdict = verify(gpu_evidence(chain=pem(chain_certs()[:-1])), NONCE, TRUST)
    assert verdict.passed


def test_a_truncated_report_fails_on_parse_and_signature():
    verdict = verify(gpu_evidence(REPORT[:2000]), NONCE, TRUST)
    assert verdict.check("gpu0.report").status == FAIL
    assert "truncated" in verdict.check("gpu0.report").detail
    assert verdict.check("gpu0.signature").status == FAIL


def test_a_chain_that_is_not_pem_fails_named():
    verdict = verify(gpu_evidence(chain=b"hello"), NONCE, TRUST)
    assert "not PEM" in verdict.check("gpu0.cert_chain").detail
    assert verdict.check("gpu0.signature").status == FAIL


def test_a_firmware_id_the_leaf_does_not_name_fails_the_fwid_check():
    fwid_at = REPORT.index(parse_report(REPORT).fwid)
    verdict = verify(gpu_evidence(flip(REPORT, fwid_at + 5)), NONCE, TRUST)
    assert verdict.check("gpu0.fwid").status == FAIL
    assert verdict.check("gpu0.signature").status == FAIL


def test_no_gpu_evidence_never_passes():
    assert not verify(Evidence(NONCE, gpu_evidence().state, ()), NONCE, TRUST).passed


# --- reference integrity manifests -------------------------------------------------------------

def rims() -> tuple[Rim, ...]:
    return tuple(parse_rim(f.read_bytes(), f.name) for f in RIM_FILES)


def test_rim_signatures_and_chains_verify_while_the_signer_was_valid():
    trust = replace(TRUST, rims=rims(), at=datetime(2025, 1, 1, tzinfo=UTC))
    s = statuses(verify(gpu_evidence(), NONCE, trust))
    for f in RIM_FILES:
        assert s[f"gpu0.rim[{f.name}].signature"] == PASS
        assert s[f"gpu0.rim[{f.name}].cert_chain"] == PASS


def test_sample_rims_are_for_other_versions_and_say_so():
    trust = replace(TRUST, rims=rims(), at=datetime(2025, 1, 1, tzinfo=UTC))
    verdict = verify(gpu_evidence(), NONCE, trust)
    assert not verdict.passed
    assert "driver RIM is for 545.00, the report has 550.90.07" in \
        verdict.check("gpu0.rim[driver_rim_test.swidtag].version").detail
    assert "96.00.5E.00.01" in verdict.check("gpu0.rim[vbios_rim_sample.swidtag].version").detail
    assert verdict.check("gpu0.measurements").status == FAIL


def test_an_expired_rim_signer_fails_the_rim_chain_today():
    verdict = verify(gpu_evidence(), NONCE, replace(TRUST, rims=rims(),
                                                    at=datetime(2026, 11, 22, tzinfo=UTC)))
    detail = verdict.check("gpu0.rim[vbios_rim_sample.swidtag].cert_chain").detail
    assert "HCC RIM L4 Signer" in detail and "not valid at" in detail


def test_a_tampered_rim_fails_its_signature():
    raw = RIM_FILES[1].read_bytes()
    tampered = raw.replace(b'Hash0="c3f65ef7', b'Hash0="d3f65ef7', 1)
    assert tampered != raw
    rim = parse_rim(tampered, "tampered.swidtag")
    verdict = verify(gpu_evidence(), NONCE, replace(TRUST, rims=(rim,)))
    assert verdict.check("gpu0.rim[tampered.swidtag].signature").status == FAIL


def test_measurements_are_compared_with_every_alternative():
    measured = {1: b"\x01" * 48, 2: b"\x02" * 48, 3: b"\x03" * 48}
    driver = Rim("d", b"", "550.90.07", {0: (b"\x09" * 48, b"\x01" * 48)}, ())
    vbios = Rim("v", b"", "96.00.9F.00.01", {1: (b"\x02" * 48,), 2: (b"\x04" * 48,)}, ())
    problems = measurement_problems([driver, vbios], measured)
    assert problems == [f"measurement 2 (vbios) is {'03' * 8}..., v expects {'04' * 8}..."]
    both = Rim("v2", b"", "96.00.9F.00.01", {0: (b"\x01" * 48,)}, ())
    assert "active in both d and v2" in measurement_problems([driver, both], measured)[0]


# --- the CPU side: SEV-SNP ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def amd() -> FakeAmd:
    return FakeAmd()


def snp_evidence(amd: FakeAmd, nonce: bytes = NONCE, report_data: bytes | None = None):
    data = report_binding(nonce, [REPORT]) if report_data is None else report_data
    ev = gpu_evidence()
    return replace(ev, cpu=CpuEvidence("sev_guest", amd.report(data), data))


def test_an_snp_report_binding_the_gpu_evidence_verifies(amd):
    trust = replace(TRUST, vcek=amd.vcek, amd_chain=(amd.ask, amd.ark))
    verdict = verify(snp_evidence(amd), NONCE, trust)
    assert verdict.passed, verdict.failed
    assert {"cpu.binding", "cpu.report_data", "cpu.signature", "cpu.cert_chain"} <= \
        set(statuses(verdict))


def test_snp_tampering_and_wrong_keys_fail_named(amd):
    trust = replace(TRUST, vcek=amd.vcek, amd_chain=(amd.ask, amd.ark))
    ev = snp_evidence(amd)
    tampered = replace(ev, cpu=replace(ev.cpu, report=flip(ev.cpu.report, 0x95)))
    assert [c.name for c in verify(tampered, NONCE, trust).failed] == ["cpu.signature"]
    other = FakeAmd()
    wrong_vcek = verify(ev, NONCE, replace(trust, vcek=other.vcek))
    assert {c.name for c in wrong_vcek.failed} == {"cpu.signature", "cpu.cert_chain"}
    foreign = verify(ev, NONCE, replace(trust, amd_chain=(amd.ask, other.ark)))
    assert [c.name for c in foreign.failed] == ["cpu.cert_chain"]
    no_vcek = verify(ev, NONCE, TRUST)
    assert "no VCEK" in no_vcek.check("cpu.signature").detail


def test_an_snp_report_for_other_gpu_evidence_fails_the_binding(amd):
    trust = replace(TRUST, vcek=amd.vcek, amd_chain=(amd.ask, amd.ark))
    verdict = verify(snp_evidence(amd, report_data=bytes(64)), NONCE, trust)
    assert [c.name for c in verdict.failed] == ["cpu.binding"]


def test_shipped_roots_are_nvidias():
    root = shipped_root("nvidia_device_identity_root.pem")
    assert root == x509.load_pem_x509_certificates(CHAIN_PEM)[-1]

"""Collecting evidence: NVML's CC calls (patched with the real structures), configfs-tsm laid out
in a temporary directory, and the attest flow that ties them together."""

from __future__ import annotations

from pathlib import Path

import pynvml
import pytest
from cryptography.hazmat.primitives import serialization

from tee.attest import attest, collect_evidence
from tee.cpu import VCEK_GUID, aux_certificates, collect_cpu_report
from tee.evidence import CcState, GpuEvidence, TeeError
from tee.gpu import FakeTee, NvmlTee
from tee.verify import Trust, report_binding, verify
from tests.tee_helpers import CHAIN_PEM, NONCE, REPORT, FakeAmd


def _fill(array, data: bytes) -> None:
    for i, b in enumerate(data):
        array[i] = b


STATE_ON = CcState(environment="prod", cc_feature=True, devtools=False, multi_gpu_mode="none",
                   cpu_caps="amd_sev_snp", gpus_cc_capable=True, gpus_ready=True)


@pytest.fixture
def cc_gpus(monkeypatch):
    """Two Hopper GPUs in CC mode, answering with the recorded report and chain."""
    env = {"environment": pynvml.NVML_CC_SYSTEM_ENVIRONMENT_PROD,
           "ccFeature": pynvml.NVML_CC_SYSTEM_FEATURE_ENABLED,
           "devToolsMode": pynvml.NVML_CC_SYSTEM_DEVTOOLS_MODE_OFF}
    nonces = []

    def state():
        return pynvml.c_nvmlConfComputeSystemState_t(**env)

    def caps():
        return pynvml.c_nvmlConfComputeSystemCaps_t(
            cpuCaps=pynvml.NVML_CC_SYSTEM_CPU_CAPS_AMD_SEV_SNP,
            gpusCaps=pynvml.NVML_CC_SYSTEM_GPUS_CC_CAPABLE)

    def settings(ref):
        ref._obj.multiGpuMode = pynvml.NVML_CC_SYSTEM_MULTIGPU_PROTECTED_PCIE
        return pynvml.NVML_SUCCESS

    def report(handle, nonce):
        nonces.append(bytes(nonce))
        out = pynvml.c_nvmlConfComputeGpuAttestationReport_t()
        out.attestationReportSize = len(REPORT)
        _fill(out.attestationReport, REPORT)
        return out

    def cert(handle):
        out = pynvml.c_nvmlConfComputeGpuCertificate_t()
        out.attestationCertChainSize = len(CHAIN_PEM)
        _fill(out.attestationCertChain, CHAIN_PEM)
        return out

    def memory(handle):
        return pynvml.c_nvmlMemory_t(total=80 * 2**30, free=80 * 2**30, used=0)

    fns = {"nvmlInit": lambda: None, "nvmlDeviceGetCount": lambda: 2,
           "nvmlDeviceGetHandleByIndex": lambda i: f"h{i}",
           "nvmlDeviceGetUUID": lambda h: f"GPU-{h}",
           "nvmlSystemGetConfComputeState": state,
           "nvmlSystemGetConfComputeCapabilities": caps,
           "nvmlSystemGetConfComputeGpusReadyState": lambda: 1,
           "nvmlSystemGetConfComputeSettings": settings,
           "nvmlDeviceGetConfComputeProtectedMemoryUsage": memory,
           "nvmlDeviceGetConfComputeGpuAttestationReport": report,
           "nvmlDeviceGetConfComputeGpuCertificate": cert}
    for name, fn in fns.items():
        monkeypatch.setattr(pynvml, name, fn)
    return env, nonces


def test_nvml_state_reads_every_cc_field(cc_gpus):
    state = NvmlTee().state()
    assert state.mode == "on" and state.trustworthy
    assert state.environment == "prod" and state.cpu_caps == "amd_sev_snp"
    assert state.multi_gpu_mode == "protected_pcie"
    assert state.gpus_ready and state.gpus_cc_capable
    assert state.protected_memory_bytes == (80 * 2**30, 80 * 2**30)


@pytest.mark.parametrize("change, mode", [({"devToolsMode": 1}, "devtools"),
                                          ({"environment": 1}, "on"),
                                          ({"ccFeature": 0}, "off")])
def test_devtools_or_a_simulated_environment_is_never_trustworthy(cc_gpus, tmp_path, change, mode):
    cc_gpus[0].update(change)
    state = NvmlTee().state()
    assert state.mode == mode and not state.trustworthy
    _, verdict = attest(NvmlTee(), Trust(), NONCE, tmp_path / "no-tsm")
    assert not verdict.passed
    assert verdict.check("mode").status == "fail"


def test_nvml_evidence_carries_the_nonce_to_every_gpu(cc_gpus):
    evidence = NvmlTee().evidence(NONCE)
    assert [e.uuid for e in evidence] == ["GPU-h0", "GPU-h1"]
    assert evidence[0].report == REPORT and evidence[0].cert_chain_pem == CHAIN_PEM
    assert cc_gpus[1] == [NONCE, NONCE]
    with pytest.raises(TeeError, match="nonce must be 32 bytes"):
        NvmlTee().evidence(b"short")


def test_attest_passes_for_the_recorded_nonce_and_fails_for_a_fresh_one(cc_gpus, tmp_path):
    evidence, verdict = attest(NvmlTee(), Trust(), NONCE, tmp_path / "no-tsm")
    assert verdict.passed and evidence.cpu is None
    assert verdict.check("mode").status == "pass"
    assert verdict.check("gpu1.signature").status == "pass"
    _, fresh = attest(NvmlTee(), Trust(), None, tmp_path / "no-tsm")
    assert {c.name for c in fresh.failed} == {"gpu0.nonce", "gpu1.nonce"}


def test_nvml_not_supported_means_no_cc(monkeypatch):
    def unsupported():
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)

    monkeypatch.setattr(pynvml, "nvmlInit", lambda: None)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetCount", lambda: 0)
    monkeypatch.setattr(pynvml, "nvmlSystemGetConfComputeState", unsupported)
    assert NvmlTee().state().mode == "off"


def test_nvml_errors_name_the_call(cc_gpus, monkeypatch):
    def lost(handle, nonce):
        raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)

    monkeypatch.setattr(pynvml, "nvmlDeviceGetConfComputeGpuAttestationReport", lost)
    with pytest.raises(TeeError, match="nvmlDeviceGetConfComputeGpuAttestationReport failed"):
        NvmlTee().evidence(NONCE)


# --- configfs-tsm ------------------------------------------------------------------------------

def tsm_entry(root: Path, provider: str = "sev_guest", outblob: bytes = b"r" * 1184,
              auxblob: bytes | None = None) -> Path:
    """A configfs-tsm report entry as the kernel lays it out (the kernel makes the files)."""
    entry = root / "sunrig"
    entry.mkdir(parents=True)
    (entry / "provider").write_text(provider + "\n")
    (entry / "generation").write_text("1\n")
    (entry / "outblob").write_bytes(outblob)
    if auxblob is not None:
        (entry / "auxblob").write_bytes(auxblob)
    return entry


def test_cpu_report_writes_the_report_data_and_reads_the_report(tmp_path):
    entry = tsm_entry(tmp_path, auxblob=b"certs")
    data = bytes(range(64))
    cpu = collect_cpu_report(data, tmp_path)
    assert (entry / "inblob").read_bytes() == data
    assert cpu.provider == "sev_guest" and cpu.report == b"r" * 1184 and cpu.aux_blob == b"certs"
    assert entry.exists()  # an entry left by an earlier run is reused, not removed


def test_cpu_report_errors_are_clear_and_leave_no_entry_behind(tmp_path):
    with pytest.raises(TeeError, match="not a confidential VM"):
        collect_cpu_report(bytes(64), tmp_path / "missing")
    with pytest.raises(TeeError, match="must be 64 bytes"):
        collect_cpu_report(b"x", tmp_path)
    with pytest.raises(TeeError, match="cannot read .*provider"):
        collect_cpu_report(bytes(64), tmp_path)  # a plain directory: no kernel behind it
    assert not (tmp_path / "sunrig").exists()
    tsm_entry(tmp_path, provider="arm_cca_guest")
    with pytest.raises(TeeError, match="'arm_cca_guest'; supported: sev_guest, tdx_guest"):
        collect_cpu_report(bytes(64), tmp_path)


def test_evidence_binds_the_cpu_report_to_nonce_and_gpu_reports(tmp_path):
    amd = FakeAmd()
    binding = report_binding(NONCE, [REPORT])
    tsm_entry(tmp_path, outblob=amd.report(binding))
    source = FakeTee(STATE_ON, lambda nonce: [GpuEvidence(0, "GPU-0", REPORT, CHAIN_PEM)])
    evidence = collect_evidence(source, NONCE, tmp_path)
    assert (tmp_path / "sunrig" / "inblob").read_bytes() == binding
    verdict = verify(evidence, NONCE, Trust(vcek=amd.vcek, amd_chain=(amd.ask, amd.ark)))
    assert verdict.passed, verdict.failed


def test_aux_blob_certificates_are_found_by_guid():
    amd = FakeAmd()
    der = amd.vcek.public_bytes(serialization.Encoding.DER)
    table = VCEK_GUID.bytes_le + (48).to_bytes(4, "little") + len(der).to_bytes(4, "little")
    blob = table + bytes(24) + der
    assert aux_certificates(blob) == {"vcek": amd.vcek}
    with pytest.raises(TeeError, match="runs past the end"):
        aux_certificates(blob[:60])


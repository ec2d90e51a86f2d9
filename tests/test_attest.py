"""`sunrig attest` and `sunrig attest verify`, and the agent's attestation job."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

import node.attest
from node.cli.commands import main
from node.status import agent_status
from tee.evidence import CcState, GpuEvidence
from tee.gpu import FakeTee
from tee.verify import Trust
from tests.conftest import make_agent
from tests.tee_helpers import CHAIN_PEM, NONCE, REPORT, RIM_FILES, TEE_DATA

REPORT_FILE = TEE_DATA / "hopper_attestation_report.hex"
CHAIN_FILE = TEE_DATA / "hopper_cert_chain.pem"
ON = CcState(environment="prod", cc_feature=True, devtools=False, multi_gpu_mode="none",
             cpu_caps="amd_sev_snp", gpus_cc_capable=True, gpus_ready=True)


def verify_cli(*extra: str, report=REPORT_FILE, certs=CHAIN_FILE, nonce: str | None = None) -> int:
    nonce = nonce or NONCE.hex()
    return main(["attest", "verify", "--report", str(report), "--certs", str(certs),
                 "--nonce", nonce, *extra])


def test_verify_passes_the_real_evidence(capsys):
    assert verify_cli() == 0
    out = capsys.readouterr().out
    assert "PASS  gpu0.signature" in out and "verdict: PASS" in out


def test_verify_json_names_every_check(capsys):
    assert verify_cli("--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["passed"] is True
    assert {c["name"] for c in doc["checks"]} >= {"gpu0.nonce", "gpu0.signature",
                                                  "gpu0.cert_chain", "gpu0.fwid"}


def test_verify_fails_with_exit_1_on_another_nonce(capsys):
    assert verify_cli(nonce="00" * 32) == 1
    assert "FAIL  gpu0.nonce" in capsys.readouterr().out


def test_verify_with_rims_names_the_version_mismatch(capsys):
    rims = [a for f in RIM_FILES for a in ("--rim", str(f))]
    assert verify_cli(*rims, "--at", "2025-01-01T00:00:00+00:00") == 1
    out = capsys.readouterr().out
    assert "PASS  gpu0.rim[vbios_rim_sample.swidtag].signature" in out
    assert "driver RIM is for 545.00, the report has 550.90.07" in out


@pytest.mark.parametrize("content, message", [
    ("zz" * 100, "not hex: character 1 ('z')"),
    ("abc", "an odd number of digits"),
    ("11e0", "truncated"),
    ("", "empty"),
])
def test_a_report_file_that_is_not_a_report_exits_2(tmp_path, capsys, content, message):
    bad = tmp_path / "report.hex"
    bad.write_text(content)
    assert verify_cli(report=bad) == 2
    err = capsys.readouterr().err
    assert "bad input" in err and message in err


def test_other_bad_inputs_exit_2_with_the_reason(tmp_path, capsys):
    not_pem = tmp_path / "certs.pem"
    not_pem.write_text("hello")
    assert verify_cli(certs=not_pem) == 2
    assert "not PEM" in capsys.readouterr().err
    assert verify_cli(nonce="abcd") == 2
    assert "32 bytes" in capsys.readouterr().err
    assert verify_cli(nonce="xyz") == 2
    assert "not hex" in capsys.readouterr().err
    bad_rim = tmp_path / "rim.xml"
    bad_rim.write_text("<notxml")
    assert verify_cli("--rim", str(bad_rim)) == 2
    assert "not XML" in capsys.readouterr().err
    assert verify_cli(certs=tmp_path / "missing.pem") == 2
    assert "no such file" in capsys.readouterr().err.lower()
    assert verify_cli("--at", "yesterday") == 2


def test_attest_collects_and_verifies_here(monkeypatch, capsys):
    source = FakeTee(ON, lambda nonce: [GpuEvidence(0, "GPU-0", REPORT, CHAIN_PEM)])
    monkeypatch.setattr(node.attest, "NvmlTee", lambda: source)
    assert main(["attest", "--nonce", NONCE.hex(), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["passed"] and doc["state"]["mode"] == "on" and doc["nonce"] == NONCE.hex()
    assert main(["attest"]) == 1  # a fresh random nonce: the recorded report cannot match
    assert "FAIL  gpu0.nonce" in capsys.readouterr().out


def test_attest_without_a_cc_gpu_says_why(capsys):
    assert main(["attest"]) == 1  # no NVIDIA driver on this machine
    assert "attestation failed: NVML could not start" in capsys.readouterr().err


# --- the agent ---------------------------------------------------------------------------------

def _attesting_agent(tmp_path, monkeypatch, report: bytes = REPORT):
    agent, clock = make_agent(tmp_path)
    agent.parts.tee = FakeTee(ON, lambda nonce: [GpuEvidence(0, "GPU-0", report, CHAIN_PEM)])
    agent.parts.trust = Trust()
    monkeypatch.setattr("tee.attest.new_nonce", lambda: NONCE)  # the recorded report's nonce
    agent.cfg = replace(agent.cfg, tee=replace(agent.cfg.tee,
                                               configfs_tsm=str(tmp_path / "no-tsm")))
    return agent, clock


def test_host_attestation_alone_never_tells_markets_of_tee(tmp_path, monkeypatch):
    # the host's NVML evidence is the operator's diagnostic: tee/type and its premium follow the
    # host preflight's gate (tests/test_tee_gate.py), never this verdict
    agent, _ = _attesting_agent(tmp_path, monkeypatch)
    market = agent.parts.markets["sim"]
    agent.run_job("apply_roles")
    plain_capacity, plain_floor = market._offer
    assert not plain_capacity.tee
    assert agent.run_job("attest") and agent.state.tee_ok
    agent.run_job("apply_roles")
    capacity, floor = market._offer
    assert not capacity.tee and floor == pytest.approx(plain_floor)
    status = agent_status(agent)["tee"]
    assert not status["advertised"] and status["verdict"]["passed"] and status["mode"] == "on"

    agent.parts.tee = FakeTee(ON, lambda nonce: [GpuEvidence(0, "GPU-0", REPORT[:-1] + b"\0",
                                                             CHAIN_PEM)])
    agent.run_job("attest")
    assert not agent.state.tee_ok
    events = [e["message"] for e in agent.store.events(limit=20)]
    assert any(m.startswith("TEE attestation failed: gpu0.signature") for m in events)
    assert "TEE attestation passed" in events
    agent.store.close()


def test_devtools_mode_is_never_advertised(tmp_path, monkeypatch):
    agent, _ = _attesting_agent(tmp_path, monkeypatch)
    agent.parts.tee = FakeTee(replace(ON, devtools=True),
                              lambda nonce: [GpuEvidence(0, "GPU-0", REPORT, CHAIN_PEM)])
    agent.run_job("attest")
    assert not agent.state.tee_ok
    assert agent.state.tee_verdict.check("mode").status == "fail"
    agent.store.close()


def test_a_simulated_rig_reports_tee_unavailable(tmp_path):
    agent, _ = make_agent(tmp_path)
    assert agent.run_job("attest")
    assert agent_status(agent)["tee"]["available"] is False
    agent.store.close()

"""The gate on `tee/type`: the agent's preflight poll opens it only while the host preflight
passes, withdraws it (logged and recorded once) when the preflight stops passing, and the TEE
premium follows it into the market's offer."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from market_adapter.akash import AkashChain, AkashMarket, AkashPrices
from market_adapter.base import Capacity
from node.cli.commands import main
from node.config import load_config
from node.storage.store import Store
from node.tee_gate import CC_REPORT_NAME, TeeGate, gated_offer, host_preflight
from tests.test_cc_preflight import DATA, CcKube, _config, _unbind, host, kube  # noqa: F401

NOW = datetime(2026, 11, 30, 9, 15, tzinfo=UTC)


@pytest.fixture
def rig(host, kube, tmp_path):  # noqa: F811
    """A ready SEV-SNP host, its node on the fake API server, and a config that names both;
    the CC mode report where the root job leaves it, beside the store."""
    cfg = load_config(str(_config(tmp_path, kube)))
    (tmp_path / CC_REPORT_NAME).write_text((DATA / "gpu_admin_tools_cc_on.txt").read_text())
    os.utime(tmp_path / CC_REPORT_NAME, (NOW.timestamp(), NOW.timestamp()))
    return cfg, host, kube


def tee_events(store: Store) -> list[str]:
    return [e["message"] for e in reversed(store.events(limit=50)) if e["kind"] == "tee"]


def test_the_gate_opens_withdraws_once_and_reopens_with_the_preflight(rig, tmp_path, caplog):
    cfg, root, api = rig
    gate, store = TeeGate(host_preflight(cfg, root)), Store(tmp_path / "events.db")
    caplog.set_level(logging.INFO, logger="sunrig.tee")
    assert not gate.open  # nothing known before the first poll: nothing advertised
    assert gate.poll(NOW, store).passed and gate.open
    _unbind(root, api)  # an operator hands a GPU back to the host's driver
    for minutes in (5, 10, 15):
        gate.poll(NOW + timedelta(minutes=minutes), store)
        assert not gate.open and gate.last.failed[0].name == "vfio 0000:c5:00.0"
    api.labels()["nvidia.com/cc.ready.state"] = "false"  # more goes wrong: still said once
    gate.poll(NOW + timedelta(minutes=20), store)
    link = root / "sys/bus/pci/devices/0000:c5:00.0/driver"
    link.unlink()
    os.symlink("../../../../bus/pci/drivers/vfio-pci", link)
    api.labels()["nvidia.com/cc.ready.state"] = "true"
    gate.poll(NOW + timedelta(minutes=25), store)
    assert gate.open
    events = tee_events(store)
    assert [m.split(":")[0] for m in events] == ["tee/type cpu-gpu advertised",
                                                 "tee/type withdrawn",
                                                 "tee/type cpu-gpu advertised"]
    assert "vfio 0000:c5:00.0: bound to nvidia" in events[1]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0] == events[1]
    store.close()


def test_a_host_that_never_passed_says_so_once_and_never_warns(rig, tmp_path, caplog):
    cfg, root, api = rig
    api.labels()["nvidia.com/cc.mode.state"] = "devtools"
    gate, store = TeeGate(host_preflight(cfg, root)), Store(tmp_path / "events.db")
    caplog.set_level(logging.INFO, logger="sunrig.tee")
    for minutes in (0, 5):
        gate.poll(NOW + timedelta(minutes=minutes), store)
    assert not gate.open
    assert tee_events(store) == [
        "tee/type not advertised: confidential-computing preflight failed: label "
        "nvidia.com/cc.mode.state: 'devtools' (profiling and debugging open: never for a "
        "tenant), wanted 'on'"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    store.close()


def test_a_stale_cc_mode_report_closes_the_gate(rig):
    cfg, root, _ = rig
    gate = TeeGate(host_preflight(cfg, root))
    assert gate.poll(NOW + timedelta(hours=23)).passed
    assert not gate.poll(NOW + timedelta(hours=25)).passed
    assert gate.last.failed[0].name == "cc mode" and "25.0 h old" in gate.last.failed[0].detail


def test_an_unreadable_cc_mode_report_is_named(rig, tmp_path):
    cfg, root, _ = rig
    (tmp_path / CC_REPORT_NAME).write_text("nvidia-smi says CC on\n")
    result = TeeGate(host_preflight(cfg, root)).poll(NOW)
    assert [f.name for f in result.failed] == ["cc mode"]
    assert "no 'CC mode is ...' line" in result.failed[0].detail


def test_a_preflight_that_cannot_run_withdraws_and_raises(rig, tmp_path, caplog):
    cfg, root, _ = rig
    run = host_preflight(cfg, root)
    broken = {"now": False}

    def flaky(now: datetime):
        if broken["now"]:
            raise RuntimeError("sysfs went away")
        return run(now)

    gate, store = TeeGate(flaky), Store(tmp_path / "events.db")
    gate.poll(NOW, store)
    broken["now"] = True
    for _ in range(2):
        with pytest.raises(RuntimeError):
            gate.poll(NOW, store)
        assert not gate.open and gate.last is None
    assert tee_events(store)[1:] == ["tee/type withdrawn: the confidential-computing preflight "
                                     "could not run"]
    store.close()


def test_the_premium_applies_exactly_while_the_gate_is_open(rig, tmp_path):
    cfg, root, api = rig
    gate = TeeGate(host_preflight(cfg, root))
    market = AkashMarket(AkashChain("http://127.0.0.1:9", "p"), tmp_path / "offer.json",
                         AkashPrices(), 1.0, lambda: NOW)

    def offered(floor_site: float) -> dict:
        floor, tee = gated_offer(gate, floor_site, cfg.tee.premium_pct)
        market.offer(Capacity(4, "h100", 79.6, tee=tee), floor)
        return json.loads((tmp_path / "offer.json").read_text())["akash"]

    assert gated_offer(None, 2.0, 10.0) == (2.0, False)  # a rig with no gate: never TEE
    plain = offered(2.0)  # before the first poll
    assert not plain["tee"] and plain["floor_usd_per_gpu_hour"]["*"] == 2.0
    gate.poll(NOW)
    premium = offered(2.0)
    assert premium["tee"] and premium["floor_usd_per_gpu_hour"]["*"] == pytest.approx(2.2)
    api.labels().pop("katacontainers.io/kata-runtime")
    gate.poll(NOW + timedelta(minutes=5))
    withdrawn = offered(2.0)
    assert not withdrawn["tee"] and withdrawn["floor_usd_per_gpu_hour"]["*"] == 2.0
    cfg15 = replace(cfg.tee, premium_pct=15.0)
    api.labels()["katacontainers.io/kata-runtime"] = "true"
    gate.poll(NOW + timedelta(minutes=10))
    assert gated_offer(gate, 2.0, cfg15.premium_pct) == (pytest.approx(2.3), True)


def test_akash_attributes_carry_tee_only_while_the_preflight_passes(rig, tmp_path, capsys,
                                                                  monkeypatch):
    cfg_path = tmp_path / "sunrig.toml"
    _, root, api = rig
    real = host_preflight

    def on_fake_host(cfg, root_dir: Path = Path("/"), *args, **kw):
        return real(cfg, root, *args, **kw)

    monkeypatch.setattr("node.cli.akash.host_preflight", on_fake_host)
    os.utime(tmp_path / CC_REPORT_NAME)  # the command judges the report's age by the real clock
    assert main(["akash", "attributes", "--config", str(cfg_path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["tee"] and {"key": "tee/type", "value": "cpu-gpu"} in doc["attributes"]
    api.runtime_classes = []
    assert main(["akash", "attributes", "--config", str(cfg_path)]) == 0
    out, err = capsys.readouterr()
    assert "tee/type" not in out
    assert "# tee/type: left out (confidential-computing preflight failed: runtimeclass " \
           "kata-qemu-nvidia-gpu-snp: missing (the cluster has none)" in err


def test_a_simulated_rig_has_no_gate(tmp_path):
    from tests.conftest import make_agent
    agent, _ = make_agent(tmp_path)
    assert agent.parts.tee_gate is None
    agent.store.close()

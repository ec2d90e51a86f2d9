"""The starter config tells the truth: every block of sunrig.example.toml, uncommented alone, is
a config that `sunrig config check` takes; every key the code accepts is shown in one; and the
starter as it is runs no simulated part and says what it still needs configured."""

from __future__ import annotations

import re
import tomllib
from dataclasses import fields, is_dataclass, replace
from pathlib import Path
from typing import get_args, get_origin, get_type_hints

import pytest
from cryptography.hazmat.primitives import serialization
from markupsafe import escape

from node.cli.commands import main
from node.clock import SimulatedClock
from node.config import Config, SimulatedGpusConfig, load_config, parse_config
from node.gpus import GpuError, NvmlBackend
from node.service import open_agent
from node.status import agent_status
from node.wiring import parts_used, refuse_simulated, still_needs
from tests.conftest import START
from tests.tee_helpers import RIM_FILES, FakeAmd, pem

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "sunrig.example.toml"
BLOCK = re.compile(r"# --- block: ([a-z0-9-]+)(?: \(replaces starter ([a-z]+)\))? ---")
STARTER = re.compile(r"# --- starter: ([a-z]+) ---")
END = "# --- end ---"
# where the example keeps the files it names; a test keeps them in its own folder
OWNER_FOLDERS = ("/etc/sunrig/", "/var/lib/sunrig/")
NEEDS = {"site": "[energy] source", "tariff": "[tariff]", "market": "[markets.akash]",
         "capex": "[[capex.items]]"}


def example_lines() -> list[str]:
    return EXAMPLE.read_text(encoding="utf-8").splitlines()


def blocks() -> dict[str, tuple[int, int, str | None]]:
    """Each block by name: its first and last line (the markers) and the starter it replaces."""
    found: dict[str, tuple[int, int, str | None]] = {}
    lines = example_lines()
    for i, line in enumerate(lines):
        m = BLOCK.fullmatch(line)
        if m:
            end = lines.index(END, i)
            assert m[1] not in found, f"two blocks named {m[1]}"
            assert not any(BLOCK.fullmatch(x) for x in lines[i + 1:end]), f"{m[1]} is not closed"
            found[m[1]] = (i, end, m[2])
    return found


def starters() -> dict[str, tuple[int, int]]:
    lines = example_lines()
    return {m[1]: (i, lines.index(END, i)) for i, line in enumerate(lines)
            if (m := STARTER.fullmatch(line))}


def uncommented(name: str) -> str:
    """The example with one block uncommented as its reader is told to: the leading "# " of
    each of its lines removed ("##" lines stay comments), and the starter lines it replaces
    deleted."""
    lines = example_lines()
    first, last, replaces = blocks()[name]
    for i in range(first + 1, last):
        if lines[i].startswith("# "):
            lines[i] = lines[i][2:]
    if replaces:
        start, end = starters()[replaces]
        lines[start:end + 1] = [""] * (end + 1 - start)
    return "\n".join(lines) + "\n"


def with_owner_files(text: str, folder: Path) -> str:
    """The config with its /etc/sunrig and /var/lib/sunrig paths in `folder`, and each file the
    config check reads made there as the owner would have it: a token, a CA, a price series,
    the TEE trust files."""
    for prefix in OWNER_FOLDERS:
        text = text.replace(prefix, f"{folder}/")
    amd = FakeAmd()
    contents = {"vcek.pem": pem([amd.vcek]), "amd-chain.pem": pem([amd.ask, amd.ark]),
                "driver.swidtag": RIM_FILES[0].read_bytes(),
                "vbios.swidtag": RIM_FILES[1].read_bytes()}
    ca = amd.ark.public_bytes(serialization.Encoding.PEM)
    for path in re.findall(rf'"({re.escape(str(folder))}/[^"]+)"', text):
        name = Path(path).name
        data = contents.get(name) or (
            ca if name.endswith("-ca.pem") else
            b"ts_utc,eur_per_mwh\n2026-12-01T00:00:00Z,91.5\n2026-12-01T01:00:00Z,84.2\n"
            if name.endswith(".csv") else
            b"k3y-for-" + name.encode() + b"\n" if name.endswith((".key", ".token", ".password"))
            else None)
        if data is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_bytes(data)
    return text


def config_keys(cls: type = Config, prefix: str = "") -> set[str]:
    """Every dotted key the code accepts; an array of tables' keys as `name[].key`."""
    keys = set()
    hints = get_type_hints(cls)
    for f in fields(cls):
        tp, key = hints[f.name], f"{prefix}{f.name}"
        if is_dataclass(tp):
            keys |= config_keys(tp, key + ".")
        elif get_origin(tp) is tuple and is_dataclass(get_args(tp)[0]):
            keys |= config_keys(get_args(tp)[0], key + "[].")
        else:
            keys.add(key)
    return keys


def toml_keys(table: dict, prefix: str = "") -> set[str]:
    keys = set()
    for name, value in table.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict):
            keys |= toml_keys(value, key + ".")
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for item in value:
                keys |= toml_keys(item, key + "[].")
        else:
            keys.add(key)
    return keys


@pytest.mark.parametrize("name", sorted(blocks()))
def test_each_block_uncommented_alone_passes_config_check(tmp_path, capsys, name):
    path = tmp_path / "sunrig.toml"
    path.write_text(with_owner_files(uncommented(name), tmp_path / "owner"), encoding="utf-8")
    assert main(["config", "check", str(path)]) == 0, capsys.readouterr().err
    out, err = capsys.readouterr()
    assert f"{path}: ok" in out and "k3y-for-" not in out + err  # no secret is shown
    assert tomllib.loads(path.read_text(encoding="utf-8")) != tomllib.loads(
        EXAMPLE.read_text(encoding="utf-8")), f"block {name} sets nothing"


def test_a_block_with_a_file_it_names_missing_fails_config_check_naming_the_key(
        tmp_path, capsys):
    for name, key in (("markets-hyperbolic", "markets.hyperbolic.api_key_file"),
                      ("tariff-entsoe", "tariff.entsoe_token_file"),
                      ("energy-mqtt-plain", "energy.mqtt.password_file"),
                      ("tariff-day-ahead", "tariff.prices_file"),
                      ("tee", "tee.vcek")):
        path = tmp_path / f"{name}.toml"
        text = uncommented(name)
        for prefix in OWNER_FOLDERS:  # the paths moved, but no file made there
            text = text.replace(prefix, f"{tmp_path}/absent/")
        path.write_text(text, encoding="utf-8")
        assert main(["config", "check", str(path)]) == 2, name
        assert key in capsys.readouterr().err, name


def test_the_blocks_cover_every_section_and_device_kind():
    names = set(blocks())
    for wanted in ("site", "gpus", "gpus-simulated", "local", "energy-modbus-sunspec",
                   "energy-modbus-huawei", "energy-modbus-victron", "energy-modbus-sma",
                   "energy-modbus-solaredge", "energy-mqtt-plain", "energy-mqtt-tasmota",
                   "energy-mqtt-shelly", "energy-mqtt-victron", "energy-simulated",
                   "tariff-fixed", "tariff-time-of-use", "tariff-day-ahead", "tariff-awattar",
                   "tariff-entsoe", "tariff-mqtt", "markets", "markets-akash",
                   "markets-hyperbolic", "markets-sim", "kube", "planner", "capex", "tee",
                   "webui", "homeassistant", "store", "agent", "simulation", "inference"):
        assert wanted in names


def test_every_register_map_and_tariff_kind_has_a_block_that_uses_it():
    from energy.register_maps import MAPS
    maps, kinds = set(), set()
    for name in blocks():
        cfg = parse_config(uncommented(name), "example", ROOT)
        if cfg.energy.source == "modbus":
            maps.add(cfg.energy.modbus.map)
        kinds.add(cfg.tariff.kind)
    assert maps == {"", *MAPS}  # "" is SunSpec
    assert kinds == {"fixed", "day_ahead", "awattar", "entsoe", "time_of_use", "mqtt"}


def test_every_key_the_code_accepts_is_shown_in_a_block():
    shown = toml_keys(tomllib.loads("\n".join(example_lines())))
    for name in blocks():
        shown |= toml_keys(tomllib.loads(uncommented(name)))
    assert config_keys() - shown == set(), "keys the example does not show"
    assert shown - config_keys() == set(), "keys the example shows that the code refuses"


def test_the_starter_runs_no_simulated_part_and_says_what_it_still_needs(tmp_path, capsys):
    starter = load_config(EXAMPLE)
    assert [p for p in parts_used(starter) if p.simulated] == []
    assert {p.role for p in parts_used(starter)} == {"GPUs", "site", "tariff"}  # no market
    refuse_simulated(starter, str(EXAMPLE))  # `sunrig run` takes it
    needs = still_needs(starter)
    assert [n for n in needs if any(w in n for w in NEEDS.values())] == needs
    assert all(any(w in n for n in needs) for w in NEEDS.values())
    assert main(["config", "check", str(EXAMPLE)]) == 0
    out, err = capsys.readouterr()
    assert "still needs configuring:" in out and "SIMULATED" not in out + err
    assert all(f"  - {n}" in out for n in needs)


def test_run_on_the_starter_takes_the_real_gpus_or_none_never_a_simulated_rig(tmp_path, capsys):
    try:
        NvmlBackend()
    except GpuError:
        pass
    else:
        pytest.skip("this machine has NVML: `sunrig run` would serve its real GPUs")
    path = tmp_path / "sunrig.toml"
    path.write_text(EXAMPLE.read_text(encoding="utf-8")
                    + f"[store]\npath = '{tmp_path / 'sunrig.db'}'\n", encoding="utf-8")
    assert main(["run", "--config", str(path)]) == 1  # not refused (2): it cannot start
    assert "cannot start: NVML" in capsys.readouterr().err


def test_each_need_is_gone_once_its_part_is_configured():
    for name, need in (("energy-modbus-sunspec", NEEDS["site"]),
                       ("energy-mqtt-shelly", NEEDS["site"]),
                       ("tariff-fixed", NEEDS["tariff"]), ("tariff-day-ahead", NEEDS["tariff"]),
                       ("markets-akash", NEEDS["market"]),
                       ("markets-hyperbolic", NEEDS["market"]), ("capex", NEEDS["capex"])):
        needs = still_needs(parse_config(uncommented(name), "example", ROOT))
        assert not any(need in n for n in needs), name
        assert len(needs) == 3, name  # the others are still said


def test_a_simulated_part_or_a_replayed_year_is_not_taken_for_a_need():
    demo = parse_config(uncommented("energy-simulated"), "example", ROOT)
    assert not any(NEEDS["site"] in n for n in still_needs(demo))
    sim = parse_config(uncommented("markets-sim"), "example", ROOT)
    assert not any(NEEDS["market"] in n for n in still_needs(sim))
    replayed = replace(demo, tariff=replace(demo.tariff, replay=True))
    assert not any(NEEDS["tariff"] in n for n in still_needs(replayed))


def starter_agent(tmp_path: Path):
    """The agent on the starter, its GPUs simulated: this machine has no NVML, and the GPUs are
    not what is checked here."""
    starter = load_config(EXAMPLE)
    cfg = replace(starter, store=replace(starter.store, path=str(tmp_path / "sunrig.db")),
                  gpus=replace(starter.gpus, backend="simulated",
                               simulated=SimulatedGpusConfig(count=2)))
    return open_agent(cfg, clock=SimulatedClock(START, speed=0))


def test_the_agent_on_the_starter_reads_no_site_and_shows_what_it_needs(tmp_path, caplog):
    agent = starter_agent(tmp_path)
    try:
        assert agent.parts.site is None and agent.parts.markets == {}
        assert "sample_site" not in agent.jobs
        with caplog.at_level("WARNING", logger="sunrig.agent"):
            agent.run_all_once()
            agent.start()
        agent.stop()
        logged = [r.getMessage() for r in caplog.records if "still needs" in r.getMessage()]
        assert len(logged) == len(still_needs(agent.cfg)) == 4
        status = agent_status(agent)
        assert status["needs"] == still_needs(agent.cfg) and status["site"] is None
        assert agent.store.query("SELECT count(*) AS n FROM site_samples")[0]["n"] == 0
        assert agent.state.jobs["sample_gpus"].ok and agent.state.jobs["ledger"].ok
    finally:
        agent.store.close()


def test_the_overview_lists_what_the_starter_still_needs(tmp_path):
    from webui.app import create_app
    agent = starter_agent(tmp_path)
    try:
        agent.run_all_once()
        client = create_app(lambda: agent_status(agent)).test_client()
        page = client.get("/").get_data(as_text=True)
    finally:
        agent.store.close()
    assert 'id="needs"' in page
    for need in still_needs(agent.cfg):
        assert f"<li>{escape(need)}</li>" in page  # as the page escapes it

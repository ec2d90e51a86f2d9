"""No simulated money in real books: `sunrig run` takes a simulated part only where the config
allows it, and `sunrig config check` names every part and checks every file it names."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from node.cli.commands import main
from node.clock import SimulatedClock
from node.config import default_config, load_config, parse_config
from node.errors import ConfigError
from node.wiring import build_parts, config_file_problems, parts_used, refuse_simulated
from tests.conftest import START

ROOT = Path(__file__).resolve().parent.parent
PEM = "-----BEGIN CERTIFICATE-----"
REAL = """
[gpus]
backend = "nvml"
[energy]
source = "modbus"
[energy.modbus]
host = "10.0.0.5"
[tariff]
kind = "fixed"
[markets.hyperbolic]
enabled = true
api_key_file = "{key}"
"""


def write(tmp_path: Path, text: str, name: str = "sunrig.toml") -> Path:
    path = tmp_path / name
    path.write_text(text + f"[store]\npath = '{tmp_path / 'store' / 'sunrig.db'}'\n")
    return path


def key_file(tmp_path: Path, text: str = "hyp-key-Q7\n") -> Path:
    path = tmp_path / "hyperbolic.key"
    path.write_text(text)
    return path


def test_the_simulated_market_is_off_unless_a_config_turns_it_on(tmp_path):
    cfg = parse_config("", "t.toml", tmp_path)
    assert not cfg.markets.sim.enabled
    parts = build_parts(cfg, SimulatedClock(START, speed=0), tmp_path, lambda: 0.0)
    assert parts.markets == {} and parts.terms == {}
    demo = default_config()  # what `sunrig demo` runs
    assert demo.markets.sim.enabled
    refuse_simulated(demo, "<embedded default.toml>")  # and allows, so `run` of it works too


def test_config_check_names_every_real_part_and_warns_of_none(tmp_path, capsys):
    path = write(tmp_path, REAL.format(key=key_file(tmp_path)))
    assert main(["config", "check", str(path)]) == 0
    out, err = capsys.readouterr()
    for named in ("GPUs: NVML", "site: Modbus TCP 10.0.0.5:502 (SunSpec)", "tariff: fixed prices",
                  "market: Hyperbolic at https://api.hyperbolic.xyz", f"{path}: ok"):
        assert named in out
    assert "SIMULATED" not in out + err and "hyp-key-Q7" not in out + err


@pytest.mark.parametrize("config, warned", [
    ("[gpus]\nbackend = 'simulated'\n", ["GPUS", "gpus.allow_simulated"]),
    ("[energy]\nsource = 'simulated'\n", ["SITE", "energy.allow_simulated"]),
    ("[markets.sim]\nenabled = true\n", ["MARKET", "markets.sim.allow_simulated"]),
    ("[tariff]\nkind = 'day_ahead'\nreplay = true\n", ["TARIFF", "recorded year replayed"]),
])
def test_config_check_warns_loudly_of_each_simulated_part_and_still_passes(
        tmp_path, capsys, config, warned):
    real = REAL.format(key=key_file(tmp_path))
    for section in ('[gpus]\nbackend = "nvml"\n', '[energy]\nsource = "modbus"\n',
                    '[tariff]\nkind = "fixed"\n'):  # the part this case simulates instead
        if section.split("\n")[0] in config:
            real = real.replace(section, "")
    path = write(tmp_path, real + config)
    assert main(["config", "check", str(path)]) == 0
    out, err = capsys.readouterr()
    assert [line for line in err.splitlines() if "SIMULATED" in line] == [
        line for line in err.splitlines() if all(w in line for w in warned)]
    assert all(w in err for w in warned) and "[SIMULATED]" in out


@pytest.mark.parametrize("config, key", [
    ("[gpus]\nbackend = 'simulated'\n", "gpus.allow_simulated"),
    ("[gpus]\nbackend = 'nvml'\n[energy]\nsource = 'simulated'\n", "energy.allow_simulated"),
    ("[gpus]\nbackend = 'nvml'\n[energy]\nsource = 'modbus'\n[markets.sim]\nenabled = true\n",
     "markets.sim.allow_simulated"),
    ("", "gpus.allow_simulated"),  # every default is simulated but the market
    ("[gpus]\nallow_simulated = true\n[energy]\nallow_simulated = true\n"
     "[markets.sim]\nenabled = true\n", "markets.sim.allow_simulated"),
])
def test_run_refuses_a_simulated_part_naming_the_key_to_set(tmp_path, capsys, config, key):
    path = write(tmp_path, config)
    assert main(["run", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"set {key} = true" in err and str(path) in err
    assert not (tmp_path / "store").exists()  # refused before anything was stored


def test_each_simulated_part_runs_only_with_its_own_key(tmp_path):
    text = ("[gpus]\nallow_simulated = true\n[energy]\nallow_simulated = true\n"
            "[markets.sim]\nenabled = true\nallow_simulated = true\n")
    refuse_simulated(parse_config(text, "t.toml", tmp_path), "t.toml")
    for section in ("gpus", "energy", "markets.sim"):
        one_short = text.replace(f"[{section}]\n", f"[{section}]\n#", 1).replace(
            "#enabled = true\nallow", "enabled = true\n#allow") if section == "markets.sim" \
            else text.replace(f"[{section}]\nallow", f"[{section}]\n#allow")
        with pytest.raises(ConfigError) as refused:
            refuse_simulated(parse_config(one_short, "t.toml", tmp_path), "t.toml")
        assert refused.value.key == f"{section}.allow_simulated"


def test_the_shipped_configs_say_what_they_simulate():
    example = load_config(ROOT / "sunrig.example.toml")
    assert [p.role for p in parts_used(example) if p.simulated] == []
    assert not example.markets.sim.enabled
    for scenario in sorted((ROOT / "scenarios").glob("*.toml")):  # for `sunrig simulate`
        assert load_config(scenario).markets.sim.enabled, scenario


# --- files the config names ---------------------------------------------------------------------

def broken_files(tmp_path: Path) -> dict[str, Path]:
    """One broken file of each kind a config names, by the key that names it."""
    folder = tmp_path / "a-folder"
    folder.mkdir()
    empty, binary, no_pem = (tmp_path / n for n in ("empty.key", "binary.pem", "no-pem.pem"))
    empty.write_text("\n")
    binary.write_bytes(b"\xff\xfe\x00" * 50)
    no_pem.write_text("not a certificate\n")
    two_lines = tmp_path / "two-lines.token"
    two_lines.write_text("secret-T0ken\nsecond-line-S3cret\n")
    garbage = tmp_path / "garbage.der"
    garbage.write_bytes(b"\x30\x82garbage")
    return {"markets.hyperbolic.api_key_file": folder, "tariff.entsoe_token_file": two_lines,
            "energy.mqtt.password_file": empty, "homeassistant.password_file": tmp_path / "nope",
            "energy.mqtt.tls_ca_file": no_pem, "markets.akash.provider_ca_file": binary,
            "tee.rims": garbage, "tee.vcek": garbage, "tee.amd_cert_chain": no_pem,
            "site.pv_forecast_api_key_file": binary}


def test_config_check_reports_each_broken_file_naming_its_key(tmp_path, capsys):
    f = broken_files(tmp_path)
    text = f"""
[site]
pv_kwp = 10.0
pv_forecast = "forecast_solar"
pv_forecast_api_key_file = "{f['site.pv_forecast_api_key_file']}"
[energy]
source = "mqtt"
[energy.mqtt]
password_file = "{f['energy.mqtt.password_file']}"
tls_ca_file = "{f['energy.mqtt.tls_ca_file']}"
[[energy.mqtt.mappings]]
topic = "site/pv"
field = "pv_w"
[tariff]
kind = "entsoe"
entsoe_token_file = "{f['tariff.entsoe_token_file']}"
[markets.hyperbolic]
enabled = true
api_key_file = "{f['markets.hyperbolic.api_key_file']}"
[markets.akash]
enabled = true
provider_address = "akash1provider"
provider_ca_file = "{f['markets.akash.provider_ca_file']}"
[homeassistant]
enabled = true
password_file = "{f['homeassistant.password_file']}"
[tee]
rims = ["{f['tee.rims']}"]
vcek = "{f['tee.vcek']}"
amd_cert_chain = "{f['tee.amd_cert_chain']}"
"""
    path = write(tmp_path, text)
    assert main(["config", "check", str(path)]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("config error:")]
    named = {key for key in f for line in lines if f"{path}: {key}" in line}
    assert named == set(f) and len(lines) == len(f)  # one line per broken file, each by key
    assert "S3cret" not in err and "T0ken" not in err and "Traceback" not in err


@pytest.mark.parametrize("key, text", [
    ("energy.simulated.data_file", "[energy.simulated]\ndata_file = '{bad}'\n"),
    ("tariff.prices_file", "[tariff]\nkind = 'day_ahead'\nprices_file = '{bad}'\n"),
])
@pytest.mark.parametrize("content", [None, b"", b"ts_utc\n", b"\xff\xfe" * 40, b"not,a,series\n"])
def test_config_check_reads_the_series_files_the_config_names(tmp_path, capsys, key, text,
                                                              content):
    bad = tmp_path / "series.csv"
    if content is not None:
        bad.write_bytes(content)
    path = write(tmp_path, text.format(bad=bad))
    assert main(["config", "check", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: {key}: " in err and "Traceback" not in err


def test_files_of_parts_not_in_use_are_not_read(tmp_path):
    cfg = parse_config("[tariff]\nkind = 'fixed'\nentsoe_token_file = '/nowhere'\n"
                       "[markets.hyperbolic]\napi_key_file = '/nowhere'\n", "t.toml", tmp_path)
    assert config_file_problems(cfg, "t.toml") == []


# --- values read back from the store and the driver -----------------------------------------------

@pytest.mark.parametrize("stored", [
    "{broken", "[]", "null", "5", '"text"', "[" * 100_000, '{"ok": "yes"}', '{"fingerprint": 1}',
    '{"ok": true, "net_per_day": "x"}', '{"ok": true, "net_per_day": NaN}',
    '{"ok": true}', '{"ok": true, "net_per_day": true}',
])
def test_a_corrupt_stored_projection_is_ignored_logged_once_and_run_again(tmp_path, caplog,
                                                                          stored):
    from node.planning.projection import META_KEY, YearProjection, projected_date
    from node.storage.store import Store

    store = Store(tmp_path / "s.db")
    with store.transaction() as db:
        store.set_meta(db, META_KEY, stored)
    projection = YearProjection(store)
    with caplog.at_level(logging.WARNING, logger="sunrig.projection"):
        assert projection.stored() is None and projection.stored() is None
    assert len(caplog.records) == 1 and "run again" in caplog.text
    assert projected_date(projection.stored(), 1000.0, START.date()) is None
    started = []
    projection._start = lambda cfg, wanted: started.append(wanted)  # the run itself is slow
    cfg = default_config()
    projection.poll(cfg, START)
    assert started  # recomputed, for the config in use
    store.close()


@pytest.mark.parametrize("uuid", [b"GPU-\xff\xfe\x80", b"\xc3\x28", "GPU-\udcff".encode(
    "utf-8", "surrogatepass")])
def test_a_gpu_uuid_that_is_not_text_is_refused_naming_the_gpu(monkeypatch, uuid):
    import pynvml

    from tee.evidence import NONCE_BYTES, TeeError
    from tee.gpu import NvmlTee

    for name, fn in {"nvmlInit": lambda: None, "nvmlDeviceGetCount": lambda: 2,
                     "nvmlDeviceGetHandleByIndex": lambda i: i,
                     "nvmlDeviceGetUUID": lambda h: b"GPU-0a1b" if h == 0 else uuid}.items():
        monkeypatch.setattr(pynvml, name, fn)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetConfComputeGpuAttestationReport",
                        lambda h, nonce: None)  # GPU 0 has none: never reached for GPU 1
    monkeypatch.setattr(pynvml, "nvmlDeviceGetConfComputeGpuCertificate", lambda h: None)
    with pytest.raises(TeeError, match="GPU 0 .GPU-0a1b. gives no attestation evidence"):
        NvmlTee().evidence(bytes(NONCE_BYTES))
    monkeypatch.setattr(pynvml, "nvmlDeviceGetHandleByIndex", lambda i: 1 - i)
    with pytest.raises(TeeError, match="GPU 0 reports a UUID that is not ASCII text"):
        NvmlTee().evidence(bytes(NONCE_BYTES))

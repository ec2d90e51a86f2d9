from pathlib import Path

import pytest

from node.cli.commands import main
from node.config import default_config, load_config, parse_config
from node.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def parse(text: str):
    return parse_config(text, "test.toml", Path("/etc/sunrig"))


def error_of(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return info.value


def test_example_and_embedded_default_are_valid():
    example = load_config(ROOT / "sunrig.example.toml")
    assert example.gpus.backend == "nvml"
    assert example.energy.source == "none" and not example.local.schedule
    demo = default_config()
    assert demo.gpus.simulated.count == 8 and demo.markets.sim.enabled
    assert demo.capex.items[0].amount == 460000.0


def test_empty_file_gives_defaults():
    cfg = parse("")
    assert cfg.webui.host == "127.0.0.1" and cfg.webui.port == 8080
    assert cfg.site.cooling_factor == 1.2


def test_typo_names_the_key_and_what_is_allowed():
    err = error_of("[site]\ntimezon = 'UTC'\n")
    assert err.file == "test.toml" and err.key == "site.timezon"
    assert "unknown key" in str(err) and "timezone" in str(err)


def test_unknown_section_is_an_error():
    assert error_of("[sitee]\n").key == "sitee"


def test_wrong_type_names_the_key_and_the_expected_type():
    err = error_of("[webui]\nport = '8080'\n")
    assert err.key == "webui.port" and "whole number" in str(err)
    assert error_of("[site]\ncooling_factor = true\n").key == "site.cooling_factor"
    assert error_of("[webui]\nport = 80.5\n").key == "webui.port"


def test_integers_are_accepted_where_numbers_are_asked():
    assert parse("[site]\nbreaker_limit_w = 20000\n").site.breaker_limit_w == 20000.0


def test_ranges_choices_and_formats_are_checked():
    assert "at most 65535" in str(error_of("[webui]\nport = 70000\n"))
    assert error_of("[gpus]\nbackend = 'cuda'\n").key == "gpus.backend"
    assert "IANA" in str(error_of("[site]\ntimezone = 'Mars/Olympus'\n"))
    assert error_of("[tariff]\nimport_formula = 'spot ** 2'\n").key == "tariff.import_formula"
    err = error_of("[[local.schedule]]\ndays = ['mon', 'funday']\nstart = '08:00'\n"
                   "end = '18:00'\ngpus = 2\n")
    assert err.key == "local.schedule[0].days[1]"
    err = error_of("[[local.schedule]]\ndays = ['mon']\nstart = '8am'\nend = '18:00'\ngpus = 2\n")
    assert err.key == "local.schedule[0].start"
    assert error_of("[[capex.items]]\nname = 'x'\namount = 1\n").key == "capex.items[0].date"


def test_cross_field_checks():
    assert error_of("[gpus.simulated]\nmin_power_limit_w = 800\n").key == \
        "gpus.simulated.min_power_limit_w"
    assert "allow_lan" in str(error_of("[webui]\nhost = '0.0.0.0'\n"))
    assert parse("[webui]\nhost = '0.0.0.0'\nallow_lan = true\n").webui.allow_lan


def test_relative_paths_are_taken_from_the_config_folder():
    cfg = parse("[store]\npath = 'data/sunrig.db'\n")
    assert cfg.store.path == "/etc/sunrig/data/sunrig.db"
    cfg = parse("[markets.akash]\nprovider_ca_file = 'akash-ca.pem'\n")
    assert cfg.markets.akash.provider_ca_file == "/etc/sunrig/akash-ca.pem"
    assert error_of('[markets.akash]\nprovider_ca_file = "ca\\u0007.pem"\n').key == \
        "markets.akash.provider_ca_file"


def test_broken_toml_is_a_config_error():
    assert "not valid TOML" in str(error_of("[site\n"))


def test_config_check_exits_0_or_2(tmp_path, capsys):
    good = tmp_path / "good.toml"
    good.write_text("[site]\nname = 'x'\n")
    assert main(["config", "check", str(good)]) == 0
    bad = tmp_path / "bad.toml"
    bad.write_text("[gpus]\nbackend = 'simulated'\n[gpus.simulated]\ncount = 'eight'\n")
    assert main(["config", "check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "gpus.simulated.count" in err and str(bad) in err
    assert main(["config", "check", str(tmp_path / "missing.toml")]) == 2


@pytest.mark.parametrize("listen, any_ok, why", [
    ("0.0.0.0:8787", False, "listens on every interface"),
    ("[::]:8787", False, "listens on every interface"),
    ("localhost:8787", False, "not host:port with an IP address"),
    ("10.0.0.5:99999", False, "port 99999"),
])
def test_the_bid_endpoints_address_is_checked_with_its_sibling_when_the_file_is_read(
        listen, any_ok, why):
    text = f"[markets.akash]\nbid_listen = '{listen}'\nbid_listen_any = {str(any_ok).lower()}\n"
    with pytest.raises(ConfigError, match="markets.akash.bid_listen") as err:
        parse_config(text, "t.toml", Path("."))
    assert why in str(err.value)
    wide = "[markets.akash]\nbid_listen = '0.0.0.0:8787'\nbid_listen_any = true\n"
    assert parse_config(wide, "t.toml", Path(".")).markets.akash.bid_listen_any

"""The [inference] section: each bad value is a ConfigError naming its key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from node.config import parse_config
from node.errors import ConfigError
from node.inference.names import check_model_name, check_user_name
from node.inference.settings import check_inference, command_line

SERVER = '[[inference.servers]]\nmodel = "tiny"\nmodel_path = "/m/tiny.gguf"\n'


def parsed(text: str):
    cfg = parse_config(text, "t.toml", Path("/etc/sunrig"))
    check_inference(cfg.inference, "t.toml")
    return cfg


BAD_MODEL_NAMES = ["", " tiny", "tiny model", "-lead", "a" * 129, "tiny\n", "m\u00e9", "x;rm",
                   "../etc"]


@pytest.mark.parametrize("name", BAD_MODEL_NAMES)
def test_a_model_name_outside_the_rule_is_refused_naming_the_key(name: str):
    text = f"[[inference.servers]]\nmodel = {json.dumps(name)}\n"
    with pytest.raises(ConfigError) as exc:
        parsed(text)
    assert exc.value.key == "inference.servers[0].model"
    with pytest.raises(ValueError):
        check_model_name(name)


@pytest.mark.parametrize("name", ["", "a b", "-x", "x" * 65, "a/b", "\u202eevil", None, 3])
def test_a_user_name_outside_the_rule_is_refused(name):
    with pytest.raises(ValueError, match="user name"):
        check_user_name(name)


@pytest.mark.parametrize(("text", "key"), [
    ('[inference]\nhost = "0.0.0.0"\n', "inference.host"),
    ('[inference]\nhost = "192.168.1.5"\n', "inference.host"),
    ('[inference]\ntls_cert_file = "c.pem"\n', "inference.tls_key_file"),
    ('[inference]\ntls_key_file = "k.pem"\n', "inference.tls_cert_file"),
    ('[inference]\nmin_local_gpus = 3\nmax_local_gpus = 2\n', "inference.min_local_gpus"),
    (SERVER + SERVER, "inference.servers[1].model"),
    (SERVER + 'port = 8081\n', "inference.servers[0].port"),
    ('[[inference.servers]]\nmodel = "c"\npreset = "command"\n', "inference.servers[0].args"),
    ('[[inference.servers]]\nmodel = "v"\npreset = "vllm"\n', "inference.servers[0].model_path"),
    (SERVER + 'health_path = "health"\n', "inference.servers[0].health_path"),
    (SERVER + '[[inference.prices]]\nmodel = "other"\ninput_per_million_tokens = 1\n'
     'output_per_million_tokens = 2\n', "inference.prices[0].model"),
    (SERVER + '[[inference.prices]]\nmodel = "tiny"\ninput_per_million_tokens = -1\n'
     'output_per_million_tokens = 2\n', "inference.prices[0].input_per_million_tokens"),
    (SERVER + '[[inference.prices]]\nmodel = "tiny"\ninput_per_million_tokens = nan\n'
     'output_per_million_tokens = 2\n', "inference.prices[0].input_per_million_tokens"),
    ('[inference]\nrequests_per_minute = 0\n', "inference.requests_per_minute"),
    (SERVER + 'preset = "docker"\n', "inference.servers[0].preset"),
])
def test_a_combination_that_cannot_work_names_the_key_to_change(text: str, key: str):
    with pytest.raises(ConfigError) as exc:
        parsed(text)
    assert exc.value.key == key


def test_the_gateway_may_listen_on_the_lan_only_when_allowed():
    cfg = parsed('[inference]\nhost = "0.0.0.0"\nallow_lan = true\n')
    assert cfg.inference.host == "0.0.0.0"


def test_presets_listen_on_localhost_with_the_model_name_clients_use():
    cfg = parsed(SERVER + 'args = ["--n-gpu-layers", "99"]\n')
    argv, env = command_line(cfg.inference.servers[0], 9001)
    assert argv[:2] == ["llama-server", "--model"] and "/m/tiny.gguf" in argv
    assert argv[argv.index("--alias") + 1] == "tiny"
    assert argv[argv.index("--host") + 1] == "127.0.0.1" and "9001" in argv
    assert argv[-2:] == ["--n-gpu-layers", "99"] and env == {}
    cmd = parsed('[[inference.servers]]\nmodel = "c"\npreset = "command"\n'
                 'args = ["srv", "--port={port}", "{model}", "{model_path}"]\n')
    assert command_line(cmd.inference.servers[0], 7)[0] == ["srv", "--port=7", "c", ""]
    ollama = parsed('[[inference.servers]]\nmodel = "llama3"\npreset = "ollama"\n')
    assert command_line(ollama.inference.servers[0], 7) == (
        ["ollama", "serve"], {"OLLAMA_HOST": "127.0.0.1:7", "OLLAMA_NUM_PARALLEL": "4"})


def test_a_servers_parallel_slots_reach_its_command_line():
    cfg = parsed(SERVER + "parallel = 2\n")
    argv, _ = command_line(cfg.inference.servers[0], 9001)
    assert argv[argv.index("--parallel") + 1] == "2"
    none = parsed(SERVER + "parallel = 0\n")
    assert "--parallel" not in command_line(none.inference.servers[0], 9001)[0]

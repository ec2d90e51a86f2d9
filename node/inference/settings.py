"""The [inference] section's checks that span its keys, and each preset's command line.

The config builder checks each key alone (a model name, a port); what depends on several keys
is checked here, by the same ConfigError naming the key to change.
"""

from __future__ import annotations

from typing import Any

from node.errors import ConfigError

LOCALHOST = ("127.0.0.1", "localhost", "::1")
HEALTH_PATHS = {"llama-server": "/health", "vllm": "/health", "ollama": "/api/version",
                "command": "/v1/models"}
PLACEHOLDERS = ("{port}", "{model}", "{model_path}")


def check_inference(inf: Any, file: str = "settings") -> None:
    """Raise ConfigError for a combination of [inference] keys that cannot work."""
    if inf.host not in LOCALHOST and not inf.allow_lan:
        raise ConfigError(file, "inference.host", f"{inf.host!r} is beyond localhost; set "
                          "inference.allow_lan = true to serve the gateway on the LAN")
    if bool(inf.tls_cert_file) != bool(inf.tls_key_file):
        raise ConfigError(file, "inference.tls_key_file" if inf.tls_cert_file else
                          "inference.tls_cert_file", "TLS needs both tls_cert_file and "
                          "tls_key_file, or neither")
    if inf.min_local_gpus > inf.max_local_gpus:
        raise ConfigError(file, "inference.min_local_gpus",
                          f"must not exceed max_local_gpus ({inf.max_local_gpus})")
    _check_servers(inf, file)
    models = {s.model for s in inf.servers} | ({inf.simulated_model} if inf.simulated else set())
    seen: set[str] = set()
    for i, price in enumerate(inf.prices):
        if price.model in seen:
            raise ConfigError(file, f"inference.prices[{i}].model",
                              f"{price.model!r} is priced twice")
        if price.model not in models:
            raise ConfigError(file, f"inference.prices[{i}].model", f"{price.model!r} is not "
                              f"served; served: {', '.join(sorted(models)) or 'none'}")
        seen.add(price.model)


def _check_servers(inf: Any, file: str) -> None:
    seen: dict[str, int] = {}
    ports: dict[int, int] = {}
    for i, s in enumerate(inf.servers):
        key = f"inference.servers[{i}]"
        if s.model in seen or (inf.simulated and s.model == inf.simulated_model):
            raise ConfigError(file, f"{key}.model", f"{s.model!r} is served twice; each model "
                              "has one server")
        seen[s.model] = i
        if s.port and (s.port in ports or s.port == inf.port):
            raise ConfigError(file, f"{key}.port", f"{s.port} is taken by another server or "
                              "the gateway")
        ports[s.port] = i
        if s.preset == "command" and not s.args:
            raise ConfigError(file, f"{key}.args", "the command preset needs the whole "
                              "command line in args, with {port} where the port goes")
        if s.preset in ("llama-server", "vllm") and not s.model_path:
            raise ConfigError(file, f"{key}.model_path", f"the {s.preset} preset needs the "
                              "model's file or folder")
        if s.health_path and not (s.health_path.startswith("/") and " " not in s.health_path):
            raise ConfigError(file, f"{key}.health_path", "must be a URL path such as /health")


def command_line(server: Any, port: int) -> tuple[list[str], dict[str, str]]:
    """The server's argv and the environment it adds, listening on 127.0.0.1:port only."""
    extra = list(server.args)
    if server.preset == "llama-server":
        # llama.cpp common/arg.cpp: {"-np", "--parallel"}, "number of server slots"
        slots = ["--parallel", str(server.parallel)] if server.parallel else []
        return (["llama-server", "--model", server.model_path, "--alias", server.model,
                 "--host", "127.0.0.1", "--port", str(port), *slots, *extra], {})
    if server.preset == "vllm":
        return (["vllm", "serve", server.model_path, "--served-model-name", server.model,
                 "--host", "127.0.0.1", "--port", str(port), *extra], {})
    if server.preset == "ollama":
        # ollama envconfig/config.go: OLLAMA_NUM_PARALLEL, parallel requests per model
        slots = {"OLLAMA_NUM_PARALLEL": str(server.parallel)} if server.parallel else {}
        return (["ollama", "serve", *extra], {"OLLAMA_HOST": f"127.0.0.1:{port}", **slots})
    values = {"{port}": str(port), "{model}": server.model, "{model_path}": server.model_path}
    argv = []
    for arg in extra:
        for placeholder in PLACEHOLDERS:
            arg = arg.replace(placeholder, values[placeholder])
        argv.append(arg)
    return argv, {}


def health_path(server: Any) -> str:
    return server.health_path or HEALTH_PATHS[server.preset]

"""The bid-price script `sunrig akash bid-script` prints, run as the Akash provider runs it: in an
empty environment whose PATH holds only what the provider's image has (bash, curl, jq, bc), one
order on stdin, against a real agent's bid endpoint; and that endpoint against bad requests."""

from __future__ import annotations

import http.client
import json
import logging
import shutil
import stat
import subprocess
import threading
from dataclasses import replace
from decimal import Decimal
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from market_adapter.akash_bid import price_order
from market_adapter.akash_bid_server import (
    BidServer,
    bid_script,
    check_host,
    check_token,
    parse_listen,
)
from market_adapter.akash_order import MAX_ORDER_BYTES, Decline, parse_order
from market_adapter.base import Capacity
from node.cli import commands as cli
from node.clock import SimulatedClock
from node.config import AkashConfig, parse_config
from node.errors import ConfigError
from node.service import open_agent, start_bid_server
from node.wiring import akash_bid_server
from tests.akash_chain_fixtures import ChainNode
from tests.akash_helpers import (
    GIB,
    provider_order,
    provider_service,
    provider_stdin,
)
from tests.conftest import HANG_S, START, demo_cfg
from tests.http_stub import serve
from tests.test_akash_orders_hostile import NOT_AN_ORDER, OUT_OF_RANGE, WRONG_TYPE
from tests.test_cli import free_port

# what the provider's image installs that a script could use (provider Dockerfile)
IMAGE_TOOLS = ("bash", "curl", "jq", "bc")
PROVIDER = "akash1sunrigproviderqqqqqqqqqqqqqqqqqqqqqx9"


@pytest.fixture
def image_path(tmp_path) -> Path:
    """A PATH of only the provider image's tools."""
    bin_dir = tmp_path / "image-bin"
    bin_dir.mkdir()
    for tool in IMAGE_TOOLS:
        found = shutil.which(tool)
        assert found, f"make test installs {tool}"
        (bin_dir / tool).symlink_to(found)
    return bin_dir


@pytest.fixture
def chain():
    server = ChainNode()
    yield server
    server.close()


def akash_cfg(tmp_path: Path, chain_url: str, **akash):
    base = demo_cfg(tmp_path)
    settings = dict(enabled=True, provider_address=PROVIDER, rest_url=chain_url,
                    offer_file=str(tmp_path / "offer.json"),
                    bid_token_file=str(tmp_path / "state" / "akash-bid.token"),
                    **{"bid_listen": f"127.0.0.1:{free_port()}", **akash})
    return replace(base, markets=replace(base.markets, akash=AkashConfig(**settings)))


class Rig:
    """A real agent with Akash enabled (its chain a local stand-in), its bid endpoint running,
    and the script `sunrig akash bid-script` prints for it, installed as the chart installs it."""

    def __init__(self, tmp_path: Path, chain_url: str, image_path: Path):
        self.cfg = akash_cfg(tmp_path, chain_url)
        self.clock = SimulatedClock(START, speed=0)
        self.agent = open_agent(self.cfg, clock=self.clock)
        self.agent.run_all_once()
        self.market = self.agent.parts.markets["akash"]
        # the free GPUs and floor fixed here, whatever the plan made of the simulated day
        self.market.offer(Capacity(6, "h200", 141.0), 2.0)
        self.server = start_bid_server(self.agent)
        self.agent.parts.akash_share.update(6, 0)  # the plan's Akash GPUs, as the offer's
        self.token = Path(self.cfg.markets.akash.bid_token_file).read_text().strip()
        self.script = tmp_path / "price_script.sh"
        self.install(bid_script(self.server.url, self.token))
        self.image_path = image_path

    def install(self, text: str) -> None:
        self.script.write_text(text)
        self.script.chmod(0o744)  # the chart's ConfigMap defaultMode

    def run(self, stdin: bytes) -> subprocess.CompletedProcess:
        return run_script(self.script, self.image_path, stdin)

    def expected(self, stdin: bytes) -> str:
        return price_order(parse_order(stdin), self.market.current_offer, self.clock.now())

    def close(self) -> None:
        self.server.stop()
        self.agent.stop()
        self.agent.store.close()


def run_script(script: Path, image_path: Path, stdin: bytes) -> subprocess.CompletedProcess:
    """As the provider runs it: no arguments, the order on stdin, AKASH_OWNER and AKASH_DENOM
    beside an environment that has nothing of sunrig's."""
    env = {"PATH": str(image_path), "AKASH_OWNER": "akash1tenant", "AKASH_DENOM": "uact"}
    return subprocess.run(["/usr/bin/env", "-i", *(f"{k}={v}" for k, v in env.items()),
                           str(script)], input=stdin, capture_output=True, timeout=HANG_S)


@pytest.fixture
def rig(tmp_path, chain, image_path):
    r = Rig(tmp_path, chain.url, image_path)
    yield r
    r.close()


def assert_declined(result: subprocess.CompletedProcess, names: str) -> str:
    err = result.stderr.decode()
    assert result.returncode == 1 and result.stdout == b"", err
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert names in err, err
    return err


# ---- orders as tenants send them ---------------------------------------------------------------

GOOD_ORDERS = {
    "one-h200": provider_order(),
    "groups-with-count": provider_order(provider_service(units=2, count=2), provider_service(
        units=0, cpu=2000, memory=4 * GIB, storage=(("ephemeral", 10 * GIB),), endpoints=2)),
    "any-model": provider_order(provider_service(model="*")),
    # the mainnet group of research sample (c): 4 x H200 per replica, a 64Gi shared-memory volume
    "shm-volume": provider_order(provider_service(
        units=3, count=2, cpu=32000, memory=256 * GIB,
        storage=(("ram", 64 * GIB), ("ephemeral", 500 * GIB))), amount="40000"),
    "every-storage-class": provider_order(provider_service(storage=tuple(
        (cls, 10 * GIB) for cls in ("ephemeral", "default", "beta1", "beta2", "beta3", "ram")))),
    "precision-18": provider_order(precision=18),
    "no-precision": provider_order(precision=None),
    "ip-leases": provider_order(provider_service(ip_leases=2, endpoints=3)),
}


@pytest.mark.parametrize("name", GOOD_ORDERS)
def test_a_good_order_is_priced_exactly_as_the_agent_prices_it(rig, name):
    stdin = provider_stdin(GOOD_ORDERS[name])
    result = rig.run(stdin)
    assert result.returncode == 0 and result.stderr == b"", result.stderr
    price = result.stdout.decode()
    assert price == rig.expected(stdin) + "\n"
    assert Decimal(price) <= parse_order(stdin).max_amount and Decimal(price) > 0


def test_shared_memory_is_priced_at_the_memory_rate(rig):
    plain = provider_order(provider_service(storage=(("ephemeral", GIB),)))
    shm = provider_order(provider_service(storage=(("ephemeral", GIB), ("ram", 64 * GIB))))
    more = Decimal(rig.run(provider_stdin(shm)).stdout.decode()) - Decimal(
        rig.run(provider_stdin(plain)).stdout.decode())
    offer = rig.market.current_offer
    usd_per_hour = 64 * offer.memory_usd_per_gib_hour * (1 + offer.margin_pct / 100)
    assert float(more) == pytest.approx(usd_per_hour * offer.block_seconds / 3600 * 1e6,
                                        abs=2e-6)


def gpu_order(model: str = "h200", ram: str = "141Gi", interface: str = "sxm", units: int = 1,
              count: int = 1) -> dict:
    doc = provider_order(provider_service(units=units, count=count))
    doc["resources"][0]["gpu"]["attributes"]["vendor"]["nvidia"] = {
        "model": model, "ram": ram, "interface": interface}
    return doc


BEYOND_SHARE = "beyond Akash's share: the plan gives Akash 6"  # all six GPUs are offered to Akash


@pytest.mark.parametrize(("doc", "reason"), [
    (gpu_order(units=7), f"order asks for 7 GPUs, {BEYOND_SHARE}"),
    (gpu_order(units=4, count=2), f"order asks for 8 GPUs, {BEYOND_SHARE}"),
    (provider_order(*[provider_service(units=3)] * 3), f"order asks for 9 GPUs, {BEYOND_SHARE}"),
    (gpu_order(model="a100"), "GPU model 'a100' is not on this rig"),
    (gpu_order(model="h100", ram="80Gi"), "GPU model 'h100' is not on this rig"),
    (gpu_order(ram="80Gi"), "attributes the rig cannot meet: ram 80gi"),
    (gpu_order(interface="pcie"), "attributes the rig cannot meet: interface pcie"),
    (gpu_order(model="*", ram="40Gi"), "attributes the rig cannot meet: ram 40gi"),
    (gpu_order(ram="80Gi", interface="pcie"), "ram 80gi (the rig's GPUs: 141gi); interface pcie"),
    ({**provider_order(), "resources": [{**provider_service(), "gpu": {"units": 1, "attributes": {
        "vendor": {"amd": {"model": "mi300x"}}}}}]}, "GPU vendor amd not on this rig"),
    (provider_order(amount="10"), "below the floor"),
    (provider_order(provider_service(storage=(("beta9", GIB),))), "storage class 'beta9'"),
], ids=["too-many-gpus", "count-times-units", "several-groups", "other-model", "other-model-ram",
        "other-ram", "other-interface", "any-model-other-ram", "ram-and-interface", "other-vendor",
        "below-floor", "unknown-class"])
def test_an_order_the_rig_cannot_serve_is_declined_with_the_reason(rig, doc, reason):
    assert_declined(rig.run(provider_stdin(doc)), reason)


# one of each class of malformed order from the parser's corpus, and a few more of each
MALFORMED = [p for i, p in enumerate(NOT_AN_ORDER + WRONG_TYPE + OUT_OF_RANGE) if i % 6 == 0]


@pytest.mark.parametrize(("stdin", "names"), MALFORMED)
def test_a_malformed_order_is_declined_in_one_line_naming_the_field(rig, stdin, names):
    if len(stdin) > MAX_ORDER_BYTES:
        names = "413"
    assert_declined(rig.run(stdin), names)


def test_a_stale_offer_is_declined(rig):
    rig.clock.advance(rig.cfg.markets.akash.offer_valid_s + 1)
    assert_declined(rig.run(provider_stdin(provider_order())), "offer is stale")


def test_a_wrong_token_is_declined(rig):
    rig.install(bid_script(rig.server.url, "x" * 43))
    err = assert_declined(rig.run(provider_stdin(provider_order())), "HTTP 401")
    assert rig.token not in err


def test_an_agent_that_is_down_means_no_bid(rig):
    rig.server.stop()
    assert_declined(rig.run(provider_stdin(provider_order())), "did not answer")


def script_against_stub(tmp_path: Path, image_path: Path, do_post,
                        release: threading.Event | None = None) -> str:
    """The script run against a stand-in endpoint that answers with `do_post`; its stderr."""
    handler = type("Stub", (BaseHTTPRequestHandler,), {
        "do_POST": do_post, "log_message": lambda self, *args: None})
    httpd, url = serve(handler)
    try:
        script = tmp_path / "price_script.sh"
        script.write_text(bid_script(url + "/akash/v1/price", "t" * 43))
        script.chmod(0o744)
        return assert_declined(run_script(script, image_path, provider_stdin(provider_order())),
                               "")
    finally:
        if release is not None:
            release.set()
        httpd.shutdown()
        httpd.server_close()


def test_an_agent_that_does_not_answer_in_time_means_no_bid(image_path, tmp_path):
    """curl gives up by itself (--max-time 2): the provider's 10 s never run out."""
    release = threading.Event()
    err = script_against_stub(tmp_path, image_path, lambda self: release.wait(HANG_S), release)
    assert "did not answer" in err and "timed out" in err.lower()


@pytest.mark.parametrize("answer", [b"1e5", b"NaN", b"-12.5", b"", b"12 34", b"1.2.3",
                                    b"<html>oops</html>", b"1." + b"1" * 19, b"0x10",
                                    b"\xff\xfe", b"12.5; rm -rf /"])
def test_an_answer_that_is_not_a_plain_decimal_is_no_bid(image_path, tmp_path, answer):
    def odd(self: BaseHTTPRequestHandler) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", str(len(answer) + 1))
        self.end_headers()
        self.wfile.write(answer + b"\n")

    assert "not a plain decimal" in script_against_stub(tmp_path, image_path, odd)


def test_the_script_needs_nothing_but_bash_and_curl(rig, tmp_path):
    only = tmp_path / "bash-and-curl"
    only.mkdir()
    for tool in ("bash", "curl"):
        (only / tool).symlink_to(shutil.which(tool))
    result = run_script(rig.script, only, provider_stdin(provider_order()))
    assert result.returncode == 0, result.stderr
    assert rig.token not in " ".join(rig.script.read_text().split("\n")[:3])  # not in a comment


# ---- the endpoint ------------------------------------------------------------------------------

def request(server: BidServer, method: str = "POST", path: str = "/akash/v1/price",
            body: bytes | None = b"{}", headers: dict | None = None) -> tuple[int, str, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=HANG_S)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        conn.endheaders(body)
        r = conn.getresponse()
        return r.status, r.read().decode(), dict(r.getheaders())
    finally:
        conn.close()


@pytest.fixture
def endpoint():
    def price(body: bytes) -> str:
        order = parse_order(body)
        if order.gpus > 6:
            raise Decline(f"order asks for {order.gpus} GPUs, 6 free")
        return "12.500000"

    server = BidServer("127.0.0.1", 0, "s" * 43, price).start()
    yield server
    server.stop()


def bearer(token: str = "s" * 43) -> dict:
    return {"Authorization": f"Bearer {token}"}


def sized(body: bytes, token: str = "s" * 43) -> dict:
    return {**bearer(token), "Content-Length": str(len(body))}


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": ""}, {"Authorization": "Bearer"}, {"Authorization": "Bearer "},
    bearer("s" * 42), bearer("s" * 44), bearer("S" * 43), {"Authorization": "bearer " + "s" * 43},
    {"Authorization": "Basic " + "s" * 43}, {"Authorization": "Bearer  " + "s" * 43},
    {"Authorization": "Bearer " + "s" * 43 + " "}, {"Authorization": "s" * 43},
    bearer("s" * 43 + "\u00e9"),
], ids=["none", "empty", "scheme-only", "scheme-space", "shorter", "longer", "other-case",
        "lower-scheme", "basic", "two-spaces", "trailing-space", "no-scheme", "non-ascii"])
def test_without_the_right_token_the_answer_is_401_and_never_echoes_it(endpoint, headers,
                                                                      caplog):
    caplog.set_level(logging.DEBUG)
    body = provider_stdin(provider_order())
    headers = {**headers, "Content-Length": str(len(body))}
    status, text, got = request(endpoint, body=body, headers=headers)
    assert status == 401 and got["WWW-Authenticate"] == "Bearer"
    assert text.count("\n") == 1 and "s" * 20 not in text and "s" * 20 not in caplog.text


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/akash/v1/price", 405), ("PUT", "/akash/v1/price", 405),
    ("DELETE", "/akash/v1/price", 405), ("HEAD", "/akash/v1/price", 405),
    ("POST", "/", 404), ("POST", "/akash/v1/price/", 404), ("POST", "/akash/v1/price?x=1", 404),
    ("POST", "/akash/v2/price", 404), ("POST", "/AKASH/V1/PRICE", 404), ("GET", "/metrics", 405),
])
def test_other_paths_and_methods_are_refused(endpoint, method, path, status):
    body = provider_stdin(provider_order())
    assert request(endpoint, method, path, body, sized(body))[0] == status


@pytest.mark.parametrize(("headers", "status"), [
    ({}, 411), ({"Content-Length": "-1"}, 400), ({"Content-Length": "abc"}, 400),
    ({"Content-Length": "1e3"}, 400), ({"Content-Length": "9" * 30}, 400),
    ({"Content-Length": str(MAX_ORDER_BYTES + 1)}, 413),
    ({"Content-Length": str(2**40)}, 413), ({"Transfer-Encoding": "chunked"}, 411),
], ids=["no-length", "negative", "word", "exponent", "30-digits", "one-over", "a-tebibyte",
        "chunked"])
def test_a_body_without_a_sound_length_is_refused_before_it_is_read(endpoint, headers, status):
    got, text, _ = request(endpoint, body=None, headers={**bearer(), **headers})
    assert got == status and text.count("\n") == 1


def test_an_order_is_priced_and_a_decline_is_one_line(endpoint):
    good = provider_stdin(provider_order())
    assert request(endpoint, body=good, headers=sized(good))[:2] == (200, "12.500000\n")
    many = provider_stdin(provider_order(provider_service(units=7)))
    assert request(endpoint, body=many, headers=sized(many))[:2] == (
        422, "order asks for 7 GPUs, 6 free\n")
    bad = b'{"resources": 5}'
    status, text, _ = request(endpoint, body=bad, headers=sized(bad))
    assert status == 422 and text.startswith("order.price: is missing")


def test_declines_are_logged_once_per_reason(endpoint, caplog):
    caplog.set_level(logging.INFO, logger="market_adapter.akash_bid_server")
    for units in (7, 8, 9, 7):
        many = provider_stdin(provider_order(provider_service(units=units)))
        assert request(endpoint, body=many, headers=sized(many))[0] == 422
    other = b"{"
    assert request(endpoint, body=other, headers=sized(other))[0] == 422
    declines = [r.getMessage() for r in caplog.records if "declined" in r.getMessage()]
    assert declines == ["akash bid: declined: order asks for 7 GPUs, 6 free",
                        "akash bid: declined: order: is not JSON: Expecting property name "
                        "enclosed in double quotes: line 1 column 2 (char 1)"]


# ---- where it listens, and its token -----------------------------------------------------------

@pytest.mark.parametrize("listen", ["0.0.0.0:8787", "[::]:8787", "[::0]:8787", "[0:0::0]:8787"])
def test_it_refuses_every_interface_unless_the_owner_allows_it(listen, tmp_path, chain):
    with pytest.raises(ValueError, match="every interface"):
        parse_listen(listen)
    host, port = parse_listen(listen, allow_any=True)
    with pytest.raises(ValueError, match="every interface"):
        BidServer(host, 0, "t" * 43, lambda body: "1")
    cfg = akash_cfg(tmp_path, chain.url, bid_listen=listen)
    with pytest.raises(ConfigError, match="bid_listen: .*bid_listen_any = true"):
        akash_bid_server(cfg, None)


def test_with_the_owners_leave_it_listens_on_every_interface():
    server = BidServer(check_host("0.0.0.0", allow_any=True), 0, "t" * 43, lambda b: "1.0",
                       allow_any=True)
    try:
        assert server.url.startswith("http://0.0.0.0:")
    finally:
        server.stop()


@pytest.mark.parametrize("listen", [
    "", "8787", "localhost:8787", "127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536",
    "127.0.0.1:99999", "::1:8787", "[::1]", "256.0.0.1:8787", "127.0.0.1:87 87",
    "127.0.0.1:8787\n", "http://127.0.0.1:8787", "[127.0.0.1:8787",
])
def test_a_malformed_listen_address_is_a_config_error_naming_the_key(listen, tmp_path):
    text = f'[markets.akash]\nbid_listen = {json.dumps(listen)}\n'
    with pytest.raises(ConfigError, match="markets.akash.bid_listen"):
        parse_config(text, "t.toml", tmp_path)


def test_the_token_file_is_created_private_once_and_kept(tmp_path, chain):
    cfg = akash_cfg(tmp_path, chain.url)
    server = akash_bid_server(cfg, None)
    server.stop()
    path = Path(cfg.markets.akash.bid_token_file)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = path.read_text().strip()
    check_token(token)
    akash_bid_server(cfg, None).stop()
    assert path.read_text().strip() == token  # the installed script keeps working


@pytest.mark.parametrize(("content", "mode", "problem"), [
    ("t" * 43, 0o644, "may be read by others"), ("t" * 43, 0o640, "may be read by others"),
    ("", 0o600, "is empty"), ("short", 0o600, "32 to 512 characters"),
    ("t" * 40 + "'; rm -rf /", 0o600, "32 to 512 characters"),
    ("t" * 40 + " x", 0o600, "32 to 512 characters"), ("t" * 40 + '"', 0o600, "32 to 512"),
    ("t" * 20 + "\nsecond line" + "t" * 20, 0o600, "bid_token_file"),
    ("t" * 600, 0o600, "32 to 512 characters"), ("t" * 40 + "$(id)", 0o600, "32 to 512"),
], ids=["world-readable", "group-readable", "empty", "short", "quote", "space", "double-quote",
        "two-lines", "too-long", "command"])
def test_a_token_file_the_script_could_not_carry_is_refused(tmp_path, chain, content, mode,
                                                             problem):
    cfg = akash_cfg(tmp_path, chain.url)
    path = Path(cfg.markets.akash.bid_token_file)
    path.parent.mkdir(parents=True)
    path.write_text(content)
    path.chmod(mode)
    with pytest.raises(ConfigError, match="markets.akash.bid_token_file") as caught:
        akash_bid_server(cfg, None)
    assert problem in str(caught.value)
    assert content.strip() == "" or content.strip() not in str(caught.value)


# ---- the commands ------------------------------------------------------------------------------

def config_file(tmp_path: Path, **akash: str | bool) -> Path:
    lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in akash.items())
    path = tmp_path / "sunrig.toml"
    path.write_text(f"[store]\npath = \"{tmp_path / 'sunrig.db'}\"\n[markets.akash]\n"
                    f"enabled = true\nprovider_address = \"{PROVIDER}\"\n"
                    f"bid_token_file = \"{tmp_path / 'bid.token'}\"\n{lines}\n")
    return path


def test_bid_script_prints_the_script_with_url_and_token_and_says_it_is_secret(tmp_path, capsys,
                                                                               chain):
    path = config_file(tmp_path, bid_listen="10.0.0.5:8787")
    assert cli.main(["akash", "bid-script", "--config", str(path)]) == 2  # no token yet
    assert "does not exist yet" in capsys.readouterr().err
    token = "k" * 43
    (tmp_path / "bid.token").write_text(token + "\n")
    (tmp_path / "bid.token").chmod(0o600)
    assert cli.main(["akash", "bid-script", "--config", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("#!/bin/bash\n")
    assert "url='http://10.0.0.5:8787/akash/v1/price'" in out and f"token='{token}'" in out
    assert "secret" in err and "base64 -w0" in err and token not in err


def test_bid_script_needs_a_url_when_the_endpoint_listens_everywhere(tmp_path, capsys):
    path = config_file(tmp_path, bid_listen="0.0.0.0:8787", bid_listen_any=True)
    (tmp_path / "bid.token").write_text("k" * 43)
    (tmp_path / "bid.token").chmod(0o600)
    assert cli.main(["akash", "bid-script", "--config", str(path)]) == 2
    assert "--url" in capsys.readouterr().err
    assert cli.main(["akash", "bid-script", "--config", str(path), "--url",
                     "http://192.168.1.20:8787/akash/v1/price"]) == 0
    assert "url='http://192.168.1.20:8787/akash/v1/price'" in capsys.readouterr().out
    for bad in ("http://x'; rm -rf /;'", "ftp://10.0.0.5/x", "http://10.0.0.5/$(id)"):
        assert cli.main(["akash", "bid-script", "--config", str(path), "--url", bad]) == 2


def test_attributes_as_helm_values_match_what_tenants_sdls_ask(tmp_path, capsys):
    path = config_file(tmp_path, region="eu-west")
    assert cli.main(["akash", "attributes", "--helm-values", "--config", str(path)]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0] == "attributes:"
    pairs = dict(zip([x.split("key: ")[1] for x in lines[1::2]],
                     [json.loads(x.split("value: ")[1]) for x in lines[2::2]], strict=True))
    base = "capabilities/gpu/vendor/nvidia/model/h200"
    assert pairs["region"] == "eu-west" and pairs["capabilities/gpu"] == "nvidia"
    for key in (base, f"{base}/ram/141Gi", f"{base}/interface/sxm",
                f"{base}/ram/141Gi/interface/sxm", f"{base}/interface/sxm/ram/141Gi"):
        assert pairs[key] == "true"
    assert "tee/type" not in pairs and "tee/type: left out" in err

"""Files the config names (token files, CA certificates, RIMs and AMD certificates) and the state
files the markets keep, when they are broken or hostile. A file the config names is a ConfigError
naming its key; a corrupt state file is kept aside and the market starts fresh; nothing is a
traceback, a read that blocks, or a secret in a message."""

from __future__ import annotations

import errno
import ipaddress
import json
import logging
import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import energy.files
from energy.files import MAX_CA_FILE_BYTES
from market_adapter.akash import AkashProvider
from market_adapter.base import Capacity, MarketError
from market_adapter.hyperbolic import HyperbolicMarket
from market_adapter.sim import SimMarket, SimMarketSettings
from node.attest import MAX_INPUT_BYTES, trust_from_config
from node.cli.commands import main
from node.clock import SimulatedClock
from node.config import TeeConfig, parse_config
from node.errors import ConfigError
from node.wiring import MAX_SECRET_BYTES, build_parts, read_secret, tariff_for
from tests.conftest import START
from tests.tee_helpers import CHAIN_PEM, RIM_FILES
from tests.test_config_hostile import release_a_reader
from tests.test_market_sim import T0 as SIM_T0
from tests.test_market_sim import Now

TOKEN = "s3cret-token-0123456789"
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)

# --- what a path may hold -------------------------------------------------------------------------

NOT_TEXT = {
    "not_utf8": b"tok\xe9n\xff\xfe",
    "utf16": TOKEN.encode("utf-16"),
    "binary": bytes(range(256)) * 4,
}
NOT_A_FILE = ("folder", "fifo", "missing", "under_a_file")


def hostile(tmp_path: Path, kind: str, contents: dict[str, bytes]) -> Path:
    """A path holding `kind`: one of NOT_A_FILE, or a file of `contents[kind]`."""
    path = tmp_path / f"hostile-{kind}"
    if kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "under_a_file":
        path.write_bytes(b"x")
        path = path / "child"
    elif kind != "missing":
        path.write_bytes(contents[kind])
    return path


@pytest.fixture
def fifo_guard(tmp_path):
    """Releases any read of a FIFO under tmp_path that blocks, so a regression fails the test
    instead of hanging it."""
    done = threading.Event()
    threads: list[threading.Thread] = []
    yield lambda path: threads.append(release_a_reader(path, done)) if path.is_fifo() else None
    done.set()
    for t in threads:
        t.join()


# --- token files ------------------------------------------------------------------------------

SECRET_FILES = NOT_TEXT | {
    "empty": b"",
    "blank": b" \n\t\r\n",
    "huge": b"x" * (MAX_SECRET_BYTES + 1),
    "two_lines": f"{TOKEN}\n{TOKEN}-2\n".encode(),
    "nul_inside": f"{TOKEN}\x00{TOKEN}".encode(),
    "all_nul": b"\x00" * 64,
    "escape_inside": f"{TOKEN}\x1b[2J".encode(),
    "c1_inside": f"{TOKEN}\u0085x".encode(),
}


@pytest.mark.parametrize("kind", sorted(SECRET_FILES) + list(NOT_A_FILE))
def test_a_hostile_token_file_is_a_config_error_naming_the_key_never_the_token(
        tmp_path, fifo_guard, kind):
    path = hostile(tmp_path, kind, SECRET_FILES)
    fifo_guard(path)
    with pytest.raises(ConfigError) as err:
        read_secret(str(path), "tariff.entsoe_token_file", "the ENTSO-E token")
    assert err.value.key == "tariff.entsoe_token_file"
    assert str(path) in str(err.value) and len(str(err.value)) < 300
    assert TOKEN not in str(err.value)


def test_a_token_file_that_is_not_utf8_says_so(tmp_path):
    path = hostile(tmp_path, "not_utf8", SECRET_FILES)
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        read_secret(str(path), "markets.hyperbolic.api_key_file", "the API key")


def test_a_token_is_read_whole_stripped_and_kept_out_of_logs(tmp_path, caplog):
    path = tmp_path / "token"
    path.write_text(f"  {TOKEN}  \n")
    assert read_secret(str(path), "tariff.entsoe_token_file", "the token") == TOKEN
    logging.getLogger("sunrig.test").warning("sending %s", TOKEN)
    assert TOKEN not in caplog.text


def mqtt_site(line: str) -> str:
    """The config of a site read over MQTT, with one more line in [energy.mqtt]."""
    return f"""
[energy]
source = "mqtt"
[energy.mqtt]
{line}
[[energy.mqtt.mappings]]
topic = "meter/pv"
field = "pv_w"
"""


def secrets_config(tmp_path: Path, path: Path) -> str:
    return mqtt_site(f'password_file = "{path}"') + f"""
[tariff]
kind = "entsoe"
entsoe_token_file = "{path}"
[markets.hyperbolic]
enabled = true
api_key_file = "{path}"
state_file = "{tmp_path / 'hyperbolic.json'}"
"""


def test_each_token_file_the_config_names_is_refused_by_its_own_key(tmp_path):
    path = hostile(tmp_path, "binary", SECRET_FILES)
    cfg = parse_config(secrets_config(tmp_path, path), "t.toml", tmp_path)
    clock = SimulatedClock(START, speed=0)
    with pytest.raises(ConfigError) as err:
        tariff_for(cfg)
    assert err.value.key == "tariff.entsoe_token_file"
    with pytest.raises(ConfigError) as err:  # markets first, then the site
        build_parts(cfg, clock, tmp_path, lambda: 0.0)
    assert err.value.key == "markets.hyperbolic.api_key_file"
    cfg = parse_config(secrets_config(tmp_path, path).replace("enabled = true", ""), "t.toml",
                       tmp_path)
    with pytest.raises(ConfigError) as err:
        build_parts(cfg, clock, tmp_path, lambda: 0.0)
    assert err.value.key == "energy.mqtt.password_file"


# --- CA certificate files ---------------------------------------------------------------------

def make_ca(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate it signed for 127.0.0.1: (ca.pem, server.pem, key)."""
    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.now(UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    def cert(subject: str, public_key, ca: bool, san: x509.GeneralName | None = None):
        b = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name("test CA"))
             .public_key(public_key).serial_number(x509.random_serial_number())
             .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=2))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if ca:
            b = b.add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                              False, False), critical=True)
        if san is not None:
            b = b.add_extension(x509.SubjectAlternativeName([san]), critical=False)
        return b.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
    paths = (tmp_path / "ca.pem", tmp_path / "server.pem", tmp_path / "server.key")
    paths[0].write_bytes(cert("test CA", ca_key.public_key(), True))
    paths[1].write_bytes(cert("127.0.0.1", key.public_key(), False,
                              x509.IPAddress(ipaddress.ip_address("127.0.0.1"))))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


CA_FILES = NOT_TEXT | {
    "empty": b"",
    "huge": b"-----BEGIN CERTIFICATE-----\n" + b"A" * MAX_CA_FILE_BYTES,
    "not_pem": b"just some text\n",
    "a_rim": RIM_FILES[0].read_bytes(),
    "key_only": b"-----BEGIN PRIVATE KEY-----\nMIGHAgEA\n-----END PRIVATE KEY-----\n",
    "pem_garbage": b"-----BEGIN CERTIFICATE-----\n!!not base64!!\n-----END CERTIFICATE-----\n",
    "pem_not_a_certificate": b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    "pem_cut_short": CHAIN_PEM[:200],
    "pem_not_ascii": "-----BEGIN CERTIFICATE-----\nMIIBé\n-----END CERTIFICATE-----\n".encode(),
    "der": x509.load_pem_x509_certificates(CHAIN_PEM)[0].public_bytes(
        serialization.Encoding.DER),
}
CA_KEYS = ("energy.mqtt.tls_ca_file", "markets.akash.provider_ca_file")


def ca_config(ca: Path, tmp_path: Path, key: str) -> str:
    if key == "energy.mqtt.tls_ca_file":
        return mqtt_site(f'tls_ca_file = "{ca}"')
    return f"""
[markets.akash]
enabled = true
provider_address = "akash1sunrigprovider"
provider_url = "https://127.0.0.1:8443"
provider_ca_file = "{ca}"
offer_file = "{tmp_path / 'offer.json'}"
"""


def build_with_ca(ca: Path, tmp_path: Path, key: str) -> None:
    cfg = parse_config(ca_config(ca, tmp_path, key), "t.toml", tmp_path)
    build_parts(cfg, SimulatedClock(START, speed=0), tmp_path, lambda: 0.0).close()


@pytest.mark.parametrize("key", CA_KEYS)
@pytest.mark.parametrize("kind", sorted(CA_FILES) + list(NOT_A_FILE))
def test_a_ca_file_that_is_no_pem_certificate_is_a_config_error_naming_the_key(
        tmp_path, fifo_guard, kind, key):
    path = hostile(tmp_path, kind, CA_FILES)
    fifo_guard(path)
    with pytest.raises(ConfigError) as err:
        build_with_ca(path, tmp_path, key)
    assert err.value.key == key and str(path) in err.value.problem
    assert len(str(err.value)) < 300


@pytest.mark.parametrize("key", CA_KEYS)
def test_a_pem_ca_file_is_taken(tmp_path, key):
    ca, _, _ = make_ca(tmp_path)
    build_with_ca(ca, tmp_path, key)


def test_the_provider_status_with_a_ca_file_gone_since_the_start_is_a_market_error(tmp_path):
    ca, _, _ = make_ca(tmp_path)
    provider = AkashProvider("https://127.0.0.1:9", "akash1sunrigprovider", str(ca))
    ca.unlink()
    with pytest.raises(MarketError, match="CA file .*ca.pem is missing"):
        provider.running_leases()


@pytest.mark.slow
def test_mqtt_over_tls_trusts_the_ca_file_read_once_at_the_start(tmp_path):
    import paho.mqtt.client as mqtt

    from energy.mqtt import Mapping, MqttSettings, MqttSite
    from tests.conftest import wait_until
    from tests.mosquitto import Broker

    ca, cert, key = make_ca(tmp_path)
    broker = Broker(tmp_path)
    # user root: mosquitto started as root would read the key as its own user, which may not
    # enter the test's private folder (no effect when the tests run as another user)
    broker.conf.write_text(f"listener {broker.port} 127.0.0.1\nallow_anonymous true\n"
                           f"persistence false\ncafile {ca}\ncertfile {cert}\nkeyfile {key}\n"
                           "user root\n")
    broker.start()
    site = MqttSite(MqttSettings(port=broker.port, tls_ca_file=str(ca), client_id="tls-site",
                                 mappings=[Mapping("meter/pv", "pv_w")])).start()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="tls-pub")
    pub.tls_set(ca_certs=str(ca))
    try:
        ca.unlink()  # read once: a client started later does not need it
        wait_until(site.connection.connected.is_set, "the TLS connection", poll_s=0.02)
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()

        def published() -> bool:
            pub.publish("meter/pv", "1234.5")
            return site.received > 0
        wait_until(published, "a value over TLS", poll_s=0.05)
        assert site.read(T0).pv_w == 1234.5
        site.connection._new_client()  # what a restart of the network loop builds
    finally:
        pub.loop_stop()
        site.stop()
        broker.stop()


# --- trust material: RIMs, the VCEK, AMD's chain ----------------------------------------------

TRUST_FILES = NOT_TEXT | {
    "empty": b"",
    "huge": b"<a>" + b" " * MAX_INPUT_BYTES + b"</a>",
    "not_xml_or_pem": b"hello",
    "deep_xml": b"<a>" * 50_000 + b"</a>" * 50_000,
    "pem_garbage": CA_FILES["pem_garbage"],
}
TRUST_KEYS = ("tee.rims[1]", "tee.vcek", "tee.amd_cert_chain")


def tee_with(key: str, path: Path) -> TeeConfig:
    if key == "tee.rims[1]":
        return TeeConfig(rims=(str(RIM_FILES[0]), str(path)))
    return TeeConfig(**{key.removeprefix("tee."): str(path)})


@pytest.mark.parametrize("key", TRUST_KEYS)
@pytest.mark.parametrize("kind", sorted(TRUST_FILES) + ["the_other_kind", *NOT_A_FILE])
def test_a_broken_trust_file_is_a_config_error_naming_its_own_key(tmp_path, fifo_guard, kind,
                                                                   key):
    # the other kind: a certificate chain where a RIM belongs, a RIM where a certificate does
    other = CHAIN_PEM if key == "tee.rims[1]" else RIM_FILES[0].read_bytes()
    path = hostile(tmp_path, kind, TRUST_FILES | {"the_other_kind": other})
    fifo_guard(path)
    with pytest.raises(ConfigError) as err:
        trust_from_config(tee_with(key, path), "sunrig.toml")
    assert (err.value.file, err.value.key) == ("sunrig.toml", key)
    assert str(path) in err.value.problem and len(str(err.value)) < 600


def test_attest_with_a_config_naming_a_broken_rim_exits_2_naming_its_key(tmp_path, capsys):
    broken = tmp_path / "broken.swidtag"
    broken.write_bytes(b"\x00\xff" * 100)
    config = tmp_path / "sunrig.toml"
    config.write_text(f'[tee]\nrims = ["{RIM_FILES[0]}", "{broken}"]\n')
    assert main(["attest", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"{config}: tee.rims[1]:" in err and "Traceback" not in err


def test_attest_verify_of_a_fifo_exits_2_instead_of_waiting(tmp_path, fifo_guard, capsys):
    fifo = hostile(tmp_path, "fifo", {})
    fifo_guard(fifo)
    assert main(["attest", "verify", "--report", str(fifo), "--certs", str(fifo),
                 "--nonce", "00" * 32]) == 2
    assert "not a regular file" in capsys.readouterr().err


# --- state files the markets keep -------------------------------------------------------------

def sim_lease(**change) -> dict:
    return {"lease_id": "sim-1-0", "gpus": 2, "price": 2.5, "start": "2026-11-20T06:00:00+00:00",
            "end": "2026-11-20T09:00:00+00:00"} | change


def sim_doc(*leases: dict, **change) -> bytes:
    doc = {"processed_until": "2026-11-20T07:00:00+00:00", "leases": list(leases)} | change
    return json.dumps(doc).encode()


def deep(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


NOT_A_DOCUMENT = {
    "not_json": b"{not json",
    "cut_short": sim_doc(sim_lease())[:30],
    "empty": b"",
    "not_utf8": b'{"leases": "\xff\xfe"}',
    "binary": bytes(range(256)),
    "deep_list": deep(100_000),
    "deep_objects": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    "a_list": b"[]",
    "a_text": b'"state"',
    "a_number": b"42",
    "null": b"null",
    "huge_number": b'{"leases": ' + b"9" * 5000 + b"}",
}
SIM_WRONG_INSIDE = {
    "no_leases": json.dumps({"processed_until": "2026-11-20T07:00:00+00:00"}).encode(),
    "leases_an_object": sim_doc(leases={}),
    "lease_a_list": sim_doc([1, 2]),
    "no_processed_until": json.dumps({"leases": []}).encode(),
    "processed_until_a_number": sim_doc(processed_until=1732089600),
    "processed_until_naive": sim_doc(processed_until="2026-11-20T07:00:00"),
    "processed_until_garbage": sim_doc(processed_until="soon"),
    "gpus_text": sim_doc(sim_lease(gpus="2")),
    "gpus_true": sim_doc(sim_lease(gpus=True)),
    "gpus_zero": sim_doc(sim_lease(gpus=0)),
    "gpus_huge": sim_doc(sim_lease(gpus=10**12)),
    "gpus_float": sim_doc(sim_lease(gpus=2.5)),
    "price_nan": sim_doc(sim_lease(price=float("nan"))),
    "price_inf": sim_doc(sim_lease(price=float("inf"))),
    "price_1e308": sim_doc(sim_lease(price=1e308)),
    "price_negative": sim_doc(sim_lease(price=-1)),
    "price_text": sim_doc(sim_lease(price="2.5")),
    "lease_id_number": sim_doc(sim_lease(lease_id=7)),
    "lease_id_empty": sim_doc(sim_lease(lease_id="")),
    "start_missing": sim_doc({k: v for k, v in sim_lease().items() if k != "start"}),
    "start_naive": sim_doc(sim_lease(start="2026-11-20T06:00:00")),
    "end_garbage": sim_doc(sim_lease(end="later")),
    "end_null": sim_doc(sim_lease(end=None)),
    "ends_before_it_starts": sim_doc(sim_lease(end="2026-11-20T05:00:00+00:00")),
}


def sim_market(path: Path, now: Now) -> SimMarket:
    return SimMarket(SimMarketSettings(orders_per_hour=3), now, path)


def assert_kept_aside_once(path: Path, original: bytes, caplog) -> None:
    kept = path.with_name(path.name + ".corrupt")
    assert kept.read_bytes() == original
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(path) in warnings[0].getMessage()
    assert "kept as " + kept.name in warnings[0].getMessage()


@pytest.mark.parametrize("kind", sorted(NOT_A_DOCUMENT | SIM_WRONG_INSIDE))
def test_a_corrupt_sim_market_state_is_kept_aside_and_the_market_starts_fresh(
        tmp_path, caplog, kind):
    original = (NOT_A_DOCUMENT | SIM_WRONG_INSIDE)[kind]
    path = tmp_path / "sim-market.json"
    path.write_bytes(original)
    now = Now()
    with caplog.at_level(logging.WARNING):
        market = sim_market(path, now)
    assert_kept_aside_once(path, original, caplog)
    assert market.leases() == [] and market.payouts(None) == []
    market.offer(Capacity(8, "h200", 141.0), 0.5)
    now.t = SIM_T0 + timedelta(hours=12)
    assert market.leases()  # trades again, and keeps it in a state file that reads back
    assert sim_market(path, now).leases() == market.leases()


@pytest.mark.parametrize("kind", ["folder", "fifo"])
def test_a_state_path_that_is_no_file_is_moved_aside_too(tmp_path, fifo_guard, kind):
    path = tmp_path / "sim-market.json"
    if kind == "folder":
        path.mkdir()
        (path / "inside").write_text("kept")
    else:
        os.mkfifo(path)
        fifo_guard(path)
    market = sim_market(path, Now())
    assert market.leases() == []
    assert path.with_name("sim-market.json.corrupt").exists()
    if kind == "folder":
        assert (tmp_path / "sim-market.json.corrupt" / "inside").read_text() == "kept"


def test_each_corrupt_copy_is_kept_none_overwritten(tmp_path):
    path = tmp_path / "sim-market.json"
    for n in range(3):
        path.write_bytes(b"{broken %d" % n)
        sim_market(path, Now())
    kept = sorted(p.name for p in tmp_path.glob("sim-market.json.corrupt*"))
    assert kept == ["sim-market.json.corrupt", "sim-market.json.corrupt.1",
                    "sim-market.json.corrupt.2"]
    assert (tmp_path / "sim-market.json.corrupt.2").read_bytes() == b"{broken 2"


def test_a_corrupt_state_that_cannot_be_moved_aside_is_a_market_error_and_stays(
        tmp_path, monkeypatch):
    path = tmp_path / "sim-market.json"
    path.write_bytes(b"[[[")

    def read_only(src, dst):
        raise OSError(errno.EROFS, "Read-only file system")
    monkeypatch.setattr(energy.files.os, "rename", read_only)  # root ignores file modes
    with pytest.raises(MarketError, match="sim-market.json: is corrupt .* cannot be moved aside"):
        sim_market(path, Now())
    assert path.read_bytes() == b"[[["
    hyperbolic = tmp_path / "hyperbolic.json"
    hyperbolic.write_bytes(b"[]")
    with pytest.raises(MarketError, match="hyperbolic.json: is corrupt .* cannot be moved aside"):
        HyperbolicMarket(Supplier([]), hyperbolic, lambda: T0)
    assert hyperbolic.read_bytes() == b"[]"


class Supplier:
    """Hyperbolic's supplied nodes, as its client returns them."""

    def __init__(self, nodes: list[dict]):
        self.nodes = nodes

    def supplied_nodes(self) -> list[dict]:
        return self.nodes


def hyp_lease(**change) -> dict:
    return {"node": "hgx-01", "gpus": 2, "price": 2.29, "start": "2026-11-20T06:00:00+00:00",
            "end": None} | change


def hyp_doc(lease: object) -> bytes:
    return json.dumps({"leases": {"hgx-01#1": lease}, "saved": "x"}).encode()


HYP_WRONG_INSIDE = {
    "leases_a_list": json.dumps({"leases": []}).encode(),
    "leases_a_text": json.dumps({"leases": "none"}).encode(),
    "lease_a_list": hyp_doc([1]),
    "lease_null": hyp_doc(None),
    "node_missing": hyp_doc({k: v for k, v in hyp_lease().items() if k != "node"}),
    "node_a_number": hyp_doc(hyp_lease(node=1)),
    "gpus_text": hyp_doc(hyp_lease(gpus="2")),
    "gpus_negative": hyp_doc(hyp_lease(gpus=-2)),
    "price_nan": hyp_doc(hyp_lease(price=float("nan"))),
    "price_1e308": hyp_doc(hyp_lease(price=1e308)),
    "price_null": hyp_doc(hyp_lease(price=None)),
    "start_naive": hyp_doc(hyp_lease(start="2026-11-20T06:00:00")),
    "start_a_number": hyp_doc(hyp_lease(start=0)),
    "end_garbage": hyp_doc(hyp_lease(end="later")),
    "end_a_number": hyp_doc(hyp_lease(end=5)),
    "ends_before_it_starts": hyp_doc(hyp_lease(end="2026-11-20T05:00:00+00:00")),
    "id_prefix_a_number": json.dumps({"leases": {}, "id_prefix": 3}).encode(),
}


# a supplied node with 3 GPUs rented at its listed price, in cents (see tests/test_hyperbolic.py)
RENTED_NODE = {"id": "hgx-01", "gpus_reserved": 3, "pricing": {"price": {"amount": 229}}}


@pytest.mark.parametrize("kind", sorted(NOT_A_DOCUMENT | HYP_WRONG_INSIDE))
def test_a_corrupt_hyperbolic_state_is_kept_aside_and_the_market_starts_fresh(
        tmp_path, caplog, kind):
    original = (NOT_A_DOCUMENT | HYP_WRONG_INSIDE)[kind]
    path = tmp_path / "hyperbolic.json"
    path.write_bytes(original)
    supplier = Supplier([RENTED_NODE])
    with caplog.at_level(logging.WARNING):
        market = HyperbolicMarket(supplier, path, lambda: T0)
    assert_kept_aside_once(path, original, caplog)
    leases = market.leases()
    assert [(le.gpus, le.started) for le in leases] == [(3, T0)]
    again = HyperbolicMarket(supplier, path, lambda: T0 + timedelta(hours=1))
    assert again.leases() == leases  # the fresh state reads back


def test_leases_after_a_corrupt_hyperbolic_state_never_reuse_an_old_lease_id(tmp_path):
    path = tmp_path / "hyperbolic.json"
    supplier = Supplier([RENTED_NODE])
    before = HyperbolicMarket(supplier, path, lambda: T0).leases()
    path.write_bytes(b"{broken")
    after = HyperbolicMarket(supplier, path, lambda: T0 + timedelta(hours=2)).leases()
    assert {le.lease_id for le in before} == {"hgx-01#1"}
    assert len(after) == 1 and after[0].lease_id not in {"hgx-01#1"}
    supplier.nodes[0]["gpus_reserved"] = 5
    later = HyperbolicMarket(supplier, path, lambda: T0 + timedelta(hours=3)).leases()
    assert len({le.lease_id for le in later} | {"hgx-01#1"}) == 3

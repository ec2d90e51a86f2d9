"""The Akash bid-price script against malformed orders and offers: every one is declined with a
single stderr line that names the bad field and what it allows, never a traceback; orders of the
real shape (tests/akash_helpers.py cites the provider's source) are still priced."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, Decimal
from pathlib import Path

import pytest

from market_adapter import akash_bid
from market_adapter.akash import AkashPrices, build_offer
from market_adapter.akash_bid import parse_offer, price_order
from market_adapter.akash_order import (
    MAX_ORDER_BYTES,
    Decline,
    FieldError,
    GpuModel,
    parse_order,
)
from market_adapter.base import Capacity
from tests.akash_helpers import GIB, provider_order, provider_service, provider_stdin

ROOT = Path(__file__).resolve().parent.parent
TIB = 2**40
PRICES = AkashPrices(cpu_usd_per_core_hour=0.01, memory_usd_per_gib_hour=0.002,
                     storage_usd_per_gib_month=(("ephemeral", 0.02), ("beta3", 0.04)),
                     endpoint_usd_per_month=0.05, ip_usd_per_month=5.0, margin_pct=5.0,
                     akt_usd=2.5)
DELETE = object()
REAL = provider_stdin(provider_order())


def live_offer(prices: AkashPrices = PRICES, gpus: int = 6) -> dict:
    return build_offer(Capacity(gpus, "h200", 141.0), 2.0, prices,
                       datetime.now(UTC) + timedelta(hours=1))


@pytest.fixture
def offer_file(tmp_path) -> Path:
    path = tmp_path / "offer.json"
    path.write_text(json.dumps(live_offer()))
    return path


def run_main(monkeypatch, capsys, stdin: bytes, offer_path: Path) -> tuple[int, str, str]:
    """The script's main() as the provider runs it: order bytes on stdin, owner in the env."""
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8"))
    monkeypatch.setenv("AKASH_OWNER", "akash1tenant")
    rc = akash_bid.main(["--offer", str(offer_path)])
    out = capsys.readouterr()
    return rc, out.out, out.err


def assert_one_line_decline(rc: int, out: str, err: str, names: str) -> None:
    assert rc != 0 and out == ""
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err and "internal error" not in err, err
    assert names in err, err


# ---- the hostile corpus ------------------------------------------------------------------------

def steps(path: str) -> list[str | int]:
    return [int(i) if i else key for key, i in re.findall(r"(\w+)|\[(\d+)\]", path)]


def mutated(path: str, value: object) -> bytes:
    """The real order with the field at `path` set to `value` (or removed)."""
    doc = provider_order()
    *parents, last = steps(path)
    target = doc
    for step in parents:
        target = target[step]
    if value is DELETE:
        del target[last]
    else:
        target[last] = value
    return provider_stdin(doc)


def edited(old: bytes, new: bytes) -> bytes:
    assert old in REAL
    return REAL.replace(old, new, 1)


def label(value: object) -> str:
    if value is DELETE:
        return "missing"
    text = repr(value)
    return text if len(text) <= 24 else f"{text[:20]}...{len(text)}"


def field(path: str, *values: object, names: str | None = None) -> list:
    return [pytest.param(mutated(path, v), names or f"order.{path}", id=f"{path}={label(v)}")
            for v in values]


def raw(name: str, stdin: bytes, names: str = "order") -> list:
    return [pytest.param(stdin, names, id=name)]


DEEP = 100_000
SERVICE = "resources[0]"
GPU = f"{SERVICE}.gpu"
NVIDIA = f"{GPU}.attributes.vendor.nvidia"
VOLUME = f"{SERVICE}.storage[0]"

NOT_AN_ORDER = [
    *raw("empty", b""), *raw("blank", b" \n\t"), *raw("truncated", REAL[:40]),
    *raw("not-json", b"{not json"), *raw("top-level-array", provider_stdin([provider_order()])),
    *raw("top-level-empty-array", b"[]"), *raw("top-level-string", b'"order"'),
    *raw("top-level-number", b"42"), *raw("top-level-null", b"null"),
    *raw("top-level-nan", b"NaN"), *raw("non-utf8", b"\xff\xfe\x00{"),
    *raw("latin1-inside", edited(b'"h200"', b'"h\xe9200"')),
    *raw("utf16", json.dumps(provider_order()).encode("utf-16")),
    *raw("bom", b"\xef\xbb\xbf" + REAL), *raw("two-documents", REAL + REAL),
    *raw("trailing-garbage", REAL.rstrip() + b"xyz"),
    *raw("deep-array", b"[" * DEEP + b"]" * DEEP),
    *raw("deep-object", b'{"a":' * DEEP + b"1" + b"}" * DEEP),
    *raw("deep-in-unknown-field", REAL.rstrip()[:-1] + b',"x":' + b"[" * DEEP + b"]" * DEEP
         + b"}"),
    *raw("oversize", REAL + b" " * MAX_ORDER_BYTES),
]
MISSING = [
    *field("resources", DELETE), *field("price", DELETE), *field("price.amount", DELETE),
    *field("price.denom", DELETE),
    *[p for key in ("count", "cpu", "memory", "gpu", "storage", "endpoint_quantity",
                    "ip_lease_quantity") for p in field(f"{SERVICE}.{key}", DELETE)],
    *field(f"{GPU}.units", DELETE), *field(f"{GPU}.attributes", DELETE),
    *field(f"{VOLUME}.size", DELETE), *field(f"{VOLUME}.class", DELETE),
]
WRONG_TYPE = [
    *field("resources", {}, "abc", None, 5),
    *field("resources", [1], names="order.resources[0]"),
    *field(SERVICE, "x", None, [], True),
    *field("price", "100uact", [], None),
    *field("price.amount", 100, None, [], True, {}, 1e5),
    *field("price.denom", 1, None, "", ["uact"], "uact\nX-Injected: 1", "u" * 200, "ua"),
    *field("price_precision", "abc", None, "6", True, 6.0, []),
    *field(f"{SERVICE}.count", "1", None, True, [1]),
    *field(f"{SERVICE}.cpu", "8000", False, {}),
    *field(f"{SERVICE}.memory", "64Gi", None),
    *field(GPU, 5, None, [], "nvidia"),
    *field(f"{GPU}.units", "1", True, None),
    *field(f"{GPU}.attributes", [], "vendor", None),
    *field(f"{GPU}.attributes.vendor", [], "nvidia", ["nvidia"], None),
    *field(f"{GPU}.attributes.vendor", {"nvi dia": {"model": "h200"}}),
    *field(NVIDIA, [], "h200", None),
    *field(f"{NVIDIA}.model", 200, [], None, "", "h200\nx", "m" * 100, "h2/00"),
    *field(f"{NVIDIA}.ram", 141, []), *field(f"{NVIDIA}.interface", ["sxm"]),
    *field(f"{SERVICE}.storage", "abc", {}, None),
    *field(f"{SERVICE}.storage", [1], [None], names=f"order.{VOLUME}"),
    *field(f"{VOLUME}.size", "100Gi", None),
    *field(f"{VOLUME}.class", 3, None, "", "beta3;rm -rf /", "c" * 100),
    *field(f"{SERVICE}.endpoint_quantity", "1", None),
    *field(f"{SERVICE}.ip_lease_quantity", [], "0"),
]
NOT_FINITE = [
    *field("price.amount", "NaN", "nan", "Infinity", "-Infinity", "inf", "1e308", "1E+5",
           "0x10", " 100", "1_000", "sNaN"),
    *field(f"{SERVICE}.cpu", 1e308, float("nan"), float("inf"), float("-inf"), 10**30),
    *raw("cpu-5000-digits", edited(b'"cpu":8000', b'"cpu":' + b"9" * 5000),
         f"order.{SERVICE}.cpu"),
    *raw("memory-1e400", edited(b'"memory":', b'"memory":1e400,"x":'), f"order.{SERVICE}.memory"),
    *field(f"{SERVICE}.count", 1e308, 10**30, float("nan")),
    *field(f"{GPU}.units", 2**64, 1e308, float("inf")),
    *field(f"{VOLUME}.size", 1e308, float("nan")),
    *field("price_precision", 1000, -3, float("nan"), 1e308),
    *field(f"{SERVICE}.endpoint_quantity", float("inf")),
]
OUT_OF_RANGE = [
    *field(f"{SERVICE}.count", 0, -1, 2**32),
    *field(f"{SERVICE}.cpu", -1, 0, 384_001),
    *field(f"{SERVICE}.memory", -1, 0, 2 * TIB + 1),
    *field(f"{GPU}.units", -1, 25),
    *field(f"{VOLUME}.size", -5, 0, 32 * TIB + 1),
    *field(f"{SERVICE}.endpoint_quantity", -1, 65_536),
    *field(f"{SERVICE}.ip_lease_quantity", -1),
    *field("price.amount", "-5", "1" + "0" * 40, "1.0000000000000000001", "10000001", "100."),
    *field("price_precision", 0, 19),
    *field("resources", [provider_service(units=24, count=51)],
           names="order.resources[*].gpu.units"),
    *field("resources", [provider_service(units=0, cpu=384_000, count=51)],
           names="order.resources[*].cpu"),
    *field("resources", [provider_service(units=0, memory=2 * TIB, count=51)],
           names="order.resources[*].memory"),
]
FRACTIONAL = [
    *field(f"{GPU}.units", 0.5, 1.5, 1.0),
    *field(f"{SERVICE}.count", 1.5, 1.0, 0.5),
    *field(f"{SERVICE}.cpu", 8000.5), *field(f"{SERVICE}.memory", 1.5 * GIB),
    *field(f"{VOLUME}.size", GIB + 0.5), *field("price_precision", 6.5),
    *field(f"{SERVICE}.endpoint_quantity", 0.5),
]
HUGE_LISTS = [
    *field("resources", []),
    *field("resources", [provider_service(units=0)] * 101),
    *field("resources", [provider_service(units=0)] * 1000),
    *field(f"{SERVICE}.storage", [{"class": "beta3", "size": GIB}] * 33),
    *field(f"{SERVICE}.storage", [{"class": "beta3", "size": GIB}] * 1000),
    *field(f"{GPU}.attributes.vendor", {f"v{i}": {"model": "x"} for i in range(100)}),
]
DUPLICATE_KEYS = [
    *raw("count-twice", edited(b'"count":1', b'"count":0,"count":1'),
         f"order.{SERVICE}.count"),
    *raw("units-twice", edited(b'"units":1', b'"units":0,"units":1'), f"order.{GPU}.units"),
    *raw("price-twice", b'{"price":{"denom":"uact","amount":"1.0"},' + REAL[1:], "order.price"),
    *raw("amount-twice", edited(b'"amount":', b'"amount":"1.0","amount":'),
         "order.price.amount"),
    *raw("model-twice", edited(b'"model":"h200"', b'"model":"a100","model":"h200"'),
         f"order.{NVIDIA}.model"),
]
CORPUS = (NOT_AN_ORDER + MISSING + WRONG_TYPE + NOT_FINITE + OUT_OF_RANGE + FRACTIONAL
          + HUGE_LISTS + DUPLICATE_KEYS)


@pytest.mark.parametrize(("stdin", "names"), CORPUS)
def test_a_malformed_order_is_declined_in_one_line_naming_the_field(monkeypatch, capsys,
                                                                    offer_file, stdin, names):
    rc, out, err = run_main(monkeypatch, capsys, stdin, offer_file)
    assert_one_line_decline(rc, out, err, names)


@pytest.mark.parametrize(("stdin", "names"), CORPUS)
def test_the_parser_raises_one_error_type_with_the_path(stdin, names):
    with pytest.raises(FieldError) as caught:
        parse_order(stdin)
    assert caught.value.path == names
    assert str(caught.value).startswith(f"{names}: ")


def test_the_corpus_covers_every_class_of_bad_input():
    assert len(CORPUS) >= 80
    assert len({p.id for p in CORPUS}) == len(CORPUS)


def test_the_unaltered_real_order_is_priced(monkeypatch, capsys, offer_file):
    rc, out, err = run_main(monkeypatch, capsys, REAL, offer_file)
    assert rc == 0 and err == "" and Decimal(out) > 0


# ---- through the real process ------------------------------------------------------------------

SAMPLE = {"empty": b"", "non-utf8": b"\xff\xfe\x00{", "deep": b"[" * DEEP + b"]" * DEEP,
          "oversize": REAL + b" " * MAX_ORDER_BYTES, "nan-amount": mutated("price.amount", "NaN"),
          "resources-of-one": mutated("resources", [1]), "gpu-five": mutated(GPU, 5),
          "count-zero": mutated(f"{SERVICE}.count", 0)}


@pytest.mark.slow
@pytest.mark.parametrize("command", [
    ["-I", "-m", "market_adapter.akash_bid"],
    ["-m", "node.cli", "akash", "price-script"],
], ids=["wrapper", "sunrig-command"])
def test_the_process_declines_hostile_stdin_without_a_traceback(tmp_path, command):
    offer = tmp_path / "offer.json"
    offer.write_text(json.dumps(live_offer()))
    env = {**os.environ, "AKASH_OWNER": "akash1tenant", "AKASH_DENOM": "uact"}
    for name, stdin in SAMPLE.items():
        r = subprocess.run([sys.executable, *command, "--offer", str(offer)], input=stdin,
                           capture_output=True, timeout=30, env=env, cwd=ROOT)
        err = r.stderr.decode()
        assert r.returncode == 1 and r.stdout == b"", (name, err)
        assert err.count("\n") == 1 and "Traceback" not in err, (name, err)
        assert err.startswith("decline (akash1tenant): order"), (name, err)


# ---- orders that are fine ----------------------------------------------------------------------

def expected_bid(usd_per_hour: float, precision: int = 6, usd_per_coin: float = 1.0) -> str:
    per_block = Decimal(repr(usd_per_hour * 1.05 * 6.117 / 3600 * 1e6 / usd_per_coin))
    return f"{per_block.quantize(Decimal(1).scaleb(-precision), ROUND_CEILING):.{precision}f}"


def service_usd_per_hour(gpus: int, cpu_cores: float, memory_gib: float,
                         storage: tuple[tuple[float, float], ...], endpoints: int = 1) -> float:
    """Per replica: the GPUs' floor, CPU, memory, each (GiB, USD per GiB-month) volume and the
    endpoints, as PRICES has them."""
    month = 30.437 * 24
    return (gpus * 2.0 + cpu_cores * 0.01 + memory_gib * 0.002
            + sum(gib * usd / month for gib, usd in storage) + endpoints * 0.05 / month)


ONE_H200 = service_usd_per_hour(1, 8, 64, ((1, 0.02), (100, 0.04)))
CPU_ONLY = service_usd_per_hour(0, 2, 4, ((10, 0.02),), endpoints=2)


@pytest.mark.parametrize(("doc", "bid"), [
    (provider_order(), expected_bid(ONE_H200)),
    (provider_order(provider_service(units=2, count=2), provider_service(
        units=0, cpu=2000, memory=4 * GIB, storage=(("ephemeral", 10 * GIB),), endpoints=2)),
     expected_bid(2 * (ONE_H200 + 2.0) + CPU_ONLY)),
    (provider_order(provider_service(model="*")), expected_bid(ONE_H200)),
    (provider_order(precision=None), expected_bid(ONE_H200)),
    (provider_order(precision=18), expected_bid(ONE_H200, 18)),
    (provider_order(denom="uakt"), expected_bid(ONE_H200, usd_per_coin=2.5)),
    ({**provider_order(), "x_later_field": {"a": [1, 2]}}, expected_bid(ONE_H200)),
], ids=["one-h200", "two-services", "wildcard", "default-precision", "precision-18", "uakt",
        "unknown-field"])
def test_real_shaped_orders_are_still_priced(monkeypatch, capsys, offer_file, doc, bid):
    rc, out, err = run_main(monkeypatch, capsys, provider_stdin(doc), offer_file)
    assert (rc, err) == (0, "")
    assert Decimal(out) == pytest.approx(Decimal(bid), abs=Decimal("1e-6"))
    assert len(out.strip().rsplit(".", 1)[1]) == (doc.get("price_precision") or 6)


def test_the_checked_order_carries_the_provider_fields():
    order = parse_order(provider_stdin(provider_order(provider_service(units=2, count=3))))
    (service,) = order.services
    assert (service.count, service.cpu_milli, service.memory_bytes) == (3, 8000, 64 * GIB)
    assert service.gpu.units == 2
    assert service.gpu.models == (GpuModel("nvidia", "h200", "141gi", "sxm"),)
    assert [(v.storage_class, v.size_bytes) for v in service.storage] == [
        ("ephemeral", GIB), ("beta3", 100 * GIB)]
    assert (service.endpoints, service.ip_leases) == (1, 0)
    assert (order.denom, order.max_amount, order.price_precision, order.gpus) == (
        "uact", Decimal(100000), 6, 6)
    assert parse_order(provider_order()) == parse_order(provider_stdin(provider_order()))


def test_an_order_the_offer_prices_at_nothing_is_declined_not_bid_zero():
    free = AkashPrices(cpu_usd_per_core_hour=0.0, memory_usd_per_gib_hour=0.0,
                       storage_usd_per_gib_month=(("ephemeral", 0.0), ("beta3", 0.0)),
                       endpoint_usd_per_month=0.0, ip_usd_per_month=0.0)
    order = parse_order(provider_order(provider_service(units=0)))
    with pytest.raises(Decline, match="prices to zero"):
        price_order(order, parse_offer(live_offer(free)), datetime.now(UTC))


# ---- the offer file ----------------------------------------------------------------------------

def offer_with(key: str, value: object) -> dict:
    doc = live_offer()
    doc["akash"][key] = value
    return doc


@pytest.mark.parametrize(("offer_doc", "names"), [
    ([live_offer()], "offer: must be an object"),
    ({"akash": live_offer()["akash"]}, "offer.valid_until: is missing"),
    ({**live_offer(), "valid_until": "soon"}, "offer.valid_until: must be an ISO 8601 time"),
    ({**live_offer(), "valid_until": 17}, "offer.valid_until"),
    ({**live_offer(), "akash": None}, "offer.akash: must be an object"),
    (offer_with("margin_pct", "abc"), "offer.akash.margin_pct"),
    (offer_with("margin_pct", float("nan")), "offer.akash.margin_pct"),
    (offer_with("block_seconds", 0), "offer.akash.block_seconds"),
    (offer_with("gpus_available", -1), "offer.akash.gpus_available"),
    (offer_with("gpus_available", "6"), "offer.akash.gpus_available"),
    (offer_with("floor_usd_per_gpu_hour", {"h200": float("inf")}),
     "offer.akash.floor_usd_per_gpu_hour.h200"),
    (offer_with("floor_usd_per_gpu_hour", [2.0]), "offer.akash.floor_usd_per_gpu_hour"),
    (offer_with("storage_usd_per_gib_month", {"beta3": -1}),
     "offer.akash.storage_usd_per_gib_month.beta3"),
    (offer_with("cpu_usd_per_core_hour", 1e308), "offer.akash.cpu_usd_per_core_hour"),
], ids=["a-list", "no-valid-until", "valid-until-word", "valid-until-number", "akash-null",
        "margin-word", "margin-nan", "block-zero", "gpus-negative", "gpus-string", "floor-inf",
        "floors-a-list", "storage-negative", "cpu-1e308"])
def test_a_broken_offer_file_is_declined_in_one_line_naming_the_key(monkeypatch, capsys,
                                                                    tmp_path, offer_doc, names):
    path = tmp_path / "offer.json"
    path.write_text(json.dumps(offer_doc))
    rc, out, err = run_main(monkeypatch, capsys, REAL, path)
    assert_one_line_decline(rc, out, err, names)
    assert f"offer {path} is unusable" in err


@pytest.mark.parametrize("content", [b"", b"{", b"\xff", b"[" * DEEP])
def test_an_offer_file_that_is_not_json_is_declined_in_one_line(monkeypatch, capsys, tmp_path,
                                                                content):
    path = tmp_path / "offer.json"
    path.write_bytes(content)
    rc, out, err = run_main(monkeypatch, capsys, REAL, path)
    assert_one_line_decline(rc, out, err, f"offer {path} is unusable: offer: ")


def test_the_offer_floor_matches_models_whatever_their_case():
    doc = build_offer(Capacity(6, "H200", 141.0), 2.0, PRICES,
                      datetime.now(UTC) + timedelta(hours=1))
    doc["akash"]["floor_usd_per_gpu_hour"] = {"H200": 3.0}
    bid = price_order(parse_order(provider_order()), parse_offer(doc), datetime.now(UTC))
    assert Decimal(bid) == pytest.approx(Decimal(expected_bid(ONE_H200 + 1.0)),
                                         abs=Decimal("1e-6"))

"""Akash leases and escrow earnings read from the chain's real REST shapes (market v1beta5,
deployment v1beta4, escrow v1), served by a local node: every lease with its GPUs, price and
earnings; one unreadable record skipped and logged once, never the market down; a garbage page
a MarketError that says what came; and the agent showing and booking all of it."""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

import market_adapter.akash as akash
from market_adapter.akash import AkashChain, AkashMarket, AkashPrices, chain_time
from market_adapter.base import ACTIVE, CLOSED, MarketError
from node.books.ledger import book_payouts
from node.clock import SimulatedClock
from node.service import open_agent
from node.status import agent_status
from tests.akash_chain_fixtures import (
    AKT_USD,
    BLOCK_S,
    EXPECTED,
    LATEST_HEIGHT,
    LATEST_TIME,
    PROVIDER,
    TENANT_A,
    ChainNode,
    latest_block,
)
from tests.conftest import START, demo_cfg

NOW = datetime(2026, 11, 20, 12, 5, tzinfo=UTC)
LEASES = "/akash/market/v1beta5/leases/list"
GROUPS = "/akash/deployment/v1beta4/groups/info"
BLOCKS = "/cosmos/base/tendermint/v1beta1/blocks/latest"
SERVE = f"{TENANT_A}/26104512/2/1"  # the lease the broken-record cases break
SERVE_GROUP = (TENANT_A, 26104512, 2)


@pytest.fixture
def node():
    n = ChainNode()
    yield n
    n.close()


def chain_of(node: ChainNode, **kw) -> AkashChain:
    kw = {"akt_usd": AKT_USD, "page_limit": 2, "timeout_s": 5.0, **kw}
    return AkashChain(node.url, PROVIDER, **kw)


def by_id(items) -> dict:
    return {x.lease_id: x for x in items}


def test_every_lease_reads_with_its_gpus_price_state_times_and_earnings(node):
    chain = chain_of(node)
    leases, payouts = chain.leases_and_payouts(NOW)
    leases, payouts = by_id(leases), by_id(payouts)
    assert set(leases) == set(EXPECTED) == set(payouts)
    for lease_id, want in EXPECTED.items():
        lease = leases[lease_id]
        assert (lease.gpus, lease.state) == (want["gpus"], want["state"]), lease_id
        assert lease.price_per_gpu_hour == pytest.approx(want["usd_per_gpu_hour"], rel=1e-9)
        assert payouts[lease_id].amount == pytest.approx(want["earned"], rel=1e-12)
        assert payouts[lease_id].cumulative and payouts[lease_id].ts == NOW
        assert (lease.ended is None) == (lease.state == ACTIVE)
    latest = chain_time(LATEST_TIME)
    train = leases[f"{TENANT_A}/26104512/1/1"]
    assert train.started == latest - timedelta(seconds=(LATEST_HEIGHT - 26190000) * BLOCK_S)
    closed = leases["akash1ma4k5herp6j44an0hsfcv5l4pyrxwnrzvlgh89/21650220/1/1"]
    assert closed.ended - closed.started == timedelta(seconds=(21710044 - 21650241) * BLOCK_S)
    assert chain.unreadable == {}


def test_pages_follow_next_key_and_groups_are_fetched_once(node):
    chain = chain_of(node)
    chain.leases_and_payouts(NOW)
    chain.leases_and_payouts(NOW)
    pages = [q for path, q in node.requests if path == LEASES]
    assert len(pages) == 6  # 6 leases, 2 a page, twice
    assert all(q["filters.provider"] == PROVIDER and q["pagination.limit"] == "2"
               and "filters.state" not in q for q in pages)  # every state, closed ones too
    assert ["pagination.key" in q for q in pages[:3]] == [False, True, True]
    groups = [q for path, q in node.requests if path == GROUPS]
    assert len(groups) == len(EXPECTED)  # a group's spec never changes: read once
    assert {(q["id.owner"], q["id.dseq"], q["id.gseq"]) for q in groups} == {
        (k.split("/")[0], k.split("/")[1], k.split("/")[2]) for k in EXPECTED}


def test_one_page_holds_them_all_at_the_default_limit(node):
    leases, _ = AkashChain(node.url, PROVIDER, akt_usd=AKT_USD).leases_and_payouts(NOW)
    assert len(leases) == len(EXPECTED)
    assert [q["pagination.limit"] for p, q in node.requests if p == LEASES] == ["100"]


def test_a_lease_listed_twice_is_read_once(node):
    node.leases.append(copy.deepcopy(serve_record(node)))
    node.indexed.append(copy.deepcopy(serve_record(node)["lease"]))
    leases, payouts = chain_of(node).leases_and_payouts(NOW)
    assert len(leases) == len(payouts) == len(EXPECTED)


def test_a_gpu_left_null_counts_none(node):
    train = node.groups[(TENANT_A, 26104512, 1)]
    train["group"]["group_spec"]["resources"][1]["resource"]["gpu"] = None  # the sidecar
    leases = by_id(chain_of(node).leases_and_payouts(NOW)[0])
    assert leases[f"{TENANT_A}/26104512/1/1"].gpus == 4


def test_a_lease_in_uakt_is_skipped_until_the_akt_price_is_set(node, caplog):
    chain = chain_of(node, akt_usd=0.0)
    leases, payouts = chain.leases_and_payouts(NOW)
    uakt = "akash1ma4k5herp6j44an0hsfcv5l4pyrxwnrzvlgh89/21877003/1/1"
    assert uakt not in by_id(leases) and uakt not in by_id(payouts)
    assert len(leases) == len(EXPECTED) - 1
    assert "set markets.akash.akt_usd" in chain.unreadable[uakt]


def parent_of(doc: dict, path: str) -> tuple[dict | list, str | int]:
    """The container holding the last step of a dotted path (digits index lists), and that
    step."""
    *parents, last = [int(s) if s.isdigit() else s for s in path.split(".")]
    for step in parents:
        doc = doc[step]
    return doc, last


def drop(path: str):
    def mutate(doc: dict) -> None:
        target, last = parent_of(doc, path)
        del target[last]
    return mutate


def put(path: str, value: object):
    def mutate(doc: dict) -> None:
        target, last = parent_of(doc, path)
        target[last] = value
    return mutate


# (how the serve lease's record is broken, a part of the message that must name it)
MISSING = [
    (drop("lease.id"), "lease.id: is missing"),
    (drop("lease.id.dseq"), "lease.id.dseq: is missing"),
    (drop("lease.id.provider"), "lease.id.provider: is missing"),
    (drop("lease.state"), "lease.state: is missing"),
    (drop("lease.price"), "lease.price: is missing"),
    (drop("lease.price.amount"), "lease.price.amount: is missing"),
    (drop("lease.created_at"), "lease.created_at: is missing"),
    (drop("lease.closed_on"), "lease.closed_on: is missing"),
    (drop("escrow_payment"), "escrow_payment: is missing"),
    (drop("escrow_payment.state.withdrawn"), "escrow_payment.state.withdrawn: is missing"),
    (drop("escrow_payment.state.balance"), "escrow_payment.state.balance: is missing"),
]
WRONG_TYPE = [
    (put("lease", ["a", "list"]), "lease: is a list, not an object"),
    (put("lease.id.gseq", "two"), "lease.id.gseq: is 'two', not a whole number"),
    (put("lease.id.oseq", -1), "lease.id.oseq: -1 is outside"),
    (put("lease.id.oseq", 2**40), "is outside 0..4294967295"),
    (put("lease.id.owner", 7), "lease.id.owner: is 7, not a name"),
    (put("lease.id.owner", "akash1\n"), "lease.id.owner: is 'akash1\\n', not a name"),
    (put("lease.created_at", 26190010.5), "lease.created_at: is 26190010.5"),
    (put("lease.created_at", True), "lease.created_at: is True"),
    (put("lease.created_at", "2.6e7"), "lease.created_at: is '2.6e7'"),
    (put("lease.created_at", "\u0663\u0664"), "lease.created_at: is"),  # Arabic-Indic digits
    (put("lease.closed_on", None), "lease.closed_on: is null"),
    (put("lease.price.amount", 3738), "lease.price.amount: is 3738, not a coin amount"),
    (put("lease.price.amount", "NaN"), "lease.price.amount: is 'NaN'"),
    (put("lease.price.amount", "-3738.0"), "lease.price.amount: is '-3738.0'"),
    (put("lease.price.amount", "1e5"), "lease.price.amount: is '1e5'"),
    (put("lease.price.amount", "9" * 60), "lease.price.amount: is '99999"),
    (put("escrow_payment.state.balance", {"denom": "uact"}), "balance.amount: is missing"),
    (put("escrow_payment.state", "open"), "escrow_payment.state: is a string"),
    (put("lease.state", 1), "lease.state: is 1, not a name"),
]
UNKNOWN_VALUE = [
    (put("lease.price.denom", "uatom"), "lease.price.denom: 'uatom' is neither uact nor uakt"),
    (put("lease.price.denom", "UACT"), "'UACT' is neither"),
    (put("lease.price.denom", "ibc/170C677610AC31DF0904FFE09CD3B5C657492170E7E52372E48756B71"
                              "E56F2F1"), "is neither uact nor uakt"),
    (put("escrow_payment.state.withdrawn.denom", "uusdc"), "withdrawn.denom: 'uusdc'"),
    (put("lease.state", "paused"), "lease.state: 'paused' is not one of active"),
    (put("lease.state", "invalid"), "lease.state: 'invalid' is not one of"),
]
NOT_OURS = [
    (put("lease.id.provider", "akash1ma4k5herp6j44an0hsfcv5l4pyrxwnrzvlgh89"),
     "not this provider"),
    (put("escrow_payment.id.xid", f"1/1/{PROVIDER}"), "not the lease's payment"),
    (put("escrow_payment.id.aid.xid", f"{TENANT_A}/1"), "not the lease's payment"),
    (put("lease.closed_on", "26190000"), "lease.closed_on: 26190000 is before"),
]
RECORDS = MISSING + WRONG_TYPE + UNKNOWN_VALUE + NOT_OURS


def serve_record(node: ChainNode) -> dict:
    return next(r for r in node.leases if r["lease"]["id"]["dseq"] == "26104512"
                and r["lease"]["id"]["gseq"] == 2)


def assert_only_serve_skipped(chain: AkashChain, node: ChainNode, why: str, caplog) -> str:
    """Sync twice: every other lease is read, the broken one is skipped naming why, and the
    warning is written once."""
    for _ in range(2):
        leases, payouts = chain.leases_and_payouts(NOW)
    assert set(by_id(leases)) == set(by_id(payouts)) == set(EXPECTED) - {SERVE}
    [(name, message)] = chain.unreadable.items()
    assert why in message, message
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and name in
                r.getMessage()]
    assert len(warnings) == 1 and why in warnings[0].getMessage()
    return name


@pytest.mark.parametrize("mutate,why", RECORDS)
def test_an_unreadable_lease_record_is_skipped_and_logged_once(node, caplog, mutate, why):
    mutate(serve_record(node))
    caplog.set_level(logging.INFO, logger="market_adapter.akash")
    name = assert_only_serve_skipped(chain_of(node), node, why, caplog)
    assert name == SERVE or name.startswith("#")  # by its id, or where it was without one


def group_doc(node: ChainNode) -> dict:
    return node.groups[SERVE_GROUP]


GROUPS_BROKEN = [
    (lambda n: n.groups.pop(SERVE_GROUP), "answered HTTP 404: "),
    (lambda n: n.groups.__setitem__(SERVE_GROUP, b"<html>busy</html>"), "not JSON"),
    (lambda n: n.groups.__setitem__(SERVE_GROUP, b"[" * 100_000 + b"]" * 100_000),
     "nested too deep"),
    (lambda n: n.groups.__setitem__(SERVE_GROUP, b"[]"), "answered a list, not a JSON object"),
    (lambda n: put("group.id.gseq", 1)(group_doc(n)), "not the lease's group"),
    (lambda n: drop("group.group_spec")(group_doc(n)), "group.group_spec: is missing"),
    (lambda n: put("group.group_spec.resources", {})(group_doc(n)),
     "resources: is an object, not a list"),
    (lambda n: drop("group.group_spec.resources.0.resource")(group_doc(n)),
     "resources.0.resource: is missing"),
    (lambda n: drop("group.group_spec.resources.0.resource.gpu")(group_doc(n)),
     "resources.0.resource.gpu: is missing"),
    (lambda n: put("group.group_spec.resources.0.resource.gpu.units", {"val": "two"})(
        group_doc(n)), "gpu.units.val: is 'two'"),
    (lambda n: put("group.group_spec.resources.0.count", "x")(group_doc(n)),
     "resources.0.count: is 'x'"),
    (lambda n: drop("group.group_spec.resources.0.count")(group_doc(n)),
     "resources.0.count: is missing"),
]


@pytest.mark.parametrize("breaks,why", GROUPS_BROKEN)
def test_a_lease_whose_group_cannot_be_read_is_skipped_then_read_when_it_can(node, caplog,
                                                                             breaks, why):
    good = copy.deepcopy(node.groups[SERVE_GROUP])
    breaks(node)
    caplog.set_level(logging.INFO, logger="market_adapter.akash")
    chain = chain_of(node)
    assert assert_only_serve_skipped(chain, node, why, caplog) == SERVE
    assert f"group {TENANT_A}/26104512/2" in chain.unreadable[SERVE]
    node.groups[SERVE_GROUP] = good
    leases, _ = chain.leases_and_payouts(NOW)
    assert by_id(leases)[SERVE].gpus == 1 and chain.unreadable == {}
    assert any("no longer skipped" in r.getMessage() for r in caplog.records)


def long_json() -> bytes:
    return b'{"leases": [], "pad": "' + b"x" * (2 << 20) + b'"}'


# (what leases/list answers, what the MarketError must say)
PAGES = [
    ((200, b"<html>502 Bad Gateway</html>"), "answered something that is not JSON"),
    ((200, b"\xff\xfe\x00garbage"), "answered something that is not JSON"),
    ((200, b""), "answered something that is not JSON"),
    ((200, b"[" * 100_000 + b"]" * 100_000), "answered JSON nested too deep to read"),
    ((200, b'{"leases": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"), "nested too deep"),
    ((200, b"[]"), "answered a list, not a JSON object"),
    ((200, b'"leases"'), "answered a string, not a JSON object"),
    ((200, b"null"), "answered null, not a JSON object"),
    ((200, b"{}"), "answered null for 'leases', not a list"),
    ((200, b'{"leases": {"a": 1}}'), "answered an object for 'leases', not a list"),
    ((200, b'{"leases": [], "pagination": []}'), "pagination is a list"),
    ((200, b'{"leases": [], "pagination": {"next_key": "%%%"}}'), "next_key is '%%%', not base64"),
    ((200, b'{"leases": [], "pagination": {"next_key": 5}}'), "next_key is 5, not base64"),
    ((200, b'{"leases": [], "pagination": {"next_key": "AQI="}}'),
     "a pagination.next_key it had answered before"),
    ((500, {"code": 13, "message": "internal"}), "answered HTTP 500: {\"code\": 13"),
    ((400, {"code": 3, "message": "invalid request parameters"}), "answered HTTP 400"),
    ((200, long_json()), "answered more than 1 MiB"),
]


@pytest.mark.parametrize("answer,why", PAGES)
def test_a_garbage_page_is_a_market_error_saying_what_came(node, monkeypatch, answer, why):
    monkeypatch.setattr(akash, "MAX_BODY_BYTES", 1 << 20)
    node.answer[LEASES] = answer
    with pytest.raises(MarketError) as caught:
        chain_of(node).leases_and_payouts(NOW)
    message = str(caught.value)
    assert message.startswith("akash: ") and why in message, message
    assert "Traceback" not in message and len(message) < 400


@pytest.mark.parametrize("block,why", [
    ({"block": {"header": {"height": "x", "time": LATEST_TIME}}}, "block.header.height: is 'x'"),
    ({"block": {"header": {"height": "1"}}}, "block.header.time: is missing"),
    ({"block": {"header": {"height": "1", "time": "yesterday"}}}, "latest block is unreadable"),
    ({"block": None}, "block: is null, not an object"),
])
def test_an_unreadable_latest_block_is_a_market_error(node, block, why):
    node.latest = block
    with pytest.raises(MarketError, match="latest block is unreadable") as caught:
        chain_of(node).leases_and_payouts(NOW)
    assert why in str(caught.value)


def test_errors_never_show_the_nodes_credentials_or_an_echoed_key(node):
    secret_url = f"http://sunrig:hunter2secret@127.0.0.1:{node.url.rsplit(':', 1)[1]}"
    node.answer[LEASES] = (500, b'{"message": "denied ?api_key=echoedsecret"}')
    with pytest.raises(MarketError) as caught:
        AkashChain(secret_url, PROVIDER, timeout_s=5.0).leases_and_payouts(NOW)
    assert "echoedsecret" not in str(caught.value) and "hunter2secret" not in str(caught.value)
    with pytest.raises(MarketError, match="failed") as down:
        AkashChain("http://sunrig:hunter2secret@127.0.0.1:9", PROVIDER,
                   timeout_s=2.0).leases_and_payouts(NOW)
    assert "hunter2secret" not in str(down.value)


PRICES = AkashPrices(akt_usd=AKT_USD)


def test_syncing_twice_books_nothing_twice_and_errors_lose_nothing(node, tmp_path, store):
    market = AkashMarket(chain_of(node), tmp_path / "offer.json", PRICES, 1.0, lambda: NOW)

    def sync():
        market.leases()
        return book_payouts(store, market.payouts(None), market.currency_rate)

    assert sync() == len(EXPECTED)
    assert sync() == 0  # the same books: nothing new
    total = store.query("SELECT sum(amount) AS s FROM payouts")[0]["s"]
    assert total == pytest.approx(sum(w["earned"] for w in EXPECTED.values()))
    node.answer[LEASES] = (503, {"code": 14, "message": "unavailable"})
    with pytest.raises(MarketError, match="HTTP 503"):
        market.leases()
    del node.answer[LEASES]
    assert sync() == 0
    assert store.query("SELECT sum(amount) AS s FROM payouts")[0]["s"] == pytest.approx(total)


def test_an_escrow_that_grows_books_only_the_growth(node, tmp_path, store):
    market = AkashMarket(chain_of(node), tmp_path / "o.json", PRICES, 1.0, lambda: NOW)
    market.leases()
    book_payouts(store, market.payouts(None), 1.0)
    serve_record(node)["escrow_payment"]["state"]["balance"]["amount"] = "3000000.5"
    market.leases()
    assert book_payouts(store, market.payouts(None), 1.0) == 1
    rows = store.query("SELECT amount FROM payouts WHERE lease_id = ? ORDER BY ts, amount DESC",
                       [SERVE])
    assert [r["amount"] for r in rows] == pytest.approx([31.0, 2.0])


def agent_with_akash(tmp_path, node: ChainNode, usd_per_site_currency: float = 1.08):
    """The agent on the demo config with Akash enabled against `node`, and no simulated
    market; the chain's latest block is the agent's start."""
    node.latest = latest_block(time=START.isoformat().replace("+00:00", "Z"))
    base = demo_cfg(tmp_path)
    akash_cfg = replace(base.markets.akash, enabled=True, rest_url=node.url,
                        provider_address=PROVIDER, offer_file=str(tmp_path / "offer.json"),
                        akt_usd=AKT_USD)
    markets = replace(base.markets, usd_per_site_currency=usd_per_site_currency,
                      akash=akash_cfg, sim=replace(base.markets.sim, enabled=False))
    return open_agent(replace(base, markets=markets), clock=SimulatedClock(START, speed=0))


def test_the_agent_shows_each_lease_and_books_its_earnings(tmp_path, node):
    agent = agent_with_akash(tmp_path, node)
    try:
        agent.run_job("sync_markets")
        status = json.loads(json.dumps(agent_status(agent)))  # what /api/status serves
        assert status["jobs"]["sync_markets"]["ok"] and "akash" not in agent.state.markets_down
        shown = {le["lease_id"]: le for le in status["leases"]}
        active = {k: w for k, w in EXPECTED.items() if w["state"] == "active"}
        assert set(shown) == set(active)
        for lease_id, want in active.items():
            assert shown[lease_id]["gpus"] == want["gpus"]
            assert shown[lease_id]["price_per_gpu_hour"] == pytest.approx(
                want["usd_per_gpu_hour"] / 1.08, abs=1e-6)
        booked = {r["lease_id"]: r for r in agent.store.query(
            "SELECT lease_id, sum(amount) AS site, sum(amount_market) AS usd FROM payouts "
            "WHERE market = 'akash' GROUP BY lease_id")}
        assert set(booked) == set(EXPECTED)
        for lease_id, want in EXPECTED.items():
            assert booked[lease_id]["usd"] == pytest.approx(want["earned"], abs=1e-9)
            assert booked[lease_id]["site"] == pytest.approx(want["earned"] / 1.08, abs=1e-5)
        total = sum(w["earned"] for w in EXPECTED.values()) / 1.08
        [day] = agent.store.query("SELECT sum(amount) AS s FROM ledger_daily WHERE category "
                                  "= 'revenue' AND name = 'akash'") or [{}]
        assert day["s"] == pytest.approx(total, abs=1e-4)
        closed = {r["lease_id"]: r for r in agent.store.leases() if r["state"] == CLOSED}
        assert set(closed) == {k for k, w in EXPECTED.items() if w["state"] == "closed"}
    finally:
        agent.stop()
        agent.store.close()


def test_one_broken_lease_record_keeps_akash_up_in_the_agent(tmp_path, node):
    del serve_record(node)["lease"]["price"]
    agent = agent_with_akash(tmp_path, node)
    try:
        agent.run_job("sync_markets")
        status = agent_status(agent)
        assert status["jobs"]["sync_markets"]["ok"] and not agent.state.markets_down
        shown = {le["lease_id"] for le in status["leases"]}
        assert SERVE not in shown and f"{TENANT_A}/26104512/1/1" in shown
        akash = status["markets"]["akash"]
        assert not akash["down"] and "lease.price" in akash["skipped"][SERVE]
        assert agent.store.query("SELECT count(*) AS n FROM payouts WHERE lease_id = ?",
                                 [SERVE])[0]["n"] == 0
        serve_record(node)["lease"]["price"] = {"denom": "uact",
                                                "amount": "3738.166666666666666667"}
        agent.run_job("sync_markets")  # readable again: shown and booked at the next sync
        assert SERVE in {le["lease_id"] for le in agent_status(agent)["leases"]}
        assert agent_status(agent)["markets"]["akash"]["skipped"] == {}
        assert agent.store.query("SELECT sum(amount_market) AS s FROM payouts WHERE lease_id "
                                 "= ?", [SERVE])[0]["s"] == pytest.approx(31.0)
    finally:
        agent.stop()
        agent.store.close()

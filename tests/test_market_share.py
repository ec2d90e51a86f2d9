"""Each market gets its share and no more: the Akash bid endpoint declines an order beyond
Akash's share of the plan (the real bid script, as the provider runs it, against a real agent's
endpoint; orders as provider bidengine/shellscript.go writes them, tests/akash_helpers.py), and
the hold pods on Kubernetes leave Hyperbolic no more than the plan's markets together."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from market_adapter.akash_bid import BID_OPEN_S, AkashShare
from market_adapter.akash_bid_server import bid_script
from market_adapter.akash_order import Decline
from market_adapter.base import Capacity
from node.clock import SimulatedClock
from node.cluster.kube import HOLD, ROLE, KubeSplit, api_client, gpus_off_market
from node.planning.planner import Plan, PlanSlot
from node.service import open_agent
from node.wiring import akash_bid_server
from tests.akash_helpers import provider_order, provider_service, provider_stdin
from tests.conftest import HANG_S, START, demo_cfg
from tests.kube_fake import FakeKube
from tests.test_akash_bid_script import (  # noqa: F401 - fixtures: the chain, the image's PATH
    akash_cfg,
    assert_declined,
    chain,
    image_path,
    run_script,
)


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def priced() -> str:
    return "12.5"


# ---- Akash: the share the bid endpoint holds ---------------------------------------------------

def test_an_order_beyond_the_share_beside_the_leases_is_declined():
    share = AkashShare(clock=FakeClock())
    share.update(planned_gpus=3, leased_gpus=2)
    with pytest.raises(Decline, match="order asks for 2 GPUs, beyond Akash's share: the plan "
                                      "gives Akash 3, its leases hold 2, open bids 0"):
        share.bid(2, priced)
    assert share.bid(1, priced) == "12.5"


def test_bids_still_open_count_against_the_share():
    share = AkashShare(clock=FakeClock())
    share.update(4, 0)
    share.bid(3, priced)
    with pytest.raises(Decline, match="open bids 3"):
        share.bid(2, priced)  # each would fit alone; together they exceed Akash's 4
    assert share.bid(1, priced) == "12.5" and share.open_gpus() == 4


def test_a_bid_that_won_moves_from_open_to_leased():
    share = AkashShare(clock=FakeClock())
    share.update(4, 0)
    share.bid(2, priced)
    share.bid(1, priced)
    share.update(4, 2)  # the first bid's lease now holds its 2 GPUs
    assert share.open_gpus() == 1
    share.update(4, 3)
    assert share.open_gpus() == 0 and share.bid(1, priced) == "12.5"


def test_a_bid_no_lease_took_closes_after_the_providers_bid_timeout():
    clock = FakeClock()
    share = AkashShare(clock=clock)
    share.update(2, 0)
    share.bid(2, priced)
    clock.t += BID_OPEN_S - 1
    with pytest.raises(Decline):
        share.bid(1, priced)
    clock.t += 2
    assert share.open_gpus() == 0 and share.bid(1, priced) == "12.5"


def test_an_order_the_price_declines_leaves_no_open_bid():
    share = AkashShare(clock=FakeClock())
    share.update(2, 0)

    def too_cheap() -> str:
        raise Decline("tenant max 1 uact per block is below the floor 5")

    with pytest.raises(Decline, match="tenant max"):
        share.bid(2, too_cheap)
    assert share.open_gpus() == 0


def test_no_share_before_the_agent_applied_a_plan_and_a_cpu_order_needs_none():
    share = AkashShare(clock=FakeClock())
    with pytest.raises(Decline, match="no share yet"):
        share.bid(0, priced)
    share.update(0, 0)  # Akash gets no GPU now: GPU orders decline, a CPU-only one is priced
    with pytest.raises(Decline, match="beyond Akash's share"):
        share.bid(1, priced)
    assert share.bid(0, priced) == "12.5" and share.open_gpus() == 0


def test_negative_counts_are_refused():
    with pytest.raises(ValueError, match="cannot be negative"):
        AkashShare().update(-1, 0)


def test_the_real_script_declines_beyond_the_share_a_real_agent_hands_on(tmp_path, chain,  # noqa: F811
                                                                          image_path):  # noqa: F811
    cfg = akash_cfg(tmp_path, chain.url)
    clock = SimulatedClock(START, speed=0)
    agent = open_agent(cfg, clock=clock)
    server = None
    try:
        agent.run_all_once()
        share = agent.parts.akash_share
        slot = agent.state.plan.slot_at(clock.now())
        assert share.planned_gpus == slot.offered.get("akash", 0)  # the plan's split, handed on
        market = agent.parts.markets["akash"]
        market.offer(Capacity(6, "h200", 141.0), 2.0)  # the minute's offer alone would take 6
        share.update(3, 2)  # both markets sell: Akash's share is 3 GPUs, its leases hold 2
        server = akash_bid_server(cfg, market, share).start()
        token = Path(cfg.markets.akash.bid_token_file).read_text().strip()
        script = tmp_path / "price_script.sh"
        script.write_text(bid_script(server.url, token))
        script.chmod(0o744)

        def order(units: int):
            return run_script(script, image_path, provider_stdin(provider_order(
                provider_service(units=units))))

        assert_declined(order(2), "beyond Akash's share: the plan gives Akash 3, its leases "
                                  "hold 2, open bids 0")
        assert order(1).returncode == 0
        assert_declined(order(1), "open bids 1")  # the first is still open
        assert order(0).returncode == 0  # no GPU asked: nothing of the share taken
    finally:
        if server is not None:
            server.stop()
        agent.stop()
        agent.store.close()


# ---- Kubernetes: what both markets can reach -----------------------------------------------------

@pytest.mark.parametrize("planned, leased, off", [
    ({"akash": 3}, {}, 5),  # one market: exactly its share is free, as before
    ({"akash": 3}, {"akash": 2}, 5),
    ({"akash": 3, "hyperbolic": 2}, {}, 5),  # both: the larger share free, not the sum
    ({"akash": 3, "hyperbolic": 2}, {"hyperbolic": 2}, 3),  # Hyperbolic full: Akash's 3 free
    ({"akash": 3, "hyperbolic": 2}, {"akash": 3}, 3),  # Akash full: Hyperbolic's 2 free
    ({"akash": 3, "hyperbolic": 2}, {"akash": 3, "hyperbolic": 2}, 3),  # all sold: none free
    ({"akash": 1}, {"akash": 3}, 5),  # a lease beyond the plan: nothing more free
    ({}, {}, 8),
])
def test_the_node_leaves_free_the_largest_unleased_share(planned, leased, off):
    assert gpus_off_market(8, planned, leased) == off


@given(st.integers(0, 8), st.integers(0, 8), st.integers(0, 8), st.integers(0, 8))
def test_hyperbolic_never_reaches_beyond_the_markets_planned_gpus(akash, hyper, a_leased,
                                                                 h_leased):
    total = 8
    akash, hyper = min(akash, total), min(hyper, total - akash)
    a_leased, h_leased = min(a_leased, akash), min(h_leased, hyper)
    off = gpus_off_market(total, {"akash": akash, "hyperbolic": hyper},
                          {"akash": a_leased, "hyperbolic": h_leased})
    free = total - off - a_leased - h_leased
    assert free >= 0
    # what Hyperbolic could still rent: at most its own share, or Akash's if that is larger
    assert h_leased + free <= max(hyper, h_leased + akash - a_leased)
    assert a_leased + h_leased + free <= akash + hyper  # never beyond the plan's markets
    assert free >= max(akash - a_leased, hyper - h_leased)  # each can still sell its share


def test_the_agent_holds_on_kubernetes_all_but_the_larger_unleased_share(tmp_path):
    """Both markets in the plan, nothing leased: the agent's hold pods leave free Akash's 3,
    not Akash's 3 and Hyperbolic's 2, so Hyperbolic can never rent 5."""
    clock = SimulatedClock(START, speed=0)
    agent = open_agent(demo_cfg(tmp_path), clock=clock)
    kube = FakeKube()
    try:
        agent.run_all_once()
        now = clock.now()
        agent.parts.kube = KubeSplit(api_client(host=kube.url), "sunrig", "hgx-01",
                                     timeout_s=HANG_S)
        agent.state.plan = Plan(now, "both markets", (PlanSlot(
            now - timedelta(hours=1), now + timedelta(hours=1), {"akash": 3, "hyperbolic": 2},
            {"akash": 2.0, "hyperbolic": 2.0}, 0, None, 0.0),))
        agent.state.assignments = {i: a for i, a in agent.state.assignments.items()
                                   if a.lease_id is None}
        assert len(agent.state.gpus) == 8
        agent.split_on_kube()
        held = [p for p in kube.pods.values() if p["metadata"]["labels"].get(ROLE) == HOLD]
        assert len(held) == 8 - 3
    finally:
        kube.close()
        agent.stop()
        agent.store.close()

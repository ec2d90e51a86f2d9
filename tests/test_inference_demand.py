"""Local demand moves the split: requests queued at the gateway keep one more GPU local, a quiet
spell gives it back, always within the owner's min/max and never over a running lease."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime

import openai
import pytest
from conftest import make_agent, run_for

from node.clock import SimulatedClock
from node.config import InferenceConfig, LocalConfig
from node.inference.demand import DemandRule, LocalDemand
from node.inference.runtime import LocalInference
from node.inference.users import add_user
from node.roles import LOCAL, reserved_local_gpus
from node.storage.store import Store

RULE = DemandRule(queue_wait_s=2.0, queue_for_s=300.0, quiet_for_s=3600.0, min_gpus=0,
                  max_gpus=4)


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


def held_up(demand: LocalDemand, clock: FakeClock, seconds: float, wait_s: float = 5.0,
            every_s: float = 10.0) -> None:
    """Requests that each waited `wait_s`, one every `every_s`, for `seconds`."""
    end = clock.now_s + seconds
    while clock.now_s < end:
        demand.observe(wait_s)
        clock.now_s += every_s


def test_requests_held_up_for_the_period_ask_for_one_gpu_more_than_the_reservation():
    clock = FakeClock()
    demand = LocalDemand(RULE, clock)
    held_up(demand, clock, 200)
    assert demand.wanted(reserved_now=1) == 0  # not yet for the whole period
    held_up(demand, clock, 110)
    assert demand.wanted(reserved_now=1) == 2
    assert demand.wanted(reserved_now=1) == 2  # one step per period, however often asked
    held_up(demand, clock, 310)
    assert demand.wanted(reserved_now=1) == 3


def test_a_request_that_did_not_wait_breaks_the_run():
    clock = FakeClock()
    demand = LocalDemand(RULE, clock)
    held_up(demand, clock, 250)
    demand.observe(0.0)  # a free slot: there was no queue then
    held_up(demand, clock, 100)
    assert demand.wanted(reserved_now=1) == 0


def test_a_run_with_no_request_since_is_not_a_queue():
    clock = FakeClock()
    demand = LocalDemand(RULE, clock)
    demand.observe(5.0)
    clock.now_s += 1000.0
    assert demand.wanted(reserved_now=1) == 0


def test_the_extra_gpus_return_one_per_quiet_period_and_never_beyond_the_maximum():
    clock = FakeClock()
    demand = LocalDemand(RULE, clock)
    for _ in range(6):
        held_up(demand, clock, 310)
        demand.wanted(reserved_now=2)
    assert demand.gpus == RULE.max_gpus
    clock.now_s += 3599.0
    assert demand.wanted(reserved_now=2) == 4
    clock.now_s += 2.0
    assert demand.wanted(reserved_now=2) == 3
    clock.now_s += 3600.0
    assert demand.wanted(reserved_now=2) == 0  # down to the schedule's: it decides again


def test_the_reservation_is_the_larger_of_schedule_and_demand_within_min_and_max():
    noon = datetime(2024, 6, 12, 12, 0)
    local = LocalConfig(reserved_gpus=2)
    assert reserved_local_gpus(local, noon) == 2
    assert reserved_local_gpus(local, noon, demand_gpus=3) == 3
    assert reserved_local_gpus(local, noon, demand_gpus=1) == 2
    assert reserved_local_gpus(local, noon, demand_gpus=6, bounds=(0, 4)) == 4
    assert reserved_local_gpus(local, noon, demand_gpus=0, bounds=(3, 8)) == 3


def test_requests_queued_at_the_gateway_raise_the_demand(tmp_path):
    store = Store(tmp_path / "store.db", "Europe/Amsterdam")
    cfg = InferenceConfig(enabled=True, port=0, simulated=True, queue_wait_s=0.05,
                          queue_for_s=1.0, requests_per_minute=1e4)
    inference = LocalInference(cfg, store, SimulatedClock(datetime(2024, 6, 10, tzinfo=UTC), 1))
    clock = FakeClock()
    inference.demand = LocalDemand(DemandRule.of(cfg), clock)
    inference._backends[cfg.simulated_model].parallel = 1  # one slot: a second request waits
    inference.start()
    try:
        inference.simulated.delay_per_token_s = 0.02
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{inference.gateway.port}/v1",
                               api_key=add_user(store, "ann", datetime.now(UTC)), max_retries=0)
        threads = [threading.Thread(target=lambda: client.chat.completions.create(
            model=cfg.simulated_model, messages=[{"role": "user", "content": "hi"}],
            stream=True).response.read()) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert inference.view()["demand"]["held_up"]  # the later requests waited in line
        clock.now_s += 1.0
        assert inference.demand.wanted(reserved_now=1) == 2
    finally:
        inference.stop()
        store.close()


def test_the_agent_keeps_one_more_gpu_local_under_demand_never_taking_a_lease(tmp_path):
    agent, clock = make_agent(tmp_path)
    agent.cfg = replace(agent.cfg, inference=replace(agent.cfg.inference, enabled=True,
                                                     max_local_gpus=8))
    run_for(agent, clock, hours=4)
    leased = {i for i, a in agent.state.assignments.items() if a.lease_id}
    local_before = sum(a.role == LOCAL for a in agent.state.assignments.values())
    demand_clock = FakeClock()
    agent.local_demand = LocalDemand(DemandRule.of(agent.cfg.inference), demand_clock)
    held_up(agent.local_demand, demand_clock, 400)
    agent.make_plan()
    agent.apply_roles()
    roles = agent.state.assignments
    local_after = sum(a.role == LOCAL for a in roles.values())
    free_before = 8 - len(leased) - local_before
    assert free_before > 0 and local_after == local_before + 1
    assert all(roles[i].lease_id for i in leased)  # no running lease taken back
    assert agent.state.plan.slots[0].local_gpus >= local_before + 1
    demand_clock.now_s += agent.cfg.inference.quiet_for_s + 1
    agent.make_plan()
    agent.apply_roles()
    assert sum(a.role == LOCAL for a in agent.state.assignments.values()) <= local_before


def test_a_soft_reservation_is_priced_at_the_local_value_of_a_gpu_hour_where_that_is_dearer(
        tmp_path):
    from node.inference.value import local_value_per_gpu_hour, with_local_value

    store = Store(tmp_path / "store.db", "Europe/Amsterdam")
    now = datetime(2024, 6, 12, 12, 0, tzinfo=UTC)
    start = now.timestamp() - 10 * 3600
    with store.transaction() as db:  # two GPUs local for five hours each, a third in the market
        db["gpu_samples"].insert_all(
            {"ts": start + k * 60, "gpu_index": i, "role": role, "interval_s": 60.0}
            for k in range(300) for i, role in ((0, "local"), (1, "local"), (2, "market")))
        db["local_value_bookings"].insert_all([
            {"day": "2024-06-12", "model": "m", "prompt_tokens": 1, "completion_tokens": 1,
             "amount": 25.0},
            {"day": "2024-06-01", "model": "m", "prompt_tokens": 1, "completion_tokens": 1,
             "amount": 999.0}])  # before the measured days
    assert local_value_per_gpu_hour(store, now) == 2.5
    assert with_local_value(1.0, store, now) == 2.5  # the owner's tokens are worth more
    assert with_local_value(4.0, store, now) == 4.0  # the market pays more
    assert with_local_value(None, store, now) is None  # strict: never planned away
    empty = Store(tmp_path / "empty.db", "Europe/Amsterdam")
    assert with_local_value(1.0, empty, now) == 1.0  # nothing measured: the market's price
    store.close()
    empty.close()


def test_requests_for_a_model_whose_server_waits_for_gpus_count_as_held_up(tmp_path):
    from node.config import InferenceServerConfig

    store = Store(tmp_path / "store.db", "Europe/Amsterdam")
    server = InferenceServerConfig(model="m", preset="command", gpus=1, args=("true",))
    cfg = InferenceConfig(enabled=True, port=0, servers=(server,), queue_for_s=1.0)
    inference = LocalInference(cfg, store, SimulatedClock(datetime(2024, 6, 10, tzinfo=UTC), 1))
    clock = FakeClock()
    inference.demand = LocalDemand(DemandRule.of(cfg), clock)
    inference.start()
    try:
        inference.set_gpus([], [])  # no local GPU: the server waits for one
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{inference.gateway.port}/v1",
                               api_key=add_user(store, "ann", datetime.now(UTC)), max_retries=0)
        for _ in range(2):
            with pytest.raises(openai.APIStatusError) as refused:
                client.chat.completions.create(model="m", messages=[
                    {"role": "user", "content": "hi"}])
            assert refused.value.status_code == 503
            clock.now_s += 1.0
        assert inference.demand.wanted(reserved_now=0) == 1
    finally:
        inference.stop()
        store.close()

import time
from datetime import timedelta

import pytest

from energy.types import SourceUnavailable
from node.clock import SimulatedClock
from node.roles import LOCAL, MARKET, PARKED
from node.service import open_agent
from tests.conftest import START, demo_cfg, make_agent, run_for, wait_until

BUSY = {"orders_per_hour": 6.0, "ask_price_per_gpu_hour": 1.8}


def payout_totals(store):
    return store.query("SELECT lease_id, count(*) AS n, sum(amount) AS paid FROM payouts "
                       "GROUP BY lease_id ORDER BY lease_id")


def assert_never_paid_more_than_leased(agent):
    now = agent.clock.now().timestamp()
    leases = {r["lease_id"]: r for r in agent.store.leases()}
    for row in payout_totals(agent.store):
        lease = leases[row["lease_id"]]
        hours = (min(lease["ended"] or now, now) - lease["started"]) / 3600
        assert row["paid"] <= lease["gpus"] * lease["price_per_gpu_hour"] * hours + 1e-6


def test_agent_sells_books_and_keeps_the_invariants(tmp_path):
    agent, clock = make_agent(tmp_path, **BUSY)
    run_for(agent, clock, hours=6)
    assert agent.healthy(), agent.state.jobs
    active = agent.store.leases("active")
    assert active, "six hours of a busy market should lease GPUs"
    roles = agent.state.assignments
    for lease in active:
        assert len(lease["gpu_indexes"]) == lease["gpus"]
        for i in lease["gpu_indexes"]:
            assert roles[i].role == MARKET and roles[i].lease_id == lease["lease_id"]
    # 12:00 local on a Wednesday: the schedule reserves 2 GPUs from 08:00, unless leases
    # that started before the planner could see it coming still hold them
    leased = sum(lease["gpus"] for lease in active)
    assert sum(a.role == LOCAL for a in roles.values()) == min(2, 8 - leased)
    for i, a in roles.items():
        snap = agent.state.gpus[i]
        if a.role == PARKED:
            assert snap.power_limit_w == snap.power_limit_min_w
    day = agent.store.local_day(clock.now())
    revenue = agent.store.query("SELECT sum(amount) AS r FROM ledger_daily WHERE day = ? AND "
                                "category = 'revenue'", [day])[0]["r"]
    cost = agent.store.query("SELECT sum(amount) AS c FROM ledger_daily WHERE day = ? AND "
                             "category = 'energy'", [day])[0]["c"]
    assert revenue > 0 and cost > 0
    assert_never_paid_more_than_leased(agent)
    agent.stop()
    agent.store.close()


def test_a_restart_resumes_without_booking_anything_twice(tmp_path):
    agent, clock = make_agent(tmp_path, **BUSY)
    run_for(agent, clock, hours=5)
    stopped_at = clock.now()
    leases = agent.store.leases()
    payouts = payout_totals(agent.store)
    assert leases and payouts
    agent.stop()
    energy = agent.store.query("SELECT sum(energy_wh) AS wh FROM energy_bookings")[0]["wh"]
    agent.store.close()

    again = open_agent(demo_cfg(tmp_path, **BUSY), clock=SimulatedClock(stopped_at, speed=0))
    again.sync_markets()
    again.sync_markets()
    again.book_ledger()
    assert again.store.leases() == leases  # same leases, same GPUs held
    assert payout_totals(again.store) == payouts
    assert again.store.query("SELECT sum(energy_wh) AS wh FROM energy_bookings")[0]["wh"] == \
        pytest.approx(energy)

    run_for(again, again.clock, hours=1)
    assert len(payout_totals(again.store)) >= len(payouts)
    assert sum(r["paid"] for r in payout_totals(again.store)) > sum(r["paid"] for r in payouts)
    assert_never_paid_more_than_leased(again)
    again.stop()
    again.store.close()


def test_a_failing_source_stops_nothing_else_and_is_logged_once(tmp_path, caplog):
    agent, clock = make_agent(tmp_path)
    agent.run_all_once()
    real_read = agent.parts.site.read

    def broken(ts):
        raise SourceUnavailable("meter at 192.0.2.10:502 timed out")
    agent.parts.site.read = broken
    for _ in range(3):
        clock.advance(60)
        agent.run_all_once()
    assert not agent.state.jobs["sample_site"].ok
    assert agent.state.jobs["sample_site"].failures == 3
    assert all(h.ok for name, h in agent.state.jobs.items() if name != "sample_site")
    assert caplog.text.count("job sample_site failing") == 1
    agent.parts.site.read = real_read
    clock.advance(60)
    agent.run_all_once()
    assert agent.healthy()
    kinds = [e["message"] for e in agent.store.events(10)]
    assert any("sample_site recovered" in m for m in kinds)
    assert sum("sample_site failing" in m for m in kinds) == 1
    agent.store.close()


def test_scheduler_runs_every_job_and_stops_cleanly(tmp_path):
    clock = SimulatedClock(START, speed=3600)  # an hour a second
    agent = open_agent(demo_cfg(tmp_path), clock=clock)

    def site_samples() -> int:
        return agent.store.query("SELECT count(*) AS n FROM site_samples")[0]["n"]
    agent.start()  # runs each job once, then the scheduler runs them again and again
    try:
        wait_until(lambda: site_samples() >= 20, "the scheduler sampled the site 20 times")
    finally:
        agent.stop()
    assert all(h.last_ok is not None for h in agent.state.jobs.values())
    after = site_samples()
    time.sleep(0.3)
    assert site_samples() == after  # nothing runs after stop
    agent.store.close()


def test_no_prices_means_nothing_is_offered(tmp_path):
    agent, clock = make_agent(tmp_path)
    agent.run_all_once()
    clock.advance(3 * 86400 * 365)  # beyond the recorded prices, without replay
    agent.parts.tariff._replay = False
    agent.state.plan = None
    assert not agent.run_job("prices")
    agent.run_job("sample_gpus")
    agent.run_job("apply_roles")
    assert all(a.role in (LOCAL, PARKED) or a.lease_id for a in agent.state.assignments.values())
    assert clock.now() - START > timedelta(days=365)
    agent.store.close()


def test_one_market_down_does_not_keep_the_others_unsynced(tmp_path):
    from market_adapter.base import MarketError

    agent, clock = make_agent(tmp_path, **BUSY)

    class Down:
        name, currency_rate = "down", 1.0

        def offer(self, capacity, floor):
            pass

        def leases(self):
            raise MarketError("down: HTTP 503 from the market API")

    agent.parts.markets = {"down": Down(), **agent.parts.markets}
    agent.parts.terms = {"down": agent.parts.terms["sim"], **agent.parts.terms}
    run_for(agent, clock, hours=2)
    health = agent.state.jobs["sync_markets"]
    assert not health.ok and "HTTP 503" in health.last_error
    assert agent.store.leases("active"), "the sim market still synced its leases"
    assert agent.watchdog_ok()  # the outside world's failure: stale, no restart
    agent.store.close()

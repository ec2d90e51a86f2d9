import os
import signal
from dataclasses import replace
from datetime import date, timedelta

from node.planning.projection import (
    HORIZON_YEARS,
    MIN_PACE_DAYS,
    YearProjection,
    fingerprint,
    horizon_date,
    outlook,
    projected_date,
)
from node.status import payback_view
from tests.conftest import make_agent, run_for, wait_until


def with_projection(agent, days=2, niceness=0, **energy):
    """Project from `days` of the simulated year. The child runs at the agent's own priority
    here: at the owner's lowest one a busy machine may starve it for as long as it stays busy
    (that priority has a test of its own)."""
    sim = replace(agent.cfg.simulation, project_payback=True, days=days)
    es = replace(agent.cfg.energy.simulated, **energy)
    agent.cfg = replace(agent.cfg, simulation=sim,
                        energy=replace(agent.cfg.energy, simulated=es))
    agent.projection.niceness = niceness


def wait_for_projection(agent):
    """Poll as the agent's job does until the child has answered and the answer is stored."""
    agent.project_payback()  # starts the child
    assert agent.projection.running

    def answered():
        agent.project_payback()
        return not agent.projection.running
    wait_until(answered, "the simulation never answered")
    return agent.projection.stored()


def test_the_simulated_year_projects_a_payback_date_and_is_kept(tmp_path):
    agent, clock = make_agent(tmp_path)
    run_for(agent, clock, hours=0.5)
    with_projection(agent)
    stored = wait_for_projection(agent)
    assert stored["ok"] and stored["policy"] == "planner" and stored["days"] == 2
    assert stored["fingerprint"] == fingerprint(agent.cfg)
    assert stored["net_per_day"] > 0 and 0 < stored["utilization"] <= 1
    view = payback_view(agent)
    sim = view["simulation"]
    today = clock.now().astimezone(agent.store.tz).date()
    remaining = view["capex"] - view["net_to_date"]
    expected = today + timedelta(days=int(remaining / stored["net_per_day"]) + 1)
    assert sim["projected_date"] == expected.isoformat()
    assert "fingerprint" not in sim["result"] and sim["running"] is False
    agent.project_payback()  # the same settings: nothing to run again
    assert not agent.projection.running
    with_projection(agent, days=3)  # a change it depends on: run again, keep the old meanwhile
    agent.project_payback()
    assert agent.projection.running and payback_view(agent)["simulation"]["result"]["days"] == 2
    agent.stop()
    assert not agent.projection.running


def test_a_simulation_that_fails_says_why_and_the_agent_carries_on(tmp_path):
    bad = tmp_path / "site.csv"
    bad.write_text("ts_utc,load_w,pv_w\nnot a time,1,2\n")
    agent, clock = make_agent(tmp_path)
    with_projection(agent, data_file=str(bad))
    stored = wait_for_projection(agent)
    assert stored["ok"] is False and "site.csv" in stored["error"]
    sim = payback_view(agent)["simulation"]
    assert sim["projected_date"] is None and sim["result"]["error"] == stored["error"]
    assert agent.run_job("project_payback") and agent.healthy()
    agent.store.close()


def test_the_simulation_runs_at_the_lowest_priority_and_stopping_the_agent_ends_it(tmp_path):
    agent, clock = make_agent(tmp_path)
    with_projection(agent, days=364, niceness=YearProjection.niceness)
    agent.project_payback()
    proc = agent.projection._proc

    def lowest_priority():
        assert proc.is_alive(), f"the simulation ended early (exit {proc.exitcode})"
        return os.getpriority(os.PRIO_PROCESS, proc.pid) == 19
    wait_until(lowest_priority, "the simulation never lowered its priority")
    agent.stop()
    assert not agent.projection.running and not proc.is_alive()
    # ended by a signal, not waited for: a year that ran to its end exits 0
    assert proc.exitcode in (-signal.SIGTERM, -signal.SIGKILL)
    assert agent.projection.stored() is None  # nothing half-done is kept
    agent.store.close()


def test_projected_date_at_the_simulated_pace():
    today = date(2026, 6, 1)
    ok = {"ok": True, "net_per_day": 100.0}
    assert projected_date(ok, 1000.0, today) == date(2026, 6, 12)
    assert projected_date(ok, -5.0, today) == today  # paid back already
    assert projected_date({"ok": True, "net_per_day": -3.0}, 1000.0, today) is None
    assert projected_date({"ok": False, "error": "x"}, 1000.0, today) is None
    assert projected_date(None, 1000.0, today) is None


def test_a_pace_from_fewer_than_30_booked_days_gives_no_date_but_the_days_it_has():
    today = date(2026, 12, 2)
    young = outlook(date(2030, 1, 1), today, history_days=12)
    assert young["state"] == "young" and young["date"] is None
    assert young["history_days"] == 12 and young["min_days"] == MIN_PACE_DAYS
    assert outlook(date(2030, 1, 1), today, history_days=30) == {
        "date": "2030-01-01", "horizon": "2051-12-02", "history_days": 30,
        "min_days": MIN_PACE_DAYS, "state": "ok"}


def test_a_date_past_the_horizon_or_never_is_said_so_not_given():
    today = date(2028, 2, 29)
    assert horizon_date(today) == date(2028 + HORIZON_YEARS, 2, 28)  # no 29th that year
    far = outlook(date(2726, 5, 1), today)  # a pace of a few euros a day on a large CapEx
    assert far["state"] == "beyond" and far["date"] is None and far["horizon"] == "2053-02-28"
    assert outlook(None, today)["state"] == "never"
    assert outlook(horizon_date(today), today)["state"] == "ok"  # the horizon itself is in


def test_the_payback_view_reads_the_simulated_years_date_through_the_same_outlook(tmp_path):
    agent, clock = make_agent(tmp_path)
    run_for(agent, clock, hours=1)
    with_projection(agent, days=1)
    stored = wait_for_projection(agent)
    p = payback_view(agent)
    today = clock.now().astimezone(agent.store.tz).date()
    expected = projected_date(stored, p["capex"] - p["net_to_date"], today)
    assert p["simulation"]["outlook"] == outlook(expected, today)
    assert p["simulation"]["projected_date"] == (expected.isoformat() if expected else None)
    agent.store.close()

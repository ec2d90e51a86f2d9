"""Shared fixtures: configs, stores and agents on a simulated clock that moves only when told."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from node.agent import Agent
from node.clock import SimulatedClock
from node.config import Config, default_config
from node.service import open_agent
from node.storage.backup import check_backup
from node.storage.store import Store

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"


def data_file(name: str) -> str:
    """The shared data file where the checkout has it beside it, else the embedded copy."""
    shared = SHARED_DATA / name
    return str(shared) if shared.exists() else f"embedded:{name}.gz"


# Tests wait for the awaited thing itself, never for a span of time. This bound only turns a hang
# into a failure: far beyond what anything awaited takes, even on a machine kept busy by others.
HANG_S = 300.0


def wait_until(condition: Callable[[], object], what: str, poll_s: float = 0.1):
    """Poll until `condition()` is truthy and return its value; fail naming `what` on a hang."""
    deadline = time.monotonic() + HANG_S
    while not (value := condition()):
        assert time.monotonic() < deadline, f"{what}: not after {HANG_S:.0f} s"
        time.sleep(poll_s)
    return value


# Property tests neither time each example (hypothesis' default deadline) nor call data that is
# slow to generate unhealthy: both measure how busy the machine is, not the code. They draw the
# same examples on every run, so a gate passes or fails on the code, not on the draw; set
# SUNRIG_HYPOTHESIS_RANDOM=1 to go looking for new cases.
hypothesis_settings.register_profile("sunrig", deadline=None,
                                     derandomize=not os.environ.get("SUNRIG_HYPOTHESIS_RANDOM"),
                                     suppress_health_check=[HealthCheck.too_slow])
hypothesis_settings.load_profile("sunrig")


# A summer weekday inside the recorded year: sunny middle of the day, real prices.
START = datetime(2024, 6, 12, 4, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "store.db", "Europe/Amsterdam")
    yield s
    s.close()


def every_migration(tmp_path: Path) -> list[str]:
    """The migrations a new store applies: the schema of a sound store of this version."""
    Store(tmp_path / "new-store.db").close()
    return check_backup(tmp_path / "new-store.db")


def demo_cfg(tmp_path: Path, **market) -> Config:
    base = default_config()
    sim = replace(base.markets.sim, **market) if market else base.markets.sim
    # the year simulation for the payback page has tests of its own
    return replace(base, store=replace(base.store, path=str(tmp_path / "sunrig.db")),
                   markets=replace(base.markets, sim=sim),
                   simulation=replace(base.simulation, project_payback=False))


def make_agent(tmp_path: Path, start: datetime = START, **market) -> tuple[Agent, SimulatedClock]:
    clock = SimulatedClock(start, speed=0)
    return open_agent(demo_cfg(tmp_path, **market), clock=clock), clock


def run_for(agent: Agent, clock: SimulatedClock, hours: float, step_s: float = 60.0,
            jobs: tuple[str, ...] | None = None) -> None:
    """Step the agent through `hours` of simulated time, running each job at its own interval
    (only `jobs`, where a test needs no others)."""
    last: dict[str, float] = {}
    elapsed = 0.0
    while elapsed < hours * 3600:
        for name, (_, interval_s) in agent.jobs.items():
            if jobs is not None and name not in jobs:
                continue
            if elapsed - last.get(name, -1e18) >= interval_s:
                agent.run_job(name)
                last[name] = elapsed
        clock.advance(step_s)
        elapsed += step_s

from datetime import UTC, datetime, timedelta

import pytest

from node import clock as clock_mod
from node.clock import RealClock, SimulatedClock, real_seconds

T0 = datetime(2024, 6, 1, tzinfo=UTC)


def test_simulated_clock_runs_speed_times_faster(monkeypatch):
    fake = [1000.0]
    monkeypatch.setattr(clock_mod.time, "monotonic", lambda: fake[0])
    c = SimulatedClock(T0, speed=60)
    fake[0] += 2.5
    assert c.now() == T0 + timedelta(seconds=150)


def test_speed_zero_moves_only_by_advance():
    c = SimulatedClock(T0, speed=0)
    assert c.now() == T0
    assert c.advance(90) == T0 + timedelta(seconds=90)
    assert c.now() == T0 + timedelta(seconds=90)


def test_clock_needs_an_aware_start_and_a_sane_speed():
    with pytest.raises(ValueError):
        SimulatedClock(datetime(2024, 1, 1), speed=1)
    with pytest.raises(ValueError):
        SimulatedClock(T0, speed=-1)


def test_real_clock_is_utc():
    assert RealClock().now().tzinfo is UTC


def test_job_intervals_shrink_with_speed():
    assert real_seconds(SimulatedClock(T0, 60), 600) == 10
    assert real_seconds(SimulatedClock(T0, 1e6), 1) == 0.05  # never a busy loop
    assert real_seconds(RealClock(), 30) == 30

"""One source of time for the whole agent: real, or simulated and faster than real time.

Everything that needs the time asks a Clock, so the demo and simulations run exactly the code
of the live agent. `speed` says how many simulated seconds pass per real second.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    speed: float

    def now(self) -> datetime:
        """The current time, UTC, timezone-aware."""
        ...


class RealClock:
    speed = 1.0

    def now(self) -> datetime:
        return datetime.now(UTC)


class SimulatedClock:
    """Starts at `start` and runs `speed` times faster than real time.

    With speed 0 it stands still and moves only by `advance`, which tests and year-long
    simulations use to step deterministically.
    """

    def __init__(self, start: datetime, speed: float = 1.0):
        if start.tzinfo is None:
            raise ValueError("the simulated clock needs a timezone-aware start")
        if speed < 0:
            raise ValueError("speed must not be negative")
        self.speed = speed
        self._origin = start.astimezone(UTC)
        self._real_origin = time.monotonic()
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            elapsed = (time.monotonic() - self._real_origin) * self.speed
            return self._origin + timedelta(seconds=elapsed)

    def advance(self, seconds: float) -> datetime:
        with self._lock:
            self._origin += timedelta(seconds=seconds)
        return self.now()


def real_seconds(clock: Clock, simulated_seconds: float, floor_s: float = 0.05) -> float:
    """How long to wait in real time for `simulated_seconds` to pass on `clock`."""
    if clock.speed <= 0:
        return max(simulated_seconds, floor_s)
    return max(simulated_seconds / clock.speed, floor_s)

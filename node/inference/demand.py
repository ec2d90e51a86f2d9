"""Local demand moves the split: requests that wait at the gateway keep one more GPU local.

Each request the gateway passes on reports how long it waited for a free slot of its server; a
request refused because its server waits for local GPUs counts as the longest wait.
When requests have waited longer than `queue_wait_s`, without a break, for `queue_for_s`, the
demand asks for one GPU more than the owner's reservation now gives (or than it asked before),
up to `max_local_gpus`; the next plan and the next role pass keep that GPU local, never taking a
running lease back. Once no request has waited that long for `quiet_for_s`, it asks for one GPU
fewer, and so on until the schedule alone decides again. One step per period each way, so a
burst does not flap GPUs between the owner and the market.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DemandRule:
    queue_wait_s: float  # a request that waited this long was held up by a busy server
    queue_for_s: float  # held up without a break this long: one GPU more
    quiet_for_s: float  # none held up this long: one GPU fewer
    min_gpus: int
    max_gpus: int

    @classmethod
    def of(cls, inference: Any) -> DemandRule:
        """From the [inference] section."""
        return cls(inference.queue_wait_s, inference.queue_for_s, inference.quiet_for_s,
                   inference.min_local_gpus, inference.max_local_gpus)


class LocalDemand:
    """The GPUs local demand asks for, from the gateway's queue waits (thread-safe)."""

    def __init__(self, rule: DemandRule, clock: Callable[[], float] = time.monotonic):
        self.rule = rule
        self.clock = clock
        self.gpus = 0  # what demand asks for; 0: the schedule alone decides
        self._held_since: float | None = None  # the first of an unbroken run of long waits
        self._last_held: float | None = None
        self._changed = clock()
        self._lock = threading.Lock()

    def observe(self, waited_s: float) -> None:
        """One request's wait for a slot: long ones make a run, a short one breaks it."""
        now = self.clock()
        with self._lock:
            if waited_s >= self.rule.queue_wait_s:
                self._last_held = now
                if self._held_since is None:
                    self._held_since = now
            else:
                self._held_since = None

    def wanted(self, reserved_now: int) -> int:
        """Step (at most once) and say how many GPUs demand asks for, given what the owner's
        schedule reserves now."""
        now = self.clock()
        with self._lock:
            if self._pressed(now):
                self.gpus = min(self.rule.max_gpus, max(self.gpus, reserved_now) + 1)
                self._held_since, self._changed = now, now  # the new GPU gets its own period
            elif self.gpus and self._quiet(now):
                self.gpus -= 1
                self.gpus = 0 if self.gpus <= reserved_now else self.gpus
                self._changed = now
            return self.gpus

    def _pressed(self, now: float) -> bool:
        if self._held_since is None or self._last_held is None:
            return False
        # a run with no request since is not a queue: the requests stopped coming
        recent = now - self._last_held <= self.rule.queue_for_s
        return recent and now - self._held_since >= self.rule.queue_for_s

    def _quiet(self, now: float) -> bool:
        last = max(self._last_held or self._changed, self._changed)
        return now - last >= self.rule.quiet_for_s

    def view(self) -> dict[str, Any]:
        with self._lock:
            return {"gpus_wanted": self.gpus, "queue_wait_s": self.rule.queue_wait_s,
                    "held_up": self._held_since is not None,
                    "min_gpus": self.rule.min_gpus, "max_gpus": self.rule.max_gpus}

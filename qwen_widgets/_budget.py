"""The request budget: one cap on API requests per second, shared by every task and client.

The provider limits requests per account (API.md section 4), polls and submits alike, so
they all take a slot of one process-wide budget before they are sent.
"""

from __future__ import annotations

import math
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._clock import Clock

__all__ = ["RequestBudget", "PollBudget"]

PACING_RESOLUTION = 0.01
"""Seconds of lateness an event loop's timers show without any stall (more under load)."""


class RequestBudget:
    """A process-wide cap on API requests (polls and submits) per second, shared by every
    task and client.

    Strict spacing (one slot every 1/rate seconds) rather than a bursty token bucket, so no
    one-second window ever holds more than `rate` requests. Thread-safe: clients on different
    event loops may share it.
    """

    def __init__(self, rate: float = 10.0):
        if not rate > 0 or math.isinf(rate):
            raise ValueError(f"rate must be a positive number of requests per second, got {rate!r}")
        self.rate = rate
        self._chain_start = -math.inf
        self._chain_length = 0
        self._lock = threading.Lock()

    @property
    def spacing(self) -> float:
        """Seconds between slots."""
        return 1.0 / self.rate

    def reserve(self, now: float) -> float:
        """Claim the next free slot; returns how long to wait before using it."""
        with self._lock:
            # slots of a busy chain are start + k / rate, computed afresh each time: adding
            # 1/rate repeatedly drifts (0.1 ten times is 0.9999999999999999)
            next_slot = self._chain_start + self._chain_length / self.rate
            if now >= next_slot:
                self._chain_start, self._chain_length = now, 0
            slot = self._chain_start + self._chain_length / self.rate
            self._chain_length += 1
        return slot - now

    async def take(self, clock: Clock) -> None:
        """Wait for a slot of the budget.

        A waiter that wakes more than a slot late, because the loop or machine stalled, takes
        a fresh slot rather than spend its stale one: spending them all at once after a stall
        would be a burst. Lateness within PACING_RESOLUTION is the event loop's own timer
        jitter, not a stall, so a rate finer than the loop can pace simply means no spacing.
        """
        tolerance = max(self.spacing, PACING_RESOLUTION)
        while True:
            now = clock.monotonic()
            wait = self.reserve(now)
            await clock.sleep(wait)
            if clock.monotonic() - (now + wait) <= tolerance:
                return

    def __repr__(self) -> str:
        return f"RequestBudget(rate={self.rate:g}/s)"


PollBudget = RequestBudget
"""The earlier name, from when the budget paced polls only."""

DEFAULT_BUDGET = RequestBudget(10.0)
